/*  unet.h - SDXL's UNet (diffusers' UNet2DConditionModel with the text_time
 *  addition embedding) on the device.
 *
 *      emb   = time_embedding(sinusoid(t)) + add_embedding([pooled text, sinusoid(time_ids)])
 *      h     = conv_in(sample)
 *      down  : ResNet blocks (+ transformer blocks where configured), strided convs; every output kept
 *      mid   : ResNet, transformer, ResNet
 *      up    : each ResNet takes the last kept output concatenated on channels; nearest 2x + conv
 *      noise = conv_out(silu(group_norm(h)))
 *
 *  Transformer blocks: group norm, linear proj_in, per layer self-attention,
 *  cross-attention on the text context and a GEGLU feed-forward (each behind
 *  a layer norm, each added to the residual), proj_out, added to the input.
 *  Activations are f32; weights f32 or f16.
 */
#ifndef DF_MODEL_UNET_H
#define DF_MODEL_UNET_H

#include "blocks.h"
#include "sdxl_config.h"
#include "vk_transfer.h"

typedef struct _df_unet_t df_unet_t;

/*  Takes ownership of weights. xfer is kept for the small per-call inputs. */
df_unet_t *df_unet_new(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, df_weights_t **weights,
                       df_error_t *err);

/*  Builds it from the tensors of st as layout places them (NULL: diffusers'
 *  names). */
df_unet_t *df_unet_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, const df_safetensors_t *st,
                      const df_weight_layout *layout, df_dtype store, df_error_t *err);

void df_unet_destroy(df_unet_t **self_p);

const df_unet_config *df_unet_config_of(const df_unet_t *self);

/*  Its weights (LoRA merging writes into them). */
df_weights_t *df_unet_weights(df_unet_t *self);

typedef struct {
    const df_fmap *sample;   /* n x in_channels x h x w, sides multiples of 2^(levels-1) */
    const float *timesteps;  /* host, n values (the UNet takes them as floats) */
    df_tensor context;       /* f32, n x context_len x cross_attention_dim */
    uint32_t context_len;    /* 77 per prompt chunk */
    df_tensor text_embeds;   /* f32, n x pooled dim */
    const float *time_ids;   /* host, n x 6: original h, w, crop top, left, target h, w */
} df_unet_inputs;

/*  Runs one evaluation; out (f32, n x out_channels x h x w) holds the
 *  predicted noise when it returns. The work is submitted in steps (one per
 *  ResNet + transformer pair), so the device holds one block's scratch at a
 *  time besides the skip connections; anything the caller recorded in batch before is submitted
 *  with the first step. */
int df_unet_forward(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor out, df_error_t *err);

/*  silu(time embedding + addition embedding), [n, 4 * block_out[0]]: what
 *  every ResNet's time projection takes (a scratch tensor of batch). */
int df_unet_embeddings(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor *temb_silu,
                       df_error_t *err);

/*  One training step's backward pass for the UNet's adapters (LoRA):
 *      loss = mean over samples s of w_s * mean over s's elements of
 *             (noise_pred - target)^2
 *  (w: f32 [n] per-sample weights, or no buffer for all 1; min-SNR weights
 *  go there). losses (f32 [1 + n]) gets the loss, then each sample's; pred
 *  (may have no buffer) the noise prediction; every adapter's gradient buffers (df_weights_adapter_grads)
 *  accumulate grad_scale times the gradient. The forward pass keeps each
 *  block's input; the backward pass recomputes one block at a time (gradient
 *  checkpointing), submitting a step per block. */
int df_unet_lora_grad(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor target,
                      df_tensor weights, float grad_scale, df_tensor pred, df_tensor losses, df_error_t *err);

/*  The gradients with respect to the UNet's text conditioning, which
 *  training the text encoders continues from: either may have no buffer
 *  (not wanted). Written, scaled by grad_scale like the adapters'. */
typedef struct {
    df_tensor context;     /* f32, in->context's shape [n, context_len, cross_attention_dim] */
    df_tensor text_embeds; /* f32 [n, pooled dim] */
} df_unet_text_grads;

/*  df_unet_lora_grad, also writing text_grads (NULL: none). */
int df_unet_lora_grad_text(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor target,
                           df_tensor weights, float grad_scale, df_tensor pred, df_tensor losses,
                           const df_unet_text_grads *text_grads, df_error_t *err);

/*  The time and added embeddings' backward pass: from the gradient with
 *  respect to their (SiLU'd) output, the pooled text embedding's gradient
 *  (f32 [n, pooled dim], written; no buffer: not wanted) and, for full
 *  fine-tuning, the MLPs' weights' gradients. Recomputes the forward pass
 *  from in. */
int df_unet_embeddings_backward(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                                df_tensor dtemb_silu, df_tensor dtext_embeds, df_error_t *err);

#endif
