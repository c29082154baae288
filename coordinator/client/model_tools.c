/*  model_tools.c - see model_tools.h.
 *
 *    dreamfleet model create-random DIR --config tiny|sdxl [--seed N] [--dtype f32|f16]
 *    dreamfleet model create-random FILE.safetensors --single-file --config tiny|sdxl [...]
 */
#include "model_tools.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "random_model.h"

int df_model_tools_handles(int argc, char **argv)
{
    return argc >= 2 && strcmp(argv[0], "model") == 0 && strcmp(argv[1], "create-random") == 0;
}

static int create_random(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"dtype", required_argument, NULL, 'd'},
        {"single-file", no_argument, NULL, '1'},
        {NULL, 0, NULL, 0},
    };
    const char *usage = "usage: dreamfleet model create-random DIR|FILE --config tiny|sdxl [--seed N] [--dtype f32|f16] "
                        "[--single-file]";
    int single = 0;
    df_sdxl_preset preset = DF_SDXL_PRESET_TINY;
    int have_preset = 0;
    uint64_t seed = 0;
    df_dtype dtype = DF_F32;
    int dtype_given = 0, c;
    optind = 0; /* GNU getopt: 0 restarts the scan after main's own parse */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (strcmp(optarg, "tiny") == 0)
                preset = DF_SDXL_PRESET_TINY;
            else if (strcmp(optarg, "sdxl") == 0)
                preset = DF_SDXL_PRESET_SDXL;
            else {
                df_cli_error("--config wants tiny or sdxl, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            have_preset = 1;
            break;
        case 's': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-') {
                df_cli_error("--seed wants a non-negative integer, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            seed = v;
            break;
        }
        case 'd':
            if (strcmp(optarg, "f32") == 0)
                dtype = DF_F32;
            else if (strcmp(optarg, "f16") == 0)
                dtype = DF_F16;
            else {
                df_cli_error("--dtype wants f32 or f16, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            dtype_given = 1;
            break;
        case '1': single = 1; break;
        default: df_cli_error("%s", usage); return DF_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !have_preset) {
        df_cli_error("%s", usage);
        return DF_EXIT_USAGE;
    }
    /* SDXL's shapes in f32 would be 14 GB; its default is f16 like the real files. */
    if (!dtype_given && preset == DF_SDXL_PRESET_SDXL)
        dtype = DF_F16;
    const char *dir = argv[optind];
    df_error_t err;
    df_error_clear(&err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = single ? df_random_model_create_single(dir, preset, seed, dtype, &err)
                    : df_random_model_create(dir, preset, seed, dtype, &err);
    if (rc != DF_OK) {
        df_cli_error("model create-random %s: %s", dir, err.msg);
        return err.code == DF_E_INVALID ? DF_EXIT_USAGE : DF_EXIT_FAILED;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%s: random %s model (seed %llu, %s%s) written in %.1f s\n", dir, 
           preset == DF_SDXL_PRESET_SDXL ? "sdxl" : "tiny", (unsigned long long)seed, df_dtype_name(dtype),
           single ? ", single file" : "",
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return DF_EXIT_OK;
}

int df_model_tools_run(int argc, char **argv)
{
    /* argv[0] = "model", argv[1] = the subcommand: parse from there. */
    return create_random(argc - 1, argv + 1);
}
