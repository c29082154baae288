/*  layers_grad.h - backward passes of the building blocks, for training
 *  LoRAs: gradients flow to the activations and into the adapters' gradient
 *  buffers (weights.h); frozen weights get none.
 *
 *  Each function takes the forward pass's input (recomputed by the caller
 *  where it was not kept: training checkpoints at block boundaries) and the
 *  gradient of the loss with respect to the forward output, and writes the
 *  gradient with respect to the input. Adapter gradients accumulate, so a
 *  batch split into micro-batches sums them for free.
 */
#ifndef DF_MODEL_LAYERS_GRAD_H
#define DF_MODEL_LAYERS_GRAD_H

#include "blocks.h"
#include "layers.h"

/*  Of y = x W^T (+ bias) (+ beta y) + adapters, before any activation:
 *  dx = dy W (dx_beta 0: written, 1: added; no buffer: not wanted), the
 *  adapters' gradients, and W's own when it has a gradient buffer (full
 *  fine-tuning; the bias's is df_bias_backward_rows). Every weight-taking
 *  backward below likewise accumulates its weights' gradients when they
 *  have buffers: the kernel and bias of a convolution, a norm's gamma and
 *  beta. */
int df_linear_backward(df_vk_batch_t *batch, df_tensor x, uint32_t rows, const df_weight *w, df_tensor dy,
                       df_tensor dx, float dx_beta, df_error_t *err);

/*  Full fine-tuning (df_weights_grads): a bias's gradient accumulates the
 *  sums of dy over its rows (token-major [rows, out]) or over each map's
 *  pixels and the batch (NCHW). No-ops without a gradient buffer. */
int df_bias_backward_rows(df_vk_batch_t *batch, const df_weight *bias, df_tensor dy, uint32_t rows, df_error_t *err);
int df_bias_backward_maps(df_vk_batch_t *batch, const df_weight *bias, const df_fmap *dy, df_error_t *err);

/*  Of df_conv_named: dx (accumulate 0: written, 1: added; no buffer: not
 *  wanted) and the adapters' gradients. */
int df_conv_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x,
                     uint32_t stride, const uint32_t pad[4], const df_fmap *dy, const df_fmap *dx, int accumulate,
                     df_error_t *err);

/*  Of df_group_norm (with its SiLU when silu): dx written. The forward
 *  statistics are recomputed from x. */
int df_group_norm_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups,
                           float eps, int silu, const df_fmap *x, const df_fmap *dy, const df_fmap *dx,
                           df_error_t *err);

/*  Of df_layer_norm over x[rows, channels]: dx written. */
int df_layer_norm_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, df_tensor x,
                           uint32_t rows, float eps, df_tensor dy, df_tensor dx, df_error_t *err);

/*  Of df_resnet_block: dx written (the block is recomputed from x). The
 *  gradient with respect to the (SiLU'd) time embedding accumulates in
 *  dtemb_silu (f32 [n, temb width]) when it has a buffer: only text-encoder
 *  training, through the pooled embedding, needs it. */
int df_resnet_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                       const df_fmap *x, df_tensor temb_silu, const df_fmap *dy, const df_fmap *dx,
                       df_tensor dtemb_silu, df_error_t *err);

/*  y += x (alpha 1) over n elements: the residual paths' sums. */
int df_add_into(df_vk_batch_t *batch, df_tensor x, df_tensor y, uint64_t n, df_error_t *err);

#endif
