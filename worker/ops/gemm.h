/*  gemm.h - batched GEMM on the device.
 *
 *      C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]
 *
 *  Shapes, layouts and legality are those of df_gemm_desc (common/gemm_desc.h).
 *  A, B and C are each f32 or f16 in memory; arithmetic is f32 throughout.
 *
 *  Two kernels:
 *    texel - register tiles fed by texel-buffer fetches, no shared memory: the
 *            fast path on CPU drivers (lavapipe), where barriers are costly and
 *            storage-buffer loads are scalarised;
 *    tiled - shared-memory tiles with barriers: the portable path on GPUs.
 *  DF_GEMM_AUTO picks texel on CPU devices and tiled elsewhere.
 *
 *  Operands larger than one binding may cover (maxStorageBufferRange is 128
 *  MiB on lavapipe) are split: batch entries across dispatches, then rows of C,
 *  columns of C and, as a last resort, K (accumulating with beta = 1). Every
 *  split dispatch binds only the window of each operand it touches.
 */
#ifndef DF_OPS_GEMM_H
#define DF_OPS_GEMM_H

#include "eltwise.h"
#include "error.h"
#include "gemm_desc.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef enum {
    DF_GEMM_AUTO = 0,
    DF_GEMM_TEXEL = 1,
    DF_GEMM_TILED = 2,
} df_gemm_path;

/*  "auto", "texel", "tiled". */
const char *df_gemm_path_name(df_gemm_path path);
/*  Parses the names above; -1 when unknown. */
int df_gemm_path_parse(const char *name);

/*  How a GEMM was carried out (for tests, profiles and benchmarks). */
typedef struct {
    df_gemm_path path; /* the kernel used: never AUTO */
    uint32_t dispatches;
    uint32_t k_chunks;   /* > 1 when K was split */
    uint32_t rows;       /* texel: rows of C per invocation */
    int vec_a, vec_b;    /* texel: 4-wide fetches of A / B in the last dispatch */
} df_gemm_plan;

/*  What the GEMM applies to each element of C as it stores it:
 *      C = act(alpha * op(A) op(B) + beta * C + bias)
 *  bias has one value per column of C (a linear layer, tokens x features) or
 *  per row (a 1x1 convolution on NCHW), f32 or f16; no buffer: none. act is
 *  DF_ELT_COPY (none), DF_ELT_SILU, DF_ELT_GELU_TANH, DF_ELT_GELU_ERF or
 *  DF_ELT_QUICK_GELU. Training needs the value before the activation for the
 *  backward pass: fuse the activation only where it is not differentiated. */
typedef struct {
    df_tensor bias;
    int bias_per_row;
    df_elt_op act;
} df_gemm_epilogue;

/*  The kernel DF_GEMM_AUTO resolves to on dev. */
df_gemm_path df_gemm_default_path(df_vk_device_t *dev);

/*  Records the GEMM into batch (nothing runs until df_vk_batch_submit). plan
 *  may be NULL. Errors: DF_E_INVALID / DF_E_RANGE for bad shapes or operands
 *  that do not fit their buffers, DF_E_UNSUPPORTED for an f16 operand on a
 *  device without 16-bit storage, or an f16 C whose K must be split. */
int df_gemm(df_vk_batch_t *batch, const df_gemm_desc *desc, df_tensor_ref a, df_tensor_ref b,
            df_tensor_ref c, df_gemm_path path, df_gemm_plan *plan, df_error_t *err);

/*  df_gemm with an epilogue (NULL: none). */
int df_gemm_ex(df_vk_batch_t *batch, const df_gemm_desc *desc, df_tensor_ref a, df_tensor_ref b, df_tensor_ref c,
               const df_gemm_epilogue *epilogue, df_gemm_path path, df_gemm_plan *plan, df_error_t *err);

#endif
