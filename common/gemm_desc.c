/*  gemm_desc.c - see gemm_desc.h. */
#include "gemm_desc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

df_gemm_desc df_gemm_desc_packed(int trans_a, int trans_b, uint32_t m, uint32_t n,
                                 uint32_t k, uint32_t batch)
{
    df_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.trans_a = trans_a;
    d.trans_b = trans_b;
    d.m = m, d.n = n, d.k = k;
    d.batch = batch;
    d.lda = trans_a ? m : k;
    d.ldb = trans_b ? k : n;
    d.ldc = n;
    d.stride_a = (uint64_t)m * k;
    d.stride_b = (uint64_t)k * n;
    d.stride_c = (uint64_t)m * n;
    d.alpha = 1.0f;
    d.beta = 0.0f;
    d.type_a = d.type_b = d.type_c = DF_F32;
    return d;
}

/* Rows and columns of an operand as stored. */
static void stored_a(const df_gemm_desc *d, uint64_t *rows, uint64_t *cols)
{
    *rows = d->trans_a ? d->k : d->m;
    *cols = d->trans_a ? d->m : d->k;
}

static void stored_b(const df_gemm_desc *d, uint64_t *rows, uint64_t *cols)
{
    *rows = d->trans_b ? d->n : d->k;
    *cols = d->trans_b ? d->k : d->n;
}

static uint64_t extent(uint64_t batch, uint64_t stride, uint64_t rows, uint64_t ld, uint64_t cols)
{
    return (batch - 1) * stride + (rows - 1) * ld + cols;
}

uint64_t df_gemm_extent_a(const df_gemm_desc *d)
{
    uint64_t r, c;
    stored_a(d, &r, &c);
    return extent(d->batch, d->stride_a, r, d->lda, c);
}

uint64_t df_gemm_extent_b(const df_gemm_desc *d)
{
    uint64_t r, c;
    stored_b(d, &r, &c);
    return extent(d->batch, d->stride_b, r, d->ldb, c);
}

uint64_t df_gemm_extent_c(const df_gemm_desc *d)
{
    return extent(d->batch, d->stride_c, d->m, d->ldc, d->n);
}

double df_gemm_flops(const df_gemm_desc *d)
{
    return 2.0 * d->m * (double)d->n * d->k * d->batch;
}

static int check_type(df_dtype t, const char *which, df_error_t *err)
{
    if (t != DF_F32 && t != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "gemm: %s has type %s; only f32 and f16 are supported",
                            which, df_dtype_name(t));
    return DF_OK;
}

int df_gemm_desc_check(const df_gemm_desc *d, df_error_t *err)
{
    if (!d)
        return df_error_set(err, DF_E_INVALID, "gemm: descriptor is NULL");
    if (d->m == 0 || d->n == 0 || d->k == 0 || d->batch == 0)
        return df_error_set(err, DF_E_INVALID,
                            "gemm: empty shape M=%u N=%u K=%u batch=%u (every dimension must be >= 1)",
                            d->m, d->n, d->k, d->batch);
    uint64_t ra, ca, rb, cb;
    stored_a(d, &ra, &ca);
    stored_b(d, &rb, &cb);
    if (d->lda < ca)
        return df_error_set(err, DF_E_INVALID, "gemm: lda=%u is smaller than A's row length %llu",
                            d->lda, (unsigned long long)ca);
    if (d->ldb < cb)
        return df_error_set(err, DF_E_INVALID, "gemm: ldb=%u is smaller than B's row length %llu",
                            d->ldb, (unsigned long long)cb);
    if (d->ldc < d->n)
        return df_error_set(err, DF_E_INVALID, "gemm: ldc=%u is smaller than N=%u", d->ldc, d->n);
    /* C entries of different batch elements must not overlap: every output
     * would otherwise be written twice, in an unspecified order. */
    uint64_t one_c = (uint64_t)(d->m - 1) * d->ldc + d->n;
    if (d->batch > 1 && d->stride_c < one_c)
        return df_error_set(err, DF_E_INVALID,
                            "gemm: stride_c=%llu makes batch entries of C overlap (needs >= %llu)",
                            (unsigned long long)d->stride_c, (unsigned long long)one_c);
    /* Element offsets are 64-bit on the host and 32-bit inside kernels; the op
     * layer splits work so each bound window fits. Keep totals sane. */
    const uint64_t limit = (uint64_t)1 << 40;
    if (df_gemm_extent_a(d) > limit || df_gemm_extent_b(d) > limit || df_gemm_extent_c(d) > limit)
        return df_error_set(err, DF_E_RANGE, "gemm: an operand spans more than 2^40 elements");
    if (!isfinite(d->alpha) || !isfinite(d->beta))
        return df_error_set(err, DF_E_INVALID, "gemm: alpha and beta must be finite");
    int rc;
    if ((rc = check_type(d->type_a, "A", err)) || (rc = check_type(d->type_b, "B", err)) ||
        (rc = check_type(d->type_c, "C", err)))
        return rc;
    return DF_OK;
}

/* Higham's gamma_n = n u / (1 - n u) for fp32. Vulkan lets an implementation
 * round fp32 arithmetic to nearest or toward zero, so the unit roundoff to
 * assume is a whole ulp, 2^-23, not half of one. */
static double gamma_f32(double n)
{
    const double u = 1.0 / 8388608.0;
    return n * u / (1.0 - n * u);
}

int df_gemm_reference(const df_gemm_desc *d, const float *a, const float *b, const float *c0,
                      double *ref, double *bound, df_error_t *err)
{
    int rc = df_gemm_desc_check(d, err);
    if (rc)
        return rc;
    const uint32_t M = d->m, N = d->n, K = d->k;
    /* Pack op(A) (M x K) and op(B) (K x N) row-major so the inner loop is a
     * contiguous axpy over j whatever the transposes. */
    double *ap = malloc(sizeof(double) * M * (size_t)K);
    double *bp = malloc(sizeof(double) * K * (size_t)N);
    double *acc = malloc(sizeof(double) * N);
    double *mag = malloc(sizeof(double) * N);
    if (!ap || !bp || !acc || !mag) {
        free(ap), free(bp), free(acc), free(mag);
        return df_error_set(err, DF_E_NOMEM, "gemm reference: cannot allocate %zu bytes of scratch",
                            sizeof(double) * ((size_t)M * K + (size_t)K * N));
    }
    const double gam = gamma_f32((double)K + 2.0);
    /* Storing f16: the f32->f16 conversion's rounding is also left to the
     * implementation (to nearest or toward zero), so allow one ulp: 2^-10
     * relative for normals, 2^-24 absolute for subnormals. */
    const double u_out = d->type_c == DF_F16 ? 2.0 * DF_HALF_EPS_ROUND : 0.0;
    const double sub_out = d->type_c == DF_F16 ? 1.0 / 16777216.0 : 0.0;
    for (uint32_t bi = 0; bi < d->batch; bi++) {
        const float *A = a + bi * d->stride_a;
        const float *B = b + bi * d->stride_b;
        for (uint32_t i = 0; i < M; i++)
            for (uint32_t k = 0; k < K; k++)
                ap[(size_t)i * K + k] = d->trans_a ? A[(size_t)k * d->lda + i] : A[(size_t)i * d->lda + k];
        for (uint32_t k = 0; k < K; k++)
            for (uint32_t j = 0; j < N; j++)
                bp[(size_t)k * N + j] = d->trans_b ? B[(size_t)j * d->ldb + k] : B[(size_t)k * d->ldb + j];
        for (uint32_t i = 0; i < M; i++) {
            for (uint32_t j = 0; j < N; j++)
                acc[j] = mag[j] = 0.0;
            const double *arow = ap + (size_t)i * K;
            for (uint32_t k = 0; k < K; k++) {
                const double av = arow[k];
                const double aa = fabs(av);
                const double *brow = bp + (size_t)k * N;
                for (uint32_t j = 0; j < N; j++) {
                    acc[j] += av * brow[j];
                    mag[j] += aa * fabs(brow[j]);
                }
            }
            for (uint32_t j = 0; j < N; j++) {
                size_t ci = bi * d->stride_c + (size_t)i * d->ldc + j;
                double cv = (d->beta != 0.0f && c0) ? c0[ci] : 0.0;
                double r = d->alpha * acc[j] + d->beta * cv;
                double e = gam * (fabs(d->alpha) * mag[j] + fabs(d->beta * cv));
                ref[ci] = r;
                bound[ci] = e + u_out * (fabs(r) + e) + sub_out;
            }
        }
    }
    free(ap), free(bp), free(acc), free(mag);
    return DF_OK;
}

void df_gemm_compare(const df_gemm_desc *d, const float *got, const double *ref,
                     const double *bound, df_gemm_check_result *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t bi = 0; bi < d->batch; bi++)
        for (uint32_t i = 0; i < d->m; i++)
            for (uint32_t j = 0; j < d->n; j++) {
                size_t ci = bi * d->stride_c + (size_t)i * d->ldc + j;
                double diff = fabs((double)got[ci] - ref[ci]);
                out->checked++;
                /* NaN compares false everywhere: count it explicitly. */
                int bad = !(diff <= bound[ci]);
                double ratio = bound[ci] > 0 ? diff / bound[ci] : (diff > 0 ? INFINITY : 0);
                if (isnan(diff))
                    ratio = INFINITY;
                if (bad)
                    out->failures++;
                if (ratio > out->worst_ratio || (bad && out->failures == 1)) {
                    out->worst_ratio = ratio;
                    out->worst_b = bi, out->worst_i = i, out->worst_j = j;
                    out->worst_got = got[ci];
                    out->worst_ref = ref[ci];
                }
            }
}
