/*  clip_text.h - a CLIP text transformer (SDXL's two text encoders) on the
 *  device.
 *
 *  token + position embeddings, then per layer
 *      x += out_proj(causal_attention(q, k, v of layer_norm1(x)))
 *      x += fc2(act(fc1(layer_norm2(x))))
 *  with act quick-GELU (CLIP ViT-L) or exact GELU (OpenCLIP bigG). SDXL takes
 *  the penultimate layer's output (before the final layer norm) as context,
 *  and from encoder 2 also the pooled output: final layer norm at the first
 *  end-of-text token, times text_projection.
 */
#ifndef DF_MODEL_CLIP_TEXT_H
#define DF_MODEL_CLIP_TEXT_H

#include <stdint.h>

#include "sdxl_config.h"
#include "vk_batch.h"
#include "weights.h"

typedef struct _df_clip_text_t df_clip_text_t;

/*  Takes ownership of weights (on success and failure). */
df_clip_text_t *df_clip_text_new(const df_clip_text_config *cfg, df_weights_t **weights, df_error_t *err);

/*  Builds the encoder from the tensors of st as layout places them. */
df_clip_text_t *df_clip_text_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_clip_text_config *cfg,
                                  const df_safetensors_t *st, const df_weight_layout *layout, df_dtype store,
                                  df_error_t *err);

/*  How transformers' CLIP checkpoints (the diffusers folder's text_encoder/
 *  and text_encoder_2/) store the weights: internal names, plus a
 *  position_ids buffer to ignore. */
const df_weight_layout *df_clip_text_diffusers_layout(void);

void df_clip_text_destroy(df_clip_text_t **self_p);

const df_clip_text_config *df_clip_text_config_of(const df_clip_text_t *self);

/*  Its weights (LoRA merging writes into them). */
df_weights_t *df_clip_text_weights(df_clip_text_t *self);

/*  Records the encoder over nseq sequences of DF_CLIP_CONTEXT ids (host
 *  memory, each id < vocab size). hidden (f32, nseq x 77 x hidden) gets the
 *  penultimate layer's output; pooled (f32, nseq x projection_dim), when it
 *  has a buffer, the pooled projection (the model must have one). Scratch is
 *  handed to the batch; results are there after df_vk_batch_submit. */
int df_clip_text_forward(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                         df_tensor hidden, df_tensor pooled, df_error_t *err);

/*  Where the pooled output is read in a sequence of DF_CLIP_CONTEXT ids: the
 *  first end-of-text token (the highest id, as CLIP's vocabulary puts it
 *  last). */
uint32_t df_clip_text_eos_at(const int32_t *ids);

/*  For training: the embeddings and every layer's output, xs f32
 *  [layers + 1][nseq x 77][hidden], so xs[l] is layer l's input and
 *  xs[layers - 1] the penultimate output. Submits after each layer (xs must
 *  outlive submits). */
int df_clip_text_forward_all(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                             df_tensor xs, df_error_t *err);

/*  The backward pass of df_clip_text_forward for training text-encoder
 *  LoRAs: from the gradients with respect to its outputs, dhidden (the
 *  penultimate layer's, f32 [nseq x 77][hidden]) and dpooled (f32
 *  [nseq][projection]; either may have no buffer), the adapters' gradient
 *  buffers accumulate (df_weights_adapter_grads). The forward pass is
 *  recomputed from ids, keeping each layer's input; each layer is computed
 *  again on the way back. Submits as it goes (clip_text_grad.c). */
int df_clip_text_backward(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                          df_tensor dhidden, df_tensor dpooled, df_error_t *err);

#endif
