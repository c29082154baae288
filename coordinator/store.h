/*  store.h - the coordinator's durable state: jobs, tasks and models in
 *  SQLite (WAL mode) under the state directory.
 *
 *  The daemon opens one transaction per turn of its event loop, records every
 *  change in it, commits, and only then sends the messages those changes
 *  imply. A kill -9 at any point therefore loses nothing that anyone was told
 *  about: on restart the store has every accepted job and every task's last
 *  durable state. WAL with synchronous=NORMAL makes a commit a write, not an
 *  fsync: safe against the process dying, at risk only from power loss
 *  between checkpoints, and fast enough to commit tens of thousands of task
 *  transitions a second.
 */
#ifndef DF_STORE_H
#define DF_STORE_H

#include <stdint.h>

#include "error.h"
#include "job.h"

typedef struct _df_store_t df_store_t;

/*  Opens or creates the database at path; a database of a newer schema
 *  version is refused (DF_E_UNSUPPORTED). */
df_store_t *df_store_open(const char *path, df_error_t *err);
void df_store_close(df_store_t **self_p);

/*  Starts a transaction unless one is open. */
int df_store_begin(df_store_t *self, df_error_t *err);
/*  Commits the open transaction (no-op when none). */
int df_store_commit(df_store_t *self, df_error_t *err);
int df_store_in_transaction(const df_store_t *self);

/*  Inserts a new job and all its tasks. */
int df_store_insert_job(df_store_t *self, const df_job *job, df_error_t *err);
/*  Writes the job's own row (state, error, result, summary). */
int df_store_update_job(df_store_t *self, const df_job *job, df_error_t *err);
/*  Writes one task's row. */
int df_store_update_task(df_store_t *self, const df_task *task, df_error_t *err);

/*  Calls on_job for every stored job, oldest first, with its tasks; the
 *  callback takes ownership of the job. Stops at the first non-zero return. */
int df_store_load_jobs(df_store_t *self, int (*on_job)(void *ctx, df_job *job), void *ctx, df_error_t *err);

/*  The largest job sequence number stored (0 for none). */
int df_store_max_seq(df_store_t *self, uint64_t *seq, df_error_t *err);

int df_store_put_model(df_store_t *self, const char *name, const char *hash, uint64_t size, uint64_t added_ms,
                       df_error_t *err);
int df_store_list_models(df_store_t *self,
                         int (*on_model)(void *ctx, const char *name, const char *hash, uint64_t size, uint64_t added_ms),
                         void *ctx, df_error_t *err);

/*  Small key/value settings (the coordinator's id). *value is malloc'd, NULL
 *  when absent. */
int df_store_get_meta(df_store_t *self, const char *key, char **value, df_error_t *err);
int df_store_set_meta(df_store_t *self, const char *key, const char *value, df_error_t *err);

#endif
