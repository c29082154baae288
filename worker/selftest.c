/*  selftest.c - see selftest.h. */
#include "selftest.h"

#include <string.h>

#include "gemm_check.h"
#include "vk_device.h"
#include "vk_transfer.h"

typedef struct {
    uint32_t m, n, k, batch;
    int ta, tb;
    df_dtype t;
    float beta;
    uint32_t row_step;
    int timed;
} selftest_case;

/* Correctness shapes: degenerate, odd, GEMV-like, batched, mixed transposes. */
static const selftest_case k_cases[] = {
    {1, 1, 1, 1, 0, 0, DF_F32, 0.0f, 1, 0},
    {17, 33, 65, 1, 0, 0, DF_F32, 0.0f, 1, 0},
    {17, 33, 65, 1, 1, 0, DF_F32, 0.5f, 1, 0},
    {17, 33, 65, 1, 0, 1, DF_F32, 0.0f, 1, 0},
    {17, 33, 65, 1, 1, 1, DF_F16, -1.0f, 1, 0},
    {1, 4096, 1280, 1, 0, 0, DF_F32, 0.0f, 1, 0},
    {77, 64, 77, 3, 0, 1, DF_F16, 0.0f, 1, 0},
    {1024, 1024, 1024, 1, 0, 0, DF_F32, 0.0f, 64, 1},
    {1024, 1024, 1024, 1, 0, 0, DF_F16, 0.0f, 64, 1},
    {4096, 640, 640, 1, 0, 0, DF_F32, 0.0f, 256, 1},
    {4096, 640, 640, 1, 0, 0, DF_F16, 0.0f, 256, 1},
};

static int run_device(df_vk_instance_t *inst, uint32_t index, const df_selftest_opts *opts, FILE *out,
                      int *failures, df_error_t *err)
{
    char cache_path[4096];
    const df_vk_device_info *info = df_vk_instance_device(inst, index);
    if (opts->cache_dir)
        snprintf(cache_path, sizeof cache_path, "%s/pipelines-%04x-%04x.bin", opts->cache_dir, info->vendor_id,
                 info->device_id);
    df_vk_device_opts dopts = {.pipeline_cache_path = opts->cache_dir ? cache_path : NULL,
                               .portable_kernels = opts->portable_kernels};
    df_vk_device_t *dev = df_vk_device_new(inst, index, &dopts, err);
    if (!dev)
        return err ? err->code : DF_E_VULKAN;
    df_vk_transfer_t *xfer = df_vk_transfer_new(dev, NULL, err);
    if (!xfer) {
        df_vk_device_destroy(&dev);
        return err ? err->code : DF_E_VULKAN;
    }
    df_gemm_path path = opts->path == DF_GEMM_AUTO ? df_gemm_default_path(dev) : opts->path;
    fprintf(out, "device %u: %s, gemm kernel %s\n", index, df_vk_device_info_of(dev)->name,
            df_gemm_path_name(path));
    fprintf(out, "  %-20s %-4s %-5s %10s %10s %12s  %s\n", "M x N x K (batch)", "type", "trans", "ms",
            "GFLOPS", "worst err/bound", "result");
    int rc = DF_OK;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0] && !rc; i++) {
        const selftest_case *c = &k_cases[i];
        if (c->timed && opts->quick)
            continue;
        df_gemm_desc d = df_gemm_desc_packed(c->ta, c->tb, c->m, c->n, c->k, c->batch);
        d.type_a = d.type_b = d.type_c = c->t;
        d.beta = c->beta;
        df_gemm_check_opts co = {.path = path, .seed = 1000 + i, .row_step = c->row_step,
                                 .reps = c->timed ? 3 : 0, .c_guard = 64};
        df_gemm_check_outcome o;
        df_error_t case_err;
        df_error_clear(&case_err);
        char shape[40];
        snprintf(shape, sizeof shape, "%ux%ux%u (%u)", c->m, c->n, c->k, c->batch);
        char trans[8];
        snprintf(trans, sizeof trans, "%c%c", c->ta ? 'T' : 'N', c->tb ? 'T' : 'N');
        int crc = df_gemm_check_run(dev, xfer, &d, &co, &o, &case_err);
        if (crc) {
            fprintf(out, "  %-20s %-4s %-5s  error: %s\n", shape, df_dtype_name(c->t), trans, case_err.msg);
            (*failures)++;
            if (crc != DF_E_UNSUPPORTED && crc != DF_E_MISMATCH && crc != DF_E_RANGE) {
                df_error_set(err, crc, "%s", case_err.msg);
                rc = crc;
            }
            continue;
        }
        int ok = o.check.failures == 0 && o.guard_ok;
        if (!ok)
            (*failures)++;
        char ms[16] = "-", gf[16] = "-";
        if (c->timed) {
            snprintf(ms, sizeof ms, "%.2f", o.best_ms);
            snprintf(gf, sizeof gf, "%.2f", o.gflops);
        }
        fprintf(out, "  %-20s %-4s %-5s %10s %10s %12.3g  %s", shape, df_dtype_name(c->t), trans, ms, gf,
                o.check.worst_ratio, ok ? "ok" : "FAIL");
        if (o.check.failures)
            fprintf(out, " (%llu of %llu elements off; worst at [%u][%u][%u]: got %.9g want %.9g)",
                    (unsigned long long)o.check.failures, (unsigned long long)o.check.checked,
                    o.check.worst_b, o.check.worst_i, o.check.worst_j, o.check.worst_got, o.check.worst_ref);
        if (!o.guard_ok)
            fprintf(out, " (wrote outside C)");
        fprintf(out, "\n");
    }
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    return rc;
}

int df_selftest_run(df_vk_instance_t *inst, const df_selftest_opts *opts, FILE *out, df_error_t *err)
{
    uint32_t first = 0, last = df_vk_instance_device_count(inst);
    if (opts->device >= 0) {
        uint32_t idx;
        int rc = df_vk_instance_choose(inst, opts->device, &idx, err);
        if (rc)
            return rc;
        first = idx, last = idx + 1;
    }
    int failures = 0;
    for (uint32_t i = first; i < last; i++) {
        if (df_vk_instance_device(inst, i)->compute_queue_family == UINT32_MAX)
            continue;
        int rc = run_device(inst, i, opts, out, &failures, err);
        if (rc)
            return rc;
    }
    if (df_vk_instance_validation_errors(inst)) {
        fprintf(out, "vulkan validation reported %u error(s)\n", df_vk_instance_validation_errors(inst));
        failures++;
    }
    fprintf(out, "selftest: %s\n", failures ? "FAILED" : "passed");
    if (failures)
        return df_error_set(err, DF_E_MISMATCH, "selftest: %d check(s) failed", failures);
    return DF_OK;
}
