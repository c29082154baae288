/*  harness.c - see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "philox.h"

#define CANARY -777.0f

static float round_to(float v, df_dtype t)
{
    return t == DF_F16 ? df_half_to_float(df_float_to_half(v)) : v;
}

op_tensor op_tensor_from(op_env *env, const float *values, uint64_t n, df_dtype dtype, uint32_t lead)
{
    op_tensor o = {0};
    size_t es = df_dtype_size(dtype);
    o.n = n;
    o.host = malloc(n * sizeof(float));
    o.buf = df_vk_buffer_new(env->dev, (n + lead) * es, NULL);
    o.t = df_tensor_at(o.buf, lead * es, dtype);
    if (!o.host || !o.buf)
        return o;
    for (uint64_t i = 0; i < n; i++)
        o.host[i] = round_to(values[i], dtype);
    df_vk_upload_f32(env->xfer, o.buf, lead * es, o.host, n, dtype, NULL);
    return o;
}

op_tensor op_tensor_normal(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead, float scale)
{
    float *v = malloc(n * sizeof *v);
    df_philox_fill_normal(v, n, env->seed, env->cases * 16u + lead + 1u);
    for (uint64_t i = 0; i < n; i++)
        v[i] *= scale;
    op_tensor o = op_tensor_from(env, v, n, dtype, lead);
    free(v);
    env->seed++;
    return o;
}

op_tensor op_tensor_uniform(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead, float lo, float hi)
{
    float *v = malloc(n * sizeof *v);
    df_philox_fill_uniform(v, n, env->seed, env->cases * 16u + lead + 7u, lo, hi);
    op_tensor o = op_tensor_from(env, v, n, dtype, lead);
    free(v);
    env->seed++;
    return o;
}

op_tensor op_tensor_output(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead)
{
    /* One element of canary after the tensor too. */
    float *v = malloc((n + 1) * sizeof *v);
    for (uint64_t i = 0; i <= n; i++)
        v[i] = CANARY;
    op_tensor o = op_tensor_from(env, v, n + 1, dtype, lead);
    o.n = n;
    free(v);
    return o;
}

void op_tensor_free(op_tensor *t)
{
    df_vk_buffer_destroy(&t->buf);
    free(t->host);
    memset(t, 0, sizeof *t);
}

int op_run_and_read(op_env *env, op_tensor *t, df_error_t *err)
{
    int rc = df_vk_batch_submit(env->batch, err);
    if (rc)
        return rc;
    df_vk_batch_memory m = df_vk_batch_memory_last(env->batch);
    env->scratch = m.peak_bytes - m.start_bytes;
    /* Read the canary after it too: a write past the end must show. */
    float *all = malloc((t->n + 1) * sizeof *all);
    rc = df_vk_download_f32(env->xfer, t->buf, t->t.ref.offset, all, t->n + 1, t->t.dtype, err);
    if (!rc && all[t->n] != CANARY)
        rc = df_error_set(err, DF_E_MISMATCH, "the op wrote past the end of its output");
    if (!rc)
        memcpy(t->host, all, t->n * sizeof *all);
    free(all);
    return rc;
}

int op_check_scratch(op_env *env, const char *what, uint64_t limit)
{
    /* Each buffer is padded to the allocator's alignment: allow that much
     * for each of the (at most two) ops a case records. */
    uint64_t align = df_vk_memory_alignment(df_vk_device_memory(env->dev));
    if (env->scratch <= limit + 2 * align)
        return 0;
    fprintf(stderr, "  FAIL %s: the ops allocated %llu bytes of scratch, more than their largest input (%llu)\n", what,
            (unsigned long long)env->scratch, (unsigned long long)limit);
    return 1;
}

double op_store_bound(df_dtype out, double v)
{
    return out == DF_F16 ? U16 * fabs(v) + 1.0 / 16777216.0 : 0.0;
}

int op_compare(const char *what, const float *got, const double *ref, const double *bound, uint64_t n)
{
    int fails = 0;
    double worst = 0;
    uint64_t wi = 0;
    for (uint64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= bound[i])) {
            fails++;
            double r = bound[i] > 0 ? d / bound[i] : INFINITY;
            if (isnan(d) || r > worst) {
                worst = isnan(d) ? INFINITY : r;
                wi = i;
            }
        }
    }
    if (fails)
        fprintf(stderr, "  FAIL %s: %d of %llu elements off; worst [%llu] got %.9g want %.9g (bound %.3g, %.3gx)\n",
                what, fails, (unsigned long long)n, (unsigned long long)wi, got[wi], ref[wi], bound[wi], worst);
    return fails;
}

void op_case_done(op_env *env, const char *what, int failures, int rc, const df_error_t *err)
{
    env->cases++;
    if (rc) {
        fprintf(stderr, "  FAIL %s: %s\n", what, err ? err->msg : "error");
        env->failures++;
    } else if (failures) {
        env->failures++;
    }
}
