/*  sched.h - the coordinator's scheduler: jobs, tasks and workers in memory,
 *  every change written to the store, every decision sent through io.
 *
 *  No sockets and no clock of its own: the daemon feeds it decoded messages
 *  and the time, and flushes what it sends after committing the store. Tests
 *  drive it the same way with a fake clock.
 *
 *  Task life: queued -> assigned (sent to a worker, attempt + 1) -> running
 *  (first progress) -> succeeded | failed | cancelled. A retryable failure or
 *  a lost worker puts the task back in the queue until it has had
 *  max_attempts tries. Results are accepted once: a duplicate (a worker
 *  resending after a reconnect) is acknowledged and ignored, so nothing is
 *  lost and nothing counted twice.
 *
 *  Workers are known by the id in their hello, not by connection: a worker
 *  that reconnects (or finds a restarted coordinator) says hello again with
 *  the tasks it still holds, and keeps them. Tasks of workers that stay
 *  silent past the timeout go back to the queue.
 *
 *  Training jobs of several members (train_group.h) are the exception: a
 *  member whose worker is lost, or that fails in a way another try could
 *  mend, leaves the group (its task ends cancelled) while others go on,
 *  since a member cannot join a group mid-run; the job succeeds with the
 *  members that finished. Only the last member goes back to the queue, and
 *  the job then starts over.
 */
#ifndef DF_SCHED_H
#define DF_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "job.h"
#include "store.h"
#include "wire.h"

typedef struct {
    uint32_t heartbeat_ms;   /* heartbeat interval, both ways (default 1000) */
    uint32_t timeout_ms;     /* silence that declares a worker lost (default 5000) */
    uint32_t max_attempts;   /* default tries per task (default 3) */
    uint32_t adopt_grace_ms; /* after start, time workers have to reclaim their tasks (default timeout_ms) */
    uint32_t join_grace_ms;  /* a training member still queued this long after its group's round began is
                                dropped from the group (default 60000) */
} df_sched_opts;

df_sched_opts df_sched_default_opts(void);

/*  Where the scheduler's messages go: to the peer with the given routing id. */
typedef struct {
    void *ctx;
    void (*send)(void *ctx, const uint8_t *peer, size_t peer_len, df_msg_type type, const ProtobufCMessage *msg);
} df_sched_io;

#define DF_PEER_MAX 256

typedef struct {
    char id[DF_ID_MAX];
    char name[64];
    uint8_t peer[DF_PEER_MAX]; /* current routing id */
    size_t peer_len;
    Dreamfleet__WorkerHello *hello; /* devices and job types, as the worker sent them */
    uint32_t slots, running;
    int alive;
    uint64_t last_seen_ms, last_heartbeat_ms, last_assign_ms;
    uint64_t tasks_done, tasks_failed;
    uint64_t heartbeat_seq;
} df_worker;

typedef struct {
    uint64_t jobs_total;
    uint64_t tasks_by_state[6];  /* indexed by Dreamfleet__TaskState, over all jobs */
    uint32_t workers_alive, workers_known;
    uint64_t latency_counts[12]; /* per bucket of df_sched_latency_bounds, the last +Inf */
    double latency_sum_ms;
} df_sched_counters;

/*  Upper bounds (ms) of the task latency histogram (queued to finished). */
extern const double df_sched_latency_bounds[11];

typedef struct _df_sched_t df_sched_t;

/*  Loads every job from store (which may be NULL for a memory-only
 *  scheduler, as in unit tests). Tasks that were with a worker wait
 *  adopt_grace_ms for it to say hello before going back to the queue. */
df_sched_t *df_sched_new(df_store_t *store, const char *coordinator_id, const df_sched_opts *opts,
                         const df_sched_io *io, uint64_t now_ms, df_error_t *err);
void df_sched_destroy(df_sched_t **self_p);

/*  Answers tasks from cache where their job type can name the output, and
 *  stores what workers return (cache borrowed; NULL: none). */
typedef struct _df_result_cache_t df_result_cache_t;
void df_sched_set_cache(df_sched_t *self, df_result_cache_t *cache);

/*  A worker's hello: registers or refreshes it, re-adopts the tasks it still
 *  holds and answers with HelloAck (listing tasks it should drop). */
int df_sched_hello(df_sched_t *self, const uint8_t *peer, size_t peer_len, const Dreamfleet__WorkerHello *hello,
                   uint64_t now, df_error_t *err);

/*  Heartbeat, TaskProgress, TaskResult, TaskFailure or Goodbye from a
 *  worker. DF_E_STATE when the peer has not said hello (since a restart):
 *  the daemon tells it to. */
int df_sched_worker_message(df_sched_t *self, const uint8_t *peer, size_t peer_len, df_msg_type type,
                            const ProtobufCMessage *msg, uint64_t now, df_error_t *err);

/*  Accepts a job: checks its type and parameters, splits it into tasks,
 *  stores it and queues the tasks. *job (may be NULL) gets the new job. */
int df_sched_submit(df_sched_t *self, const Dreamfleet__SubmitJob *submit, uint64_t now, const df_job **job,
                    df_error_t *err);

/*  Cancels a job that has not finished: queued tasks are dropped, running
 *  ones cancelled on their workers. */
int df_sched_cancel(df_sched_t *self, const char *job_id, uint64_t now, df_error_t *err);

/*  Periodic work: heartbeats to workers, declaring silent workers lost,
 *  returning orphaned tasks to the queue, then dispatch. */
void df_sched_tick(df_sched_t *self, uint64_t now);

/*  Gives queued tasks to workers with free slots, least loaded first. */
int df_sched_dispatch(df_sched_t *self, uint64_t now, df_error_t *err);

const df_job *df_sched_job(const df_sched_t *self, const char *job_id);
uint32_t df_sched_job_count(const df_sched_t *self);
const df_job *df_sched_job_at(const df_sched_t *self, uint32_t i); /* oldest first */
uint32_t df_sched_worker_count(const df_sched_t *self);
const df_worker *df_sched_worker_at(const df_sched_t *self, uint32_t i);
const df_worker *df_sched_worker_by_peer(const df_sched_t *self, const uint8_t *peer, size_t peer_len);
void df_sched_counters_get(const df_sched_t *self, df_sched_counters *out);
/*  Tasks waiting in the queue. */
uint64_t df_sched_queue_depth(const df_sched_t *self);

/*  The first store error the scheduler met, DF_OK if none. After one the
 *  daemon must stop: it can no longer promise durability. */
int df_sched_store_status(const df_sched_t *self, df_error_t *err);

#endif
