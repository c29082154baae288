/*  test_scheduler.c - the samplers against diffusers' own schedulers.
 *
 *  tests/data/golden/schedulers.safetensors holds, for each sampler at 7 and
 *  20 steps, the timesteps, sigmas and initial noise sigma diffusers computed
 *  from SDXL's scheduler config, and the final latents of its denoising loop
 *  around a smooth synthetic model (the same function is computed here), with
 *  the ancestral sampler's per-step noise given.
 *
 *  Usage: test_scheduler GOLDEN_DIR [filter] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "scheduler.h"
#include "lr_schedule.h"
#include "train_noise.h"
#include "test.h"

static const df_safetensors_t *g_st;

static float *golden(const char *key, const char *what, uint64_t *n)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", key, what);
    const df_st_tensor *t = df_safetensors_find(g_st, name);
    if (!t)
        return NULL;
    float *f = malloc(t->nelem * sizeof *f);
    df_st_tensor_to_f32(t, f, NULL);
    *n = t->nelem;
    return f;
}

static double max_rel(const float *a, const float *b, uint64_t n)
{
    double worst = 0, scale = 0;
    for (uint64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0 ? worst / scale : worst;
}

static void run_sampler(df_sampler s, int steps)
{
    char key[64];
    snprintf(key, sizeof key, "%s_%d", df_sampler_name(s), steps);
    uint64_t n, nt, ns, nn, ni;
    float *init = golden(key, "init", &n), *final = golden(key, "final", &n), *ts = golden(key, "timesteps", &nt);
    float *sig = golden(key, "sigmas", &ns), *noise = golden(key, "noise", &nn), *is = golden(key, "init_noise_sigma", &ni);
    CHECK(init && final && ts && sig && noise && is);
    if (!init || !final || !ts || !sig || !noise || !is)
        return;
    df_error_t err;
    df_error_clear(&err);
    df_scheduler_t *sc = df_scheduler_new(s, steps, n, &err);
    CHECK(sc != NULL);
    CHECK_EQ(nt, (uint64_t)steps);
    double worst_t = 0, worst_s = 0;
    for (int i = 0; i < steps && sc; i++) {
        worst_t = fmax(worst_t, fabs(df_scheduler_timestep(sc, i) - ts[i]) / (1 + fabs(ts[i])));
        if (ns > 1) /* DDIM has no sigmas to compare */
            worst_s = fmax(worst_s, fabs(df_scheduler_sigma(sc, i) - sig[i]) / fmax(1e-3, fabs(sig[i])));
    }
    /* The solver ends on its last sigma; the others on 0 (DDIM lists none). */
    if (sc && ns == (uint64_t)steps + 1)
        worst_s = fmax(worst_s, fabs(df_scheduler_sigma(sc, steps) - sig[steps]) / fmax(1e-3, fabs(sig[steps])));
    double worst_init = sc ? fabs(df_scheduler_init_noise_sigma(sc) - is[0]) / is[0] : 1;
    float *x = malloc(n * sizeof *x), *eps = malloc(n * sizeof *eps);
    for (uint64_t k = 0; k < n; k++)
        x[k] = init[k] * (sc ? df_scheduler_init_noise_sigma(sc) : 0);
    for (int i = 0; sc && i < steps; i++) {
        float scale = df_scheduler_input_scale(sc, i), t = df_scheduler_timestep(sc, i);
        for (uint64_t k = 0; k < n; k++) {
            float xin = x[k] * scale;
            eps[k] = tanhf(0.5f * xin) * (float)cos((double)t / 300.0) + 0.1f * sinf(3.0f * xin);
        }
        CHECK_OK(df_scheduler_step(sc, i, eps, x, noise + (uint64_t)i * n, &err), &err);
    }
    double worst_x = max_rel(x, final, n);
    /* Sigmas: the reference builds its table in f32 torch arithmetic, this
     * one in double; they agree to a few f32 ulp (relatively more for the
     * smallest sigma, 0.03). */
    int ok = worst_t < 1e-5 && worst_s < 1e-4 && worst_init < 1e-6 && worst_x < 1e-4;
    test_checks_++;
    fprintf(stderr, "  %-20s timesteps %.1e  sigmas %.1e  init sigma %.1e  final latents %.1e  %s\n", key, worst_t,
            worst_s, worst_init, worst_x, ok ? "ok" : "FAILED");
    if (!ok)
        test_failures_++;
    free(x), free(eps), free(init), free(final), free(ts), free(sig), free(noise), free(is);
    df_scheduler_destroy(&sc);
}

static void test_samplers_match_diffusers(void)
{
    for (int s = 0; s < DF_SAMPLER_COUNT; s++) {
        run_sampler((df_sampler)s, 7);
        run_sampler((df_sampler)s, 20);
    }
}

static void test_scheduler_errors(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(df_sampler_parse("euler_a") == DF_SAMPLER_EULER_A);
    CHECK(df_sampler_parse("dpm++") == -1);
    CHECK(df_sampler_parse(NULL) == -1);
    CHECK(strcmp(df_sampler_name(DF_SAMPLER_DDIM), "ddim") == 0);
    CHECK(strcmp(df_sampler_name(DF_SAMPLER_COUNT), "?") == 0);
    CHECK(df_scheduler_new(DF_SAMPLER_EULER, 0, 4, &err) == NULL && err.code == DF_E_RANGE && strstr(err.msg, "steps 0"));
    df_error_clear(&err);
    CHECK(df_scheduler_new(DF_SAMPLER_COUNT, 10, 4, &err) == NULL && err.code == DF_E_INVALID);
    df_scheduler_t *s = df_scheduler_new(DF_SAMPLER_EULER_A, 3, 4, &err);
    float x[4] = {0}, eps[4] = {0};
    CHECK(df_scheduler_needs_noise(s));
    CHECK_FAILS(df_scheduler_step(s, 0, eps, x, NULL, &err), &err, DF_E_INVALID, "needs noise");
    CHECK_FAILS(df_scheduler_step(s, 1, eps, x, eps, &err), &err, DF_E_STATE, "out of order");
    df_scheduler_destroy(&s);
    CHECK(s == NULL);
    /* Well-known numbers: SDXL's Euler at 4 steps visits 751, 501, 251, 1. */
    s = df_scheduler_new(DF_SAMPLER_EULER, 4, 1, &err);
    CHECK(s && df_scheduler_timestep(s, 0) == 751 && df_scheduler_timestep(s, 3) == 1);
    df_scheduler_destroy(&s);
    /* sigma_max = sqrt((1 - acp) / acp) = 14.61 at t = 999. */
    CHECK(fabs(sqrt((1 - df_scheduler_alpha_cumprod(999)) / df_scheduler_alpha_cumprod(999)) - 14.61) < 0.01);
}

/*  Every sampler holds its latents in its own parameterisation (Euler's
 *  scaled by 1/sqrt(alpha_cumprod), DPM-Solver's and DDIM's not); built from
 *  a known clean sample and noise by the forward process, each must recover
 *  the clean sample as its denoised estimate. */
static void test_denoised_estimate(void)
{
    enum { N = 16 };
    float x0[N], eps[N], x[N], got[N];
    for (int k = 0; k < N; k++)
        x0[k] = (float)(k - 8) * 0.1f, eps[k] = (float)((k * 7) % 5) - 2.0f;
    const df_sampler plain[] = {DF_SAMPLER_EULER, DF_SAMPLER_EULER_A, DF_SAMPLER_DPMPP_2M, DF_SAMPLER_DDIM};
    for (size_t s = 0; s < sizeof plain / sizeof plain[0]; s++) {
        df_scheduler_t *sc = df_scheduler_new(plain[s], 10, N, NULL);
        CHECK(sc != NULL);
        for (int i = 0; sc && i < 10; i++) {
            int t = (int)df_scheduler_timestep(sc, i);
            double acp = df_scheduler_alpha_cumprod(t);
            int euler = plain[s] == DF_SAMPLER_EULER || plain[s] == DF_SAMPLER_EULER_A;
            for (int k = 0; k < N; k++) {
                double xt = sqrt(acp) * x0[k] + sqrt(1 - acp) * eps[k];
                x[k] = (float)(euler ? xt / sqrt(acp) : xt);
            }
            df_scheduler_denoised(sc, i, x, eps, got);
            double worst = 0;
            for (int k = 0; k < N; k++)
                worst = fmax(worst, fabs(got[k] - x0[k]));
            if (worst > 1e-3)
                fprintf(stderr, "  %s step %d (t %d): denoised off by %g\n", df_sampler_name(plain[s]), i, t, worst);
            CHECK(worst <= 1e-3);
        }
        df_scheduler_destroy(&sc);
    }
}

/*  Training's noise: reproducible per (seed, step, sample) whoever draws
 *  the sample; timesteps cover the schedule; x_t is the forward process;
 *  min-SNR weights cap the easy (low-noise) timesteps; an offset moves each
 *  channel's mean. */
static void test_train_noise(void)
{
    enum { C = 4, HW = 64, N = 3 };
    static float x0[N * C * HW], xt[N * C * HW], eps[N * C * HW], xt1[C * HW], eps1[C * HW];
    float ts[N], w[N], ts1[1], w1[1];
    for (int k = 0; k < N * C * HW; k++)
        x0[k] = (float)((k * 13) % 17) / 17.0f - 0.5f;
    df_train_noise_opts o = {.seed = 42, .noise_offset = 0, .min_snr_gamma = 5};
    df_train_noise_batch(&o, 7, 0, N, C, HW, x0, xt, eps, ts, w);
    /* Sample 2 drawn alone (another worker's share) is the same. */
    df_train_noise_batch(&o, 7, 2, 1, C, HW, x0 + 2 * C * HW, xt1, eps1, ts1, w1);
    CHECK(ts1[0] == ts[2] && w1[0] == w[2] && memcmp(eps1, eps + 2 * C * HW, sizeof eps1) == 0 &&
          memcmp(xt1, xt + 2 * C * HW, sizeof xt1) == 0);
    double worst = 0;
    for (int s = 0; s < N; s++) {
        double acp = df_scheduler_alpha_cumprod((int)ts[s]);
        for (int k = 0; k < C * HW; k++) {
            int i = s * C * HW + k;
            worst = fmax(worst, fabs(xt[i] - (sqrt(acp) * x0[i] + sqrt(1 - acp) * eps[i])));
        }
        double snr = acp / (1 - acp);
        CHECK(fabs(w[s] - fmin(snr, 5.0) / snr) < 1e-6 && w[s] > 0 && w[s] <= 1);
    }
    CHECK(worst < 1e-6);
    /* Timesteps over many steps: all in range, spread over the schedule. */
    double mean = 0;
    int lo = 1000, hi = -1;
    for (int step = 0; step < 2000; step++) {
        float t, ww;
        df_train_noise_batch(&o, (uint64_t)step, 0, 1, 1, 1, x0, xt1, eps1, &t, &ww);
        mean += t / 2000.0;
        lo = t < lo ? (int)t : lo, hi = t > hi ? (int)t : hi;
    }
    CHECK(lo >= 0 && lo < 10 && hi <= 999 && hi > 989 && fabs(mean - 499.5) < 20);
    CHECK(df_min_snr_weight(999, 5) == 1.0f && df_min_snr_weight(10, 5) < 0.1f && df_min_snr_weight(10, 0) == 1.0f);
    /* An offset: the same noise plus a constant per (sample, channel). */
    o.noise_offset = 0.1f;
    static float eps_off[N * C * HW];
    df_train_noise_batch(&o, 7, 0, N, C, HW, x0, xt, eps_off, ts, w);
    for (int s = 0; s < N; s++)
        for (int c = 0; c < C; c++) {
            int base = (s * C + c) * HW;
            float d0 = eps_off[base] - eps[base];
            int same = 1;
            for (int k = 1; k < HW; k++)
                same &= fabsf(eps_off[base + k] - eps[base + k] - d0) < 1e-6f;
            CHECK(same && d0 != 0 && fabsf(d0) < 0.6f);
        }
}

/*  Learning-rate schedules at the points diffusers' get_scheduler defines:
 *  linear warmup from 0, constant after, the cosine's half period ending
 *  at 0. */
static void test_lr_schedules(void)
{
    df_lr_desc c = {DF_LR_CONSTANT, 1e-4f, 10, 100};
    CHECK(df_lr_at(&c, 0) == 1e-4f && df_lr_at(&c, 99) == 1e-4f);
    df_lr_desc w = {DF_LR_CONSTANT_WARMUP, 1e-4f, 10, 100};
    CHECK(df_lr_at(&w, 0) == 0 && fabsf(df_lr_at(&w, 5) - 5e-5f) < 1e-10f && df_lr_at(&w, 10) == 1e-4f &&
          df_lr_at(&w, 500) == 1e-4f);
    df_lr_desc k = {DF_LR_COSINE, 1e-4f, 10, 110};
    CHECK(df_lr_at(&k, 0) == 0 && fabsf(df_lr_at(&k, 10) - 1e-4f) < 1e-10f);
    CHECK(fabsf(df_lr_at(&k, 60) - 5e-5f) < 1e-10f); /* half way: cos(pi/2) */
    CHECK(df_lr_at(&k, 110) < 1e-12f && df_lr_at(&k, 200) < 1e-12f);
    for (uint64_t i = 11; i < 110; i++)
        CHECK(df_lr_at(&k, i) < df_lr_at(&k, i - 1));
    CHECK(df_lr_schedule_parse("cosine") == DF_LR_COSINE && df_lr_schedule_parse("linear") == -1 &&
          strcmp(df_lr_schedule_name(DF_LR_CONSTANT_WARMUP), "constant_with_warmup") == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_scheduler GOLDEN_DIR [filter]\n");
        return 2;
    }
    test_filter_ = argc > 2 ? argv[2] : NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/schedulers.safetensors", argv[1]);
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *st = df_safetensors_open(path, &err);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    g_st = st;
    RUN(test_samplers_match_diffusers);
    RUN(test_scheduler_errors);
    RUN(test_denoised_estimate);
    RUN(test_train_noise);
    RUN(test_lr_schedules);
    df_safetensors_destroy(&st);
    return test_summary();
}
