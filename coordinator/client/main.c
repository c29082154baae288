/*  dreamfleet - the command-line client: submits jobs, shows progress,
 *  fetches results. Without a coordinator configured it runs an embedded
 *  coordinator and worker in-process (see embedded.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_tools.h"
#include "commands.h"
#include "log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dreamfleet [options] COMMAND [args]\n"
            "\n"
            "commands:\n"
            "  workers                       the workers the coordinator knows, their devices and load\n"
            "  jobs [--limit N]              recent jobs, newest first\n"
            "  status JOB                    one job and its tasks\n"
            "  watch JOB                     follow a job to its end, a progress bar per task\n"
            "  cancel JOB                    stop a job\n"
            "  fetch JOB -o DIR              download a finished job's results into DIR/JOB\n"
            "  bench [--shards N] [--size M] run the GEMM self-test on N shards across the workers\n"
            "  noop [--shards N] [--duration MS] [--fail-attempts K] [--fetch SHA256]\n"
            "                                empty tasks, to test a cluster\n"
            "  generate --prompt TEXT --model PATH -o DIR [--size WxH] [--steps N] [--cfg X] [--sampler S]\n"
            "           [--seed N] [-n COUNT] [--negative-prompt TEXT] [...]   images from a prompt (generate --help)\n"
            "  prep DIR -o OUT [--resolution PX] [--token TOK] [--class WORD] [...]\n"
            "                                photos to a training set: checks, captions, resizing (prep --help)\n"
            "  train --data DIR --model PATH -o OUT [--token TOK] [--class WORD] [--steps N] [--rank R]\n"
            "           [--lr X] [...]         a DreamBooth LoRA from the photos in DIR (train --help)\n"
            "  model add NAME PATH           upload a base model and register it\n"
            "  model list\n"
            "  model create-random DIR --config tiny|sdxl [--seed N] [--dtype f32|f16] [--single-file]\n"
            "                                write a model with deterministic random weights (diffusers layout)\n"
            "  stats                         queue, tasks, workers, traffic, latency\n"
            "  keys --out DIR                CURVE keys for a coordinator, a worker and a client\n"
            "  keys add worker|client NAME --keys DIR --out DIR\n"
            "\n"
            "options:\n"
            "  --coordinator ENDPOINT  tcp://HOST:PORT (or env DREAMFLEET_COORDINATOR); without one,\n"
            "                          an embedded coordinator and worker run in this process\n"
            "  --keys DIR              client.cert_secret and coordinator.cert (env DREAMFLEET_KEYS)\n"
            "  --insecure              tcp:// without CURVE (trusted networks only)\n"
            "  --json                  machine-readable output\n"
            "  --timeout MS            how long to wait for each answer (default 10000)\n"
            "  --log-level L           debug, info, warn, error (default warn)\n"
            "\n"
            "exit codes: 0 done, 1 the request or job failed, 2 bad command line,\n"
            "            3 coordinator unreachable or keys refused, 4 job cancelled\n");
}

typedef struct {
    const char *name;
    int (*run)(df_cli *cli, int argc, char **argv);
} command;

static const command k_commands[] = {
    {"workers", df_cmd_workers}, {"jobs", df_cmd_jobs},   {"status", df_cmd_status}, {"watch", df_cmd_watch},
    {"cancel", df_cmd_cancel},   {"fetch", df_cmd_fetch}, {"bench", df_cmd_bench},   {"noop", df_cmd_noop},
    {"model", df_cmd_model},     {"stats", df_cmd_stats}, {"generate", df_cmd_generate}, {"train", df_cmd_train},
};

int main(int argc, char **argv)
{
    enum { O_COORD = 1000, O_KEYS, O_INSECURE, O_JSON, O_TIMEOUT, O_LOG, O_STATE, O_VERSION };
    static const struct option longopts[] = {
        {"coordinator", required_argument, NULL, O_COORD}, {"keys", required_argument, NULL, O_KEYS},
        {"insecure", no_argument, NULL, O_INSECURE},       {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},   {"log-level", required_argument, NULL, O_LOG},
        {"state", required_argument, NULL, O_STATE},       {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},                  {NULL, 0, NULL, 0},
    };
    df_log_set_level(DF_LOG_WARN);
    const char *env_level = getenv("DF_LOG_LEVEL");
    if (env_level && df_log_level_parse(env_level) >= 0)
        df_log_set_level((df_log_level)df_log_level_parse(env_level));
    df_cli cli = {0};
    cli.coordinator = getenv("DREAMFLEET_COORDINATOR");
    if (cli.coordinator && !*cli.coordinator)
        cli.coordinator = NULL;
    cli.keys_dir = getenv("DREAMFLEET_KEYS");
    if (cli.keys_dir && !*cli.keys_dir)
        cli.keys_dir = NULL;
    cli.timeout_ms = 10000;
    int c;
    /* "+": options stop at the command; each command parses its own. */
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case O_COORD: cli.coordinator = optarg; break;
        case O_KEYS: cli.keys_dir = optarg; break;
        case O_INSECURE: cli.insecure = 1; break;
        case O_JSON: cli.json = 1; break;
        case O_STATE: cli.state_dir = optarg; break;
        case O_TIMEOUT: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 10 || v > 3600000) {
                df_cli_error("--timeout wants milliseconds from 10 to 3600000");
                return DF_EXIT_USAGE;
            }
            cli.timeout_ms = (int)v;
            break;
        }
        case O_LOG: {
            int l = df_log_level_parse(optarg);
            if (l < 0) {
                df_cli_error("--log-level wants debug, info, warn or error");
                return DF_EXIT_USAGE;
            }
            df_log_set_level((df_log_level)l);
            break;
        }
        case O_VERSION: printf("dreamfleet %s\n", DF_VERSION); return DF_EXIT_OK;
        case 'h': usage(stdout); return DF_EXIT_OK;
        default: usage(stderr); return DF_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return DF_EXIT_USAGE;
    }
    int cargc = argc - optind;
    char **cargv = argv + optind;
    if (strcmp(cargv[0], "keys") == 0)
        return df_cmd_keys(cargc, cargv);
    if (strcmp(cargv[0], "prep") == 0) { /* local, unless --cluster: connects only then */
        int rc = df_cmd_prep(&cli, cargc, cargv);
        df_cli_close(&cli);
        return rc;
    }
    if (df_model_tools_handles(cargc, cargv))
        return df_model_tools_run(cargc, cargv);
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(cargv[0], k_commands[i].name) == 0)
            cmd = &k_commands[i];
    if (!cmd) {
        df_cli_error("unknown command '%s' (see dreamfleet --help)", cargv[0]);
        return DF_EXIT_USAGE;
    }
    int rc = df_cli_connect(&cli);
    if (rc == DF_EXIT_OK)
        rc = cmd->run(&cli, cargc, cargv);
    df_cli_close(&cli);
    return rc;
}
