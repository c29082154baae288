/*  bench_util.c - see bench_util.h. */
#include "bench_util.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "philox.h"

double df_bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double df_bench_blas_gflops(void)
{
    const int m = 4096, n = 640, k = 640;
    float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)k * n * 4), *c = malloc((size_t)m * n * 4);
    df_philox_fill_uniform(a, (size_t)m * k, 1, 0, -1, 1);
    df_philox_fill_uniform(b, (size_t)k * n, 2, 0, -1, 1);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = df_bench_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
        best = fmin(best, df_bench_now_s() - t0);
    }
    free(a), free(b), free(c);
    return 2.0 * m * n * k / best * 1e-9;
}
