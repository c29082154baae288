/*  uvzmq.c - see uvzmq.h. */
#include "uvzmq.h"

#include <stdlib.h>

/* Messages handled per batch before yielding to timers and other sockets. */
#define BATCH 256

struct _df_uvzmq_t {
    zsock_t *sock;
    uv_poll_t poll;
    uv_idle_t idle;
    uv_check_t check;
    df_uvzmq_msg_fn *on_msg;
    df_uvzmq_batch_fn *after_batch;
    void *ctx;
    int closing, open_handles;
    uint64_t received, sent;
};

static void on_idle(uv_idle_t *h);

static void drain(df_uvzmq_t *self)
{
    if (self->closing)
        return;
    int n = 0;
    while (n < BATCH && (zsock_events(self->sock) & ZMQ_POLLIN)) {
        zmsg_t *msg = zmsg_recv(self->sock); /* POLLIN: a whole message is ready */
        if (!msg)
            break;
        self->received++;
        n++;
        self->on_msg(self, &msg, self->ctx);
        zmsg_destroy(&msg);
        if (self->closing)
            return;
    }
    if (n && self->after_batch)
        self->after_batch(self, self->ctx);
    if (self->closing)
        return;
    /* More waiting (batch limit, or arrived while we worked): come back on
     * the next loop turn without blocking in poll. */
    if (zsock_events(self->sock) & ZMQ_POLLIN)
        uv_idle_start(&self->idle, on_idle);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status, (void)events;
    drain(h->data);
}

static void on_idle(uv_idle_t *h)
{
    df_uvzmq_t *self = h->data;
    uv_idle_stop(h);
    drain(self);
}

static void on_check(uv_check_t *h)
{
    df_uvzmq_t *self = h->data;
    if (!self->closing && (zsock_events(self->sock) & ZMQ_POLLIN))
        uv_idle_start(&self->idle, on_idle);
}

df_uvzmq_t *df_uvzmq_new(uv_loop_t *loop, zsock_t *sock, df_uvzmq_msg_fn *on_msg, df_uvzmq_batch_fn *after_batch,
                         void *ctx, df_error_t *err)
{
    df_uvzmq_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "uvzmq: out of memory");
        return NULL;
    }
    self->sock = sock;
    self->on_msg = on_msg;
    self->after_batch = after_batch;
    self->ctx = ctx;
    int r = uv_poll_init(loop, &self->poll, zsock_fd(sock));
    if (r) {
        free(self);
        df_error_set(err, DF_E_IO, "uv_poll_init: %s", uv_strerror(r));
        return NULL;
    }
    uv_idle_init(loop, &self->idle);
    uv_check_init(loop, &self->check);
    self->poll.data = self->idle.data = self->check.data = self;
    self->open_handles = 3;
    uv_poll_start(&self->poll, UV_READABLE, on_poll);
    uv_check_start(&self->check, on_check);
    /* Anything that arrived before we started watching. */
    uv_idle_start(&self->idle, on_idle);
    return self;
}

static void on_closed(uv_handle_t *h)
{
    df_uvzmq_t *self = h->data;
    if (--self->open_handles == 0)
        free(self);
}

void df_uvzmq_close(df_uvzmq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_uvzmq_t *self = *self_p;
    self->closing = 1;
    uv_close((uv_handle_t *)&self->poll, on_closed);
    uv_close((uv_handle_t *)&self->idle, on_closed);
    uv_close((uv_handle_t *)&self->check, on_closed);
    *self_p = NULL;
}

zsock_t *df_uvzmq_socket(df_uvzmq_t *self) { return self->sock; }

int df_uvzmq_send(df_uvzmq_t *self, zmsg_t **msg, df_error_t *err)
{
    /* zmsg_send blocks at the high-water mark; send frame by frame without
     * waiting instead. */
    void *handle = zsock_resolve(self->sock);
    size_t n = zmsg_size(*msg);
    size_t i = 0;
    int rc = DF_OK;
    for (zframe_t *f = zmsg_first(*msg); f; f = zmsg_next(*msg), i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (zmq_send(handle, zframe_data(f), zframe_size(f), flags) < 0) {
            rc = df_error_set(err, DF_E_IO, "send: %s", zmq_strerror(zmq_errno()));
            break;
        }
    }
    zmsg_destroy(msg);
    if (!rc)
        self->sent++;
    /* Sending can consume the fd's edge while input is pending. */
    if (!self->closing && (zsock_events(self->sock) & ZMQ_POLLIN))
        uv_idle_start(&self->idle, on_idle);
    return rc;
}

uint64_t df_uvzmq_received(const df_uvzmq_t *self) { return self->received; }
uint64_t df_uvzmq_sent(const df_uvzmq_t *self) { return self->sent; }

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void df_uv_loop_close(uv_loop_t *loop)
{
    uv_walk(loop, close_handle, NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* the close callbacks */
    uv_loop_close(loop);
}
