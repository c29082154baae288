/*  vae_tiled.h - the VAE over large images in overlapping tiles.
 *
 *  The decoder's activations at 1024 x 1024 are 512 MiB per map in f32, and
 *  SDXL's VAE must stay f32; so large images go through in tiles that
 *  overlap and are blended with linear ramps across each overlap, so no seam
 *  shows. The defaults (576 px tiles, at least 128 px of overlap) take a
 *  1024 px image in 2 x 2 tiles. An image that fits one tile
 *  goes through whole and equals the untiled result. Inputs and outputs are
 *  host memory: the caller has them there anyway (pixels for PNG, latents
 *  from the sampler's last step).
 */
#ifndef DF_MODEL_VAE_TILED_H
#define DF_MODEL_VAE_TILED_H

#include "vae.h"
#include "vk_transfer.h"

typedef struct {
    uint32_t tile;    /* tile side in latent pixels (0: 72, i.e. 576 image pixels for SDXL) */
    uint32_t overlap; /* least overlap in latent pixels (0: 16) */
} df_vae_tiling;

/*  latents: n x latent_channels x h x w; image: n x out_channels x h*f x w*f. */
int df_vae_decode_tiled(df_vae_t *vae, df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_vae_tiling *tiling,
                        const float *latents, uint32_t n, uint32_t h, uint32_t w, float *image, df_error_t *err);

/*  image: n x in_channels x H x W (multiples of f); mean and logvar:
 *  n x latent_channels x H/f x W/f. */
int df_vae_encode_tiled(df_vae_t *vae, df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_vae_tiling *tiling,
                        const float *image, uint32_t n, uint32_t H, uint32_t W, float *mean, float *logvar,
                        df_error_t *err);

#endif
