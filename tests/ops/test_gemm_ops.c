/*  test_gemm_ops.c - GEMM in the op table: the fused epilogue (bias per
 *  column or per row, activation, on both kernels and across K splits)
 *  against the double-precision reference, and its refusals. The GEMM core
 *  has its own exhaustive test (tests/test_gemm.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gemm_desc.h"
#include "ops_tests.h"

typedef struct {
    uint32_t m, n, k, batch;
    int trans_a, trans_b;
    df_dtype ta, tb, tc, tbias;
    int bias; /* 0 none, 1 per column, 2 per row */
    df_elt_op act;
    float beta;
} epi_case;

/* Largest |act'(x)| over all x for the activations an epilogue may apply. */
#define ACT_SLOPE 1.2

static void epi_run(op_env *env, const epi_case *c)
{
    df_error_t err;
    df_error_clear(&err);
    df_gemm_desc d = df_gemm_desc_packed(c->trans_a, c->trans_b, c->m, c->n, c->k, c->batch);
    d.type_a = c->ta, d.type_b = c->tb, d.type_c = c->tc;
    d.alpha = 0.75f, d.beta = c->beta;
    uint64_t na = df_gemm_extent_a(&d), nb = df_gemm_extent_b(&d), nc = df_gemm_extent_c(&d);
    uint32_t nbias = c->bias == 2 ? c->m : c->n;
    op_tensor a = op_tensor_normal(env, na, c->ta, 0, 1.0f), b = op_tensor_normal(env, nb, c->tb, 0, 1.0f);
    op_tensor bias = op_tensor_normal(env, nbias, c->tbias, 0, 1.0f);
    op_tensor y = op_tensor_normal(env, nc, c->tc, 0, 1.0f);
    float *c0 = malloc(nc * sizeof *c0);
    memcpy(c0, y.host, nc * sizeof *c0);
    df_gemm_epilogue ep = {.bias = bias.t, .bias_per_row = c->bias == 2, .act = c->act};
    if (!c->bias)
        ep.bias.ref.buf = NULL;
    int rc = df_gemm_ex(env->batch, &d, a.t.ref, b.t.ref, y.t.ref, &ep, DF_GEMM_AUTO, NULL, &err);
    if (!rc)
        rc = df_vk_batch_submit(env->batch, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, y.buf, 0, y.host, nc, c->tc, &err);
    char what[160];
    snprintf(what, sizeof what, "gemm epilogue %ux%ux%u b%u %s%s %s/%s->%s bias %s(%s) %s beta %.2g", c->m, c->n,
             c->k, c->batch, c->trans_a ? "T" : "N", c->trans_b ? "T" : "N", df_dtype_name(c->ta),
             df_dtype_name(c->tb), df_dtype_name(c->tc), c->bias == 0 ? "none" : c->bias == 1 ? "per column" : "per row",
             df_dtype_name(c->tbias), df_elt_op_name(c->act), c->beta);
    int fails = 0;
    if (!rc) {
        /* The linear part's bound without the store: reference with an f32 C. */
        df_gemm_desc dl = d;
        dl.type_c = DF_F32;
        double *ref = malloc(nc * sizeof *ref), *bound = malloc(nc * sizeof *bound);
        rc = df_gemm_reference(&dl, a.host, b.host, c0, ref, bound, &err);
        for (uint32_t bz = 0; !rc && bz < d.batch; bz++)
            for (uint32_t i = 0; i < d.m; i++)
                for (uint32_t j = 0; j < d.n; j++) {
                    uint64_t e = bz * d.stride_c + (uint64_t)i * d.ldc + j;
                    double lin = ref[e], bv = c->bias ? bias.host[c->bias == 2 ? i : j] : 0;
                    double v = lin + bv, bnd = bound[e] + U32 * (fabs(lin) + fabs(bv));
                    df_elt_desc ed = {.op = c->act};
                    double val, act_err;
                    op_elt_reference(&ed, v, 0, &val, &act_err);
                    ref[e] = val;
                    bound[e] = (c->act == DF_ELT_COPY ? 1 : ACT_SLOPE) * bnd + act_err + op_store_bound(c->tc, val);
                }
        if (!rc)
            fails += op_compare(what, y.host, ref, bound, nc);
        free(ref), free(bound);
    }
    op_case_done(env, what, fails, rc, &err);
    free(c0);
    op_tensor_free(&a), op_tensor_free(&b), op_tensor_free(&bias), op_tensor_free(&y);
}

void test_op_gemm_epilogue(op_env *env)
{
    static const epi_case cases[] = {
        /*  m    n    k  batch tA tB  A       B       C       bias    mode act              beta */
        {37, 45, 29, 1, 0, 0, DF_F32, DF_F32, DF_F32, DF_F32, 1, DF_ELT_SILU, 0},
        {64, 96, 40, 1, 0, 1, DF_F16, DF_F16, DF_F16, DF_F16, 2, DF_ELT_GELU_TANH, 0.5f},
        {130, 72, 64, 2, 1, 0, DF_F32, DF_F32, DF_F32, DF_F32, 0, DF_ELT_GELU_ERF, 0},
        {16, 8, 12, 3, 0, 0, DF_F32, DF_F16, DF_F32, DF_F32, 1, DF_ELT_QUICK_GELU, 1},
        {5, 33, 17, 1, 1, 1, DF_F32, DF_F32, DF_F32, DF_F16, 2, DF_ELT_COPY, 0},
        /* Large enough that small bindings (test_ops --max-bind) split M, N and K. */
        {96, 80, 600, 1, 0, 1, DF_F32, DF_F32, DF_F32, DF_F32, 1, DF_ELT_SILU, 0.25f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        epi_run(env, &cases[i]);
}

void test_op_gemm_errors(op_env *env)
{
    df_error_t err;
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 8, 8, 8, 1);
    op_tensor a = op_tensor_normal(env, 64, DF_F32, 0, 1.0f), c = op_tensor_output(env, 64, DF_F32, 0);
    op_tensor short_bias = op_tensor_normal(env, 4, DF_F32, 0, 1.0f);
    int fails = 0;
    df_gemm_epilogue bad_act = {.act = DF_ELT_MUL};
    df_error_clear(&err);
    if (df_gemm_ex(env->batch, &d, a.t.ref, a.t.ref, c.t.ref, &bad_act, DF_GEMM_AUTO, NULL, &err) != DF_E_UNSUPPORTED ||
        !strstr(err.msg, "epilogue activation mul"))
        fprintf(stderr, "  FAIL gemm refuses a mul epilogue: \"%s\"\n", err.msg), fails++;
    df_gemm_epilogue bias = {.bias = short_bias.t, .act = DF_ELT_COPY};
    df_error_clear(&err);
    if (df_gemm_ex(env->batch, &d, a.t.ref, a.t.ref, c.t.ref, &bias, DF_GEMM_AUTO, NULL, &err) != DF_E_RANGE ||
        !strstr(err.msg, "bias needs bytes"))
        fprintf(stderr, "  FAIL gemm refuses a short bias: \"%s\"\n", err.msg), fails++;
    bias.bias.dtype = DF_I32;
    df_error_clear(&err);
    if (df_gemm_ex(env->batch, &d, a.t.ref, a.t.ref, c.t.ref, &bias, DF_GEMM_AUTO, NULL, &err) != DF_E_UNSUPPORTED ||
        !strstr(err.msg, "gemm: bias"))
        fprintf(stderr, "  FAIL gemm refuses an integer bias: \"%s\"\n", err.msg), fails++;
    int rc = df_vk_batch_submit(env->batch, &err);
    op_case_done(env, "gemm epilogue refusals", fails, rc, &err);
    op_tensor_free(&a), op_tensor_free(&c), op_tensor_free(&short_bias);
}
