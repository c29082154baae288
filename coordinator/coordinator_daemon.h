/*  daemon.h - the coordinator: a ROUTER socket for workers and clients, the
 *  scheduler, the durable store, the artifact store and the metrics endpoint,
 *  all on one libuv loop.
 *
 *  Each turn of the loop handles a batch of messages, commits the store, and
 *  only then sends what the batch produced, so a crash never leaves a peer
 *  told something the store forgot. A malformed, oversized or unauthorised
 *  message is logged, counted and answered with a ProtocolError; it never
 *  stops the daemon. A store failure does stop it: durability can no longer
 *  be promised.
 *
 *  The daemon is a library so the CLI can embed one in-process (inproc
 *  transport, no keys) when no coordinator is configured.
 */
#ifndef DF_COORDINATOR_DAEMON_H
#define DF_COORDINATOR_DAEMON_H

#include "error.h"
#include "sched.h"
#include "wire.h"

typedef struct {
    const char *bind;       /* tcp://HOST:PORT (PORT may be *), ipc://PATH or inproc://NAME */
    const char *state_dir;  /* created if needed: coordinator.db, artifacts/, cache/ */
    const char *keys_dir;   /* CURVE keys; required for tcp:// unless insecure */
    int insecure;           /* allow tcp:// without CURVE (trusted networks, tests) */
    const char *metrics;    /* HOST:PORT for GET /metrics, or NULL */
    df_sched_opts sched;
    df_wire_limits limits;
    uint64_t max_artifact_bytes; /* 0: no limit */
    int64_t result_cache_bytes;  /* outputs kept for identical requests; 0: 2 GiB, negative: no cache */
    int handle_signals;     /* stop cleanly on SIGTERM/SIGINT (the standalone daemon) */
} df_coordinator_opts;

typedef struct _df_coordinator_t df_coordinator_t;

df_coordinator_t *df_coordinator_new(const df_coordinator_opts *opts, df_error_t *err);
/*  Runs until stopped (df_coordinator_stop, a signal, or a fatal store
 *  error, which is returned). */
int df_coordinator_run(df_coordinator_t *self, df_error_t *err);
/*  Asks a running coordinator to stop; safe from any thread. */
void df_coordinator_stop(df_coordinator_t *self);
void df_coordinator_destroy(df_coordinator_t **self_p);

/*  The endpoint actually bound (with the port filled in for tcp://...:*). */
const char *df_coordinator_endpoint(const df_coordinator_t *self);
/*  The metrics port (0 without --metrics). */
int df_coordinator_metrics_port(const df_coordinator_t *self);

/*  Wall-clock milliseconds, never going backwards within the process. */
uint64_t df_now_ms(void);

#endif
