/*  daemon.c - see daemon.h. */
#include "worker_daemon.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "artifact_store.h"
#include "fsutil.h"
#include "log.h"
#include "netmsg.h"
#include "rpc.h"
#include "tasks.h"
#include "uvzmq.h"
#include "vk_device.h"
#include "vk_transfer.h"

#define MAX_EXECUTORS 16
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 16000
#define PROGRESS_EVERY_MS 200
#define PREVIEW_EVERY_MS 1000
#define DRAIN_ACK_WAIT_MS 30000

typedef struct df_worker_exec exec_t;

/* What executors tell the main loop. */
typedef struct event {
    enum { EV_PROGRESS, EV_RESULT, EV_FAILURE, EV_DELTA } kind;
    char task_id[64];
    float fraction;
    char message[128];
    uint8_t *output;
    size_t output_len;
    int retryable;
    char error[DF_ERROR_MSG_MAX];
    char **artifacts; /* a result's uploaded outputs (sha256 hex) */
    size_t n_artifacts;
    char checkpoint[65]; /* a progress report's checkpoint ("" for none) */
    struct event *next;
} event_t;

struct df_worker_exec {
    df_worker_t *owner;
    uint32_t index, device_index;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int quit;
    /* The task it holds (empty id: idle). Set by the main thread. */
    char task_id[64];
    char type[32];
    uint8_t *params;
    size_t params_len;
    uint32_t attempt;
    char resume[65]; /* the checkpoint an earlier attempt reported */
    atomic_int cancel;
    int busy;
    /* Executor-thread state. */
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    df_task_resident resident; /* a loaded model, kept between tasks */
    uint64_t last_progress_ms, last_preview_ms;
    float last_fraction;
    char last_message[128];
    /* Outputs the running task uploaded (executor thread). */
    char **artifacts;
    size_t n_artifacts;
    /* LoraDelta messages for the task it holds, oldest first (under lock). */
    struct inbox_msg *inbox;
};

/* A packed LoraDelta waiting for its task. */
typedef struct inbox_msg {
    uint8_t *data;
    size_t len;
    struct inbox_msg *next;
} inbox_msg;

static void inbox_clear(exec_t *e)
{
    while (e->inbox) {
        inbox_msg *m = e->inbox;
        e->inbox = m->next;
        free(m->data);
        free(m);
    }
}

/* A result or failure waiting for the coordinator's TaskAck. */
typedef struct unacked {
    char task_id[64];
    df_msg_type type;
    uint8_t *packed; /* the protobuf message */
    size_t len;
    uint64_t sent_ms;
    struct unacked *next;
} unacked_t;

struct _df_worker_t {
    df_worker_opts opts;
    char *endpoint, *keys_dir, *cache_dir;
    char worker_id[33];
    char name[64];
    uv_loop_t loop;
    uv_timer_t timer;
    uv_async_t events_async, stop_async;
    uv_signal_t sigterm, sigint;
    zsock_t *sock;
    df_uvzmq_t *watch;
    df_wire_limits limits;
    df_vk_instance_t *instance;
    int own_instance;
    exec_t exec[MAX_EXECUTORS];
    uint32_t nexec;
    pthread_mutex_t events_lock;
    event_t *events, *events_tail;
    unacked_t *unacked;
    df_artifacts_t *cache;
    /* Connection state. */
    int ready;
    uint64_t last_heard_ms, last_sent_ms, last_hello_ms, reconnect_at_ms, backoff_ms;
    uint32_t heartbeat_ms, timeout_ms;
    uint64_t heartbeat_seq;
    /* Shutdown. */
    int draining, stopped;
    uint64_t drain_started_ms;
    int rc;
    df_error_t fatal;
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

/* ------------------------------------------------------------- sending */

static void send_msg(df_worker_t *self, df_msg_type type, const ProtobufCMessage *msg)
{
    if (!self->watch)
        return;
    df_error_t err;
    df_error_clear(&err);
    if (df_netmsg_send(self->watch, NULL, 0, type, msg, &self->limits, &err) == DF_OK)
        self->last_sent_ms = now_ms();
    else
        df_debug("send %s: %s", df_msg_type_name(type), err.msg);
}

static void send_packed(df_worker_t *self, unacked_t *u)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(df_msg_descriptor(u->type), NULL, u->len, u->packed);
    if (m) {
        send_msg(self, u->type, m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    u->sent_ms = now_ms();
}

static void send_hello(df_worker_t *self)
{
    Dreamfleet__DeviceInfo dev[MAX_EXECUTORS];
    Dreamfleet__DeviceInfo *devp[MAX_EXECUTORS];
    char vendor[MAX_EXECUTORS][16];
    for (uint32_t i = 0; i < self->nexec; i++) {
        const df_vk_device_info *d = df_vk_instance_device(self->instance, self->exec[i].device_index);
        dreamfleet__device_info__init(&dev[i]);
        dev[i].index = d->index;
        dev[i].name = (char *)d->name;
        dev[i].vendor = (char *)df_vk_vendor_name(d->vendor_id, vendor[i], sizeof vendor[i]);
        dev[i].type = (char *)df_vk_device_type_name(d->type);
        dev[i].memory_bytes = dev[i].free_bytes = d->device_local_bytes;
        dev[i].fp16 = d->fp16 && d->storage16;
        dev[i].int8 = d->int8;
        dev[i].subgroup_size = d->subgroup_size;
        dev[i].coopmat = d->coopmat_khr || d->coopmat_nv;
        dev[i].max_binding_bytes = d->max_storage_range;
        devp[i] = &dev[i];
    }
    char *types[8];
    size_t ntypes = 0;
    for (size_t i = 0; i < df_task_type_count() && ntypes < 8; i++)
        types[ntypes++] = (char *)df_task_type_at(i)->name;
    /* Everything we still hold: running tasks and results not yet acknowledged. */
    char *held[MAX_EXECUTORS + 256];
    size_t nheld = 0;
    for (uint32_t i = 0; i < self->nexec; i++) {
        pthread_mutex_lock(&self->exec[i].lock);
        if (self->exec[i].task_id[0])
            held[nheld++] = self->exec[i].task_id;
        pthread_mutex_unlock(&self->exec[i].lock);
    }
    for (unacked_t *u = self->unacked; u && nheld < sizeof held / sizeof held[0]; u = u->next)
        held[nheld++] = u->task_id;
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = self->worker_id;
    h.name = self->name;
    h.engine_version = DF_ENGINE_VERSION;
    h.n_devices = self->nexec;
    h.devices = devp;
    h.n_job_types = ntypes;
    h.job_types = types;
    h.n_running_tasks = nheld;
    h.running_tasks = held;
    h.slots = self->nexec;
    send_msg(self, DF_MSG_HELLO, &h.base);
    self->last_hello_ms = now_ms();
}

/* ------------------------------------------------------------ connection */

static void on_message(df_uvzmq_t *z, zmsg_t **msgp, void *ctx);

static void disconnect(df_worker_t *self)
{
    df_uvzmq_close(&self->watch);
    zsock_destroy(&self->sock);
    self->ready = 0;
}

static int connect_now(df_worker_t *self, df_error_t *err)
{
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        return df_error_set(err, DF_E_NOMEM, "cannot create a socket");
    zsock_set_linger(self->sock, 0);
    zsock_set_sndhwm(self->sock, 10000);
    zsock_set_maxmsgsize(self->sock, (int)(self->limits.max_frame + 4096));
    int rc = df_rpc_secure_socket(self->sock, self->endpoint, self->keys_dir, DF_ROLE_WORKER, self->opts.insecure, err);
    if (!rc && zsock_connect(self->sock, "%s", self->endpoint) != 0)
        rc = df_error_set(err, DF_E_IO, "connect %s: %s", self->endpoint, zmq_strerror(zmq_errno()));
    if (!rc && !(self->watch = df_uvzmq_new(&self->loop, self->sock, on_message, NULL, self, err)))
        rc = err ? err->code : DF_E_IO;
    if (rc) {
        zsock_destroy(&self->sock);
        return rc;
    }
    self->last_heard_ms = now_ms();
    send_hello(self);
    return DF_OK;
}

/* ----------------------------------------------------------- executors */

static exec_t *exec_holding(df_worker_t *self, const char *task_id)
{
    for (uint32_t i = 0; i < self->nexec; i++)
        if (strcmp(self->exec[i].task_id, task_id) == 0)
            return &self->exec[i];
    return NULL;
}

static void post_event(df_worker_t *self, event_t *ev)
{
    pthread_mutex_lock(&self->events_lock);
    if (self->events_tail)
        self->events_tail->next = ev;
    else
        self->events = ev;
    self->events_tail = ev;
    pthread_mutex_unlock(&self->events_lock);
    uv_async_send(&self->events_async);
}

static int ctx_device(df_task_ctx *ctx, df_vk_device_t **dev, df_vk_transfer_t **xfer, df_error_t *err)
{
    exec_t *e = ctx->owner;
    if (!e->dev) {
        char cache[4200];
        const df_vk_device_info *info = df_vk_instance_device(e->owner->instance, e->device_index);
        snprintf(cache, sizeof cache, "%s/pipelines-%04x-%04x.bin", e->owner->cache_dir, info->vendor_id,
                 info->device_id);
        df_vk_device_opts o = {.pipeline_cache_path = cache, .portable_kernels = e->owner->opts.portable_kernels};
        e->dev = df_vk_device_new(e->owner->instance, e->device_index, &o, err);
        if (!e->dev)
            return err ? err->code : DF_E_VULKAN;
        e->xfer = df_vk_transfer_new(e->dev, NULL, err);
        if (!e->xfer) {
            df_vk_device_destroy(&e->dev);
            return err ? err->code : DF_E_VULKAN;
        }
    }
    *dev = e->dev;
    *xfer = e->xfer;
    return DF_OK;
}

static int ctx_fetch(df_task_ctx *ctx, const char *hash, char *path, size_t cap, df_error_t *err)
{
    exec_t *e = ctx->owner;
    df_worker_t *w = e->owner;
    df_artifact_info info;
    int rc = df_artifacts_stat(w->cache, hash, &info, err);
    if (rc)
        return rc;
    if (!info.complete) {
        /* A connection of its own: a big download must not hold up heartbeats. */
        df_rpc_opts o = {.endpoint = w->endpoint, .keys_dir = w->keys_dir, .role = DF_ROLE_WORKER,
                         .insecure = w->opts.insecure, .timeout_ms = (int)(w->timeout_ms * 2)};
        df_rpc_t *rpc = df_rpc_new(&o, err);
        if (!rpc)
            return err ? err->code : DF_E_IO;
        rc = df_rpc_download(rpc, hash, w->cache, NULL, NULL, err);
        df_rpc_destroy(&rpc);
        if (rc)
            return df_error_prefix(err, "fetch %.12s", hash);
        df_info("cached artifact %s", hash);
    }
    df_artifacts_path(w->cache, hash, path, cap);
    return DF_OK;
}

static void ctx_progress(df_task_ctx *ctx, float fraction, const char *message)
{
    exec_t *e = ctx->owner;
    uint64_t now = now_ms();
    if (now - e->last_progress_ms < PROGRESS_EVERY_MS && fraction < 1.0f)
        return;
    e->last_progress_ms = now;
    e->last_fraction = fraction;
    snprintf(e->last_message, sizeof e->last_message, "%s", message ? message : "");
    event_t *ev = calloc(1, sizeof *ev);
    if (!ev)
        return;
    ev->kind = EV_PROGRESS;
    snprintf(ev->task_id, sizeof ev->task_id, "%s", ctx->task_id);
    ev->fraction = fraction;
    snprintf(ev->message, sizeof ev->message, "%s", e->last_message);
    post_event(e->owner, ev);
}

/*  A preview goes as a progress report of its own (the latest fraction and
 *  message with it), the first of a task at once, then one a second. */
static void ctx_preview(df_task_ctx *ctx, const uint8_t *png, size_t len)
{
    exec_t *e = ctx->owner;
    uint64_t now = now_ms();
    if (e->last_preview_ms && now - e->last_preview_ms < PREVIEW_EVERY_MS)
        return;
    event_t *ev = calloc(1, sizeof *ev);
    uint8_t *copy = malloc(len ? len : 1);
    if (!ev || !copy) {
        free(ev), free(copy);
        return;
    }
    e->last_preview_ms = now;
    memcpy(copy, png, len);
    ev->kind = EV_PROGRESS;
    snprintf(ev->task_id, sizeof ev->task_id, "%s", ctx->task_id);
    ev->fraction = e->last_fraction;
    snprintf(ev->message, sizeof ev->message, "%s", e->last_message);
    ev->output = copy, ev->output_len = len; /* the preview rides in the output fields */
    post_event(e->owner, ev);
}

static int ctx_upload(df_task_ctx *ctx, const char *path, char hex[65], df_error_t *err)
{
    exec_t *e = ctx->owner;
    df_worker_t *w = e->owner;
    char **grown = realloc(e->artifacts, (e->n_artifacts + 1) * sizeof *grown);
    if (!grown)
        return df_error_set(err, DF_E_NOMEM, "upload: out of memory");
    e->artifacts = grown;
    /* A connection of its own, as for fetch: heartbeats go on meanwhile. */
    df_rpc_opts o = {.endpoint = w->endpoint, .keys_dir = w->keys_dir, .role = DF_ROLE_WORKER,
                     .insecure = w->opts.insecure, .timeout_ms = (int)(w->timeout_ms * 2)};
    df_rpc_t *rpc = df_rpc_new(&o, err);
    if (!rpc)
        return err ? err->code : DF_E_IO;
    int rc = df_rpc_upload(rpc, path, hex, NULL, NULL, err);
    df_rpc_destroy(&rpc);
    if (rc)
        return df_error_prefix(err, "upload %s", path);
    if (!(e->artifacts[e->n_artifacts] = strdup(hex)))
        return df_error_set(err, DF_E_NOMEM, "upload: out of memory");
    e->n_artifacts++;
    return DF_OK;
}

static void ctx_checkpoint(df_task_ctx *ctx, const char *hash)
{
    exec_t *e = ctx->owner;
    event_t *ev = calloc(1, sizeof *ev);
    if (!ev)
        return;
    ev->kind = EV_PROGRESS;
    snprintf(ev->task_id, sizeof ev->task_id, "%s", ctx->task_id);
    ev->fraction = e->last_fraction;
    snprintf(ev->message, sizeof ev->message, "%s", e->last_message);
    snprintf(ev->checkpoint, sizeof ev->checkpoint, "%s", hash);
    post_event(e->owner, ev);
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/*  Hands a packed LoraDelta to the main loop, which sends it. */
static int ctx_send_delta(df_task_ctx *ctx, const uint8_t *msg, size_t len, df_error_t *err)
{
    exec_t *e = ctx->owner;
    event_t *ev = calloc(1, sizeof *ev);
    uint8_t *copy = malloc(len ? len : 1);
    if (!ev || !copy) {
        free(ev), free(copy);
        return df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    memcpy(copy, msg, len);
    ev->kind = EV_DELTA;
    snprintf(ev->task_id, sizeof ev->task_id, "%s", ctx->task_id);
    ev->output = copy, ev->output_len = len;
    post_event(e->owner, ev);
    return DF_OK;
}

static int ctx_recv_delta(df_task_ctx *ctx, int timeout_ms, uint8_t **msg, size_t *len, df_error_t *err)
{
    exec_t *e = ctx->owner;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    int rc = DF_OK;
    pthread_mutex_lock(&e->lock);
    while (!e->inbox && !atomic_load(&e->cancel) && !e->quit)
        if (pthread_cond_timedwait(&e->cond, &e->lock, &until) == ETIMEDOUT)
            break;
    if (atomic_load(&e->cancel) || e->quit) {
        rc = df_error_set(err, DF_E_STATE, "cancelled");
    } else if (!e->inbox) {
        rc = df_error_set(err, DF_E_IO, "timed out");
    } else {
        inbox_msg *m = e->inbox;
        e->inbox = m->next;
        *msg = m->data, *len = m->len;
        free(m);
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static void *exec_main(void *arg)
{
    exec_t *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (!e->quit && !e->busy)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->quit) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        char task_id[64], type[32], resume[65];
        snprintf(task_id, sizeof task_id, "%s", e->task_id);
        snprintf(resume, sizeof resume, "%s", e->resume);
        snprintf(type, sizeof type, "%s", e->type);
        uint32_t attempt = e->attempt;
        pthread_mutex_unlock(&e->lock);

        df_task_ctx ctx = {.worker_name = e->owner->name, .task_id = task_id, .attempt = attempt,
                           .cancelled = &e->cancel, .device = ctx_device, .fetch = ctx_fetch,
                           .progress = ctx_progress, .preview = ctx_preview, .send_delta = ctx_send_delta,
                           .recv_delta = ctx_recv_delta, .upload = ctx_upload, .resume = resume,
                           .checkpoint = ctx_checkpoint, .resident = &e->resident, .owner = e};
        event_t *ev = calloc(1, sizeof *ev);
        df_error_t err;
        df_error_clear(&err);
        const df_task_type *tt = df_task_type_find(type);
        int rc = tt ? tt->run(&ctx, e->params, e->params_len, &ev->output, &ev->output_len, &ev->retryable, &err)
                    : df_error_set(&err, DF_E_NOT_FOUND, "this worker cannot run '%s' tasks", type);
        snprintf(ev->task_id, sizeof ev->task_id, "%s", task_id);
        if (rc) {
            ev->kind = EV_FAILURE;
            snprintf(ev->error, sizeof ev->error, "%s", err.msg);
            free_list(e->artifacts, e->n_artifacts);
        } else {
            ev->kind = EV_RESULT;
            ev->artifacts = e->artifacts, ev->n_artifacts = e->n_artifacts;
        }
        e->artifacts = NULL, e->n_artifacts = 0;
        pthread_mutex_lock(&e->lock);
        e->busy = 0;
        e->task_id[0] = '\0';
        inbox_clear(e);
        free(e->params);
        e->params = NULL;
        pthread_mutex_unlock(&e->lock);
        post_event(e->owner, ev);
    }
    df_task_resident_release(&e->resident); /* before the device it lives on */
    df_vk_transfer_destroy(&e->xfer);
    df_vk_device_destroy(&e->dev);
    return NULL;
}

/* --------------------------------------------------------------- tasks */

static void fail_assign(df_worker_t *self, const char *task_id, const char *why, int retryable)
{
    Dreamfleet__TaskFailure f = DREAMFLEET__TASK_FAILURE__INIT;
    f.task_id = (char *)task_id;
    f.reason = (char *)why;
    f.retryable = retryable;
    send_msg(self, DF_MSG_TASK_FAILURE, &f.base);
}

static void on_assign(df_worker_t *self, const Dreamfleet__TaskAssign *a)
{
    if (!a->task_id || !*a->task_id || strlen(a->task_id) >= 64)
        return;
    if (exec_holding(self, a->task_id))
        return; /* already ours (a re-adopted task sent again) */
    for (unacked_t *u = self->unacked; u; u = u->next)
        if (strcmp(u->task_id, a->task_id) == 0) {
            send_packed(self, u);
            return;
        }
    if (self->draining)
        return fail_assign(self, a->task_id, "the worker is shutting down", 1);
    if (!df_task_type_find(a->type))
        return fail_assign(self, a->task_id, "this worker does not run this task type", 0);
    exec_t *e = NULL;
    for (uint32_t i = 0; i < self->nexec && !e; i++)
        if (!self->exec[i].busy)
            e = &self->exec[i];
    if (!e)
        return fail_assign(self, a->task_id, "no free slot on this worker", 1);
    pthread_mutex_lock(&e->lock);
    snprintf(e->task_id, sizeof e->task_id, "%s", a->task_id);
    snprintf(e->type, sizeof e->type, "%s", a->type);
    e->params = malloc(a->params.len ? a->params.len : 1);
    if (e->params && a->params.len)
        memcpy(e->params, a->params.data, a->params.len);
    e->params_len = a->params.len;
    e->attempt = a->attempt;
    inbox_clear(e);
    snprintf(e->resume, sizeof e->resume, "%s", a->resume && df_artifacts_valid_hash(a->resume) ? a->resume : "");
    atomic_store(&e->cancel, 0);
    e->last_progress_ms = e->last_preview_ms = 0;
    e->last_fraction = 0;
    e->last_message[0] = '\0';
    e->busy = 1;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    df_info("task %s (%s, attempt %u) on device %u", a->task_id, a->type, a->attempt, e->device_index);
}

static void cancel_task(df_worker_t *self, const char *task_id)
{
    exec_t *e = exec_holding(self, task_id);
    if (e) {
        pthread_mutex_lock(&e->lock);
        atomic_store(&e->cancel, 1);
        pthread_cond_broadcast(&e->cond); /* a task waiting for its group's average */
        pthread_mutex_unlock(&e->lock);
    }
}

/*  The group's average for a training task: into its executor's inbox. */
static void on_lora_delta(df_worker_t *self, const Dreamfleet__LoraDelta *d)
{
    exec_t *e = d->task_id ? exec_holding(self, d->task_id) : NULL;
    if (!e) {
        df_debug("ignored a LoraDelta for %s: not running here", d->task_id ? d->task_id : "?");
        return;
    }
    inbox_msg *m = calloc(1, sizeof *m);
    size_t len = dreamfleet__lora_delta__get_packed_size(d);
    uint8_t *data = m ? malloc(len ? len : 1) : NULL;
    if (!data) {
        free(m);
        return;
    }
    dreamfleet__lora_delta__pack(d, data);
    m->data = data, m->len = len;
    pthread_mutex_lock(&e->lock);
    if (strcmp(e->task_id, d->task_id) != 0) { /* the task ended meanwhile */
        pthread_mutex_unlock(&e->lock);
        free(data), free(m);
        return;
    }
    inbox_msg **pp = &e->inbox;
    while (*pp)
        pp = &(*pp)->next;
    *pp = m;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void on_ack(df_worker_t *self, const char *task_id)
{
    for (unacked_t **pp = &self->unacked; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->task_id, task_id) == 0) {
            unacked_t *u = *pp;
            *pp = u->next;
            free(u->packed);
            free(u);
            return;
        }
}

static void hold_until_acked(df_worker_t *self, df_msg_type type, const ProtobufCMessage *m, const char *task_id)
{
    unacked_t *u = calloc(1, sizeof *u);
    if (!u)
        return;
    snprintf(u->task_id, sizeof u->task_id, "%s", task_id);
    u->type = type;
    u->len = protobuf_c_message_get_packed_size(m);
    u->packed = malloc(u->len ? u->len : 1);
    if (!u->packed) {
        free(u);
        return;
    }
    protobuf_c_message_pack(m, u->packed);
    u->next = self->unacked;
    self->unacked = u;
    if (self->ready)
        send_packed(self, u);
}

static void on_events(uv_async_t *a)
{
    df_worker_t *self = a->data;
    pthread_mutex_lock(&self->events_lock);
    event_t *ev = self->events;
    self->events = self->events_tail = NULL;
    pthread_mutex_unlock(&self->events_lock);
    while (ev) {
        event_t *next = ev->next;
        if (ev->kind == EV_PROGRESS) {
            if (self->ready) {
                Dreamfleet__TaskProgress p = DREAMFLEET__TASK_PROGRESS__INIT;
                p.task_id = ev->task_id;
                p.fraction = ev->fraction;
                p.message = ev->message;
                p.preview.data = ev->output;
                p.preview.len = ev->output_len;
                p.checkpoint = ev->checkpoint;
                send_msg(self, DF_MSG_TASK_PROGRESS, &p.base);
            }
        } else if (ev->kind == EV_DELTA) {
            /* Not held for acknowledgement: a member that hears nothing
             * sends its part again, and the coordinator ignores repeats. */
            Dreamfleet__LoraDelta *d = dreamfleet__lora_delta__unpack(NULL, ev->output_len, ev->output);
            if (d && self->ready)
                send_msg(self, DF_MSG_LORA_DELTA, &d->base);
            if (d)
                dreamfleet__lora_delta__free_unpacked(d, NULL);
        } else if (ev->kind == EV_RESULT) {
            Dreamfleet__TaskResult r = DREAMFLEET__TASK_RESULT__INIT;
            r.task_id = ev->task_id;
            r.output.data = ev->output;
            r.output.len = ev->output_len;
            r.artifacts = ev->artifacts, r.n_artifacts = ev->n_artifacts;
            df_info("task %s done", ev->task_id);
            hold_until_acked(self, DF_MSG_TASK_RESULT, &r.base, ev->task_id);
        } else {
            Dreamfleet__TaskFailure f = DREAMFLEET__TASK_FAILURE__INIT;
            f.task_id = ev->task_id;
            f.reason = ev->error;
            f.retryable = ev->retryable;
            df_warn("task %s failed%s: %s", ev->task_id, ev->retryable ? " (retryable)" : "", ev->error);
            hold_until_acked(self, DF_MSG_TASK_FAILURE, &f.base, ev->task_id);
        }
        free(ev->output);
        free_list(ev->artifacts, ev->n_artifacts);
        free(ev);
        ev = next;
    }
}

/* -------------------------------------------------------------- input */

static void on_message(df_uvzmq_t *z, zmsg_t **msgp, void *ctx)
{
    (void)z;
    df_worker_t *self = ctx;
    zframe_t *f = zmsg_last(*msgp);
    if (!f)
        return;
    df_error_t err;
    df_error_clear(&err);
    df_msg_type type;
    ProtobufCMessage *m;
    if (df_wire_decode(zframe_data(f), zframe_size(f), &self->limits, &type, &m, &err)) {
        df_warn("ignored a message from the coordinator: %s", err.msg);
        return;
    }
    self->last_heard_ms = now_ms();
    switch (type) {
    case DF_MSG_HELLO_ACK: {
        Dreamfleet__HelloAck *ack = (Dreamfleet__HelloAck *)m;
        if (!self->ready)
            df_info("connected to coordinator %s at %s", ack->coordinator_id, self->endpoint);
        self->ready = 1;
        self->backoff_ms = 0;
        if (ack->heartbeat_ms >= 10)
            self->heartbeat_ms = ack->heartbeat_ms;
        if (ack->timeout_ms > self->heartbeat_ms)
            self->timeout_ms = ack->timeout_ms;
        for (size_t i = 0; i < ack->n_drop_tasks; i++) {
            cancel_task(self, ack->drop_tasks[i]);
            on_ack(self, ack->drop_tasks[i]); /* no longer ours to report */
        }
        for (unacked_t *u = self->unacked; u; u = u->next)
            send_packed(self, u);
        break;
    }
    case DF_MSG_HEARTBEAT: break;
    case DF_MSG_TASK_ASSIGN: on_assign(self, (Dreamfleet__TaskAssign *)m); break;
    case DF_MSG_TASK_CANCEL:
        df_info("task %s cancelled: %s", ((Dreamfleet__TaskCancel *)m)->task_id, ((Dreamfleet__TaskCancel *)m)->reason);
        cancel_task(self, ((Dreamfleet__TaskCancel *)m)->task_id);
        break;
    case DF_MSG_TASK_ACK: on_ack(self, ((Dreamfleet__TaskAck *)m)->task_id); break;
    case DF_MSG_LORA_DELTA: on_lora_delta(self, (Dreamfleet__LoraDelta *)m); break;
    case DF_MSG_PROTOCOL_ERROR: {
        Dreamfleet__ProtocolError *pe = (Dreamfleet__ProtocolError *)m;
        if (pe->status == DF_E_STATE) { /* the coordinator restarted or lost us: introduce ourselves again */
            self->ready = 0;
            if (now_ms() - self->last_hello_ms > 100)
                send_hello(self);
        } else {
            df_warn("coordinator: %s", pe->reason);
        }
        break;
    }
    default: df_warn("ignored %s from the coordinator", df_msg_type_name(type)); break;
    }
    df_wire_free(m);
}

/* ---------------------------------------------------------------- timer */

static int idle(df_worker_t *self)
{
    for (uint32_t i = 0; i < self->nexec; i++)
        if (self->exec[i].busy)
            return 0;
    return 1;
}

static void finish_stop(df_worker_t *self)
{
    Dreamfleet__Goodbye g = DREAMFLEET__GOODBYE__INIT;
    g.reason = "worker stopped";
    if (self->ready)
        send_msg(self, DF_MSG_GOODBYE, &g.base);
    self->stopped = 1;
    uv_stop(&self->loop);
}

static void on_timer(uv_timer_t *t)
{
    df_worker_t *self = t->data;
    uint64_t now = now_ms();
    if (!self->sock) {
        if (now >= self->reconnect_at_ms) {
            df_error_t err;
            df_error_clear(&err);
            if (connect_now(self, &err))
                df_warn("reconnect: %s", err.msg);
        }
    } else if (now - self->last_heard_ms > self->timeout_ms) {
        /* Paranoid Pirate: the coordinator is gone; start over with a new
         * socket after a growing pause. */
        self->backoff_ms = self->backoff_ms ? self->backoff_ms * 2 : BACKOFF_FIRST_MS;
        if (self->backoff_ms > BACKOFF_MAX_MS)
            self->backoff_ms = BACKOFF_MAX_MS;
        df_warn("coordinator silent for %llu ms; reconnecting in %llu ms",
                (unsigned long long)(now - self->last_heard_ms), (unsigned long long)self->backoff_ms);
        disconnect(self);
        self->reconnect_at_ms = now + self->backoff_ms;
    } else if (!self->ready) {
        if (now - self->last_hello_ms >= self->heartbeat_ms)
            send_hello(self);
    } else {
        if (now - self->last_sent_ms >= self->heartbeat_ms) {
            Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
            hb.seq = ++self->heartbeat_seq;
            uint32_t busy = 0;
            for (uint32_t i = 0; i < self->nexec; i++)
                busy += self->exec[i].busy;
            hb.busy = busy;
            send_msg(self, DF_MSG_HEARTBEAT, &hb.base);
        }
        /* Results the coordinator has not acknowledged: say them again. */
        for (unacked_t *u = self->unacked; u; u = u->next)
            if (now - u->sent_ms > self->timeout_ms)
                send_packed(self, u);
    }
    if (self->draining && idle(self)) {
        if (!self->unacked || now - self->drain_started_ms > DRAIN_ACK_WAIT_MS) {
            if (self->unacked)
                df_warn("stopping with unacknowledged results (coordinator unreachable)");
            finish_stop(self);
        }
    }
}

static void begin_drain(df_worker_t *self)
{
    if (self->draining)
        return;
    self->draining = 1;
    self->drain_started_ms = now_ms();
    df_info("stopping after the current task%s", self->nexec == 1 ? "" : "s");
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    begin_drain(s->data);
}

static void on_stop_async(uv_async_t *a) { begin_drain(a->data); }

/* ------------------------------------------------------------ lifecycle */

df_worker_t *df_worker_new(const df_worker_opts *opts, df_error_t *err)
{
    df_worker_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "worker: out of memory");
        return NULL;
    }
    self->opts = *opts;
    self->limits = df_wire_default_limits();
    self->heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : 1000;
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 5000;
    self->endpoint = strdup(opts->connect ? opts->connect : "");
    self->keys_dir = opts->keys_dir ? strdup(opts->keys_dir) : NULL;
    char cache[4096];
    if (opts->cache_dir)
        snprintf(cache, sizeof cache, "%s", opts->cache_dir);
    else
        df_xdg_dir(DF_XDG_CACHE, NULL, cache, sizeof cache);
    self->cache_dir = strdup(cache);
    snprintf(self->worker_id, sizeof self->worker_id, "%08x%08x%08x", (unsigned)randof(0x7fffffff),
             (unsigned)randof(0x7fffffff), (unsigned)getpid());
    char host[64] = "worker";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(self->name, sizeof self->name, "%s", opts->name && *opts->name ? opts->name : host);
    pthread_mutex_init(&self->events_lock, NULL);
    uv_loop_init(&self->loop);
    zsys_handler_set(NULL);
    int rc = DF_OK;
    if (!*self->endpoint)
        rc = df_error_set(err, DF_E_INVALID, "worker: --connect is required");
    if (!rc)
        rc = df_mkdirs(self->cache_dir, err);
    if (!rc) {
        char path[4200];
        snprintf(path, sizeof path, "%s/artifacts", self->cache_dir);
        if (!(self->cache = df_artifacts_new(path, 0, err)))
            rc = err ? err->code : DF_E_IO;
    }
    if (!rc && !(self->instance = opts->instance)) {
        self->instance = df_vk_instance_new(NULL, err);
        self->own_instance = 1;
        if (!self->instance)
            rc = err ? err->code : DF_E_UNSUPPORTED;
    }
    /* One executor per usable device (or just --device N). */
    if (!rc) {
        uint32_t first = 0, last = df_vk_instance_device_count(self->instance);
        if (opts->device >= 0) {
            uint32_t idx;
            rc = df_vk_instance_choose(self->instance, opts->device, &idx, err);
            first = idx, last = idx + 1;
        }
        for (uint32_t d = first; !rc && d < last && self->nexec < MAX_EXECUTORS; d++) {
            if (df_vk_instance_device(self->instance, d)->compute_queue_family == UINT32_MAX)
                continue;
            exec_t *e = &self->exec[self->nexec];
            e->owner = self;
            e->index = self->nexec;
            e->device_index = d;
            pthread_mutex_init(&e->lock, NULL);
            pthread_cond_init(&e->cond, NULL);
            if (pthread_create(&e->thread, NULL, exec_main, e) != 0)
                rc = df_error_set(err, DF_E_NOMEM, "worker: cannot start an executor thread");
            else
                self->nexec++;
        }
        if (!rc && self->nexec == 0)
            rc = df_error_set(err, DF_E_UNSUPPORTED, "worker: no Vulkan device with a compute queue");
    }
    if (!rc)
        rc = connect_now(self, err);
    if (rc) {
        df_worker_destroy(&self);
        return NULL;
    }
    uv_timer_init(&self->loop, &self->timer);
    self->timer.data = self;
    uv_timer_start(&self->timer, on_timer, 50, 50);
    uv_async_init(&self->loop, &self->events_async, on_events);
    self->events_async.data = self;
    uv_async_init(&self->loop, &self->stop_async, on_stop_async);
    self->stop_async.data = self;
    if (opts->handle_signals) {
        uv_signal_init(&self->loop, &self->sigterm);
        uv_signal_init(&self->loop, &self->sigint);
        self->sigterm.data = self->sigint.data = self;
        uv_signal_start(&self->sigterm, on_signal, SIGTERM);
        uv_signal_start(&self->sigint, on_signal, SIGINT);
    }
    df_info("worker %s (%s): %u device%s, connecting to %s", self->name, self->worker_id, self->nexec,
            self->nexec == 1 ? "" : "s", self->endpoint);
    return self;
}

int df_worker_run(df_worker_t *self, df_error_t *err)
{
    uv_run(&self->loop, UV_RUN_DEFAULT);
    if (self->rc)
        return df_error_set(err, self->rc, "%s", self->fatal.msg);
    return DF_OK;
}

void df_worker_stop(df_worker_t *self) { uv_async_send(&self->stop_async); }

void df_worker_destroy(df_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_worker_t *self = *self_p;
    for (uint32_t i = 0; i < self->nexec; i++) {
        exec_t *e = &self->exec[i];
        pthread_mutex_lock(&e->lock);
        e->quit = 1;
        atomic_store(&e->cancel, 1);
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->cond);
        inbox_clear(e);
        free(e->params);
    }
    disconnect(self);
    df_uv_loop_close(&self->loop);
    event_t *ev = self->events;
    while (ev) {
        event_t *next = ev->next;
        free(ev->output);
        free_list(ev->artifacts, ev->n_artifacts);
        free(ev);
        ev = next;
    }
    while (self->unacked) {
        unacked_t *u = self->unacked;
        self->unacked = u->next;
        free(u->packed);
        free(u);
    }
    pthread_mutex_destroy(&self->events_lock);
    df_artifacts_destroy(&self->cache);
    if (self->own_instance)
        df_vk_instance_destroy(&self->instance);
    free(self->endpoint), free(self->keys_dir), free(self->cache_dir);
    free(self);
    *self_p = NULL;
}
