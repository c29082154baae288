/*  test_norm.c - group norm and layer norm, forward and backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "norm.h"
#include "ops_tests.h"

/* Longest run summed sequentially by one invocation (a chunk), and the
 * chunks merged after it. Worst-case summation error grows with both
 * (Higham: gamma_n of the sum of magnitudes). */
static double sum_terms(const df_norm_desc *d)
{
    double chunk = d->len < 1024 ? d->len : 1024;
    double nch = (d->len + 1023) / 1024;
    return chunk + nch + 8;
}

typedef struct {
    double *mean, *rstd, *var;
    double *dm;   /* bound on the kernel's mean error, per segment */
    double *drel; /* bound on rstd's relative error, per segment */
} seg_stats;

static void stats_ref(const df_norm_desc *d, const float *x, seg_stats *st)
{
    double k = sum_terms(d) * U32;
    for (uint32_t s = 0; s < d->segments; s++) {
        const float *xs = x + (uint64_t)s * d->len;
        double sum = 0, abs_sum = 0;
        for (uint32_t i = 0; i < d->len; i++)
            sum += xs[i], abs_sum += fabs(xs[i]);
        double mean = sum / d->len, m2 = 0;
        for (uint32_t i = 0; i < d->len; i++)
            m2 += (xs[i] - mean) * (xs[i] - mean);
        double var = m2 / d->len;
        st->mean[s] = mean;
        st->var[s] = var;
        st->rstd[s] = 1 / sqrt(var + d->eps);
        st->dm[s] = k * abs_sum / d->len;
        /* var's error: its own summation, plus the squared deviations seen
         * through a mean that is off by dm. */
        double dvar = k * var + 2 * st->dm[s] * (abs_sum / d->len) + st->dm[s] * st->dm[s];
        st->drel[s] = 0.5 * dvar / (var + d->eps) + 3 * U32; /* inversesqrt: 2 ulp, + the add */
    }
}

static seg_stats stats_alloc(uint32_t n)
{
    seg_stats s;
    s.mean = calloc(n, sizeof(double)), s.rstd = calloc(n, sizeof(double)), s.var = calloc(n, sizeof(double));
    s.dm = calloc(n, sizeof(double)), s.drel = calloc(n, sizeof(double));
    return s;
}

static void stats_free(seg_stats *s) { free(s->mean), free(s->rstd), free(s->var), free(s->dm), free(s->drel); }

static uint32_t channel_of(const df_norm_desc *d, uint64_t e) { return (uint32_t)((e / d->inner) % d->channels); }

/* Forward in double for segment s (used by the finite differences too). */
static void forward_ref(const df_norm_desc *d, const double *x, const double *gamma, const double *beta, double *y)
{
    for (uint32_t s = 0; s < d->segments; s++) {
        const double *xs = x + (uint64_t)s * d->len;
        double sum = 0;
        for (uint32_t i = 0; i < d->len; i++)
            sum += xs[i];
        double mean = sum / d->len, m2 = 0;
        for (uint32_t i = 0; i < d->len; i++)
            m2 += (xs[i] - mean) * (xs[i] - mean);
        double rstd = 1 / sqrt(m2 / d->len + d->eps);
        for (uint32_t i = 0; i < d->len; i++) {
            uint64_t e = (uint64_t)s * d->len + i;
            uint32_t c = channel_of(d, e);
            double v = (xs[i] - mean) * rstd;
            if (d->affine)
                v = v * gamma[c] + beta[c];
            if (d->silu)
                v = v / (1 + exp(-v));
            y[e] = v;
        }
    }
}

static void forward_case(op_env *env, const char *label, df_norm_desc d, df_dtype tx, df_dtype tp, df_dtype ty,
                         float offset, uint32_t lead)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t n = (uint64_t)d.segments * d.len;
    op_tensor x = op_tensor_normal(env, n, tx, lead, 1.0f);
    if (offset != 0) { /* a large common offset: the statistics must not cancel */
        for (uint64_t i = 0; i < n; i++)
            x.host[i] += offset;
        op_tensor_free(&x);
        float *v = malloc(n * sizeof *v);
        op_tensor tmp = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
        for (uint64_t i = 0; i < n; i++)
            v[i] = tmp.host[i] + offset;
        op_tensor_free(&tmp);
        x = op_tensor_from(env, v, n, tx, lead);
        free(v);
    }
    op_tensor g = op_tensor_uniform(env, d.channels, tp, 0, 0.5f, 1.5f);
    op_tensor b = op_tensor_normal(env, d.channels, tp, 0, 0.5f);
    op_tensor y = op_tensor_output(env, n, ty, lead ? 2 : 0);
    op_tensor st = op_tensor_output(env, df_norm_stats_elems(&d), DF_F32, 0);
    int rc = df_norm_forward(env->batch, &d, x.t, g.t, b.t, y.t, st.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    char what[160];
    snprintf(what, sizeof what, "%s S=%u L=%u C=%u x=%s p=%s y=%s%s%s offset=%g", label, d.segments, d.len,
             d.channels, df_dtype_name(tx), df_dtype_name(tp), df_dtype_name(ty), d.silu ? " silu" : "",
             d.affine ? "" : " no-affine", offset);
    int fails = 0;
    if (!rc) {
        seg_stats ss = stats_alloc(d.segments);
        stats_ref(&d, x.host, &ss);
        double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
        for (uint64_t e = 0; e < n; e++) {
            uint32_t s = (uint32_t)(e / d.len), c = channel_of(&d, e);
            double gam = d.affine ? g.host[c] : 1, bet = d.affine ? b.host[c] : 0;
            double xhat = (x.host[e] - ss.mean[s]) * ss.rstd[s];
            double v = xhat * gam + bet;
            double err_xhat = ss.rstd[s] * ss.dm[s] + fabs(xhat) * ss.drel[s] + 2 * U32 * fabs(xhat);
            double bound_v = fabs(gam) * err_xhat + 3 * U32 * (fabs(xhat * gam) + fabs(bet));
            if (d.silu) { /* silu' is at most 1.1; its own error as in the element-wise test */
                double sg = 1 / (1 + exp(-v));
                bound_v = 1.1 * bound_v + (8 + 2 * fabs(v)) * U32 * fabs(v * sg) + 0x1p-100;
                v = v * sg;
            }
            ref[e] = v;
            bound[e] = bound_v + op_store_bound(ty, v);
        }
        fails = op_compare(what, y.host, ref, bound, n);
        /* The stats tensor: mean and rstd per segment. */
        op_tensor_free(&y);
        stats_free(&ss);
        free(ref), free(bound);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&x), op_tensor_free(&g), op_tensor_free(&b), op_tensor_free(&y), op_tensor_free(&st);
}

void test_op_norm(op_env *env)
{
    /* Group norm: small, odd, several chunks per group; SDXL-like. */
    forward_case(env, "group_norm", df_norm_group(2, 32, 51, 8, 1e-5f), DF_F32, DF_F32, DF_F32, 0, 0);
    forward_case(env, "group_norm", df_norm_group(1, 64, 2000, 32, 1e-6f), DF_F32, DF_F32, DF_F32, 0, 0);
    forward_case(env, "group_norm", df_norm_group(2, 320, 256, 32, 1e-5f), DF_F16, DF_F32, DF_F16, 0, 0);
    forward_case(env, "group_norm", df_norm_group(1, 96, 77, 32, 1e-5f), DF_F32, DF_F16, DF_F32, 50.0f, 1);
    df_norm_desc gs = df_norm_group(2, 64, 33, 32, 1e-5f);
    gs.silu = 1;
    forward_case(env, "group_norm", gs, DF_F32, DF_F32, DF_F32, 0, 0);
    gs.affine = 0;
    forward_case(env, "group_norm", gs, DF_F16, DF_F32, DF_F16, 0, 0);
    /* Layer norm: CLIP and SDXL transformer widths. */
    forward_case(env, "layer_norm", df_norm_layer(77, 768, 1e-5f), DF_F32, DF_F32, DF_F32, 0, 0);
    forward_case(env, "layer_norm", df_norm_layer(5, 1280, 1e-5f), DF_F16, DF_F16, DF_F16, 0, 3);
    forward_case(env, "layer_norm", df_norm_layer(33, 2500, 1e-5f), DF_F32, DF_F32, DF_F32, 20.0f, 0);
    forward_case(env, "layer_norm", df_norm_layer(1, 1, 1e-5f), DF_F32, DF_F32, DF_F32, 0, 0);
}

/* Backward: dx, dgamma and dbeta against central differences of
 * sum(dy * forward(x)) in double. */
static void backward_case(op_env *env, const char *label, df_norm_desc d)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t n = (uint64_t)d.segments * d.len;
    op_tensor x = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
    op_tensor g = op_tensor_uniform(env, d.channels, DF_F32, 0, 0.5f, 1.5f);
    op_tensor b = op_tensor_normal(env, d.channels, DF_F32, 0, 0.5f);
    op_tensor dy = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
    op_tensor y = op_tensor_output(env, n, DF_F32, 0);
    op_tensor st = op_tensor_output(env, df_norm_stats_elems(&d), DF_F32, 0);
    op_tensor dx = op_tensor_output(env, n, DF_F32, 0);
    op_tensor ag = op_tensor_output(env, 2ull * d.channels, DF_F32, 0);
    int rc = df_norm_forward(env->batch, &d, x.t, g.t, b.t, y.t, st.t, &err);
    if (!rc)
        rc = df_norm_backward(env->batch, &d, x.t, g.t, st.t, dy.t, dx.t, ag.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &dx, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, ag.buf, 0, ag.host, 2ull * d.channels, DF_F32, &err);
    char what[128];
    snprintf(what, sizeof what, "%s backward S=%u L=%u C=%u against finite differences", label, d.segments, d.len,
             d.channels);
    int fails = 0;
    if (!rc)
        fails += op_check_scratch(env, what, n * df_dtype_size(x.t.dtype));
    if (!rc) {
        double *xd = malloc(n * sizeof *xd), *gd = malloc(d.channels * sizeof *gd), *bd = malloc(d.channels * sizeof *bd);
        double *yp = malloc(n * sizeof *yp), *ym = malloc(n * sizeof *ym);
        for (uint64_t i = 0; i < n; i++)
            xd[i] = x.host[i];
        for (uint32_t c = 0; c < d.channels; c++)
            gd[c] = g.host[c], bd[c] = b.host[c];
        const double h = 1e-5;
        double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
        seg_stats ss = stats_alloc(d.segments);
        stats_ref(&d, x.host, &ss);
        double gmax = 0;
        for (uint64_t e = 0; e < n; e++)
            gmax = fmax(gmax, fabs(dy.host[e] * gd[channel_of(&d, e)]));
        for (uint64_t i = 0; i < n; i++) {
            double keep = xd[i];
            xd[i] = keep + h;
            forward_ref(&d, xd, gd, bd, yp);
            xd[i] = keep - h;
            forward_ref(&d, xd, gd, bd, ym);
            xd[i] = keep;
            double sum = 0;
            uint32_t s = (uint32_t)(i / d.len);
            for (uint32_t j = 0; j < d.len; j++) {
                uint64_t e = (uint64_t)s * d.len + j;
                sum += dy.host[e] * (yp[e] - ym[e]);
            }
            ref[i] = sum / (2 * h);
            /* dx = rstd (g - mean g - xhat mean(g xhat)): each mean summed over L
             * terms of size up to gmax and gmax |xhat| (|xhat| <= sqrt(L)), plus
             * the forward statistics' errors. */
            double k = sum_terms(&d) * U32, r = ss.rstd[s];
            double xhat_max = sqrt((double)d.len);
            bound[i] = r * (4 * U32 * gmax + k * gmax * (1 + xhat_max) + gmax * xhat_max * ss.drel[s] +
                            gmax * (r * ss.dm[s] + xhat_max * ss.drel[s])) +
                       fabs(ref[i]) * (ss.drel[s] + 3 * U32) + 1e-7 * gmax;
        }
        fails += op_compare(what, dx.host, ref, bound, n);
        /* dgamma, dbeta */
        double *aref = malloc(2 * d.channels * sizeof *aref), *abound = malloc(2 * d.channels * sizeof *abound);
        for (uint32_t c = 0; c < d.channels; c++) {
            for (int which = 0; which < 2; which++) {
                double *param = which ? bd : gd;
                double keep = param[c];
                param[c] = keep + h;
                forward_ref(&d, xd, gd, bd, yp);
                param[c] = keep - h;
                forward_ref(&d, xd, gd, bd, ym);
                param[c] = keep;
                double sum = 0, mag = 0;
                for (uint64_t e = 0; e < n; e++)
                    if (channel_of(&d, e) == c) {
                        sum += dy.host[e] * (yp[e] - ym[e]);
                        mag += fabs(dy.host[e]) * (which ? 1 : 3);
                    }
                aref[2 * c + which] = sum / (2 * h);
                abound[2 * c + which] = (double)n / d.channels * 2 * U32 * mag + mag * 1e-6;
            }
        }
        char what2[160];
        snprintf(what2, sizeof what2, "%s dgamma/dbeta", what);
        fails += op_compare(what2, ag.host, aref, abound, 2ull * d.channels);
        stats_free(&ss);
        free(xd), free(gd), free(bd), free(yp), free(ym), free(ref), free(bound), free(aref), free(abound);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&x), op_tensor_free(&g), op_tensor_free(&b), op_tensor_free(&dy), op_tensor_free(&y);
    op_tensor_free(&st), op_tensor_free(&dx), op_tensor_free(&ag);
}

void test_op_norm_bwd_fd(op_env *env)
{
    backward_case(env, "group_norm", df_norm_group(2, 8, 6, 4, 1e-5f));
    backward_case(env, "group_norm", df_norm_group(1, 6, 7, 3, 1e-5f));
    backward_case(env, "layer_norm", df_norm_layer(3, 40, 1e-5f));
    backward_case(env, "layer_norm", df_norm_layer(2, 1100, 1e-5f)); /* two chunks per segment */
}

void test_op_norm_errors(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    op_tensor x = op_tensor_normal(env, 64, DF_F32, 0, 1.0f);
    op_tensor st = op_tensor_output(env, 16, DF_F32, 0);
    int bad = 0;
    df_norm_desc d = df_norm_group(1, 10, 4, 3, 1e-5f); /* 10 channels in 3 groups: not whole */
    bad += df_norm_forward(env->batch, &d, x.t, x.t, x.t, x.t, st.t, &err) != DF_E_INVALID;
    df_error_clear(&err);
    d = df_norm_layer(0, 8, 1e-5f);
    bad += df_norm_forward(env->batch, &d, x.t, x.t, x.t, x.t, st.t, &err) != DF_E_INVALID || !strstr(err.msg, "empty");
    df_error_clear(&err);
    d = df_norm_layer(8, 16, 1e-5f); /* 128 elements, x has 64 */
    bad += df_norm_forward(env->batch, &d, x.t, x.t, x.t, x.t, st.t, &err) != DF_E_RANGE || !strstr(err.msg, "x needs");
    df_error_clear(&err);
    d = df_norm_layer(4, 16, 1e-5f);
    d.silu = 1;
    bad += df_norm_backward(env->batch, &d, x.t, x.t, st.t, x.t, x.t, (df_tensor){0}, &err) != DF_E_INVALID;
    df_error_clear(&err);
    d.silu = 0;
    df_tensor half_stats = st.t;
    half_stats.dtype = DF_F16;
    bad += df_norm_forward(env->batch, &d, x.t, x.t, x.t, x.t, half_stats, &err) != DF_E_INVALID;
    df_error_clear(&err);
    bad += df_vk_batch_submit(env->batch, &err) != DF_OK;
    if (bad)
        fprintf(stderr, "  FAIL norm error paths: %d checks\n", bad);
    op_case_done(env, "norm error paths", bad, 0, NULL);
    op_tensor_free(&x), op_tensor_free(&st);
}
