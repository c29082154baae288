/*  sdxl_config.h - the architecture of an SDXL-family model, read from the
 *  diffusers config.json files (unet/, vae/, text_encoder/, text_encoder_2/)
 *  and written back by the random-model generator.
 *
 *  Every number the model code needs comes from here, never from constants,
 *  so any SDXL-shaped config loads: the real 1.0 base, and the project's
 *  `tiny` one for tests. A config that asks for something this engine does
 *  not implement (a class embedding, a different attention processor, a
 *  scale-shift time embedding) is DF_E_UNSUPPORTED naming the file and key,
 *  rather than a model that loads and computes something else.
 */
#ifndef DF_SDXL_CONFIG_H
#define DF_SDXL_CONFIG_H

#include <stdint.h>

#include "error.h"

#define DF_SDXL_MAX_LEVELS 6

typedef struct {
    int in_channels, out_channels;
    int levels;                                /* len(block_out_channels) */
    int block_out[DF_SDXL_MAX_LEVELS];
    int down_attn[DF_SDXL_MAX_LEVELS];         /* CrossAttnDownBlock2D (1) or DownBlock2D (0) */
    int up_attn[DF_SDXL_MAX_LEVELS];           /* in up_blocks order (deepest first) */
    int layers_per_block;
    int transformer_depth[DF_SDXL_MAX_LEVELS]; /* per down level; the mid block takes the last */
    int heads[DF_SDXL_MAX_LEVELS];             /* attention heads per level ("attention_head_dim" in SDXL's config) */
    int cross_attention_dim;
    int norm_groups;
    double norm_eps;
    int addition_time_embed_dim;               /* 256: per micro-conditioning number */
    int projection_class_embeddings_input_dim; /* 6 * addition_time_embed_dim + pooled text dim */
    int flip_sin_to_cos;
    double freq_shift;
    int use_linear_projection;
    int sample_size;                           /* latent side the model was trained at */
} df_unet_config;

typedef struct {
    int in_channels, out_channels, latent_channels;
    int levels;
    int block_out[DF_SDXL_MAX_LEVELS];
    int layers_per_block;
    int norm_groups;
    double scaling_factor;
    int sample_size;
    int force_upcast;
} df_vae_config;

typedef struct {
    int vocab_size, hidden, intermediate, layers, heads, max_positions;
    int quick_gelu;      /* hidden_act: quick_gelu (1) or gelu (0) */
    double layer_norm_eps;
    int with_projection; /* CLIPTextModelWithProjection */
    int projection_dim;
} df_clip_text_config;

typedef struct {
    df_unet_config unet;
    df_vae_config vae;
    df_clip_text_config te1, te2;
} df_sdxl_config;

typedef enum { DF_SDXL_PRESET_TINY, DF_SDXL_PRESET_SDXL } df_sdxl_preset;

/*  The preset's configs. `tiny` has SDXL's structure (3 UNet levels, the first
 *  without attention, two text encoders, the text_time embedding) at small
 *  widths; `sdxl` is SDXL 1.0 base. tiny_vocab is the tiny tokenizer's size. */
void df_sdxl_config_preset(df_sdxl_preset preset, int tiny_vocab, df_sdxl_config *cfg);

/*  Parses one config.json. Errors name the path and the key. */
int df_unet_config_load(const char *path, df_unet_config *cfg, df_error_t *err);
int df_vae_config_load(const char *path, df_vae_config *cfg, df_error_t *err);
int df_clip_text_config_load(const char *path, df_clip_text_config *cfg, df_error_t *err);

/*  The same from JSON text in memory; label names it in messages. */
int df_unet_config_parse(const char *json, const char *label, df_unet_config *cfg, df_error_t *err);
int df_vae_config_parse(const char *json, const char *label, df_vae_config *cfg, df_error_t *err);
int df_clip_text_config_parse(const char *json, const char *label, df_clip_text_config *cfg, df_error_t *err);

/*  Writes one config.json as diffusers/transformers would. */
int df_unet_config_save(const df_unet_config *cfg, const char *path, df_error_t *err);
int df_vae_config_save(const df_vae_config *cfg, const char *path, df_error_t *err);
int df_clip_text_config_save(const df_clip_text_config *cfg, const char *path, df_error_t *err);

/*  The config.json text (malloc'd; NULL when out of memory). */
char *df_unet_config_dump(const df_unet_config *cfg);
char *df_vae_config_dump(const df_vae_config *cfg);
char *df_clip_text_config_dump(const df_clip_text_config *cfg);

/*  Checks the configs fit together (context width = te1 + te2 hidden, pooled
 *  width, channel counts divisible by the groups and heads). */
int df_sdxl_config_check(const df_sdxl_config *cfg, df_error_t *err);

#endif
