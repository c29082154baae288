/*  bench_ops.c - the op library at SDXL shapes, next to the device's own
 *  measured peak and to the CPU (OpenBLAS sgemm and plain C) in the same run.
 *
 *    bench_ops [--device N] [--reps R] [--tokens N] [--heads H] [--only SECTION]
 *
 *  SECTION is one of gemm, attention, conv, memory (default: all).
 *
 *  Peak: a pure-FMA kernel (flops) and a streaming copy (bytes), measured
 *  here, so "fraction of peak" means the same on any device. Attention is
 *  run fused and as the separate GEMM (Q K^T), softmax, GEMM (P V) it
 *  replaces, at the same shape. Not a test: figures go to docs/performance.md.
 */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention.h"
#include "bind.h"
#include "conv2d.h"
#include "eltwise.h"
#include "gemm.h"
#include "geglu.h"
#include "log.h"
#include "norm.h"
#include "philox.h"
#include "softmax.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_transfer.h"

static df_vk_device_t *g_dev;
static df_vk_transfer_t *g_xfer;
static df_vk_batch_t *g_batch;
static int g_reps = 3;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static df_vk_buffer_t *random_buffer(uint64_t n, df_dtype t, uint64_t seed)
{
    float *v = malloc(n * sizeof *v);
    df_philox_fill_uniform(v, n, seed, 0, -1.0f, 1.0f);
    df_vk_buffer_t *b = df_vk_buffer_new(g_dev, n * df_dtype_size(t) + 64, NULL);
    if (b)
        df_vk_upload_f32(g_xfer, b, 0, v, n, t, NULL);
    free(v);
    if (!b) {
        fprintf(stderr, "bench_ops: cannot allocate %llu elements\n", (unsigned long long)n);
        exit(1);
    }
    return b;
}

typedef int (*record_fn)(void *ctx, df_error_t *err);

/* Best GPU time (ms) of the recorded work over g_reps runs after a warm-up. */
static double time_it(record_fn rec, void *ctx, const char *what)
{
    double best = 0;
    for (int r = 0; r <= g_reps; r++) {
        df_error_t err;
        df_error_clear(&err);
        if (rec(ctx, &err) || df_vk_batch_submit(g_batch, &err)) {
            fprintf(stderr, "bench_ops: %s: %s\n", what, err.msg);
            exit(1);
        }
        double ms = df_vk_batch_total_ms(g_batch);
        if (r > 0 && (best == 0 || ms < best))
            best = ms;
    }
    return best;
}

/* ---- peak ---- */

typedef struct {
    uint32_t a, b;
} peak_push;
static const df_vk_kernel k_peak = {"peak_fma", 1, {DF_VK_BIND_STORAGE}, sizeof(peak_push)};

typedef struct {
    df_vk_buffer_t *out;
    uint64_t invocations;
} peak_ctx;

static int rec_peak(void *c, df_error_t *err)
{
    peak_ctx *p = c;
    float a = 0.999f, b = 0.001f;
    peak_push pc;
    memcpy(&pc.a, &a, 4), memcpy(&pc.b, &b, 4);
    df_bind_rules r;
    df_bind_rules_storage(g_dev, DF_F32, &r, NULL);
    uint32_t off;
    df_vk_binding bind = df_bind_span(df_ref(p->out, 0), &r, 0, p->invocations, 1, &off);
    uint32_t spec = 4096;
    return df_dispatch_1d(g_batch, &k_peak, &spec, 1, &bind, 1, &pc, p->invocations, 64, "peak_fma", err);
}

/* ---- element-wise copy (bandwidth) ---- */

typedef struct {
    df_elt_desc d;
    df_tensor a, b, y;
} elt_ctx;

static int rec_elt(void *c, df_error_t *err)
{
    elt_ctx *e = c;
    return df_eltwise(g_batch, &e->d, e->a, e->b, e->y, err);
}

/* ---- norms ---- */

typedef struct {
    df_norm_desc d;
    df_tensor x, g, b, y, st;
} norm_ctx;

static int rec_norm(void *c, df_error_t *err)
{
    norm_ctx *n = c;
    return df_norm_forward(g_batch, &n->d, n->x, n->g, n->b, n->y, n->st, err);
}

/* ---- GEGLU ---- */

typedef struct {
    uint32_t rows, inner;
    df_tensor x, y;
} geglu_ctx;

static int rec_geglu(void *c, df_error_t *err)
{
    geglu_ctx *g = c;
    return df_geglu_forward(g_batch, g->rows, g->inner, g->x, g->y, err);
}

/* ---- attention, fused and separate ---- */

typedef struct {
    df_attn_desc d;
    df_tensor q, k, v, o;
    df_tensor s, p; /* separate path: scores and probabilities, one head at a time */
} attn_ctx;

static int rec_fused(void *c, df_error_t *err)
{
    attn_ctx *a = c;
    return df_attention_forward(g_batch, &a->d, a->q, a->k, a->v, a->o, (df_tensor){0}, err);
}

static int rec_separate(void *c, df_error_t *err)
{
    attn_ctx *a = c;
    const df_attn_desc *d = &a->d;
    uint32_t row = d->heads * d->dim;
    int rc = DF_OK;
    for (uint32_t b = 0; b < d->batch && !rc; b++)
        for (uint32_t h = 0; h < d->heads && !rc; h++) {
            uint64_t es = df_dtype_size(a->q.dtype);
            uint64_t base = ((uint64_t)b * d->nq * row + (uint64_t)h * d->dim) * es;
            df_tensor_ref qh = a->q.ref, kh = a->k.ref, vh = a->v.ref, oh = a->o.ref;
            qh.offset += base, kh.offset += base, vh.offset += base, oh.offset += base;
            /* S = Q_h K_h^T (nq x nk), P = softmax(scale S), O_h = P V_h. */
            df_gemm_desc g1 = df_gemm_desc_packed(0, 1, d->nq, d->nk, d->dim, 1);
            g1.lda = row, g1.ldb = row;
            g1.type_a = g1.type_b = a->q.dtype;
            g1.type_c = a->s.dtype;
            rc = df_gemm(g_batch, &g1, qh, kh, a->s.ref, DF_GEMM_AUTO, NULL, err);
            if (!rc)
                rc = df_softmax_forward(g_batch, d->nq, d->nk, 1.0f / sqrtf((float)d->dim), a->s, a->p, err);
            df_gemm_desc g2 = df_gemm_desc_packed(0, 0, d->nq, d->dim, d->nk, 1);
            g2.ldb = row, g2.ldc = row;
            g2.type_a = a->p.dtype;
            g2.type_b = a->v.dtype;
            g2.type_c = a->o.dtype;
            if (!rc)
                rc = df_gemm(g_batch, &g2, a->p.ref, vh, oh, DF_GEMM_AUTO, NULL, err);
        }
    return rc;
}

/* The same attention on the CPU: OpenBLAS sgemm for both products, C softmax. */
static double cpu_attention(uint32_t nq, uint32_t nk, uint32_t dim)
{
    float *q = malloc(sizeof(float) * nq * dim), *k = malloc(sizeof(float) * nk * dim), *v = malloc(sizeof(float) * nk * dim);
    float *s = malloc(sizeof(float) * nq * nk), *o = malloc(sizeof(float) * nq * dim);
    df_philox_fill_uniform(q, (size_t)nq * dim, 1, 0, -1, 1);
    df_philox_fill_uniform(k, (size_t)nk * dim, 2, 0, -1, 1);
    df_philox_fill_uniform(v, (size_t)nk * dim, 3, 0, -1, 1);
    double best = 0;
    for (int r = 0; r <= g_reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)dim, 1.0f / sqrtf((float)dim), q,
                    (int)dim, k, (int)dim, 0.0f, s, (int)nk);
        for (uint32_t i = 0; i < nq; i++) {
            float *row = s + (size_t)i * nk, m = -1e30f, l = 0;
            for (uint32_t j = 0; j < nk; j++)
                m = row[j] > m ? row[j] : m;
            for (uint32_t j = 0; j < nk; j++)
                l += row[j] = expf(row[j] - m);
            for (uint32_t j = 0; j < nk; j++)
                row[j] /= l;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)dim, (int)nk, 1.0f, s, (int)nk, v,
                    (int)dim, 0.0f, o, (int)dim);
        double ms = now_ms() - t0;
        if (r > 0 && (best == 0 || ms < best))
            best = ms;
    }
    free(q), free(k), free(v), free(s), free(o);
    return best;
}

typedef struct {
    df_gemm_desc d;
    df_tensor a, b, c;
} gemm_ctx;

static int rec_gemm(void *c, df_error_t *err)
{
    gemm_ctx *g = c;
    return df_gemm(g_batch, &g->d, g->a.ref, g->b.ref, g->c.ref, DF_GEMM_AUTO, NULL, err);
}

static double blas_gemm_ms(uint32_t m, uint32_t n, uint32_t k)
{
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    df_philox_fill_uniform(a, (size_t)m * k, 4, 0, -1, 1);
    df_philox_fill_uniform(b, (size_t)k * n, 5, 0, -1, 1);
    double best = 0;
    for (int r = 0; r <= g_reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1, a, (int)k, b, (int)n, 0, c, (int)n);
        double ms = now_ms() - t0;
        if (r > 0 && (best == 0 || ms < best))
            best = ms;
    }
    free(a), free(b), free(c);
    return best;
}

/* ---- conv2d, against im2col + OpenBLAS sgemm ---- */

typedef enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHT } conv_dir;

typedef struct {
    df_conv2d_desc d;
    conv_dir dir;
    df_tensor x, w, bias, y, dw;
} conv_ctx;

static int rec_conv(void *c, df_error_t *err)
{
    conv_ctx *k = c;
    if (k->dir == CONV_FWD)
        return df_conv2d_forward(g_batch, &k->d, k->x, k->w, k->bias, k->y, 0, err);
    if (k->dir == CONV_BWD_DATA)
        return df_conv2d_backward_data(g_batch, &k->d, k->y, k->w, k->x, 0, err);
    return df_conv2d_backward_weight(g_batch, &k->d, k->x, k->y, k->dw, 0, err);
}

/* What a CPU framework does for a 3x3 stride-1 pad-1 convolution: im2col
 * into a (C*9) x (H*W) matrix, then one sgemm per batch entry. */
static double cpu_conv_ms(uint32_t n, uint32_t c, uint32_t h, uint32_t w, uint32_t oc)
{
    uint64_t hw = (uint64_t)h * w, kk = (uint64_t)c * 9;
    float *x = malloc(sizeof(float) * n * c * hw), *wt = malloc(sizeof(float) * oc * kk);
    float *col = malloc(sizeof(float) * kk * hw), *y = malloc(sizeof(float) * n * oc * hw);
    df_philox_fill_uniform(x, (size_t)n * c * hw, 6, 0, -1, 1);
    df_philox_fill_uniform(wt, (size_t)oc * kk, 7, 0, -1, 1);
    double best = 0;
    for (int r = 0; r <= g_reps; r++) {
        double t0 = now_ms();
        for (uint32_t b = 0; b < n; b++) {
            for (uint64_t k = 0; k < kk; k++) {
                uint32_t ci = (uint32_t)(k / 9), ky = (uint32_t)(k % 9 / 3), kx = (uint32_t)(k % 3);
                float *dst = col + k * hw;
                const float *src = x + ((uint64_t)b * c + ci) * hw;
                for (uint32_t yy = 0; yy < h; yy++) {
                    int sy = (int)yy + (int)ky - 1;
                    for (uint32_t xx = 0; xx < w; xx++) {
                        int sx = (int)xx + (int)kx - 1;
                        dst[(uint64_t)yy * w + xx] = sy < 0 || sy >= (int)h || sx < 0 || sx >= (int)w
                                                         ? 0.0f : src[(uint64_t)sy * w + (uint64_t)sx];
                    }
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)oc, (int)hw, (int)kk, 1, wt, (int)kk, col,
                        (int)hw, 0, y + (uint64_t)b * oc * hw, (int)hw);
        }
        double ms = now_ms() - t0;
        if (r > 0 && (best == 0 || ms < best))
            best = ms;
    }
    free(x), free(wt), free(col), free(y);
    return best;
}

static void bench_conv(double peak_gflops)
{
    /* The UNet's 3x3 convolutions at 1024 px (latents 128, 64, 32), batch 2 for CFG. */
    static const uint32_t shapes[][3] = {{320, 128, 128}, {640, 64, 64}, {1280, 32, 32}};
    for (int i = 0; i < 3; i++) {
        uint32_t ch = shapes[i][0], h = shapes[i][1], w = shapes[i][2], n = 2;
        df_conv2d_desc d = df_conv2d_square(n, ch, h, w, ch, 3, 1, 1);
        d.layout = DF_CONV_PACKED;
        uint64_t nx = (uint64_t)n * ch * h * w, nw = df_conv2d_weight_elems(&d);
        df_vk_buffer_t *x = random_buffer(nx, DF_F16, 40), *wt = random_buffer(nw, DF_F16, 41);
        df_vk_buffer_t *y = random_buffer(nx, DF_F16, 42), *b = random_buffer(ch, DF_F32, 43);
        df_vk_buffer_t *dw = random_buffer(nw, DF_F32, 44);
        conv_ctx k = {d, CONV_FWD, df_tensor_at(x, 0, DF_F16), df_tensor_at(wt, 0, DF_F16), df_tensor_at(b, 0, DF_F32),
                      df_tensor_at(y, 0, DF_F16), df_tensor_at(dw, 0, DF_F32)};
        double flops = df_conv2d_flops(&d);
        double cpu = cpu_conv_ms(n, ch, h, w, ch);
        static const char *names[] = {"forward", "backward data", "backward weight"};
        for (int dir = 0; dir < 3; dir++) {
            /* The backward passes at one shape: they cost what the forward does. */
            if (dir > 0 && i != 1)
                break;
            k.dir = (conv_dir)dir;
            double ms = time_it(rec_conv, &k, "conv2d");
            char what[96];
            snprintf(what, sizeof what, "conv3x3 %s 2x%ux%ux%u f16", names[dir], ch, h, w);
            printf("%-44s %10.2f %8.1f GF/s %7.0f%% %8.2f ms (%.0f%%)\n", what, ms, flops / (ms * 1e6),
                   100 * flops / (ms * 1e6) / peak_gflops, cpu, 100 * cpu / ms);
        }
        df_vk_buffer_destroy(&x), df_vk_buffer_destroy(&wt), df_vk_buffer_destroy(&y), df_vk_buffer_destroy(&b);
        df_vk_buffer_destroy(&dw);
    }
}

int main(int argc, char **argv)
{
    int device = -1, c;
    uint32_t tokens = 4096, heads = 2;
    const char *only = NULL;
    static const struct option o[] = {{"device", required_argument, NULL, 'd'}, {"reps", required_argument, NULL, 'r'},
                                      {"tokens", required_argument, NULL, 't'}, {"heads", required_argument, NULL, 'h'},
                                      {"only", required_argument, NULL, 'o'},
                                      {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'd')
            device = atoi(optarg);
        else if (c == 'r')
            g_reps = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (c == 't')
            tokens = (uint32_t)atoi(optarg);
        else if (c == 'h')
            heads = (uint32_t)atoi(optarg);
        else if (c == 'o')
            only = optarg;
        else {
            fprintf(stderr, "usage: bench_ops [--device N] [--reps R] [--tokens N] [--heads H] [--only gemm|attention|conv|memory]\n");
            return 2;
        }
    }
    df_log_set_level(DF_LOG_WARN);
    df_error_t err;
    df_error_clear(&err);
    uint32_t index;
    df_vk_instance_t *inst = df_vk_instance_new(NULL, &err);
    if (!inst || df_vk_instance_choose(inst, device, &index, &err) || !(g_dev = df_vk_device_new(inst, index, NULL, &err)) ||
        !(g_xfer = df_vk_transfer_new(g_dev, NULL, &err)) || !(g_batch = df_vk_batch_new(g_dev, 1, &err))) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        return 1;
    }
    printf("device: %s; CPU baseline: OpenBLAS %s, %d threads; best of %d runs\n\n", df_vk_device_info_of(g_dev)->name,
           openblas_get_config(), openblas_get_num_threads(), g_reps);

    /* Peaks, measured. */
    peak_ctx pk = {.invocations = 64 * 1024};
    pk.out = df_vk_buffer_new(g_dev, pk.invocations * 4, NULL);
    double ms = time_it(rec_peak, &pk, "peak");
    double peak_gflops = 2.0 * 16 * 4096 * pk.invocations / (ms * 1e6);
    uint64_t nbw = 16u << 20;
    df_vk_buffer_t *bx = random_buffer(nbw, DF_F32, 1), *by = random_buffer(nbw, DF_F32, 2);
    elt_ctx copy = {{.op = DF_ELT_COPY, .n = nbw}, df_tensor_at(bx, 0, DF_F32), df_tensor_at(bx, 0, DF_F32),
                    df_tensor_at(by, 0, DF_F32)};
    ms = time_it(rec_elt, &copy, "copy");
    double peak_gbs = 2.0 * 4 * nbw / (ms * 1e6);
    printf("measured peak: %.1f GFLOPS (pure fma), %.2f GB/s (streaming copy, f32)\n\n", peak_gflops, peak_gbs);
    printf("%-44s %10s %12s %8s %14s\n", "op (SDXL shape)", "ms", "rate", "of peak", "CPU same work");

#define SECTION(name) (!only || strcmp(only, name) == 0)
    /* GEMM at SDXL shapes against OpenBLAS. */
    static const uint32_t gshapes[][3] = {{4096, 640, 640}, {1024, 1280, 1280}};
    for (int i = 0; i < 2 && SECTION("gemm"); i++) {
        uint32_t m = gshapes[i][0], n = gshapes[i][1], k = gshapes[i][2];
        df_vk_buffer_t *ga = random_buffer((uint64_t)m * k, DF_F32, 10), *gb = random_buffer((uint64_t)k * n, DF_F32, 11);
        df_vk_buffer_t *gc = random_buffer((uint64_t)m * n, DF_F32, 12);
        gemm_ctx g = {df_gemm_desc_packed(0, 0, m, n, k, 1), df_tensor_at(ga, 0, DF_F32), df_tensor_at(gb, 0, DF_F32),
                      df_tensor_at(gc, 0, DF_F32)};
        ms = time_it(rec_gemm, &g, "gemm");
        double gf = 2.0 * m * n * k / (ms * 1e6);
        double cpu = blas_gemm_ms(m, n, k);
        char what[64];
        snprintf(what, sizeof what, "gemm f32 %ux%ux%u", m, n, k);
        printf("%-44s %10.2f %8.1f GF/s %7.0f%% %8.2f ms (%.0f%%)\n", what, ms, gf, 100 * gf / peak_gflops, cpu,
               100 * cpu / ms);
        df_vk_buffer_destroy(&ga), df_vk_buffer_destroy(&gb), df_vk_buffer_destroy(&gc);
    }

    /* Attention: fused against GEMM + softmax + GEMM (one head at a time),
     * batch 1 of `heads` heads at `tokens` tokens, head dim 64, f16 storage. */
    if (SECTION("attention")) {
        uint32_t dim = 64, row = heads * dim;
        uint64_t nt = (uint64_t)tokens * row;
        df_vk_buffer_t *q = random_buffer(nt, DF_F16, 20), *k = random_buffer(nt, DF_F16, 21), *v = random_buffer(nt, DF_F16, 22);
        df_vk_buffer_t *out = random_buffer(nt, DF_F16, 23);
        df_vk_buffer_t *s = random_buffer((uint64_t)tokens * tokens, DF_F32, 24), *pb = random_buffer((uint64_t)tokens * tokens, DF_F16, 25);
        attn_ctx a = {{.batch = 1, .heads = heads, .nq = tokens, .nk = tokens, .dim = dim},
                      df_tensor_at(q, 0, DF_F16), df_tensor_at(k, 0, DF_F16), df_tensor_at(v, 0, DF_F16),
                      df_tensor_at(out, 0, DF_F16), df_tensor_at(s, 0, DF_F32), df_tensor_at(pb, 0, DF_F16)};
        double flops = 4.0 * heads * tokens * (double)tokens * dim;
        double fused = time_it(rec_fused, &a, "fused attention");
        double separate = time_it(rec_separate, &a, "separate attention");
        double cpu = heads * cpu_attention(tokens, tokens, dim);
        char what[96];
        snprintf(what, sizeof what, "attention fused %ux%u tok, %u heads, f16", tokens, tokens, heads);
        printf("%-44s %10.2f %8.1f GF/s %7.0f%% %8.2f ms (%.0f%%)\n", what, fused, flops / (fused * 1e6),
               100 * flops / (fused * 1e6) / peak_gflops, cpu, 100 * cpu / fused);
        snprintf(what, sizeof what, "  same, as gemm + softmax + gemm");
        printf("%-44s %10.2f %8.1f GF/s %7.0f%%   fused is %.2fx the separate speed\n", what, separate,
               flops / (separate * 1e6), 100 * flops / (separate * 1e6) / peak_gflops, separate / fused);
        df_vk_buffer_destroy(&q), df_vk_buffer_destroy(&k), df_vk_buffer_destroy(&v), df_vk_buffer_destroy(&out);
        df_vk_buffer_destroy(&s), df_vk_buffer_destroy(&pb);
    }

    if (SECTION("conv"))
        bench_conv(peak_gflops);

    /* Memory-bound ops: bytes read + written. */
    if (SECTION("memory")) {
        uint32_t n = 2, ch = 640, hw = 64 * 64;
        uint64_t total = (uint64_t)n * ch * hw;
        df_vk_buffer_t *x = random_buffer(total, DF_F16, 30), *y = random_buffer(total, DF_F16, 31);
        df_vk_buffer_t *g = random_buffer(ch, DF_F32, 32), *b = random_buffer(ch, DF_F32, 33), *st = random_buffer(4 * n * 32, DF_F32, 34);
        norm_ctx nc = {df_norm_group(n, ch, hw, 32, 1e-5f), df_tensor_at(x, 0, DF_F16), df_tensor_at(g, 0, DF_F32),
                       df_tensor_at(b, 0, DF_F32), df_tensor_at(y, 0, DF_F16), df_tensor_at(st, 0, DF_F32)};
        nc.d.silu = 1;
        ms = time_it(rec_norm, &nc, "group norm");
        double bytes = 2.0 * total * 2 + 2.0 * total; /* read twice (statistics, apply) + write, f16 */
        printf("%-44s %10.2f %8.2f GB/s %6.0f%%\n", "group norm + silu 2x640x64x64 f16", ms, bytes / (ms * 1e6),
               100 * bytes / (ms * 1e6) / peak_gbs);
        norm_ctx lc = {df_norm_layer(n * hw, ch, 1e-5f), df_tensor_at(x, 0, DF_F16), df_tensor_at(g, 0, DF_F32),
                       df_tensor_at(b, 0, DF_F32), df_tensor_at(y, 0, DF_F16), df_tensor_at(st, 0, DF_F32)};
        df_vk_buffer_t *st2 = random_buffer(4ull * n * hw, DF_F32, 35);
        lc.st = df_tensor_at(st2, 0, DF_F32);
        ms = time_it(rec_norm, &lc, "layer norm");
        printf("%-44s %10.2f %8.2f GB/s %6.0f%%\n", "layer norm 8192x640 f16", ms, bytes / (ms * 1e6),
               100 * bytes / (ms * 1e6) / peak_gbs);
        elt_ctx silu = {{.op = DF_ELT_SILU, .n = total}, df_tensor_at(x, 0, DF_F16), df_tensor_at(x, 0, DF_F16),
                        df_tensor_at(y, 0, DF_F16)};
        ms = time_it(rec_elt, &silu, "silu");
        printf("%-44s %10.2f %8.2f GB/s %6.0f%%\n", "silu 2x640x64x64 f16", ms, 4.0 * total / (ms * 1e6),
               100 * 4.0 * total / (ms * 1e6) / peak_gbs);
        df_vk_buffer_t *gx = random_buffer(2 * total * 2, DF_F16, 36), *gy = random_buffer(total * 2, DF_F16, 37);
        geglu_ctx gc = {n * hw, ch * 2, df_tensor_at(gx, 0, DF_F16), df_tensor_at(gy, 0, DF_F16)};
        ms = time_it(rec_geglu, &gc, "geglu");
        printf("%-44s %10.2f %8.2f GB/s %6.0f%%\n", "geglu 8192x(2x1280) f16", ms, 6.0 * total * 2 / (ms * 1e6),
               100 * 6.0 * total * 2 / (ms * 1e6) / peak_gbs);
        df_vk_buffer_destroy(&x), df_vk_buffer_destroy(&y), df_vk_buffer_destroy(&g), df_vk_buffer_destroy(&b);
        df_vk_buffer_destroy(&st), df_vk_buffer_destroy(&st2), df_vk_buffer_destroy(&gx), df_vk_buffer_destroy(&gy);
    }
    df_vk_buffer_destroy(&pk.out), df_vk_buffer_destroy(&bx), df_vk_buffer_destroy(&by);
    df_vk_batch_destroy(&g_batch);
    df_vk_transfer_destroy(&g_xfer);
    df_vk_device_destroy(&g_dev);
    df_vk_instance_destroy(&inst);
    return 0;
}
