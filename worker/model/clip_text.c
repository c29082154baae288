/*  clip_text.c - see clip_text.h. */
#include "clip_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "clip_tokenizer.h"
#include "eltwise.h"
#include "layers.h"
#include "sdxl_arch.h"

struct _df_clip_text_t {
    df_clip_text_config cfg;
    df_weights_t *w;
};

df_clip_text_t *df_clip_text_new(const df_clip_text_config *cfg, df_weights_t **weights, df_error_t *err)
{
    df_clip_text_t *m = calloc(1, sizeof *m);
    if (!m) {
        df_weights_destroy(weights);
        df_error_set(err, DF_E_NOMEM, "text encoder: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->w = *weights;
    *weights = NULL;
    return m;
}

void df_clip_text_destroy(df_clip_text_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_weights_destroy(&(*self_p)->w);
    free(*self_p);
    *self_p = NULL;
}

const df_clip_text_config *df_clip_text_config_of(const df_clip_text_t *self) { return &self->cfg; }
df_weights_t *df_clip_text_weights(df_clip_text_t *self) { return self->w; }

static int locate_same(void *ctx, const char *internal, df_sgm_ref *ref)
{
    (void)ctx;
    ref->part = -1;
    ref->transpose = 0;
    return (size_t)snprintf(ref->name, sizeof ref->name, "%s", internal) < sizeof ref->name ? 0 : -1;
}

/*  transformers' CLIP checkpoints may carry the position_ids buffer; it is
 *  not a weight. */
static int owns_clip(void *ctx, const char *file_name)
{
    (void)ctx;
    return strcmp(file_name, "text_model.embeddings.position_ids") == 0 ? -1 : 1;
}

df_clip_text_t *df_clip_text_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_clip_text_config *cfg,
                                  const df_safetensors_t *st, const df_weight_layout *layout, df_dtype store,
                                  df_error_t *err)
{
    df_arch_list arch = {0};
    df_weights_t *w = NULL;
    /* 8-bit is for the UNet's matrices, the bulk of a step's memory; the
     * text towers run once per prompt and keep f16. */
    if (store == DF_I8)
        store = DF_F16;
    if (df_arch_clip_text(cfg, &arch, err) == DF_OK)
        w = df_weights_load(dev, xfer, &arch, st, layout, store, err);
    df_arch_list_free(&arch);
    return w ? df_clip_text_new(cfg, &w, err) : NULL;
}

const df_weight_layout *df_clip_text_diffusers_layout(void)
{
    static const df_weight_layout diffusers = {locate_same, owns_clip, NULL};
    return &diffusers;
}

/*  One encoder layer on x [rows, D] in place; h, q, k, v, a are [rows, D]
 *  scratch and f [rows, intermediate]. */
typedef struct {
    df_tensor h, q, k, v, a, f;
} layer_scratch;

static int encoder_layer(const df_clip_text_t *m, df_vk_batch_t *batch, int l, uint32_t nseq, df_tensor x,
                         const layer_scratch *s, df_error_t *err)
{
    const df_clip_text_config *c = &m->cfg;
    uint32_t rows = nseq * DF_CLIP_CONTEXT;
    char p[128], n[160];
    snprintf(p, sizeof p, "text_model.encoder.layers.%d", l);
    const df_weight *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *w1, *b1, *w2, *b2;
    int rc = DF_OK;
#define W(var, suffix)                                                                                                 \
    if (rc == DF_OK)                                                                                                   \
        rc = df_weight_at(m->w, p, suffix, &var, err);
    W(wq, "self_attn.q_proj.weight") W(bq, "self_attn.q_proj.bias") W(wk, "self_attn.k_proj.weight")
    W(bk, "self_attn.k_proj.bias") W(wv, "self_attn.v_proj.weight") W(bv, "self_attn.v_proj.bias")
    W(wo, "self_attn.out_proj.weight") W(bo, "self_attn.out_proj.bias") W(w1, "mlp.fc1.weight")
    W(b1, "mlp.fc1.bias") W(w2, "mlp.fc2.weight") W(b2, "mlp.fc2.bias")
#undef W
    if (rc != DF_OK)
        return rc;
    float eps = (float)c->layer_norm_eps;
    snprintf(n, sizeof n, "%s.layer_norm1", p);
    rc = df_layer_norm(batch, m->w, n, x, rows, eps, s->h, err);
    if (rc == DF_OK)
        rc = df_linear(batch, s->h, rows, wq, bq, s->q, 0, DF_ELT_COPY, err);
    if (rc == DF_OK)
        rc = df_linear(batch, s->h, rows, wk, bk, s->k, 0, DF_ELT_COPY, err);
    if (rc == DF_OK)
        rc = df_linear(batch, s->h, rows, wv, bv, s->v, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) {
        df_attn_desc ad = {.batch = nseq, .heads = (uint32_t)c->heads, .nq = DF_CLIP_CONTEXT,
                           .nk = DF_CLIP_CONTEXT, .dim = (uint32_t)(c->hidden / c->heads), .causal = 1};
        df_tensor no_lse = {{NULL, 0}, DF_F32};
        rc = df_attention_forward(batch, &ad, s->q, s->k, s->v, s->a, no_lse, err);
    }
    /* The residual additions ride on the output GEMMs (beta = 1). */
    if (rc == DF_OK)
        rc = df_linear(batch, s->a, rows, wo, bo, x, 1, DF_ELT_COPY, err);
    snprintf(n, sizeof n, "%s.layer_norm2", p);
    if (rc == DF_OK)
        rc = df_layer_norm(batch, m->w, n, x, rows, eps, s->h, err);
    if (rc == DF_OK)
        rc = df_linear(batch, s->h, rows, w1, b1, s->f, 0, c->quick_gelu ? DF_ELT_QUICK_GELU : DF_ELT_GELU_ERF,
                       err);
    if (rc == DF_OK)
        rc = df_linear(batch, s->f, rows, w2, b2, x, 1, DF_ELT_COPY, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "text encoder layer %d", l);
}

uint32_t df_clip_text_eos_at(const int32_t *ids)
{
    uint32_t at = 0;
    for (uint32_t t = 1; t < DF_CLIP_CONTEXT; t++)
        if (ids[t] > ids[at])
            at = t;
    return at;
}

/*  Checks ids and writes token + position embeddings into hidden [rows, D]. */
static int embed(const df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq, df_tensor hidden,
                 df_error_t *err)
{
    const df_clip_text_config *c = &self->cfg;
    const uint32_t T = DF_CLIP_CONTEXT, rows = nseq * T, D = (uint32_t)c->hidden;
    if (c->max_positions < (int)T)
        return df_error_set(err, DF_E_UNSUPPORTED, "text encoder: %d positions, fewer than %u", c->max_positions, T);
    for (uint32_t i = 0; i < rows; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return df_error_set(err, DF_E_RANGE, "text encoder: token id %d at position %u is outside the vocabulary (%d)",
                                ids[i], i % T, c->vocab_size);
    const df_weight *tok, *pos;
    int rc = df_weights_get(self->w, "text_model.embeddings.token_embedding.weight", &tok, err);
    if (rc == DF_OK)
        rc = df_weights_get(self->w, "text_model.embeddings.position_embedding.weight", &pos, err);
    if (rc != DF_OK)
        return rc;
    /* Each token's row copied out of the table (in the table's type), then
     * converted and summed with the positions in one pass. */
    df_tensor rowsbuf;
    size_t esz = df_dtype_size(tok->t.dtype);
    if ((D * esz) % 4)
        return df_error_set(err, DF_E_UNSUPPORTED, "text encoder: hidden size %u in %s rows is not 4-byte aligned", D,
                            df_dtype_name(tok->t.dtype));
    rc = df_scratch(batch, (uint64_t)rows * D, tok->t.dtype, &rowsbuf, err);
    for (uint32_t i = 0; rc == DF_OK && i < rows; i++)
        rc = df_vk_batch_copy(batch, tok->t.ref.buf, tok->t.ref.offset + (uint64_t)ids[i] * D * esz,
                              rowsbuf.ref.buf, rowsbuf.ref.offset + (uint64_t)i * D * esz, D * esz, err);
    if (rc == DF_OK) {
        df_elt_desc e = {.op = DF_ELT_AXPBY, .n = (uint64_t)rows * D, .alpha = 1, .beta = 1, .b_inner = 1,
                         .b_count = (uint64_t)T * D};
        rc = df_eltwise(batch, &e, rowsbuf, pos->t, hidden, err);
    }
    return rc;
}

static int scratch_new(const df_clip_text_t *self, df_vk_batch_t *batch, uint32_t rows, layer_scratch *s,
                       df_error_t *err)
{
    const uint64_t n = (uint64_t)rows * (uint32_t)self->cfg.hidden;
    int rc = df_scratch(batch, n, DF_F32, &s->h, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &s->q, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &s->k, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &s->v, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &s->a, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * (uint32_t)self->cfg.intermediate, DF_F32, &s->f, err);
    return rc;
}

int df_clip_text_forward_all(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                             df_tensor xs, df_error_t *err)
{
    const uint32_t rows = nseq * DF_CLIP_CONTEXT;
    const uint64_t n = (uint64_t)rows * (uint32_t)self->cfg.hidden;
    if (nseq == 0 || !xs.ref.buf || xs.dtype != DF_F32)
        return df_error_set(err, DF_E_INVALID, "text encoder: need sequences and an f32 output");
    int rc = embed(self, batch, ids, nseq, xs, err);
    for (int l = 0; rc == DF_OK && l < self->cfg.layers; l++) {
        df_tensor in = {{xs.ref.buf, xs.ref.offset + (uint64_t)l * n * 4}, DF_F32};
        df_tensor out = {{xs.ref.buf, xs.ref.offset + (uint64_t)(l + 1) * n * 4}, DF_F32};
        layer_scratch s;
        rc = scratch_new(self, batch, rows, &s, err);
        if (rc == DF_OK)
            rc = df_vk_batch_copy(batch, in.ref.buf, in.ref.offset, out.ref.buf, out.ref.offset, n * 4, err);
        if (rc == DF_OK)
            rc = encoder_layer(self, batch, l, nseq, out, &s, err);
        if (rc == DF_OK) /* one layer's scratch at a time */
            rc = df_vk_batch_submit(batch, err);
    }
    return rc;
}

int df_clip_text_forward(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                         df_tensor hidden, df_tensor pooled, df_error_t *err)
{
    const df_clip_text_config *c = &self->cfg;
    const uint32_t T = DF_CLIP_CONTEXT, rows = nseq * T, D = (uint32_t)c->hidden;
    if (nseq == 0 || !hidden.ref.buf || hidden.dtype != DF_F32)
        return df_error_set(err, DF_E_INVALID, "text encoder: need sequences and an f32 output");
    if (pooled.ref.buf && (!c->with_projection || pooled.dtype != DF_F32))
        return df_error_set(err, DF_E_INVALID, "text encoder: no projection for a pooled output");
    layer_scratch s;
    int rc = embed(self, batch, ids, nseq, hidden, err);
    if (rc == DF_OK)
        rc = scratch_new(self, batch, rows, &s, err);

    /* Layers 0 .. L-2 leave the penultimate hidden state in `hidden`. */
    for (int l = 0; rc == DF_OK && l < c->layers - 1; l++)
        rc = encoder_layer(self, batch, l, nseq, hidden, &s, err);
    if (rc != DF_OK || !pooled.ref.buf)
        return rc;

    /* The pooled output: the last layer on a copy, then the final norm and
     * the projection at each sequence's first end-of-text token (the highest
     * id, as CLIP's vocabulary puts it last). */
    df_tensor x, eos, eos_n;
    rc = df_scratch(batch, (uint64_t)rows * D, DF_F32, &x, err);
    if (rc == DF_OK)
        rc = df_vk_batch_copy(batch, hidden.ref.buf, hidden.ref.offset, x.ref.buf, x.ref.offset,
                              (uint64_t)rows * D * 4, err);
    if (rc == DF_OK)
        rc = encoder_layer(self, batch, c->layers - 1, nseq, x, &s, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &eos, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &eos_n, err);
    for (uint32_t b = 0; rc == DF_OK && b < nseq; b++) {
        uint32_t at = df_clip_text_eos_at(ids + (uint64_t)b * T);
        rc = df_vk_batch_copy(batch, x.ref.buf, x.ref.offset + ((uint64_t)b * T + at) * D * 4, eos.ref.buf,
                              eos.ref.offset + (uint64_t)b * D * 4, (uint64_t)D * 4, err);
    }
    if (rc == DF_OK)
        rc = df_layer_norm(batch, self->w, "text_model.final_layer_norm", eos, nseq, (float)c->layer_norm_eps, eos_n,
                           err);
    const df_weight *proj;
    if (rc == DF_OK)
        rc = df_weights_get(self->w, "text_projection.weight", &proj, err);
    if (rc == DF_OK)
        rc = df_linear(batch, eos_n, nseq, proj, NULL, pooled, 0, DF_ELT_COPY, err);
    return rc;
}
