/*  transformer.c - see transformer.h. */
#include "transformer.h"

#include <stdio.h>

#include "attention.h"
#include "eltwise.h"
#include "gemm.h"
#include "geglu.h"
#include "layers.h"
#include "layers_grad.h"

static const df_tensor k_none = {{NULL, 0}, DF_F32};

/*  An attention block's projections: q, k, v, out (and out's bias). */
typedef struct {
    const df_weight *q, *k, *v, *o, *ob;
} attn_weights;

static int attn_weights_get(const df_weights_t *w, const char *p, attn_weights *a, df_error_t *err)
{
    int rc = df_weight_at(w, p, "to_q.weight", &a->q, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "to_k.weight", &a->k, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "to_v.weight", &a->v, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "to_out.0.weight", &a->o, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "to_out.0.bias", &a->ob, err);
    return rc;
}

/*  attention over token rows: q from x, k and v from kv (x itself for
 *  self-attention), the output projection added onto h. */
static int attention(const df_weights_t *w, df_vk_batch_t *batch, const char *p, uint32_t n, uint32_t tokens, uint32_t heads,
                     df_tensor x, df_tensor kv, uint32_t kv_tokens, df_tensor h, df_tensor q, df_tensor k, df_tensor v,
                     df_tensor a, df_error_t *err)
{
    attn_weights aw;
    int rc = attn_weights_get(w, p, &aw, err);
    if (rc != DF_OK)
        return rc;
    const df_weight *wq = aw.q, *wk = aw.k, *wv = aw.v, *wo = aw.o, *bo = aw.ob;
    const uint32_t C = (uint32_t)wq->shape[0];
    rc = df_linear(batch, x, n * tokens, wq, NULL, q, 0, DF_ELT_COPY, err);
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

/*  One transformer layer on token rows h in place, with scratch for its
 *  norms, projections and feed-forward. */
static int layer_forward(const df_weights_t *w, df_vk_batch_t *batch, const char *b, uint32_t n, uint32_t HW,
                         uint32_t heads, uint32_t C, df_tensor h, df_tensor nrm, df_tensor q, df_tensor k, df_tensor v,
                         df_tensor a, df_tensor ff, df_tensor gg, df_tensor context, uint32_t L, df_error_t *err)
{
    const uint32_t rows = n * HW;
    char name[224];
    snprintf(name, sizeof name, "%s.norm1", b);
    int rc = df_layer_norm(batch, w, name, h, rows, 1e-5f, nrm, err);
    snprintf(name, sizeof name, "%s.attn1", b);
    if (rc == DF_OK) rc = attention(w, batch, name, n, HW, heads, nrm, nrm, HW, h, q, k, v, a, err);
    snprintf(name, sizeof name, "%s.norm2", b);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, name, h, rows, 1e-5f, nrm, err);
    snprintf(name, sizeof name, "%s.attn2", b);
    if (rc == DF_OK) rc = attention(w, batch, name, n, HW, heads, nrm, context, L, h, q, k, v, a, err);
    snprintf(name, sizeof name, "%s.norm3", b);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, name, h, rows, 1e-5f, nrm, err);
    const df_weight *f0, *f0b, *f2, *f2b;
    snprintf(name, sizeof name, "%s.ff.net", b);
    if (rc == DF_OK) rc = df_weight_at(w, name, "0.proj.weight", &f0, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "0.proj.bias", &f0b, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "2.weight", &f2, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "2.bias", &f2b, err);
    if (rc == DF_OK) rc = df_linear(batch, nrm, rows, f0, f0b, ff, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_geglu_forward(batch, rows, 4 * C, ff, gg, err);
    if (rc == DF_OK) rc = df_linear(batch, gg, rows, f2, f2b, h, 1, DF_ELT_COPY, err);
    return rc;
}

int df_transformer_forward(df_vk_batch_t *batch, const df_weights_t *w, const char *p, uint32_t groups, int depth,
                           uint32_t heads, const df_fmap *x, df_tensor context, uint32_t context_len, df_error_t *err)
{
    const uint32_t n = x->n, C = x->c, HW = x->h * x->w, rows = n * HW, L = context_len;
    char name[224];
    const df_weight *pin, *pinb, *pout, *poutb;
    int rc = df_weight_at(w, p, "proj_in.weight", &pin, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_in.bias", &pinb, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_out.weight", &pout, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_out.bias", &poutb, err);
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
    if (rc == DF_OK) rc = df_group_norm(batch, w, name, groups, 1e-6f, 0, x, &hn, err);
    /* proj_in straight from NCHW: the map is the transposed left operand. */
    df_tensor wv;
    if (rc == DF_OK && (rc = df_weight_values(batch, pin, &wv, err)) == DF_OK) {
        df_gemm_desc g = df_gemm_desc_packed(1, 1, HW, C, C, n);
        g.stride_b = 0;
        g.type_b = wv.dtype;
        df_gemm_epilogue ep = {.bias = pinb->t, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, hn.t.ref, wv.ref, h.ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    if (rc == DF_OK && pin->adapters)
        rc = proj_in_adapters(batch, pin, &hn, h, err);
    for (int d = 0; rc == DF_OK && d < depth; d++) {
        char b[160];
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", p, d);
        rc = layer_forward(w, batch, b, n, HW, heads, C, h, nrm, q, k, v, a, ff, gg, context, L, err);
    }
    /* proj_out back to NCHW, added onto the block's input. */
    if (rc == DF_OK && (rc = df_weight_values(batch, pout, &wv, err)) == DF_OK) {
        df_gemm_desc g = df_gemm_desc_packed(0, 1, C, HW, C, n);
        g.stride_a = 0;
        g.stride_b = (uint64_t)HW * C;
        g.beta = 1;
        g.type_a = wv.dtype;
        df_gemm_epilogue ep = {.bias = poutb->t, .bias_per_row = 1, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, wv.ref, h.ref, x->t.ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    if (rc == DF_OK && pout->adapters)
        rc = proj_out_adapters(batch, pout, h, x, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", p);
}

/* ---------------------------------------------------------------- backward */

/*  C[b] (+)= alpha op(A[b]) op(B[b]) over `count` batch entries with the
 *  given batch strides (0 shares one matrix); the types come from the
 *  tensors. */
static int bmm(df_vk_batch_t *batch, int ta, int tb, uint32_t m, uint32_t n, uint32_t k, uint32_t count,
               uint64_t sa, uint64_t sb, uint64_t sc, float alpha, float beta, df_tensor a, df_tensor b, df_tensor c,
               df_error_t *err)
{
    df_gemm_desc d = df_gemm_desc_packed(ta, tb, m, n, k, count);
    d.stride_a = sa, d.stride_b = sb, d.stride_c = sc;
    d.alpha = alpha, d.beta = beta;
    d.type_a = a.dtype, d.type_b = b.dtype, d.type_c = c.dtype;
    return df_gemm(batch, &d, a.ref, b.ref, c.ref, DF_GEMM_AUTO, NULL, err);
}

static df_tensor at_f32(df_tensor t, uint64_t elems)
{
    t.ref.offset += elems * 4;
    return t;
}

/*  What one attention's forward pass leaves for its backward pass. */
typedef struct {
    df_tensor q, k, v, a, lse;
} attn_saved;

/*  The attention again, keeping q, k, v, the heads' output a and the
 *  log-sum-exp; its output projection is added onto h. */
static int attention_keep(const df_weights_t *w, df_vk_batch_t *batch, const char *p, uint32_t n, uint32_t tokens,
                          uint32_t heads, df_tensor x, df_tensor kv, uint32_t kv_tokens, df_tensor h, attn_saved *s,
                          df_error_t *err)
{
    attn_weights aw;
    int rc = attn_weights_get(w, p, &aw, err);
    if (rc != DF_OK)
        return rc;
    const df_weight *wq = aw.q, *wk = aw.k, *wv = aw.v, *wo = aw.o, *bo = aw.ob;
    const uint32_t C = (uint32_t)wq->shape[0];
    df_attn_desc d = {.batch = n, .heads = heads, .nq = tokens, .nk = kv_tokens, .dim = C / heads};
    if (d.dim > 128 || d.dim % 4)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: training needs head dims of at most 128 (got %u)", p, d.dim);
    rc = df_scratch(batch, (uint64_t)n * tokens * C, DF_F32, &s->q, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * kv_tokens * C, DF_F32, &s->k, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * kv_tokens * C, DF_F32, &s->v, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * tokens * C, DF_F32, &s->a, err);
    if (rc == DF_OK) rc = df_scratch(batch, df_attn_lse_elems(&d), DF_F32, &s->lse, err);
    if (rc == DF_OK) rc = df_linear(batch, x, n * tokens, wq, NULL, s->q, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, kv, n * kv_tokens, wk, NULL, s->k, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, kv, n * kv_tokens, wv, NULL, s->v, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_attention_forward(batch, &d, s->q, s->k, s->v, s->a, s->lse, err);
    if (rc == DF_OK) rc = df_linear(batch, s->a, n * tokens, wo, bo, h, 1, DF_ELT_COPY, err);
    return rc;
}

/*  dx (written) from dout, the gradient of the attention's added output;
 *  for self-attention (kv is x) the key and value paths add into dx too,
 *  for cross-attention into dkv when it has a buffer (the text encoders are
 *  training), else they only feed their adapters' gradients. */
static int attention_backward(const df_weights_t *w, df_vk_batch_t *batch, const char *p, uint32_t n,
                              uint32_t tokens, uint32_t heads, df_tensor x, df_tensor kv, uint32_t kv_tokens,
                              int self_attn, const attn_saved *s, df_tensor dout, df_tensor dx, df_tensor dkv,
                              df_error_t *err)
{
    attn_weights aw;
    int rc = attn_weights_get(w, p, &aw, err);
    if (rc != DF_OK)
        return rc;
    const df_weight *wq = aw.q, *wk = aw.k, *wv = aw.v, *wo = aw.o;
    const uint32_t C = (uint32_t)wq->shape[0];
    df_attn_desc d = {.batch = n, .heads = heads, .nq = tokens, .nk = kv_tokens, .dim = C / heads};
    df_tensor da, dq, dk, dv, none = {{NULL, 0}, DF_F32};
    rc = df_scratch(batch, (uint64_t)n * tokens * C, DF_F32, &da, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * tokens * C, DF_F32, &dq, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * kv_tokens * C, DF_F32, &dk, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * kv_tokens * C, DF_F32, &dv, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, s->a, n * tokens, wo, dout, da, 0, err);
    if (rc == DF_OK) rc = df_bias_backward_rows(batch, aw.ob, dout, n * tokens, err);
    if (rc == DF_OK) rc = df_attention_backward(batch, &d, s->q, s->k, s->v, s->a, s->lse, da, dq, dk, dv, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, x, n * tokens, wq, dq, dx, 0, err);
    (void)none;
    if (rc == DF_OK) rc = df_linear_backward(batch, kv, n * kv_tokens, wk, dk, self_attn ? dx : dkv, 1, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, kv, n * kv_tokens, wv, dv, self_attn ? dx : dkv, 1, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s (backward)", p);
}

/*  One transformer layer's backward pass: h is its input (kept by the
 *  caller), dh the gradient with respect to its output, turned in place
 *  into the gradient with respect to h. */
static int layer_backward(const df_weights_t *w, df_vk_batch_t *batch, const char *b, uint32_t n, uint32_t HW,
                          uint32_t heads, uint32_t C, df_tensor h, df_tensor context, uint32_t L, df_tensor dh,
                          df_tensor dcontext, df_error_t *err)
{
    const uint32_t rows = n * HW;
    const uint64_t rc_elems = (uint64_t)rows * C;
    char name[224];
    const df_weight *f0, *f0b, *f2, *f2b;
    snprintf(name, sizeof name, "%s.ff.net", b);
    int rc = df_weight_at(w, name, "0.proj.weight", &f0, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "0.proj.bias", &f0b, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "2.weight", &f2, err);
    if (rc == DF_OK) rc = df_weight_at(w, name, "2.bias", &f2b, err);
    /* Forward again: n1 = ln1 h, h1 = h + attn1; n2 = ln2 h1, h2 = h1 + attn2;
     * n3 = ln3 h2, f = n3 W0 (GEGLU input), g = geglu f. */
    df_tensor n1, h1, n2, h2, n3, f, g, dg, df, dn, tmp;
    attn_saved s1, s2;
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &n1, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &h1, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &n2, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &h2, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &n3, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems * 8, DF_F32, &f, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems * 4, DF_F32, &g, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems * 4, DF_F32, &dg, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems * 8, DF_F32, &df, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &dn, err);
    if (rc == DF_OK) rc = df_scratch(batch, rc_elems, DF_F32, &tmp, err);
    char n1p[224], n2p[224], n3p[224], a1p[224], a2p[224];
    snprintf(n1p, sizeof n1p, "%s.norm1", b);
    snprintf(n2p, sizeof n2p, "%s.norm2", b);
    snprintf(n3p, sizeof n3p, "%s.norm3", b);
    snprintf(a1p, sizeof a1p, "%s.attn1", b);
    snprintf(a2p, sizeof a2p, "%s.attn2", b);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, n1p, h, rows, 1e-5f, n1, err);
    if (rc == DF_OK) rc = df_vk_batch_copy(batch, h.ref.buf, h.ref.offset, h1.ref.buf, h1.ref.offset, rc_elems * 4, err);
    if (rc == DF_OK) rc = attention_keep(w, batch, a1p, n, HW, heads, n1, n1, HW, h1, &s1, err);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, n2p, h1, rows, 1e-5f, n2, err);
    if (rc == DF_OK) rc = df_vk_batch_copy(batch, h1.ref.buf, h1.ref.offset, h2.ref.buf, h2.ref.offset, rc_elems * 4, err);
    if (rc == DF_OK) rc = attention_keep(w, batch, a2p, n, HW, heads, n2, context, L, h2, &s2, err);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, n3p, h2, rows, 1e-5f, n3, err);
    if (rc == DF_OK) rc = df_linear(batch, n3, rows, f0, f0b, f, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_geglu_forward(batch, rows, 4 * C, f, g, err);
    /* Back through the feed-forward, then each attention; each branch's
     * input gradient goes through its layer norm and onto the residual. */
    if (rc == DF_OK) rc = df_linear_backward(batch, g, rows, f2, dh, dg, 0, err);
    if (rc == DF_OK) rc = df_bias_backward_rows(batch, f2b, dh, rows, err);
    if (rc == DF_OK) rc = df_geglu_backward(batch, rows, 4 * C, f, dg, df, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, n3, rows, f0, df, dn, 0, err);
    if (rc == DF_OK) rc = df_bias_backward_rows(batch, f0b, df, rows, err);
    if (rc == DF_OK) rc = df_layer_norm_backward(batch, w, n3p, h2, rows, 1e-5f, dn, tmp, err);
    if (rc == DF_OK) rc = df_add_into(batch, tmp, dh, rc_elems, err);
    if (rc == DF_OK) rc = attention_backward(w, batch, a2p, n, HW, heads, n2, context, L, 0, &s2, dh, dn, dcontext, err);
    if (rc == DF_OK) rc = df_layer_norm_backward(batch, w, n2p, h1, rows, 1e-5f, dn, tmp, err);
    if (rc == DF_OK) rc = df_add_into(batch, tmp, dh, rc_elems, err);
    if (rc == DF_OK) rc = attention_backward(w, batch, a1p, n, HW, heads, n1, n1, HW, 1, &s1, dh, dn, k_none, err);
    if (rc == DF_OK) rc = df_layer_norm_backward(batch, w, n1p, h, rows, 1e-5f, dn, tmp, err);
    if (rc == DF_OK) rc = df_add_into(batch, tmp, dh, rc_elems, err);
    return rc;
}

int df_transformer_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *p, uint32_t groups,
                            int depth, uint32_t heads, const df_fmap *x, df_tensor context, uint32_t context_len,
                            const df_fmap *dy, const df_fmap *dx, df_tensor dcontext, df_error_t *err)
{
    const uint32_t n = x->n, C = x->c, HW = x->h * x->w, rows = n * HW;
    const uint64_t elems = (uint64_t)rows * C;
    const df_weight *pin, *pinb, *pout, *poutb;
    int rc = df_weight_at(w, p, "proj_in.weight", &pin, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_in.bias", &pinb, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_out.weight", &pout, err);
    if (rc == DF_OK) rc = df_weight_at(w, p, "proj_out.bias", &poutb, err);
    if (rc == DF_OK && (pin->ndim != 2 || depth < 1 || depth > 64))
        rc = df_error_set(err, DF_E_UNSUPPORTED, "%s: linear projections and 1 to 64 layers only", p);
    if (rc != DF_OK)
        return rc;
    /* Forward to the last layer's output, keeping every layer's input:
     * hs[d] (d = 0 .. depth) in one buffer. A layer's own work is scratch
     * freed by a submit after it, forward and backward, so memory holds the
     * layers' inputs and one layer's work (SDXL's deepest blocks have ten
     * layers). What lives across those submits is owned here, and so must
     * be the caller's x, dy and dx. */
    char name[224], b[160];
    df_fmap hn = *x, dhn;
    df_tensor hs, dh, t, dt;
    df_keep own = {.n = 0};
    rc = df_keep_new(batch, &own, elems, DF_F32, &hn.t, err);
    if (rc == DF_OK) rc = df_keep_new(batch, &own, elems * (uint64_t)(depth + 1), DF_F32, &hs, err);
    if (rc == DF_OK) rc = df_keep_new(batch, &own, elems, DF_F32, &dh, err);
    snprintf(name, sizeof name, "%s.norm", p);
    if (rc == DF_OK) rc = df_group_norm(batch, w, name, groups, 1e-6f, 0, x, &hn, err);
    df_tensor wv;
    if (rc == DF_OK) rc = df_weight_values(batch, pin, &wv, err);
    if (rc == DF_OK) rc = bmm(batch, 1, 1, HW, C, C, n, (uint64_t)C * HW, 0, (uint64_t)HW * C, 1, 0, hn.t, wv, hs, err);
    if (rc == DF_OK) { /* the bias, broadcast over the rows */
        df_elt_desc e = {.op = DF_ELT_AXPBY, .n = elems, .alpha = 1, .beta = 1, .b_inner = 1, .b_count = C};
        rc = df_eltwise(batch, &e, hs, pinb->t, hs, err);
    }
    if (rc == DF_OK && pin->adapters)
        rc = proj_in_adapters(batch, pin, &hn, hs, err);
    for (int d = 0; rc == DF_OK && d < depth; d++) {
        df_tensor in = at_f32(hs, elems * (uint64_t)d), out = at_f32(hs, elems * (uint64_t)(d + 1));
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", p, d);
        rc = df_vk_batch_copy(batch, in.ref.buf, in.ref.offset, out.ref.buf, out.ref.offset, elems * 4, err);
        df_tensor nrm, q, k, v, a, ff, gg;
        uint64_t kv_rows = (uint64_t)n * (HW > context_len ? HW : context_len);
        if (rc == DF_OK) rc = df_scratch(batch, elems, DF_F32, &nrm, err);
        if (rc == DF_OK) rc = df_scratch(batch, elems, DF_F32, &q, err);
        if (rc == DF_OK) rc = df_scratch(batch, kv_rows * C, DF_F32, &k, err);
        if (rc == DF_OK) rc = df_scratch(batch, kv_rows * C, DF_F32, &v, err);
        if (rc == DF_OK) rc = df_scratch(batch, elems, DF_F32, &a, err);
        if (rc == DF_OK) rc = df_scratch(batch, elems * 8, DF_F32, &ff, err);
        if (rc == DF_OK) rc = df_scratch(batch, elems * 4, DF_F32, &gg, err);
        if (rc == DF_OK) rc = layer_forward(w, batch, b, n, HW, heads, C, out, nrm, q, k, v, a, ff, gg, context,
                                            context_len, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
    }
    /* Back through proj_out: out[b] = x[b] + Wout h[b]^T, so dh[b] = dy[b]^T Wout. */
    df_tensor hl = at_f32(hs, elems * (uint64_t)depth);
    if (rc == DF_OK) rc = df_weight_values(batch, pout, &wv, err);
    if (rc == DF_OK)
        rc = bmm(batch, 1, 0, HW, C, C, n, (uint64_t)C * HW, 0, (uint64_t)HW * C, 1, 0, dy->t, wv, dh, err);
    /* Full fine-tuning: dWout += sum_b dy[b] h[b]; the bias, per channel of dy. */
    for (uint32_t i = 0; rc == DF_OK && pout->grad.ref.buf && i < n; i++)
        rc = bmm(batch, 0, 0, C, C, HW, 1, 0, 0, 0, 1, 1, at_f32(dy->t, (uint64_t)i * C * HW),
                 at_f32(hl, (uint64_t)i * HW * C), pout->grad, err);
    if (rc == DF_OK)
        rc = df_bias_backward_maps(batch, poutb, dy, err);
    for (const df_weight_adapter *a = pout->adapters; a && rc == DF_OK; a = a->next) {
        /* x[b] += s up t[b]^T with t = h down^T. */
        rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &t, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &dt, err);
        if (rc == DF_OK) rc = bmm(batch, 0, 1, rows, a->rank, C, 1, 0, 0, 0, 1, 0, hl, a->down, t, err);
        for (uint32_t i = 0; rc == DF_OK && a->grad_up.ref.buf && i < n; i++)
            rc = bmm(batch, 0, 0, C, a->rank, HW, 1, 0, 0, 0, a->scale, 1, at_f32(dy->t, (uint64_t)i * C * HW),
                     at_f32(t, (uint64_t)i * HW * a->rank), a->grad_up, err);
        if (rc == DF_OK)
            rc = bmm(batch, 1, 0, HW, a->rank, C, n, (uint64_t)C * HW, 0, (uint64_t)HW * a->rank, a->scale, 0, dy->t,
                     a->up, dt, err);
        if (rc == DF_OK && a->grad_down.ref.buf)
            rc = bmm(batch, 1, 0, a->rank, C, rows, 1, 0, 0, 0, 1, 1, dt, hl, a->grad_down, err);
        if (rc == DF_OK)
            rc = bmm(batch, 0, 0, rows, C, a->rank, 1, 0, 0, 0, 1, 1, dt, a->down, dh, err);
    }
    for (int d = depth - 1; rc == DF_OK && d >= 0; d--) {
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", p, d);
        rc = layer_backward(w, batch, b, n, HW, heads, C, at_f32(hs, elems * (uint64_t)d), context, context_len, dh,
                            dcontext, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
    }
    /* Back through proj_in: h[b] = hn[b]^T Win^T, so dhn[b] = Win^T dh[b]^T. */
    if (rc == DF_OK) rc = df_fmap_new(batch, n, C, x->h, x->w, &dhn, err);
    if (rc == DF_OK) rc = df_weight_values(batch, pin, &wv, err);
    if (rc == DF_OK)
        rc = bmm(batch, 1, 1, C, HW, C, n, 0, (uint64_t)HW * C, (uint64_t)C * HW, 1, 0, wv, dh, dhn.t, err);
    /* Full fine-tuning: dWin += sum_b dh[b]^T hn[b]^T; the bias, over the rows. */
    for (uint32_t i = 0; rc == DF_OK && pin->grad.ref.buf && i < n; i++)
        rc = bmm(batch, 1, 1, C, C, HW, 1, 0, 0, 0, 1, 1, at_f32(dh, (uint64_t)i * HW * C),
                 at_f32(hn.t, (uint64_t)i * C * HW), pin->grad, err);
    if (rc == DF_OK)
        rc = df_bias_backward_rows(batch, pinb, dh, rows, err);
    for (const df_weight_adapter *a = pin->adapters; a && rc == DF_OK; a = a->next) {
        /* h += s t up^T with t[b] = hn[b]^T down^T. */
        rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &t, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &dt, err);
        if (rc == DF_OK)
            rc = bmm(batch, 1, 1, HW, a->rank, C, n, (uint64_t)C * HW, 0, (uint64_t)HW * a->rank, 1, 0, hn.t, a->down,
                     t, err);
        if (rc == DF_OK && a->grad_up.ref.buf)
            rc = bmm(batch, 1, 0, C, a->rank, rows, 1, 0, 0, 0, a->scale, 1, dh, t, a->grad_up, err);
        if (rc == DF_OK) rc = bmm(batch, 0, 0, rows, a->rank, C, 1, 0, 0, 0, a->scale, 0, dh, a->up, dt, err);
        for (uint32_t i = 0; rc == DF_OK && a->grad_down.ref.buf && i < n; i++)
            rc = bmm(batch, 1, 1, a->rank, C, HW, 1, 0, 0, 0, 1, 1, at_f32(dt, (uint64_t)i * HW * a->rank),
                     at_f32(hn.t, (uint64_t)i * C * HW), a->grad_down, err);
        if (rc == DF_OK)
            rc = bmm(batch, 1, 1, C, HW, a->rank, n, 0, (uint64_t)HW * a->rank, (uint64_t)C * HW, 1, 1, a->down, dt,
                     dhn.t, err);
    }
    /* Through the group norm, onto the residual's dy. */
    if (rc == DF_OK) rc = df_group_norm_backward(batch, w, name, groups, 1e-6f, 0, x, &dhn, dx, err);
    if (rc == DF_OK) rc = df_add_into(batch, dy->t, dx->t, elems, err);
    df_keep_release(&own, batch); /* freed once the work recorded so far completes */
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", p);
}
