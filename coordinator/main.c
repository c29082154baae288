/*  dreamfleet-coordinator - takes jobs from clients, stores them durably and
 *  shards them over workers. See docs/operations.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator_daemon.h"
#include "log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dreamfleet-coordinator --bind ENDPOINT --state DIR [--keys DIR | --insecure] [options]\n"
            "\n"
            "  --bind ENDPOINT     where workers and clients connect: tcp://HOST:PORT, ipc://PATH\n"
            "  --state DIR         jobs, tasks and artifacts live here (created if missing)\n"
            "  --keys DIR          CURVE keys (coordinator.cert_secret, allow/workers, allow/clients);\n"
            "                      required for tcp:// (make them with `dreamfleet keys --out DIR`)\n"
            "  --insecure          accept tcp:// without CURVE (trusted networks only)\n"
            "  --metrics HOST:PORT serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "  --heartbeat MS      heartbeat interval (default 1000)\n"
            "  --timeout MS        silence after which a worker is lost (default 5000)\n"
            "  --max-attempts N    default tries per task (default 3)\n"
            "  --max-message BYTES largest message accepted, before and after decompression (default 64 MiB)\n"
            "  --cache-mib N       outputs kept for identical requests, least recently used out first\n"
            "                      (default 2048; 0: no result cache)\n"
            "  --log-level L       debug, info, warn, error (default info; env DF_LOG_LEVEL)\n"
            "  --version\n");
}

static int parse_u32(const char *flag, const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "dreamfleet-coordinator: %s wants a number from %u to %u, got '%s'\n", flag, lo, hi, v);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_BIND = 1000, O_STATE, O_KEYS, O_INSECURE, O_METRICS, O_HB, O_TIMEOUT, O_ATTEMPTS, O_MAXMSG, O_LOG,
           O_VERSION, O_CACHE };
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, O_BIND},         {"state", required_argument, NULL, O_STATE},
        {"keys", required_argument, NULL, O_KEYS},         {"insecure", no_argument, NULL, O_INSECURE},
        {"metrics", required_argument, NULL, O_METRICS},   {"heartbeat", required_argument, NULL, O_HB},
        {"timeout", required_argument, NULL, O_TIMEOUT},   {"max-attempts", required_argument, NULL, O_ATTEMPTS},
        {"max-message", required_argument, NULL, O_MAXMSG}, {"log-level", required_argument, NULL, O_LOG},
        {"cache-mib", required_argument, NULL, O_CACHE},   {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env_level = getenv("DF_LOG_LEVEL");
    if (env_level && df_log_level_parse(env_level) >= 0)
        df_log_set_level((df_log_level)df_log_level_parse(env_level));
    df_coordinator_opts o = {0};
    o.sched = df_sched_default_opts();
    o.limits = df_wire_default_limits();
    o.handle_signals = 1;
    uint32_t v;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_BIND: o.bind = optarg; break;
        case O_STATE: o.state_dir = optarg; break;
        case O_KEYS: o.keys_dir = optarg; break;
        case O_INSECURE: o.insecure = 1; break;
        case O_METRICS: o.metrics = optarg; break;
        case O_HB:
            if (parse_u32("--heartbeat", optarg, 10, 600000, &o.sched.heartbeat_ms))
                return 2;
            break;
        case O_TIMEOUT:
            if (parse_u32("--timeout", optarg, 50, 3600000, &o.sched.timeout_ms))
                return 2;
            break;
        case O_ATTEMPTS:
            if (parse_u32("--max-attempts", optarg, 1, 100, &o.sched.max_attempts))
                return 2;
            break;
        case O_MAXMSG:
            if (parse_u32("--max-message", optarg, 4096, 1u << 30, &v))
                return 2;
            o.limits.max_message = o.limits.max_frame = v;
            break;
        case O_CACHE:
            if (parse_u32("--cache-mib", optarg, 0, 1u << 24, &v))
                return 2;
            o.result_cache_bytes = v ? (int64_t)v << 20 : -1;
            break;
        case O_LOG: {
            int l = df_log_level_parse(optarg);
            if (l < 0) {
                fprintf(stderr, "dreamfleet-coordinator: --log-level wants debug, info, warn or error\n");
                return 2;
            }
            df_log_set_level((df_log_level)l);
            break;
        }
        case O_VERSION: printf("dreamfleet-coordinator %s\n", DF_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !o.bind || !o.state_dir) {
        if (optind < argc)
            fprintf(stderr, "dreamfleet-coordinator: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (o.sched.timeout_ms <= o.sched.heartbeat_ms) {
        fprintf(stderr, "dreamfleet-coordinator: --timeout (%u) must be longer than --heartbeat (%u)\n",
                o.sched.timeout_ms, o.sched.heartbeat_ms);
        return 2;
    }
    df_error_t err;
    df_error_clear(&err);
    df_coordinator_t *coord = df_coordinator_new(&o, &err);
    if (!coord) {
        fprintf(stderr, "dreamfleet-coordinator: %s\n", err.msg);
        return 1;
    }
    /* Tests and scripts read the bound endpoint from stdout. */
    printf("listening %s\n", df_coordinator_endpoint(coord));
    if (df_coordinator_metrics_port(coord))
        printf("metrics %d\n", df_coordinator_metrics_port(coord));
    fflush(stdout);
    int rc = df_coordinator_run(coord, &err);
    df_coordinator_destroy(&coord);
    if (rc) {
        fprintf(stderr, "dreamfleet-coordinator: %s\n", err.msg);
        return 1;
    }
    return 0;
}
