/*  lora.h - LoRA adapters at inference, merged into the loaded weights
 *
 *      W += scale * (alpha / rank) * up @ down
 *
 *  (fastest: the layers run as before) or attached beside them unmerged
 *  (weights.h: each layer adds up @ (down @ x); the base weights stay
 *  pristine, so another set of LoRAs replaces this one without reloading)
 *
 *  (for convolutions, down's [rank, in, kh, kw] flattened). Files in any of
 *  the formats SDXL LoRAs circulate in:
 *    kohya       lora_unet_* / lora_te1_* / lora_te2_* with .lora_down.weight,
 *                .lora_up.weight and .alpha; the UNet's modules named after
 *                diffusers' blocks or the original (SGM) ones
 *    PEFT        unet.* / text_encoder.* / text_encoder_2.* with .lora_A.weight and
 *                .lora_B.weight (alpha = rank)
 *    diffusers   the same prefixes with .lora.down.weight and .lora.up.weight
 *  A key that names no module of the model, or the wrong shapes for it, is an
 *  error listing them: a LoRA for another architecture does not load half
 *  way. Several LoRAs merge one after another, each with its own scale.
 */
#ifndef DF_MODEL_LORA_H
#define DF_MODEL_LORA_H

#include "clip_text.h"
#include "sdxl_config.h"
#include "unet.h"

typedef struct {
    df_unet_t *unet;
    df_clip_text_t *te1, *te2;
    /* 0: every module the file adapts must be among the targets (a first
     * merge, where nothing may be left out). 1: modules of components not
     * given are skipped, for re-merging into a component loaded again after
     * it was released. */
    int only_given;
} df_lora_targets;

typedef struct {
    uint32_t modules[3]; /* merged into the UNet, text encoder 1, text encoder 2 */
    uint32_t rank;       /* the largest rank seen */
} df_lora_stats;

/*  Merges the LoRA file at path, scaled, into the targets (a component the
 *  file adapts must be among them). stats may be NULL. Runs to completion
 *  (submits the batch). */
int df_lora_merge(const char *path, float scale, const df_sdxl_config *cfg, const df_lora_targets *t,
                  df_vk_batch_t *batch, df_vk_transfer_t *xfer, df_lora_stats *stats, df_error_t *err);

/*  The same checks, then the factors attached as adapters instead
 *  (df_weights_detach_all removes them). */
int df_lora_attach(const char *path, float scale, const df_sdxl_config *cfg, const df_lora_targets *t,
                   df_vk_batch_t *batch, df_vk_transfer_t *xfer, df_lora_stats *stats, df_error_t *err);

#endif
