/*  ops_tests.h - one function per op family, each running all its cases
 *  (forward against the reference, backward against finite differences). */
#ifndef DF_OPS_TESTS_H
#define DF_OPS_TESTS_H

#include "eltwise.h"
#include "harness.h"

/*  The element-wise reference (test_eltwise.c): the exact value of op at
 *  (a, b) and the error a correct f32 kernel may make; other ops' epilogues
 *  reuse it. */
void op_elt_reference(const df_elt_desc *d, double a, double b, double *val, double *bound);

void test_op_eltwise(op_env *env);
void test_op_eltwise_bwd_fd(op_env *env);
void test_op_eltwise_errors(op_env *env);
void test_op_norm(op_env *env);
void test_op_norm_bwd_fd(op_env *env);
void test_op_norm_errors(op_env *env);
void test_op_geglu(op_env *env);
void test_op_copy2d(op_env *env);
void test_op_dequant(op_env *env);
void test_op_adamw8(op_env *env);
void test_op_upsample(op_env *env);
void test_op_timestep(op_env *env);
void test_op_mse(op_env *env);
void test_op_optim(op_env *env);
void test_op_noise(op_env *env);
void test_op_softmax(op_env *env);
void test_op_attention(op_env *env);
void test_op_attention_errors(op_env *env);
void test_op_attention_split(op_env *env);
void test_op_attention_bwd_fd(op_env *env);
void test_op_conv2d(op_env *env);
void test_op_gemm_epilogue(op_env *env);
void test_op_gemm_errors(op_env *env);
void test_op_conv2d_errors(op_env *env);

#endif
