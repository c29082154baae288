/*  test_eltwise.c - element-wise ops: references, bounds, cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eltwise.h"
#include "ops_tests.h"

static const double SQRT_2_OVER_PI = 0.7978845608028654, GELU_C = 0.044715, INV_SQRT_2PI = 0.3989422804014327;
/* Fractional error of the erfc fit the kernels use (bounded by 1.2e-7). */
static const double ERFC_FIT = 1.2e-7;

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x))); }

/* The forward activation, in double. */
static double act(df_elt_op op, double x)
{
    switch (op) {
    case DF_ELT_SILU:
    case DF_ELT_SILU_BWD: return x * sigmoid(x);
    case DF_ELT_QUICK_GELU:
    case DF_ELT_QUICK_GELU_BWD: return x * sigmoid(1.702 * x);
    case DF_ELT_GELU_ERF:
    case DF_ELT_GELU_ERF_BWD: return gelu_erf(x);
    case DF_ELT_GELU_TANH:
    case DF_ELT_GELU_TANH_BWD: return gelu_tanh(x);
    default: return x;
    }
}

/* Its derivative, in closed form (checked against finite differences below). */
static double act_grad(df_elt_op op, double x)
{
    switch (op) {
    case DF_ELT_SILU_BWD: {
        double s = sigmoid(x);
        return s + x * s * (1 - s);
    }
    case DF_ELT_QUICK_GELU_BWD: {
        double s = sigmoid(1.702 * x);
        return s + 1.702 * x * s * (1 - s);
    }
    case DF_ELT_GELU_ERF_BWD: return 0.5 * (1 + erf(x / sqrt(2.0))) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    case DF_ELT_GELU_TANH_BWD: {
        double u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x), t = tanh(u);
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
    }
    default: return 1;
    }
}

/* Expected value and the error a correct f32 kernel may make. The exp
 * inside sigmoid/tanh/erfc is accurate to 3 + 2|arg| ulp (Vulkan's
 * requirement); division 2.5 ulp; + and * one ulp each. */
static void reference(const df_elt_desc *d, double a, double b, double *val, double *bound)
{
    double ax = fabs(a), e;
    switch (d->op) {
    case DF_ELT_COPY: *val = a, e = 0; break;
    case DF_ELT_AFFINE: *val = d->alpha * a + d->beta, e = 2 * U32 * (fabs(d->alpha * a) + fabs(d->beta)); break;
    case DF_ELT_AXPBY: *val = d->alpha * a + d->beta * b, e = 3 * U32 * (fabs(d->alpha * a) + fabs(d->beta * b)); break;
    case DF_ELT_MUL: *val = d->alpha * a * b, e = 2 * U32 * fabs(d->alpha * a * b); break;
    case DF_ELT_SILU: *val = act(d->op, a), e = (8 + 2 * ax) * U32 * fabs(*val); break;
    case DF_ELT_QUICK_GELU: *val = act(d->op, a), e = (9 + 3.5 * ax) * U32 * fabs(*val); break;
    case DF_ELT_GELU_ERF:
        /* The fit's error is absolute in (1 + erf); f32 rounding of the
         * surrounding arithmetic adds a few ulp. */
        *val = act(d->op, a), e = 0.5 * ax * (2 * ERFC_FIT + 12 * U32) + 4 * U32 * fabs(*val);
        break;
    case DF_ELT_GELU_TANH: {
        /* tanh from exp(-2|u|): (1 - e) cancels for small u, so the error is
         * absolute in tanh: a few ulp plus exp's 4|u| ulp. */
        double u = fabs(SQRT_2_OVER_PI * (a + GELU_C * a * a * a));
        *val = act(d->op, a), e = 0.5 * ax * (10 + 11 * u) * U32 + 4 * U32 * fabs(*val);
        break;
    }
    case DF_ELT_SILU_BWD:
        *val = b * act_grad(d->op, a), e = fabs(b) * (1 + ax) * (10 + 2 * ax) * U32 + 2 * U32 * fabs(*val);
        break;
    case DF_ELT_QUICK_GELU_BWD:
        *val = b * act_grad(d->op, a), e = fabs(b) * (1 + 1.702 * ax) * (11 + 3.5 * ax) * U32 + 2 * U32 * fabs(*val);
        break;
    case DF_ELT_GELU_ERF_BWD: {
        double phi = ax * INV_SQRT_2PI * exp(-0.5 * a * a);
        *val = b * act_grad(d->op, a);
        e = fabs(b) * (0.5 * (2 * ERFC_FIT + 12 * U32) + phi * (8 + a * a) * U32) + 2 * U32 * fabs(*val);
        break;
    }
    case DF_ELT_GELU_TANH_BWD: {
        double u = fabs(SQRT_2_OVER_PI * (a + GELU_C * a * a * a));
        double dt = (10 + 11 * u) * U32;
        double poly = 0.5 * ax * SQRT_2_OVER_PI * (1 + 3 * GELU_C * a * a);
        *val = b * act_grad(d->op, a);
        e = fabs(b) * (0.5 * dt + poly * (2 * dt + 6 * U32)) + 2 * U32 * fabs(*val);
        break;
    }
    case DF_ELT_CLAMP: *val = fmin(fmax(a, d->alpha), d->beta), e = 0; break;
    default: *val = 0, e = INFINITY;
    }
    /* exp() of a very negative argument may underflow to 0 before the f32
     * normal range ends (lavapipe clamps its argument): results below 2^-100
     * may come back as 0, which no network can tell apart. */
    *bound = e + (d->op >= DF_ELT_SILU ? 0x1p-100 * (1 + fabs(b)) : 0.0);
}

void op_elt_reference(const df_elt_desc *d, double a, double b, double *val, double *bound)
{
    reference(d, a, b, val, bound);
}

/* Runs one case and compares every element. */
static void run_case(op_env *env, const df_elt_desc *d, df_dtype ta, df_dtype tb, df_dtype ty, uint32_t lead,
                     float scale)
{
    df_error_t err;
    df_error_clear(&err);
    int binary = df_elt_op_binary(d->op);
    uint64_t nb = binary ? (d->b_count ? d->b_count : d->n) : 1;
    op_tensor a = op_tensor_normal(env, d->n, ta, lead, scale);
    op_tensor b = op_tensor_normal(env, nb, tb, lead ? 3 : 0, 1.0f);
    op_tensor y = op_tensor_output(env, d->n, ty, lead ? 1 : 0);
    int rc = df_eltwise(env->batch, d, a.t, b.t, y.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    char what[160];
    snprintf(what, sizeof what, "%s n=%llu a=%s b=%s y=%s lead=%u bcast=%llux%llu", df_elt_op_name(d->op),
             (unsigned long long)d->n, df_dtype_name(ta), df_dtype_name(tb), df_dtype_name(ty), lead,
             (unsigned long long)d->b_count, (unsigned long long)d->b_inner);
    int fails = 0;
    if (!rc) {
        double *ref = malloc(d->n * sizeof *ref), *bound = malloc(d->n * sizeof *bound);
        for (uint64_t i = 0; i < d->n; i++) {
            uint64_t j = !binary ? 0 : d->b_count ? (i / d->b_inner) % d->b_count : i;
            reference(d, a.host[i], b.host[j], &ref[i], &bound[i]);
            bound[i] += op_store_bound(ty, ref[i]);
        }
        fails = op_compare(what, y.host, ref, bound, d->n);
        free(ref), free(bound);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&a), op_tensor_free(&b), op_tensor_free(&y);
}

void test_op_eltwise(op_env *env)
{
    static const uint64_t sizes[] = {1, 3, 4, 5, 17, 1000, 65537};
    for (int op = 0; op < DF_ELT_COUNT; op++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            df_elt_desc d = {.op = (df_elt_op)op, .n = sizes[s], .alpha = 0.75f, .beta = -1.25f};
            if (op == DF_ELT_CLAMP) /* a range that cuts both tails */
                d.alpha = -1.5f, d.beta = 2.0f;
            /* Activations see a wide range, including where exp under/overflows. */
            float scale = op >= DF_ELT_SILU ? 6.0f : 1.0f;
            run_case(env, &d, DF_F32, DF_F32, DF_F32, 0, scale);
            if (s == 5) {
                run_case(env, &d, DF_F16, DF_F16, DF_F16, 0, scale);
                run_case(env, &d, DF_F32, DF_F16, DF_F16, 1, scale); /* unaligned: element fetches */
                run_case(env, &d, DF_F16, DF_F32, DF_F32, 2, 40.0f); /* far tails */
            }
        }
    /* Broadcast shapes: per channel on NCHW and on [tokens, C]. */
    df_elt_desc d = {.op = DF_ELT_AXPBY, .n = 2 * 320 * 37, .alpha = 1, .beta = 1, .b_inner = 37, .b_count = 320};
    run_case(env, &d, DF_F32, DF_F32, DF_F32, 0, 1.0f);
    d.b_inner = 1, d.b_count = 640, d.n = 77 * 640;
    run_case(env, &d, DF_F16, DF_F32, DF_F16, 0, 1.0f);
    d.op = DF_ELT_MUL, d.b_inner = 5, d.b_count = 7, d.n = 1001;
    run_case(env, &d, DF_F32, DF_F16, DF_F32, 1, 1.0f);
}

/* Each backward op against central differences of its forward reference:
 * y = dy * (f(x + h) - f(x - h)) / 2h, h = 1e-4 (truncation ~h^2 f'''/6,
 * far below the f32 bound). */
void test_op_eltwise_bwd_fd(op_env *env)
{
    static const df_elt_op bwd[] = {DF_ELT_SILU_BWD, DF_ELT_GELU_TANH_BWD, DF_ELT_GELU_ERF_BWD, DF_ELT_QUICK_GELU_BWD};
    df_error_t err;
    for (size_t k = 0; k < sizeof bwd / sizeof bwd[0]; k++) {
        df_error_clear(&err);
        const uint64_t n = 4096;
        df_elt_desc d = {.op = bwd[k], .n = n};
        op_tensor x = op_tensor_normal(env, n, DF_F32, 0, 4.0f);
        op_tensor dy = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
        op_tensor dx = op_tensor_output(env, n, DF_F32, 0);
        int rc = df_eltwise(env->batch, &d, x.t, dy.t, dx.t, &err);
        if (!rc)
            rc = op_run_and_read(env, &dx, &err);
        char what[96];
        snprintf(what, sizeof what, "%s against finite differences", df_elt_op_name(bwd[k]));
        int fails = 0;
        if (!rc) {
            double *ref = malloc(n * sizeof *ref), *bound = malloc(n * sizeof *bound);
            const double h = 1e-4;
            for (uint64_t i = 0; i < n; i++) {
                double xi = x.host[i];
                ref[i] = dy.host[i] * (act(bwd[k], xi + h) - act(bwd[k], xi - h)) / (2 * h);
                double v, e;
                reference(&d, xi, dy.host[i], &v, &e);
                bound[i] = e + 1e-8 * fabs(dy.host[i]); /* + the differences' own error */
            }
            fails = op_compare(what, dx.host, ref, bound, n);
            free(ref), free(bound);
        }
        op_case_done(env, what, fails, rc, &err);
        op_tensor_free(&x), op_tensor_free(&dy), op_tensor_free(&dx);
    }
}

void test_op_eltwise_errors(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    op_tensor a = op_tensor_normal(env, 100, DF_F32, 0, 1.0f);
    op_tensor y = op_tensor_output(env, 100, DF_F32, 0);
    df_elt_desc d = {.op = DF_ELT_SILU, .n = 200};
    int bad = 0;
    bad += df_eltwise(env->batch, &d, a.t, a.t, y.t, &err) != DF_E_RANGE || !strstr(err.msg, "silu: a needs bytes");
    df_error_clear(&err);
    d.n = 0;
    bad += df_eltwise(env->batch, &d, a.t, a.t, y.t, &err) != DF_E_INVALID;
    df_error_clear(&err);
    d = (df_elt_desc){.op = DF_ELT_MUL, .n = 100, .b_count = 5, .b_inner = 0};
    bad += df_eltwise(env->batch, &d, a.t, a.t, y.t, &err) != DF_E_INVALID || !strstr(err.msg, "b_inner");
    df_error_clear(&err);
    d = (df_elt_desc){.op = (df_elt_op)99, .n = 100};
    bad += df_eltwise(env->batch, &d, a.t, a.t, y.t, &err) != DF_E_INVALID;
    df_error_clear(&err);
    d = (df_elt_desc){.op = DF_ELT_COPY, .n = 100};
    df_tensor wrong = y.t;
    wrong.dtype = DF_I32;
    bad += df_eltwise(env->batch, &d, a.t, a.t, wrong, &err) != DF_E_UNSUPPORTED;
    df_error_clear(&err);
    /* The bound is tight enough to tell GELU's two forms apart. */
    d = (df_elt_desc){.op = DF_ELT_GELU_TANH, .n = 100};
    int rc = df_eltwise(env->batch, &d, a.t, a.t, y.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &y, &err);
    double ref[100], bound[100];
    df_elt_desc erfd = {.op = DF_ELT_GELU_ERF, .n = 100};
    for (int i = 0; i < 100; i++)
        reference(&erfd, a.host[i], 0, &ref[i], &bound[i]);
    int mismatches = 0;
    for (int i = 0; i < 100; i++)
        mismatches += fabs(y.host[i] - ref[i]) > bound[i];
    bad += rc != 0 || mismatches < 50;
    op_case_done(env, "eltwise error paths", bad, 0, NULL);
    if (bad)
        fprintf(stderr, "  FAIL eltwise error paths: %d checks\n", bad);
    op_tensor_free(&a), op_tensor_free(&y);
}
