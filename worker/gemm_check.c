/*  gemm_check.c - see gemm_check.h. */
#include "gemm_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "philox.h"
#include "vk_batch.h"

/* Exactly representable in f16 and bf16, and never produced by the data. */
#define CANARY -777.0f

void df_gemm_check_fill(float *v, uint64_t n, uint64_t seed, uint64_t stream, df_dtype dtype)
{
    df_philox_fill_uniform(v, n, seed, stream, -1.0f, 1.0f);
    if (dtype == DF_F16)
        for (uint64_t i = 0; i < n; i++)
            v[i] = df_half_to_float(df_float_to_half(v[i]));
}

/* Reference and comparison for one row i of C: a row of op(A) is a GEMM with
 * M = 1 whose A starts at that row (or column, when transposed). */
static int check_row(const df_gemm_desc *d, uint32_t i, const float *a, const float *b, const float *c0,
                     const float *got, double *ref, double *bound, df_gemm_check_result *total,
                     df_error_t *err)
{
    df_gemm_desc row = *d;
    row.m = 1;
    size_t a_off = d->trans_a ? i : (size_t)i * d->lda;
    size_t c_off = (size_t)i * d->ldc;
    int rc = df_gemm_reference(&row, a + a_off, b, c0 ? c0 + c_off : NULL, ref + c_off, bound + c_off, err);
    if (rc)
        return rc;
    df_gemm_check_result r;
    df_gemm_compare(&row, got + c_off, ref + c_off, bound + c_off, &r);
    total->checked += r.checked;
    total->failures += r.failures;
    if (r.worst_ratio > total->worst_ratio) {
        total->worst_ratio = r.worst_ratio;
        total->worst_b = r.worst_b, total->worst_i = i, total->worst_j = r.worst_j;
        total->worst_got = r.worst_got, total->worst_ref = r.worst_ref;
    }
    return DF_OK;
}

/* Checks every row_step-th row of C, and always the last. */
static int check_rows(const df_gemm_desc *d, const float *a, const float *b, const float *c0,
                      const float *got, uint32_t row_step, df_gemm_check_result *total, df_error_t *err)
{
    uint64_t n = df_gemm_extent_c(d);
    double *ref = malloc(n * sizeof *ref);
    double *bound = malloc(n * sizeof *bound);
    if (!ref || !bound) {
        free(ref), free(bound);
        return df_error_set(err, DF_E_NOMEM, "gemm check: out of host memory");
    }
    memset(total, 0, sizeof *total);
    int rc = DF_OK;
    for (uint32_t i = 0; i < d->m && !rc; i += row_step)
        rc = check_row(d, i, a, b, c0, got, ref, bound, total, err);
    if (!rc && (d->m - 1) % row_step != 0)
        rc = check_row(d, d->m - 1, a, b, c0, got, ref, bound, total, err);
    free(ref), free(bound);
    return rc;
}

/* Whether element e of C's extent lies in one of the M x N windows. */
static int in_window(const df_gemm_desc *d, uint64_t e)
{
    uint64_t bi = d->batch > 1 ? e / d->stride_c : 0;
    uint64_t rem = d->batch > 1 ? e % d->stride_c : e;
    return bi < d->batch && rem / d->ldc < d->m && rem % d->ldc < d->n;
}

int df_gemm_check_run(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_gemm_desc *d,
                      const df_gemm_check_opts *opts, df_gemm_check_outcome *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    int rc = df_gemm_desc_check(d, err);
    if (rc)
        return rc;
    uint64_t na = df_gemm_extent_a(d), nb = df_gemm_extent_b(d), nc = df_gemm_extent_c(d);
    uint64_t guard = opts->c_guard;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
    float *c0 = malloc(nc * sizeof *c0), *got = malloc((nc + 2 * guard) * sizeof *got);
    df_vk_buffer_t *ba = NULL, *bb = NULL, *bc = NULL;
    df_vk_batch_t *batch = NULL;
    if (!a || !b || !c0 || !got) {
        rc = df_error_set(err, DF_E_NOMEM, "gemm check: out of host memory");
        goto done;
    }
    df_gemm_check_fill(a, na, opts->seed, 1, d->type_a);
    df_gemm_check_fill(b, nb, opts->seed, 2, d->type_b);
    df_gemm_check_fill(c0, nc, opts->seed, 3, d->type_c);
    size_t esa = df_dtype_size(d->type_a), esb = df_dtype_size(d->type_b), esc = df_dtype_size(d->type_c);
    uint64_t oa = opts->offset_a, ob = opts->offset_b;
    ba = df_vk_buffer_new(dev, (oa + na) * esa, err);
    bb = ba ? df_vk_buffer_new(dev, (ob + nb) * esb, err) : NULL;
    bc = bb ? df_vk_buffer_new(dev, (nc + 2 * guard) * esc, err) : NULL;
    batch = bc ? df_vk_batch_new(dev, 1, err) : NULL;
    if (!batch) {
        rc = err ? err->code : DF_E_VULKAN;
        goto done;
    }
    if (guard)
        for (uint64_t i = 0; i < nc + 2 * guard; i++)
            got[i] = CANARY;
    memcpy(got + guard, c0, nc * sizeof *got);
    if ((rc = df_vk_upload_f32(xfer, ba, oa * esa, a, na, d->type_a, err)) ||
        (rc = df_vk_upload_f32(xfer, bb, ob * esb, b, nb, d->type_b, err)))
        goto done;
    uint32_t runs = opts->reps ? opts->reps + 1 : 1;
    for (uint32_t r = 0; r < runs; r++) {
        /* Every run starts from the same C so beta != 0 stays checkable. */
        if ((rc = df_vk_upload_f32(xfer, bc, 0, got, nc + 2 * guard, d->type_c, err)) ||
            (rc = df_gemm(batch, d, df_ref(ba, oa * esa), df_ref(bb, ob * esb), df_ref(bc, guard * esc), opts->path,
                          &out->plan, err)) ||
            (rc = df_vk_batch_submit(batch, err)))
            goto done;
        double ms = df_vk_batch_total_ms(batch);
        if (opts->reps && r > 0 && (out->best_ms == 0 || ms < out->best_ms))
            out->best_ms = ms;
    }
    if (out->best_ms > 0)
        out->gflops = df_gemm_flops(d) / (out->best_ms * 1e6);
    if ((rc = df_vk_download_f32(xfer, bc, 0, got, nc + 2 * guard, d->type_c, err)))
        goto done;
    /* Nothing outside C's windows may change: neither the canary around C nor
     * the gaps between rows (ldc > N) and batch entries. */
    out->guard_ok = 1;
    for (uint64_t i = 0; i < guard; i++)
        if (got[i] != CANARY || got[guard + nc + i] != CANARY)
            out->guard_ok = 0;
    for (uint64_t e = 0; e < nc; e++)
        if (!in_window(d, e) && got[guard + e] != c0[e])
            out->guard_ok = 0;
    rc = check_rows(d, a, b, d->beta != 0.0f ? c0 : NULL, got + guard, opts->row_step ? opts->row_step : 1,
                    &out->check, err);
done:
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&ba);
    df_vk_buffer_destroy(&bb);
    df_vk_buffer_destroy(&bc);
    free(a), free(b), free(c0), free(got);
    return rc;
}
