/*  tasks.c - see tasks.h. */
#include "tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dreamfleet.pb-c.h"
#include "gemm_check.h"
#include "sha256.h"
#include "artifact_store.h"
#include "task_generate.h"
#include "task_encode.h"
#include "task_prep.h"
#include "task_train.h"

static int cancelled(df_task_ctx *ctx) { return ctx->cancelled && atomic_load(ctx->cancelled); }

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- noop ---- */

static int run_noop(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                    int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__NoopParams *p = dreamfleet__noop_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "noop: parameters are not a NoopParams message");
    int rc = DF_OK;
    char fetched[DF_SHA256_HEX] = "";
    if (ctx->attempt <= p->fail_attempts) {
        *retryable = 1;
        rc = df_error_set(err, DF_E_STATE, "noop: planned failure on attempt %u of the first %u", ctx->attempt,
                          p->fail_attempts);
    }
    if (!rc && p->fetch && *p->fetch) {
        char path[4096];
        rc = ctx->fetch(ctx, p->fetch, path, sizeof path, err);
        if (rc)
            *retryable = rc == DF_E_IO; /* the network may come back; a bad hash will not */
        else
            snprintf(fetched, sizeof fetched, "%s", p->fetch);
    }
    /* Sleep in slices so a cancel is noticed quickly. */
    for (uint32_t done = 0; !rc && done < p->duration_ms; done += 10) {
        if (cancelled(ctx)) {
            rc = df_error_set(err, DF_E_STATE, "noop: cancelled");
            break;
        }
        uint32_t slice = p->duration_ms - done < 10 ? p->duration_ms - done : 10;
        sleep_ms(slice);
        if (ctx->progress)
            ctx->progress(ctx, (float)(done + slice) / (float)p->duration_ms, "sleeping");
    }
    dreamfleet__noop_params__free_unpacked(p, NULL);
    if (rc)
        return rc;
    Dreamfleet__NoopResult r = DREAMFLEET__NOOP_RESULT__INIT;
    r.worker = (char *)ctx->worker_name;
    r.attempt = ctx->attempt;
    r.fetched = fetched;
    *out_len = dreamfleet__noop_result__get_packed_size(&r);
    *out = malloc(*out_len ? *out_len : 1);
    if (!*out)
        return df_error_set(err, DF_E_NOMEM, "noop: out of memory");
    dreamfleet__noop_result__pack(&r, *out);
    return DF_OK;
}

/* ---- bench ---- */

static int run_bench(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                     int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__BenchParams *p = dreamfleet__bench_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "bench: parameters are not a BenchParams message");
    uint32_t m = p->m ? p->m : 1024, n = p->n ? p->n : m, k = p->k ? p->k : m, reps = p->reps ? p->reps : 3;
    dreamfleet__bench_params__free_unpacked(p, NULL);
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    int rc = ctx->device(ctx, &dev, &xfer, err);
    if (rc) {
        *retryable = 1; /* another worker's device may do */
        return rc;
    }
    Dreamfleet__BenchResult r = DREAMFLEET__BENCH_RESULT__INIT;
    r.worker = (char *)ctx->worker_name;
    r.device = (char *)df_vk_device_info_of(dev)->name;
    r.correct = 1;
    df_gemm_path path = df_gemm_default_path(dev);
    r.kernel = (char *)df_gemm_path_name(path);
    for (int t = 0; t < 2 && !rc; t++) {
        if (cancelled(ctx))
            return df_error_set(err, DF_E_STATE, "bench: cancelled");
        if (ctx->progress)
            ctx->progress(ctx, 0.5f * (float)t, t ? "f16" : "f32");
        df_gemm_desc d = df_gemm_desc_packed(0, 0, m, n, k, 1);
        d.type_a = d.type_b = d.type_c = t ? DF_F16 : DF_F32;
        df_gemm_check_opts o = {.path = path, .seed = 17, .row_step = m > 64 ? m / 16 : 1, .reps = reps};
        df_gemm_check_outcome res;
        rc = df_gemm_check_run(dev, xfer, &d, &o, &res, err);
        if (rc) {
            *retryable = rc == DF_E_DEVICE_MEMORY || rc == DF_E_VULKAN;
            break;
        }
        if (res.check.failures || !res.guard_ok)
            r.correct = 0;
        if (t)
            r.gflops_f16 = res.gflops;
        else
            r.gflops_f32 = res.gflops;
    }
    if (rc)
        return rc;
    *out_len = dreamfleet__bench_result__get_packed_size(&r);
    *out = malloc(*out_len ? *out_len : 1);
    if (!*out)
        return df_error_set(err, DF_E_NOMEM, "bench: out of memory");
    dreamfleet__bench_result__pack(&r, *out);
    return DF_OK;
}

void df_task_resident_release(df_task_resident *r)
{
    if (r && r->obj && r->destroy)
        r->destroy(r->obj);
    if (r) {
        r->obj = NULL;
        r->key[0] = '\0';
    }
}

int df_task_input(df_task_ctx *ctx, const char *ref, char *path, size_t cap, df_error_t *err)
{
    if (!df_artifacts_valid_hash(ref)) {
        if ((size_t)snprintf(path, cap, "%s", ref) >= cap)
            return df_error_set(err, DF_E_RANGE, "%.64s...: path too long", ref);
        return DF_OK;
    }
    if (!ctx->fetch)
        return df_error_set(err, DF_E_INVALID, "input %.12s is an artifact, and this worker has no coordinator to "
                            "fetch it from", ref);
    return ctx->fetch(ctx, ref, path, cap, err);
}

char *df_task_rename_input(char *text, const char *local, const char *name)
{
    const char *at = text && local && name && *local && strcmp(local, name) ? strstr(text, local) : NULL;
    if (!at)
        return text;
    const size_t head = (size_t)(at - text), ll = strlen(local), nl = strlen(name), tl = strlen(text);
    char *out = malloc(tl - ll + nl + 1);
    if (!out)
        return text; /* the message keeps the worker's name for the file */
    memcpy(out, text, head);
    memcpy(out + head, name, nl);
    memcpy(out + head + nl, at + ll, tl - head - ll + 1);
    free(text);
    return out;
}

static const df_task_type k_types[] = {
    {"bench", run_bench},
    {"generate", df_task_run_generate},
    {"train", df_task_run_train},
    {"encode", df_task_run_encode},
    {"prep", df_task_run_prep},
    {"noop", run_noop},
};

const df_task_type *df_task_type_find(const char *name)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (name && strcmp(name, k_types[i].name) == 0)
            return &k_types[i];
    return NULL;
}

size_t df_task_type_count(void) { return sizeof k_types / sizeof k_types[0]; }
const df_task_type *df_task_type_at(size_t i) { return i < df_task_type_count() ? &k_types[i] : NULL; }
