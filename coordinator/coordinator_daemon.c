/*  daemon.c - see daemon.h. */
#include "coordinator_daemon.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>
#include <uv.h>

#include "api.h"
#include "artifact_store.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "netmsg.h"
#include "result_cache.h"
#include "store.h"
#include "uvzmq.h"
#include "zap.h"

/* Largest artifact chunk served in one reply. */
#define MAX_CHUNK (4u << 20)

struct _df_coordinator_t {
    df_coordinator_opts opts;
    char *bind, *state_dir, *keys_dir, *metrics_addr;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    uv_async_t stop_async;
    zsock_t *router;
    df_uvzmq_t *watch;
    df_zap_t *zap;
    df_store_t *store;
    df_sched_t *sched;
    df_artifacts_t *artifacts;
    df_result_cache_t *cache;
    df_metrics_t *metrics;
    df_api api;
    df_traffic traffic;
    zlist_t *outbox; /* zmsg_t *, sent after the next commit */
    char endpoint[256];
    int lock_fd;
    int fatal;
    df_error_t fatal_err;
    uint64_t rejected_logged;
    int running;
};

uint64_t df_now_ms(void)
{
    static _Atomic uint64_t last;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint64_t prev = atomic_load(&last);
    while (now > prev && !atomic_compare_exchange_weak(&last, &prev, now))
        ;
    return now > prev ? now : prev;
}

/* ---------------------------------------------------------------- output */

static void queue_out(df_coordinator_t *self, zmsg_t *m)
{
    if (m)
        zlist_append(self->outbox, m);
}

/* The scheduler's io: pack now, send after the commit. */
static void sched_send(void *ctx, const uint8_t *peer, size_t peer_len, df_msg_type type, const ProtobufCMessage *msg)
{
    df_coordinator_t *self = ctx;
    df_error_t err;
    df_error_clear(&err);
    zmsg_t *m = df_netmsg_pack(peer, peer_len, type, msg, &self->opts.limits, &err);
    if (!m)
        df_errorf("cannot send %s: %s", df_msg_type_name(type), err.msg);
    queue_out(self, m);
}

static void protocol_error(df_coordinator_t *self, zframe_t *peer, int status, const char *reason)
{
    Dreamfleet__ProtocolError pe = DREAMFLEET__PROTOCOL_ERROR__INIT;
    pe.status = status;
    pe.reason = (char *)reason;
    queue_out(self, df_netmsg_pack(zframe_data(peer), zframe_size(peer), DF_MSG_PROTOCOL_ERROR, &pe.base,
                                   &self->opts.limits, NULL));
}

static void go_fatal(df_coordinator_t *self, const df_error_t *err)
{
    if (self->fatal)
        return;
    self->fatal = 1;
    df_error_set(&self->fatal_err, err->code ? err->code : DF_E_IO, "%s", err->msg);
    df_errorf("stopping: %s", err->msg);
    uv_stop(&self->loop);
}

/* Commit, then send: the order that makes a crash lose nothing promised. */
static void commit_and_flush(df_coordinator_t *self)
{
    df_error_t err;
    df_error_clear(&err);
    if (df_sched_store_status(self->sched, &err) || df_store_commit(self->store, &err)) {
        /* Nothing queued may go out: it may describe state that is not durable. */
        zmsg_t *m;
        while ((m = zlist_pop(self->outbox)))
            zmsg_destroy(&m);
        go_fatal(self, &err);
        return;
    }
    zmsg_t *m;
    while ((m = zlist_pop(self->outbox))) {
        size_t bytes = zmsg_content_size(m);
        if (df_uvzmq_send(self->watch, &m, NULL) == DF_OK) {
            self->traffic.messages_out++;
            self->traffic.bytes_out += bytes;
        }
    }
}

/* ----------------------------------------------------------------- input */

static void reject(df_coordinator_t *self, zframe_t *peer, int status, const char *reason)
{
    self->traffic.messages_rejected++;
    /* Log the first few, then a sample: a flood must not flood the log. */
    if (self->rejected_logged < 20 || self->traffic.messages_rejected % 1000 == 0) {
        self->rejected_logged++;
        df_warn("rejected a message (%llu so far): %s", (unsigned long long)self->traffic.messages_rejected, reason);
    }
    if (peer)
        protocol_error(self, peer, status, reason);
}

static int worker_message(df_msg_type t)
{
    return t == DF_MSG_HELLO || t == DF_MSG_HEARTBEAT || t == DF_MSG_TASK_PROGRESS || t == DF_MSG_TASK_RESULT ||
           t == DF_MSG_TASK_FAILURE || t == DF_MSG_GOODBYE || t == DF_MSG_LORA_DELTA;
}

static void on_message(df_uvzmq_t *z, zmsg_t **msgp, void *ctx)
{
    (void)z;
    df_coordinator_t *self = ctx;
    zmsg_t *msg = *msgp;
    self->traffic.messages_in++;
    self->traffic.bytes_in += zmsg_content_size(msg);
    zframe_t *peer = zmsg_first(msg);
    zframe_t *body = zmsg_next(msg);
    if (!peer || !body || zmsg_size(msg) != 2) {
        reject(self, peer, DF_E_FORMAT, "expected one frame per message");
        return;
    }
    /* With CURVE the ZAP handler labelled the connection "worker:NAME" or
     * "client:NAME"; without it (inproc, --insecure) the message type says. */
    const char *user = zframe_meta(body, "User-Id");
    int is_worker = user && strncmp(user, "worker:", 7) == 0;
    int is_client = user && strncmp(user, "client:", 7) == 0;
    df_error_t err;
    df_error_clear(&err);
    df_msg_type type;
    ProtobufCMessage *m = NULL;
    if (df_wire_decode(zframe_data(body), zframe_size(body), &self->opts.limits, &type, &m, &err)) {
        reject(self, peer, err.code, err.msg);
        return;
    }
    uint64_t now = df_now_ms();
    const uint8_t *pid = zframe_data(peer);
    size_t plen = zframe_size(peer);
    if (worker_message(type)) {
        if (is_client) {
            reject(self, peer, DF_E_INVALID, "a client key cannot act as a worker");
        } else {
            int rc = type == DF_MSG_HELLO
                         ? df_sched_hello(self->sched, pid, plen, (Dreamfleet__WorkerHello *)m, now, &err)
                         : df_sched_worker_message(self->sched, pid, plen, type, m, now, &err);
            if (rc == DF_E_STATE)
                protocol_error(self, peer, rc, err.msg); /* "send a hello first": not an attack */
            else if (rc)
                reject(self, peer, rc, err.msg);
        }
    } else if (type == DF_MSG_REQUEST) {
        int as_worker = is_worker || (!user && df_sched_worker_by_peer(self->sched, pid, plen) != NULL);
        queue_out(self, df_api_handle(&self->api, pid, plen, as_worker, (Dreamfleet__Request *)m, now));
    } else {
        char why[96];
        snprintf(why, sizeof why, "%s is not a message the coordinator accepts", df_msg_type_name(type));
        reject(self, peer, DF_E_INVALID, why);
    }
    df_wire_free(m);
}

static void after_batch(df_uvzmq_t *z, void *ctx)
{
    (void)z;
    df_coordinator_t *self = ctx;
    df_error_t err;
    df_error_clear(&err);
    if (df_sched_dispatch(self->sched, df_now_ms(), &err) == DF_OK)
        commit_and_flush(self);
    else
        go_fatal(self, &err);
}

static void on_tick(uv_timer_t *t)
{
    df_coordinator_t *self = t->data;
    df_sched_tick(self->sched, df_now_ms());
    commit_and_flush(self);
}

static void on_stop(df_coordinator_t *self)
{
    if (!self->running)
        return;
    self->running = 0;
    commit_and_flush(self);
    uv_stop(&self->loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
    df_info("signal %d: stopping", signum);
    on_stop(s->data);
}

static void on_async(uv_async_t *a) { on_stop(a->data); }

/* ------------------------------------------------------------- lifecycle */

static int setup_router(df_coordinator_t *self, df_error_t *err)
{
    const char *bind = self->bind;
    int tcp = strncmp(bind, "tcp://", 6) == 0;
    if (tcp && !self->keys_dir && !self->opts.insecure)
        return df_error_set(err, DF_E_INVALID,
                            "%s: TCP needs CURVE keys: give --keys DIR (make them with `dreamfleet keys --out DIR`), "
                            "or --insecure on a trusted network",
                            bind);
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        return df_error_set(err, DF_E_NOMEM, "cannot create a socket");
    zsock_set_sndhwm(self->router, 100000);
    zsock_set_rcvhwm(self->router, 100000);
    zsock_set_linger(self->router, 1000);
    /* libzmq drops a peer that sends more than this, before allocating it. */
    zsock_set_maxmsgsize(self->router, (int)(self->opts.limits.max_frame + 4096));
    if (self->keys_dir && (tcp || strncmp(bind, "ipc://", 6) == 0)) {
        zcert_t *cert = df_keys_load(self->keys_dir, "coordinator.cert_secret", err);
        if (!cert)
            return err ? err->code : DF_E_NOT_FOUND;
        self->zap = df_zap_new(&self->loop, self->keys_dir, err);
        if (!self->zap) {
            zcert_destroy(&cert);
            return err ? err->code : DF_E_STATE;
        }
        zcert_apply(cert, self->router);
        zcert_destroy(&cert);
        zsock_set_curve_server(self->router, 1);
        zsock_set_zap_domain(self->router, "dreamfleet");
        zsock_set_zap_enforce_domain(self->router, 1);
    }
    if (zsock_bind(self->router, "%s", bind) < 0)
        return df_error_set(err, DF_E_IO, "bind %s: %s", bind, zmq_strerror(zmq_errno()));
    char *ep = zsock_last_endpoint(self->router);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", ep ? ep : bind);
    free(ep);
    self->watch = df_uvzmq_new(&self->loop, self->router, on_message, after_batch, self, err);
    return self->watch ? DF_OK : (err ? err->code : DF_E_IO);
}

static int open_state(df_coordinator_t *self, df_error_t *err)
{
    if (mkdir(self->state_dir, 0755) != 0 && errno != EEXIST)
        return df_error_set(err, DF_E_IO, "--state %s: %s", self->state_dir, strerror(errno));
    char path[4096];
    /* One coordinator per state directory: two would run every task twice. */
    snprintf(path, sizeof path, "%s/lock", self->state_dir);
    self->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return df_error_set(err, DF_E_STATE, "--state %s is in use by another coordinator", self->state_dir);
    snprintf(path, sizeof path, "%s/coordinator.db", self->state_dir);
    self->store = df_store_open(path, err);
    if (!self->store)
        return err ? err->code : DF_E_IO;
    snprintf(path, sizeof path, "%s/artifacts", self->state_dir);
    self->artifacts = df_artifacts_new(path, self->opts.max_artifact_bytes, err);
    if (!self->artifacts)
        return err ? err->code : DF_E_IO;
    if (self->opts.result_cache_bytes >= 0) {
        snprintf(path, sizeof path, "%s/cache", self->state_dir);
        uint64_t limit = self->opts.result_cache_bytes ? (uint64_t)self->opts.result_cache_bytes : 2ull << 30;
        if (!(self->cache = df_result_cache_new(path, limit, err)))
            return err ? err->code : DF_E_IO;
    }
    char *id = NULL;
    int rc = df_store_get_meta(self->store, "coordinator_id", &id, err);
    if (!rc && !id) {
        char fresh[17];
        snprintf(fresh, sizeof fresh, "%08x%08x", (unsigned)randof(0x7fffffff), (unsigned)randof(0x7fffffff));
        rc = df_store_set_meta(self->store, "coordinator_id", fresh, err);
        id = strdup(fresh);
    }
    if (rc) {
        free(id);
        return rc;
    }
    df_sched_io io = {self, sched_send};
    self->sched = df_sched_new(self->store, id, &self->opts.sched, &io, df_now_ms(), err);
    free(id);
    if (self->sched)
        df_sched_set_cache(self->sched, self->cache);
    return self->sched ? DF_OK : (err ? err->code : DF_E_IO);
}

df_coordinator_t *df_coordinator_new(const df_coordinator_opts *opts, df_error_t *err)
{
    df_coordinator_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "coordinator: out of memory");
        return NULL;
    }
    self->opts = *opts;
    if (!self->opts.limits.max_frame)
        self->opts.limits = df_wire_default_limits();
    self->bind = strdup(opts->bind ? opts->bind : "");
    self->state_dir = strdup(opts->state_dir ? opts->state_dir : "");
    self->keys_dir = opts->keys_dir ? strdup(opts->keys_dir) : NULL;
    self->metrics_addr = opts->metrics ? strdup(opts->metrics) : NULL;
    self->outbox = zlist_new();
    self->lock_fd = -1;
    uv_loop_init(&self->loop);
    /* czmq's own signal handling would race libuv's. */
    zsys_handler_set(NULL);
    int rc = DF_OK;
    if (!*self->bind || !*self->state_dir)
        rc = df_error_set(err, DF_E_INVALID, "coordinator: --bind and --state are required");
    if (!rc)
        rc = open_state(self, err);
    if (!rc)
        rc = setup_router(self, err);
    if (!rc) {
        /* A served chunk plus its framing must fit the message limit. */
        size_t chunk = self->opts.limits.max_message / 2 < MAX_CHUNK ? self->opts.limits.max_message / 2 : MAX_CHUNK;
        self->api = (df_api){self->sched, self->store, self->artifacts, &self->traffic, &self->opts.limits,
                             df_now_ms(), (uint32_t)chunk};
        if (self->metrics_addr && !(self->metrics = df_metrics_new(&self->loop, self->metrics_addr, &self->api, err)))
            rc = err ? err->code : DF_E_IO;
    }
    if (rc) {
        df_coordinator_destroy(&self);
        return NULL;
    }
    uv_timer_init(&self->loop, &self->tick);
    self->tick.data = self;
    uint32_t every = self->opts.sched.heartbeat_ms ? self->opts.sched.heartbeat_ms / 4 : 250;
    uv_timer_start(&self->tick, on_tick, every, every < 20 ? 20 : every);
    uv_async_init(&self->loop, &self->stop_async, on_async);
    self->stop_async.data = self;
    if (opts->handle_signals) {
        uv_signal_init(&self->loop, &self->sigterm);
        uv_signal_init(&self->loop, &self->sigint);
        self->sigterm.data = self->sigint.data = self;
        uv_signal_start(&self->sigterm, on_signal, SIGTERM);
        uv_signal_start(&self->sigint, on_signal, SIGINT);
    }
    df_info("coordinator on %s, state in %s%s%s", self->endpoint, self->state_dir,
            self->keys_dir ? ", CURVE keys from " : ", no authentication", self->keys_dir ? self->keys_dir : "");
    return self;
}

int df_coordinator_run(df_coordinator_t *self, df_error_t *err)
{
    self->running = 1;
    uv_run(&self->loop, UV_RUN_DEFAULT);
    self->running = 0;
    if (self->fatal)
        return df_error_set(err, self->fatal_err.code, "%s", self->fatal_err.msg);
    return DF_OK;
}

void df_coordinator_stop(df_coordinator_t *self) { uv_async_send(&self->stop_async); }

void df_coordinator_destroy(df_coordinator_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_coordinator_t *self = *self_p;
    df_uvzmq_close(&self->watch);
    df_metrics_close(&self->metrics);
    df_zap_destroy(&self->zap);
    df_uv_loop_close(&self->loop);
    zmsg_t *m;
    while (self->outbox && (m = zlist_pop(self->outbox)))
        zmsg_destroy(&m);
    zlist_destroy(&self->outbox);
    zsock_destroy(&self->router);
    if (self->store) {
        df_error_t err;
        df_error_clear(&err);
        if (!self->fatal && df_store_commit(self->store, &err))
            df_errorf("%s", err.msg);
    }
    df_sched_destroy(&self->sched);
    df_store_close(&self->store);
    df_artifacts_destroy(&self->artifacts);
    df_result_cache_destroy(&self->cache);
    if (self->lock_fd >= 0)
        close(self->lock_fd); /* releases the lock */
    free(self->bind), free(self->state_dir), free(self->keys_dir), free(self->metrics_addr);
    free(self);
    *self_p = NULL;
}

const char *df_coordinator_endpoint(const df_coordinator_t *self) { return self->endpoint; }
int df_coordinator_metrics_port(const df_coordinator_t *self) { return self->metrics ? df_metrics_port(self->metrics) : 0; }
