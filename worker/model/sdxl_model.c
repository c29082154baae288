/*  sdxl_model.c - see sdxl_model.h. */
#include "sdxl_model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sgm_names.h"

struct _df_sdxl_t {
    char *path, *tokenizer_dir;
    df_sdxl_layout layout;
    df_sdxl_config cfg;
    df_safetensors_t *single; /* the single file, mapped once for every component */
};

void df_sdxl_destroy(df_sdxl_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_sdxl_t *m = *self_p;
    df_safetensors_destroy(&m->single);
    free(m->path);
    free(m->tokenizer_dir);
    free(m);
    *self_p = NULL;
}

static int load_folder_configs(df_sdxl_t *m, df_error_t *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/model_index.json", m->path);
    if (access(p, R_OK) != 0)
        return df_error_set(err, DF_E_NOT_FOUND, "%s: no model_index.json: not a diffusers model folder", m->path);
    snprintf(p, sizeof p, "%s/unet/config.json", m->path);
    int rc = df_unet_config_load(p, &m->cfg.unet, err);
    snprintf(p, sizeof p, "%s/vae/config.json", m->path);
    if (rc == DF_OK)
        rc = df_vae_config_load(p, &m->cfg.vae, err);
    snprintf(p, sizeof p, "%s/text_encoder/config.json", m->path);
    if (rc == DF_OK)
        rc = df_clip_text_config_load(p, &m->cfg.te1, err);
    snprintf(p, sizeof p, "%s/text_encoder_2/config.json", m->path);
    if (rc == DF_OK)
        rc = df_clip_text_config_load(p, &m->cfg.te2, err);
    return rc;
}

/*  Configs from the file's metadata when dreamfleet wrote it, else SDXL 1.0. */
static int load_single_configs(df_sdxl_t *m, df_error_t *err)
{
    if (!(m->single = df_safetensors_open(m->path, err)))
        return err ? err->code : DF_E_IO;
    const char *u = df_safetensors_metadata(m->single, DF_SGM_META_UNET);
    const char *v = df_safetensors_metadata(m->single, DF_SGM_META_VAE);
    const char *t1 = df_safetensors_metadata(m->single, DF_SGM_META_TE1);
    const char *t2 = df_safetensors_metadata(m->single, DF_SGM_META_TE2);
    if (!u || !v || !t1 || !t2) {
        df_sdxl_config_preset(DF_SDXL_PRESET_SDXL, 0, &m->cfg);
        return DF_OK;
    }
    char label[4200];
    snprintf(label, sizeof label, "%s metadata %s", m->path, DF_SGM_META_UNET);
    int rc = df_unet_config_parse(u, label, &m->cfg.unet, err);
    snprintf(label, sizeof label, "%s metadata %s", m->path, DF_SGM_META_VAE);
    if (rc == DF_OK)
        rc = df_vae_config_parse(v, label, &m->cfg.vae, err);
    snprintf(label, sizeof label, "%s metadata %s", m->path, DF_SGM_META_TE1);
    if (rc == DF_OK)
        rc = df_clip_text_config_parse(t1, label, &m->cfg.te1, err);
    snprintf(label, sizeof label, "%s metadata %s", m->path, DF_SGM_META_TE2);
    if (rc == DF_OK)
        rc = df_clip_text_config_parse(t2, label, &m->cfg.te2, err);
    return rc;
}

df_sdxl_t *df_sdxl_open(const char *path, const char *tokenizer_dir, df_error_t *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        df_error_set(err, DF_E_NOT_FOUND, "%s: no such model (a diffusers folder or a .safetensors file)", path);
        return NULL;
    }
    df_sdxl_t *m = calloc(1, sizeof *m);
    if (m) {
        m->path = strdup(path);
        m->tokenizer_dir = tokenizer_dir ? strdup(tokenizer_dir) : NULL;
    }
    if (!m || !m->path || (tokenizer_dir && !m->tokenizer_dir)) {
        df_sdxl_destroy(&m);
        df_error_set(err, DF_E_NOMEM, "model: out of memory");
        return NULL;
    }
    m->layout = S_ISDIR(sb.st_mode) ? DF_SDXL_DIFFUSERS : DF_SDXL_SINGLE_FILE;
    int rc = m->layout == DF_SDXL_DIFFUSERS ? load_folder_configs(m, err) : load_single_configs(m, err);
    if (rc == DF_OK)
        rc = df_sdxl_config_check(&m->cfg, err);
    if (rc != DF_OK) {
        df_error_prefix(err, "model %s", path);
        df_sdxl_destroy(&m);
    }
    return m;
}

df_sdxl_layout df_sdxl_layout_of(const df_sdxl_t *self) { return self->layout; }
const df_sdxl_config *df_sdxl_config_of(const df_sdxl_t *self) { return &self->cfg; }

/* ------------------------------------------------- single-file layouts */

typedef struct {
    const df_sdxl_config *cfg;
    int component; /* 0 unet, 1 vae, 2 te1, 3 te2 */
} sgm_ctx;

static int sgm_locate(void *vctx, const char *internal, df_sgm_ref *ref)
{
    const sgm_ctx *c = vctx;
    switch (c->component) {
    case 0: return df_sgm_unet(&c->cfg->unet, internal, ref);
    case 1: return df_sgm_vae(&c->cfg->vae, internal, ref);
    case 2: return df_sgm_te1(internal, ref);
    default: return df_sgm_te2(internal, ref);
    }
}

static int sgm_owns(void *vctx, const char *name)
{
    static const char *const prefixes[4] = {DF_SGM_UNET, DF_SGM_VAE, DF_SGM_TE1, DF_SGM_TE2};
    const sgm_ctx *c = vctx;
    const char *prefix = prefixes[c->component];
    if (strncmp(name, prefix, strlen(prefix)) != 0)
        return 0;
    const char *rest = name + strlen(prefix);
    /* Buffers the original code saved next to the weights. */
    if (strcmp(rest, "text_model.embeddings.position_ids") == 0 || strcmp(rest, "logit_scale") == 0 ||
        strcmp(rest, "attn_mask") == 0)
        return -1;
    return 1;
}

/* --------------------------------------------------------------- parts */

/*  The component's weights file in the folder layout (the fp16 variant when
 *  the plain one is absent). */
static df_safetensors_t *open_part(const df_sdxl_t *m, const char *sub, const char *base, df_error_t *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/%s.safetensors", m->path, sub, base);
    if (access(p, R_OK) != 0)
        snprintf(p, sizeof p, "%s/%s/%s.fp16.safetensors", m->path, sub, base);
    return df_safetensors_open(p, err);
}

df_unet_t *df_sdxl_load_unet(df_sdxl_t *self, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                             df_error_t *err)
{
    if (self->layout == DF_SDXL_SINGLE_FILE) {
        sgm_ctx c = {&self->cfg, 0};
        df_weight_layout l = {sgm_locate, sgm_owns, &c};
        return df_unet_from(dev, xfer, &self->cfg.unet, self->single, &l, store, err);
    }
    df_safetensors_t *st = open_part(self, "unet", "diffusion_pytorch_model", err);
    df_unet_t *u = st ? df_unet_from(dev, xfer, &self->cfg.unet, st, NULL, store, err) : NULL;
    df_safetensors_destroy(&st);
    return u;
}

df_vae_t *df_sdxl_load_vae(df_sdxl_t *self, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                           df_error_t *err)
{
    if (self->layout == DF_SDXL_SINGLE_FILE) {
        sgm_ctx c = {&self->cfg, 1};
        df_weight_layout l = {sgm_locate, sgm_owns, &c};
        return df_vae_from(dev, xfer, &self->cfg.vae, self->single, &l, store, err);
    }
    df_safetensors_t *st = open_part(self, "vae", "diffusion_pytorch_model", err);
    df_vae_t *v = st ? df_vae_from(dev, xfer, &self->cfg.vae, st, NULL, store, err) : NULL;
    df_safetensors_destroy(&st);
    return v;
}

df_clip_text_t *df_sdxl_load_text_encoder(df_sdxl_t *self, int which, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                          df_dtype store, df_error_t *err)
{
    if (which != 1 && which != 2) {
        df_error_set(err, DF_E_INVALID, "model: text encoder %d (1 or 2)", which);
        return NULL;
    }
    const df_clip_text_config *cfg = which == 1 ? &self->cfg.te1 : &self->cfg.te2;
    if (self->layout == DF_SDXL_SINGLE_FILE) {
        sgm_ctx c = {&self->cfg, which + 1};
        df_weight_layout l = {sgm_locate, sgm_owns, &c};
        return df_clip_text_from(dev, xfer, cfg, self->single, &l, store, err);
    }
    df_safetensors_t *st = open_part(self, which == 1 ? "text_encoder" : "text_encoder_2", "model", err);
    df_clip_text_t *te = st ? df_clip_text_from(dev, xfer, cfg, st, df_clip_text_diffusers_layout(), store, err) : NULL;
    df_safetensors_destroy(&st);
    return te;
}

/*  The pad token a tokenizer folder names (tokenizer_config.json, then
 *  special_tokens_map.json); NULL when neither says. */
static char *pad_token_of(const char *dir)
{
    static const char *const files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 2; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        json_t *j = json_load_file(p, 0, NULL);
        const json_t *pad = json_object_get(j, "pad_token");
        /* transformers writes either a string or {"content": ...}. */
        const char *s = json_is_string(pad) ? json_string_value(pad)
                                            : json_string_value(json_object_get(pad, "content"));
        char *out = s ? strdup(s) : NULL;
        json_decref(j);
        if (out)
            return out;
    }
    return NULL;
}

df_clip_tokenizer_t *df_sdxl_load_tokenizer(df_sdxl_t *self, int which, int32_t *pad_id, df_error_t *err)
{
    char dir[4096], v[4200], mpath[4200];
    if (self->layout == DF_SDXL_DIFFUSERS && !self->tokenizer_dir)
        snprintf(dir, sizeof dir, "%s/%s", self->path, which == 1 ? "tokenizer" : "tokenizer_2");
    else if (self->tokenizer_dir)
        snprintf(dir, sizeof dir, "%s", self->tokenizer_dir);
    else {
        df_error_set(err, DF_E_NOT_FOUND,
                     "%s: a single-file checkpoint carries no tokenizer; give one (--tokenizer DIR: vocab.json and "
                     "merges.txt, or bpe_simple_vocab_16e6.txt.gz)",
                     self->path);
        return NULL;
    }
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
    df_clip_tokenizer_t *t;
    if (access(v, R_OK) == 0) {
        t = df_clip_tokenizer_load(v, mpath, err);
    } else {
        snprintf(mpath, sizeof mpath, "%s/bpe_simple_vocab_16e6.txt.gz", dir);
        t = df_clip_tokenizer_load_bpe_gz(mpath, err);
    }
    if (!t)
        return NULL;
    /* SDXL's tokenizer 2 pads with "!"; tokenizer 1 with end-of-text. A
     * folder's own config has the last word; a bare vocabulary given for a
     * single file follows SDXL. */
    char *pad = self->tokenizer_dir && self->layout == DF_SDXL_SINGLE_FILE ? NULL : pad_token_of(dir);
    int32_t id = pad ? df_clip_tokenizer_id(t, pad) : (which == 1 ? df_clip_tokenizer_eos(t) : df_clip_tokenizer_id(t, "!"));
    free(pad);
    if (id < 0) {
        df_error_set(err, DF_E_FORMAT, "%s: the pad token is not in the vocabulary", dir);
        df_clip_tokenizer_destroy(&t);
        return NULL;
    }
    *pad_id = id;
    return t;
}
