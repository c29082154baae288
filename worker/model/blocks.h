/*  blocks.h - the convolutional building blocks SDXL's UNet and VAE share,
 *  on NCHW activations: convolutions named by their weights, ResNet blocks,
 *  down- and up-sampling, and attention over the pixels of a feature map.
 *  Each records into a batch; scratch is handed to the batch. */
#ifndef DF_MODEL_BLOCKS_H
#define DF_MODEL_BLOCKS_H

#include <stdint.h>

#include "attention.h"
#include "tensor_ref.h"
#include "vk_batch.h"
#include "weights.h"

/*  A feature map: n x c x h x w, f32. */
typedef struct {
    df_tensor t;
    uint32_t n, c, h, w;
} df_fmap;

/*  A new scratch feature map. */
int df_fmap_new(df_vk_batch_t *batch, uint32_t n, uint32_t c, uint32_t h, uint32_t w, df_fmap *out,
                df_error_t *err);

/*  y (+)= conv(x) with prefix.weight [O, I, k, k] and prefix.bias; pads are
 *  top, left, bottom, right. y must be sized for the result. */
int df_conv_named(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x,
                  uint32_t stride, const uint32_t pad[4], const df_fmap *y, int accumulate, df_error_t *err);

/*  The usual 3x3, stride 1, pad 1 (or 1x1, pad 0) convolution into a new map. */
int df_conv_same(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x, df_fmap *y,
                 df_error_t *err);

/*  y = GroupNorm(x) (then SiLU) with prefix.weight / prefix.bias. */
int df_group_norm(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                  int silu, const df_fmap *x, const df_fmap *y, df_error_t *err);

/*  ResnetBlock2D: out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + temb_proj(silu(temb))))).
 *  temb_silu (f32, n x temb_dim, already through SiLU) may have no buffer
 *  (the VAE's blocks). The result is a new map with the block's out
 *  channels. */
int df_resnet_block(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                    const df_fmap *x, df_tensor temb_silu, df_fmap *out, df_error_t *err);

/*  Downsample2D: 3x3 stride-2 convolution, padding 1 (the UNet) or
 *  (0, 1, 0, 1) (the VAE encoder). */
int df_downsample(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, int vae_padding,
                  const df_fmap *x, df_fmap *out, df_error_t *err);

/*  Upsample2D: nearest 2x, then a 3x3 convolution. */
int df_upsample(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x, df_fmap *out,
                df_error_t *err);

/*  softmax(scale Q K^T) V for any head size: the fused kernel where it
 *  applies (head dim <= 128), else in chunks of query rows through
 *  GEMM + softmax + GEMM so the score matrix never exceeds a few MiB per
 *  chunk. Same descriptor and layouts as df_attention_forward. */
int df_attention_any(df_vk_batch_t *batch, const df_attn_desc *d, df_tensor q, df_tensor k, df_tensor v,
                     df_tensor o, df_error_t *err);

/*  The VAE's mid-block attention: one head over all pixels, residual added
 *  in place into x. */
int df_pixel_attention(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                       const df_fmap *x, df_error_t *err);

#endif
