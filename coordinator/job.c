/*  job.c - see job.h. */
#include "job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_group.h"

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
        free(t->params), free(t->message), free(t->error), free(t->output), free(t->artifacts), free(t->preview);
    }
    free(job->tasks);
    df_train_group_destroy(&job->group);
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

static void count(df_job *job, int state, int delta)
{
    if (state == DREAMFLEET__TASK_STATE__TASK_SUCCEEDED)
        job->n_succeeded += (uint32_t)delta;
    else if (state == DREAMFLEET__TASK_STATE__TASK_FAILED)
        job->n_failed += (uint32_t)delta;
    else if (state == DREAMFLEET__TASK_STATE__TASK_CANCELLED)
        job->n_cancelled += (uint32_t)delta;
}

void df_task_set_state(df_task *t, int state)
{
    count(t->job, t->state, -1);
    t->state = state;
    count(t->job, state, 1);
}

void df_job_recount(df_job *job)
{
    job->n_succeeded = job->n_failed = job->n_cancelled = 0;
    for (uint32_t i = 0; i < job->ntasks; i++)
        count(job, job->tasks[i].state, 1);
}

void df_job_counts(const df_job *job, uint32_t *succeeded, uint32_t *failed, uint32_t *terminal)
{
    if (succeeded)
        *succeeded = job->n_succeeded;
    if (failed)
        *failed = job->n_failed;
    if (terminal)
        *terminal = job->n_succeeded + job->n_failed + job->n_cancelled;
}
