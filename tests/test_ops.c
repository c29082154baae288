/*  test_ops.c - one harness over the op table: every op against its
 *  double-precision reference on random shapes (odd sizes, f32/f16,
 *  unaligned operands, broadcasts), every backward against finite
 *  differences, and every error path. `test_ops NAME` runs the entries
 *  whose name contains NAME. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops/ops_tests.h"
#include "test.h"
#include "test_support.h"
#include "vk_instance.h"

typedef struct {
    const char *name;
    void (*run)(op_env *env);
} op_entry;

static const op_entry k_table[] = {
    {"eltwise", test_op_eltwise},
    {"eltwise_bwd_fd", test_op_eltwise_bwd_fd},
    {"eltwise_errors", test_op_eltwise_errors},
    {"norm", test_op_norm},
    {"norm_bwd_fd", test_op_norm_bwd_fd},
    {"norm_errors", test_op_norm_errors},
    {"geglu", test_op_geglu},
    {"copy2d", test_op_copy2d},
    {"dequant", test_op_dequant},
    {"upsample", test_op_upsample},
    {"timestep", test_op_timestep},
    {"mse", test_op_mse},
    {"optim", test_op_optim},
    {"adamw8", test_op_adamw8},
    {"noise", test_op_noise},
    {"softmax", test_op_softmax},
    {"attention", test_op_attention},
    {"attention_errors", test_op_attention_errors},
    {"attention_split", test_op_attention_split},
    {"attention_bwd_fd", test_op_attention_bwd_fd},
    {"gemm_epilogue", test_op_gemm_epilogue},
    {"gemm_errors", test_op_gemm_errors},
    {"conv2d", test_op_conv2d},
    {"conv2d_errors", test_op_conv2d_errors},
};

/* NAME is a comma-separated list; an entry runs when its name contains one. */
static int filter_matches(const char *filter, const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", filter);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (strstr(name, tok))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    /* test_ops [--portable] [--max-bind BYTES] [NAME]: --portable forces the
     * GPU kernels (for ops that have a CPU-driver layout too: GEMM, attention,
     * the norms' subgroup reductions) so both paths are tested here; --max-bind shrinks the device's largest binding so
     * small cases exercise the splitting that tensors over 128 MiB need. */
    int portable = 0;
    uint64_t max_bind = 0;
    int a = 1;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
        if (strcmp(argv[a], "--portable") == 0) {
            portable = 1;
        } else if (strcmp(argv[a], "--max-bind") == 0 && a + 1 < argc) {
            max_bind = strtoull(argv[++a], NULL, 10);
        } else {
            fprintf(stderr, "usage: test_ops [--portable] [--max-bind BYTES] [NAME[,NAME...]]\n");
            return 2;
        }
    }
    test_filter_ = a < argc ? argv[a] : NULL;
    const char *filter = test_filter_;
    uint32_t index;
    df_error_t err;
    df_error_clear(&err);
    df_vk_instance_t *inst = test_open_instance(&index);
    if (!inst)
        return 1;
    op_env env = {0};
    env.seed = 2024;
    env.windowed = max_bind != 0;
    df_vk_device_opts dopts = {.portable_kernels = portable, .max_bind_bytes = max_bind};
    env.dev = df_vk_device_new(inst, index, &dopts, &err);
    env.xfer = env.dev ? df_vk_transfer_new(env.dev, NULL, &err) : NULL;
    env.batch = env.xfer ? df_vk_batch_new(env.dev, 0, &err) : NULL;
    if (!env.batch) {
        fprintf(stderr, "device: %s\n", err.msg);
        return 1;
    }
    int total_fail = 0;
    for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) {
        if (filter && !filter_matches(filter, k_table[i].name))
            continue;
        int before = env.failures, cases_before = env.cases;
        k_table[i].run(&env);
        fprintf(stderr, "%-28s %4d cases  %s\n", k_table[i].name, env.cases - cases_before,
                env.failures == before ? "ok" : "FAILED");
        total_fail += env.failures - before;
    }
    uint32_t verr = df_vk_instance_validation_errors(inst);
    df_vk_batch_destroy(&env.batch);
    df_vk_transfer_destroy(&env.xfer);
    df_vk_device_destroy(&env.dev);
    df_vk_instance_destroy(&inst);
    fprintf(stderr, "%d cases, %d failed, %u validation errors%s%s\n", env.cases, total_fail, verr,
            portable ? " (portable kernels)" : "", max_bind ? " (small bindings)" : "");
    return total_fail || verr ? 1 : 0;
}
