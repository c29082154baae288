/*  uvzmq.h - a ZeroMQ socket driven by a libuv loop.
 *
 *  libuv owns the daemons' event loops (timers, signals, the metrics HTTP
 *  server, file I/O); ZeroMQ sockets join it through their ZMQ_FD. That fd
 *  is edge-triggered and only says "events may have changed", so the socket
 *  is drained (up to a batch) whenever it fires, re-checked after every send
 *  and at each loop turn, and an idle handle keeps the loop spinning while
 *  messages remain. After each batch the owner's after_batch callback runs:
 *  the coordinator commits its store there and then flushes what it queued.
 */
#ifndef DF_UVZMQ_H
#define DF_UVZMQ_H

#include <czmq.h>
#include <uv.h>

#include "error.h"

typedef struct _df_uvzmq_t df_uvzmq_t;

/*  Called for each message received; takes ownership of *msg (set it NULL
 *  or let the caller destroy what is left). */
typedef void(df_uvzmq_msg_fn)(df_uvzmq_t *z, zmsg_t **msg, void *ctx);
/*  Called after each batch of messages. */
typedef void(df_uvzmq_batch_fn)(df_uvzmq_t *z, void *ctx);

/*  Watches sock (borrowed: it must outlive the watcher) on loop. */
df_uvzmq_t *df_uvzmq_new(uv_loop_t *loop, zsock_t *sock, df_uvzmq_msg_fn *on_msg, df_uvzmq_batch_fn *after_batch,
                         void *ctx, df_error_t *err);
/*  Stops watching and closes the libuv handles; the memory goes in their
 *  close callbacks, so the loop must run once more afterwards. */
void df_uvzmq_close(df_uvzmq_t **self_p);

zsock_t *df_uvzmq_socket(df_uvzmq_t *self);

/*  Sends without blocking. On success *msg is consumed. When the peer's
 *  queue is full (or, for a ROUTER, the peer is gone) the message is dropped
 *  and DF_E_IO returned: the protocol's acks and resends cover it. */
int df_uvzmq_send(df_uvzmq_t *self, zmsg_t **msg, df_error_t *err);

/*  Closes every handle still open on loop, runs their close callbacks and
 *  closes the loop: the last step of a daemon's teardown. */
void df_uv_loop_close(uv_loop_t *loop);

/*  Messages received and sent so far. */
uint64_t df_uvzmq_received(const df_uvzmq_t *self);
uint64_t df_uvzmq_sent(const df_uvzmq_t *self);

#endif
