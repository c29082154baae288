/*  blocks.c - see blocks.h. */
#include "blocks.h"

#include <math.h>
#include <stdio.h>

#include "conv2d.h"
#include "eltwise.h"
#include "gemm.h"
#include "layers.h"
#include "norm.h"
#include "softmax.h"
#include "upsample.h"

int df_fmap_new(df_vk_batch_t *batch, uint32_t n, uint32_t c, uint32_t h, uint32_t w, df_fmap *out, df_error_t *err)
{
    out->n = n, out->c = c, out->h = h, out->w = w;
    return df_scratch(batch, (uint64_t)n * c * h * w, DF_F32, &out->t, err);
}

int df_conv_named(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x, uint32_t stride,
                  const uint32_t pad[4], const df_fmap *y, int accumulate, df_error_t *err)
{
    const df_weight *wt, *b;
    int rc = df_weight_pair(w, prefix, &wt, &b, err);
    if (rc != DF_OK)
        return rc;
    df_conv2d_desc d = {.n = x->n, .in_c = x->c, .in_h = x->h, .in_w = x->w, .out_c = (uint32_t)wt->shape[0],
                        .kh = (uint32_t)wt->shape[2], .kw = (uint32_t)wt->shape[3], .stride = stride,
                        .pad_t = pad[0], .pad_l = pad[1], .pad_b = pad[2], .pad_r = pad[3], .layout = DF_CONV_OIHW};
    if ((uint32_t)wt->shape[1] != x->c || y->c != d.out_c || y->n != x->n || y->h != df_conv2d_out_h(&d) ||
        y->w != df_conv2d_out_w(&d))
        return df_error_set(err, DF_E_INVALID, "%s: a %ux%ux%u input does not fit weights [%lld,%lld,%lld,%lld]",
                            prefix, x->c, x->h, x->w, (long long)wt->shape[0], (long long)wt->shape[1],
                            (long long)wt->shape[2], (long long)wt->shape[3]);
    df_tensor wv;
    if ((rc = df_weight_values(batch, wt, &wv, err)) == DF_OK)
        rc = df_conv2d_forward(batch, &d, x->t, wv, b->t, y->t, accumulate, err);
    /* Adapters (LoRA unmerged): the same kernel into rank channels, then
     * scale times a 1x1 convolution back out (a GEMM per sample), added to y. */
    for (const df_weight_adapter *a = wt->adapters; a && rc == DF_OK; a = a->next) {
        df_conv2d_desc dd = d;
        dd.out_c = a->rank;
        df_fmap t;
        rc = df_fmap_new(batch, y->n, a->rank, y->h, y->w, &t, err);
        if (rc == DF_OK)
            rc = df_conv2d_forward(batch, &dd, x->t, a->down, (df_tensor){{NULL, 0}, DF_F32}, t.t, 0, err);
        df_gemm_desc g = df_gemm_desc_packed(0, 0, y->c, y->h * y->w, a->rank, y->n);
        g.stride_a = 0;
        g.alpha = a->scale;
        g.beta = 1;
        if (rc == DF_OK)
            rc = df_gemm(batch, &g, a->up.ref, t.t.ref, y->t.ref, DF_GEMM_AUTO, NULL, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", prefix);
}

int df_conv_same(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x, df_fmap *y,
                 df_error_t *err)
{
    const df_weight *wt;
    int rc = df_weight_at(w, prefix, "weight", &wt, err);
    if (rc != DF_OK)
        return rc;
    uint32_t p = (uint32_t)wt->shape[2] / 2, pad[4] = {p, p, p, p};
    rc = df_fmap_new(batch, x->n, (uint32_t)wt->shape[0], x->h, x->w, y, err);
    return rc == DF_OK ? df_conv_named(batch, w, prefix, x, 1, pad, y, 0, err) : rc;
}

int df_group_norm(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps, int silu,
                  const df_fmap *x, const df_fmap *y, df_error_t *err)
{
    const df_weight *g, *b;
    int rc = df_weight_pair(w, prefix, &g, &b, err);
    if (rc != DF_OK)
        return rc;
    df_norm_desc d = df_norm_group(x->n, x->c, x->h * x->w, groups, eps);
    d.silu = silu;
    df_tensor stats;
    if ((rc = df_scratch(batch, df_norm_stats_elems(&d), DF_F32, &stats, err)) != DF_OK)
        return rc;
    rc = df_norm_forward(batch, &d, x->t, g->t, b->t, y->t, stats, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", prefix);
}

int df_resnet_block(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                    const df_fmap *x, df_tensor temb_silu, df_fmap *out, df_error_t *err)
{
    char n1[160], n2[160], c1[160], c2[160], sc[160], tp[160];
    snprintf(n1, sizeof n1, "%s.norm1", prefix);
    snprintf(n2, sizeof n2, "%s.norm2", prefix);
    snprintf(c1, sizeof c1, "%s.conv1", prefix);
    snprintf(c2, sizeof c2, "%s.conv2", prefix);
    snprintf(sc, sizeof sc, "%s.conv_shortcut", prefix);
    snprintf(tp, sizeof tp, "%s.time_emb_proj", prefix);
    const df_weight *conv1;
    int rc = df_weight_at(w, c1, "weight", &conv1, err);
    if (rc != DF_OK)
        return rc;
    uint32_t cout = (uint32_t)conv1->shape[0];
    df_fmap h, a;
    rc = df_fmap_new(batch, x->n, x->c, x->h, x->w, &h, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, w, n1, groups, eps, 1, x, &h, err);
    if (rc == DF_OK)
        rc = df_conv_same(batch, w, c1, &h, &a, err);
    if (rc == DF_OK && temb_silu.ref.buf) {
        /* + time_emb_proj(silu(temb)): one value per (sample, channel),
         * broadcast over the pixels. */
        const df_weight *tw, *tb;
        df_tensor proj;
        rc = df_weight_pair(w, tp, &tw, &tb, err);
        if (rc == DF_OK)
            rc = df_scratch(batch, (uint64_t)x->n * cout, DF_F32, &proj, err);
        if (rc == DF_OK)
            rc = df_linear(batch, temb_silu, x->n, tw, tb, proj, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) {
            df_elt_desc e = {.op = DF_ELT_AXPBY, .n = (uint64_t)a.n * a.c * a.h * a.w, .alpha = 1, .beta = 1,
                             .b_inner = (uint64_t)a.h * a.w, .b_count = (uint64_t)a.n * a.c};
            rc = df_eltwise(batch, &e, a.t, proj, a.t, err);
        }
    }
    df_fmap h2;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, a.n, a.c, a.h, a.w, &h2, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, w, n2, groups, eps, 1, &a, &h2, err);
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x->n, cout, x->h, x->w, out, err);
    /* The shortcut (a 1x1 convolution when the width changes) goes into the
     * output first; conv2 then accumulates onto it: the residual sum for free. */
    if (rc == DF_OK) {
        static const uint32_t none[4] = {0, 0, 0, 0};
        char scw[170];
        snprintf(scw, sizeof scw, "%s.weight", sc);
        if (df_weights_find(w, scw)) {
            rc = df_conv_named(batch, w, sc, x, 1, none, out, 0, err);
        } else if (x->c != cout) {
            rc = df_error_set(err, DF_E_NOT_FOUND, "%s: %u -> %u channels needs %s", prefix, x->c, cout, scw);
        } else {
            rc = df_vk_batch_copy(batch, x->t.ref.buf, x->t.ref.offset, out->t.ref.buf, out->t.ref.offset,
                                  (uint64_t)x->n * x->c * x->h * x->w * 4, err);
        }
    }
    static const uint32_t one[4] = {1, 1, 1, 1};
    if (rc == DF_OK)
        rc = df_conv_named(batch, w, c2, &h2, 1, one, out, 1, err);
    return rc;
}

int df_downsample(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, int vae_padding, const df_fmap *x,
                  df_fmap *out, df_error_t *err)
{
    static const uint32_t unet_pad[4] = {1, 1, 1, 1}, vae_pad[4] = {0, 0, 1, 1};
    const uint32_t *pad = vae_padding ? vae_pad : unet_pad;
    uint32_t oh = (x->h + pad[0] + pad[2] - 3) / 2 + 1, ow = (x->w + pad[1] + pad[3] - 3) / 2 + 1;
    int rc = df_fmap_new(batch, x->n, x->c, oh, ow, out, err);
    return rc == DF_OK ? df_conv_named(batch, w, prefix, x, 2, pad, out, 0, err) : rc;
}

int df_upsample(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x, df_fmap *out,
                df_error_t *err)
{
    df_fmap up;
    int rc = df_fmap_new(batch, x->n, x->c, 2 * x->h, 2 * x->w, &up, err);
    if (rc == DF_OK)
        rc = df_upsample2x_forward(batch, x->n * x->c, x->h, x->w, x->t, up.t, err);
    return rc == DF_OK ? df_conv_same(batch, w, prefix, &up, out, err) : rc;
}

static df_tensor at_elem(df_tensor t, uint64_t elems)
{
    t.ref.offset += elems * df_dtype_size(t.dtype);
    return t;
}

int df_attention_any(df_vk_batch_t *batch, const df_attn_desc *d, df_tensor q, df_tensor k, df_tensor v, df_tensor o,
                     df_error_t *err)
{
    if (d->dim <= 128) {
        df_tensor no_lse = {{NULL, 0}, DF_F32};
        return df_attention_forward(batch, d, q, k, v, o, no_lse, err);
    }
    if (d->causal)
        return df_error_set(err, DF_E_UNSUPPORTED, "attention: causal masks need head dim <= 128 (got %u)", d->dim);
    uint64_t ldq = d->ldq ? d->ldq : (uint64_t)d->heads * d->dim, ldk = d->ldk ? d->ldk : (uint64_t)d->heads * d->dim;
    uint64_t ldv = d->ldv ? d->ldv : (uint64_t)d->heads * d->dim, ldo = d->ldo ? d->ldo : (uint64_t)d->heads * d->dim;
    uint64_t bsq = d->bsq ? d->bsq : d->nq * ldq, bsk = d->bsk ? d->bsk : d->nk * ldk;
    uint64_t bsv = d->bsv ? d->bsv : d->nk * ldv, bso = d->bso ? d->bso : d->nq * ldo;
    float scale = d->scale != 0 ? d->scale : 1.0f / sqrtf((float)d->dim);
    /* Query rows per chunk: the scores of a chunk stay near 4M floats. */
    uint32_t chunk = (uint32_t)(4u << 20) / d->nk;
    chunk = chunk < 1 ? 1 : chunk > d->nq ? d->nq : chunk;
    df_tensor s, p;
    int rc = df_scratch(batch, (uint64_t)chunk * d->nk, DF_F32, &s, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)chunk * d->nk, DF_F32, &p, err);
    for (uint32_t b = 0; rc == DF_OK && b < d->batch; b++)
        for (uint32_t h = 0; rc == DF_OK && h < d->heads; h++)
            for (uint32_t r0 = 0; rc == DF_OK && r0 < d->nq; r0 += chunk) {
                uint32_t rows = d->nq - r0 < chunk ? d->nq - r0 : chunk;
                df_gemm_desc g = df_gemm_desc_packed(0, 1, rows, d->nk, d->dim, 1);
                g.lda = (uint32_t)ldq, g.ldb = (uint32_t)ldk;
                g.type_a = q.dtype, g.type_b = k.dtype;
                rc = df_gemm(batch, &g, at_elem(q, b * bsq + r0 * ldq + (uint64_t)h * d->dim).ref,
                             at_elem(k, b * bsk + (uint64_t)h * d->dim).ref, s.ref, DF_GEMM_AUTO, NULL, err);
                if (rc == DF_OK)
                    rc = df_softmax_forward(batch, rows, d->nk, scale, s, p, err);
                if (rc == DF_OK) {
                    df_gemm_desc g2 = df_gemm_desc_packed(0, 0, rows, d->dim, d->nk, 1);
                    g2.ldb = (uint32_t)ldv, g2.ldc = (uint32_t)ldo;
                    g2.type_b = v.dtype, g2.type_c = o.dtype;
                    rc = df_gemm(batch, &g2, p.ref, at_elem(v, b * bsv + (uint64_t)h * d->dim).ref,
                                 at_elem(o, b * bso + r0 * ldo + (uint64_t)h * d->dim).ref, DF_GEMM_AUTO, NULL, err);
                }
            }
    return rc;
}

int df_pixel_attention(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                       const df_fmap *x, df_error_t *err)
{
    const uint32_t C = x->c, HW = x->h * x->w;
    char name[160];
    const df_weight *wt[4], *bs[4];
    static const char *const proj[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    int rc = DF_OK;
    for (int i = 0; i < 4 && rc == DF_OK; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, proj[i]);
        rc = df_weight_pair(w, name, &wt[i], &bs[i], err);
    }
    df_fmap hn;
    df_tensor qkv[3], o;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x->n, C, x->h, x->w, &hn, err);
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    if (rc == DF_OK)
        rc = df_group_norm(batch, w, name, groups, eps, 0, x, &hn, err);
    /* Projections straight from NCHW to token-major [HW, C]: the map is the
     * transposed left operand. */
    for (int i = 0; i < 3 && rc == DF_OK; i++) {
        rc = df_scratch(batch, (uint64_t)x->n * HW * C, DF_F32, &qkv[i], err);
        if (rc != DF_OK)
            break;
        df_tensor wv;
        if ((rc = df_weight_values(batch, wt[i], &wv, err)) != DF_OK)
            break;
        df_gemm_desc g = df_gemm_desc_packed(1, 1, HW, C, C, x->n);
        g.stride_b = 0;
        g.type_b = wv.dtype;
        df_gemm_epilogue ep = {.bias = bs[i]->t, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, hn.t.ref, wv.ref, qkv[i].ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)x->n * HW * C, DF_F32, &o, err);
    if (rc == DF_OK) {
        df_attn_desc ad = {.batch = x->n, .heads = 1, .nq = HW, .nk = HW, .dim = C};
        rc = df_attention_any(batch, &ad, qkv[0], qkv[1], qkv[2], o, err);
    }
    /* Back to NCHW through the output projection, onto the residual. */
    df_tensor wo;
    if (rc == DF_OK && (rc = df_weight_values(batch, wt[3], &wo, err)) == DF_OK) {
        df_gemm_desc g = df_gemm_desc_packed(0, 1, C, HW, C, x->n);
        g.stride_a = 0;
        g.stride_b = (uint64_t)HW * C;
        g.beta = 1;
        g.type_a = wo.dtype;
        df_gemm_epilogue ep = {.bias = bs[3]->t, .bias_per_row = 1, .act = DF_ELT_COPY};
        rc = df_gemm_ex(batch, &g, wo.ref, o.ref, x->t.ref, &ep, DF_GEMM_AUTO, NULL, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", prefix);
}
