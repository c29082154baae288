/*  latent_preview.h - what a generation looks like part-way, without the VAE.
 *
 *  SDXL's four latent channels are close to a linear code for colour (one
 *  channel is mostly luma, two mostly chroma), so a 4x3 projection of the
 *  denoised estimate gives a recognisable thumbnail at latent resolution
 *  (1/8 of the image per side) for a few multiply-adds per pixel, where the
 *  VAE decoder would cost more than a UNet step. The factors are the
 *  least-squares fit other SDXL front ends publish for the SDXL 1.0 VAE.
 */
#ifndef DF_LATENT_PREVIEW_H
#define DF_LATENT_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*  rgb (h rows of w x 3 bytes) from latents [4, h, w] in the UNet's space
 *  (scaled by the VAE's scaling factor, as samplers hold them). */
void df_latent_preview_rgb(const float *latents, uint32_t h, uint32_t w, uint8_t *rgb);

/*  The same as a PNG in *out (malloc'd, *len bytes). */
int df_latent_preview_png(const float *latents, uint32_t h, uint32_t w, uint8_t **out, size_t *len,
                          df_error_t *err);

#endif
