/*  bench_util.h - what the model benchmarks share: a monotonic clock and
 *  the OpenBLAS baseline they print their figures next to. */
#ifndef DF_BENCH_UTIL_H
#define DF_BENCH_UTIL_H

/*  Seconds on the monotonic clock. */
double df_bench_now_s(void);

/*  OpenBLAS sgemm at a UNet-like shape (4096x640x640), best of three, in
 *  GFLOPS. */
double df_bench_blas_gflops(void);

#endif
