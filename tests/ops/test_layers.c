/*  test_layers.c - GEGLU, strided copies (concat/slice), nearest upsampling,
 *  timestep embeddings, MSE loss, AdamW/SGD and Philox noise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy2d.h"
#include "geglu.h"
#include "loss.h"
#include "noise.h"
#include "ops_tests.h"
#include "optim.h"
#include "philox.h"
#include "softmax.h"
#include "timestep.h"
#include "upsample.h"

#define INV_SQRT_2PI 0.3989422804014327

static double gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_grad(double x) { return 0.5 * (1 + erf(x / sqrt(2.0))) + x * INV_SQRT_2PI * exp(-0.5 * x * x); }
/* As in test_eltwise.c: the erfc fit is good to 1.2e-7 (absolute in 1 + erf). */
static double gelu_err(double x) { return 0.5 * fabs(x) * (2.4e-7 + 12 * U32) + 4 * U32 * fabs(gelu(x)); }
static double gelu_grad_err(double x)
{
    return 0.5 * (2.4e-7 + 12 * U32) + fabs(x) * INV_SQRT_2PI * exp(-0.5 * x * x) * (8 + x * x) * U32;
}

static void geglu_case(op_env *env, uint32_t rows, uint32_t inner, df_dtype tx, df_dtype ty)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t nx = 2ull * rows * inner, ny = (uint64_t)rows * inner;
    op_tensor x = op_tensor_normal(env, nx, tx, 0, 2.0f);
    op_tensor dy = op_tensor_normal(env, ny, DF_F32, 0, 1.0f);
    op_tensor y = op_tensor_output(env, ny, ty, 0);
    op_tensor dx = op_tensor_output(env, nx, DF_F32, 0);
    int rc = df_geglu_forward(env->batch, rows, inner, x.t, y.t, &err);
    if (!rc)
        rc = df_geglu_backward(env->batch, rows, inner, x.t, dy.t, dx.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, dx.buf, 0, dx.host, nx, DF_F32, &err);
    char what[96];
    snprintf(what, sizeof what, "geglu %ux%u x=%s y=%s", rows, inner, df_dtype_name(tx), df_dtype_name(ty));
    int fails = 0;
    if (!rc) {
        double *ref = malloc(nx * sizeof *ref), *bound = malloc(nx * sizeof *bound);
        for (uint64_t r = 0; r < rows; r++)
            for (uint32_t j = 0; j < inner; j++) {
                double h = x.host[r * 2 * inner + j], g = x.host[r * 2 * inner + inner + j];
                ref[r * inner + j] = h * gelu(g);
                bound[r * inner + j] = fabs(h) * gelu_err(g) + U32 * fabs(h * gelu(g)) + op_store_bound(ty, h * gelu(g));
            }
        fails += op_compare(what, y.host, ref, bound, ny);
        /* dx against central differences of sum(dy * y): each input feeds one output. */
        const double hstep = 1e-4;
        for (uint64_t r = 0; r < rows; r++)
            for (uint32_t j = 0; j < inner; j++) {
                double h = x.host[r * 2 * inner + j], g = x.host[r * 2 * inner + inner + j], d = dy.host[r * inner + j];
                uint64_t ih = r * 2 * inner + j, ig = ih + inner;
                ref[ih] = d * ((h + hstep) * gelu(g) - (h - hstep) * gelu(g)) / (2 * hstep);
                ref[ig] = d * h * (gelu(g + hstep) - gelu(g - hstep)) / (2 * hstep);
                bound[ih] = fabs(d) * gelu_err(g) + U32 * fabs(ref[ih]) + 1e-9 * fabs(d);
                bound[ig] = fabs(d * h) * gelu_grad_err(g) + 2 * U32 * fabs(ref[ig]) + 1e-8 * fabs(d * h);
            }
        char w2[192];
        snprintf(w2, sizeof w2, "%s backward against finite differences", what);
        fails += op_compare(w2, dx.host, ref, bound, nx);
        (void)gelu_grad;
        free(ref), free(bound);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&x), op_tensor_free(&dy), op_tensor_free(&y), op_tensor_free(&dx);
}

void test_op_geglu(op_env *env)
{
    geglu_case(env, 1, 1, DF_F32, DF_F32);
    geglu_case(env, 77, 33, DF_F32, DF_F32);
    geglu_case(env, 64, 1280, DF_F16, DF_F16); /* SDXL level 1: inner 4 * 320 */
}

/* Concatenate two parts along channels, check the gaps were left alone,
 * slice them back out, and compare exactly. */
void test_op_copy2d(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    const uint32_t n = 3, c1 = 5, c2 = 7, hw = 11;
    op_tensor a = op_tensor_normal(env, n * c1 * hw, DF_F32, 1, 1.0f);
    op_tensor b = op_tensor_normal(env, n * c2 * hw, DF_F16, 0, 1.0f);
    op_tensor y = op_tensor_output(env, n * (c1 + c2) * hw, DF_F32, 0);
    op_tensor back = op_tensor_output(env, n * c2 * hw, DF_F16, 2);
    df_copy2d_desc da = {n, c1 * hw, c1 * hw, (c1 + c2) * hw}, db = {n, c2 * hw, c2 * hw, (c1 + c2) * hw};
    df_tensor y2 = y.t;
    y2.ref.offset += (uint64_t)c1 * hw * 4;
    df_copy2d_desc ds = {n, c2 * hw, (c1 + c2) * hw, c2 * hw};
    int rc = df_copy2d(env->batch, &da, a.t, y.t, &err);
    if (!rc)
        rc = df_copy2d(env->batch, &db, b.t, y2, &err);
    if (!rc)
        rc = df_copy2d(env->batch, &ds, y2, back.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, back.buf, back.t.ref.offset, back.host, back.n, DF_F16, &err);
    int fails = 0;
    if (!rc) {
        for (uint32_t s = 0; s < n; s++) {
            for (uint32_t j = 0; j < c1 * hw; j++)
                fails += y.host[(uint64_t)s * (c1 + c2) * hw + j] != a.host[(uint64_t)s * c1 * hw + j];
            for (uint32_t j = 0; j < c2 * hw; j++)
                fails += y.host[(uint64_t)s * (c1 + c2) * hw + c1 * hw + j] != b.host[(uint64_t)s * c2 * hw + j];
        }
        for (uint64_t i = 0; i < back.n; i++)
            fails += back.host[i] != b.host[i];
        if (fails)
            fprintf(stderr, "  FAIL copy2d concat/slice: %d elements differ\n", fails);
    }
    op_case_done(env, "copy2d concat and slice", fails, rc, &err);
    df_copy2d_desc bad = {2, 10, 5, 10};
    df_error_clear(&err);
    int badrc = df_copy2d(env->batch, &bad, a.t, y.t, &err) != DF_E_INVALID;
    op_case_done(env, "copy2d ld < width refused", badrc, 0, NULL);
    op_tensor_free(&a), op_tensor_free(&b), op_tensor_free(&y), op_tensor_free(&back);
}

/* Forward is exact; backward is its adjoint: <dy, up(x)> = <down(dy), x>. */
void test_op_upsample(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    const uint32_t planes = 6, h = 5, w = 7;
    uint64_t small = (uint64_t)planes * h * w, big = small * 4;
    op_tensor x = op_tensor_normal(env, small, DF_F16, 0, 1.0f);
    op_tensor y = op_tensor_output(env, big, DF_F32, 0);
    op_tensor dy = op_tensor_normal(env, big, DF_F32, 1, 1.0f);
    op_tensor dx = op_tensor_output(env, small, DF_F32, 0);
    int rc = df_upsample2x_forward(env->batch, planes, h, w, x.t, y.t, &err);
    if (!rc)
        rc = df_upsample2x_backward(env->batch, planes, h, w, dy.t, dx.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, dx.buf, 0, dx.host, small, DF_F32, &err);
    int fails = 0;
    if (!rc) {
        for (uint32_t p = 0; p < planes; p++)
            for (uint32_t yy = 0; yy < 2 * h; yy++)
                for (uint32_t xx = 0; xx < 2 * w; xx++)
                    fails += y.host[((uint64_t)p * 2 * h + yy) * 2 * w + xx] != x.host[((uint64_t)p * h + yy / 2) * w + xx / 2];
        double *ref = malloc(small * sizeof *ref), *bound = malloc(small * sizeof *bound);
        for (uint32_t p = 0; p < planes; p++)
            for (uint32_t yy = 0; yy < h; yy++)
                for (uint32_t xx = 0; xx < w; xx++) {
                    double s = 0, m = 0;
                    for (int k = 0; k < 4; k++) {
                        double v = dy.host[((uint64_t)p * 2 * h + 2 * yy + k / 2) * 2 * w + 2 * xx + k % 2];
                        s += v, m += fabs(v);
                    }
                    uint64_t i = ((uint64_t)p * h + yy) * w + xx;
                    ref[i] = s, bound[i] = 3 * U32 * m;
                }
        fails += op_compare("upsample2x backward", dx.host, ref, bound, small);
        double lhs = 0, rhs = 0, mag = 0;
        for (uint64_t i = 0; i < big; i++)
            lhs += (double)dy.host[i] * y.host[i], mag += fabs((double)dy.host[i] * y.host[i]);
        for (uint64_t i = 0; i < small; i++)
            rhs += (double)dx.host[i] * x.host[i];
        if (fabs(lhs - rhs) > 4 * U32 * mag) {
            fprintf(stderr, "  FAIL upsample adjoint: %.9g vs %.9g\n", lhs, rhs);
            fails++;
        }
        free(ref), free(bound);
    }
    op_case_done(env, "upsample2x forward, backward, adjoint", fails, rc, &err);
    op_tensor_free(&x), op_tensor_free(&y), op_tensor_free(&dy), op_tensor_free(&dx);
}

void test_op_timestep(op_env *env)
{
    df_error_t err;
    static const struct {
        uint32_t dim;
        int flip;
    } cases[] = {{320, 1}, {256, 1}, {7, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        df_error_clear(&err);
        df_timestep_desc d = {.dim = cases[c].dim, .max_period = 10000, .shift = 0, .scale = 1,
                              .flip_sin_to_cos = cases[c].flip};
        uint32_t half = d.dim / 2;
        float *freqs = malloc(half * sizeof *freqs);
        df_timestep_freqs(&d, freqs);
        /* Timesteps from 0 to 999 and SDXL's size numbers (up to 1024+). */
        float tv[6] = {0, 1, 999, 500.5f, 1024, 768};
        op_tensor t = op_tensor_from(env, tv, 6, DF_F32, 0);
        op_tensor f = op_tensor_from(env, freqs, half, DF_F32, 1);
        op_tensor e = op_tensor_output(env, 6ull * d.dim, DF_F32, 0);
        int rc = df_timestep_embedding(env->batch, &d, 6, t.t, f.t, e.t, &err);
        if (!rc)
            rc = op_run_and_read(env, &e, &err);
        char what[64];
        snprintf(what, sizeof what, "timestep_embedding dim=%u flip=%d", d.dim, d.flip_sin_to_cos);
        int fails = 0;
        if (!rc) {
            double *ref = malloc(6 * d.dim * sizeof *ref), *bound = malloc(6 * d.dim * sizeof *bound);
            for (int b = 0; b < 6; b++)
                for (uint32_t i = 0; i < d.dim; i++) {
                    double v = 0, a = 0;
                    if (i < 2 * half) {
                        uint32_t j = i % half;
                        a = (double)tv[b] * (double)f.host[j]; /* the f32 table, as the device sees it */
                        int first = i < half;
                        v = (first != d.flip_sin_to_cos) ? sin(a) : cos(a);
                    }
                    /* t * f rounds once (|a| ulp); the reduction by pi/2 and the
                     * polynomials add a few 1e-8. */
                    ref[(uint64_t)b * d.dim + i] = v;
                    bound[(uint64_t)b * d.dim + i] = fabs(a) * U32 + 3e-7;
                }
            fails = op_compare(what, e.host, ref, bound, 6ull * d.dim);
            free(ref), free(bound);
        }
        op_case_done(env, what, fails, rc, &err);
        op_tensor_free(&t), op_tensor_free(&f), op_tensor_free(&e);
        free(freqs);
    }
}

void test_op_mse(op_env *env)
{
    df_error_t err;
    static const struct {
        uint32_t samples, count;
        int weighted;
        df_dtype tp;
    } cases[] = {{1, 1, 0, DF_F32}, {2, 4 * 64 * 64, 1, DF_F32}, {3, 1500, 1, DF_F16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        df_error_clear(&err);
        df_mse_desc d = {.samples = cases[c].samples, .count = cases[c].count, .grad_scale = 0.5f};
        uint64_t n = (uint64_t)d.samples * d.count;
        op_tensor p = op_tensor_normal(env, n, cases[c].tp, 0, 1.0f);
        op_tensor t = op_tensor_normal(env, n, cases[c].tp, 1, 1.0f);
        op_tensor w = op_tensor_uniform(env, d.samples, DF_F32, 0, 0.2f, 2.0f);
        op_tensor out = op_tensor_output(env, 1ull + d.samples, DF_F32, 0);
        op_tensor g = op_tensor_output(env, n, DF_F32, 0);
        df_tensor wt = cases[c].weighted ? w.t : (df_tensor){0};
        int rc = df_mse_loss(env->batch, &d, p.t, t.t, wt, out.t, g.t, &err);
        if (!rc)
            rc = op_run_and_read(env, &out, &err);
        if (!rc)
            rc = df_vk_download_f32(env->xfer, g.buf, 0, g.host, n, DF_F32, &err);
        char what[64];
        snprintf(what, sizeof what, "mse_loss %ux%u weighted=%d", d.samples, d.count, cases[c].weighted);
        int fails = 0;
        if (!rc)
            fails += op_check_scratch(env, what, n * df_dtype_size(cases[c].tp));
        if (!rc) {
            double *ref = malloc((1 + d.samples) * sizeof *ref), *bound = malloc((1 + d.samples) * sizeof *bound);
            double total = 0, terms = (d.count < 1024 ? d.count : 1024) + (d.count + 1023) / 1024 + d.samples + 8;
            for (uint32_t s = 0; s < d.samples; s++) {
                double sum = 0;
                for (uint32_t i = 0; i < d.count; i++) {
                    double diff = (double)p.host[(uint64_t)s * d.count + i] - t.host[(uint64_t)s * d.count + i];
                    sum += diff * diff;
                }
                double ws = cases[c].weighted ? w.host[s] : 1;
                ref[1 + s] = ws * sum / d.count;
                bound[1 + s] = terms * U32 * fabs(ref[1 + s]); /* all terms positive: relative */
                total += ref[1 + s];
            }
            ref[0] = total / d.samples;
            bound[0] = terms * U32 * ref[0];
            fails += op_compare(what, out.host, ref, bound, 1 + d.samples);
            double *gr = malloc(n * sizeof *gr), *gb = malloc(n * sizeof *gb);
            for (uint64_t i = 0; i < n; i++) {
                double ws = cases[c].weighted ? w.host[i / d.count] : 1;
                gr[i] = 2 * ((double)p.host[i] - t.host[i]) * ws / ((double)d.count * d.samples) * d.grad_scale;
                gb[i] = 6 * U32 * fabs(gr[i]) + 0x1p-120;
            }
            char w2[96];
            snprintf(w2, sizeof w2, "%s gradient", what);
            fails += op_compare(w2, g.host, gr, gb, n);
            free(ref), free(bound), free(gr), free(gb);
        }
        op_case_done(env, what, fails, rc, &err);
        op_tensor_free(&p), op_tensor_free(&t), op_tensor_free(&w), op_tensor_free(&out), op_tensor_free(&g);
    }
}

/* Two AdamW steps and one SGD step against double references. */
void test_op_optim(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    const uint64_t n = 10001;
    op_tensor prm = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
    op_tensor g1 = op_tensor_normal(env, n, DF_F16, 0, 0.1f);
    op_tensor g2 = op_tensor_normal(env, n, DF_F32, 1, 0.1f);
    op_tensor m = op_tensor_output(env, n, DF_F32, 0), v = op_tensor_output(env, n, DF_F32, 0);
    float *zero = calloc(n, sizeof *zero);
    df_vk_upload_f32(env->xfer, m.buf, 0, zero, n, DF_F32, NULL);
    df_vk_upload_f32(env->xfer, v.buf, 0, zero, n, DF_F32, NULL);
    free(zero);
    df_adamw_desc d = {.n = n, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f,
                       .step = 1, .grad_scale = 1};
    int rc = df_adamw_step(env->batch, &d, prm.t, g1.t, m.t, v.t, &err);
    d.step = 2, d.grad_scale = 0.5f;
    if (!rc)
        rc = df_adamw_step(env->batch, &d, prm.t, g2.t, m.t, v.t, &err);
    float *after = malloc(n * sizeof *after);
    if (!rc)
        rc = df_vk_batch_submit(env->batch, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, prm.buf, 0, after, n, DF_F32, &err);
    int fails = 0;
    if (!rc) {
        double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
        for (uint64_t i = 0; i < n; i++) {
            double p = prm.host[i], mm = 0, vv = 0, e = 0;
            for (int s = 1; s <= 2; s++) {
                double g = s == 1 ? g1.host[i] : 0.5 * g2.host[i];
                p *= 1 - 1e-3 * 1e-2;
                mm = 0.9 * mm + 0.1 * g;
                vv = 0.999 * vv + 0.001 * g * g;
                double upd = 1e-3 * (mm / (1 - pow(0.9, s))) / (sqrt(vv / (1 - pow(0.999, s))) + 1e-8);
                p -= upd;
                /* Each step: the update to ~15 ulp (moments, two divisions, a
                 * square root), the decay and subtraction 3 ulp of p. */
                e += 15 * U32 * fabs(upd) + 3 * U32 * fabs(p);
            }
            ref[i] = p, bound[i] = e;
        }
        fails = op_compare("adamw two steps", after, ref, bound, n);
        free(ref), free(bound);
    }
    op_case_done(env, "adamw", fails, rc, &err);
    /* SGD from the AdamW result. */
    df_error_clear(&err);
    rc = df_sgd_step(env->batch, n, 0.1f, 0.01f, 2.0f, prm.t, g2.t, &err);
    float *sgd = malloc(n * sizeof *sgd);
    if (!rc)
        rc = df_vk_batch_submit(env->batch, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, prm.buf, 0, sgd, n, DF_F32, &err);
    fails = 0;
    if (!rc) {
        double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
        for (uint64_t i = 0; i < n; i++) {
            double g = 2.0 * g2.host[i];
            ref[i] = after[i] - 0.1 * (g + 0.01 * after[i]);
            bound[i] = 4 * U32 * (fabs(after[i]) + 0.1 * fabs(g) + 1e-3 * fabs(after[i]));
        }
        fails = op_compare("sgd step", sgd, ref, bound, n);
        free(ref), free(bound);
    }
    op_case_done(env, "sgd", fails, rc, &err);
    free(after), free(sgd);
    df_error_clear(&err);
    d.step = 0;
    int bad = df_adamw_step(env->batch, &d, prm.t, g1.t, m.t, v.t, &err) != DF_E_INVALID;
    op_case_done(env, "adamw step 0 refused", bad, 0, NULL);
    op_tensor_free(&prm), op_tensor_free(&g1), op_tensor_free(&g2), op_tensor_free(&m), op_tensor_free(&v);
}

/* Device noise equals the host's Philox stream element by element, also for
 * a shard in the middle of the stream. */
void test_op_noise(op_env *env)
{
    df_error_t err;
    static const struct {
        uint64_t n, first, seed, stream;
        df_dtype t;
    } cases[] = {{1, 0, 1, 0, DF_F32}, {100003, 0, 42, 7, DF_F32}, {1001, 4096, 42, 7, DF_F32},
                 {5000, 0x100000000ull, 0xDEADBEEFCAFEull, 3, DF_F16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        df_error_clear(&err);
        df_noise_desc d = {.n = cases[c].n, .seed = cases[c].seed, .stream = cases[c].stream, .first = cases[c].first,
                           .scale = 1.0f};
        op_tensor y = op_tensor_output(env, d.n, cases[c].t, 0);
        int rc = df_noise_normal(env->batch, &d, y.t, &err);
        if (!rc)
            rc = op_run_and_read(env, &y, &err);
        char what[96];
        snprintf(what, sizeof what, "noise n=%llu first=%llu %s", (unsigned long long)d.n,
                 (unsigned long long)d.first, df_dtype_name(cases[c].t));
        int fails = 0;
        if (!rc) {
            uint64_t total = d.first + d.n + 1;
            /* The host stream, up to the shard's end (words 2j, 2j + 1 per pair). */
            double *ref = malloc(d.n * sizeof *ref), *bound = malloc(d.n * sizeof *bound);
            for (uint64_t i = 0; i < d.n; i++) {
                uint64_t e = d.first + i, j = e / 2;
                double u1 = 1.0 - df_philox_uniform(df_philox_u32(d.seed, d.stream, 2 * j));
                double u2 = df_philox_uniform(df_philox_u32(d.seed, d.stream, 2 * j + 1));
                double r = sqrt(-2.0 * log(u1)), th = 2 * M_PI * u2;
                ref[i] = e % 2 ? r * sin(th) : r * cos(th);
                /* log(1 - u): series (a few ulp) or Vulkan's log (3 ulp, or
                 * 2^-21 absolute on [0.5, 2]); sin/cos: polynomial and
                 * reduction, ~2e-7 absolute. */
                double dlog = u1 >= 0.5 ? 0x1p-21 : 4 * U32 * fabs(log(u1));
                bound[i] = dlog / (r > 1e-3 ? r : 1e-3) + 3e-7 * r + 4 * U32 * fabs(ref[i]) +
                           op_store_bound(cases[c].t, ref[i]);
            }
            (void)total;
            fails = op_compare(what, y.host, ref, bound, d.n);
            free(ref), free(bound);
        }
        op_case_done(env, what, fails, rc, &err);
        op_tensor_free(&y);
    }
    df_error_clear(&err);
    op_tensor y = op_tensor_output(env, 8, DF_F32, 0);
    df_noise_desc bad = {.n = 8, .first = 2, .scale = 1};
    int b = df_noise_normal(env->batch, &bad, y.t, &err) != DF_E_INVALID;
    op_case_done(env, "noise unaligned first refused", b, 0, NULL);
    op_tensor_free(&y);
}

/* Softmax forward against double; backward against finite differences of
 * sum(dy * softmax(x)) through the forward reference. */
static void softmax_ref(const float *x, uint32_t cols, double scale, double *y)
{
    double m = -INFINITY, l = 0;
    for (uint32_t j = 0; j < cols; j++)
        m = fmax(m, scale * x[j]);
    for (uint32_t j = 0; j < cols; j++)
        l += exp(scale * x[j] - m);
    for (uint32_t j = 0; j < cols; j++)
        y[j] = exp(scale * x[j] - m) / l;
}

void test_op_softmax(op_env *env)
{
    df_error_t err;
    static const uint32_t shapes[][2] = {{1, 1}, {5, 77}, {300, 17}, {3, 4096}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        df_error_clear(&err);
        uint32_t rows = shapes[c][0], cols = shapes[c][1];
        uint64_t n = (uint64_t)rows * cols;
        const float scale = 0.125f;
        op_tensor x = op_tensor_normal(env, n, DF_F32, 0, 8.0f);
        op_tensor y = op_tensor_output(env, n, DF_F32, 0);
        op_tensor dy = op_tensor_normal(env, n, DF_F32, 1, 1.0f);
        op_tensor dx = op_tensor_output(env, n, DF_F32, 0);
        int rc = df_softmax_forward(env->batch, rows, cols, scale, x.t, y.t, &err);
        if (!rc)
            rc = df_softmax_backward(env->batch, rows, cols, y.t, dy.t, dx.t, &err);
        if (!rc)
            rc = op_run_and_read(env, &y, &err);
        if (!rc)
            rc = df_vk_download_f32(env->xfer, dx.buf, 0, dx.host, n, DF_F32, &err);
        char what[64];
        snprintf(what, sizeof what, "softmax %ux%u", rows, cols);
        int fails = 0;
        if (!rc) {
            double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
            double *row = malloc(cols * sizeof *row), *rp = malloc(cols * sizeof *rp), *rm = malloc(cols * sizeof *rm);
            float *xp = malloc(cols * sizeof *xp);
            for (uint32_t r = 0; r < rows; r++) {
                const float *xr = x.host + (uint64_t)r * cols;
                softmax_ref(xr, cols, scale, row);
                double m = -INFINITY;
                for (uint32_t j = 0; j < cols; j++)
                    m = fmax(m, scale * xr[j]);
                for (uint32_t j = 0; j < cols; j++) {
                    /* exp: 3 + 2|arg| ulp; the sum of cols terms; the division. */
                    double e = (3 + 2 * fabs(scale * xr[j] - m) + cols + 6) * U32;
                    ref[(uint64_t)r * cols + j] = row[j];
                    bound[(uint64_t)r * cols + j] = e * row[j] + 0x1p-100;
                }
            }
            fails += op_compare(what, y.host, ref, bound, n);
            /* Backward: central differences (h on the input, in double). */
            const double h = 1e-4;
            for (uint32_t r = 0; r < rows && r < 8; r++) {
                const float *xr = x.host + (uint64_t)r * cols;
                const float *dyr = dy.host + (uint64_t)r * cols;
                const float *yr = y.host + (uint64_t)r * cols;
                double mag = 0;
                for (uint32_t j = 0; j < cols; j++)
                    mag += fabs(dyr[j] * yr[j]);
                for (uint32_t j = 0; j < cols && j < 64; j++) {
                    memcpy(xp, xr, cols * sizeof *xp);
                    /* Perturb in double through the scale: d/dx of softmax(scale x). */
                    double sum_p = 0, sum_m = 0;
                    xp[j] = (float)(xr[j] + h);
                    softmax_ref(xp, cols, scale, rp);
                    xp[j] = (float)(xr[j] - h);
                    softmax_ref(xp, cols, scale, rm);
                    double hh = ((double)(float)(xr[j] + h) - (double)(float)(xr[j] - h)) / 2;
                    for (uint32_t k = 0; k < cols; k++)
                        sum_p += dyr[k] * rp[k], sum_m += dyr[k] * rm[k];
                    double fd = (sum_p - sum_m) / (2 * hh);
                    /* The kernel differentiates w.r.t. the softmax input (scale x): */
                    fd /= scale;
                    double got = dx.host[(uint64_t)r * cols + j];
                    double bnd = (cols + 6) * U32 * (fabs(yr[j]) * (fabs(dyr[j]) + mag)) + 1e-6 * fabs(fd) + 1e-7;
                    if (!(fabs(got - fd) <= bnd)) {
                        if (!fails)
                            fprintf(stderr, "  FAIL %s backward [%u][%u]: got %.9g want %.9g (bound %.3g)\n", what, r, j,
                                    got, fd, bnd);
                        fails++;
                    }
                }
            }
            free(ref), free(bound), free(row), free(rp), free(rm), free(xp);
        }
        op_case_done(env, what, fails, rc, &err);
        op_tensor_free(&x), op_tensor_free(&y), op_tensor_free(&dy), op_tensor_free(&dx);
    }
}
