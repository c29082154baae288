/*  test_dequant.c - 8-bit weights to floats: exact against common/quant8.c
 *  for an f32 output (one correctly rounded product), within the f16 store
 *  for f16; odd row lengths so rows straddle the 32-bit words the kernel
 *  reads, an operand placed off a word boundary, and every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "ops_tests.h"
#include "quant8.h"

/* An i8 tensor holding bytes, lead bytes into its buffer. */
static df_vk_buffer_t *upload_i8(op_env *env, const int8_t *q, uint64_t n, uint32_t lead, df_tensor *t)
{
    df_vk_buffer_t *b = df_vk_buffer_new(env->dev, n + lead, NULL);
    if (!b)
        return NULL;
    df_vk_upload(env->xfer, b, lead, q, n, NULL);
    *t = df_tensor_at(b, lead, DF_I8);
    return b;
}

static void dequant_case(op_env *env, uint32_t rows, uint32_t cols, uint32_t block, uint32_t lead, df_dtype out)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t n = (uint64_t)rows * cols;
    /* Weights with rows of very different magnitudes, one row all zero. */
    op_tensor w = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t c = 0; c < cols; c++)
            w.host[(uint64_t)r * cols + c] *= r == 1 ? 0.0f : (float)(1 + r % 7) * (r % 2 ? 1e-3f : 1.0f);
    int8_t *q = malloc(n);
    uint64_t ns = rows * df_quant8_blocks(cols, block);
    float *scale = malloc(ns * sizeof *scale), *want = malloc(n * sizeof *want);
    df_quant8_rows(w.host, rows, cols, block, q, scale);
    df_dequant8_rows(q, scale, rows, cols, block, want);
    df_tensor qt;
    df_vk_buffer_t *qb = upload_i8(env, q, n, lead, &qt);
    op_tensor s = op_tensor_from(env, scale, ns, DF_F32, 1);
    op_tensor y = op_tensor_output(env, n, out, 3);
    int rc = qb ? df_dequant_rows(env->batch, rows, cols, block, qt, s.t, y.t, &err) : DF_E_DEVICE_MEMORY;
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    int fails = 0;
    if (!rc) {
        double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
        for (uint64_t i = 0; i < n; i++) {
            ref[i] = want[i];
            bound[i] = op_store_bound(out, want[i]);
        }
        /* A signed byte read as unsigned, or the wrong row's scale, is far out. */
        fails = op_compare("dequant", y.host, ref, bound, n);
        free(ref), free(bound);
    }
    char what[96];
    snprintf(what, sizeof what, "dequant %ux%u in blocks of %u (i8 at byte %u) -> %s", rows, cols, block, lead,
             df_dtype_name(out));
    op_case_done(env, what, fails, rc, &err);
    df_vk_buffer_destroy(&qb);
    op_tensor_free(&w), op_tensor_free(&s), op_tensor_free(&y);
    free(q), free(scale), free(want);
}

void test_op_dequant(op_env *env)
{
    dequant_case(env, 37, 53, 53, 3, DF_F32);   /* a scale per row */
    dequant_case(env, 37, 53, 16, 2, DF_F32);   /* per 16, the last block of each row short */
    dequant_case(env, 211, 389, 64, 1, DF_F16); /* 82 KB of bytes: split when bindings are small */
    dequant_case(env, 5, 4, 64, 0, DF_F32);     /* a block longer than the row */

    /* Refusals, each naming what is wrong. */
    df_error_t err;
    int8_t q[16] = {0};
    df_tensor qt;
    df_vk_buffer_t *qb = upload_i8(env, q, 16, 0, &qt);
    op_tensor s = op_tensor_uniform(env, 4, DF_F32, 0, 0.5f, 1.0f);
    op_tensor y = op_tensor_output(env, 16, DF_F32, 0);
    struct {
        const char *what, *needle;
        uint32_t rows, cols;
        df_dtype qd, sd, yd;
    } bad[] = {
        {"empty", "is empty", 0, 4, DF_I8, DF_F32, DF_F32},
        {"q not i8", "not i8", 4, 4, DF_F16, DF_F32, DF_F32},
        {"scale not f32", "scale is f16", 4, 4, DF_I8, DF_F16, DF_F32},
        {"y not a float", "y is i32", 4, 4, DF_I8, DF_F32, DF_I32},
        {"q too small", "q needs bytes", 4, 8, DF_I8, DF_F32, DF_F32},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        df_error_clear(&err);
        df_tensor tq = qt, ts = s.t, ty = y.t;
        tq.dtype = bad[i].qd, ts.dtype = bad[i].sd, ty.dtype = bad[i].yd;
        int rc = qb ? df_dequant_rows(env->batch, bad[i].rows, bad[i].cols, 4, tq, ts, ty, &err) : DF_E_DEVICE_MEMORY;
        int fail = rc == DF_OK || !strstr(err.msg, bad[i].needle);
        if (fail)
            fprintf(stderr, "  FAIL dequant %s: rc %d, message '%s'\n", bad[i].what, rc, err.msg);
        char what[64];
        snprintf(what, sizeof what, "dequant %s refused", bad[i].what);
        op_case_done(env, what, fail, 0, NULL);
    }
    df_vk_buffer_destroy(&qb);
    op_tensor_free(&s), op_tensor_free(&y);
}
