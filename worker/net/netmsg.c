/*  netmsg.c - see netmsg.h. */
#include "netmsg.h"

#include <stdlib.h>

zmsg_t *df_netmsg_pack(const uint8_t *peer, size_t peer_len, df_msg_type type, const ProtobufCMessage *msg,
                       const df_wire_limits *limits, df_error_t *err)
{
    uint8_t *buf;
    size_t len;
    if (df_wire_encode(type, msg, limits, &buf, &len, err))
        return NULL;
    zmsg_t *m = zmsg_new();
    if (m && peer)
        zmsg_addmem(m, peer, peer_len);
    if (m)
        zmsg_addmem(m, buf, len);
    free(buf);
    if (!m)
        df_error_set(err, DF_E_NOMEM, "netmsg: out of memory");
    return m;
}

int df_netmsg_send(df_uvzmq_t *z, const uint8_t *peer, size_t peer_len, df_msg_type type,
                   const ProtobufCMessage *msg, const df_wire_limits *limits, df_error_t *err)
{
    zmsg_t *m = df_netmsg_pack(peer, peer_len, type, msg, limits, err);
    if (!m)
        return err ? err->code : DF_E_NOMEM;
    return df_uvzmq_send(z, &m, err);
}

int df_netmsg_send_sock(zsock_t *sock, df_msg_type type, const ProtobufCMessage *msg, const df_wire_limits *limits,
                        df_error_t *err)
{
    zmsg_t *m = df_netmsg_pack(NULL, 0, type, msg, limits, err);
    if (!m)
        return err ? err->code : DF_E_NOMEM;
    if (zmsg_send(&m, sock) != 0) {
        zmsg_destroy(&m);
        return df_error_set(err, DF_E_IO, "send: %s", zmq_strerror(zmq_errno()));
    }
    return DF_OK;
}

int df_netmsg_recv_sock(zsock_t *sock, int timeout_ms, const df_wire_limits *limits, df_msg_type *type,
                        ProtobufCMessage **msg, df_error_t *err)
{
    zpoller_t *poller = zpoller_new(sock, NULL);
    if (!poller)
        return df_error_set(err, DF_E_NOMEM, "netmsg: out of memory");
    void *which = zpoller_wait(poller, timeout_ms);
    int interrupted = zpoller_terminated(poller);
    zpoller_destroy(&poller);
    if (!which)
        return df_error_set(err, DF_E_IO, interrupted ? "interrupted" : "timed out after %d ms", timeout_ms);
    zmsg_t *m = zmsg_recv(sock);
    if (!m)
        return df_error_set(err, DF_E_IO, "receive failed");
    zframe_t *f = zmsg_last(m);
    int rc = f ? df_wire_decode(zframe_data(f), zframe_size(f), limits, type, msg, err)
               : df_error_set(err, DF_E_FORMAT, "empty message");
    zmsg_destroy(&m);
    return rc;
}
