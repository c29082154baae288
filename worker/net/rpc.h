/*  rpc.h - request/reply with the coordinator over a DEALER socket, for
 *  the CLI and for workers' artifact pulls (which use a connection of their
 *  own so a large download never delays heartbeats).
 *
 *  Each call carries a fresh request id and waits for the Reply with that id
 *  (discarding anything else), up to a timeout.
 */
#ifndef DF_RPC_H
#define DF_RPC_H

#include <czmq.h>

#include "artifact_store.h"
#include "error.h"
#include "keys.h"
#include "wire.h"

typedef struct _df_rpc_t df_rpc_t;

typedef struct {
    const char *endpoint;
    const char *keys_dir; /* CURVE client keys: <role>.cert_secret and coordinator.cert */
    df_role role;
    int insecure;         /* tcp:// without keys */
    int timeout_ms;       /* per call (default 10000) */
} df_rpc_opts;

df_rpc_t *df_rpc_new(const df_rpc_opts *opts, df_error_t *err);
void df_rpc_destroy(df_rpc_t **self_p);

/*  Sends req (its request_id is set here) and waits for the reply. The
 *  reply's own error status is not an rpc failure: check (*reply)->status.
 *  Free the reply with df_wire_free(&(*reply)->base). DF_E_IO on timeout,
 *  with a message that says the coordinator did not answer. */
int df_rpc_call(df_rpc_t *self, Dreamfleet__Request *req, Dreamfleet__Reply **reply, df_error_t *err);

/*  Uploads a local file as an artifact (resuming a partial upload); hex
 *  receives its sha256. progress (may be NULL) is called after each chunk. */
int df_rpc_upload(df_rpc_t *self, const char *path, char hex[DF_SHA256_HEX],
                  void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, df_error_t *err);

/*  Downloads artifact hash into store (resuming what store has). */
int df_rpc_download(df_rpc_t *self, const char *hash, df_artifacts_t *store,
                    void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, df_error_t *err);

/*  Sets the socket up for CURVE (when keys_dir) or refuses tcp:// without it
 *  (unless insecure); shared with the worker daemon. */
int df_rpc_secure_socket(zsock_t *sock, const char *endpoint, const char *keys_dir, df_role role, int insecure,
                         df_error_t *err);

#endif
