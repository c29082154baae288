/*  unet.c - see unet.h. The block order, skip bookkeeping and norm epsilons
 *  follow diffusers' UNet2DConditionModel: ResNet group norms use the
 *  config's norm_eps, a transformer's input group norm 1e-6, its layer norms
 *  1e-5. */
#include "unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eltwise.h"
#include "gemm.h"
#include "geglu.h"
#include "layers.h"
#include "sdxl_arch.h"
#include "timestep.h"

#define MAX_SKIPS (DF_SDXL_MAX_LEVELS * 9 + 1)

struct _df_unet_t {
    df_unet_config cfg;
    df_weights_t *w;
    df_vk_transfer_t *xfer;
    df_vk_buffer_t *time_freqs, *add_freqs; /* sinusoid frequency tables */
};

void df_unet_destroy(df_unet_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_unet_t *u = *self_p;
    df_weights_destroy(&u->w);
    df_vk_buffer_destroy(&u->time_freqs);
    df_vk_buffer_destroy(&u->add_freqs);
    free(u);
    *self_p = NULL;
}

static df_timestep_desc time_desc(const df_unet_config *c, uint32_t dim)
{
    df_timestep_desc d = {.dim = dim, .max_period = 10000, .shift = (float)c->freq_shift, .scale = 1,
                          .flip_sin_to_cos = c->flip_sin_to_cos};
    return d;
}

static df_vk_buffer_t *freq_table(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_timestep_desc *d,
                                  df_error_t *err)
{
    float *f = malloc(d->dim / 2 * sizeof *f);
    df_vk_buffer_t *b = f ? df_vk_buffer_new(dev, d->dim / 2 * 4, err) : NULL;
    if (b) {
        df_timestep_freqs(d, f);
        if (df_vk_upload(xfer, b, 0, f, d->dim / 2 * 4, err) != DF_OK)
            df_vk_buffer_destroy(&b);
    } else if (!f) {
        df_error_set(err, DF_E_NOMEM, "unet: out of memory");
    }
    free(f);
    return b;
}

df_unet_t *df_unet_new(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, df_weights_t **weights,
                       df_error_t *err)
{
    df_unet_t *u = calloc(1, sizeof *u);
    if (!u) {
        df_weights_destroy(weights);
        df_error_set(err, DF_E_NOMEM, "unet: out of memory");
        return NULL;
    }
    u->cfg = *cfg;
    u->w = *weights;
    u->xfer = xfer;
    *weights = NULL;
    df_timestep_desc td = time_desc(cfg, (uint32_t)cfg->block_out[0]);
    df_timestep_desc ad = time_desc(cfg, (uint32_t)cfg->addition_time_embed_dim);
    u->time_freqs = freq_table(dev, xfer, &td, err);
    u->add_freqs = u->time_freqs ? freq_table(dev, xfer, &ad, err) : NULL;
    if (!u->add_freqs)
        df_unet_destroy(&u);
    return u;
}

df_unet_t *df_unet_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, const df_safetensors_t *st,
                      const df_weight_layout *layout, df_dtype store, df_error_t *err)
{
    df_arch_list arch = {0};
    df_weights_t *w = NULL;
    if (df_arch_unet(cfg, &arch, err) == DF_OK)
        w = df_weights_load(dev, xfer, &arch, st, layout, store, err);
    df_arch_list_free(&arch);
    return w ? df_unet_new(dev, xfer, cfg, &w, err) : NULL;
}

const df_unet_config *df_unet_config_of(const df_unet_t *self) { return &self->cfg; }
df_weights_t *df_unet_weights(df_unet_t *self) { return self->w; }

/* ------------------------------------------------------------ embeddings */

/*  silu(time_embedding(t) + add_embedding([text_embeds, time_ids])): what
 *  every ResNet block's time projection takes, [n, 4 * C0]. */
static int embeddings(df_unet_t *u, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor *temb_silu,
                      df_error_t *err)
{
    const df_unet_config *c = &u->cfg;
    const uint32_t n = in->sample->n, c0 = (uint32_t)c->block_out[0], T = 4 * c0;
    const uint32_t A = (uint32_t)c->addition_time_embed_dim, P = (uint32_t)c->projection_class_embeddings_input_dim;
    const uint32_t pooled = P - 6 * A;
    const df_weight *l1, *b1, *l2, *b2, *a1, *ab1, *a2, *ab2;
    int rc = df_weights_get(u->w, "time_embedding.linear_1.weight", &l1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_1.bias", &b1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_2.weight", &l2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_2.bias", &b2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_1.weight", &a1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_1.bias", &ab1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_2.weight", &a2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_2.bias", &ab2, err);
    df_tensor t, ids, tsin, h, emb, add, ah;
    if (rc == DF_OK) rc = df_scratch_from_host(batch, u->xfer, in->timesteps, n, &t, err);
    if (rc == DF_OK) rc = df_scratch_from_host(batch, u->xfer, in->time_ids, (uint64_t)n * 6, &ids, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * c0, DF_F32, &tsin, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &h, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &emb, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * P, DF_F32, &add, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &ah, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, temb_silu, err);
    if (rc != DF_OK)
        return rc;
    df_timestep_desc td = time_desc(c, c0), ad = time_desc(c, A);
    rc = df_timestep_embedding(batch, &td, n, t, df_tensor_at(u->time_freqs, 0, DF_F32), tsin, err);
    if (rc == DF_OK) rc = df_linear(batch, tsin, n, l1, b1, h, 0, DF_ELT_SILU, err);
    if (rc == DF_OK) rc = df_linear(batch, h, n, l2, b2, emb, 0, DF_ELT_COPY, err);
    /* [pooled text | six sinusoids] per sample: the text goes in by copy, the
     * sinusoids are written in place, each sample's six rows contiguous. */
    for (uint32_t i = 0; rc == DF_OK && i < n; i++) {
        rc = df_vk_batch_copy(batch, in->text_embeds.ref.buf, in->text_embeds.ref.offset + (uint64_t)i * pooled * 4,
                              add.ref.buf, add.ref.offset + (uint64_t)i * P * 4, (uint64_t)pooled * 4, err);
        if (rc == DF_OK) {
            df_tensor t6 = {{ids.ref.buf, ids.ref.offset + (uint64_t)i * 6 * 4}, DF_F32};
            df_tensor dst = {{add.ref.buf, add.ref.offset + ((uint64_t)i * P + pooled) * 4}, DF_F32};
            rc = df_timestep_embedding(batch, &ad, 6, t6, df_tensor_at(u->add_freqs, 0, DF_F32), dst, err);
        }
    }
    if (rc == DF_OK) rc = df_linear(batch, add, n, a1, ab1, ah, 0, DF_ELT_SILU, err);
    if (rc == DF_OK) rc = df_linear(batch, ah, n, a2, ab2, emb, 1, DF_ELT_COPY, err); /* emb += aug */
    if (rc == DF_OK) {
        df_elt_desc e = {.op = DF_ELT_SILU, .n = (uint64_t)n * T};
        df_tensor none = {{NULL, 0}, DF_F32};
        rc = df_eltwise(batch, &e, emb, none, *temb_silu, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "unet embeddings");
}

/* ---------------------------------------------------------- transformers */

/*  attention over token rows: q from x, k and v from kv (x itself for
 *  self-attention), the output projection added onto h. */
static int attention(df_unet_t *u, df_vk_batch_t *batch, const char *p, uint32_t n, uint32_t tokens, uint32_t heads,
                     df_tensor x, df_tensor kv, uint32_t kv_tokens, df_tensor h, df_tensor q, df_tensor k, df_tensor v,
                     df_tensor a, df_error_t *err)
{
    const df_weight *wq, *wk, *wv, *wo, *bo;
    int rc = df_weight_at(u->w, p, "to_q.weight", &wq, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "to_k.weight", &wk, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "to_v.weight", &wv, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "to_out.0.weight", &wo, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "to_out.0.bias", &bo, err);
    const uint32_t C = (uint32_t)wq->shape[0];
    if (rc == DF_OK) rc = df_linear(batch, x, n * tokens, wq, NULL, q, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, kv, n * kv_tokens, wk, NULL, k, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, kv, n * kv_tokens, wv, NULL, v, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) {
        df_attn_desc d = {.batch = n, .heads = heads, .nq = tokens, .nk = kv_tokens, .dim = C / heads};
        rc = df_attention_any(batch, &d, q, k, v, a, err);
    }
    if (rc == DF_OK) rc = df_linear(batch, a, n * tokens, wo, bo, h, 1, DF_ELT_COPY, err);
    return rc;
}

/*  Adapters (LoRA unmerged) of proj_in, which reads the NCHW map hn as
 *  token rows: h[n*HW, C] += scale (hn^T down^T) up^T. */
static int proj_in_adapters(df_vk_batch_t *batch, const df_weight *w, const df_fmap *hn, df_tensor h, df_error_t *err)
{
    const uint32_t n = hn->n, C = hn->c, HW = hn->h * hn->w, out = (uint32_t)w->shape[0];
    int rc = DF_OK;
    for (const df_weight_adapter *a = w->adapters; a && rc == DF_OK; a = a->next) {
        df_tensor t;
        rc = df_scratch(batch, (uint64_t)n * HW * a->rank, DF_F32, &t, err);
        df_gemm_desc g1 = df_gemm_desc_packed(1, 1, HW, a->rank, C, n);
        g1.stride_b = 0;
        if (rc == DF_OK)
            rc = df_gemm(batch, &g1, hn->t.ref, a->down.ref, t.ref, DF_GEMM_AUTO, NULL, err);
        df_gemm_desc g2 = df_gemm_desc_packed(0, 1, n * HW, out, a->rank, 1);
        g2.alpha = a->scale;
        g2.beta = 1;
        if (rc == DF_OK)
            rc = df_gemm(batch, &g2, t.ref, a->up.ref, h.ref, DF_GEMM_AUTO, NULL, err);
    }
    return rc;
}

/*  Adapters of proj_out, which writes token rows h back into the NCHW map:
 *  x[b] += scale up (h[b] down^T)^T per sample. */
static int proj_out_adapters(df_vk_batch_t *batch, const df_weight *w, df_tensor h, const df_fmap *x, df_error_t *err)
{
    const uint32_t n = x->n, C = x->c, HW = x->h * x->w, in = (uint32_t)w->shape[1];
    int rc = DF_OK;
    for (const df_weight_adapter *a = w->adapters; a && rc == DF_OK; a = a->next) {
        df_tensor t;
        rc = df_scratch(batch, (uint64_t)n * HW * a->rank, DF_F32, &t, err);
        df_gemm_desc g1 = df_gemm_desc_packed(0, 1, n * HW, a->rank, in, 1);
        if (rc == DF_OK)
            rc = df_gemm(batch, &g1, h.ref, a->down.ref, t.ref, DF_GEMM_AUTO, NULL, err);
        df_gemm_desc g2 = df_gemm_desc_packed(0, 1, C, HW, a->rank, n);
        g2.stride_a = 0;
        g2.stride_b = (uint64_t)HW * a->rank;
        g2.alpha = a->scale;
        g2.beta = 1;
        if (rc == DF_OK)
            rc = df_gemm(batch, &g2, a->up.ref, t.ref, x->t.ref, DF_GEMM_AUTO, NULL, err);
    }
    return rc;
}

/*  Transformer2DModel on x (NCHW) in place. */
static int transformer(df_unet_t *u, df_vk_batch_t *batch, const char *p, int depth, uint32_t heads, const df_fmap *x,
                       const df_unet_inputs *in, df_error_t *err)
{
    const uint32_t n = x->n, C = x->c, HW = x->h * x->w, rows = n * HW, L = in->context_len;
    char name[224];
    const df_weight *pin, *pinb, *pout, *poutb;
    int rc = df_weight_at(u->w, p, "proj_in.weight", &pin, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "proj_in.bias", &pinb, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "proj_out.weight", &pout, err);
    if (rc == DF_OK) rc = df_weight_at(u->w, p, "proj_out.bias", &poutb, err);
    if (rc == DF_OK && pin->ndim != 2)
        rc = df_error_set(err, DF_E_UNSUPPORTED, "%s: 1x1-convolution projections (use_linear_projection false)", p);
    df_fmap hn;
    df_tensor h, nrm, q, k, v, a, ff, gg;
    if (rc == DF_OK) rc = df_fmap_new(batch, n, C, x->h, x->w, &hn, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * C, DF_F32, &h, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * C, DF_F32, &nrm, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * C, DF_F32, &q, err);
    /* k and v hold the image's tokens or the context's, whichever is longer. */
    uint64_t kv_rows = (uint64_t)n * (HW > L ? HW : L);
    if (rc == DF_OK) rc = df_scratch(batch, kv_rows * C, DF_F32, &k, err);
    if (rc == DF_OK) rc = df_scratch(batch, kv_rows * C, DF_F32, &v, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * C, DF_F32, &a, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * 8 * C, DF_F32, &ff, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * 4 * C, DF_F32, &gg, err);
    snprintf(name, sizeof name, "%s.norm", p);
    if (rc == DF_OK) rc = df_group_norm(batch, u->w, name, (uint32_t)u->cfg.norm_groups, 1e-6f, 0, x, &hn, err);
    /* proj_in straight from NCHW: the map is the transposed left operand. */
    if (rc == DF_OK) {
        df_gemm_desc g = df_gemm_desc_packed(1, 1, HW, C, C, n);
        g.stride_b = 0;
        g.type_b = pin->t.dtype;
        df_gemm_epilogue ep = {.bias = pinb->t, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, hn.t.ref, pin->t.ref, h.ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    if (rc == DF_OK && pin->adapters)
        rc = proj_in_adapters(batch, pin, &hn, h, err);
    for (int d = 0; rc == DF_OK && d < depth; d++) {
        char b[160];
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", p, d);
        snprintf(name, sizeof name, "%s.norm1", b);
        rc = df_layer_norm(batch, u->w, name, h, rows, 1e-5f, nrm, err);
        snprintf(name, sizeof name, "%s.attn1", b);
        if (rc == DF_OK) rc = attention(u, batch, name, n, HW, heads, nrm, nrm, HW, h, q, k, v, a, err);
        snprintf(name, sizeof name, "%s.norm2", b);
        if (rc == DF_OK) rc = df_layer_norm(batch, u->w, name, h, rows, 1e-5f, nrm, err);
        snprintf(name, sizeof name, "%s.attn2", b);
        if (rc == DF_OK) rc = attention(u, batch, name, n, HW, heads, nrm, in->context, L, h, q, k, v, a, err);
        snprintf(name, sizeof name, "%s.norm3", b);
        if (rc == DF_OK) rc = df_layer_norm(batch, u->w, name, h, rows, 1e-5f, nrm, err);
        const df_weight *f0, *f0b, *f2, *f2b;
        snprintf(name, sizeof name, "%s.ff.net", b);
        if (rc == DF_OK) rc = df_weight_at(u->w, name, "0.proj.weight", &f0, err);
        if (rc == DF_OK) rc = df_weight_at(u->w, name, "0.proj.bias", &f0b, err);
        if (rc == DF_OK) rc = df_weight_at(u->w, name, "2.weight", &f2, err);
        if (rc == DF_OK) rc = df_weight_at(u->w, name, "2.bias", &f2b, err);
        if (rc == DF_OK) rc = df_linear(batch, nrm, rows, f0, f0b, ff, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) rc = df_geglu_forward(batch, rows, 4 * C, ff, gg, err);
        if (rc == DF_OK) rc = df_linear(batch, gg, rows, f2, f2b, h, 1, DF_ELT_COPY, err);
    }
    /* proj_out back to NCHW, added onto the block's input. */
    if (rc == DF_OK) {
        df_gemm_desc g = df_gemm_desc_packed(0, 1, C, HW, C, n);
        g.stride_a = 0;
        g.stride_b = (uint64_t)HW * C;
        g.beta = 1;
        g.type_a = pout->t.dtype;
        df_gemm_epilogue ep = {.bias = poutb->t, .bias_per_row = 1, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, pout->t.ref, h.ref, x->t.ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    if (rc == DF_OK && pout->adapters)
        rc = proj_out_adapters(batch, pout, h, x, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", p);
}

/* ----------------------------------------------------------------- blocks */

/*  [a, b] along channels, per sample. */
static int concat(df_vk_batch_t *batch, const df_fmap *a, const df_fmap *b, df_fmap *out, df_error_t *err)
{
    int rc = df_fmap_new(batch, a->n, a->c + b->c, a->h, a->w, out, err);
    uint64_t pa = (uint64_t)a->c * a->h * a->w * 4, pb = (uint64_t)b->c * b->h * b->w * 4;
    for (uint32_t i = 0; rc == DF_OK && i < a->n; i++) {
        uint64_t o = out->t.ref.offset + i * (pa + pb);
        rc = df_vk_batch_copy(batch, a->t.ref.buf, a->t.ref.offset + i * pa, out->t.ref.buf, o, pa, err);
        if (rc == DF_OK)
            rc = df_vk_batch_copy(batch, b->t.ref.buf, b->t.ref.offset + i * pb, out->t.ref.buf, o + pa, pb, err);
    }
    return rc;
}

int df_unet_forward(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor out, df_error_t *err)
{
    const df_unet_config *c = &self->cfg;
    const df_fmap *s = in->sample;
    uint32_t mult = 1u << (c->levels - 1), g = (uint32_t)c->norm_groups;
    float eps = (float)c->norm_eps;
    if (s->n == 0 || s->c != (uint32_t)c->in_channels || s->h == 0 || s->w == 0 || s->h % mult || s->w % mult)
        return df_error_set(err, DF_E_INVALID,
                            "unet: sample %ux%ux%ux%u must have %d channels and sides that are multiples of %u", s->n,
                            s->c, s->h, s->w, c->in_channels, mult);
    if (in->context_len == 0 || !in->context.ref.buf || !in->text_embeds.ref.buf || !in->timesteps || !in->time_ids)
        return df_error_set(err, DF_E_INVALID, "unet: missing conditioning (context, text_embeds, timesteps, time_ids)");
    /* The evaluation runs as a series of submitted steps (one per ResNet +
     * transformer pair) so that only one block's scratch is alive at a time;
     * the embedding, the skip connections and the running activation are
     * kept across them. */
    df_keep kept = {.n = 0}, cur = {.n = 0};
    df_tensor temb;
    int rc = embeddings(self, batch, in, &temb, err);
    if (rc == DF_OK)
        rc = df_keep_tensor(batch, &kept, &temb, (uint64_t)s->n * 4 * (uint64_t)c->block_out[0], err);
    df_fmap x, y, skips[MAX_SKIPS];
    int nskip = 0;
    char p[128];
#define FMAP_ELEMS(m) ((uint64_t)(m).n * (m).c * (m).h * (m).w)
#define SKIP()                                                                                                         \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_keep_tensor(batch, &kept, &x.t, FMAP_ELEMS(x), err);                                               \
        skips[nskip++] = x;                                                                                            \
    } while (0)
#define STEP()                                                                                                         \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_step_end(batch, &cur, &x.t, FMAP_ELEMS(x), err);                                                   \
    } while (0)
/* After SKIP() the activation already lives in a kept buffer: submitting frees the scratch. */
#define SUBMIT()                                                                                                       \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_vk_batch_submit(batch, err);                                                                       \
    } while (0)
    if (rc == DF_OK)
        rc = df_conv_same(batch, self->w, "conv_in", s, &x, err);
    SKIP();
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        for (int j = 0; rc == DF_OK && j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            rc = df_resnet_block(batch, self->w, p, g, eps, &x, temb, &y, err);
            x = y;
            if (rc == DF_OK && c->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                rc = transformer(self, batch, p, c->transformer_depth[i], (uint32_t)c->heads[i], &x, in, err);
            }
            SKIP();
            SUBMIT();
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            rc = df_downsample(batch, self->w, p, 0, &x, &y, err);
            x = y;
            SKIP();
            SUBMIT();
        }
    }
    int top = c->levels - 1;
    if (rc == DF_OK)
        rc = df_resnet_block(batch, self->w, "mid_block.resnets.0", g, eps, &x, temb, &y, err);
    x = y;
    if (rc == DF_OK)
        rc = transformer(self, batch, "mid_block.attentions.0", c->transformer_depth[top], (uint32_t)c->heads[top], &x,
                         in, err);
    STEP();
    if (rc == DF_OK)
        rc = df_resnet_block(batch, self->w, "mid_block.resnets.1", g, eps, &x, temb, &y, err);
    x = y;
    STEP();
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        int level = c->levels - 1 - i;
        for (int j = 0; rc == DF_OK && j <= c->layers_per_block; j++) {
            df_fmap cat;
            rc = concat(batch, &x, &skips[--nskip], &cat, err);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if (rc == DF_OK)
                rc = df_resnet_block(batch, self->w, p, g, eps, &cat, temb, &y, err);
            x = y;
            if (rc == DF_OK && c->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                rc = transformer(self, batch, p, c->transformer_depth[level], (uint32_t)c->heads[level], &x, in, err);
            }
            STEP();
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            rc = df_upsample(batch, self->w, p, &x, &y, err);
            x = y;
        }
        STEP();
    }
#undef SKIP
#undef STEP
#undef SUBMIT
#undef FMAP_ELEMS
    df_fmap h;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x.n, x.c, x.h, x.w, &h, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, self->w, "conv_norm_out", g, eps, 1, &x, &h, err);
    df_fmap o = {out, s->n, (uint32_t)c->out_channels, s->h, s->w};
    static const uint32_t pad[4] = {1, 1, 1, 1};
    if (rc == DF_OK)
        rc = df_conv_named(batch, self->w, "conv_out", &h, 1, pad, &o, 0, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    /* On failure, commands may still be recorded: let the batch free. */
    df_keep_release(&kept, rc == DF_OK ? NULL : batch);
    df_keep_release(&cur, rc == DF_OK ? NULL : batch);
    return rc == DF_OK ? rc : df_error_prefix(err, "unet");
}
