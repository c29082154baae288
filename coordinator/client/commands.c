/*  commands.c - see commands.h. */
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifact_store.h"
#include "fsutil.h"
#include "job.h"
#include "keys.h"
#include "prep_job.h"

/* ------------------------------------------------------------ helpers */

static int parse_uint(const char *flag, const char *v, unsigned long lo, unsigned long hi, uint32_t *out)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        df_cli_error("%s wants a number from %lu to %lu, got '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

static int want_args(int argc, int expected, const char *usage)
{
    if (argc != expected) {
        df_cli_error("usage: dreamfleet %s", usage);
        return -1;
    }
    return 0;
}

/* Fetches a job's status; the reply owns *job. */
int df_cli_get_job(df_cli *cli, const char *id, int with_tasks, Dreamfleet__Reply **rep)
{
    Dreamfleet__JobQuery q = DREAMFLEET__JOB_QUERY__INIT;
    q.job_id = (char *)id;
    q.with_tasks = with_tasks;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_STATUS;
    req.status = &q;
    return df_cli_call(cli, &req, rep);
}

static int exit_for_state(int state)
{
    if (state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED)
        return DF_EXIT_OK;
    if (state == DREAMFLEET__JOB_STATE__JOB_CANCELLED)
        return DF_EXIT_CANCELLED;
    return DF_EXIT_FAILED;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- watch */

static void draw_bar(FILE *out, float f)
{
    int n = (int)(f * 30 + 0.5f);
    fputc('[', out);
    for (int i = 0; i < 30; i++)
        fputc(i < n ? '#' : '.', out);
    fputc(']', out);
}

/* FNV-1a: tells a new preview from the one already written. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Writes the previews that changed since the last poll into dir as
 * <task id>.png (through a temporary file, so a viewer never sees half). */
static void write_previews(const Dreamfleet__JobInfo *j, const char *dir, uint64_t **seen, size_t *nseen)
{
    if (*nseen < j->n_tasks) {
        uint64_t *grown = realloc(*seen, j->n_tasks * sizeof *grown);
        if (!grown)
            return;
        memset(grown + *nseen, 0, (j->n_tasks - *nseen) * sizeof *grown);
        *seen = grown, *nseen = j->n_tasks;
    }
    for (size_t i = 0; i < j->n_tasks; i++) {
        const Dreamfleet__TaskInfo *t = j->tasks[i];
        if (!t->preview.len)
            continue;
        uint64_t h = fnv1a(t->preview.data, t->preview.len);
        if (h == (*seen)[i])
            continue;
        char path[4200], tmp[4300];
        snprintf(path, sizeof path, "%s/%s.png", dir, t->task_id);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        int ok = f && fwrite(t->preview.data, 1, t->preview.len, f) == t->preview.len;
        if (f && fclose(f) != 0)
            ok = 0;
        if (ok && rename(tmp, path) == 0)
            (*seen)[i] = h;
        else
            unlink(tmp);
    }
}

/* Follows a job to its end: live bars on a terminal, one line per change
 * otherwise, newline-delimited JSON with --json; with cli->previews_dir,
 * each running task's latest preview is kept there as a PNG. */
static int watch_job(df_cli *cli, const char *id, int quiet)
{
    int tty = isatty(STDOUT_FILENO) && !cli->json && !quiet;
    int drawn = 0;
    char last[512] = "";
    uint64_t *seen = NULL;
    size_t nseen = 0;
    char *last_json = NULL; /* the last JSON line printed */
    if (cli->previews_dir) {
        df_error_t err;
        if (df_mkdirs(cli->previews_dir, &err) != DF_OK) {
            df_cli_error("--previews: %s", err.msg);
            return DF_EXIT_USAGE;
        }
    }
    for (;;) {
        Dreamfleet__Reply *rep;
        int rc = df_cli_get_job(cli, id, 1, &rep);
        if (rc) {
            free(seen);
            free(last_json);
            return rc;
        }
        const Dreamfleet__JobInfo *j = rep->job;
        int done = df_job_state_terminal(j->state);
        if (cli->previews_dir)
            write_previews(j, cli->previews_dir, &seen, &nseen);
        if (cli->json && !quiet) {
            /* A line per change, not per poll: a long job stays readable. */
            char *line = NULL;
            size_t len = 0;
            FILE *mem = open_memstream(&line, &len);
            if (mem) {
                df_json_job(mem, j);
                fclose(mem);
            }
            if (!line || !last_json || strcmp(line, last_json) != 0) {
                df_json_job(stdout, j);
                fputc('\n', stdout);
            }
            free(last_json);
            last_json = line;
        } else if (tty) {
            if (drawn)
                printf("\033[%dA", drawn);
            drawn = 0;
            printf("\033[K%s %s: %s, %u/%u tasks done\n", j->job_id, j->type, df_job_state_name(j->state),
                   j->tasks_done, j->tasks_total);
            drawn++;
            for (size_t i = 0; i < j->n_tasks && i < 40; i++) {
                const Dreamfleet__TaskInfo *t = j->tasks[i];
                printf("\033[K  %-12s ", t->task_id);
                draw_bar(stdout, t->state == DREAMFLEET__TASK_STATE__TASK_SUCCEEDED ? 1.0f : t->progress);
                printf(" %-9s %s\n", df_task_state_name(t->state), t->worker && *t->worker ? t->worker : "");
                drawn++;
            }
        } else if (!quiet) {
            char line[512];
            snprintf(line, sizeof line, "%s %s: %s, %u/%u tasks done", j->job_id, j->type, df_job_state_name(j->state),
                     j->tasks_done, j->tasks_total);
            if (strcmp(line, last) != 0) {
                puts(line);
                snprintf(last, sizeof last, "%s", line);
            }
        }
        fflush(stdout);
        if (done) {
            if (!cli->json && !quiet) {
                if (j->summary && *j->summary)
                    printf("%s\n", j->summary);
                if (j->error && *j->error)
                    printf("error: %s\n", j->error);
            }
            int code = exit_for_state(j->state);
            df_wire_free(&rep->base);
            free(seen);
            free(last_json);
            return code;
        }
        df_wire_free(&rep->base);
        sleep_ms(250);
    }
}

int df_cmd_watch(df_cli *cli, int argc, char **argv)
{
    static const struct option o[] = {{"previews", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c != 'p') {
            df_cli_error("usage: dreamfleet watch JOB [--previews DIR]");
            return DF_EXIT_USAGE;
        }
        cli->previews_dir = optarg;
    }
    if (optind != argc - 1) {
        df_cli_error("usage: dreamfleet watch JOB [--previews DIR]");
        return DF_EXIT_USAGE;
    }
    return watch_job(cli, argv[optind], 0);
}

/* -------------------------------------------------------------- submit */

int df_cli_submit(df_cli *cli, const char *type, const uint8_t *params, size_t len, uint32_t shards, int wait,
                  char *job_id, size_t cap)
{
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = (char *)type;
    sj.params.data = (uint8_t *)params;
    sj.params.len = len;
    sj.shards = shards;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_SUBMIT;
    req.submit = &sj;
    Dreamfleet__Reply *rep;
    int rc = df_cli_call(cli, &req, &rep);
    if (rc)
        return rc;
    char id[DF_ID_MAX];
    snprintf(id, sizeof id, "%s", rep->job->job_id);
    if (job_id)
        snprintf(job_id, cap, "%s", id);
    if (!wait) {
        if (cli->json) {
            df_json_job(stdout, rep->job);
            fputc('\n', stdout);
        } else {
            printf("%s\n", id);
        }
        df_wire_free(&rep->base);
        return DF_EXIT_OK;
    }
    df_wire_free(&rep->base);
    if (!cli->json)
        fprintf(stderr, "submitted %s\n", id);
    return watch_job(cli, id, 0);
}

int df_cmd_bench(df_cli *cli, int argc, char **argv)
{
    static const struct option o[] = {{"shards", required_argument, NULL, 's'}, {"size", required_argument, NULL, 'n'},
                                      {"reps", required_argument, NULL, 'r'}, {"no-wait", no_argument, NULL, 'w'},
                                      {NULL, 0, NULL, 0}};
    uint32_t shards = 0, size = 0, reps = 0;
    int wait = 1, c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if ((c == 's' && parse_uint("--shards", optarg, 1, 100000, &shards)) ||
            (c == 'n' && parse_uint("--size", optarg, 1, 16384, &size)) ||
            (c == 'r' && parse_uint("--reps", optarg, 1, 100, &reps)) || c == '?')
            return DF_EXIT_USAGE;
        if (c == 'w')
            wait = 0;
    }
    if (optind != argc) {
        df_cli_error("usage: dreamfleet bench [--shards N] [--size M] [--reps R] [--no-wait]");
        return DF_EXIT_USAGE;
    }
    if (!wait && cli->embedded) {
        df_cli_error("--no-wait needs a coordinator (the embedded one stops when this command ends)");
        return DF_EXIT_USAGE;
    }
    Dreamfleet__BenchParams p = DREAMFLEET__BENCH_PARAMS__INIT;
    p.m = p.n = p.k = size;
    p.reps = reps;
    uint8_t buf[64];
    size_t len = dreamfleet__bench_params__pack(&p, buf);
    return df_cli_submit(cli, "bench", buf, len, shards, wait, NULL, 0);
}

int df_cmd_noop(df_cli *cli, int argc, char **argv)
{
    static const struct option o[] = {{"shards", required_argument, NULL, 's'},
                                      {"duration", required_argument, NULL, 'd'},
                                      {"fail-attempts", required_argument, NULL, 'f'},
                                      {"fetch", required_argument, NULL, 'F'},
                                      {"no-wait", no_argument, NULL, 'w'},
                                      {NULL, 0, NULL, 0}};
    uint32_t shards = 0, duration = 0, fails = 0;
    const char *fetch = NULL;
    int wait = 1, c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if ((c == 's' && parse_uint("--shards", optarg, 1, 100000, &shards)) ||
            (c == 'd' && parse_uint("--duration", optarg, 0, 3600000, &duration)) ||
            (c == 'f' && parse_uint("--fail-attempts", optarg, 0, 100, &fails)) || c == '?')
            return DF_EXIT_USAGE;
        if (c == 'F')
            fetch = optarg;
        if (c == 'w')
            wait = 0;
    }
    if (optind != argc) {
        df_cli_error("usage: dreamfleet noop [--shards N] [--duration MS] [--fail-attempts K] [--fetch SHA256] [--no-wait]");
        return DF_EXIT_USAGE;
    }
    if (!wait && cli->embedded) {
        df_cli_error("--no-wait needs a coordinator (the embedded one stops when this command ends)");
        return DF_EXIT_USAGE;
    }
    Dreamfleet__NoopParams p = DREAMFLEET__NOOP_PARAMS__INIT;
    p.duration_ms = duration;
    p.fail_attempts = fails;
    p.fetch = (char *)(fetch ? fetch : "");
    uint8_t buf[256];
    size_t len = dreamfleet__noop_params__get_packed_size(&p);
    if (len > sizeof buf) {
        df_cli_error("--fetch: not a sha256");
        return DF_EXIT_USAGE;
    }
    dreamfleet__noop_params__pack(&p, buf);
    return df_cli_submit(cli, "noop", buf, len, shards, wait, NULL, 0);
}

/* --------------------------------------------------------------- queries */

int df_cmd_status(df_cli *cli, int argc, char **argv)
{
    if (want_args(argc, 2, "status JOB"))
        return DF_EXIT_USAGE;
    Dreamfleet__Reply *rep;
    int rc = df_cli_get_job(cli, argv[1], 1, &rep);
    if (rc)
        return rc;
    if (cli->json) {
        df_json_job(stdout, rep->job);
        fputc('\n', stdout);
    } else {
        df_print_job(stdout, rep->job, 1);
    }
    df_wire_free(&rep->base);
    return DF_EXIT_OK;
}

int df_cmd_cancel(df_cli *cli, int argc, char **argv)
{
    if (want_args(argc, 2, "cancel JOB"))
        return DF_EXIT_USAGE;
    Dreamfleet__JobQuery q = DREAMFLEET__JOB_QUERY__INIT;
    q.job_id = argv[1];
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_CANCEL;
    req.cancel = &q;
    Dreamfleet__Reply *rep;
    int rc = df_cli_call(cli, &req, &rep);
    if (rc)
        return rc;
    if (cli->json) {
        df_json_job(stdout, rep->job);
        fputc('\n', stdout);
    } else {
        printf("%s cancelled\n", rep->job->job_id);
    }
    df_wire_free(&rep->base);
    return DF_EXIT_OK;
}

int df_cmd_jobs(df_cli *cli, int argc, char **argv)
{
    static const struct option o[] = {{"limit", required_argument, NULL, 'l'}, {NULL, 0, NULL, 0}};
    uint32_t limit = 20;
    int c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1)
        if (c != 'l' || parse_uint("--limit", optarg, 0, 1000000, &limit))
            return DF_EXIT_USAGE;
    Dreamfleet__ListJobs q = DREAMFLEET__LIST_JOBS__INIT;
    q.limit = limit;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_JOBS;
    req.jobs = &q;
    Dreamfleet__Reply *rep;
    int rc = df_cli_call(cli, &req, &rep);
    if (rc)
        return rc;
    const Dreamfleet__JobList *l = rep->jobs;
    if (cli->json) {
        fputc('[', stdout);
        for (size_t i = 0; l && i < l->n_jobs; i++) {
            if (i)
                fputc(',', stdout);
            df_json_job(stdout, l->jobs[i]);
        }
        fputs("]\n", stdout);
    } else if (!l || l->n_jobs == 0) {
        printf("no jobs\n");
    } else {
        for (size_t i = 0; i < l->n_jobs; i++)
            df_print_job(stdout, l->jobs[i], 0);
    }
    df_wire_free(&rep->base);
    return DF_EXIT_OK;
}

int df_cmd_workers(df_cli *cli, int argc, char **argv)
{
    (void)argv;
    if (want_args(argc, 1, "workers"))
        return DF_EXIT_USAGE;
    Dreamfleet__ListWorkers q = DREAMFLEET__LIST_WORKERS__INIT;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_WORKERS;
    req.workers = &q;
    Dreamfleet__Reply *rep;
    int rc = df_cli_call(cli, &req, &rep);
    if (rc)
        return rc;
    const Dreamfleet__WorkerList *l = rep->workers;
    uint64_t now = df_wall_ms();
    char ago[32];
    if (cli->json)
        fputc('[', stdout);
    else if (!l || !l->n_workers)
        printf("no workers\n");
    for (size_t i = 0; l && i < l->n_workers; i++) {
        const Dreamfleet__WorkerInfo *w = l->workers[i];
        if (cli->json) {
            fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
            df_json_str(stdout, w->name);
            fputs(",\"id\":", stdout);
            df_json_str(stdout, w->worker_id);
            printf(",\"alive\":%s,\"running\":%u,\"slots\":%u,\"tasks_done\":%" PRIu64 ",\"tasks_failed\":%" PRIu64
                   ",\"last_seen_ms\":%" PRIu64 ",\"devices\":[",
                   w->alive ? "true" : "false", w->running, w->slots, w->tasks_done, w->tasks_failed, w->last_seen_ms);
            for (size_t d = 0; d < w->n_devices; d++) {
                fputs(d ? "," : "", stdout);
                df_json_str(stdout, w->devices[d]->name);
            }
            fputs("]}", stdout);
        } else {
            printf("%-20s %-5s %u/%u busy  %" PRIu64 " done  %" PRIu64 " failed  seen %s  ", w->name,
                   w->alive ? "alive" : "lost", w->running, w->slots, w->tasks_done, w->tasks_failed,
                   df_ago(w->last_seen_ms, now, ago, sizeof ago));
            for (size_t d = 0; d < w->n_devices; d++)
                printf("%s%s (%s, %.1f GiB)", d ? ", " : "", w->devices[d]->name, w->devices[d]->type,
                       w->devices[d]->memory_bytes / 1073741824.0);
            printf("\n");
        }
    }
    if (cli->json)
        fputs("]\n", stdout);
    df_wire_free(&rep->base);
    return DF_EXIT_OK;
}

int df_cmd_stats(df_cli *cli, int argc, char **argv)
{
    (void)argv;
    if (want_args(argc, 1, "stats"))
        return DF_EXIT_USAGE;
    Dreamfleet__StatsQuery q = DREAMFLEET__STATS_QUERY__INIT;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_STATS;
    req.stats = &q;
    Dreamfleet__Reply *rep;
    int rc = df_cli_call(cli, &req, &rep);
    if (rc)
        return rc;
    const Dreamfleet__Stats *s = rep->stats;
    if (cli->json) {
        printf("{\"jobs_total\":%" PRIu64 ",\"queue_depth\":%" PRIu64 ",\"tasks\":{\"assigned\":%" PRIu64
               ",\"running\":%" PRIu64 ",\"succeeded\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"cancelled\":%" PRIu64
               "},\"workers_alive\":%u,\"workers_known\":%u,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
               ",\"messages_in\":%" PRIu64 ",\"messages_out\":%" PRIu64 ",\"messages_rejected\":%" PRIu64
               ",\"latency_sum_ms\":%.1f,\"uptime_ms\":%" PRIu64 "}\n",
               s->jobs_total, s->queue_depth, s->tasks_assigned, s->tasks_running, s->tasks_succeeded,
               s->tasks_failed, s->tasks_cancelled, s->workers_alive, s->workers_known, s->bytes_in, s->bytes_out,
               s->messages_in, s->messages_out, s->messages_rejected, s->latency_sum_ms, s->uptime_ms);
    } else {
        uint64_t n = s->n_latency_counts ? s->latency_counts[s->n_latency_counts - 1] : 0;
        printf("jobs %" PRIu64 ", queue %" PRIu64 ", tasks: %" PRIu64 " assigned, %" PRIu64 " running, %" PRIu64
               " succeeded, %" PRIu64 " failed, %" PRIu64 " cancelled\n",
               s->jobs_total, s->queue_depth, s->tasks_assigned, s->tasks_running, s->tasks_succeeded,
               s->tasks_failed, s->tasks_cancelled);
        printf("workers %u alive of %u known; messages %" PRIu64 " in, %" PRIu64 " out, %" PRIu64
               " rejected; bytes %" PRIu64 " in, %" PRIu64 " out\n",
               s->workers_alive, s->workers_known, s->messages_in, s->messages_out, s->messages_rejected, s->bytes_in,
               s->bytes_out);
        printf("task latency: %" PRIu64 " tasks, mean %.1f ms; up %.0f s\n", n, n ? s->latency_sum_ms / (double)n : 0.0,
               s->uptime_ms / 1000.0);
    }
    df_wire_free(&rep->base);
    return DF_EXIT_OK;
}

/* ---------------------------------------------------------------- fetch */

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        df_cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int df_cmd_fetch(df_cli *cli, int argc, char **argv)
{
    static const struct option o[] = {{"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
    const char *outdir = NULL;
    int c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "o:", o, NULL)) != -1) {
        if (c != 'o')
            return DF_EXIT_USAGE;
        outdir = optarg;
    }
    if (optind != argc - 1 || !outdir) {
        df_cli_error("usage: dreamfleet fetch JOB -o DIR");
        return DF_EXIT_USAGE;
    }
    const char *id = argv[optind];
    Dreamfleet__Reply *rep;
    int rc = df_cli_get_job(cli, id, 1, &rep);
    if (rc)
        return rc;
    const Dreamfleet__JobInfo *j = rep->job;
    if (!df_job_state_terminal(j->state)) {
        df_cli_error("%s is still %s; fetch it when it has finished (or `dreamfleet watch %s`)", j->job_id,
                     df_job_state_name(j->state), j->job_id);
        df_wire_free(&rep->base);
        return DF_EXIT_FAILED;
    }
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", outdir, j->job_id);
    mkdir(outdir, 0755);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        df_cli_error("%s: %s", dir, strerror(errno));
        df_wire_free(&rep->base);
        return DF_EXIT_FAILED;
    }
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    char text[2048];
    snprintf(text, sizeof text, "%s %s %s\n%s%s%s\n", j->job_id, j->type, df_job_state_name(j->state), j->summary,
             j->error && *j->error ? "\nerror: " : "", j->error ? j->error : "");
    rc = write_file(path, text, strlen(text));
    int files = 1;
    snprintf(path, sizeof path, "%s/result.pb", dir);
    if (!rc && j->result.len) {
        rc = write_file(path, j->result.data, j->result.len);
        files++;
    }
    /* A prep job's result is a training set: written out as one (its
     * artifacts are its images, named there). */
    const int is_set = strcmp(j->type, "prep") == 0 && j->state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED;
    if (!rc && is_set) {
        char set_dir[4300];
        snprintf(set_dir, sizeof set_dir, "%s/dataset", dir);
        df_prep_report prep;
        rc = df_prep_fetch_set(cli, j->job_id, j->result.data, j->result.len, set_dir, &prep) == DF_EXIT_OK ? 0 : -1;
        files += rc ? 0 : (int)prep.accepted * 2 + 3;
        df_prep_report_free(&prep);
    }
    /* Each task's output, then every artifact it produced. */
    df_error_t err;
    df_error_clear(&err);
    snprintf(path, sizeof path, "%s/.store", dir);
    df_artifacts_t *store = rc ? NULL : df_artifacts_new(path, 0, &err);
    if (!rc && !store) {
        df_cli_error("%s", err.msg);
        rc = -1;
    }
    for (size_t i = 0; !rc && i < j->n_tasks; i++) {
        const Dreamfleet__TaskInfo *t = j->tasks[i];
        if (t->output.len) {
            snprintf(path, sizeof path, "%s/%s.pb", dir, t->task_id);
            rc = write_file(path, t->output.data, t->output.len);
            files++;
        }
        for (size_t a = 0; !rc && !is_set && a < t->n_artifacts; a++) {
            if (df_rpc_download(cli->rpc, t->artifacts[a], store, NULL, NULL, &err)) {
                df_cli_error("%s", err.msg);
                rc = -1;
                break;
            }
            char from[4200];
            df_artifacts_path(store, t->artifacts[a], from, sizeof from);
            snprintf(path, sizeof path, "%s/%s", dir, t->artifacts[a]);
            if (rename(from, path) != 0) {
                df_cli_error("%s: %s", path, strerror(errno));
                rc = -1;
            }
            files++;
        }
    }
    df_artifacts_destroy(&store);
    if (!rc) {
        if (cli->json) {
            printf("{\"job\":");
            df_json_str(stdout, j->job_id);
            printf(",\"dir\":");
            df_json_str(stdout, dir);
            printf(",\"files\":%d}\n", files);
        } else {
            printf("%s: %d file%s in %s\n", j->job_id, files, files == 1 ? "" : "s", dir);
        }
    }
    df_wire_free(&rep->base);
    return rc ? DF_EXIT_FAILED : DF_EXIT_OK;
}

/* ---------------------------------------------------------------- model */

static void upload_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\ruploading: %.1f / %.1f MiB", done / 1048576.0, total / 1048576.0);
}

int df_cmd_model(df_cli *cli, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0) {
        if (want_args(argc, 4, "model add NAME PATH"))
            return DF_EXIT_USAGE;
        df_error_t err;
        df_error_clear(&err);
        char hex[DF_SHA256_HEX];
        if (df_rpc_upload(cli->rpc, argv[3], hex, upload_progress, NULL, &err)) {
            if (isatty(STDERR_FILENO))
                fputc('\n', stderr);
            df_cli_error("model add %s: %s", argv[2], err.msg);
            return err.code == DF_E_IO && strstr(err.msg, "no answer") ? DF_EXIT_UNREACHABLE : DF_EXIT_FAILED;
        }
        if (isatty(STDERR_FILENO))
            fputc('\n', stderr);
        Dreamfleet__ModelAdd m = DREAMFLEET__MODEL_ADD__INIT;
        m.name = argv[2];
        m.hash = hex;
        Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
        req.body_case = DREAMFLEET__REQUEST__BODY_MODEL_ADD;
        req.model_add = &m;
        Dreamfleet__Reply *rep;
        int rc = df_cli_call(cli, &req, &rep);
        if (rc)
            return rc;
        df_wire_free(&rep->base);
        if (cli->json) {
            printf("{\"model\":");
            df_json_str(stdout, argv[2]);
            printf(",\"sha256\":\"%s\"}\n", hex);
        } else {
            printf("model %s = %s\n", argv[2], hex);
        }
        return DF_EXIT_OK;
    }
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        Dreamfleet__ListModels q = DREAMFLEET__LIST_MODELS__INIT;
        Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
        req.body_case = DREAMFLEET__REQUEST__BODY_MODELS;
        req.models = &q;
        Dreamfleet__Reply *rep;
        int rc = df_cli_call(cli, &req, &rep);
        if (rc)
            return rc;
        const Dreamfleet__ModelList *l = rep->models;
        if (cli->json)
            fputc('[', stdout);
        else if (!l || !l->n_models)
            printf("no models\n");
        for (size_t i = 0; l && i < l->n_models; i++) {
            if (cli->json) {
                fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
                df_json_str(stdout, l->models[i]->name);
                printf(",\"sha256\":\"%s\",\"size\":%" PRIu64 "}", l->models[i]->hash, l->models[i]->size);
            } else {
                printf("%-24s %s  %.1f MiB\n", l->models[i]->name, l->models[i]->hash,
                       l->models[i]->size / 1048576.0);
            }
        }
        if (cli->json)
            fputs("]\n", stdout);
        df_wire_free(&rep->base);
        return DF_EXIT_OK;
    }
    df_cli_error("usage: dreamfleet model add NAME PATH | dreamfleet model list");
    return DF_EXIT_USAGE;
}

/* ----------------------------------------------------------------- keys */

int df_cmd_keys(int argc, char **argv)
{
    static const struct option o[] = {{"out", required_argument, NULL, 'o'}, {"keys", required_argument, NULL, 'k'},
                                      {NULL, 0, NULL, 0}};
    const char *out = NULL, *keys = NULL;
    int c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'k')
            keys = optarg;
        else
            return DF_EXIT_USAGE;
    }
    df_error_t err;
    df_error_clear(&err);
    int rest = argc - optind;
    if (rest == 0 && out && !keys) {
        if (df_keys_generate(out, &err)) {
            df_cli_error("%s", err.msg);
            return DF_EXIT_FAILED;
        }
        printf("keys for a coordinator, one worker and one client in %s\n"
               "  coordinator: --keys %s\n  workers and clients: copy %s (without coordinator.cert_secret) "
               "to their machines\n  more: dreamfleet keys add worker|client NAME --keys %s --out DIR\n",
               out, out, out, out);
        return DF_EXIT_OK;
    }
    if (rest == 3 && strcmp(argv[optind], "add") == 0 && keys && out) {
        const char *role = argv[optind + 1];
        df_role r;
        if (strcmp(role, "worker") == 0)
            r = DF_ROLE_WORKER;
        else if (strcmp(role, "client") == 0)
            r = DF_ROLE_CLIENT;
        else {
            df_cli_error("keys add: role must be worker or client, not '%s'", role);
            return DF_EXIT_USAGE;
        }
        if (df_keys_add(keys, r, argv[optind + 2], out, &err)) {
            df_cli_error("%s", err.msg);
            return DF_EXIT_FAILED;
        }
        printf("%s %s: keys in %s (copy that directory to it); allowed by %s\n", role, argv[optind + 2], out, keys);
        return DF_EXIT_OK;
    }
    df_cli_error("usage: dreamfleet keys --out DIR | dreamfleet keys add worker|client NAME --keys DIR --out DIR");
    return DF_EXIT_USAGE;
}
