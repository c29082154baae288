/*  sdxl_model.h - an SDXL model on disk, in either layout, and its parts.
 *
 *  A path is either a diffusers folder (model_index.json, unet/, vae/,
 *  text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, each with its
 *  config) or a single-file checkpoint (sd_xl_base_1.0.safetensors and its
 *  kin). A single file carries no configs (SDXL 1.0's are assumed, unless
 *  dreamfleet wrote the file and left its configs in the metadata) and no
 *  tokenizer (one is given separately, as a folder with vocab.json and
 *  merges.txt or CLIP's gzipped merges list).
 *
 *  Opening reads and cross-checks the configs only; each component's weights
 *  load when asked for, so a worker that only decodes never holds a UNet.
 */
#ifndef DF_MODEL_SDXL_MODEL_H
#define DF_MODEL_SDXL_MODEL_H

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "sdxl_config.h"
#include "unet.h"
#include "vae.h"

typedef enum { DF_SDXL_DIFFUSERS, DF_SDXL_SINGLE_FILE } df_sdxl_layout;

typedef struct _df_sdxl_t df_sdxl_t;

/*  tokenizer_dir may be NULL (the folder layout has its own). */
df_sdxl_t *df_sdxl_open(const char *path, const char *tokenizer_dir, df_error_t *err);
void df_sdxl_destroy(df_sdxl_t **self_p);

df_sdxl_layout df_sdxl_layout_of(const df_sdxl_t *self);
const df_sdxl_config *df_sdxl_config_of(const df_sdxl_t *self);

/*  store: DF_F32, DF_F16, or DF_I8 (the UNet's matrices as 8-bit, see
 *  df_weights_load; the text encoders and the VAE then load as f16). */
df_unet_t *df_sdxl_load_unet(df_sdxl_t *self, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                             df_error_t *err);
df_vae_t *df_sdxl_load_vae(df_sdxl_t *self, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                           df_error_t *err);
/*  which: 1 or 2. */
df_clip_text_t *df_sdxl_load_text_encoder(df_sdxl_t *self, int which, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                          df_dtype store, df_error_t *err);

/*  Tokenizer 1 or 2 and the id it pads with (end-of-text for 1, "!" = 0 for
 *  SDXL's 2, as each tokenizer_config.json says). */
df_clip_tokenizer_t *df_sdxl_load_tokenizer(df_sdxl_t *self, int which, int32_t *pad_id, df_error_t *err);

#endif
