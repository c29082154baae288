/*  selftest.h - `dreamfleet-worker --selftest`: prove each device computes
 *  correctly and say how fast.
 *
 *  For every device: GEMM on a set of awkward shapes against the C reference
 *  (all transposes, odd sizes, batches, f32 and f16 storage), then GFLOPS for
 *  f32 and f16 at 1024^3 and at SDXL's attention-projection shape
 *  4096x640x640, with sampled rows checked against the reference too.
 */
#ifndef DF_SELFTEST_H
#define DF_SELFTEST_H

#include <stdio.h>

#include "error.h"
#include "gemm.h"
#include "vk_instance.h"

typedef struct {
    int device;        /* -1: every device */
    df_gemm_path path; /* DF_GEMM_AUTO: the device's default kernel */
    int quick;         /* skip the timed shapes */
    const char *cache_dir; /* pipeline caches go here; NULL: none */
    int portable_kernels;  /* the GPU-shaped kernels even on CPU drivers */
} df_selftest_opts;

/*  Prints a report to out. DF_OK when every check passed, DF_E_MISMATCH when
 *  a result was wrong, another code when a device could not run at all. */
int df_selftest_run(df_vk_instance_t *inst, const df_selftest_opts *opts, FILE *out, df_error_t *err);

#endif
