/*  zap.h - who may talk to the coordinator: a ZAP (ZeroMQ Authentication
 *  Protocol, RFC 27) handler for CURVE.
 *
 *  A connecting peer's public key must be in the key directory's
 *  allow/workers or allow/clients list (re-read when they change, so keys
 *  added with `dreamfleet keys add` work without a restart). The handler
 *  labels the connection "worker:NAME" or "client:NAME"; that label arrives
 *  as the User-Id of every message and decides which messages the peer may
 *  send. Anyone else is refused during the handshake: an unknown key gets no
 *  further than that.
 */
#ifndef DF_ZAP_H
#define DF_ZAP_H

#include <czmq.h>
#include <uv.h>

#include "error.h"

typedef struct _df_zap_t df_zap_t;

/*  Binds the process's ZAP endpoint (one per process) and serves it on loop.
 *  Must exist before any CURVE server socket binds. */
df_zap_t *df_zap_new(uv_loop_t *loop, const char *keys_dir, df_error_t *err);
void df_zap_destroy(df_zap_t **self_p);

/*  Handshakes refused so far. */
uint64_t df_zap_refused(const df_zap_t *self);

#endif
