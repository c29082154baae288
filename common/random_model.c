/*  random_model.c - see random_model.h. */
#include "random_model.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe_train.h"
#include "fsutil.h"
#include "half.h"
#include "philox.h"
#include "safetensors.h"
#include "sdxl_arch.h"
#include "sgm_names.h"
#include "sha256.h"

/* Merges in the tiny vocabulary: enough that common words are one token. */
#define TINY_MERGES 400

typedef struct {
    const df_arch_list *arch;
    uint64_t seed;
    df_dtype dtype;
} fill_ctx;

/*  Stream id of a tensor: the first 8 bytes of SHA-256(name), so a tensor's
 *  values do not depend on which others the model has. */
static uint64_t name_stream(const char *name)
{
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(name, strlen(name), d);
    uint64_t s = 0;
    for (int i = 0; i < 8; i++)
        s = s << 8 | d[i];
    return s;
}

/*  The values of internal tensor t, scaled so activations keep unit size
 *  through any depth: weights N(0, 1/fan_in), norms near identity, small
 *  biases. */
static void gen_values(const df_arch_tensor *t, uint64_t seed, float *v)
{
    uint64_t n = df_arch_numel(t);
    df_philox_fill_normal(v, n, seed, name_stream(t->name));
    double fan_in = 1;
    for (int i = 1; i < t->ndim; i++)
        fan_in *= (double)t->shape[i];
    double scale = 1, shift = 0;
    switch (t->role) {
    case DF_ARCH_WEIGHT: scale = 1 / sqrt(fan_in); break;
    case DF_ARCH_BIAS: scale = 0.1; break;
    case DF_ARCH_NORM_WEIGHT: scale = 0.1, shift = 1; break;
    case DF_ARCH_NORM_BIAS: scale = 0.1; break;
    case DF_ARCH_EMBEDDING: scale = 0.5; break;
    }
    for (uint64_t i = 0; i < n; i++)
        v[i] = (float)(shift + scale * v[i]);
}

static int fill_tensor(void *vctx, const char *name, void *dst, uint64_t nbytes, df_error_t *err)
{
    const fill_ctx *c = vctx;
    const df_arch_tensor *t = df_arch_find(c->arch, name);
    if (!t)
        return df_error_set(err, DF_E_INVALID, "random model: no tensor '%s'", name);
    uint64_t n = df_arch_numel(t);
    float *v = c->dtype == DF_F32 ? dst : malloc(n * sizeof *v);
    if (!v)
        return df_error_set(err, DF_E_NOMEM, "random model: out of memory for '%s'", name);
    gen_values(t, c->seed, v);
    if (c->dtype == DF_F16) {
        df_float_to_half_n(v, dst, n);
        free(v);
    }
    (void)nbytes;
    return DF_OK;
}

static int write_weights(const df_arch_list *arch, uint64_t seed, df_dtype dtype, const char *path,
                         df_error_t *err)
{
    fill_ctx ctx = {arch, seed, dtype};
    df_st_writer_t *w = df_st_writer_new();
    if (!w)
        return df_error_set(err, DF_E_NOMEM, "out of memory");
    int rc = df_st_writer_set_metadata(w, "format", "pt", err);
    for (size_t i = 0; rc == DF_OK && i < arch->count; i++) {
        const df_arch_tensor *t = &arch->items[i];
        rc = df_st_writer_add_fill(w, t->name, dtype, t->ndim, t->shape, fill_tensor, &ctx, err);
    }
    if (rc == DF_OK)
        rc = df_st_writer_write(w, path, err);
    df_st_writer_destroy(&w);
    return rc;
}

static int write_json(json_t *o, const char *path, df_error_t *err)
{
    int rc = o && json_dump_file(o, path, JSON_INDENT(2)) == 0 ? DF_OK
                                                                  : df_error_set(err, DF_E_IO, "%s: cannot write", path);
    json_decref(o);
    return rc;
}

static json_t *pair(const char *lib, const char *cls)
{
    return json_pack("[s,s]", lib, cls);
}

static int write_model_index(const char *dir, df_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    json_t *o = json_object();
    json_object_set_new(o, "_class_name", json_string("StableDiffusionXLPipeline"));
    json_object_set_new(o, "_diffusers_version", json_string("0.25.1"));
    json_object_set_new(o, "force_zeros_for_empty_prompt", json_true());
    json_object_set_new(o, "add_watermarker", json_null());
    json_object_set_new(o, "scheduler", pair("diffusers", "EulerDiscreteScheduler"));
    json_object_set_new(o, "text_encoder", pair("transformers", "CLIPTextModel"));
    json_object_set_new(o, "text_encoder_2", pair("transformers", "CLIPTextModelWithProjection"));
    json_object_set_new(o, "tokenizer", pair("transformers", "CLIPTokenizer"));
    json_object_set_new(o, "tokenizer_2", pair("transformers", "CLIPTokenizer"));
    json_object_set_new(o, "unet", pair("diffusers", "UNet2DConditionModel"));
    json_object_set_new(o, "vae", pair("diffusers", "AutoencoderKL"));
    return write_json(o, path, err);
}

static int write_scheduler(const char *dir, df_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/scheduler", dir);
    int rc = df_mkdirs(path, err);
    if (rc != DF_OK)
        return rc;
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    json_t *o = json_object();
    json_object_set_new(o, "_class_name", json_string("EulerDiscreteScheduler"));
    json_object_set_new(o, "_diffusers_version", json_string("0.25.1"));
    json_object_set_new(o, "beta_start", json_real(0.00085));
    json_object_set_new(o, "beta_end", json_real(0.012));
    json_object_set_new(o, "beta_schedule", json_string("scaled_linear"));
    json_object_set_new(o, "clip_sample", json_false());
    json_object_set_new(o, "interpolation_type", json_string("linear"));
    json_object_set_new(o, "num_train_timesteps", json_integer(1000));
    json_object_set_new(o, "prediction_type", json_string("epsilon"));
    json_object_set_new(o, "sample_max_value", json_real(1.0));
    json_object_set_new(o, "set_alpha_to_one", json_false());
    json_object_set_new(o, "skip_prk_steps", json_true());
    json_object_set_new(o, "steps_offset", json_integer(1));
    json_object_set_new(o, "timestep_spacing", json_string("leading"));
    json_object_set_new(o, "trained_betas", json_null());
    json_object_set_new(o, "use_karras_sigmas", json_false());
    return write_json(o, path, err);
}

/*  tokenizer/ and tokenizer_2/: the same vocabulary; they differ in padding
 *  (end-of-text for the first, "!" = id 0 for the second, as SDXL's). */
static int write_tokenizers(const char *dir, int *vocab_size, df_error_t *err)
{
    static const char *const subdirs[2] = {"tokenizer", "tokenizer_2"};
    static const char *const pads[2] = {"<|endoftext|>", "!"};
    for (int i = 0; i < 2; i++) {
        char sub[4096], path[4200];
        snprintf(sub, sizeof sub, "%s/%s", dir, subdirs[i]);
        int rc = df_mkdirs(sub, err);
        if (rc == DF_OK)
            rc = df_bpe_train_write(df_bpe_default_corpus(), TINY_MERGES, sub, vocab_size, err);
        if (rc != DF_OK)
            return rc;
        json_t *special = json_pack("{s:s,s:s,s:s,s:s}", "bos_token", "<|startoftext|>", "eos_token",
                                    "<|endoftext|>", "unk_token", "<|endoftext|>", "pad_token", pads[i]);
        snprintf(path, sizeof path, "%s/special_tokens_map.json", sub);
        if ((rc = write_json(special, path, err)) != DF_OK)
            return rc;
        json_t *cfg = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:b}", "tokenizer_class", "CLIPTokenizer", "bos_token",
                                "<|startoftext|>", "eos_token", "<|endoftext|>", "unk_token", "<|endoftext|>",
                                "pad_token", pads[i], "model_max_length", 77, "do_lower_case", 1);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", sub);
        if ((rc = write_json(cfg, path, err)) != DF_OK)
            return rc;
    }
    return DF_OK;
}

static int dir_is_empty_or_absent(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

typedef int (*arch_fn)(const void *cfg, df_arch_list *list, df_error_t *err);
typedef int (*save_fn)(const void *cfg, const char *path, df_error_t *err);

/* Adapters so one writer serves the three kinds of component. */
static int unet_arch(const void *c, df_arch_list *l, df_error_t *e) { return df_arch_unet(c, l, e); }
static int vae_arch(const void *c, df_arch_list *l, df_error_t *e) { return df_arch_vae(c, l, e); }
static int clip_arch(const void *c, df_arch_list *l, df_error_t *e) { return df_arch_clip_text(c, l, e); }
static int unet_save(const void *c, const char *p, df_error_t *e) { return df_unet_config_save(c, p, e); }
static int vae_save(const void *c, const char *p, df_error_t *e) { return df_vae_config_save(c, p, e); }
static int clip_save(const void *c, const char *p, df_error_t *e) { return df_clip_text_config_save(c, p, e); }

/*  One component folder: config.json and its weights file. */
static int write_component(const char *dir, const char *sub, const char *weights_name, const void *cfg,
                           arch_fn arch, save_fn save, uint64_t seed, df_dtype dtype, df_error_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    int rc = df_mkdirs(path, err);
    if (rc != DF_OK)
        return rc;
    snprintf(path, sizeof path, "%s/%s/config.json", dir, sub);
    if ((rc = save(cfg, path, err)) != DF_OK)
        return rc;
    df_arch_list list = {0};
    rc = arch(cfg, &list, err);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, weights_name);
    if (rc == DF_OK)
        rc = write_weights(&list, seed, dtype, path, err);
    df_arch_list_free(&list);
    return rc;
}

int df_random_model_create(const char *dir, df_sdxl_preset preset, uint64_t seed, df_dtype dtype, df_error_t *err)
{
    if (dtype != DF_F32 && dtype != DF_F16)
        return df_error_set(err, DF_E_INVALID, "random model: weights are f32 or f16, not %s", df_dtype_name(dtype));
    if (!dir_is_empty_or_absent(dir))
        return df_error_set(err, DF_E_INVALID, "%s: exists and is not empty; choose a new directory", dir);
    int rc = df_mkdirs(dir, err);
    int vocab = 0;
    if (rc == DF_OK)
        rc = write_tokenizers(dir, &vocab, err);
    df_sdxl_config cfg;
    df_sdxl_config_preset(preset, vocab, &cfg);
    if (rc == DF_OK)
        rc = df_sdxl_config_check(&cfg, err);
    /* Each component gets its own seed so they are not copies of each other
     * where names coincide. */
    if (rc == DF_OK)
        rc = write_component(dir, "unet", "diffusion_pytorch_model.safetensors", &cfg.unet,
                             unet_arch, unet_save, seed, dtype, err);
    if (rc == DF_OK)
        rc = write_component(dir, "vae", "diffusion_pytorch_model.safetensors", &cfg.vae, vae_arch, vae_save, seed + 1, dtype, err);
    if (rc == DF_OK)
        rc = write_component(dir, "text_encoder", "model.safetensors", &cfg.te1, clip_arch,
                             clip_save, seed + 2, dtype, err);
    if (rc == DF_OK)
        rc = write_component(dir, "text_encoder_2", "model.safetensors", &cfg.te2, clip_arch,
                             clip_save, seed + 3, dtype, err);
    if (rc == DF_OK)
        rc = write_scheduler(dir, err);
    if (rc == DF_OK)
        rc = write_model_index(dir, err);
    return rc;
}

/* ------------------------------------------------------------ single file */

/*  One tensor of the single file: an internal tensor as it is, three fused
 *  (q, k, v of OpenCLIP's in_proj), or one transposed (its projection). */
typedef struct {
    const df_arch_tensor *src[3];
    int nsrc, transpose;
    char file[192]; /* its name in the single file */
    uint64_t seed;
    df_dtype dtype;
    int ndim;
    int64_t shape[4];
} sf_entry;

static int fill_single(void *vctx, const char *name, void *dst, uint64_t nbytes, df_error_t *err)
{
    const sf_entry *e = vctx;
    uint64_t part = df_arch_numel(e->src[0]), n = part * (uint64_t)e->nsrc;
    float *v = malloc(n * sizeof *v), *t = e->transpose ? malloc(n * sizeof *t) : NULL;
    if (!v || (e->transpose && !t)) {
        free(v), free(t);
        return df_error_set(err, DF_E_NOMEM, "random model: out of memory for '%s'", name);
    }
    for (int i = 0; i < e->nsrc; i++)
        gen_values(e->src[i], e->seed, v + i * part);
    const float *out = v;
    if (t) { /* the internal [P, D] stored as [D, P] */
        uint64_t rows = (uint64_t)e->src[0]->shape[0], cols = (uint64_t)e->src[0]->shape[1];
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++)
                t[c * rows + r] = v[r * cols + c];
        out = t;
    }
    if (e->dtype == DF_F16)
        df_float_to_half_n(out, dst, n);
    else
        memcpy(dst, out, n * 4);
    free(v), free(t);
    (void)nbytes;
    return DF_OK;
}

typedef int (*sgm_fn)(const void *cfg, const char *internal, df_sgm_ref *ref);
static int sgm_unet(const void *c, const char *n, df_sgm_ref *r) { return df_sgm_unet(c, n, r); }
static int sgm_vae(const void *c, const char *n, df_sgm_ref *r) { return df_sgm_vae(c, n, r); }
static int sgm_te1(const void *c, const char *n, df_sgm_ref *r) { (void)c; return df_sgm_te1(n, r); }
static int sgm_te2(const void *c, const char *n, df_sgm_ref *r) { (void)c; return df_sgm_te2(n, r); }

/*  Lists one component's tensors under their SGM names. */
static int add_component(const df_arch_list *arch, const void *cfg, sgm_fn map, uint64_t seed,
                         df_dtype dtype, sf_entry *entries, size_t *used, df_error_t *err)
{
    for (size_t i = 0; i < arch->count; i++) {
        const df_arch_tensor *t = &arch->items[i];
        df_sgm_ref ref;
        if (map(cfg, t->name, &ref) != 0)
            return df_error_set(err, DF_E_INVALID, "random model: no single-file name for '%s'", t->name);
        if (ref.part > 0) { /* k and v join the entry q opened (weight and bias each have one) */
            sf_entry *q = NULL;
            for (size_t k = *used; k-- > 0 && !q;)
                if (strcmp(entries[k].file, ref.name) == 0)
                    q = &entries[k];
            if (!q || q->nsrc != ref.part)
                return df_error_set(err, DF_E_INVALID, "random model: '%s' comes before its q part", t->name);
            q->src[q->nsrc++] = t;
            q->shape[0] += t->shape[0];
            continue;
        }
        sf_entry *e = &entries[(*used)++];
        memset(e, 0, sizeof *e);
        e->src[0] = t;
        e->nsrc = 1;
        e->seed = seed;
        e->dtype = dtype;
        e->transpose = ref.transpose;
        memcpy(e->file, ref.name, sizeof e->file);
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        if (ref.transpose) {
            e->shape[0] = t->shape[1];
            e->shape[1] = t->shape[0];
        }
        /* The original VAE's attention projections are 1x1 convolutions. */
        if (map == sgm_vae && t->ndim == 2)
            e->ndim = 4, e->shape[2] = e->shape[3] = 1;
    }
    return DF_OK;
}

int df_random_model_create_single(const char *path, df_sdxl_preset preset, uint64_t seed, df_dtype dtype,
                                  df_error_t *err)
{
    if (dtype != DF_F32 && dtype != DF_F16)
        return df_error_set(err, DF_E_INVALID, "random model: weights are f32 or f16, not %s", df_dtype_name(dtype));
    int vocab = 0;
    int rc = df_bpe_train_write(df_bpe_default_corpus(), TINY_MERGES, NULL, &vocab, err);
    if (rc != DF_OK)
        return rc;
    df_sdxl_config cfg;
    df_sdxl_config_preset(preset, vocab, &cfg);
    df_arch_list lists[4] = {{0}};
    rc = df_arch_unet(&cfg.unet, &lists[0], err);
    if (rc == DF_OK)
        rc = df_arch_vae(&cfg.vae, &lists[1], err);
    if (rc == DF_OK)
        rc = df_arch_clip_text(&cfg.te1, &lists[2], err);
    if (rc == DF_OK)
        rc = df_arch_clip_text(&cfg.te2, &lists[3], err);
    size_t total = lists[0].count + lists[1].count + lists[2].count + lists[3].count, used = 0;
    sf_entry *entries = calloc(total ? total : 1, sizeof *entries);
    df_st_writer_t *w = df_st_writer_new();
    if (rc == DF_OK && (!entries || !w))
        rc = df_error_set(err, DF_E_NOMEM, "random model: out of memory");
    const void *cfgs[4] = {&cfg.unet, &cfg.vae, &cfg.te1, &cfg.te2};
    static const sgm_fn maps[4] = {sgm_unet, sgm_vae, sgm_te1, sgm_te2};
    /* The same seeds per component as the folder layout: the same values. */
    for (int c = 0; c < 4 && rc == DF_OK; c++)
        rc = add_component(&lists[c], cfgs[c], maps[c], seed + (uint64_t)c, dtype, entries, &used, err);
    /* Only now are the fused entries complete (k and v widen q's). */
    for (size_t i = 0; i < used && rc == DF_OK; i++)
        rc = df_st_writer_add_fill(w, entries[i].file, dtype, entries[i].ndim, entries[i].shape, fill_single,
                                   &entries[i], err);
    /* Configs travel in the metadata: a single file has no config.json. */
    char *texts[4] = {df_unet_config_dump(&cfg.unet), df_vae_config_dump(&cfg.vae), df_clip_text_config_dump(&cfg.te1),
                      df_clip_text_config_dump(&cfg.te2)};
    static const char *const keys[4] = {DF_SGM_META_UNET, DF_SGM_META_VAE, DF_SGM_META_TE1, DF_SGM_META_TE2};
    for (int c = 0; c < 4 && rc == DF_OK; c++)
        rc = texts[c] ? df_st_writer_set_metadata(w, keys[c], texts[c], err)
                      : df_error_set(err, DF_E_NOMEM, "random model: out of memory");
    if (rc == DF_OK)
        rc = df_st_writer_set_metadata(w, "format", "pt", err);
    if (rc == DF_OK)
        rc = df_st_writer_write(w, path, err);
    for (int c = 0; c < 4; c++) {
        free(texts[c]);
        df_arch_list_free(&lists[c]);
    }
    df_st_writer_destroy(&w);
    free(entries);
    return rc;
}
