/*  layers_grad.c - see layers_grad.h. */
#include "layers_grad.h"

#include <stdio.h>

#include "conv2d.h"
#include "copy2d.h"
#include "eltwise.h"
#include "gemm.h"
#include "norm.h"

static const df_tensor k_none = {{NULL, 0}, DF_F32};

/*  Full fine-tuning: the norm's (dgamma, dbeta) pairs per channel, written
 *  into scratch by the norm's backward pass, taken apart and added into
 *  gamma's and beta's gradients. */
static int affine_into(df_vk_batch_t *batch, const df_weight *g, const df_weight *b, df_tensor affine, df_error_t *err)
{
    const uint32_t c = (uint32_t)g->nelem;
    df_tensor part;
    int rc = df_scratch(batch, c, DF_F32, &part, err);
    for (int k = 0; rc == DF_OK && k < 2; k++) {
        df_copy2d_desc d = {.rows = c, .width = 1, .ld_x = 2, .ld_y = 1};
        df_tensor src = affine;
        src.ref.offset += (uint64_t)k * 4;
        rc = df_copy2d(batch, &d, src, part, err);
        if (rc == DF_OK)
            rc = df_add_into(batch, part, k ? b->grad : g->grad, c, err);
    }
    return rc;
}

int df_add_into(df_vk_batch_t *batch, df_tensor x, df_tensor y, uint64_t n, df_error_t *err)
{
    df_elt_desc e = {.op = DF_ELT_AXPBY, .n = n, .alpha = 1, .beta = 1};
    return df_eltwise(batch, &e, x, y, y, err);
}

/*  n ones (f32) in a scratch tensor: summing rows or pixels is a GEMM with it. */
static int ones_new(df_vk_batch_t *batch, uint64_t n, df_tensor *out, df_error_t *err)
{
    int rc = df_scratch(batch, n, DF_F32, out, err);
    return rc == DF_OK ? df_vk_batch_fill(batch, out->ref.buf, out->ref.offset, n * 4, 0x3f800000u /* 1.0f */, err)
                       : rc;
}

/*  One GEMM C (+)= alpha op(A) op(B), all f32 unless said. */
static int mm(df_vk_batch_t *batch, int ta, int tb, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta,
              df_tensor a, df_tensor b, df_tensor c, df_error_t *err)
{
    df_gemm_desc d = df_gemm_desc_packed(ta, tb, m, n, k, 1);
    d.alpha = alpha;
    d.beta = beta;
    d.type_a = a.dtype;
    d.type_b = b.dtype;
    d.type_c = c.dtype;
    return df_gemm(batch, &d, a.ref, b.ref, c.ref, DF_GEMM_AUTO, NULL, err);
}

int df_bias_backward_rows(df_vk_batch_t *batch, const df_weight *bias, df_tensor dy, uint32_t rows, df_error_t *err)
{
    if (!bias || !bias->grad.ref.buf)
        return DF_OK;
    df_tensor one;
    int rc = ones_new(batch, rows, &one, err);
    return rc == DF_OK ? mm(batch, 0, 0, 1, (uint32_t)bias->nelem, rows, 1, 1, one, dy, bias->grad, err) : rc;
}

int df_bias_backward_maps(df_vk_batch_t *batch, const df_weight *bias, const df_fmap *dy, df_error_t *err)
{
    if (!bias || !bias->grad.ref.buf)
        return DF_OK;
    const uint32_t hw = dy->h * dy->w;
    df_tensor one;
    int rc = ones_new(batch, hw, &one, err);
    for (uint32_t i = 0; rc == DF_OK && i < dy->n; i++) {
        df_tensor dyi = dy->t;
        dyi.ref.offset += (uint64_t)i * dy->c * hw * 4;
        rc = mm(batch, 0, 0, dy->c, 1, hw, 1, 1, dyi, one, bias->grad, err);
    }
    return rc;
}

int df_linear_backward(df_vk_batch_t *batch, df_tensor x, uint32_t rows, const df_weight *w, df_tensor dy,
                       df_tensor dx, float dx_beta, df_error_t *err)
{
    const uint32_t out = (uint32_t)w->shape[0], in = (uint32_t)(w->nelem / w->shape[0]);
    int rc = DF_OK;
    df_tensor wv;
    if (dx.ref.buf && (rc = df_weight_values(batch, w, &wv, err)) == DF_OK) /* dx = dy W: W is stored [out, in] */
        rc = mm(batch, 0, 0, rows, in, out, 1, dx_beta, dy, wv, dx, err);
    if (rc == DF_OK && w->grad.ref.buf) /* full fine-tuning: dW += dy^T x */
        rc = mm(batch, 1, 0, out, in, rows, 1, 1, dy, x, w->grad, err);
    /* y += s up (down x): with t = down x and dt = s up^T dy,
     * d up = s dy t^T, d down = dt x^T, dx += down^T dt (row-major: the
     * transposes of those). */
    for (const df_weight_adapter *a = w->adapters; a && rc == DF_OK; a = a->next) {
        df_tensor t, dt;
        rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &t, err);
        if (rc == DF_OK)
            rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &dt, err);
        if (rc == DF_OK)
            rc = mm(batch, 0, 1, rows, a->rank, in, 1, 0, x, a->down, t, err);
        if (rc == DF_OK)
            rc = mm(batch, 0, 0, rows, a->rank, out, a->scale, 0, dy, a->up, dt, err);
        if (rc == DF_OK && a->grad_up.ref.buf)
            rc = mm(batch, 1, 0, out, a->rank, rows, a->scale, 1, dy, t, a->grad_up, err);
        if (rc == DF_OK && a->grad_down.ref.buf)
            rc = mm(batch, 1, 0, a->rank, in, rows, 1, 1, dt, x, a->grad_down, err);
        if (rc == DF_OK && dx.ref.buf)
            rc = mm(batch, 0, 0, rows, in, a->rank, 1, 1, dt, a->down, dx, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "%s (backward)", w->name);
}

int df_conv_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, const df_fmap *x,
                     uint32_t stride, const uint32_t pad[4], const df_fmap *dy, const df_fmap *dx, int accumulate,
                     df_error_t *err)
{
    const df_weight *wt;
    int rc = df_weight_at(w, prefix, "weight", &wt, err);
    if (rc != DF_OK)
        return rc;
    df_conv2d_desc d = {.n = x->n, .in_c = x->c, .in_h = x->h, .in_w = x->w, .out_c = (uint32_t)wt->shape[0],
                        .kh = (uint32_t)wt->shape[2], .kw = (uint32_t)wt->shape[3], .stride = stride,
                        .pad_t = pad[0], .pad_l = pad[1], .pad_b = pad[2], .pad_r = pad[3], .layout = DF_CONV_OIHW};
    df_tensor wv;
    if (dx && dx->t.ref.buf && (rc = df_weight_values(batch, wt, &wv, err)) == DF_OK)
        rc = df_conv2d_backward_data(batch, &d, dy->t, wv, dx->t, accumulate, err);
    if (rc == DF_OK && wt->grad.ref.buf) { /* full fine-tuning: the kernel's and the bias's gradients */
        char bn[224];
        snprintf(bn, sizeof bn, "%s.bias", prefix);
        const df_weight *bias = df_weights_find(w, bn);
        rc = df_conv2d_backward_weight(batch, &d, x->t, dy->t, wt->grad, 1, err);
        if (rc == DF_OK)
            rc = df_bias_backward_maps(batch, bias, dy, err);
    }
    const uint32_t hw = dy->h * dy->w, out = dy->c;
    /* y[n] += s up t[n] with t = conv(x, down): d up = s sum_n dy[n] t[n]^T,
     * dt[n] = s up^T dy[n], then down's and x's gradients through the
     * convolution. */
    for (const df_weight_adapter *a = wt->adapters; a && rc == DF_OK; a = a->next) {
        df_conv2d_desc dd = d;
        dd.out_c = a->rank;
        df_fmap t, dt;
        rc = df_fmap_new(batch, dy->n, a->rank, dy->h, dy->w, &t, err);
        if (rc == DF_OK)
            rc = df_fmap_new(batch, dy->n, a->rank, dy->h, dy->w, &dt, err);
        if (rc == DF_OK)
            rc = df_conv2d_forward(batch, &dd, x->t, a->down, k_none, t.t, 0, err);
        for (uint32_t i = 0; rc == DF_OK && a->grad_up.ref.buf && i < dy->n; i++) {
            df_tensor dyi = dy->t, ti = t.t;
            dyi.ref.offset += (uint64_t)i * out * hw * 4;
            ti.ref.offset += (uint64_t)i * a->rank * hw * 4;
            rc = mm(batch, 0, 1, out, a->rank, hw, a->scale, 1, dyi, ti, a->grad_up, err);
        }
        if (rc == DF_OK) {
            df_gemm_desc g = df_gemm_desc_packed(1, 0, a->rank, hw, out, dy->n);
            g.stride_a = 0;
            g.alpha = a->scale;
            rc = df_gemm(batch, &g, a->up.ref, dy->t.ref, dt.t.ref, DF_GEMM_AUTO, NULL, err);
        }
        if (rc == DF_OK && a->grad_down.ref.buf)
            rc = df_conv2d_backward_weight(batch, &dd, x->t, dt.t, a->grad_down, 1, err);
        if (rc == DF_OK && dx && dx->t.ref.buf)
            rc = df_conv2d_backward_data(batch, &dd, dt.t, a->down, dx->t, 1, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "%s (backward)", prefix);
}

int df_group_norm_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups,
                           float eps, int silu, const df_fmap *x, const df_fmap *dy, const df_fmap *dx,
                           df_error_t *err)
{
    const df_weight *g, *b;
    int rc = df_weight_pair(w, prefix, &g, &b, err);
    if (rc != DF_OK)
        return rc;
    const uint64_t n = (uint64_t)x->n * x->c * x->h * x->w;
    df_norm_desc d = df_norm_group(x->n, x->c, x->h * x->w, groups, eps);
    df_tensor stats, y, dn = dy->t;
    rc = df_scratch(batch, df_norm_stats_elems(&d), DF_F32, &stats, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, n, DF_F32, &y, err);
    /* The statistics again, and the normalised values the SiLU saw. */
    if (rc == DF_OK)
        rc = df_norm_forward(batch, &d, x->t, g->t, b->t, y, stats, err);
    if (rc == DF_OK && silu) {
        df_elt_desc e = {.op = DF_ELT_SILU_BWD, .n = n, .alpha = 1};
        rc = df_eltwise(batch, &e, y, dy->t, y, err); /* y becomes d(norm output) */
        dn = y;
    }
    df_tensor affine = k_none;
    if (rc == DF_OK && g->grad.ref.buf)
        rc = df_scratch(batch, 2ull * x->c, DF_F32, &affine, err);
    if (rc == DF_OK)
        rc = df_norm_backward(batch, &d, x->t, g->t, stats, dn, dx->t, affine, err);
    if (rc == DF_OK && affine.ref.buf)
        rc = affine_into(batch, g, b, affine, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s (backward)", prefix);
}

int df_layer_norm_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, df_tensor x,
                           uint32_t rows, float eps, df_tensor dy, df_tensor dx, df_error_t *err)
{
    const df_weight *g, *b;
    int rc = df_weight_pair(w, prefix, &g, &b, err);
    if (rc != DF_OK)
        return rc;
    df_norm_desc d = df_norm_layer(rows, (uint32_t)g->shape[0], eps);
    df_tensor stats, y;
    rc = df_scratch(batch, df_norm_stats_elems(&d), DF_F32, &stats, err);
    if (rc == DF_OK)
        rc = df_scratch(batch, (uint64_t)rows * d.channels, DF_F32, &y, err);
    if (rc == DF_OK)
        rc = df_norm_forward(batch, &d, x, g->t, b->t, y, stats, err);
    df_tensor affine = k_none;
    if (rc == DF_OK && g->grad.ref.buf)
        rc = df_scratch(batch, 2ull * d.channels, DF_F32, &affine, err);
    if (rc == DF_OK)
        rc = df_norm_backward(batch, &d, x, g->t, stats, dy, dx, affine, err);
    if (rc == DF_OK && affine.ref.buf)
        rc = affine_into(batch, g, b, affine, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s (backward)", prefix);
}

int df_resnet_backward(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, uint32_t groups, float eps,
                       const df_fmap *x, df_tensor temb_silu, const df_fmap *dy, const df_fmap *dx,
                       df_tensor dtemb_silu, df_error_t *err)
{
    char n1[160], n2[160], c1[160], c2[160], sc[160], scw[170], tp[160];
    snprintf(n1, sizeof n1, "%s.norm1", prefix);
    snprintf(n2, sizeof n2, "%s.norm2", prefix);
    snprintf(c1, sizeof c1, "%s.conv1", prefix);
    snprintf(c2, sizeof c2, "%s.conv2", prefix);
    snprintf(sc, sizeof sc, "%s.conv_shortcut", prefix);
    snprintf(scw, sizeof scw, "%s.weight", sc);
    snprintf(tp, sizeof tp, "%s.time_emb_proj", prefix);
    static const uint32_t one[4] = {1, 1, 1, 1}, none[4] = {0, 0, 0, 0};
    /* The forward pass again, keeping what the backward pass reads: h =
     * silu(norm1 x), a = conv1 h + time projection, h2 = silu(norm2 a). */
    df_fmap h, a, h2, da, dh;
    int rc = df_fmap_new(batch, x->n, x->c, x->h, x->w, &h, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, w, n1, groups, eps, 1, x, &h, err);
    if (rc == DF_OK)
        rc = df_conv_same(batch, w, c1, &h, &a, err);
    if (rc == DF_OK && temb_silu.ref.buf) {
        const df_weight *tw, *tb;
        df_tensor proj;
        rc = df_weight_pair(w, tp, &tw, &tb, err);
        if (rc == DF_OK)
            rc = df_scratch(batch, (uint64_t)x->n * a.c, DF_F32, &proj, err);
        if (rc == DF_OK)
            rc = df_linear(batch, temb_silu, x->n, tw, tb, proj, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) {
            df_elt_desc e = {.op = DF_ELT_AXPBY, .n = (uint64_t)a.n * a.c * a.h * a.w, .alpha = 1, .beta = 1,
                             .b_inner = (uint64_t)a.h * a.w, .b_count = (uint64_t)a.n * a.c};
            rc = df_eltwise(batch, &e, a.t, proj, a.t, err);
        }
    }
    if (rc == DF_OK)
        rc = df_fmap_new(batch, a.n, a.c, a.h, a.w, &h2, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, w, n2, groups, eps, 1, &a, &h2, err);
    /* Back: conv2, norm2 (with its SiLU), conv1, norm1; the shortcut adds. */
    if (rc == DF_OK)
        rc = df_fmap_new(batch, a.n, a.c, a.h, a.w, &dh, err);
    if (rc == DF_OK)
        rc = df_conv_backward(batch, w, c2, &h2, 1, one, dy, &dh, 0, err);
    if (rc == DF_OK)
        rc = df_fmap_new(batch, a.n, a.c, a.h, a.w, &da, err);
    if (rc == DF_OK)
        rc = df_group_norm_backward(batch, w, n2, groups, eps, 1, &a, &dh, &da, err);
    if (rc == DF_OK && temb_silu.ref.buf) {
        /* Adapters on the time projection, and the time embedding's own
         * gradient, need the gradient of its output: the per-channel sum of
         * da over the pixels. */
        const df_weight *tw, *tb;
        rc = df_weight_pair(w, tp, &tw, &tb, err);
        if (rc == DF_OK && (tw->adapters || tw->grad.ref.buf || dtemb_silu.ref.buf)) {
            df_tensor ones, dproj;
            uint32_t hw = a.h * a.w;
            rc = ones_new(batch, hw, &ones, err);
            if (rc == DF_OK)
                rc = df_scratch(batch, (uint64_t)a.n * a.c, DF_F32, &dproj, err);
            if (rc == DF_OK)
                rc = mm(batch, 0, 0, a.n * a.c, 1, hw, 1, 0, da.t, ones, dproj, err);
            if (rc == DF_OK)
                rc = df_linear_backward(batch, temb_silu, x->n, tw, dproj, dtemb_silu, 1, err);
            if (rc == DF_OK)
                rc = df_bias_backward_rows(batch, tb, dproj, x->n, err);
        }
    }
    df_fmap dh1;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x->n, x->c, x->h, x->w, &dh1, err);
    if (rc == DF_OK)
        rc = df_conv_backward(batch, w, c1, &h, 1, one, &da, &dh1, 0, err);
    if (rc == DF_OK)
        rc = df_group_norm_backward(batch, w, n1, groups, eps, 1, x, &dh1, dx, err);
    if (rc == DF_OK) {
        if (df_weights_find(w, scw))
            rc = df_conv_backward(batch, w, sc, x, 1, none, dy, dx, 1, err);
        else
            rc = df_add_into(batch, dy->t, dx->t, (uint64_t)x->n * x->c * x->h * x->w, err);
    }
    return rc;
}
