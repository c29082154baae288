/*  dreamfleet-worker - runs dreamfleet's engine on one machine's GPUs.
 *
 *  --connect serves a coordinator (worker/daemon.h); --list-devices prints
 *  the Vulkan device table; --selftest checks and times the GEMM kernel on
 *  each device.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "gemm.h"
#include "log.h"
#include "worker_daemon.h"
#include "component.h"
#include "selftest.h"
#include "vk_instance.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dreamfleet-worker --connect ENDPOINT [--keys DIR | --insecure] [--device N] [--cache DIR]\n"
            "       dreamfleet-worker --list-devices [--device N]\n"
            "       dreamfleet-worker --selftest [--device N] [--quick] [--gemm texel|tiled] [--portable]\n"
            "       dreamfleet-worker component text|unet|vae-encode|vae-decode --model PATH --out FILE [...]\n"
            "                         (one SDXL component on tensors from a file; component --help)\n"
            "\n"
            "  --connect ENDPOINT serve the coordinator at ENDPOINT (tcp://HOST:PORT, ipc://PATH)\n"
            "  --keys DIR        CURVE keys: worker.cert_secret and coordinator.cert (required for tcp://)\n"
            "  --insecure        connect over tcp:// without CURVE (trusted networks only)\n"
            "  --name NAME       how `dreamfleet workers` shows this worker (default: host name)\n"
            "  --heartbeat MS    heartbeat until the coordinator sets it (default 1000)\n"
            "  --timeout MS      coordinator silence before reconnecting (default 5000)\n"
            "  --list-devices    print every Vulkan device and what it supports\n"
            "  --selftest        check GEMM against a C reference on each device (or\n"
            "                    the one given by --device) and print GFLOPS\n"
            "  --device N        use device N of --list-devices (default: --connect uses\n"
            "                    every device, the others the best one: discrete >\n"
            "                    integrated > CPU)\n"
            "  --quick           selftest: skip the timed shapes\n"
            "  --gemm KERNEL     selftest: force a GEMM kernel (texel or tiled)\n"
            "  --portable        use the GPU-shaped kernels (shared memory, subgroup\n"
            "                    reductions) even on a CPU driver, as tests do\n"
            "  --cache DIR       model and pipeline cache (default ~/.cache/dreamfleet)\n"
            "  --validation      enable Vulkan validation layers (when installed)\n"
            "  --log-level L     debug, info, warn, error (default info; env DF_LOG_LEVEL)\n"
            "  --version         print the version\n");
}

int main(int argc, char **argv)
{
    enum { OPT_LIST = 1000, OPT_SELFTEST, OPT_QUICK, OPT_GEMM, OPT_CACHE, OPT_VALIDATION, OPT_LOG, OPT_VERSION,
           OPT_CONNECT, OPT_KEYS, OPT_INSECURE, OPT_NAME, OPT_HB, OPT_TIMEOUT, OPT_PORTABLE };
    static const struct option longopts[] = {
        {"list-devices", no_argument, NULL, OPT_LIST},
        {"selftest", no_argument, NULL, OPT_SELFTEST},
        {"device", required_argument, NULL, 'd'},
        {"quick", no_argument, NULL, OPT_QUICK},
        {"gemm", required_argument, NULL, OPT_GEMM},
        {"portable", no_argument, NULL, OPT_PORTABLE},
        {"cache", required_argument, NULL, OPT_CACHE},
        {"validation", no_argument, NULL, OPT_VALIDATION},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"version", no_argument, NULL, OPT_VERSION},
        {"connect", required_argument, NULL, OPT_CONNECT},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"name", required_argument, NULL, OPT_NAME},
        {"heartbeat", required_argument, NULL, OPT_HB},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_level = getenv("DF_LOG_LEVEL");
    if (env_level && df_log_level_parse(env_level) >= 0)
        df_log_set_level((df_log_level)df_log_level_parse(env_level));
    if (argc >= 2 && strcmp(argv[1], "component") == 0)
        return df_component_main(argc - 1, argv + 1);

    int mode = 0, device = -1, quick = 0, validation = 0;
    df_gemm_path path = DF_GEMM_AUTO;
    int portable = 0;
    const char *cache_dir = NULL;
    df_worker_opts wopts = {.device = -1, .handle_signals = 1};
    int c;
    while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_CONNECT:
            wopts.connect = optarg;
            /* fall through */
        case OPT_LIST:
        case OPT_SELFTEST:
            if (mode && mode != c) {
                fprintf(stderr, "dreamfleet-worker: --connect, --list-devices and --selftest are exclusive\n");
                return 2;
            }
            mode = c;
            break;
        case OPT_KEYS: wopts.keys_dir = optarg; break;
        case OPT_INSECURE: wopts.insecure = 1; break;
        case OPT_NAME: wopts.name = optarg; break;
        case OPT_HB:
        case OPT_TIMEOUT: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || v < 10 || v > 3600000) {
                fprintf(stderr, "dreamfleet-worker: --%s wants milliseconds from 10 to 3600000\n",
                        c == OPT_HB ? "heartbeat" : "timeout");
                return 2;
            }
            if (c == OPT_HB)
                wopts.heartbeat_ms = (uint32_t)v;
            else
                wopts.timeout_ms = (uint32_t)v;
            break;
        }
        case 'd': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 0 || v > 1000) {
                fprintf(stderr, "dreamfleet-worker: --device wants a device number, got '%s'\n", optarg);
                return 2;
            }
            device = (int)v;
            break;
        }
        case OPT_QUICK: quick = 1; break;
        case OPT_PORTABLE:
            portable = 1;
            wopts.portable_kernels = 1;
            break;
        case OPT_GEMM: {
            int p = df_gemm_path_parse(optarg);
            if (p < 0) {
                fprintf(stderr, "dreamfleet-worker: --gemm wants auto, texel or tiled, got '%s'\n", optarg);
                return 2;
            }
            path = (df_gemm_path)p;
            break;
        }
        case OPT_CACHE:
            cache_dir = optarg;
            wopts.cache_dir = optarg;
            if (mkdir(cache_dir, 0755) != 0) {
                struct stat st;
                if (stat(cache_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                    fprintf(stderr, "dreamfleet-worker: --cache %s is not a usable directory\n", cache_dir);
                    return 2;
                }
            }
            break;
        case OPT_VALIDATION: validation = 1; break;
        case OPT_LOG: {
            int l = df_log_level_parse(optarg);
            if (l < 0) {
                fprintf(stderr, "dreamfleet-worker: --log-level wants debug, info, warn or error\n");
                return 2;
            }
            df_log_set_level((df_log_level)l);
            break;
        }
        case OPT_VERSION: printf("dreamfleet-worker %s\n", DF_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dreamfleet-worker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!mode) {
        usage(stderr);
        return 2;
    }

    df_error_t err;
    df_error_clear(&err);
    if (mode == OPT_CONNECT) {
        wopts.device = device;
        df_worker_t *w = df_worker_new(&wopts, &err);
        if (!w) {
            fprintf(stderr, "dreamfleet-worker: %s\n", err.msg);
            return 1;
        }
        int rc = df_worker_run(w, &err);
        df_worker_destroy(&w);
        if (rc) {
            fprintf(stderr, "dreamfleet-worker: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    df_vk_instance_opts iopts = {.validation = validation ? DF_VK_VALIDATION_IF_AVAILABLE : DF_VK_VALIDATION_OFF};
    df_vk_instance_t *inst = df_vk_instance_new(&iopts, &err);
    if (!inst) {
        fprintf(stderr, "dreamfleet-worker: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (mode == OPT_LIST) {
        uint32_t chosen = 0;
        if (df_vk_instance_choose(inst, device, &chosen, &err)) {
            fprintf(stderr, "dreamfleet-worker: %s\n", err.msg);
            rc = 1;
        } else {
            for (uint32_t i = 0; i < df_vk_instance_device_count(inst); i++)
                df_vk_device_info_print(df_vk_instance_device(inst, i), i == chosen, stdout);
            printf("(* = device a worker would use%s)\n", device >= 0 ? ", from --device" : "");
        }
    } else {
        df_selftest_opts sopts = {.device = device, .path = path, .quick = quick, .cache_dir = cache_dir,
                                  .portable_kernels = portable};
        if (df_selftest_run(inst, &sopts, stdout, &err)) {
            fprintf(stderr, "dreamfleet-worker: %s\n", err.msg);
            rc = 1;
        }
    }
    df_vk_instance_destroy(&inst);
    return rc;
}
