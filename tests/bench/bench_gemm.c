/*  bench_gemm.c - GEMM throughput on a Vulkan device next to OpenBLAS sgemm
 *  on this machine's CPU, in the same run.
 *
 *    bench_gemm [--device N] [--reps R] [--kernel texel|tiled|auto] [--quick]
 *
 *  For each shape: our kernel's best GPU time (timestamps) over R runs in f32
 *  and f16 storage, and OpenBLAS's best wall time over R runs, as GFLOPS and as
 *  a ratio. Every result is also checked against the reference on sampled
 *  rows, so a fast wrong kernel cannot post a number. Not a test: timings
 *  depend on the machine and its load; figures go to docs/performance.md.
 */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"
#include "gemm_check.h"
#include "log.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_transfer.h"

typedef struct {
    uint32_t m, n, k;
    int ta, tb;
    const char *what;
} shape;

static const shape k_shapes[] = {
    {1024, 1024, 1024, 0, 0, "square"},
    {4096, 640, 640, 0, 0, "SDXL attn proj, 64x64 latents, level 1"},
    {1024, 1280, 1280, 0, 0, "SDXL attn proj, level 2"},
    {4096, 640, 640, 0, 1, "same, weights as stored (x W^T)"},
    {4096, 2560, 640, 0, 1, "SDXL GEGLU in, level 1"},
    {77, 640, 2048, 0, 1, "cross-attn K/V from text context"},
    {1, 1280, 2816, 0, 1, "add_embedding (GEMV)"},
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double openblas_gflops(const shape *s, int reps)
{
    uint32_t ra = s->ta ? s->k : s->m, ca = s->ta ? s->m : s->k;
    uint32_t rb = s->tb ? s->n : s->k, cb = s->tb ? s->k : s->n;
    float *a = malloc(sizeof(float) * ra * ca), *b = malloc(sizeof(float) * rb * cb);
    float *c = malloc(sizeof(float) * s->m * s->n);
    df_gemm_check_fill(a, (uint64_t)ra * ca, 1, 1, DF_F32);
    df_gemm_check_fill(b, (uint64_t)rb * cb, 1, 2, DF_F32);
    double best = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                    (int)s->m, (int)s->n, (int)s->k, 1.0f, a, (int)ca, b, (int)cb, 0.0f, c, (int)s->n);
        double ms = now_ms() - t0;
        if (r > 0 && (best == 0 || ms < best)) /* the first run warms caches and threads */
            best = ms;
    }
    free(a), free(b), free(c);
    return 2.0 * s->m * (double)s->n * s->k / (best * 1e6);
}

int main(int argc, char **argv)
{
    int device = -1, reps = 5, quick = 0;
    df_gemm_path path = DF_GEMM_AUTO;
    static const struct option longopts[] = {{"device", required_argument, NULL, 'd'},
                                              {"reps", required_argument, NULL, 'r'},
                                              {"kernel", required_argument, NULL, 'k'},
                                              {"quick", no_argument, NULL, 'q'},
                                              {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "d:r:k:q", longopts, NULL)) != -1) {
        if (c == 'd')
            device = atoi(optarg);
        else if (c == 'r')
            reps = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (c == 'k') {
            int p = df_gemm_path_parse(optarg);
            if (p < 0) {
                fprintf(stderr, "bench_gemm: --kernel wants auto, texel or tiled\n");
                return 2;
            }
            path = (df_gemm_path)p;
        } else if (c == 'q')
            quick = 1;
        else {
            fprintf(stderr, "usage: bench_gemm [--device N] [--reps R] [--kernel texel|tiled|auto] [--quick]\n");
            return 2;
        }
    }
    df_log_set_level(DF_LOG_WARN);
    df_error_t err;
    df_error_clear(&err);
    uint32_t index;
    df_vk_instance_t *inst = df_vk_instance_new(NULL, &err);
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    if (!inst || df_vk_instance_choose(inst, device, &index, &err) ||
        !(dev = df_vk_device_new(inst, index, NULL, &err)) || !(xfer = df_vk_transfer_new(dev, NULL, &err))) {
        fprintf(stderr, "bench_gemm: %s\n", err.msg);
        return 1;
    }
    if (path == DF_GEMM_AUTO)
        path = df_gemm_default_path(dev);
    printf("device: %s (%s kernel); baseline: OpenBLAS %s sgemm on the host CPU, %d threads\n",
           df_vk_device_info_of(dev)->name, df_gemm_path_name(path), openblas_get_config(),
           openblas_get_num_threads());
    printf("best of %d runs after a warm-up; GFLOPS = 2MNK / time\n\n", reps);
    printf("%-22s %-40s %9s %9s %9s %8s %8s\n", "M x N x K (op)", "where", "ours f32", "ours f16", "OpenBLAS",
           "f32/BLAS", "f16/BLAS");
    int failed = 0;
    size_t nshapes = quick ? 2 : sizeof k_shapes / sizeof k_shapes[0];
    for (size_t i = 0; i < nshapes; i++) {
        const shape *s = &k_shapes[i];
        double gf[2] = {0, 0};
        for (int t = 0; t < 2; t++) {
            df_gemm_desc d = df_gemm_desc_packed(s->ta, s->tb, s->m, s->n, s->k, 1);
            d.type_a = d.type_b = d.type_c = t ? DF_F16 : DF_F32;
            df_gemm_check_opts o = {.path = path, .seed = 7, .row_step = s->m > 64 ? 61 : 1, .reps = (uint32_t)reps};
            df_gemm_check_outcome out;
            if (df_gemm_check_run(dev, xfer, &d, &o, &out, &err)) {
                fprintf(stderr, "bench_gemm: %s\n", err.msg);
                df_error_clear(&err);
                failed = 1;
                continue;
            }
            if (out.check.failures || !out.guard_ok) {
                fprintf(stderr, "bench_gemm: %ux%ux%u %s: WRONG RESULT (%llu elements off)\n", s->m, s->n, s->k,
                        df_dtype_name(d.type_c), (unsigned long long)out.check.failures);
                failed = 1;
                continue;
            }
            gf[t] = out.gflops;
        }
        double blas = openblas_gflops(s, reps);
        char name[32];
        snprintf(name, sizeof name, "%ux%ux%u (%c%c)", s->m, s->n, s->k, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N');
        printf("%-22s %-40s %9.2f %9.2f %9.2f %7.0f%% %7.0f%%\n", name, s->what, gf[0], gf[1], blas,
               100 * gf[0] / blas, 100 * gf[1] / blas);
        fflush(stdout);
    }
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    df_vk_instance_destroy(&inst);
    return failed;
}
