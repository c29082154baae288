/*  job.c - see job.h. */
#include "job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

df_job *df_job_new(uint64_t seq, const char *type, uint32_t ntasks)
{
    df_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->tasks = calloc(ntasks ? ntasks : 1, sizeof *job->tasks);
    if (!job->tasks) {
        free(job);
        return NULL;
    }
    job->seq = seq;
    snprintf(job->id, sizeof job->id, "j-%" PRIu64, seq);
    snprintf(job->type, sizeof job->type, "%s", type);
    job->ntasks = ntasks;
    for (uint32_t i = 0; i < ntasks; i++) {
        df_task *t = &job->tasks[i];
        t->job = job;
        t->index = i;
        snprintf(t->id, sizeof t->id, "j-%" PRIu64 ".%u", seq, i);
    }
    return job;
}

void df_job_free(df_job **job_p)
{
    if (!job_p || !*job_p)
        return;
    df_job *job = *job_p;
    for (uint32_t i = 0; i < job->ntasks; i++) {
        df_task *t = &job->tasks[i];
        free(t->params), free(t->message), free(t->error), free(t->output), free(t->artifacts);
    }
    free(job->tasks);
    free(job->params), free(job->error), free(job->result), free(job->summary);
    free(job);
    *job_p = NULL;
}

int df_set_bytes(uint8_t **dst, size_t *dst_len, const void *src, size_t n)
{
    uint8_t *copy = NULL;
    if (src && n) {
        copy = malloc(n);
        if (!copy)
            return -1;
        memcpy(copy, src, n);
    }
    free(*dst);
    *dst = copy;
    *dst_len = copy ? n : 0;
    return 0;
}

int df_set_str(char **dst, const char *src)
{
    char *copy = NULL;
    if (src && *src && !(copy = strdup(src)))
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

int df_task_state_terminal(int state)
{
    return state == DREAMFLEET__TASK_STATE__TASK_SUCCEEDED || state == DREAMFLEET__TASK_STATE__TASK_FAILED ||
           state == DREAMFLEET__TASK_STATE__TASK_CANCELLED;
}

int df_job_state_terminal(int state)
{
    return state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED || state == DREAMFLEET__JOB_STATE__JOB_FAILED ||
           state == DREAMFLEET__JOB_STATE__JOB_CANCELLED;
}

const char *df_task_state_name(int state)
{
    static const char *names[] = {"queued", "assigned", "running", "succeeded", "failed", "cancelled"};
    return state >= 0 && state < 6 ? names[state] : "?";
}

const char *df_job_state_name(int state)
{
    static const char *names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    return state >= 0 && state < 5 ? names[state] : "?";
}

void df_job_counts(const df_job *job, uint32_t *succeeded, uint32_t *failed, uint32_t *terminal)
{
    uint32_t s = 0, f = 0, t = 0;
    for (uint32_t i = 0; i < job->ntasks; i++) {
        int st = job->tasks[i].state;
        s += st == DREAMFLEET__TASK_STATE__TASK_SUCCEEDED;
        f += st == DREAMFLEET__TASK_STATE__TASK_FAILED;
        t += df_task_state_terminal(st);
    }
    if (succeeded)
        *succeeded = s;
    if (failed)
        *failed = f;
    if (terminal)
        *terminal = t;
}
