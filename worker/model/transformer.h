/*  transformer.h - the UNet's Transformer2DModel blocks, forward and
 *  backward.
 *
 *      h   = proj_in(group_norm(x)) as token rows
 *      per layer: h += attn1(ln1 h); h += attn2(ln2 h, context); h += ff(ln3 h)
 *      x  += proj_out(h) back in NCHW
 *
 *  attn: to_q / to_k / to_v projections, multi-head attention, to_out; ff:
 *  a GEGLU feed-forward. Norm epsilons are diffusers': 1e-6 for the group
 *  norm, 1e-5 for the layer norms. Linear projections only
 *  (use_linear_projection, as SDXL).
 */
#ifndef DF_MODEL_TRANSFORMER_H
#define DF_MODEL_TRANSFORMER_H

#include "blocks.h"

/*  x (NCHW) in place. */
int df_transformer_forward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups,
                           int depth, uint32_t heads, const df_fmap *x, df_tensor context, uint32_t context_len,
                           df_error_t *err);

/*  From x (the block's input) and dy (the gradient with respect to its
 *  output), dx: the gradient with respect to x, written; the adapters'
 *  gradients accumulate. The block is recomputed from x, keeping each
 *  layer's input, and each layer recomputed again on the way back. Head
 *  dims up to 128. The batch is submitted
 *  after each layer (freeing its scratch), so x, dy, dx and the context must
 *  be buffers that outlive a submit, not scratch. dcontext (f32, the
 *  context's shape; no buffer: not wanted) accumulates the gradient with
 *  respect to the context, for training the text encoders. */
int df_transformer_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups,
                            int depth, uint32_t heads, const df_fmap *x, df_tensor context, uint32_t context_len,
                            const df_fmap *dy, const df_fmap *dx, df_tensor dcontext, df_error_t *err);

#endif
