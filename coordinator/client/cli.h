/*  cli.h - what every `dreamfleet` command shares: where the coordinator is,
 *  how to talk to it, and how to print. */
#ifndef DF_CLI_H
#define DF_CLI_H

#include <stdio.h>

#include "embedded.h"
#include "error.h"
#include "rpc.h"

/* Exit codes (documented in `dreamfleet --help` and docs/operations.md). */
enum {
    DF_EXIT_OK = 0,
    DF_EXIT_FAILED = 1,      /* the request or the job failed */
    DF_EXIT_USAGE = 2,       /* bad command line */
    DF_EXIT_UNREACHABLE = 3, /* no answer from the coordinator, or the keys were refused */
    DF_EXIT_CANCELLED = 4,   /* the job was cancelled */
};

typedef struct {
    const char *coordinator; /* NULL: embedded */
    const char *keys_dir;
    const char *state_dir;   /* embedded mode's state (tests); NULL: XDG default */
    int insecure;
    int json;
    int timeout_ms;
    const char *previews_dir; /* watching writes each task's latest preview here (NULL: not) */
    df_rpc_t *rpc;
    df_embedded_t *embedded;
} df_cli;

/*  Connects (or starts the embedded cluster). Prints why on failure and
 *  returns an exit code. */
int df_cli_connect(df_cli *cli);
void df_cli_close(df_cli *cli);

/*  One request; on an error reply or no reply prints the reason and returns
 *  the exit code (0 with *reply set on success). */
int df_cli_call(df_cli *cli, Dreamfleet__Request *req, Dreamfleet__Reply **reply);

/*  Prints "dreamfleet: <message>" to stderr. */
void df_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*  A number from a flag's value, from lo to hi; otherwise prints which flag
 *  wants what and returns -1. */
int df_cli_parse_num(const char *flag, const char *v, double lo, double hi, double *out);

/* JSON output helpers. */
void df_json_str(FILE *out, const char *s);
void df_json_job(FILE *out, const Dreamfleet__JobInfo *job);

/* Human output helpers. */
void df_print_job(FILE *out, const Dreamfleet__JobInfo *job, int with_tasks);
const char *df_ago(uint64_t then_ms, uint64_t now_ms, char *buf, size_t cap);
uint64_t df_wall_ms(void);

#endif
