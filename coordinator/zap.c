/*  zap.c - see zap.h. */
#include "zap.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "uvzmq.h"

struct _df_zap_t {
    zsock_t *sock;
    df_uvzmq_t *watch;
    zcertstore_t *workers, *clients;
    uint64_t refused;
};

static void reply(df_zap_t *self, const char *request_id, const char *code, const char *text, const char *user)
{
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "1.0");
    zmsg_addstr(m, request_id);
    zmsg_addstr(m, code);
    zmsg_addstr(m, text);
    zmsg_addstr(m, user);
    zmsg_addmem(m, "", 0); /* no metadata */
    df_uvzmq_send(self->watch, &m, NULL);
}

static void on_request(df_uvzmq_t *z, zmsg_t **msg, void *ctx)
{
    (void)z;
    df_zap_t *self = ctx;
    char *version = zmsg_popstr(*msg);
    char *request_id = zmsg_popstr(*msg);
    char *domain = zmsg_popstr(*msg);
    char *address = zmsg_popstr(*msg);
    zframe_t *identity = zmsg_pop(*msg);
    char *mechanism = zmsg_popstr(*msg);
    zframe_t *key = zmsg_pop(*msg);
    const char *rid = request_id ? request_id : "";
    df_debug("zap: %s from %s", mechanism ? mechanism : "?", address ? address : "?");
    if (!version || strcmp(version, "1.0") != 0 || !mechanism) {
        reply(self, rid, "500", "malformed ZAP request", "");
    } else if (strcmp(mechanism, "CURVE") != 0 || !key || zframe_size(key) != 32) {
        self->refused++;
        df_warn("refused %s: mechanism %s (CURVE keys are required)", address ? address : "?", mechanism);
        reply(self, rid, "400", "CURVE required", "");
    } else {
        char z85[41];
        zmq_z85_encode(z85, zframe_data(key), 32);
        zcert_t *w = zcertstore_lookup(self->workers, z85);
        zcert_t *c = w ? NULL : zcertstore_lookup(self->clients, z85);
        if (w || c) {
            const char *name = zcert_meta(w ? w : c, "name");
            char user[128];
            snprintf(user, sizeof user, "%s:%s", w ? "worker" : "client", name ? name : z85);
            reply(self, rid, "200", "OK", user);
        } else {
            self->refused++;
            df_warn("refused %s: public key %s is in neither allow-list", address ? address : "?", z85);
            reply(self, rid, "400", "unknown key", "");
        }
    }
    free(version), free(request_id), free(domain), free(address), free(mechanism);
    zframe_destroy(&identity);
    zframe_destroy(&key);
}

df_zap_t *df_zap_new(uv_loop_t *loop, const char *keys_dir, df_error_t *err)
{
    df_zap_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "zap: out of memory");
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/allow/workers", keys_dir);
    self->workers = zcertstore_new(path);
    snprintf(path, sizeof path, "%s/allow/clients", keys_dir);
    self->clients = zcertstore_new(path);
    self->sock = zsock_new(ZMQ_REP);
    if (!self->workers || !self->clients || !self->sock) {
        df_error_set(err, DF_E_NOMEM, "zap: out of memory");
        df_zap_destroy(&self);
        return NULL;
    }
    if (zsock_bind(self->sock, "inproc://zeromq.zap.01") != 0) {
        df_error_set(err, DF_E_STATE, "zap: cannot bind the ZAP endpoint (another coordinator in this process?)");
        df_zap_destroy(&self);
        return NULL;
    }
    self->watch = df_uvzmq_new(loop, self->sock, on_request, NULL, self, err);
    if (!self->watch) {
        df_zap_destroy(&self);
        return NULL;
    }
    return self;
}

void df_zap_destroy(df_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_zap_t *self = *self_p;
    df_uvzmq_close(&self->watch);
    zsock_destroy(&self->sock);
    zcertstore_destroy(&self->workers);
    zcertstore_destroy(&self->clients);
    free(self);
    *self_p = NULL;
}

uint64_t df_zap_refused(const df_zap_t *self) { return self->refused; }
