/*  conv2d.c - see conv2d.h.
 *
 *  Forward and backward-data passes are one kernel (shaders/conv2d.comp)
 *  seen through a "pass": a source tensor gathered through the taps, a
 *  destination, and the weight strides of (destination channel, source
 *  channel, tap). The weight gradient has its own kernel
 *  (shaders/conv2d_wgrad.comp). Both are split into dispatches by batch
 *  entries and channel ranges until every operand's window fits a binding.
 */
#include "conv2d.h"

#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "copy2d.h"
#include "vk_device.h"
#include "vk_pipeline.h"

/* Matches Push in shaders/conv2d.comp. */
typedef struct {
    uint32_t src_c, src_h, src_w;
    uint32_t dst_c, dst_h, dst_w;
    int32_t pad_t;
    uint32_t off_src, off_w, off_bias, off_dst;
    uint32_t src_nstride, dst_nstride;
    uint32_t wo, wc, wt;
    uint32_t accumulate;
} conv_push;

/* Matches Push in shaders/conv2d_wgrad.comp. */
typedef struct {
    uint32_t src_c, src_h, src_w;
    uint32_t dst_c, dst_h, dst_w;
    int32_t pad_t;
    uint32_t batches;
    uint32_t off_x, off_dy, off_dw;
    uint32_t x_nstride, dy_nstride;
    uint32_t ldo, ldc, ldt;
    uint32_t accumulate;
} wgrad_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_conv[2] = {
    {"conv2d_y32", 4, {T, T, T, S}, sizeof(conv_push)},
    {"conv2d_y16", 4, {T, T, T, S}, sizeof(conv_push)},
};
static const df_vk_kernel k_wgrad[2] = {
    {"conv2d_wgrad_y32", 3, {T, T, S}, sizeof(wgrad_push)},
    {"conv2d_wgrad_y16", 3, {T, T, S}, sizeof(wgrad_push)},
};
#undef T
#undef S

/* Spec constant ids shared by both shaders. */
enum { SC_WG_X, SC_WG_Y, SC_ROWS, SC_CQ, SC_KH, SC_KW, SC_STRIDE, SC_PAD_L, SC_TRANSPOSED, SC_FLIP, SC_W_VEC,
       SC_X_VEC, SC_HAS_BIAS, SC_COUNT };

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static uint32_t pow2_ceil(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

df_conv2d_desc df_conv2d_square(uint32_t n, uint32_t in_c, uint32_t h, uint32_t w, uint32_t out_c, uint32_t k,
                                uint32_t stride, uint32_t pad)
{
    df_conv2d_desc d = {.n = n, .in_c = in_c, .in_h = h, .in_w = w, .out_c = out_c, .kh = k, .kw = k,
                        .stride = stride, .pad_t = pad, .pad_l = pad, .pad_b = pad, .pad_r = pad,
                        .layout = DF_CONV_OIHW};
    return d;
}

uint32_t df_conv2d_out_h(const df_conv2d_desc *d)
{
    uint64_t span = (uint64_t)d->in_h + d->pad_t + d->pad_b;
    return span < d->kh || !d->stride ? 0 : (uint32_t)((span - d->kh) / d->stride + 1);
}

uint32_t df_conv2d_out_w(const df_conv2d_desc *d)
{
    uint64_t span = (uint64_t)d->in_w + d->pad_l + d->pad_r;
    return span < d->kw || !d->stride ? 0 : (uint32_t)((span - d->kw) / d->stride + 1);
}

uint64_t df_conv2d_weight_elems(const df_conv2d_desc *d)
{
    return (uint64_t)d->out_c * d->in_c * d->kh * d->kw;
}

double df_conv2d_flops(const df_conv2d_desc *d)
{
    return 2.0 * d->n * d->out_c * df_conv2d_out_h(d) * df_conv2d_out_w(d) * d->in_c * d->kh * d->kw;
}

int df_conv2d_check(const df_conv2d_desc *d, df_error_t *err)
{
    if (!d->n || !d->in_c || !d->in_h || !d->in_w || !d->out_c)
        return df_error_set(err, DF_E_INVALID, "conv2d: n=%u in_c=%u in_h=%u in_w=%u out_c=%u (all must be >= 1)",
                            d->n, d->in_c, d->in_h, d->in_w, d->out_c);
    if (d->kh < 1 || d->kh > 3 || d->kw < 1 || d->kw > 3)
        return df_error_set(err, DF_E_UNSUPPORTED, "conv2d: kernel %ux%u (supported: 1 to 3 each way)", d->kh, d->kw);
    if (d->stride != 1 && d->stride != 2)
        return df_error_set(err, DF_E_UNSUPPORTED, "conv2d: stride %u (supported: 1 or 2)", d->stride);
    if (d->pad_t >= d->kh || d->pad_b >= d->kh || d->pad_l >= d->kw || d->pad_r >= d->kw)
        return df_error_set(err, DF_E_UNSUPPORTED,
                            "conv2d: padding (t %u, l %u, b %u, r %u) must be below the kernel size %ux%u", d->pad_t,
                            d->pad_l, d->pad_b, d->pad_r, d->kh, d->kw);
    if (d->layout != DF_CONV_OIHW && d->layout != DF_CONV_PACKED)
        return df_error_set(err, DF_E_INVALID, "conv2d: unknown weight layout %d", (int)d->layout);
    uint32_t oh = df_conv2d_out_h(d), ow = df_conv2d_out_w(d);
    if (!oh || !ow)
        return df_error_set(err, DF_E_INVALID, "conv2d: a %ux%u input with padding (%u, %u, %u, %u) is smaller than "
                            "the %ux%u kernel", d->in_h, d->in_w, d->pad_t, d->pad_l, d->pad_b, d->pad_r, d->kh, d->kw);
    /* Kernels index each tensor with 32 bits inside its window; whole planes
     * must also fit 32 bits for the plane arithmetic. */
    uint64_t in_plane = (uint64_t)d->in_h * d->in_w, out_plane = (uint64_t)oh * ow;
    if (in_plane * d->in_c > UINT32_MAX || out_plane * d->out_c > UINT32_MAX ||
        df_conv2d_weight_elems(d) > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "conv2d: one batch entry of %ux%ux%u -> %ux%ux%u exceeds 2^32 elements",
                            d->in_c, d->in_h, d->in_w, d->out_c, oh, ow);
    return DF_OK;
}

/* Weight strides of (output channel, input channel, tap) in d's layout. */
static void weight_strides(const df_conv2d_desc *d, uint64_t *so, uint64_t *si, uint64_t *st)
{
    uint64_t taps = (uint64_t)d->kh * d->kw;
    if (d->layout == DF_CONV_OIHW)
        *so = d->in_c * taps, *si = taps, *st = 1;
    else
        *so = 1, *si = taps * d->out_c, *st = d->out_c;
}

/* ---- forward and backward-data passes ------------------------------------ */

typedef struct {
    const char *name;
    df_tensor src, w, bias, dst;
    int has_bias;
    uint32_t n, src_c, src_h, src_w, dst_c, dst_h, dst_w;
    uint32_t kh, kw, stride, pad_t, pad_l;
    int transposed, flip;
    uint64_t wo, wc, wt; /* weight strides of (dst channel, src channel, tap) */
    int accumulate;
} conv_pass;

typedef struct {
    uint32_t n0, nb, o0, oc, c0, cc;
} conv_chunk;

typedef struct {
    df_bind_rules src, w, bias, dst;
} pass_rules;

static void pass_spans(const conv_pass *p, const conv_chunk *c, uint64_t first[4], uint64_t extent[4])
{
    uint64_t splane = (uint64_t)p->src_h * p->src_w, dplane = (uint64_t)p->dst_h * p->dst_w;
    uint64_t sn = splane * p->src_c, dn = dplane * p->dst_c, taps = (uint64_t)p->kh * p->kw;
    first[0] = c->n0 * sn + c->c0 * splane;
    extent[0] = (c->nb - 1) * sn + c->cc * splane;
    first[1] = c->o0 * p->wo + c->c0 * p->wc;
    extent[1] = (c->oc - 1) * p->wo + (c->cc - 1) * p->wc + (taps - 1) * p->wt + 1;
    first[2] = c->o0;
    extent[2] = c->oc;
    first[3] = c->n0 * dn + c->o0 * dplane;
    extent[3] = (c->nb - 1) * dn + c->oc * dplane;
}

/* 0 when every window fits, else 1 + the index of the first that does not. */
static int pass_misfit(const conv_pass *p, const pass_rules *r, const conv_chunk *c)
{
    uint64_t first[4], extent[4];
    pass_spans(p, c, first, extent);
    const df_bind_rules *rr[4] = {&r->src, &r->w, &r->bias, &r->dst};
    for (int i = 0; i < 4; i++)
        if (!df_bind_fits(rr[i], extent[i]))
            return i + 1;
    return 0;
}

static int record_pass_chunk(df_vk_batch_t *batch, const conv_pass *p, const pass_rules *r, const conv_chunk *c,
                             df_error_t *err)
{
    uint64_t first[4], extent[4];
    pass_spans(p, c, first, extent);
    uint64_t splane = (uint64_t)p->src_h * p->src_w, dplane = (uint64_t)p->dst_h * p->dst_w;
    conv_push pc = {
        .src_c = c->cc, .src_h = p->src_h, .src_w = p->src_w,
        .dst_c = c->oc, .dst_h = p->dst_h, .dst_w = p->dst_w,
        .pad_t = (int32_t)p->pad_t,
        .src_nstride = (uint32_t)(splane * p->src_c), .dst_nstride = (uint32_t)(dplane * p->dst_c),
        .wo = (uint32_t)p->wo, .wc = (uint32_t)p->wc, .wt = (uint32_t)p->wt,
        /* Later reduction chunks add onto what the first one wrote. */
        .accumulate = (uint32_t)(p->accumulate || c->c0 > 0),
    };
    int bias = p->has_bias && c->c0 == 0;
    df_vk_binding binds[4] = {
        df_bind_span(p->src.ref, &r->src, first[0], extent[0], 0, &pc.off_src),
        df_bind_span(p->w.ref, &r->w, first[1], extent[1], 0, &pc.off_w),
        /* Without a bias the slot still needs a valid view: the weights. */
        bias ? df_bind_span(p->bias.ref, &r->bias, first[2], extent[2], 0, &pc.off_bias)
             : df_bind_span(p->w.ref, &r->w, first[1], extent[1], 0, &pc.off_bias),
        df_bind_span(p->dst.ref, &r->dst, first[3], extent[3], 1, &pc.off_dst),
    };

    /* Vector paths, where the strides and offsets allow texel-aligned fetches. */
    int w_aligned = pc.off_w % 4 == 0 && pc.wt % 4 == 0;
    uint32_t w_vec = 0;
    if (w_aligned && pc.wo == 1 && pc.wc % 4 == 0 && c->oc % 4 == 0)
        w_vec = 1;
    else if (w_aligned && pc.wc == 1 && pc.wo % 4 == 0 && c->cc % 4 == 0)
        w_vec = 2;
    int x_vec = !p->transposed && p->src_w % 4 == 0 && p->dst_w % 4 == 0 && pc.off_src % 4 == 0 &&
                (c->nb == 1 || pc.src_nstride % 4 == 0);

    /* 8 channels x 8 pixels per invocation measured best on lavapipe for
     * every pass (docs/performance.md); 8 x 16 spills registers (1.6 GFLOPS).
     * The vector gather wants an invocation's 4 cq pixels on one row. */
    uint32_t rows = w_vec == 1 ? (c->oc >= 8 ? 8 : 4) : (c->oc >= 8 ? 8 : pow2_ceil(c->oc));
    uint32_t cq = x_vec && p->dst_w % 8 == 0 ? 2 : 1;
    uint32_t wg_y = (uint32_t)div_up(c->oc, rows);
    wg_y = wg_y >= 8 ? 8 : pow2_ceil(wg_y);
    uint32_t wg_x = 64 / wg_y;

    uint32_t spec[SC_COUNT];
    spec[SC_WG_X] = wg_x, spec[SC_WG_Y] = wg_y, spec[SC_ROWS] = rows, spec[SC_CQ] = cq;
    spec[SC_KH] = p->kh, spec[SC_KW] = p->kw, spec[SC_STRIDE] = p->stride, spec[SC_PAD_L] = p->pad_l;
    spec[SC_TRANSPOSED] = (uint32_t)p->transposed, spec[SC_FLIP] = (uint32_t)p->flip;
    spec[SC_W_VEC] = w_vec, spec[SC_X_VEC] = (uint32_t)x_vec, spec[SC_HAS_BIAS] = (uint32_t)bias;

    df_vk_device_t *dev = df_vk_batch_device(batch);
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    uint64_t gx = div_up(dplane, 4ull * cq * wg_x), gy = div_up(c->oc, (uint64_t)rows * wg_y);
    if (gx > info->max_group_count[0] || gy > info->max_group_count[1] || c->nb > info->max_group_count[2])
        return df_error_set(err, DF_E_RANGE, "%s: %llux%llux%u workgroups exceed the device's limits", p->name,
                            (unsigned long long)gx, (unsigned long long)gy, c->nb);
    const df_vk_kernel *kern = &k_conv[p->dst.dtype == DF_F16];
    df_vk_pipeline_t *pipe = df_vk_pipeline_get(dev, kern, spec, SC_COUNT, err);
    if (!pipe)
        return err ? err->code : DF_E_VULKAN;
    char label[96];
    snprintf(label, sizeof label, "%s %ux%ux%ux%u->%u k%ux%u s%u", p->name, c->nb, c->cc, p->src_h, p->src_w, c->oc,
             p->kh, p->kw, p->stride);
    return df_vk_batch_dispatch(batch, pipe, binds, 4, &pc, (uint32_t)gx, (uint32_t)gy, c->nb, label, err);
}

static int run_pass(df_vk_batch_t *batch, const conv_pass *p, df_error_t *err)
{
    df_vk_device_t *dev = df_vk_batch_device(batch);
    pass_rules r;
    int rc;
    if ((rc = df_bind_rules_texel(dev, p->src.dtype, &r.src, err)) ||
        (rc = df_bind_rules_texel(dev, p->w.dtype, &r.w, err)) ||
        (rc = df_bind_rules_texel(dev, p->has_bias ? p->bias.dtype : p->w.dtype, &r.bias, err)) ||
        (rc = df_bind_rules_storage(dev, p->dst.dtype, &r.dst, err)))
        return df_error_prefix(err, "%s", p->name);

    /* Shrink the batch first, then the channel range of whichever operand
     * does not fit; destination chunks stay multiples of 8 and reduction
     * chunks multiples of 4 so the vector paths survive the split. */
    conv_chunk size = {.nb = p->n, .oc = p->dst_c, .cc = p->src_c};
    for (;;) {
        int bad = pass_misfit(p, &r, &size);
        if (!bad)
            break;
        if (size.nb > 1) {
            size.nb = (size.nb + 1) / 2;
            continue;
        }
        uint32_t *dim = bad == 1 ? &size.cc : bad == 2 ? (size.cc > size.oc ? &size.cc : &size.oc) : &size.oc;
        uint32_t unit = dim == &size.oc ? 8 : 4;
        if (*dim <= 1)
            return df_error_set(err, DF_E_RANGE, "%s: one %ux%u plane does not fit in a binding", p->name,
                                bad == 1 ? p->src_h : p->dst_h, bad == 1 ? p->src_w : p->dst_w);
        uint32_t half = (*dim + 1) / 2;
        *dim = half > unit ? half / unit * unit : half;
    }
    for (uint32_t n0 = 0; n0 < p->n; n0 += size.nb)
        for (uint32_t o0 = 0; o0 < p->dst_c; o0 += size.oc)
            for (uint32_t c0 = 0; c0 < p->src_c; c0 += size.cc) {
                conv_chunk c = {
                    .n0 = n0, .nb = p->n - n0 < size.nb ? p->n - n0 : size.nb,
                    .o0 = o0, .oc = p->dst_c - o0 < size.oc ? p->dst_c - o0 : size.oc,
                    .c0 = c0, .cc = p->src_c - c0 < size.cc ? p->src_c - c0 : size.cc,
                };
                if ((rc = record_pass_chunk(batch, p, &r, &c, err)))
                    return rc;
            }
    return DF_OK;
}

static int check_tensor(const char *op, const char *name, df_tensor t, uint64_t n, df_error_t *err)
{
    if (t.dtype != DF_F32 && t.dtype != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: %s is %s (f32 or f16 only)", op, name, df_dtype_name(t.dtype));
    return df_bind_check(op, name, t.ref, n, (uint32_t)df_dtype_size(t.dtype), err);
}

static int check_common(const char *op, const df_conv2d_desc *d, df_vk_batch_t *batch, df_tensor out,
                        df_error_t *err)
{
    int rc = df_conv2d_check(d, err);
    if (rc)
        return df_error_prefix(err, "%s", op);
    if (out.dtype == DF_F16 && !df_vk_device_has_fp16_storage(df_vk_batch_device(batch)))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: an f16 result needs 16-bit storage, which %s lacks", op,
                            df_vk_device_info_of(df_vk_batch_device(batch))->name);
    return DF_OK;
}

static uint64_t in_elems(const df_conv2d_desc *d) { return (uint64_t)d->n * d->in_c * d->in_h * d->in_w; }
static uint64_t out_elems(const df_conv2d_desc *d)
{
    return (uint64_t)d->n * d->out_c * df_conv2d_out_h(d) * df_conv2d_out_w(d);
}

int df_conv2d_forward(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor x, df_tensor w, df_tensor bias,
                      df_tensor y, int accumulate, df_error_t *err)
{
    const char *op = "conv2d";
    int rc;
    if ((rc = check_common(op, d, batch, y, err)) || (rc = check_tensor(op, "x", x, in_elems(d), err)) ||
        (rc = check_tensor(op, "w", w, df_conv2d_weight_elems(d), err)) ||
        (bias.ref.buf && (rc = check_tensor(op, "bias", bias, d->out_c, err))) ||
        (rc = check_tensor(op, "y", y, out_elems(d), err)))
        return rc;
    conv_pass p = {
        .name = op, .src = x, .w = w, .bias = bias, .dst = y, .has_bias = bias.ref.buf != NULL,
        .n = d->n, .src_c = d->in_c, .src_h = d->in_h, .src_w = d->in_w,
        .dst_c = d->out_c, .dst_h = df_conv2d_out_h(d), .dst_w = df_conv2d_out_w(d),
        .kh = d->kh, .kw = d->kw, .stride = d->stride, .pad_t = d->pad_t, .pad_l = d->pad_l,
        .accumulate = accumulate,
    };
    weight_strides(d, &p.wo, &p.wc, &p.wt);
    int rc_pass = run_pass(batch, &p, err);
    if (rc_pass == DF_OK)
        df_vk_batch_count_flops(batch, df_conv2d_flops(d));
    return rc_pass;
}

int df_conv2d_backward_data(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor dy, df_tensor w, df_tensor dx,
                            int accumulate, df_error_t *err)
{
    const char *op = "conv2d_backward_data";
    int rc;
    if ((rc = check_common(op, d, batch, dx, err)) || (rc = check_tensor(op, "dy", dy, out_elems(d), err)) ||
        (rc = check_tensor(op, "w", w, df_conv2d_weight_elems(d), err)) ||
        (rc = check_tensor(op, "dx", dx, in_elems(d), err)))
        return rc;
    /* The roles swap: gather from dy, reduce over output channels. */
    conv_pass p = {
        .name = op, .src = dy, .w = w, .dst = dx,
        .n = d->n, .src_c = d->out_c, .src_h = df_conv2d_out_h(d), .src_w = df_conv2d_out_w(d),
        .dst_c = d->in_c, .dst_h = d->in_h, .dst_w = d->in_w,
        .kh = d->kh, .kw = d->kw, .stride = d->stride,
        .accumulate = accumulate,
    };
    weight_strides(d, &p.wc, &p.wo, &p.wt);
    if (d->stride == 1) {
        /* dx[i] = sum_k w[k] dy[i + pad - k]: a direct convolution of dy with
         * the flipped kernel and padding k - 1 - pad. */
        p.flip = 1;
        p.pad_t = d->kh - 1 - d->pad_t;
        p.pad_l = d->kw - 1 - d->pad_l;
    } else {
        p.transposed = 1;
        p.pad_t = d->pad_t;
        p.pad_l = d->pad_l;
    }
    int rc_pass = run_pass(batch, &p, err);
    if (rc_pass == DF_OK)
        df_vk_batch_count_flops(batch, df_conv2d_flops(d));
    return rc_pass;
}

/* ---- weight gradient ------------------------------------------------------ */

typedef struct {
    uint32_t n0, nb, o0, oc, c0, cc;
} wgrad_chunk;

static void wgrad_spans(const df_conv2d_desc *d, const uint64_t ld[3], const wgrad_chunk *c, uint64_t first[3],
                        uint64_t extent[3])
{
    uint64_t xplane = (uint64_t)d->in_h * d->in_w, dplane = (uint64_t)df_conv2d_out_h(d) * df_conv2d_out_w(d);
    uint64_t taps = (uint64_t)d->kh * d->kw;
    first[0] = c->n0 * xplane * d->in_c + c->c0 * xplane;
    extent[0] = (c->nb - 1) * xplane * d->in_c + c->cc * xplane;
    first[1] = c->n0 * dplane * d->out_c + c->o0 * dplane;
    extent[1] = (c->nb - 1) * dplane * d->out_c + c->oc * dplane;
    first[2] = c->o0 * ld[0] + c->c0 * ld[1];
    extent[2] = (c->oc - 1) * ld[0] + (c->cc - 1) * ld[1] + (taps - 1) * ld[2] + 1;
}

static int backward_weight_record(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor x, df_tensor dy,
                                  df_tensor dw, int accumulate, df_error_t *err)
{
    const char *op = "conv2d_backward_weight";
    int rc;
    if ((rc = check_common(op, d, batch, dw, err)) || (rc = check_tensor(op, "x", x, in_elems(d), err)) ||
        (rc = check_tensor(op, "dy", dy, out_elems(d), err)) ||
        (rc = check_tensor(op, "dw", dw, df_conv2d_weight_elems(d), err)))
        return rc;
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules r[3];
    if ((rc = df_bind_rules_texel(dev, x.dtype, &r[0], err)) || (rc = df_bind_rules_texel(dev, dy.dtype, &r[1], err)) ||
        (rc = df_bind_rules_storage(dev, dw.dtype, &r[2], err)))
        return df_error_prefix(err, "%s", op);
    uint64_t ld[3];
    weight_strides(d, &ld[0], &ld[1], &ld[2]);
    uint32_t oh = df_conv2d_out_h(d), ow = df_conv2d_out_w(d);

    wgrad_chunk size = {.nb = d->n, .oc = d->out_c, .cc = d->in_c};
    for (;;) {
        uint64_t first[3], extent[3];
        wgrad_spans(d, ld, &size, first, extent);
        int bad = 0;
        for (int i = 0; i < 3 && !bad; i++)
            if (!df_bind_fits(&r[i], extent[i]))
                bad = i + 1;
        if (!bad)
            break;
        if (size.nb > 1) {
            size.nb = (size.nb + 1) / 2;
            continue;
        }
        uint32_t *dim = bad == 1 ? &size.cc : bad == 2 ? &size.oc : (size.cc > size.oc ? &size.cc : &size.oc);
        if (*dim <= 1)
            return df_error_set(err, DF_E_RANGE, "%s: one plane does not fit in a binding", op);
        uint32_t half = (*dim + 1) / 2;
        *dim = half > 8 ? half / 8 * 8 : half;
    }

    const df_vk_device_info *info = df_vk_device_info_of(dev);
    for (uint32_t o0 = 0; o0 < d->out_c; o0 += size.oc)
        for (uint32_t c0 = 0; c0 < d->in_c; c0 += size.cc)
            for (uint32_t n0 = 0; n0 < d->n; n0 += size.nb) {
                wgrad_chunk c = {
                    .n0 = n0, .nb = d->n - n0 < size.nb ? d->n - n0 : size.nb,
                    .o0 = o0, .oc = d->out_c - o0 < size.oc ? d->out_c - o0 : size.oc,
                    .c0 = c0, .cc = d->in_c - c0 < size.cc ? d->in_c - c0 : size.cc,
                };
                uint64_t first[3], extent[3];
                wgrad_spans(d, ld, &c, first, extent);
                wgrad_push pc = {
                    .src_c = c.cc, .src_h = d->in_h, .src_w = d->in_w,
                    .dst_c = c.oc, .dst_h = oh, .dst_w = ow,
                    .pad_t = (int32_t)d->pad_t, .batches = c.nb,
                    .x_nstride = d->in_c * d->in_h * d->in_w, .dy_nstride = d->out_c * oh * ow,
                    .ldo = (uint32_t)ld[0], .ldc = (uint32_t)ld[1], .ldt = (uint32_t)ld[2],
                    /* Later batch chunks add onto the earlier ones' sums. */
                    .accumulate = (uint32_t)(accumulate || n0 > 0),
                };
                df_vk_binding binds[3] = {
                    df_bind_span(x.ref, &r[0], first[0], extent[0], 0, &pc.off_x),
                    df_bind_span(dy.ref, &r[1], first[1], extent[1], 0, &pc.off_dy),
                    df_bind_span(dw.ref, &r[2], first[2], extent[2], 1, &pc.off_dw),
                };
                int x_vec = d->in_w % 4 == 0 && ow % 4 == 0 && pc.off_x % 4 == 0 && pc.off_dy % 4 == 0 &&
                            (c.nb == 1 || (pc.x_nstride % 4 == 0 && pc.dy_nstride % 4 == 0));
                uint32_t rows = c.oc >= 8 ? 8 : pow2_ceil(c.oc);
                uint32_t wg_y = (uint32_t)div_up(c.oc, rows);
                wg_y = wg_y >= 8 ? 8 : pow2_ceil(wg_y);
                uint32_t spec[SC_COUNT] = {0};
                spec[SC_WG_X] = 64 / wg_y, spec[SC_WG_Y] = wg_y, spec[SC_ROWS] = rows;
                spec[SC_KH] = d->kh, spec[SC_KW] = d->kw, spec[SC_STRIDE] = d->stride, spec[SC_PAD_L] = d->pad_l;
                spec[SC_X_VEC] = (uint32_t)x_vec;
                uint64_t gx = div_up(c.cc, spec[SC_WG_X]), gy = div_up(c.oc, (uint64_t)rows * wg_y);
                if (gx > info->max_group_count[0] || gy > info->max_group_count[1])
                    return df_error_set(err, DF_E_RANGE, "%s: too many workgroups", op);
                df_vk_pipeline_t *pipe = df_vk_pipeline_get(dev, &k_wgrad[dw.dtype == DF_F16], spec, SC_COUNT, err);
                if (!pipe)
                    return err ? err->code : DF_E_VULKAN;
                char label[96];
                snprintf(label, sizeof label, "%s %ux%ux%ux%u->%u k%ux%u s%u", op, c.nb, c.cc, d->in_h, d->in_w, c.oc,
                         d->kh, d->kw, d->stride);
                if ((rc = df_vk_batch_dispatch(batch, pipe, binds, 3, &pc, (uint32_t)gx, (uint32_t)gy, 1, label, err)))
                    return rc;
            }
    return DF_OK;
}

int df_conv2d_backward_weight(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor x, df_tensor dy,
                              df_tensor dw, int accumulate, df_error_t *err)
{
    int rc = backward_weight_record(batch, d, x, dy, dw, accumulate, err);
    if (rc == DF_OK)
        df_vk_batch_count_flops(batch, df_conv2d_flops(d));
    return rc;
}

int df_conv2d_pack_weight(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor w_oihw, df_tensor w_packed,
                          df_error_t *err)
{
    df_conv2d_desc dd = *d;
    dd.layout = DF_CONV_OIHW;
    int rc = df_conv2d_check(&dd, err);
    if (rc)
        return df_error_prefix(err, "conv2d_pack_weight");
    /* OIHW viewed as out_c rows of in_c*kh*kw, transposed. */
    uint32_t width = (uint32_t)(df_conv2d_weight_elems(d) / d->out_c);
    df_copy2d_desc cd = {.rows = d->out_c, .width = width, .ld_x = width, .ld_y = d->out_c, .transpose = 1};
    return df_copy2d(batch, &cd, w_oihw, w_packed, err);
}
