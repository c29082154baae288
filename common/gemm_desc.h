/*  gemm_desc.h - the shape of a (batched) GEMM and its plain C reference.
 *
 *      C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],   b = 0 .. batch-1
 *
 *  All matrices are row-major. op(A) is M x K: A is stored M x K (lda >= K), or
 *  K x M when trans_a (lda >= M). op(B) is K x N: B is stored K x N (ldb >= N),
 *  or N x K when trans_b (ldb >= K). C is M x N (ldc >= N). Batch strides are
 *  in elements; a stride of 0 for A or B reuses one matrix for every batch
 *  entry (a weight shared across a batch).
 *
 *  The descriptor is shared by the device op and the reference so both agree
 *  on what a shape means and on which shapes are legal.
 */
#ifndef DF_GEMM_DESC_H
#define DF_GEMM_DESC_H

#include <stdint.h>

#include "dtype.h"
#include "error.h"

typedef struct {
    int trans_a, trans_b;
    uint32_t m, n, k;
    uint32_t batch;               /* >= 1 */
    uint32_t lda, ldb, ldc;       /* leading dimensions, elements */
    uint64_t stride_a, stride_b, stride_c; /* batch strides, elements */
    float alpha, beta;
    df_dtype type_a, type_b, type_c; /* DF_F32 or DF_F16 each */
} df_gemm_desc;

/*  A packed descriptor: leading dimensions equal to the row lengths, batch
 *  strides equal to the matrix sizes, alpha 1, beta 0, all f32. */
df_gemm_desc df_gemm_desc_packed(int trans_a, int trans_b, uint32_t m, uint32_t n,
                                 uint32_t k, uint32_t batch);

/*  Validates dimensions, leading dimensions, strides and types; the message
 *  names the offending field and the bound it broke. */
int df_gemm_desc_check(const df_gemm_desc *d, df_error_t *err);

/*  Elements spanned by each operand across the whole batch (from the first
 *  element to one past the last). */
uint64_t df_gemm_extent_a(const df_gemm_desc *d);
uint64_t df_gemm_extent_b(const df_gemm_desc *d);
uint64_t df_gemm_extent_c(const df_gemm_desc *d);

/*  Floating-point operations: 2*M*N*K*batch. */
double df_gemm_flops(const df_gemm_desc *d);

/*  Reference result in double precision. a, b, c0 hold the operand values as
 *  floats (values of f16 operands already rounded to f16). c0 may be NULL when
 *  beta == 0. Writes, for every element of C in the layout of d:
 *    ref[i]   = alpha * sum_k op(A)op(B) + beta * c0[i]   (exact to double)
 *    bound[i] = the largest error a correct kernel may make, derived from the
 *               precision: fp32 accumulation over K terms in any order
 *               (gamma_{K+2} times the sum of magnitudes: Higham's bound for
 *               summation plus the final alpha/beta update), plus the rounding
 *               of the stored result when C is f16. Vulkan allows fp32
 *               arithmetic and f32->f16 conversion to round to nearest or
 *               toward zero, so the unit roundoff is a whole ulp (2^-23 for
 *               fp32; 2^-10 relative or 2^-24 absolute for the f16 store).
 *  Elements of C outside the M x N windows are left untouched.
 *  Returns DF_E_NOMEM when scratch memory cannot be allocated. */
int df_gemm_reference(const df_gemm_desc *d, const float *a, const float *b, const float *c0,
                      double *ref, double *bound, df_error_t *err);

typedef struct {
    uint64_t checked;   /* elements compared */
    uint64_t failures;  /* elements whose error exceeded the bound */
    double worst_ratio; /* max |got - ref| / bound (0 when every error is 0) */
    uint32_t worst_b, worst_i, worst_j; /* position of the worst ratio */
    double worst_got, worst_ref;
} df_gemm_check_result;

/*  Compares got (C as produced, as floats) to ref within bound. */
void df_gemm_compare(const df_gemm_desc *d, const float *got, const double *ref,
                     const double *bound, df_gemm_check_result *out);

#endif
