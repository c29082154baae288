/*  eltwise.h - element-wise ops: copies and dtype conversion, affine maps,
 *  sums and products (with a broadcast second operand), activations and
 *  their backward passes.
 *
 *      y[i] = f(a[i], b[j])   for i in [0, n)
 *
 *  j is i when b_count is 0 (b is as long as a), else (i / b_inner) % b_count:
 *  a per-channel bias is b_inner = H*W, b_count = C on NCHW, and b_inner = 1,
 *  b_count = C on [tokens, C]. a, b and y are f32 or f16 each; arithmetic is
 *  f32. y may be a (in place).
 */
#ifndef DF_OPS_ELTWISE_H
#define DF_OPS_ELTWISE_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef enum {
    DF_ELT_COPY = 0,       /* y = a (converting dtype) */
    DF_ELT_AFFINE,         /* y = alpha a + beta */
    DF_ELT_AXPBY,          /* y = alpha a + beta b */
    DF_ELT_MUL,            /* y = alpha a b */
    DF_ELT_SILU,           /* y = a sigmoid(a) */
    DF_ELT_GELU_TANH,      /* y = GELU(a), tanh approximation */
    DF_ELT_GELU_ERF,       /* y = GELU(a), exact (erf) */
    DF_ELT_QUICK_GELU,     /* y = a sigmoid(1.702 a) (CLIP ViT-L) */
    DF_ELT_SILU_BWD,       /* y = b silu'(a): a is the forward input, b the output gradient */
    DF_ELT_GELU_TANH_BWD,
    DF_ELT_GELU_ERF_BWD,
    DF_ELT_QUICK_GELU_BWD,
    DF_ELT_CLAMP,          /* y = min(max(a, alpha), beta) (the VAE's log-variance) */
    DF_ELT_COUNT
} df_elt_op;

typedef struct {
    df_elt_op op;
    uint64_t n;
    float alpha, beta;
    uint64_t b_inner, b_count; /* broadcast of b (b_count 0: none) */
} df_elt_desc;

const char *df_elt_op_name(df_elt_op op);
/*  Whether the op reads b. */
int df_elt_op_binary(df_elt_op op);

/*  Records the op into batch. Inputs larger than one binding are split.
 *  Errors name the operand and the reason. */
int df_eltwise(df_vk_batch_t *batch, const df_elt_desc *d, df_tensor a, df_tensor b, df_tensor y, df_error_t *err);

#endif
