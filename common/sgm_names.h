/*  sgm_names.h - where each tensor of the internal (diffusers) naming lives
 *  in a single-file SDXL checkpoint (Stability's "SGM" layout, as in
 *  sd_xl_base_1.0.safetensors).
 *
 *  The single file keeps the original training code's names:
 *    model.diffusion_model.*            the UNet (input_blocks / middle_block /
 *                                       output_blocks, in_layers / out_layers ...)
 *    first_stage_model.*                the VAE (encoder.down.N.block.M, mid.attn_1,
 *                                       1x1 convolutions where diffusers has linears)
 *    conditioner.embedders.0.transformer.*   text encoder 1, transformers' names
 *    conditioner.embedders.1.model.*    text encoder 2, OpenCLIP's names: q, k and v
 *                                       fused in one in_proj, the projection stored
 *                                       transposed
 *  Each function maps one internal name to its file name and how to read it.
 */
#ifndef DF_SGM_NAMES_H
#define DF_SGM_NAMES_H

#include <stddef.h>

#include "sdxl_config.h"

#define DF_SGM_UNET "model.diffusion_model."
#define DF_SGM_VAE "first_stage_model."
#define DF_SGM_TE1 "conditioner.embedders.0.transformer."
#define DF_SGM_TE2 "conditioner.embedders.1.model."

/* Metadata keys under which dreamfleet's own single files carry their
 * configs (config.json text); files without them are taken to be SDXL 1.0. */
#define DF_SGM_META_UNET "dreamfleet.config.unet"
#define DF_SGM_META_VAE "dreamfleet.config.vae"
#define DF_SGM_META_TE1 "dreamfleet.config.text_encoder"
#define DF_SGM_META_TE2 "dreamfleet.config.text_encoder_2"

typedef struct {
    char name[192]; /* the file's tensor */
    int part;       /* -1: the whole tensor; 0, 1, 2: that third of its rows (q, k, v of a fused in_proj) */
    int transpose;  /* stored transposed (OpenCLIP's text_projection) */
} df_sgm_ref;

/*  Each returns 0, or -1 for an internal name the component does not have. */
int df_sgm_unet(const df_unet_config *cfg, const char *internal, df_sgm_ref *ref);
int df_sgm_vae(const df_vae_config *cfg, const char *internal, df_sgm_ref *ref);
int df_sgm_te1(const char *internal, df_sgm_ref *ref);
int df_sgm_te2(const char *internal, df_sgm_ref *ref);

#endif
