/*  api.h - the coordinator's answers to Request messages: submit, status,
 *  jobs, cancel, workers, models, stats and artifact transfers.
 *
 *  Workers may only stat and fetch artifacts (to pull base models); the
 *  rest is for clients. Every answer is a Reply with the request's id, a
 *  status and, on failure, a message naming the thing and the reason.
 */
#ifndef DF_API_H
#define DF_API_H

#include <czmq.h>

#include "artifact_store.h"
#include "sched.h"
#include "store.h"
#include "wire.h"

typedef struct {
    uint64_t bytes_in, bytes_out;
    uint64_t messages_in, messages_out, messages_rejected;
} df_traffic;

typedef struct {
    df_sched_t *sched;
    df_store_t *store;
    df_artifacts_t *artifacts;
    const df_traffic *traffic;
    const df_wire_limits *limits;
    uint64_t start_ms;
    uint32_t max_chunk; /* largest artifact chunk served */
} df_api;

/*  Answers req from peer (is_worker: the peer authenticated, or introduced
 *  itself, as a worker). Returns the packed [peer][Reply] message, or NULL
 *  when even an error reply cannot be built (out of memory). */
zmsg_t *df_api_handle(df_api *api, const uint8_t *peer, size_t peer_len, int is_worker,
                      const Dreamfleet__Request *req, uint64_t now);

/*  Fills a JobInfo that points into job (valid while job is unchanged);
 *  tasks (with_tasks) are allocated: free with df_api_job_info_free(). */
int df_api_job_info(const df_job *job, int with_tasks, Dreamfleet__JobInfo *info);
void df_api_job_info_free(Dreamfleet__JobInfo *info);

/*  Fills a Stats message from the scheduler and traffic counters. */
void df_api_stats(const df_api *api, uint64_t now, Dreamfleet__Stats *stats, double bounds[11], uint64_t counts[12]);

#endif
