/*  daemon.h - dreamfleet-worker --connect: serves a coordinator.
 *
 *  One executor thread per device runs tasks; the main thread runs a libuv
 *  loop with the DEALER socket, heartbeats and signals. The worker:
 *    - says hello (id, devices, task types, tasks it still holds) and
 *      heartbeats; when the coordinator is silent past the timeout it drops
 *      the connection and reconnects with exponential back-off (Paranoid
 *      Pirate), saying hello again so its tasks are re-adopted;
 *    - keeps every result until the coordinator acknowledges it, resending
 *      after a reconnect, so a coordinator crash loses no finished work;
 *    - reports a failed task and takes the next;
 *    - on SIGTERM finishes its current tasks, delivers their results, says
 *      goodbye and exits.
 */
#ifndef DF_WORKER_DAEMON_H
#define DF_WORKER_DAEMON_H

#include "error.h"
#include "vk_instance.h"
#include "wire.h"

typedef struct {
    const char *connect;    /* coordinator endpoint */
    const char *name;       /* shown in `dreamfleet workers`; default: host name */
    const char *keys_dir;   /* worker.cert_secret + coordinator.cert (required for tcp:// unless insecure) */
    int insecure;
    int device;             /* -1: every device with a compute queue */
    const char *cache_dir;  /* model cache and pipeline caches; NULL: ~/.cache/dreamfleet */
    uint32_t heartbeat_ms;  /* until the coordinator says otherwise (default 1000) */
    uint32_t timeout_ms;    /* coordinator silence before reconnecting (default 5000) */
    int portable_kernels;   /* use the GPU-shaped kernels even on CPU drivers */
    df_vk_instance_t *instance; /* borrowed; NULL: the daemon makes its own */
    int handle_signals;
} df_worker_opts;

typedef struct _df_worker_t df_worker_t;

df_worker_t *df_worker_new(const df_worker_opts *opts, df_error_t *err);
int df_worker_run(df_worker_t *self, df_error_t *err);
/*  Asks for a graceful stop (as SIGTERM does); safe from any thread. */
void df_worker_stop(df_worker_t *self);
void df_worker_destroy(df_worker_t **self_p);

#endif
