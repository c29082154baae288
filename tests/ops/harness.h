/*  harness.h - the op test harness: device set-up, tensors with known
 *  contents, and comparison against references with error bounds.
 *
 *  Each op in the table (test_ops.c) generates cases, computes the expected
 *  result in double precision on the host together with the largest error a
 *  correct kernel may make (derived from the precision: Vulkan's stated
 *  accuracy of exp, division and so on, f32 rounding as a whole ulp since
 *  Vulkan allows rounding toward zero, and the f16 store), runs the device
 *  op, and compares. Backward passes are checked against central finite
 *  differences of the forward reference.
 */
#ifndef DF_TEST_OPS_HARNESS_H
#define DF_TEST_OPS_HARNESS_H

#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"
#include "vk_device.h"
#include "vk_transfer.h"

/* Unit roundoff assumed for f32 arithmetic (a whole ulp) and for the f16 store. */
#define U32 (1.0 / 8388608.0)
#define U16 (1.0 / 1024.0)

typedef struct {
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    df_vk_batch_t *batch;
    uint64_t seed;
    int windowed;   /* the device's bindings were shrunk (--max-bind): ops split their work */
    uint64_t scratch; /* device bytes the last submitted step allocated on top of its operands */
    int failures;   /* cases that failed */
    int cases;
} op_env;

/*  A device tensor with its values on the host as the device sees them
 *  (rounded to dtype). lead places the data that many elements into the
 *  buffer, to test unaligned operands. */
typedef struct {
    df_tensor t;
    df_vk_buffer_t *buf;
    float *host;
    uint64_t n;
} op_tensor;

/*  Random values: normal (scale) or uniform in [lo, hi). */
op_tensor op_tensor_normal(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead, float scale);
op_tensor op_tensor_uniform(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead, float lo, float hi);
op_tensor op_tensor_from(op_env *env, const float *values, uint64_t n, df_dtype dtype, uint32_t lead);
/*  An output tensor, filled with a canary so writes outside it show. */
op_tensor op_tensor_output(op_env *env, uint64_t n, df_dtype dtype, uint32_t lead);
void op_tensor_free(op_tensor *t);

/*  Submits the batch and downloads t into t->host. */
int op_run_and_read(op_env *env, op_tensor *t, df_error_t *err);

/*  Fails the case when the last step's ops allocated more scratch than
 *  limit bytes (the size of their largest input, plus the allocator's
 *  padding): no hidden copies. */
int op_check_scratch(op_env *env, const char *what, uint64_t limit);

/*  The f16 rounding error of a stored result v (when out is f16). */
double op_store_bound(df_dtype out, double v);

/*  Compares got with ref within bound; prints the worst offender and
 *  returns the number of failures. what names the case. */
int op_compare(const char *what, const float *got, const double *ref, const double *bound, uint64_t n);

/*  Records a case outcome in env (and prints it when it failed). */
void op_case_done(op_env *env, const char *what, int failures, int rc, const df_error_t *err);

#endif
