/*  test_selftest.c - the worker's --selftest logic in-process (so
 *  LeakSanitizer sees its allocations): it passes on a working device, reports
 *  per-shape lines, rejects a bad device index, and writes a pipeline cache. */
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "selftest.h"
#include "test.h"
#include "test_support.h"
#include "vk_instance.h"

static df_vk_instance_t *g_inst;

static void test_quick_selftest_passes(void)
{
    df_error_t err;
    df_error_clear(&err);
    char dir[] = "/tmp/df_selftest_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    df_selftest_opts opts = {.device = -1, .path = DF_GEMM_AUTO, .quick = 1, .cache_dir = dir};
    CHECK_OK(df_selftest_run(g_inst, &opts, out, &err), &err);
    fclose(out);
    CHECK(strstr(text, "selftest: passed") != NULL);
    CHECK(strstr(text, "17x33x65 (1)") != NULL);
    CHECK(strstr(text, "FAIL") == NULL);
    /* Quick mode skips the timed shapes. */
    CHECK(strstr(text, "1024x1024x1024") == NULL);
    free(text);
    /* One pipeline cache file per device was written. */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls %s/pipelines-*.bin >/dev/null 2>&1", dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_forced_tiled_path(void)
{
    df_error_t err;
    df_error_clear(&err);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    df_selftest_opts opts = {.device = -1, .path = DF_GEMM_TILED, .quick = 1};
    CHECK_OK(df_selftest_run(g_inst, &opts, out, &err), &err);
    fclose(out);
    CHECK(strstr(text, "gemm kernel tiled") != NULL);
    free(text);
}

static void test_bad_device(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_selftest_opts opts = {.device = 42, .path = DF_GEMM_AUTO, .quick = 1};
    FILE *out = fopen("/dev/null", "w");
    CHECK_FAILS(df_selftest_run(g_inst, &opts, out, &err), &err, DF_E_NOT_FOUND, "--device 42");
    fclose(out);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    uint32_t index;
    if (!(g_inst = test_open_instance(&index)))
        return 1;
    RUN(test_quick_selftest_passes);
    RUN(test_forced_tiled_path);
    RUN(test_bad_device);
    CHECK_EQ(df_vk_instance_validation_errors(g_inst), 0);
    df_vk_instance_destroy(&g_inst);
    return test_summary();
}
