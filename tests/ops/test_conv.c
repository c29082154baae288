/*  test_conv.c - conv2d forward, backward-data and backward-weight against
 *  double-precision references written the other way round (the device
 *  gathers; the references scatter), plus central finite differences of the
 *  forward reference at sampled inputs and weights, and every error path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv2d.h"
#include "ops_tests.h"

typedef struct {
    uint32_t n, ic, h, w, oc, k, stride, pt, pl, pb, pr;
    df_conv_layout layout;
    df_dtype tx, tw, ty;
    uint32_t lead; /* elements before x and y in their buffers: misaligned windows */
    int bias, accumulate;
} conv_case;

typedef struct {
    const df_conv2d_desc *d;
    uint32_t oh, ow;
} geom;

static uint64_t xi(const df_conv2d_desc *d, uint32_t n, uint32_t c, uint32_t y, uint32_t x)
{
    return (((uint64_t)n * d->in_c + c) * d->in_h + y) * d->in_w + x;
}
static uint64_t yi(const geom *g, uint32_t n, uint32_t o, uint32_t y, uint32_t x)
{
    return (((uint64_t)n * g->d->out_c + o) * g->oh + y) * g->ow + x;
}
static uint64_t wi(const df_conv2d_desc *d, uint32_t o, uint32_t c, uint32_t ky, uint32_t kx)
{
    return (((uint64_t)o * d->in_c + c) * d->kh + ky) * d->kw + kx;
}
/* Where OIHW element (o, c, ky, kx) sits in d's layout. */
static uint64_t w_at(const df_conv2d_desc *d, uint64_t oihw)
{
    if (d->layout == DF_CONV_OIHW)
        return oihw;
    uint64_t per = (uint64_t)d->in_c * d->kh * d->kw;
    return (oihw % per) * d->out_c + oihw / per;
}

/* Every (input, output, weight) index triple the convolution multiplies:
 * the scatter form, independent of the kernels' gather. */
typedef struct {
    uint64_t x, y, w;
} tap3;

static tap3 *list_taps(const df_conv2d_desc *d, const geom *g, uint64_t *count)
{
    uint64_t cap = (uint64_t)d->n * d->out_c * g->oh * g->ow * d->in_c * d->kh * d->kw, k = 0;
    tap3 *t = malloc(cap * sizeof *t);
    for (uint32_t n = 0; n < d->n; n++)
        for (uint32_t o = 0; o < d->out_c; o++)
            for (uint32_t oy = 0; oy < g->oh; oy++)
                for (uint32_t ox = 0; ox < g->ow; ox++)
                    for (uint32_t c = 0; c < d->in_c; c++)
                        for (uint32_t ky = 0; ky < d->kh; ky++)
                            for (uint32_t kx = 0; kx < d->kw; kx++) {
                                int64_t sy = (int64_t)oy * d->stride + ky - d->pad_t;
                                int64_t sx = (int64_t)ox * d->stride + kx - d->pad_l;
                                if (sy < 0 || sx < 0 || sy >= d->in_h || sx >= d->in_w)
                                    continue; /* padding */
                                t[k].x = xi(d, n, c, (uint32_t)sy, (uint32_t)sx);
                                t[k].y = yi(g, n, o, oy, ox);
                                t[k].w = wi(d, o, c, ky, kx);
                                k++;
                            }
    *count = k;
    return t;
}

/* sum(dy * conv(x, w)), all in double: the loss the finite differences probe. */
static double ref_loss(const tap3 *t, uint64_t nt, const double *x, const double *w, const float *dy)
{
    double s = 0;
    for (uint64_t i = 0; i < nt; i++)
        s += (double)dy[t[i].y] * w[t[i].w] * x[t[i].x];
    return s;
}

static double *to_double(const float *v, uint64_t n)
{
    double *o = malloc(n * sizeof *o);
    for (uint64_t i = 0; i < n; i++)
        o[i] = v[i];
    return o;
}

/* Central differences of ref_loss at `samples` positions of v (x or w) must
 * match got (the device gradient, in v's indexing through map). */
static int fd_check(const char *what, const df_conv2d_desc *d, const tap3 *t, uint64_t nt, double *x, double *w,
                    const float *dy, double *v, uint64_t nv, const float *got, const double *bound, int packed_w)
{
    const double h = 0.5;   /* the loss is linear in v: any step is exact up to rounding */
    int fails = 0;
    for (int s = 0; s < 8; s++) {
        uint64_t i = (uint64_t)(s * 7919 + 13) % nv;
        double keep = v[i];
        v[i] = keep + h;
        double up = ref_loss(t, nt, x, w, dy);
        v[i] = keep - h;
        double dn = ref_loss(t, nt, x, w, dy);
        v[i] = keep;
        double fd = (up - dn) / (2 * h);
        uint64_t gi = packed_w ? w_at(d, i) : i;
        double tol = bound[i] + 1e-9 * (fabs(up) + fabs(dn));
        if (!(fabs(got[gi] - fd) <= tol)) {
            fprintf(stderr, "  FAIL %s: finite difference at %llu: got %.9g, fd %.9g (tol %.3g)\n", what,
                    (unsigned long long)i, got[gi], fd, tol);
            fails++;
        }
    }
    return fails;
}

static void conv_run_case(op_env *env, const conv_case *cc)
{
    df_error_t err;
    df_error_clear(&err);
    df_conv2d_desc d = {.n = cc->n, .in_c = cc->ic, .in_h = cc->h, .in_w = cc->w, .out_c = cc->oc, .kh = cc->k,
                        .kw = cc->k, .stride = cc->stride, .pad_t = cc->pt, .pad_l = cc->pl, .pad_b = cc->pb,
                        .pad_r = cc->pr, .layout = cc->layout};
    geom g = {&d, df_conv2d_out_h(&d), df_conv2d_out_w(&d)};
    uint64_t nx = (uint64_t)d.n * d.in_c * d.in_h * d.in_w, ny = (uint64_t)d.n * d.out_c * g.oh * g.ow;
    uint64_t nw = df_conv2d_weight_elems(&d);
    double wscale = 1.0 / sqrt((double)d.in_c * d.kh * d.kw);

    op_tensor x = op_tensor_normal(env, nx, cc->tx, cc->lead, 1.0f);
    op_tensor w_oihw = op_tensor_normal(env, nw, cc->tw, 0, (float)wscale);
    op_tensor bias = op_tensor_normal(env, d.out_c, DF_F32, 0, 0.5f);
    op_tensor y0 = op_tensor_normal(env, ny, cc->ty, cc->lead, 1.0f); /* prior contents for accumulate */
    op_tensor dy = op_tensor_normal(env, ny, cc->ty, 0, 1.0f);
    op_tensor dx = op_tensor_output(env, nx, DF_F32, 1);
    op_tensor dw = op_tensor_output(env, nw, DF_F32, 0);
    op_tensor w = w_oihw, packed = {0};
    int rc = 0;
    if (cc->layout == DF_CONV_PACKED) {
        packed = op_tensor_output(env, nw, cc->tw, 0);
        rc = df_conv2d_pack_weight(env->batch, &d, w_oihw.t, packed.t, &err);
        w = packed;
    }
    /* Accumulating writes onto y0 itself; keep its prior values. */
    float *prior = malloc(ny * sizeof *prior);
    memcpy(prior, y0.host, ny * sizeof *prior);
    op_tensor y = y0;
    if (!cc->accumulate)
        y = op_tensor_output(env, ny, cc->ty, cc->lead);
    df_tensor no_bias = {{NULL, 0}, DF_F32};
    if (!rc)
        rc = df_conv2d_forward(env->batch, &d, x.t, w.t, cc->bias ? bias.t : no_bias, y.t, cc->accumulate, &err);
    if (!rc)
        rc = df_conv2d_backward_data(env->batch, &d, dy.t, w.t, dx.t, 0, &err);
    if (!rc)
        rc = df_conv2d_backward_weight(env->batch, &d, x.t, dy.t, dw.t, 0, &err);
    if (!rc && cc->accumulate) {
        /* y0 has no canary after it; read it plainly. */
        rc = df_vk_batch_submit(env->batch, &err);
        if (!rc)
            rc = df_vk_download_f32(env->xfer, y.buf, y.t.ref.offset, y.host, ny, y.t.dtype, &err);
    } else if (!rc) {
        rc = op_run_and_read(env, &y, &err);
    }
    if (!rc)
        rc = op_run_and_read(env, &dx, &err);
    if (!rc)
        rc = op_run_and_read(env, &dw, &err);

    char what[160];
    snprintf(what, sizeof what, "conv2d n%u %ux%ux%u->%u k%u s%u pad(%u,%u,%u,%u) %s x=%s w=%s y=%s lead%u%s%s", d.n,
             d.in_c, d.in_h, d.in_w, d.out_c, d.kh, d.stride, d.pad_t, d.pad_l, d.pad_b, d.pad_r,
             d.layout == DF_CONV_PACKED ? "packed" : "oihw", df_dtype_name(cc->tx), df_dtype_name(cc->tw),
             df_dtype_name(cc->ty), cc->lead, cc->bias ? " bias" : "", cc->accumulate ? " accumulate" : "");
    int fails = 0;
    if (!rc) {
        uint64_t nmax = nx > ny ? nx : ny;
        if (nw > nmax)
            nmax = nw;
        double *ref = calloc(nmax, sizeof *ref), *mag = calloc(nmax, sizeof *mag), *bound = malloc(nmax * sizeof *bound);
        /* Rounding of f16 partial sums when the reduction is split (window tests). */
        double split_u = env->windowed ? U16 : 0;

        /* Forward: every sum has in_c * kh * kw products plus bias and prior y. */
        for (uint64_t i = 0; i < ny; i++) {
            uint32_t o = (uint32_t)(i / ((uint64_t)g.oh * g.ow) % d.out_c);
            ref[i] = (cc->bias ? bias.host[o] : 0) + (cc->accumulate ? prior[i] : 0);
            mag[i] = fabs(ref[i]);
        }
        uint64_t nt;
        tap3 *t = list_taps(&d, &g, &nt);
        for (uint64_t i = 0; i < nt; i++) {
            double p = (double)w_oihw.host[t[i].w] * x.host[t[i].x];
            ref[t[i].y] += p, mag[t[i].y] += fabs(p);
        }
        double k = (double)d.in_c * d.kh * d.kw + 3;
        for (uint64_t i = 0; i < ny; i++)
            bound[i] = k * U32 * mag[i] + op_store_bound(cc->ty, ref[i]) + (cc->ty == DF_F16 ? split_u * mag[i] : 0);
        fails += op_compare(what, y.host, ref, bound, ny);

        /* Backward data: scatter dy through the weights. */
        memset(ref, 0, nmax * sizeof *ref), memset(mag, 0, nmax * sizeof *mag);
        for (uint64_t i = 0; i < nt; i++) {
            double p = (double)w_oihw.host[t[i].w] * dy.host[t[i].y];
            ref[t[i].x] += p, mag[t[i].x] += fabs(p);
        }
        k = (double)d.out_c * d.kh * d.kw + 2;
        for (uint64_t i = 0; i < nx; i++)
            bound[i] = k * U32 * mag[i];
        char w2[200];
        snprintf(w2, sizeof w2, "%s backward data", what);
        fails += op_compare(w2, dx.host, ref, bound, nx);
        double *xd = to_double(x.host, nx), *wd = to_double(w_oihw.host, nw);
        fails += fd_check(w2, &d, t, nt, xd, wd, dy.host, xd, nx, dx.host, bound, 0);

        /* Backward weight: sum over batch and pixels. dw is in d's layout. */
        memset(ref, 0, nmax * sizeof *ref), memset(mag, 0, nmax * sizeof *mag);
        for (uint64_t i = 0; i < nt; i++) {
            double p = (double)x.host[t[i].x] * dy.host[t[i].y];
            ref[t[i].w] += p, mag[t[i].w] += fabs(p);
        }
        k = (double)d.n * g.oh * g.ow + 2;
        double *ref_l = malloc(nw * sizeof *ref_l), *bound_l = malloc(nw * sizeof *bound_l);
        for (uint64_t i = 0; i < nw; i++) {
            bound[i] = k * U32 * mag[i];
            ref_l[w_at(&d, i)] = ref[i], bound_l[w_at(&d, i)] = bound[i];
        }
        snprintf(w2, sizeof w2, "%s backward weight", what);
        fails += op_compare(w2, dw.host, ref_l, bound_l, nw);
        fails += fd_check(w2, &d, t, nt, xd, wd, dy.host, wd, nw, dw.host, bound, d.layout == DF_CONV_PACKED);
        free(xd), free(wd), free(ref_l), free(bound_l), free(t);
        free(ref), free(mag), free(bound);
    }
    op_case_done(env, what, fails, rc, &err);
    free(prior);
    if (y.buf != y0.buf)
        op_tensor_free(&y);
    op_tensor_free(&x), op_tensor_free(&w_oihw), op_tensor_free(&bias), op_tensor_free(&y0);
    op_tensor_free(&dy), op_tensor_free(&dx), op_tensor_free(&dw), op_tensor_free(&packed);
}

void test_op_conv2d(op_env *env)
{
    static const conv_case cases[] = {
        /* n  ic  h   w  oc k s pt pl pb pr  layout          x       w       y     lead bias acc */
        /* ResNet 3x3: every vector path. */
        {2, 8, 8, 8, 16, 3, 1, 1, 1, 1, 1, DF_CONV_PACKED, DF_F32, DF_F32, DF_F32, 0, 1, 0},
        {1, 12, 8, 12, 8, 3, 1, 1, 1, 1, 1, DF_CONV_PACKED, DF_F16, DF_F16, DF_F16, 0, 1, 1},
        /* Odd sizes, OIHW: scalar gathers and weights. */
        {1, 5, 7, 9, 6, 3, 1, 1, 1, 1, 1, DF_CONV_OIHW, DF_F16, DF_F32, DF_F32, 0, 0, 0},
        {2, 3, 5, 6, 3, 3, 1, 1, 1, 1, 1, DF_CONV_PACKED, DF_F32, DF_F32, DF_F32, 1, 1, 0},
        /* UNet downsample: 3x3 stride 2 pad 1, and the VAE's pad (0, 0, 1, 1). */
        {2, 8, 16, 16, 8, 3, 2, 1, 1, 1, 1, DF_CONV_PACKED, DF_F32, DF_F32, DF_F32, 0, 1, 0},
        {1, 4, 16, 16, 8, 3, 2, 0, 0, 1, 1, DF_CONV_PACKED, DF_F16, DF_F16, DF_F32, 0, 0, 0},
        {1, 3, 9, 7, 4, 3, 2, 1, 1, 1, 1, DF_CONV_OIHW, DF_F32, DF_F32, DF_F32, 0, 0, 0},
        /* 1x1 shortcut with bias, and an asymmetric 2x2-free 1x3 corner case via k=1 stride 2. */
        {2, 12, 5, 8, 20, 1, 1, 0, 0, 0, 0, DF_CONV_PACKED, DF_F32, DF_F16, DF_F32, 0, 1, 0},
        {1, 6, 6, 10, 4, 1, 2, 0, 0, 0, 0, DF_CONV_OIHW, DF_F32, DF_F32, DF_F16, 3, 0, 1},
        /* Latent-sized: conv_in-like (4 -> 32) and conv_out-like (32 -> 4). */
        {1, 4, 16, 16, 32, 3, 1, 1, 1, 1, 1, DF_CONV_PACKED, DF_F16, DF_F16, DF_F32, 0, 1, 0},
        {1, 32, 16, 16, 4, 3, 1, 1, 1, 1, 1, DF_CONV_PACKED, DF_F32, DF_F32, DF_F32, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_run_case(env, &cases[i]);
}

/* Every refusal names the field and the reason, and records nothing. */
void test_op_conv2d_errors(op_env *env)
{
    df_error_t err;
    df_conv2d_desc good = df_conv2d_square(1, 4, 8, 8, 4, 3, 1, 1);
    op_tensor x = op_tensor_normal(env, 4 * 8 * 8, DF_F32, 0, 1.0f);
    op_tensor w = op_tensor_normal(env, 4 * 4 * 9, DF_F32, 0, 1.0f);
    op_tensor y = op_tensor_output(env, 4 * 8 * 8, DF_F32, 0);
    df_tensor none = {{NULL, 0}, DF_F32};
    struct {
        const char *what, *needle;
        df_conv2d_desc d;
    } bad[] = {
        {"zero channels", "in_c=0", df_conv2d_square(1, 0, 8, 8, 4, 3, 1, 1)},
        {"5x5 kernel", "kernel 5x5", df_conv2d_square(1, 4, 8, 8, 4, 5, 1, 2)},
        {"stride 3", "stride 3", df_conv2d_square(1, 4, 8, 8, 4, 3, 3, 1)},
        {"padding 3 on a 3x3", "padding", df_conv2d_square(1, 4, 8, 8, 4, 3, 1, 3)},
        {"input smaller than the kernel", "smaller than", df_conv2d_square(1, 4, 1, 8, 4, 3, 1, 0)},
        {"2^32 elements", "2^32", df_conv2d_square(1, 70000, 256, 256, 4, 3, 1, 1)},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        df_error_clear(&err);
        int rc = df_conv2d_forward(env->batch, &bad[i].d, x.t, w.t, none, y.t, 0, &err);
        if (!rc || !strstr(err.msg, bad[i].needle)) {
            fprintf(stderr, "  FAIL conv2d refuses %s: rc %d, \"%s\"\n", bad[i].what, rc, err.msg);
            fails++;
        }
    }
    /* Operands: a weight buffer too small, an integer tensor, a short output. */
    df_conv2d_desc big_w = df_conv2d_square(1, 4, 8, 8, 8, 3, 1, 1);
    df_tensor xi32 = x.t;
    xi32.dtype = DF_I32;
    struct {
        const char *what, *needle;
        const df_conv2d_desc *d;
        df_tensor x, w, y;
    } ops[] = {
        {"short weights", "conv2d: w needs bytes", &big_w, x.t, w.t, y.t},
        {"integer input", "x is i32", &good, xi32, w.t, y.t},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        df_error_clear(&err);
        int rc = df_conv2d_forward(env->batch, ops[i].d, ops[i].x, ops[i].w, none, ops[i].y, 0, &err);
        if (!rc || !strstr(err.msg, ops[i].needle)) {
            fprintf(stderr, "  FAIL conv2d refuses %s: rc %d, \"%s\"\n", ops[i].what, rc, err.msg);
            fails++;
        }
    }
    df_error_clear(&err);
    int rc = df_conv2d_backward_weight(env->batch, &big_w, x.t, y.t, w.t, 0, &err);
    if (!rc || !strstr(err.msg, "conv2d_backward_weight: dy needs bytes")) {
        fprintf(stderr, "  FAIL conv2d_backward_weight refuses short tensors: rc %d, \"%s\"\n", rc, err.msg);
        fails++;
    }
    /* Nothing was recorded: the batch still runs clean. */
    rc = df_vk_batch_submit(env->batch, &err);
    op_case_done(env, "conv2d refusals", fails, rc, &err);
    op_tensor_free(&x), op_tensor_free(&w), op_tensor_free(&y);
}
