/*  cli.c - see cli.h. */
#include "cli.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job.h"

void df_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dreamfleet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int df_cli_connect(df_cli *cli)
{
    df_error_t err;
    df_error_clear(&err);
    const char *endpoint = cli->coordinator;
    if (!endpoint) {
        cli->embedded = df_embedded_start(cli->state_dir, &err);
        if (!cli->embedded) {
            df_cli_error("cannot start the embedded coordinator and worker: %s", err.msg);
            return DF_EXIT_FAILED;
        }
        endpoint = df_embedded_endpoint(cli->embedded);
    }
    df_rpc_opts o = {.endpoint = endpoint, .keys_dir = cli->keys_dir, .role = DF_ROLE_CLIENT,
                     .insecure = cli->insecure, .timeout_ms = cli->timeout_ms};
    cli->rpc = df_rpc_new(&o, &err);
    if (!cli->rpc) {
        df_cli_error("%s", err.msg);
        return err.code == DF_E_INVALID || err.code == DF_E_NOT_FOUND || err.code == DF_E_FORMAT ? DF_EXIT_USAGE
                                                                                                   : DF_EXIT_UNREACHABLE;
    }
    return DF_EXIT_OK;
}

void df_cli_close(df_cli *cli)
{
    df_rpc_destroy(&cli->rpc);
    df_embedded_stop(&cli->embedded);
}

int df_cli_call(df_cli *cli, Dreamfleet__Request *req, Dreamfleet__Reply **reply)
{
    df_error_t err;
    df_error_clear(&err);
    *reply = NULL;
    if (df_rpc_call(cli->rpc, req, reply, &err)) {
        df_cli_error("%s", err.msg);
        return DF_EXIT_UNREACHABLE;
    }
    if ((*reply)->status) {
        df_cli_error("%s", (*reply)->error && *(*reply)->error ? (*reply)->error : "request failed");
        df_wire_free(&(*reply)->base);
        *reply = NULL;
        return DF_EXIT_FAILED;
    }
    return DF_EXIT_OK;
}

uint64_t df_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *df_ago(uint64_t then_ms, uint64_t now_ms, char *buf, size_t cap)
{
    if (!then_ms) {
        snprintf(buf, cap, "-");
        return buf;
    }
    uint64_t s = now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
    if (s < 120)
        snprintf(buf, cap, "%" PRIu64 "s ago", s);
    else if (s < 7200)
        snprintf(buf, cap, "%" PRIu64 "m ago", s / 60);
    else if (s < 172800)
        snprintf(buf, cap, "%" PRIu64 "h ago", s / 3600);
    else
        snprintf(buf, cap, "%" PRIu64 "d ago", s / 86400);
    return buf;
}

void df_json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void df_json_job(FILE *out, const Dreamfleet__JobInfo *j)
{
    fputs("{\"job\":", out);
    df_json_str(out, j->job_id);
    fputs(",\"type\":", out);
    df_json_str(out, j->type);
    fputs(",\"state\":", out);
    df_json_str(out, df_job_state_name(j->state));
    fprintf(out, ",\"created_ms\":%" PRIu64 ",\"updated_ms\":%" PRIu64 ",\"tasks_total\":%u,\"tasks_done\":%u,"
                 "\"tasks_failed\":%u,\"summary\":",
            j->created_ms, j->updated_ms, j->tasks_total, j->tasks_done, j->tasks_failed);
    df_json_str(out, j->summary);
    fputs(",\"error\":", out);
    df_json_str(out, j->error);
    if (j->n_tasks) {
        fputs(",\"tasks\":[", out);
        for (size_t i = 0; i < j->n_tasks; i++) {
            const Dreamfleet__TaskInfo *t = j->tasks[i];
            fputs(i ? ",{\"task\":" : "{\"task\":", out);
            df_json_str(out, t->task_id);
            fputs(",\"state\":", out);
            df_json_str(out, df_task_state_name(t->state));
            fprintf(out, ",\"attempt\":%u,\"progress\":%.3f,\"worker\":", t->attempt, t->progress);
            df_json_str(out, t->worker);
            fputs(",\"message\":", out);
            df_json_str(out, t->message);
            fputs(",\"error\":", out);
            df_json_str(out, t->error);
            fputc('}', out);
        }
        fputc(']', out);
    }
    fputc('}', out);
}

void df_print_job(FILE *out, const Dreamfleet__JobInfo *j, int with_tasks)
{
    char ago[32];
    uint64_t now = df_wall_ms();
    fprintf(out, "%s  %s  %s  %u/%u tasks done%s  created %s\n", j->job_id, j->type, df_job_state_name(j->state),
            j->tasks_done, j->tasks_total, j->tasks_failed ? " (some failed)" : "", df_ago(j->created_ms, now, ago, sizeof ago));
    if (j->summary && *j->summary)
        fprintf(out, "  %s\n", j->summary);
    if (j->error && *j->error)
        fprintf(out, "  error: %s\n", j->error);
    if (!with_tasks)
        return;
    for (size_t i = 0; i < j->n_tasks; i++) {
        const Dreamfleet__TaskInfo *t = j->tasks[i];
        fprintf(out, "  %-14s %-9s attempt %u  %-16s %3.0f%%  %s\n", t->task_id, df_task_state_name(t->state),
                t->attempt, t->worker && *t->worker ? t->worker : "-", 100.0 * t->progress,
                t->error && *t->error ? t->error : (t->message ? t->message : ""));
    }
}

int df_cli_parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi)) {
        df_cli_error("%s wants a number from %g to %g, not '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}
