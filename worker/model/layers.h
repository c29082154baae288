/*  layers.h - the building blocks model code composes from ops: linear
 *  layers, layer norm, and per-step scratch tensors. */
#ifndef DF_MODEL_LAYERS_H
#define DF_MODEL_LAYERS_H

#include <stdint.h>

#include "eltwise.h"
#include "tensor_ref.h"
#include "vk_batch.h"
#include "vk_transfer.h"
#include "weights.h"

/*  A device tensor that lives until the batch's work completes (the batch
 *  frees it after submit). *out gets no buffer on failure. */
int df_scratch(df_vk_batch_t *batch, uint64_t elems, df_dtype dtype, df_tensor *out, df_error_t *err);

/*  Tensors that must outlive a submit (a UNet's skip connections, the
 *  running activation across blocks) live here; model code frees them all
 *  at the end of its call. */
#define DF_KEEP_MAX 64
typedef struct {
    df_vk_buffer_t *bufs[DF_KEEP_MAX];
    int n;
} df_keep;

/*  Copies elems f32 values of *t into a new buffer in keep and points *t at
 *  it (the copy is recorded in batch). */
int df_keep_tensor(df_vk_batch_t *batch, df_keep *keep, df_tensor *t, uint64_t elems, df_error_t *err);

/*  A new tensor of elems values in keep (contents undefined). */
int df_keep_new(df_vk_batch_t *batch, df_keep *keep, uint64_t elems, df_dtype dtype, df_tensor *out,
                df_error_t *err);

/*  Frees everything in keep: at once when batch is NULL (the work using it
 *  has completed), else when batch's recorded work has (an error path, with
 *  commands still recorded). */
void df_keep_release(df_keep *keep, df_vk_batch_t *batch);

/*  Ends a step of a long computation: *x (elems f32) is copied into cur,
 *  the batch is submitted (freeing the step's scratch), and the buffers cur
 *  held before are freed. What a model keeps live across steps is then just
 *  its running activation (and whatever it keeps elsewhere). */
int df_step_end(df_vk_batch_t *batch, df_keep *cur, df_tensor *x, uint64_t elems, df_error_t *err);

/*  A scratch f32 tensor holding n values from host memory (uploaded now). */
int df_scratch_from_host(df_vk_batch_t *batch, df_vk_transfer_t *xfer, const float *src, uint64_t n, df_tensor *out,
                         df_error_t *err);

/*  y[rows, out] = act(x[rows, in] W^T + bias + beta * y), W as a linear
 *  layer stores it ([out, in]); bias may be NULL. beta 1 adds the result to y
 *  (a residual connection in the same pass). */
int df_linear(df_vk_batch_t *batch, df_tensor x, uint32_t rows, const df_weight *w, const df_weight *bias,
              df_tensor y, float beta, df_elt_op act, df_error_t *err);

/*  Layer norm over the last dimension of x[rows, channels] with the named
 *  affine weights prefix.weight / prefix.bias. */
int df_layer_norm(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, df_tensor x, uint32_t rows,
                  float eps, df_tensor y, df_error_t *err);

/*  prefix.weight and prefix.bias, the pair most layers take. */
int df_weight_pair(const df_weights_t *w, const char *prefix, const df_weight **weight, const df_weight **bias,
                   df_error_t *err);

/*  The weight called prefix.suffix. */
int df_weight_at(const df_weights_t *w, const char *prefix, const char *suffix, const df_weight **out,
                 df_error_t *err);

#endif
