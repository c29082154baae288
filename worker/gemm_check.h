/*  gemm_check.h - run one GEMM on a device with random data, check it
 *  against the double-precision reference, and time it.
 *
 *  Shared by `dreamfleet-worker --selftest`, the test suite and the GEMM
 *  benchmark so all three judge a kernel by the same rule: every checked
 *  element within the error bound derived from the precision (see
 *  df_gemm_reference()).
 */
#ifndef DF_GEMM_CHECK_H
#define DF_GEMM_CHECK_H

#include <stdint.h>

#include "error.h"
#include "gemm.h"
#include "gemm_desc.h"
#include "vk_device.h"
#include "vk_transfer.h"

typedef struct {
    df_gemm_path path;  /* kernel to use */
    uint64_t seed;      /* data seed */
    uint32_t row_step;  /* check every row_step-th row of C (1: all); the last row always */
    uint32_t reps;      /* timed repetitions after one warm-up; 0: run once, untimed */
    uint64_t c_guard;   /* canary elements before and after C that must stay untouched */
    uint32_t offset_a, offset_b; /* place A / B this many elements into their buffers */
} df_gemm_check_opts;

typedef struct {
    df_gemm_plan plan;
    df_gemm_check_result check;
    double best_ms;  /* best GPU time of the timed repetitions (0 when untimed) */
    double gflops;   /* at best_ms */
    int guard_ok;    /* nothing outside the M x N windows of C changed */
} df_gemm_check_outcome;

/*  Runs desc on dev. Returns DF_OK when the kernel ran (whatever the
 *  comparison says: read outcome->check.failures), or the error that stopped
 *  it. */
int df_gemm_check_run(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_gemm_desc *desc,
                      const df_gemm_check_opts *opts, df_gemm_check_outcome *outcome, df_error_t *err);

/*  Fills n floats uniform in [-1, 1), rounded to dtype's precision so host
 *  and device see identical values. */
void df_gemm_check_fill(float *v, uint64_t n, uint64_t seed, uint64_t stream, df_dtype dtype);

#endif
