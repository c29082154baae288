/*  vae.h - SDXL's autoencoder (diffusers' AutoencoderKL) on the device.
 *
 *  encode: image in [-1, 1] -> the latent distribution's mean and log-variance
 *  (clamped to [-30, 20] as the reference does); the UNet's latents are
 *  mean * scaling_factor. decode: latents already divided by scaling_factor ->
 *  image. Activations stay f32 whatever the weights' storage: SDXL's VAE
 *  overflows f16.
 */
#ifndef DF_MODEL_VAE_H
#define DF_MODEL_VAE_H

#include "blocks.h"
#include "sdxl_config.h"

typedef struct _df_vae_t df_vae_t;

/*  Takes ownership of weights. */
df_vae_t *df_vae_new(const df_vae_config *cfg, df_weights_t **weights, df_error_t *err);

/*  Builds it from the tensors of st as layout places them (NULL: diffusers'
 *  names). */
df_vae_t *df_vae_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_vae_config *cfg, const df_safetensors_t *st,
                      const df_weight_layout *layout, df_dtype store, df_error_t *err);

void df_vae_destroy(df_vae_t **self_p);

const df_vae_config *df_vae_config_of(const df_vae_t *self);

/*  Pixels per latent along each side: 2^(levels - 1) (8 for SDXL). */
uint32_t df_vae_factor(const df_vae_t *self);

/*  Both directions run to completion (the batch is submitted, in steps of
 *  one block so only one block's scratch is alive at a time).
 *
 *  image: n x in_channels x H x W (multiples of the factor). mean and logvar
 *  (f32, n x latent_channels x H/f x W/f) receive the posterior. */
int df_vae_encode(df_vae_t *self, df_vk_batch_t *batch, const df_fmap *image, df_tensor mean, df_tensor logvar,
                  df_error_t *err);

/*  latents: n x latent_channels x h x w. image (f32, n x out_channels x
 *  h*f x w*f) receives the decoded pixels (unclamped). */
int df_vae_decode(df_vae_t *self, df_vk_batch_t *batch, const df_fmap *latents, df_tensor image, df_error_t *err);

#endif
