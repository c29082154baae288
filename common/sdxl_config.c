/*  sdxl_config.c - see sdxl_config.h. */
#include "sdxl_config.h"

#include <jansson.h>
#include <string.h>

/* --------------------------------------------------------------- presets */

void df_sdxl_config_preset(df_sdxl_preset preset, int tiny_vocab, df_sdxl_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    df_unet_config *u = &cfg->unet;
    df_vae_config *v = &cfg->vae;
    int sdxl = preset == DF_SDXL_PRESET_SDXL;
    static const int unet_sdxl[] = {320, 640, 1280}, unet_tiny[] = {32, 64, 64};
    static const int depth_sdxl[] = {1, 2, 10}, depth_tiny[] = {1, 1, 2};
    static const int heads_sdxl[] = {5, 10, 20}, heads_tiny[] = {1, 2, 2};
    u->in_channels = u->out_channels = 4;
    u->levels = 3;
    for (int i = 0; i < 3; i++) {
        u->block_out[i] = sdxl ? unet_sdxl[i] : unet_tiny[i];
        u->transformer_depth[i] = sdxl ? depth_sdxl[i] : depth_tiny[i];
        u->heads[i] = sdxl ? heads_sdxl[i] : heads_tiny[i];
        u->down_attn[i] = i > 0;
        u->up_attn[i] = i < 2;
    }
    u->layers_per_block = 2;
    u->norm_groups = sdxl ? 32 : 8;
    u->norm_eps = 1e-5;
    u->flip_sin_to_cos = 1;
    u->freq_shift = 0;
    u->use_linear_projection = 1;
    u->sample_size = sdxl ? 128 : 16;

    v->in_channels = v->out_channels = 3;
    v->latent_channels = 4;
    v->levels = 4;
    static const int vae_sdxl[] = {128, 256, 512, 512}, vae_tiny[] = {16, 32, 32, 32};
    for (int i = 0; i < 4; i++)
        v->block_out[i] = sdxl ? vae_sdxl[i] : vae_tiny[i];
    v->layers_per_block = sdxl ? 2 : 1;
    v->norm_groups = sdxl ? 32 : 8;
    v->scaling_factor = 0.13025;
    v->sample_size = sdxl ? 1024 : 128;
    v->force_upcast = 1;

    df_clip_text_config *t1 = &cfg->te1, *t2 = &cfg->te2;
    t1->vocab_size = t2->vocab_size = sdxl ? 49408 : tiny_vocab;
    t1->max_positions = t2->max_positions = 77;
    t1->layer_norm_eps = t2->layer_norm_eps = 1e-5;
    t1->hidden = sdxl ? 768 : 32;
    t1->intermediate = sdxl ? 3072 : 64;
    t1->layers = sdxl ? 12 : 3;
    t1->heads = sdxl ? 12 : 2;
    t1->quick_gelu = 1;
    t1->projection_dim = sdxl ? 768 : 32;
    t2->hidden = sdxl ? 1280 : 32;
    t2->intermediate = sdxl ? 5120 : 64;
    t2->layers = sdxl ? 32 : 3;
    t2->heads = sdxl ? 20 : 2;
    t2->quick_gelu = 0;
    t2->with_projection = 1;
    t2->projection_dim = sdxl ? 1280 : 32;

    u->cross_attention_dim = t1->hidden + t2->hidden;
    u->addition_time_embed_dim = sdxl ? 256 : 16;
    u->projection_class_embeddings_input_dim = 6 * u->addition_time_embed_dim + t2->projection_dim;
}

/* --------------------------------------------------------------- reading */

typedef struct {
    const char *path;
    json_t *root;
    df_error_t *err;
} reader;

static int open_config(reader *r, const char *path, df_error_t *err)
{
    r->path = path;
    r->err = err;
    json_error_t jerr;
    r->root = json_load_file(path, 0, &jerr);
    if (!r->root) {
        /* jansson says "unable to open" for a missing file: keep that apart. */
        int code = strstr(jerr.text, "unable to open") ? DF_E_NOT_FOUND : DF_E_FORMAT;
        return df_error_set(err, code, "%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    if (!json_is_object(r->root)) {
        json_decref(r->root);
        r->root = NULL;
        return df_error_set(err, DF_E_FORMAT, "%s: not a JSON object", path);
    }
    return DF_OK;
}

/*  The same from JSON text held in memory (configs carried in a
 *  checkpoint's metadata); label names it in messages. */
static int open_config_text(reader *r, const char *text, const char *label, df_error_t *err)
{
    r->path = label;
    r->err = err;
    json_error_t jerr;
    r->root = json_loads(text, 0, &jerr);
    if (!r->root)
        return df_error_set(err, DF_E_FORMAT, "%s: %s (line %d)", label, jerr.text, jerr.line);
    if (!json_is_object(r->root)) {
        json_decref(r->root);
        r->root = NULL;
        return df_error_set(err, DF_E_FORMAT, "%s: not a JSON object", label);
    }
    return DF_OK;
}

static int bad(reader *r, const char *key, const char *why)
{
    return df_error_set(r->err, DF_E_FORMAT, "%s: \"%s\" %s", r->path, key, why);
}

/*  An integer in [lo, hi]; missing keys take def when def_ok. */
static int get_int(reader *r, const char *key, int lo, int hi, int def_ok, int def, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        if (def_ok) {
            *out = def;
            return DF_OK;
        }
        return bad(r, key, "is missing");
    }
    if (!json_is_integer(v))
        return bad(r, key, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        char why[96];
        snprintf(why, sizeof why, "is %lld, outside [%d, %d]", (long long)x, lo, hi);
        return bad(r, key, why);
    }
    *out = (int)x;
    return DF_OK;
}

static int get_num(reader *r, const char *key, double def, double *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DF_OK;
    }
    if (!json_is_number(v))
        return bad(r, key, "must be a number");
    *out = json_number_value(v);
    return DF_OK;
}

static int get_bool(reader *r, const char *key, int def, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DF_OK;
    }
    if (!json_is_boolean(v))
        return bad(r, key, "must be true or false");
    *out = json_is_true(v);
    return DF_OK;
}

/*  A string that must be one of `allowed` (NULL-terminated) when present;
 *  anything else is a feature this engine lacks. Returns its index. */
static int get_choice(reader *r, const char *key, const char *const *allowed, int def, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DF_OK;
    }
    if (!json_is_string(v))
        return bad(r, key, "must be a string");
    for (int i = 0; allowed[i]; i++)
        if (strcmp(json_string_value(v), allowed[i]) == 0) {
            *out = i;
            return DF_OK;
        }
    return df_error_set(r->err, DF_E_UNSUPPORTED, "%s: \"%s\" = \"%s\" is not supported", r->path, key,
                        json_string_value(v));
}

/*  A key that must be absent or null (a feature we do not implement). */
static int require_null(reader *r, const char *key)
{
    const json_t *v = json_object_get(r->root, key);
    if (v && !json_is_null(v) && !(json_is_false(v)))
        return df_error_set(r->err, DF_E_UNSUPPORTED, "%s: \"%s\" is set; this engine does not implement it",
                            r->path, key);
    return DF_OK;
}

/*  An integer list of exactly n entries, or one integer meaning n copies. */
static int get_int_list(reader *r, const char *key, int n, int lo, int hi, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v))
        return bad(r, key, "is missing");
    if (json_is_integer(v)) {
        for (int i = 0; i < n; i++)
            out[i] = (int)json_integer_value(v);
    } else if (json_is_array(v)) {
        if ((int)json_array_size(v) != n) {
            char why[96];
            snprintf(why, sizeof why, "has %zu entries; the model has %d levels", json_array_size(v), n);
            return bad(r, key, why);
        }
        for (int i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, (size_t)i);
            if (!json_is_integer(e))
                return bad(r, key, "must hold integers");
            out[i] = (int)json_integer_value(e);
        }
    } else {
        return bad(r, key, "must be an integer or a list of integers");
    }
    for (int i = 0; i < n; i++)
        if (out[i] < lo || out[i] > hi)
            return bad(r, key, "has an entry out of range");
    return DF_OK;
}

/*  block_out_channels: the list that fixes the number of levels. */
static int get_levels(reader *r, int *levels, int *out)
{
    const json_t *v = json_object_get(r->root, "block_out_channels");
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > DF_SDXL_MAX_LEVELS)
        return bad(r, "block_out_channels", "must be a list of 1 to 6 integers");
    *levels = (int)json_array_size(v);
    return get_int_list(r, "block_out_channels", *levels, 1, 1 << 16, out);
}

/*  A list of block type names, each one of two known names. */
static int get_block_types(reader *r, const char *key, int n, const char *plain, const char *attn, int *out)
{
    const json_t *v = json_object_get(r->root, key);
    if (!json_is_array(v) || (int)json_array_size(v) != n)
        return bad(r, key, "must list one block type per level");
    for (int i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(v, (size_t)i));
        if (s && strcmp(s, plain) == 0)
            out[i] = 0;
        else if (s && attn && strcmp(s, attn) == 0)
            out[i] = 1;
        else
            return df_error_set(r->err, DF_E_UNSUPPORTED, "%s: \"%s\"[%d] = \"%s\" is not supported (%s%s%s)",
                                r->path, key, i, s ? s : "?", plain, attn ? " or " : "", attn ? attn : "");
    }
    return DF_OK;
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((rc = (x)) != DF_OK)                                                                                       \
            goto out;                                                                                                  \
    } while (0)

static int unet_from(reader *r_in, df_unet_config *cfg)
{
    reader r = *r_in;
    const char *path = r.path;
    df_error_t *err = r.err;
    int rc = DF_OK;
    memset(cfg, 0, sizeof *cfg);
    static const char *const silu[] = {"silu", NULL}, *const def[] = {"default", NULL},
                             *const pos[] = {"positional", NULL}, *const tt[] = {"text_time", NULL},
                             *const mid[] = {"UNetMidBlock2DCrossAttn", NULL};
    int dummy;
    TRY(get_choice(&r, "act_fn", silu, 0, &dummy));
    TRY(get_choice(&r, "resnet_time_scale_shift", def, 0, &dummy));
    TRY(get_choice(&r, "time_embedding_type", pos, 0, &dummy));
    TRY(get_choice(&r, "mid_block_type", mid, 0, &dummy));
    const json_t *add = json_object_get(r.root, "addition_embed_type");
    if (!add || json_is_null(add)) {
        rc = df_error_set(err, DF_E_UNSUPPORTED,
                          "%s: \"addition_embed_type\" is missing: an SDXL UNet has \"text_time\"", path);
        goto out;
    }
    TRY(get_choice(&r, "addition_embed_type", tt, 0, &dummy));
    TRY(require_null(&r, "class_embed_type"));
    TRY(require_null(&r, "encoder_hid_dim"));
    TRY(require_null(&r, "time_cond_proj_dim"));
    TRY(require_null(&r, "dual_cross_attention"));
    TRY(require_null(&r, "upcast_attention"));
    TRY(require_null(&r, "center_input_sample"));
    TRY(get_int(&r, "in_channels", 1, 64, 0, 0, &cfg->in_channels));
    TRY(get_int(&r, "out_channels", 1, 64, 0, 0, &cfg->out_channels));
    TRY(get_levels(&r, &cfg->levels, cfg->block_out));
    int n = cfg->levels;
    TRY(get_block_types(&r, "down_block_types", n, "DownBlock2D", "CrossAttnDownBlock2D", cfg->down_attn));
    TRY(get_block_types(&r, "up_block_types", n, "UpBlock2D", "CrossAttnUpBlock2D", cfg->up_attn));
    TRY(get_int(&r, "layers_per_block", 1, 8, 0, 0, &cfg->layers_per_block));
    TRY(get_int_list(&r, "transformer_layers_per_block", n, 1, 64, cfg->transformer_depth));
    /* diffusers reads num_attention_heads, falling back to attention_head_dim
     * (which SDXL's config uses for the head count). */
    const json_t *nh = json_object_get(r.root, "num_attention_heads");
    TRY(get_int_list(&r, nh && !json_is_null(nh) ? "num_attention_heads" : "attention_head_dim", n, 1, 256,
                     cfg->heads));
    TRY(get_int(&r, "cross_attention_dim", 1, 1 << 16, 0, 0, &cfg->cross_attention_dim));
    TRY(get_int(&r, "norm_num_groups", 1, 1024, 1, 32, &cfg->norm_groups));
    TRY(get_num(&r, "norm_eps", 1e-5, &cfg->norm_eps));
    TRY(get_int(&r, "addition_time_embed_dim", 2, 1 << 16, 0, 0, &cfg->addition_time_embed_dim));
    TRY(get_int(&r, "projection_class_embeddings_input_dim", 1, 1 << 20, 0, 0,
                &cfg->projection_class_embeddings_input_dim));
    TRY(get_bool(&r, "flip_sin_to_cos", 1, &cfg->flip_sin_to_cos));
    TRY(get_num(&r, "freq_shift", 0, &cfg->freq_shift));
    TRY(get_bool(&r, "use_linear_projection", 0, &cfg->use_linear_projection));
    TRY(get_int(&r, "sample_size", 1, 1 << 16, 1, 128, &cfg->sample_size));
    int conv_k;
    TRY(get_int(&r, "conv_in_kernel", 3, 3, 1, 3, &conv_k));
    TRY(get_int(&r, "conv_out_kernel", 3, 3, 1, 3, &conv_k));
    TRY(get_int(&r, "downsample_padding", 1, 1, 1, 1, &conv_k));
    double scale;
    TRY(get_num(&r, "mid_block_scale_factor", 1, &scale));
    if (scale != 1) {
        rc = df_error_set(err, DF_E_UNSUPPORTED, "%s: \"mid_block_scale_factor\" must be 1", path);
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (cfg->down_attn[i] != cfg->up_attn[n - 1 - i]) {
            rc = df_error_set(err, DF_E_UNSUPPORTED,
                              "%s: down block %d and up block %d disagree about cross-attention", path, i,
                              n - 1 - i);
            goto out;
        }
out:
    return rc;
}

int df_unet_config_load(const char *path, df_unet_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config(&r, path, err);
    if (rc == DF_OK)
        rc = unet_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

int df_unet_config_parse(const char *json, const char *label, df_unet_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config_text(&r, json, label, err);
    if (rc == DF_OK)
        rc = unet_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

static int vae_from(reader *r_in, df_vae_config *cfg)
{
    reader r = *r_in;
    int rc = DF_OK;
    memset(cfg, 0, sizeof *cfg);
    static const char *const silu[] = {"silu", NULL};
    int dummy, types[DF_SDXL_MAX_LEVELS];
    TRY(get_choice(&r, "act_fn", silu, 0, &dummy));
    TRY(get_int(&r, "in_channels", 1, 16, 0, 0, &cfg->in_channels));
    TRY(get_int(&r, "out_channels", 1, 16, 0, 0, &cfg->out_channels));
    TRY(get_int(&r, "latent_channels", 1, 64, 0, 0, &cfg->latent_channels));
    TRY(get_levels(&r, &cfg->levels, cfg->block_out));
    TRY(get_block_types(&r, "down_block_types", cfg->levels, "DownEncoderBlock2D", NULL, types));
    TRY(get_block_types(&r, "up_block_types", cfg->levels, "UpDecoderBlock2D", NULL, types));
    TRY(get_int(&r, "layers_per_block", 1, 8, 0, 0, &cfg->layers_per_block));
    TRY(get_int(&r, "norm_num_groups", 1, 1024, 1, 32, &cfg->norm_groups));
    TRY(get_num(&r, "scaling_factor", 0.18215, &cfg->scaling_factor));
    if (!(cfg->scaling_factor > 0)) {
        rc = bad(&r, "scaling_factor", "must be positive");
        goto out;
    }
    TRY(get_int(&r, "sample_size", 1, 1 << 16, 1, 1024, &cfg->sample_size));
    TRY(get_bool(&r, "force_upcast", 1, &cfg->force_upcast));
    TRY(require_null(&r, "shift_factor"));
    TRY(require_null(&r, "latents_mean"));
out:
    return rc;
}

int df_vae_config_load(const char *path, df_vae_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config(&r, path, err);
    if (rc == DF_OK)
        rc = vae_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

int df_vae_config_parse(const char *json, const char *label, df_vae_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config_text(&r, json, label, err);
    if (rc == DF_OK)
        rc = vae_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

static int clip_text_from(reader *r_in, df_clip_text_config *cfg)
{
    reader r = *r_in;
    const char *path = r.path;
    df_error_t *err = r.err;
    int rc = DF_OK;
    memset(cfg, 0, sizeof *cfg);
    static const char *const acts[] = {"gelu", "quick_gelu", NULL};
    TRY(get_int(&r, "vocab_size", 3, 1 << 24, 0, 0, &cfg->vocab_size));
    TRY(get_int(&r, "hidden_size", 1, 1 << 16, 0, 0, &cfg->hidden));
    TRY(get_int(&r, "intermediate_size", 1, 1 << 18, 0, 0, &cfg->intermediate));
    TRY(get_int(&r, "num_hidden_layers", 2, 256, 0, 0, &cfg->layers));
    TRY(get_int(&r, "num_attention_heads", 1, 256, 0, 0, &cfg->heads));
    TRY(get_int(&r, "max_position_embeddings", 77, 1 << 16, 1, 77, &cfg->max_positions));
    int act;
    TRY(get_choice(&r, "hidden_act", acts, 1, &act));
    cfg->quick_gelu = act == 1;
    TRY(get_num(&r, "layer_norm_eps", 1e-5, &cfg->layer_norm_eps));
    TRY(get_int(&r, "projection_dim", 1, 1 << 16, 1, cfg->hidden, &cfg->projection_dim));
    const json_t *arch = json_array_get(json_object_get(r.root, "architectures"), 0);
    const char *a = json_string_value(arch);
    if (a && strcmp(a, "CLIPTextModelWithProjection") == 0)
        cfg->with_projection = 1;
    else if (a && strcmp(a, "CLIPTextModel") != 0) {
        rc = df_error_set(err, DF_E_UNSUPPORTED, "%s: architecture \"%s\" is not a CLIP text model", path, a);
        goto out;
    }
    if (cfg->hidden % cfg->heads != 0)
        rc = bad(&r, "num_attention_heads", "must divide hidden_size");
out:
    return rc;
}

int df_clip_text_config_load(const char *path, df_clip_text_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config(&r, path, err);
    if (rc == DF_OK)
        rc = clip_text_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

int df_clip_text_config_parse(const char *json, const char *label, df_clip_text_config *cfg, df_error_t *err)
{
    reader r;
    int rc = open_config_text(&r, json, label, err);
    if (rc == DF_OK)
        rc = clip_text_from(&r, cfg);
    json_decref(r.root);
    return rc;
}

/* --------------------------------------------------------------- writing */

static json_t *int_list(const int *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *name_list(const int *flags, int n, const char *plain, const char *attn)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(flags[i] ? attn : plain));
    return a;
}

static int save(json_t *o, const char *path, df_error_t *err)
{
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0
                 ? DF_OK
                 : df_error_set(err, DF_E_IO, "%s: cannot write the config", path);
    json_decref(o);
    return rc;
}

static json_t *unet_json(const df_unet_config *c)
{
    int n = c->levels;
    json_t *o = json_object();
    json_object_set_new(o, "_class_name", json_string("UNet2DConditionModel"));
    json_object_set_new(o, "_diffusers_version", json_string("0.25.1"));
    json_object_set_new(o, "act_fn", json_string("silu"));
    json_object_set_new(o, "addition_embed_type", json_string("text_time"));
    json_object_set_new(o, "addition_embed_type_num_heads", json_integer(64));
    json_object_set_new(o, "addition_time_embed_dim", json_integer(c->addition_time_embed_dim));
    json_object_set_new(o, "attention_head_dim", int_list(c->heads, n));
    json_object_set_new(o, "block_out_channels", int_list(c->block_out, n));
    json_object_set_new(o, "center_input_sample", json_false());
    json_object_set_new(o, "class_embed_type", json_null());
    json_object_set_new(o, "conv_in_kernel", json_integer(3));
    json_object_set_new(o, "conv_out_kernel", json_integer(3));
    json_object_set_new(o, "cross_attention_dim", json_integer(c->cross_attention_dim));
    json_object_set_new(o, "down_block_types", name_list(c->down_attn, n, "DownBlock2D", "CrossAttnDownBlock2D"));
    json_object_set_new(o, "downsample_padding", json_integer(1));
    json_object_set_new(o, "dual_cross_attention", json_false());
    json_object_set_new(o, "flip_sin_to_cos", json_boolean(c->flip_sin_to_cos));
    json_object_set_new(o, "freq_shift", json_real(c->freq_shift));
    json_object_set_new(o, "in_channels", json_integer(c->in_channels));
    json_object_set_new(o, "layers_per_block", json_integer(c->layers_per_block));
    json_object_set_new(o, "mid_block_scale_factor", json_integer(1));
    json_object_set_new(o, "mid_block_type", json_string("UNetMidBlock2DCrossAttn"));
    json_object_set_new(o, "norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "norm_num_groups", json_integer(c->norm_groups));
    json_object_set_new(o, "num_attention_heads", json_null());
    json_object_set_new(o, "out_channels", json_integer(c->out_channels));
    json_object_set_new(o, "projection_class_embeddings_input_dim",
                        json_integer(c->projection_class_embeddings_input_dim));
    json_object_set_new(o, "resnet_time_scale_shift", json_string("default"));
    json_object_set_new(o, "sample_size", json_integer(c->sample_size));
    json_object_set_new(o, "time_embedding_type", json_string("positional"));
    json_object_set_new(o, "transformer_layers_per_block", int_list(c->transformer_depth, n));
    json_object_set_new(o, "up_block_types", name_list(c->up_attn, n, "UpBlock2D", "CrossAttnUpBlock2D"));
    json_object_set_new(o, "upcast_attention", json_null());
    json_object_set_new(o, "use_linear_projection", json_boolean(c->use_linear_projection));
    return o;
}

static json_t *vae_json(const df_vae_config *c)
{
    int n = c->levels, zeros[DF_SDXL_MAX_LEVELS] = {0};
    json_t *o = json_object();
    json_object_set_new(o, "_class_name", json_string("AutoencoderKL"));
    json_object_set_new(o, "_diffusers_version", json_string("0.25.1"));
    json_object_set_new(o, "act_fn", json_string("silu"));
    json_object_set_new(o, "block_out_channels", int_list(c->block_out, n));
    json_object_set_new(o, "down_block_types", name_list(zeros, n, "DownEncoderBlock2D", NULL));
    json_object_set_new(o, "force_upcast", json_boolean(c->force_upcast));
    json_object_set_new(o, "in_channels", json_integer(c->in_channels));
    json_object_set_new(o, "latent_channels", json_integer(c->latent_channels));
    json_object_set_new(o, "layers_per_block", json_integer(c->layers_per_block));
    json_object_set_new(o, "norm_num_groups", json_integer(c->norm_groups));
    json_object_set_new(o, "out_channels", json_integer(c->out_channels));
    json_object_set_new(o, "sample_size", json_integer(c->sample_size));
    json_object_set_new(o, "scaling_factor", json_real(c->scaling_factor));
    json_object_set_new(o, "up_block_types", name_list(zeros, n, "UpDecoderBlock2D", NULL));
    return o;
}

static json_t *clip_text_json(const df_clip_text_config *c)
{
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(c->with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("clip_text_model"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->heads));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_positions));
    json_object_set_new(o, "hidden_act", json_string(c->quick_gelu ? "quick_gelu" : "gelu"));
    json_object_set_new(o, "layer_norm_eps", json_real(c->layer_norm_eps));
    json_object_set_new(o, "projection_dim", json_integer(c->projection_dim));
    /* transformers' legacy ids (pooling then takes the argmax of the ids). */
    json_object_set_new(o, "bos_token_id", json_integer(0));
    json_object_set_new(o, "eos_token_id", json_integer(2));
    json_object_set_new(o, "pad_token_id", json_integer(1));
    json_object_set_new(o, "torch_dtype", json_string("float32"));
    return o;
}

int df_unet_config_save(const df_unet_config *c, const char *path, df_error_t *err)
{
    return save(unet_json(c), path, err);
}

int df_vae_config_save(const df_vae_config *c, const char *path, df_error_t *err)
{
    return save(vae_json(c), path, err);
}

int df_clip_text_config_save(const df_clip_text_config *c, const char *path, df_error_t *err)
{
    return save(clip_text_json(c), path, err);
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

char *df_unet_config_dump(const df_unet_config *c) { return dump(unet_json(c)); }
char *df_vae_config_dump(const df_vae_config *c) { return dump(vae_json(c)); }
char *df_clip_text_config_dump(const df_clip_text_config *c) { return dump(clip_text_json(c)); }

/* ------------------------------------------------------------ consistency */

int df_sdxl_config_check(const df_sdxl_config *cfg, df_error_t *err)
{
    const df_unet_config *u = &cfg->unet;
    if (u->cross_attention_dim != cfg->te1.hidden + cfg->te2.hidden)
        return df_error_set(err, DF_E_FORMAT,
                            "unet cross_attention_dim %d is not text_encoder hidden %d + text_encoder_2 hidden %d",
                            u->cross_attention_dim, cfg->te1.hidden, cfg->te2.hidden);
    if (!cfg->te2.with_projection)
        return df_error_set(err, DF_E_FORMAT, "text_encoder_2 must be a CLIPTextModelWithProjection (pooled text)");
    if (u->projection_class_embeddings_input_dim != 6 * u->addition_time_embed_dim + cfg->te2.projection_dim)
        return df_error_set(err, DF_E_FORMAT,
                            "unet projection_class_embeddings_input_dim %d is not 6 x %d + pooled %d",
                            u->projection_class_embeddings_input_dim, u->addition_time_embed_dim,
                            cfg->te2.projection_dim);
    for (int i = 0; i < u->levels; i++) {
        if (u->block_out[i] % u->norm_groups)
            return df_error_set(err, DF_E_FORMAT, "unet block_out_channels[%d] = %d is not a multiple of %d groups",
                                i, u->block_out[i], u->norm_groups);
        if (u->block_out[i] % u->heads[i])
            return df_error_set(err, DF_E_FORMAT, "unet level %d: %d channels do not split into %d heads", i,
                                u->block_out[i], u->heads[i]);
    }
    for (int i = 0; i < cfg->vae.levels; i++)
        if (cfg->vae.block_out[i] % cfg->vae.norm_groups)
            return df_error_set(err, DF_E_FORMAT, "vae block_out_channels[%d] = %d is not a multiple of %d groups", i,
                                cfg->vae.block_out[i], cfg->vae.norm_groups);
    if (cfg->te1.vocab_size != cfg->te2.vocab_size)
        return df_error_set(err, DF_E_FORMAT, "the text encoders' vocabularies differ (%d and %d)",
                            cfg->te1.vocab_size, cfg->te2.vocab_size);
    return DF_OK;
}
