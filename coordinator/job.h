/*  job.h - jobs and their tasks, as the coordinator holds them in memory.
 *
 *  States are the protocol's (Dreamfleet__JobState, Dreamfleet__TaskState) so
 *  what the store keeps, what the scheduler decides and what clients see are
 *  the same numbers.
 */
#ifndef DF_JOB_H
#define DF_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "dreamfleet.pb-c.h"

#define DF_ID_MAX 40

/*  The worker id of tasks answered from the result cache. */
#define DF_CACHE_WORKER "cache"

/*  The largest preview a task keeps (a 1536 px image's latent thumbnail is
 *  about 110 KiB as PNG at worst). */
#define DF_PREVIEW_MAX (256u << 10)

typedef struct df_job df_job;

typedef struct df_task {
    char id[DF_ID_MAX];            /* "<job id>.<index>" */
    df_job *job;
    uint32_t index;
    int state;                     /* Dreamfleet__TaskState */
    uint32_t attempt;              /* tries started so far */
    uint8_t *params;
    size_t params_len;
    char worker_id[DF_ID_MAX];     /* the worker that has (or last had) it */
    char worker_name[64];
    float progress;
    char *message;                 /* last progress message */
    char *error;                   /* last failure */
    uint8_t *output;
    size_t output_len;
    char *artifacts;               /* output hashes, comma-separated; until the task succeeds, the
                                      last checkpoint it reported, which a retry resumes from */
    uint8_t *preview;              /* the latest preview while running (not stored) */
    size_t preview_len;
    uint64_t queued_ms, started_ms, finished_ms;
    struct df_task *qnext;         /* scheduler queue link */
    int in_queue;
} df_task;

struct df_job {
    char id[DF_ID_MAX];            /* "j-<seq>" */
    uint64_t seq;
    char type[32];
    int state;                     /* Dreamfleet__JobState */
    uint8_t *params;
    size_t params_len;
    uint32_t max_attempts;
    uint64_t device_bytes;         /* memory a task needs on one device (from the job type) */
    uint64_t created_ms, updated_ms;
    char *error;
    uint8_t *result;
    size_t result_len;
    char *summary;
    df_task *tasks;
    uint32_t ntasks;
    /* Tasks by final state, kept by df_task_set_state() so progress checks
     * are O(1) however many tasks a job has. */
    uint32_t n_succeeded, n_failed, n_cancelled;
    /* Data-parallel training: the members' rounds (train_group.h), built
     * when first needed; not stored (a restarted coordinator rebuilds it
     * from the members' next messages). */
    struct _df_train_group_t *group;
};

/*  A job with ntasks tasks, ids filled in from seq. NULL when out of memory. */
df_job *df_job_new(uint64_t seq, const char *type, uint32_t ntasks);
void df_job_free(df_job **job_p);

/*  Replaces *dst with a copy of src (NULL or n == 0 clears it). Returns -1 when
 *  out of memory, leaving *dst as it was. */
int df_set_bytes(uint8_t **dst, size_t *dst_len, const void *src, size_t n);
int df_set_str(char **dst, const char *src);

int df_task_state_terminal(int state);
int df_job_state_terminal(int state);
const char *df_task_state_name(int state);
const char *df_job_state_name(int state);

/*  Every change of a task's state goes through here (it keeps the job's counts). */
void df_task_set_state(df_task *t, int state);

/*  Rebuilds the job's counts from its tasks (after loading them). */
void df_job_recount(df_job *job);

/*  Counts of the job's tasks by state (any of the pointers may be NULL). */
void df_job_counts(const df_job *job, uint32_t *succeeded, uint32_t *failed, uint32_t *terminal);

#endif
