/*  jobtypes.h - what the coordinator knows about each kind of job: how to
 *  check its parameters and split it into tasks, and how to combine the
 *  tasks' results. Workers hold the other half (worker/tasks.h: how to run a
 *  task).
 */
#ifndef DF_JOBTYPES_H
#define DF_JOBTYPES_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "job.h"

#define DF_MAX_TASKS_PER_JOB 100000

typedef struct {
    const char *name;
    /*  Validates params and says how many tasks the job becomes (given the
     *  client's shard request, 0 meaning the type's default). */
    int (*plan)(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err);
    /*  Fills task i's parameters (job->params already set). */
    int (*task_params)(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err);
    /*  Combines the succeeded tasks' outputs into the job's result and a
     *  one-line summary. */
    int (*finish)(df_job *job, df_error_t *err);
    /*  Device memory one task needs, in bytes (0: any device). Only workers
     *  with a device at least this large get the job's tasks. NULL: 0. */
    uint64_t (*device_bytes)(const uint8_t *params, size_t len);
    /*  Names task i's output by everything it depends on, for the result
     *  cache (result_cache.h): 1 with key (64 hex digits) when it can be
     *  named, and *lookup 0 when the client asked to compute it anyway (what
     *  comes back is still stored); 0 when it cannot be named (an input
     *  without an identity). NULL: never cached. */
    int (*cache_key)(const df_job *job, uint32_t i, char key[65], int *lookup);
} df_jobtype;

/*  The job type called name, or NULL. */
const df_jobtype *df_jobtype_find(const char *name);

/*  Names of all job types, for error messages: "bench, encode, generate, noop, prep, train". */
const char *df_jobtype_names(void);

#endif
