/*  blip.c - see blip.h. The layer structure follows transformers'
 *  modeling_blip.py (BlipVisionModel) and modeling_blip_text.py
 *  (BlipTextLMHeadModel). */
#include "blip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "eltwise.h"
#include "image_resize.h"
#include "layers.h"
#include "safetensors.h"
#include "weights.h"

/* CLIP's normalisation, which BLIP's image processor uses. */
static const float k_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float k_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

struct _df_blip_t {
    df_blip_config cfg;
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    df_weights_t *w;
    df_wordpiece_t *tok;
    float *cls_pos;  /* host, (1 + patches) x hidden: the position embedding, the class embedding added to row 0 */
};

void df_blip_destroy(df_blip_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_blip_t *m = *self_p;
    df_weights_destroy(&m->w);
    df_wordpiece_destroy(&m->tok);
    free(m->cls_pos);
    free(m);
    *self_p = NULL;
}

const df_blip_config *df_blip_config_of(const df_blip_t *self) { return &self->cfg; }
const df_wordpiece_t *df_blip_tokenizer(const df_blip_t *self) { return self->tok; }

/*  A device buffer done with: freed at once after success; after a failure,
 *  work recorded in batch may still name it, so batch keeps it until that
 *  work is done (on its next submit). */
static void release(df_vk_batch_t *batch, int rc, df_vk_buffer_t **buf)
{
    if (rc != DF_OK && batch && *buf && df_vk_batch_hold(batch, buf, NULL) == DF_OK)
        return;
    df_vk_buffer_destroy(buf);
}

/* ---- loading ----------------------------------------------------------- */

#define DECODER_WEIGHT "text_decoder.cls.predictions.decoder.weight"
#define DECODER_BIAS "text_decoder.cls.predictions.bias"

/*  Names as in the file, but a checkpoint whose LM head shares the word
 *  embeddings' matrix (saved once) or keeps its bias under the decoder's
 *  name finds them there. */
static int locate(void *ctx, const char *internal, df_sgm_ref *ref)
{
    const df_safetensors_t *st = ctx;
    const char *name = internal;
    if (strcmp(internal, DECODER_WEIGHT) == 0 && !df_safetensors_find(st, internal))
        name = "text_decoder.bert.embeddings.word_embeddings.weight";
    if (strcmp(internal, DECODER_BIAS) == 0 && !df_safetensors_find(st, internal))
        name = "text_decoder.cls.predictions.decoder.bias";
    ref->part = -1;
    ref->transpose = 0;
    return (size_t)snprintf(ref->name, sizeof ref->name, "%s", name) < sizeof ref->name ? 0 : -1;
}

/*  position_ids are a buffer, not weights; the decoder's bias is the head's
 *  bias under a second name. */
static int owns(void *ctx, const char *file_name)
{
    const df_safetensors_t *st = ctx;
    const size_t n = strlen(file_name);
    if (n >= 12 && strcmp(file_name + n - 12, "position_ids") == 0)
        return -1;
    if (strcmp(file_name, "text_decoder.cls.predictions.decoder.bias") == 0 && df_safetensors_find(st, DECODER_BIAS))
        return -1;
    return 1;
}

/*  The class and position embeddings, kept on the host: the image encoder's
 *  first activation is made there. */
static int read_embeddings(df_blip_t *m, const df_safetensors_t *st, df_error_t *err)
{
    const int D = m->cfg.vision.hidden, G = m->cfg.vision.image_size / m->cfg.vision.patch_size;
    const size_t rows = (size_t)G * G + 1;
    const df_st_tensor *cls = df_safetensors_find(st, "vision_model.embeddings.class_embedding");
    const df_st_tensor *pos = df_safetensors_find(st, "vision_model.embeddings.position_embedding");
    float *c = malloc((size_t)D * sizeof *c);
    m->cls_pos = malloc(rows * D * sizeof *m->cls_pos);
    int rc = c && m->cls_pos ? DF_OK : df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    if (rc == DF_OK && (!cls || !pos || cls->nelem != (uint64_t)D || pos->nelem != rows * D))
        rc = df_error_set(err, DF_E_FORMAT, "%s: the image encoder's class or position embedding is %s",
                          df_safetensors_path(st), !cls || !pos ? "missing" : "not the config's size");
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(cls, c, err);
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(pos, m->cls_pos, err);
    for (int i = 0; rc == DF_OK && i < D; i++)
        m->cls_pos[i] += c[i];
    free(c);
    return rc;
}

df_blip_t *df_blip_open(const char *dir, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                        df_error_t *err)
{
    char path[4200];
    df_blip_t *m = calloc(1, sizeof *m);
    if (!m) {
        df_error_set(err, DF_E_NOMEM, "blip: out of memory");
        return NULL;
    }
    m->dev = dev, m->xfer = xfer;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = df_blip_config_load(path, &m->cfg, err);
    if (rc == DF_OK) {
        snprintf(path, sizeof path, "%s/vocab.txt", dir);
        if (!(m->tok = df_wordpiece_load(path, err)))
            rc = err && err->code ? err->code : DF_E_FORMAT;
        else if (df_wordpiece_size(m->tok) > (size_t)m->cfg.text.vocab)
            rc = df_error_set(err, DF_E_FORMAT, "%s has %zu tokens, more than the model's %d", path,
                              df_wordpiece_size(m->tok), m->cfg.text.vocab);
    }
    df_safetensors_t *st = NULL;
    if (rc == DF_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!(st = df_safetensors_open(path, err)))
            rc = err && err->code ? err->code : DF_E_FORMAT;
    }
    df_arch_list arch = {0};
    if (rc == DF_OK)
        rc = df_arch_blip(&m->cfg, &arch, err);
    if (rc == DF_OK) { /* first, so a checkpoint that does not fit is told tensor by tensor */
        const df_weight_layout layout = {locate, owns, st};
        if (!(m->w = df_weights_load(dev, xfer, &arch, st, &layout, store == DF_F32 ? DF_F32 : DF_F16, err)))
            rc = err && err->code ? err->code : DF_E_FORMAT;
    }
    if (rc == DF_OK)
        rc = read_embeddings(m, st, err);
    df_arch_list_free(&arch);
    df_safetensors_destroy(&st);
    if (rc != DF_OK)
        df_blip_destroy(&m);
    return m;
}

/* ---- the image encoder ------------------------------------------------- */

int df_blip_pixels(const df_blip_t *self, const df_image *photo, float **pixels, df_error_t *err)
{
    const uint32_t S = (uint32_t)self->cfg.vision.image_size;
    df_image sized = {0};
    *pixels = NULL;
    int rc = df_image_resize_bicubic(photo, S, S, &sized, err);
    float *p = rc == DF_OK ? malloc(3ull * S * S * sizeof *p) : NULL;
    if (rc == DF_OK && !p)
        rc = df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    for (uint64_t k = 0; rc == DF_OK && k < (uint64_t)S * S; k++)
        for (int c = 0; c < 3; c++)
            p[c * (uint64_t)S * S + k] = (sized.rgb[k * 3 + c] * (1.0f / 255.0f) - k_mean[c]) / k_std[c];
    df_image_free(&sized);
    *pixels = p;
    return rc;
}

/*  The image encoder's output into out (device, rows x D f32). */
static int encode(df_blip_t *m, df_vk_batch_t *batch, const float *pixels, df_tensor out, df_error_t *err)
{
    const df_blip_config *c = &m->cfg;
    const uint32_t D = (uint32_t)c->vision.hidden, ps = (uint32_t)c->vision.patch_size,
                   S = (uint32_t)c->vision.image_size, G = S / ps, P = G * G, rows = P + 1, K = 3 * ps * ps,
                   I = (uint32_t)c->vision.intermediate;
    /* The patches as rows of a matrix, in the order the convolution's
     * weights flatten (channel, row, column). */
    float *patches = malloc((uint64_t)P * K * sizeof *patches);
    if (!patches)
        return df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    for (uint32_t gy = 0; gy < G; gy++)
        for (uint32_t gx = 0; gx < G; gx++)
            for (uint32_t ch = 0; ch < 3; ch++)
                for (uint32_t ky = 0; ky < ps; ky++)
                    for (uint32_t kx = 0; kx < ps; kx++)
                        patches[(uint64_t)(gy * G + gx) * K + (ch * ps + ky) * ps + kx] =
                            pixels[(uint64_t)ch * S * S + (uint64_t)(gy * ps + ky) * S + gx * ps + kx];
    df_vk_buffer_t *xb = df_vk_buffer_new(m->dev, (uint64_t)rows * D * 4, err);
    int rc = xb ? df_vk_upload_f32(m->xfer, xb, 0, m->cls_pos, (uint64_t)rows * D, DF_F32, err)
                : (err && err->code ? err->code : DF_E_DEVICE_MEMORY);
    const df_tensor x = df_tensor_at(xb, 0, DF_F32);
    df_tensor pt;
    if (rc == DF_OK)
        rc = df_scratch_from_host(batch, m->xfer, patches, (uint64_t)P * K, &pt, err);
    free(patches);
    /* The patch convolution as a matrix product, added to rows 1..P. */
    const df_weight *pw, *pb;
    if (rc == DF_OK)
        rc = df_weight_pair(m->w, "vision_model.embeddings.patch_embedding", &pw, &pb, err);
    if (rc == DF_OK) {
        df_weight flat = *pw;
        flat.ndim = 2, flat.shape[1] = K, flat.shape[2] = flat.shape[3] = 0;
        rc = df_linear(batch, pt, P, &flat, pb, df_tensor_at(xb, (uint64_t)D * 4, DF_F32), 1, DF_ELT_COPY, err);
    }
    const float eps = (float)c->vision.eps;
    for (int l = 0; rc == DF_OK && l < c->vision.layers; l++) {
        char p[96], n[160];
        snprintf(p, sizeof p, "vision_model.encoder.layers.%d", l);
        df_tensor h, qkv, o, f;
        const df_weight *wq, *bq, *wo, *bo, *w1, *b1, *w2, *b2;
        rc = df_scratch(batch, (uint64_t)rows * D, DF_F32, &h, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * 3 * D, DF_F32, &qkv, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * D, DF_F32, &o, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * I, DF_F32, &f, err);
        if (rc == DF_OK) rc = df_weight_pair(m->w, (snprintf(n, sizeof n, "%s.self_attn.qkv", p), n), &wq, &bq, err);
        if (rc == DF_OK) rc = df_weight_pair(m->w, (snprintf(n, sizeof n, "%s.self_attn.projection", p), n), &wo, &bo, err);
        if (rc == DF_OK) rc = df_weight_pair(m->w, (snprintf(n, sizeof n, "%s.mlp.fc1", p), n), &w1, &b1, err);
        if (rc == DF_OK) rc = df_weight_pair(m->w, (snprintf(n, sizeof n, "%s.mlp.fc2", p), n), &w2, &b2, err);
        if (rc == DF_OK)
            rc = df_layer_norm(batch, m->w, (snprintf(n, sizeof n, "%s.layer_norm1", p), n), x, rows, eps, h, err);
        if (rc == DF_OK)
            rc = df_linear(batch, h, rows, wq, bq, qkv, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) { /* q, k and v interleaved in each row of qkv */
            df_attn_desc ad = {.batch = 1, .heads = (uint32_t)c->vision.heads, .nq = rows, .nk = rows,
                               .dim = D / (uint32_t)c->vision.heads, .ldq = 3 * D, .ldk = 3 * D, .ldv = 3 * D};
            df_tensor q = qkv, k = qkv, v = qkv, no_lse = {{NULL, 0}, DF_F32};
            k.ref.offset += (uint64_t)D * 4, v.ref.offset += 2ull * D * 4;
            rc = df_attention_forward(batch, &ad, q, k, v, o, no_lse, err);
        }
        if (rc == DF_OK) rc = df_linear(batch, o, rows, wo, bo, x, 1, DF_ELT_COPY, err);
        if (rc == DF_OK)
            rc = df_layer_norm(batch, m->w, (snprintf(n, sizeof n, "%s.layer_norm2", p), n), x, rows, eps, h, err);
        if (rc == DF_OK) rc = df_linear(batch, h, rows, w1, b1, f, 0, DF_ELT_GELU_ERF, err);
        if (rc == DF_OK) rc = df_linear(batch, f, rows, w2, b2, x, 1, DF_ELT_COPY, err);
        if (rc == DF_OK) /* one layer's scratch at a time */
            rc = df_vk_batch_submit(batch, err);
        if (rc != DF_OK)
            df_error_prefix(err, "blip image encoder layer %d", l);
    }
    if (rc == DF_OK)
        rc = df_layer_norm(batch, m->w, "vision_model.post_layernorm", x, rows, eps, out, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    release(batch, rc, &xb);
    return rc;
}

int df_blip_encode_image(df_blip_t *self, df_vk_batch_t *batch, const float *pixels, float *embeds, df_error_t *err)
{
    const uint32_t G = (uint32_t)(self->cfg.vision.image_size / self->cfg.vision.patch_size);
    const uint64_t n = (uint64_t)(G * G + 1) * (uint32_t)self->cfg.vision.hidden;
    df_vk_buffer_t *b = df_vk_buffer_new(self->dev, n * 4, err);
    int rc = b ? encode(self, batch, pixels, df_tensor_at(b, 0, DF_F32), err)
               : (err && err->code ? err->code : DF_E_DEVICE_MEMORY);
    if (rc == DF_OK)
        rc = df_vk_download_f32(self->xfer, b, 0, embeds, n, DF_F32, err);
    release(batch, rc, &b);
    return rc;
}

/* ---- the text decoder -------------------------------------------------- */

/*  Every cross-attention's keys and values of the image (R rows of its
 *  encoding), layer after layer, into kv (layers x 2 x R x Dt). */
static int cross_kv(df_blip_t *m, df_vk_batch_t *batch, df_tensor img, uint32_t R, df_tensor kv, df_error_t *err)
{
    const uint32_t Dt = (uint32_t)m->cfg.text.hidden;
    int rc = DF_OK;
    for (int l = 0; rc == DF_OK && l < m->cfg.text.layers; l++) {
        char n[160];
        const df_weight *wk, *bk, *wv, *bv;
        snprintf(n, sizeof n, "text_decoder.bert.encoder.layer.%d.crossattention.self.key", l);
        rc = df_weight_pair(m->w, n, &wk, &bk, err);
        snprintf(n, sizeof n, "text_decoder.bert.encoder.layer.%d.crossattention.self.value", l);
        if (rc == DF_OK)
            rc = df_weight_pair(m->w, n, &wv, &bv, err);
        df_tensor k = kv, v = kv;
        k.ref.offset += (uint64_t)l * 2 * R * Dt * 4, v.ref.offset = k.ref.offset + (uint64_t)R * Dt * 4;
        if (rc == DF_OK)
            rc = df_linear(batch, img, R, wk, bk, k, 0, DF_ELT_COPY, err);
        if (rc == DF_OK)
            rc = df_linear(batch, img, R, wv, bv, v, 0, DF_ELT_COPY, err);
    }
    return rc == DF_OK ? df_vk_batch_submit(batch, err) : rc;
}

/*  The token and position embeddings of ids, normalised, into x (n x Dt). */
static int embed(df_blip_t *m, df_vk_batch_t *batch, const int32_t *ids, uint32_t n, uint32_t first_pos, df_tensor x,
                 df_error_t *err)
{
    const uint32_t Dt = (uint32_t)m->cfg.text.hidden;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.text.vocab)
            return df_error_set(err, DF_E_RANGE, "blip: token id %d is outside the vocabulary (%d)", ids[i],
                                m->cfg.text.vocab);
    if (first_pos + n > (uint32_t)m->cfg.text.max_positions)
        return df_error_set(err, DF_E_RANGE, "blip: %u tokens, more than the decoder's %d positions", first_pos + n,
                            m->cfg.text.max_positions);
    const df_weight *tok, *pos;
    int rc = df_weights_get(m->w, "text_decoder.bert.embeddings.word_embeddings.weight", &tok, err);
    if (rc == DF_OK)
        rc = df_weights_get(m->w, "text_decoder.bert.embeddings.position_embeddings.weight", &pos, err);
    const size_t esz = rc == DF_OK ? df_dtype_size(tok->t.dtype) : 4;
    if (rc == DF_OK && (Dt * esz) % 4)
        return df_error_set(err, DF_E_UNSUPPORTED, "blip: hidden size %u in %s rows is not 4-byte aligned", Dt,
                            df_dtype_name(tok->t.dtype));
    df_tensor rows, sum;
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)n * Dt, tok->t.dtype, &rows, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)n * Dt, DF_F32, &sum, err);
    for (uint32_t i = 0; rc == DF_OK && i < n; i++)
        rc = df_vk_batch_copy(batch, tok->t.ref.buf, tok->t.ref.offset + (uint64_t)ids[i] * Dt * esz, rows.ref.buf,
                              rows.ref.offset + (uint64_t)i * Dt * esz, Dt * esz, err);
    if (rc == DF_OK) {
        df_elt_desc e = {.op = DF_ELT_AXPBY, .n = (uint64_t)n * Dt, .alpha = 1, .beta = 1};
        df_tensor p = pos->t;
        p.ref.offset += (uint64_t)first_pos * Dt * df_dtype_size(p.dtype);
        rc = df_eltwise(batch, &e, rows, p, sum, err);
    }
    if (rc == DF_OK)
        rc = df_layer_norm(batch, m->w, "text_decoder.bert.embeddings.LayerNorm", sum, n, (float)m->cfg.text.eps, x,
                           err);
    return rc;
}

/*  x = LayerNorm(x + dense(a)) in place (h is scratch of x's size). */
static int add_norm(df_blip_t *m, df_vk_batch_t *batch, const char *prefix, df_tensor a, df_tensor x, df_tensor h,
                    uint32_t n, df_error_t *err)
{
    char name[200];
    const df_weight *w, *b;
    snprintf(name, sizeof name, "%s.dense", prefix);
    int rc = df_weight_pair(m->w, name, &w, &b, err);
    if (rc == DF_OK)
        rc = df_linear(batch, a, n, w, b, x, 1, DF_ELT_COPY, err);
    snprintf(name, sizeof name, "%s.LayerNorm", prefix);
    if (rc == DF_OK)
        rc = df_layer_norm(batch, m->w, name, x, n, (float)m->cfg.text.eps, h, err);
    if (rc == DF_OK)
        rc = df_vk_batch_copy(batch, h.ref.buf, h.ref.offset, x.ref.buf, x.ref.offset,
                              (uint64_t)n * (uint32_t)m->cfg.text.hidden * 4, err);
    return rc;
}

/*  The self-attention's keys and values of the tokens so far, layer after
 *  layer (layers x 2 x cap x Dt), kept between passes of one caption. */
typedef struct {
    df_tensor t;        /* no buffer: every pass computes all its tokens */
    uint32_t cap;
} self_cache;

/*  The logits of rows first .. n-1 of the decoder's output for ids, into
 *  logits (device, (n - first) x vocab). kv: cross_kv's, for R image rows.
 *  With a cache holding tokens 0 .. start-1, only tokens start .. n-1 are
 *  computed (their keys and values added to it); without one, start is 0. */
static int decode(df_blip_t *m, df_vk_batch_t *batch, df_tensor kv, uint32_t R, const int32_t *ids, uint32_t n,
                  uint32_t start, const self_cache *cache, uint32_t first, df_tensor logits, df_error_t *err)
{
    const df_blip_config *c = &m->cfg;
    const uint32_t Dt = (uint32_t)c->text.hidden, I = (uint32_t)c->text.intermediate, H = (uint32_t)c->text.heads;
    const int cached = cache && cache->t.ref.buf;
    if ((!cached && start) || start >= n || first < start || first >= n || (cached && n > cache->cap))
        return df_error_set(err, DF_E_INVALID, "blip: decoder pass over tokens %u..%u (logits from %u)", start, n,
                            first);
    const uint32_t r = n - start; /* the rows computed */
    df_tensor x, h, q, k, v, a, f, no_lse = {{NULL, 0}, DF_F32};
    int rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &x, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &h, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &q, err);
    if (rc == DF_OK && !cached) rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &k, err);
    if (rc == DF_OK && !cached) rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &v, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)r * Dt, DF_F32, &a, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)r * I, DF_F32, &f, err);
    if (rc == DF_OK)
        rc = embed(m, batch, ids + start, r, start, x, err);
    for (int l = 0; rc == DF_OK && l < c->text.layers; l++) {
        char p[96], name[200];
        const df_weight *w, *b;
        snprintf(p, sizeof p, "text_decoder.bert.encoder.layer.%d", l);
        /* Causal self-attention over every token so far: the new rows' keys
         * and values go into the cache (when kept) after the earlier ones'. */
        df_tensor keys = k, values = v;
        if (cached) {
            keys = values = cache->t;
            keys.ref.offset += (uint64_t)l * 2 * cache->cap * Dt * 4;
            values.ref.offset = keys.ref.offset + (uint64_t)cache->cap * Dt * 4;
            k = keys, v = values;
            k.ref.offset += (uint64_t)start * Dt * 4, v.ref.offset += (uint64_t)start * Dt * 4;
        }
        const char *qkv[3] = {"query", "key", "value"};
        df_tensor *dst[3] = {&q, &k, &v};
        for (int j = 0; rc == DF_OK && j < 3; j++) {
            snprintf(name, sizeof name, "%s.attention.self.%s", p, qkv[j]);
            rc = df_weight_pair(m->w, name, &w, &b, err);
            if (rc == DF_OK)
                rc = df_linear(batch, x, r, w, b, *dst[j], 0, DF_ELT_COPY, err);
        }
        if (rc == DF_OK) {
            df_attn_desc ad = {.batch = 1, .heads = H, .nq = r, .nk = n, .dim = Dt / H, .causal = 1};
            rc = df_attention_forward(batch, &ad, q, keys, values, a, no_lse, err);
        }
        if (rc == DF_OK)
            rc = add_norm(m, batch, (snprintf(name, sizeof name, "%s.attention.output", p), name), a, x, h, r, err);
        /* Cross-attention to the image. */
        snprintf(name, sizeof name, "%s.crossattention.self.query", p);
        if (rc == DF_OK)
            rc = df_weight_pair(m->w, name, &w, &b, err);
        if (rc == DF_OK)
            rc = df_linear(batch, x, r, w, b, q, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) {
            df_tensor ck = kv, cv = kv;
            ck.ref.offset += (uint64_t)l * 2 * R * Dt * 4, cv.ref.offset = ck.ref.offset + (uint64_t)R * Dt * 4;
            df_attn_desc ad = {.batch = 1, .heads = H, .nq = r, .nk = R, .dim = Dt / H};
            rc = df_attention_forward(batch, &ad, q, ck, cv, a, no_lse, err);
        }
        if (rc == DF_OK)
            rc = add_norm(m, batch, (snprintf(name, sizeof name, "%s.crossattention.output", p), name), a, x, h, r,
                          err);
        /* Feed-forward. */
        snprintf(name, sizeof name, "%s.intermediate.dense", p);
        if (rc == DF_OK)
            rc = df_weight_pair(m->w, name, &w, &b, err);
        if (rc == DF_OK)
            rc = df_linear(batch, x, r, w, b, f, 0, DF_ELT_GELU_ERF, err);
        if (rc == DF_OK)
            rc = add_norm(m, batch, (snprintf(name, sizeof name, "%s.output", p), name), f, x, h, r, err);
        if (rc != DF_OK)
            df_error_prefix(err, "blip text decoder layer %d", l);
    }
    /* The language-model head on the rows asked for. */
    const uint32_t rows = n - first;
    df_tensor xs = x, t;
    xs.ref.offset += (uint64_t)(first - start) * Dt * 4;
    const df_weight *w, *b, *dw, *db;
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)rows * Dt, DF_F32, &t, err);
    if (rc == DF_OK)
        rc = df_weight_pair(m->w, "text_decoder.cls.predictions.transform.dense", &w, &b, err);
    if (rc == DF_OK)
        rc = df_linear(batch, xs, rows, w, b, t, 0, DF_ELT_GELU_ERF, err);
    if (rc == DF_OK)
        rc = df_layer_norm(batch, m->w, "text_decoder.cls.predictions.transform.LayerNorm", t, rows,
                           (float)c->text.eps, h, err);
    if (rc == DF_OK)
        rc = df_weights_get(m->w, DECODER_WEIGHT, &dw, err);
    if (rc == DF_OK)
        rc = df_weights_get(m->w, DECODER_BIAS, &db, err);
    if (rc == DF_OK)
        rc = df_linear(batch, h, rows, dw, db, logits, 0, DF_ELT_COPY, err);
    return rc == DF_OK ? df_vk_batch_submit(batch, err) : rc;
}

/*  The device buffers a decoding needs: the image's rows and every layer's
 *  cross keys and values. */
typedef struct {
    df_vk_buffer_t *img, *kv, *logits, *self; /* self: the self-attention cache's (greedy captions) */
    uint32_t R;
    self_cache cache;
} decoding;

static void decoding_free(decoding *d, df_vk_batch_t *batch, int rc)
{
    release(batch, rc, &d->img), release(batch, rc, &d->kv), release(batch, rc, &d->logits);
    release(batch, rc, &d->self);
}

/*  cache_cap: tokens the self-attention cache holds (0: none). */
static int decoding_new(df_blip_t *m, uint32_t logit_rows, uint32_t cache_cap, decoding *d, df_error_t *err)
{
    const uint32_t G = (uint32_t)(m->cfg.vision.image_size / m->cfg.vision.patch_size);
    d->R = G * G + 1;
    const uint64_t Dt = (uint32_t)m->cfg.text.hidden, Dv = (uint32_t)m->cfg.vision.hidden;
    d->img = df_vk_buffer_new(m->dev, d->R * Dv * 4, err);
    d->kv = d->img ? df_vk_buffer_new(m->dev, (uint64_t)m->cfg.text.layers * 2 * d->R * Dt * 4, err) : NULL;
    d->logits = d->kv ? df_vk_buffer_new(m->dev, (uint64_t)logit_rows * (uint32_t)m->cfg.text.vocab * 4, err) : NULL;
    if (d->logits && cache_cap) {
        d->self = df_vk_buffer_new(m->dev, (uint64_t)m->cfg.text.layers * 2 * cache_cap * Dt * 4, err);
        d->cache = (self_cache){df_tensor_at(d->self, 0, DF_F32), cache_cap};
    }
    if (!d->logits || (cache_cap && !d->self)) {
        decoding_free(d, NULL, DF_OK);
        return err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    }
    return DF_OK;
}

int df_blip_decoder_logits(df_blip_t *self, df_vk_batch_t *batch, const float *embeds, const int32_t *ids, uint32_t n,
                           float *logits, df_error_t *err)
{
    if (n == 0)
        return df_error_set(err, DF_E_INVALID, "blip: no tokens to decode");
    decoding d = {0};
    int rc = decoding_new(self, n, 0, &d, err);
    if (rc == DF_OK)
        rc = df_vk_upload_f32(self->xfer, d.img, 0, embeds, (uint64_t)d.R * (uint32_t)self->cfg.vision.hidden, DF_F32, err);
    if (rc == DF_OK)
        rc = cross_kv(self, batch, df_tensor_at(d.img, 0, DF_F32), d.R, df_tensor_at(d.kv, 0, DF_F32), err);
    if (rc == DF_OK)
        rc = decode(self, batch, df_tensor_at(d.kv, 0, DF_F32), d.R, ids, n, 0, NULL, 0,
                    df_tensor_at(d.logits, 0, DF_F32), err);
    if (rc == DF_OK)
        rc = df_vk_download_f32(self->xfer, d.logits, 0, logits, (uint64_t)n * (uint32_t)self->cfg.text.vocab, DF_F32, err);
    decoding_free(&d, batch, rc);
    return rc;
}

/*  The next token's log-probabilities after ids (n of them) into lp
 *  (vocab floats), [SEP] ruled out below min_length tokens. With the
 *  decoding's cache holding tokens 0 .. start-1, only the rest are
 *  computed; without one, start is 0. */
static int next_logprobs(df_blip_t *m, df_vk_batch_t *batch, decoding *d, const int32_t *ids, uint32_t n,
                         uint32_t start, uint32_t min_length, float *lp, df_error_t *err)
{
    const int V = m->cfg.text.vocab;
    int rc = decode(m, batch, df_tensor_at(d->kv, 0, DF_F32), d->R, ids, n, start, &d->cache, n - 1,
                    df_tensor_at(d->logits, 0, DF_F32), err);
    if (rc == DF_OK)
        rc = df_vk_download_f32(m->xfer, d->logits, 0, lp, (uint64_t)V, DF_F32, err);
    if (rc != DF_OK)
        return rc;
    float mx = lp[0];
    for (int i = 1; i < V; i++)
        mx = lp[i] > mx ? lp[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)lp[i] - mx);
    const float lse = (float)(mx + log(sum));
    for (int i = 0; i < V; i++)
        lp[i] -= lse;
    if (n < min_length)
        lp[m->cfg.text.sep] = -INFINITY;
    return DF_OK;
}

/*  A finished hypothesis: its tokens (without the [SEP] that ended it) and
 *  score. */
typedef struct {
    int32_t *ids;
    uint32_t n;
    double score;
} hypothesis;

/*  Adds the hypothesis ids[0..len) scored score to hyps (nh of them, room
 *  for B + 1) when it is among the B best so far, as the reference's
 *  BeamHypotheses.add: kept in the order added, the worst dropped, *worst
 *  the bar a newcomer must clear. */
static int hyp_add(hypothesis *hyps, uint32_t *nh, uint32_t B, double *worst, const int32_t *ids, uint32_t len,
                   double score, df_error_t *err)
{
    if (*nh >= B && !(score > *worst))
        return DF_OK;
    hypothesis h = {malloc(len * sizeof(int32_t)), len, score};
    if (!h.ids)
        return df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    memcpy(h.ids, ids, len * sizeof(int32_t));
    hyps[(*nh)++] = h;
    if (*nh <= B) {
        *worst = score < *worst ? score : *worst;
        return DF_OK;
    }
    uint32_t w = 0; /* the first of the worst goes */
    for (uint32_t k = 1; k < *nh; k++)
        if (hyps[k].score < hyps[w].score)
            w = k;
    free(hyps[w].ids);
    (*nh)--;
    memmove(hyps + w, hyps + w + 1, (*nh - w) * sizeof *hyps);
    *worst = hyps[0].score;
    for (uint32_t k = 1; k < *nh; k++)
        *worst = hyps[k].score < *worst ? hyps[k].score : *worst;
    return DF_OK;
}

/*  Beam search over ids[0..n) (the start), as transformers' beam scorer
 *  runs it with length_penalty 1 and early_stopping off; the best
 *  hypothesis into ids, *n its length ([SEP] appended when there is room). */
static int beam_search(df_blip_t *m, df_vk_batch_t *batch, decoding *d, const df_blip_caption_opts *o, uint32_t limit,
                       int32_t *ids, uint32_t *n, df_error_t *err)
{
    const uint32_t B = o->num_beams, V = (uint32_t)m->cfg.text.vocab, K = 2 * B;
    const int32_t sep = m->cfg.text.sep;
    uint32_t len = *n;
    int32_t *beams = malloc((size_t)B * limit * sizeof *beams), *next = malloc((size_t)B * limit * sizeof *next);
    float *scores = malloc((size_t)B * V * sizeof *scores), *beam_scores = malloc(B * sizeof *beam_scores);
    float *top = malloc(K * sizeof *top);
    uint32_t *top_at = malloc(K * sizeof *top_at);
    hypothesis *hyps = calloc(B + 1, sizeof *hyps);
    int rc = beams && next && scores && beam_scores && top && top_at && hyps
                 ? DF_OK
                 : df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    uint32_t nh = 0;
    double worst = 1e9;
    int done = 0;
    for (uint32_t b = 0; rc == DF_OK && b < B; b++) {
        memcpy(beams + (size_t)b * limit, ids, len * sizeof *ids);
        beam_scores[b] = b ? -1e9f : 0; /* at first the beams are one */
    }
    while (rc == DF_OK && !done && len < limit) {
        for (uint32_t b = 0; rc == DF_OK && b < B; b++) {
            float *lp = scores + (size_t)b * V;
            rc = next_logprobs(m, batch, d, beams + (size_t)b * limit, len, 0, o->min_length, lp, err);
            for (uint32_t v = 0; rc == DF_OK && v < V; v++)
                lp[v] += beam_scores[b];
        }
        if (rc != DF_OK)
            break;
        /* The 2B best continuations over all beams, best first (the first
         * of equals first). */
        uint32_t nt = 0;
        for (uint32_t i = 0; i < B * V; i++) {
            if (nt == K && !(scores[i] > top[K - 1]))
                continue;
            uint32_t at = nt < K ? nt++ : K - 1;
            while (at > 0 && scores[i] > top[at - 1]) {
                top[at] = top[at - 1], top_at[at] = top_at[at - 1];
                at--;
            }
            top[at] = scores[i], top_at[at] = i;
        }
        /* The next beams; an ending among the best B is a hypothesis. */
        uint32_t nb = 0;
        for (uint32_t r = 0; r < nt && nb < B; r++) {
            const uint32_t from = top_at[r] / V;
            const int32_t tok = (int32_t)(top_at[r] % V);
            if (tok == sep) {
                if (r >= B)
                    continue;
                /* Scored over its tokens without the [SEP]. */
                rc = hyp_add(hyps, &nh, B, &worst, beams + (size_t)from * limit, len, top[r] / (double)len, err);
                if (rc != DF_OK)
                    break;
                continue;
            }
            memcpy(next + (size_t)nb * limit, beams + (size_t)from * limit, len * sizeof(int32_t));
            next[(size_t)nb * limit + len] = tok;
            beam_scores[nb++] = top[r];
        }
        if (rc != DF_OK)
            break;
        if (nb < B) {
            rc = df_error_set(err, DF_E_STATE, "blip: beam search found %u continuations for %u beams", nb, B);
            break;
        }
        int32_t *swap = beams;
        beams = next, next = swap;
        len++;
        /* Done when enough have ended and none going on can beat the worst. */
        done = nh >= B && worst >= top[0] / (double)len;
    }
    if (rc == DF_OK && !done) /* out of room: the beams still going are hypotheses too */
        for (uint32_t b = 0; rc == DF_OK && b < B; b++)
            rc = hyp_add(hyps, &nh, B, &worst, beams + (size_t)b * limit, len, beam_scores[b] / (double)len, err);
    if (rc == DF_OK) { /* the best; of equals, the one added last */
        uint32_t best = 0;
        for (uint32_t k = 1; k < nh; k++)
            if (hyps[k].score >= hyps[best].score)
                best = k;
        memcpy(ids, hyps[best].ids, hyps[best].n * sizeof *ids);
        *n = hyps[best].n;
        if (*n < limit)
            ids[(*n)++] = sep;
    }
    for (uint32_t k = 0; hyps && k < nh; k++)
        free(hyps[k].ids);
    free(beams), free(next), free(scores), free(beam_scores), free(top), free(top_at), free(hyps);
    return rc;
}

int df_blip_caption(df_blip_t *self, df_vk_batch_t *batch, const df_image *photo, const df_blip_caption_opts *o,
                    char **text, int32_t *ids_out, uint32_t *nids, df_error_t *err)
{
    *text = NULL;
    if (nids)
        *nids = 0;
    const df_blip_config *c = &self->cfg;
    const uint32_t limit = o->max_length ? o->max_length : (uint32_t)c->max_length;
    if (limit < 2 || limit > (uint32_t)c->text.max_positions)
        return df_error_set(err, DF_E_RANGE, "blip: captions of %u tokens: from 2 to the decoder's %d", limit,
                            c->text.max_positions);
    if (o->num_beams > 64 || o->min_length > limit)
        return df_error_set(err, DF_E_RANGE, "blip: %u beams (at most 64), at least %u of %u tokens", o->num_beams,
                            o->min_length, limit);
    int32_t *ids = malloc(limit * sizeof *ids);
    float *logits = malloc((size_t)c->text.vocab * sizeof *logits), *pixels = NULL;
    if (!ids || !logits) {
        free(ids), free(logits);
        return df_error_set(err, DF_E_NOMEM, "blip: out of memory");
    }
    /* [DEC], then the prompt's tokens. */
    uint32_t n = 1;
    ids[0] = c->text.bos;
    size_t np = 0;
    int rc = DF_OK;
    if (o->prompt && *o->prompt &&
        (rc = df_wordpiece_encode(self->tok, o->prompt, ids + 1, limit - 1, &np, err)) == DF_OK && np + 1 >= limit)
        rc = df_error_set(err, DF_E_RANGE, "blip: the prompt's %zu tokens leave no room in %u", np, limit);
    n += (uint32_t)np;
    decoding d = {0};
    if (rc == DF_OK)
        rc = df_blip_pixels(self, photo, &pixels, err);
    /* Beams recompute their tokens each pass; a greedy caption keeps its
     * self-attention's keys and values and computes one token a pass. */
    if (rc == DF_OK)
        rc = decoding_new(self, 1, o->num_beams > 1 ? 0 : limit, &d, err);
    if (rc == DF_OK)
        rc = encode(self, batch, pixels, df_tensor_at(d.img, 0, DF_F32), err);
    if (rc == DF_OK)
        rc = cross_kv(self, batch, df_tensor_at(d.img, 0, DF_F32), d.R, df_tensor_at(d.kv, 0, DF_F32), err);
    if (rc == DF_OK && o->num_beams > 1) {
        rc = beam_search(self, batch, &d, o, limit, ids, &n, err);
    } else {
        /* Greedy: the likeliest token each step (the first of equals). */
        uint32_t done = 0; /* tokens in the cache */
        while (rc == DF_OK && n < limit) {
            rc = next_logprobs(self, batch, &d, ids, n, done, o->min_length, logits, err);
            done = n;
            if (rc != DF_OK)
                break;
            int32_t best = 0;
            for (int32_t i = 1; i < c->text.vocab; i++)
                if (logits[i] > logits[best])
                    best = i;
            ids[n++] = best;
            if (best == c->text.sep)
                break;
        }
    }
    if (rc == DF_OK)
        rc = df_wordpiece_decode(self->tok, ids, n, text, err);
    if (rc == DF_OK && ids_out)
        memcpy(ids_out, ids, n * sizeof *ids);
    if (nids)
        *nids = rc == DF_OK ? n : 0;
    decoding_free(&d, batch, rc);
    free(ids), free(logits), free(pixels);
    return rc;
}
