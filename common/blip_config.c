/*  blip_config.c - see blip_config.h. */
#include "blip_config.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "log.h"

/*  An integer key of obj within [lo, hi], or def when absent. */
static int get_int(const char *path, const char *section, const json_t *obj, const char *key, int def, int lo, int hi,
                   int *out, df_error_t *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return DF_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return df_error_set(err, DF_E_FORMAT, "%s: %s.%s wants an integer from %d to %d", path, section, key, lo, hi);
    *out = (int)json_integer_value(v);
    return DF_OK;
}

static int get_eps(const char *path, const char *section, const json_t *obj, double def, double *out, df_error_t *err)
{
    const json_t *v = json_object_get(obj, "layer_norm_eps");
    *out = v && json_is_number(v) ? json_number_value(v) : def;
    if (v && !json_is_null(v) && !json_is_number(v))
        return df_error_set(err, DF_E_FORMAT, "%s: %s.layer_norm_eps is not a number", path, section);
    if (!(*out > 0 && *out < 1))
        return df_error_set(err, DF_E_FORMAT, "%s: %s.layer_norm_eps %g is out of range", path, section, *out);
    return DF_OK;
}

/*  The activation must be the exact GELU (what both towers use). */
static int check_act(const char *path, const char *section, const json_t *obj, df_error_t *err)
{
    const json_t *v = json_object_get(obj, "hidden_act");
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "gelu") == 0))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: %s.hidden_act %s: only \"gelu\" is supported", path, section,
                            json_is_string(v) ? json_string_value(v) : "(not a string)");
    return DF_OK;
}

/*  heads must divide hidden into heads the attention kernel takes. */
static int check_heads(const char *path, const char *section, int hidden, int heads, df_error_t *err)
{
    if (hidden % heads || (hidden / heads) % 4 || hidden / heads > 128)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: %s: %d heads of a %d-wide state (heads of 4 to 128 channels, "
                            "a multiple of 4, are supported)", path, section, heads, hidden);
    return DF_OK;
}

int df_blip_config_load(const char *path, df_blip_config *c, df_error_t *err)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return df_error_set(err, strstr(jerr.text, "unable to open") ? DF_E_NOT_FOUND : DF_E_FORMAT, "%s: %s (line %d)",
                            path, jerr.text, jerr.line);
    const json_t *type = json_object_get(root, "model_type");
    const json_t *vis = json_object_get(root, "vision_config"), *txt = json_object_get(root, "text_config");
    int rc = DF_OK;
    if (!json_is_object(root) || !type || !json_is_string(type) || strcmp(json_string_value(type), "blip") != 0)
        rc = df_error_set(err, DF_E_FORMAT, "%s: not a BLIP model's config (model_type is not \"blip\")", path);
    else if (!json_is_object(vis) || !json_is_object(txt))
        rc = df_error_set(err, DF_E_FORMAT, "%s: no vision_config and text_config", path);
    /* transformers' defaults for what the file leaves out. */
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "hidden_size", 768, 4, 8192, &c->vision.hidden, err);
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "intermediate_size", 3072, 1, 65536, &c->vision.intermediate, err);
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "num_hidden_layers", 12, 1, 256, &c->vision.layers, err);
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "num_attention_heads", 12, 1, 256, &c->vision.heads, err);
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "image_size", 384, 8, 4096, &c->vision.image_size, err);
    if (rc == DF_OK) rc = get_int(path, "vision_config", vis, "patch_size", 16, 1, 256, &c->vision.patch_size, err);
    if (rc == DF_OK) rc = get_eps(path, "vision_config", vis, 1e-5, &c->vision.eps, err);
    if (rc == DF_OK) rc = check_act(path, "vision_config", vis, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "vocab_size", 30524, 8, 1 << 22, &c->text.vocab, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "hidden_size", 768, 4, 8192, &c->text.hidden, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "intermediate_size", 3072, 1, 65536, &c->text.intermediate, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "num_hidden_layers", 12, 1, 256, &c->text.layers, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "num_attention_heads", 8, 1, 256, &c->text.heads, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "max_position_embeddings", 512, 2, 65536, &c->text.max_positions, err);
    if (rc == DF_OK) rc = get_eps(path, "text_config", txt, 1e-12, &c->text.eps, err);
    if (rc == DF_OK) rc = check_act(path, "text_config", txt, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "bos_token_id", 30522, 0, 1 << 22, &c->text.bos, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "sep_token_id", 102, 0, 1 << 22, &c->text.sep, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "pad_token_id", 0, 0, 1 << 22, &c->text.pad, err);
    if (rc == DF_OK) rc = get_int(path, "text_config", txt, "max_length", 20, 2, 1 << 16, &c->max_length, err);
    if (rc == DF_OK && c->vision.image_size % c->vision.patch_size)
        rc = df_error_set(err, DF_E_FORMAT, "%s: vision_config: image_size %d is not a whole number of %d px patches",
                          path, c->vision.image_size, c->vision.patch_size);
    /* The decoder attends to the image encoder's output, whatever the file
     * says (the library sets it so too). */
    c->text.encoder_hidden = c->vision.hidden;
    /* Generation settings other than the length are the reference's, not
     * ours: captions here are greedy. Said, not refused, so a checkpoint
     * that carries them still captions. */
    static const struct {
        const char *key;
        double def;
    } gen[] = {{"num_beams", 1}, {"do_sample", 0}, {"repetition_penalty", 1}, {"no_repeat_ngram_size", 0},
               {"min_length", 0}, {"encoder_no_repeat_ngram_size", 0}};
    for (size_t i = 0; rc == DF_OK && i < sizeof gen / sizeof gen[0]; i++) {
        const json_t *v = json_object_get(txt, gen[i].key);
        const double x = json_is_number(v) ? json_number_value(v) : json_is_true(v) ? 1 : gen[i].def;
        if (x != gen[i].def)
            df_warn("%s: text_config.%s is %g; captions here are greedy, without it", path, gen[i].key, x);
    }
    if (rc == DF_OK && (c->text.bos >= c->text.vocab || c->text.sep >= c->text.vocab || c->text.pad >= c->text.vocab))
        rc = df_error_set(err, DF_E_FORMAT, "%s: text_config: a special token id is outside the vocabulary (%d)", path,
                          c->text.vocab);
    if (rc == DF_OK)
        rc = check_heads(path, "vision_config", c->vision.hidden, c->vision.heads, err);
    if (rc == DF_OK)
        rc = check_heads(path, "text_config", c->text.hidden, c->text.heads, err);
    if (rc == DF_OK && c->max_length > c->text.max_positions)
        c->max_length = c->text.max_positions;
    json_decref(root);
    return rc;
}

/* ---- the tensors ------------------------------------------------------- */

typedef struct {
    df_arch_list *list;
    int failed;
} builder;

static void add(builder *b, df_arch_role role, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *prefix, const char *suffix)
{
    char name[160];
    const int64_t shape[4] = {d0, d1, d2, d3};
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    if (!b->failed && df_arch_append(b->list, role, ndim, shape, name) != 0)
        b->failed = 1;
}

static void linear(builder *b, const char *prefix, int64_t out, int64_t in)
{
    add(b, DF_ARCH_WEIGHT, 2, out, in, 0, 0, prefix, ".weight");
    add(b, DF_ARCH_BIAS, 1, out, 0, 0, 0, prefix, ".bias");
}

static void norm(builder *b, const char *prefix, int64_t c)
{
    add(b, DF_ARCH_NORM_WEIGHT, 1, c, 0, 0, 0, prefix, ".weight");
    add(b, DF_ARCH_NORM_BIAS, 1, c, 0, 0, 0, prefix, ".bias");
}

int df_arch_blip(const df_blip_config *c, df_arch_list *list, df_error_t *err)
{
    builder b = {list, 0};
    char p[160];
    const int64_t dv = c->vision.hidden, ps = c->vision.patch_size, np = (c->vision.image_size / ps);
    add(&b, DF_ARCH_EMBEDDING, 3, 1, 1, dv, 0, "vision_model.embeddings.class_embedding", "");
    add(&b, DF_ARCH_WEIGHT, 4, dv, 3, ps, ps, "vision_model.embeddings.patch_embedding", ".weight");
    add(&b, DF_ARCH_BIAS, 1, dv, 0, 0, 0, "vision_model.embeddings.patch_embedding", ".bias");
    add(&b, DF_ARCH_EMBEDDING, 3, 1, np * np + 1, dv, 0, "vision_model.embeddings.position_embedding", "");
    for (int l = 0; l < c->vision.layers; l++) {
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d.", l);
        char n[200];
        snprintf(n, sizeof n, "%slayer_norm1", p), norm(&b, n, dv);
        snprintf(n, sizeof n, "%sself_attn.qkv", p), linear(&b, n, 3 * dv, dv);
        snprintf(n, sizeof n, "%sself_attn.projection", p), linear(&b, n, dv, dv);
        snprintf(n, sizeof n, "%slayer_norm2", p), norm(&b, n, dv);
        snprintf(n, sizeof n, "%smlp.fc1", p), linear(&b, n, c->vision.intermediate, dv);
        snprintf(n, sizeof n, "%smlp.fc2", p), linear(&b, n, dv, c->vision.intermediate);
    }
    norm(&b, "vision_model.post_layernorm", dv);
    const int64_t dt = c->text.hidden, de = c->text.encoder_hidden;
    add(&b, DF_ARCH_EMBEDDING, 2, c->text.vocab, dt, 0, 0, "text_decoder.bert.embeddings.word_embeddings", ".weight");
    add(&b, DF_ARCH_EMBEDDING, 2, c->text.max_positions, dt, 0, 0, "text_decoder.bert.embeddings.position_embeddings",
        ".weight");
    norm(&b, "text_decoder.bert.embeddings.LayerNorm", dt);
    for (int l = 0; l < c->text.layers; l++) {
        snprintf(p, sizeof p, "text_decoder.bert.encoder.layer.%d.", l);
        char n[200];
        snprintf(n, sizeof n, "%sattention.self.query", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%sattention.self.key", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%sattention.self.value", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%sattention.output.dense", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%sattention.output.LayerNorm", p), norm(&b, n, dt);
        snprintf(n, sizeof n, "%scrossattention.self.query", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%scrossattention.self.key", p), linear(&b, n, dt, de);
        snprintf(n, sizeof n, "%scrossattention.self.value", p), linear(&b, n, dt, de);
        snprintf(n, sizeof n, "%scrossattention.output.dense", p), linear(&b, n, dt, dt);
        snprintf(n, sizeof n, "%scrossattention.output.LayerNorm", p), norm(&b, n, dt);
        snprintf(n, sizeof n, "%sintermediate.dense", p), linear(&b, n, c->text.intermediate, dt);
        snprintf(n, sizeof n, "%soutput.dense", p), linear(&b, n, dt, c->text.intermediate);
        snprintf(n, sizeof n, "%soutput.LayerNorm", p), norm(&b, n, dt);
    }
    linear(&b, "text_decoder.cls.predictions.transform.dense", dt, dt);
    norm(&b, "text_decoder.cls.predictions.transform.LayerNorm", dt);
    add(&b, DF_ARCH_WEIGHT, 2, c->text.vocab, dt, 0, 0, "text_decoder.cls.predictions.decoder", ".weight");
    add(&b, DF_ARCH_BIAS, 1, c->text.vocab, 0, 0, 0, "text_decoder.cls.predictions", ".bias");
    return b.failed ? df_error_set(err, DF_E_NOMEM, "blip: out of memory listing tensors") : DF_OK;
}
