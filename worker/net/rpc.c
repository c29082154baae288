/*  rpc.c - see rpc.h. */
#include "rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netmsg.h"

/* Small enough for a coordinator run with a 1 MiB message limit. */
#define CHUNK (512u << 10)

struct _df_rpc_t {
    zsock_t *sock;
    zsock_t *monitor; /* handshake events: tells a refused key from a silent coordinator */
    char *endpoint;
    int timeout_ms;
    uint64_t next_id;
    df_wire_limits limits;
};

int df_rpc_secure_socket(zsock_t *sock, const char *endpoint, const char *keys_dir, df_role role, int insecure,
                         df_error_t *err)
{
    int tcp = strncmp(endpoint, "tcp://", 6) == 0;
    if (!keys_dir) {
        if (tcp && !insecure)
            return df_error_set(err, DF_E_INVALID,
                                "%s: TCP needs CURVE keys: give --keys DIR (or --insecure on a trusted network)",
                                endpoint);
        return DF_OK;
    }
    if (!tcp && strncmp(endpoint, "ipc://", 6) != 0)
        return DF_OK; /* inproc: same process, no handshake */
    char file[64];
    snprintf(file, sizeof file, "%s.cert_secret", df_role_name(role));
    zcert_t *mine = df_keys_load(keys_dir, file, err);
    if (!mine)
        return err ? err->code : DF_E_NOT_FOUND;
    char server[41];
    int rc = df_keys_server_public(keys_dir, server, err);
    if (!rc) {
        zcert_apply(mine, sock);
        zsock_set_curve_serverkey(sock, server);
    }
    zcert_destroy(&mine);
    return rc;
}

df_rpc_t *df_rpc_new(const df_rpc_opts *opts, df_error_t *err)
{
    df_rpc_t *self = calloc(1, sizeof *self);
    if (!self || !(self->endpoint = strdup(opts->endpoint))) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "rpc: out of memory");
        return NULL;
    }
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
    self->limits = df_wire_default_limits();
    self->next_id = (uint64_t)randof(1 << 30) << 20;
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock) {
        df_error_set(err, DF_E_NOMEM, "rpc: cannot create a socket");
        df_rpc_destroy(&self);
        return NULL;
    }
    zsock_set_linger(self->sock, 0);
    if (df_rpc_secure_socket(self->sock, opts->endpoint, opts->keys_dir, opts->role, opts->insecure, err)) {
        df_rpc_destroy(&self);
        return NULL;
    }
    /* Watch the CURVE handshake so a refused key is reported as such. */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://df-rpc-monitor-%p", (void *)self);
    if (zmq_socket_monitor(zsock_resolve(self->sock), mon,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        self->monitor = zsock_new(ZMQ_PAIR);
        if (self->monitor && zsock_connect(self->monitor, "%s", mon) != 0)
            zsock_destroy(&self->monitor);
    }
    if (zsock_connect(self->sock, "%s", opts->endpoint) != 0) {
        df_error_set(err, DF_E_IO, "connect %s: %s", opts->endpoint, zmq_strerror(zmq_errno()));
        df_rpc_destroy(&self);
        return NULL;
    }
    return self;
}

void df_rpc_destroy(df_rpc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->monitor)
        zmq_socket_monitor(zsock_resolve((*self_p)->sock), NULL, 0);
    zsock_destroy(&(*self_p)->monitor);
    zsock_destroy(&(*self_p)->sock);
    free((*self_p)->endpoint);
    free(*self_p);
    *self_p = NULL;
}

/* A handshake failure reported by the monitor since the last look, or 0.
 * Monitor messages: [16-bit event, 32-bit value][endpoint]. */
static int handshake_failure(df_rpc_t *self, uint32_t *status)
{
    int event = 0;
    while (self->monitor && (zsock_events(self->monitor) & ZMQ_POLLIN)) {
        zmsg_t *m = zmsg_recv(self->monitor);
        zframe_t *f = m ? zmsg_first(m) : NULL;
        if (f && zframe_size(f) >= 6) {
            const uint8_t *d = zframe_data(f);
            event = d[0] | d[1] << 8;
            *status = (uint32_t)d[2] | (uint32_t)d[3] << 8 | (uint32_t)d[4] << 16 | (uint32_t)d[5] << 24;
        }
        zmsg_destroy(&m);
    }
    return event;
}

int df_rpc_call(df_rpc_t *self, Dreamfleet__Request *req, Dreamfleet__Reply **reply, df_error_t *err)
{
    *reply = NULL;
    req->request_id = ++self->next_id;
    int rc = df_netmsg_send_sock(self->sock, DF_MSG_REQUEST, &req->base, &self->limits, err);
    if (rc)
        return rc;
    int64_t deadline = zclock_mono() + self->timeout_ms;
    for (;;) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0)
            break;
        uint32_t status = 0;
        int event = handshake_failure(self, &status);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            return df_error_set(err, DF_E_IO,
                                "the coordinator at %s refused this client's key (ZAP status %u): it is not in "
                                "the coordinator's allow/clients list",
                                self->endpoint, status);
        if (event)
            return df_error_set(err, DF_E_IO,
                                "the secure handshake with %s failed: check that coordinator.cert is that "
                                "coordinator's public key",
                                self->endpoint);
        if (left > 100 && self->monitor)
            left = 100; /* look at the monitor again soon */
        df_msg_type type;
        ProtobufCMessage *m = NULL;
        df_error_t rerr;
        df_error_clear(&rerr);
        rc = df_netmsg_recv_sock(self->sock, (int)left, &self->limits, &type, &m, &rerr);
        if (rc) {
            if (strstr(rerr.msg, "timed out"))
                continue; /* this slice ended; the deadline decides */
            return df_error_set(err, rc, "%s", rerr.msg);
        }
        if (type == DF_MSG_REPLY && ((Dreamfleet__Reply *)m)->request_id == req->request_id) {
            *reply = (Dreamfleet__Reply *)m;
            return DF_OK;
        }
        if (type == DF_MSG_PROTOCOL_ERROR) {
            Dreamfleet__ProtocolError *pe = (Dreamfleet__ProtocolError *)m;
            rc = df_error_set(err, pe->status ? pe->status : DF_E_INVALID, "coordinator refused the request: %s",
                              pe->reason);
            df_wire_free(m);
            return rc;
        }
        df_wire_free(m); /* a late reply to an earlier call */
    }
    return df_error_set(err, DF_E_IO,
                        "no answer from the coordinator at %s within %d ms (is it running, and are the keys right?)",
                        self->endpoint, self->timeout_ms);
}

/* Calls and turns an error reply into an error. */
static int call_ok(df_rpc_t *self, Dreamfleet__Request *req, Dreamfleet__Reply **reply, df_error_t *err)
{
    int rc = df_rpc_call(self, req, reply, err);
    if (rc)
        return rc;
    if ((*reply)->status) {
        rc = df_error_set(err, (*reply)->status, "%s", (*reply)->error);
        return rc;
    }
    return DF_OK;
}

int df_rpc_upload(df_rpc_t *self, const char *path, char hex[DF_SHA256_HEX],
                  void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, df_error_t *err)
{
    uint8_t digest[DF_SHA256_BYTES];
    uint64_t size;
    int rc = df_sha256_file(path, digest, &size, err);
    if (rc)
        return rc;
    df_sha256_hex(digest, hex);
    Dreamfleet__ArtifactStat st = DREAMFLEET__ARTIFACT_STAT__INIT;
    st.hash = hex;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_ARTIFACT_STAT;
    req.artifact_stat = &st;
    Dreamfleet__Reply *rep = NULL;
    if ((rc = call_ok(self, &req, &rep, err))) {
        if (rep)
            df_wire_free(&rep->base);
        return rc;
    }
    uint64_t offset = rep->artifact ? rep->artifact->have_bytes : 0;
    int complete = rep->artifact && rep->artifact->complete;
    df_wire_free(&rep->base);
    if (complete) {
        if (progress)
            progress(ctx, size, size);
        return DF_OK;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return df_error_set(err, DF_E_NOMEM, "upload: out of memory");
    }
    do {
        size_t n = 0;
        if (offset < size) {
            if (fseek(f, (long)offset, SEEK_SET) != 0) {
                rc = df_error_set(err, DF_E_IO, "%s: seek failed", path);
                break;
            }
            n = fread(buf, 1, CHUNK, f);
            if (n == 0) {
                rc = df_error_set(err, DF_E_IO, "%s: changed while uploading", path);
                break;
            }
        }
        uint8_t chunk_digest[DF_SHA256_BYTES];
        df_sha256(buf, n, chunk_digest);
        Dreamfleet__ArtifactPut put = DREAMFLEET__ARTIFACT_PUT__INIT;
        put.hash = hex;
        put.total_size = size;
        put.offset = offset;
        put.data.data = buf;
        put.data.len = n;
        put.chunk_sha256.data = chunk_digest;
        put.chunk_sha256.len = DF_SHA256_BYTES;
        Dreamfleet__Request pr = DREAMFLEET__REQUEST__INIT;
        pr.body_case = DREAMFLEET__REQUEST__BODY_ARTIFACT_PUT;
        pr.artifact_put = &put;
        rep = NULL;
        rc = df_rpc_call(self, &pr, &rep, err);
        if (rc)
            break;
        if (rep->status && !(rep->status == DF_E_STATE && rep->artifact)) {
            rc = df_error_set(err, rep->status, "upload %s: %s", path, rep->error);
            df_wire_free(&rep->base);
            break;
        }
        /* The store says where it stands (also after a gap): continue there. */
        offset = rep->artifact ? rep->artifact->have_bytes : offset + n;
        complete = rep->artifact && rep->artifact->complete;
        df_wire_free(&rep->base);
        if (progress)
            progress(ctx, offset, size);
    } while (!complete);
    free(buf);
    fclose(f);
    return rc;
}

int df_rpc_download(df_rpc_t *self, const char *hash, df_artifacts_t *store,
                    void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx, df_error_t *err)
{
    df_artifact_info have;
    int rc = df_artifacts_stat(store, hash, &have, err);
    if (rc || have.complete)
        return rc;
    uint64_t offset = have.have;
    for (;;) {
        Dreamfleet__ArtifactGet get = DREAMFLEET__ARTIFACT_GET__INIT;
        get.hash = (char *)hash;
        get.offset = offset;
        get.max_bytes = CHUNK;
        Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
        req.body_case = DREAMFLEET__REQUEST__BODY_ARTIFACT_GET;
        req.artifact_get = &get;
        Dreamfleet__Reply *rep = NULL;
        if ((rc = call_ok(self, &req, &rep, err))) {
            if (rep)
                df_wire_free(&rep->base);
            return rc;
        }
        Dreamfleet__ArtifactChunk *c = rep->chunk;
        if (!c || (c->chunk_sha256.len && c->chunk_sha256.len != DF_SHA256_BYTES)) {
            df_wire_free(&rep->base);
            return df_error_set(err, DF_E_FORMAT, "artifact %.12s: the coordinator sent no chunk", hash);
        }
        df_artifact_info info;
        rc = df_artifacts_write(store, hash, c->total_size, c->offset, c->data.data, c->data.len,
                                c->chunk_sha256.len ? c->chunk_sha256.data : NULL, &info, err);
        uint64_t total = c->total_size;
        size_t got = c->data.len;
        df_wire_free(&rep->base);
        if (rc)
            return rc;
        if (progress)
            progress(ctx, info.have, total);
        if (info.complete)
            return DF_OK;
        if (got == 0)
            return df_error_set(err, DF_E_FORMAT, "artifact %.12s: download stalled at %llu of %llu bytes", hash,
                                (unsigned long long)info.have, (unsigned long long)total);
        offset = info.have;
    }
}
