/*  netmsg.h - dreamfleet messages on ZeroMQ sockets.
 *
 *  A message is one ZeroMQ frame holding one envelope (common/wire.h). On the
 *  coordinator's ROUTER socket it is preceded by the peer's routing id.
 */
#ifndef DF_NETMSG_H
#define DF_NETMSG_H

#include <czmq.h>

#include "error.h"
#include "uvzmq.h"
#include "wire.h"

/*  Encodes msg as a ZeroMQ message: [peer][envelope] when peer is given,
 *  [envelope] otherwise. */
zmsg_t *df_netmsg_pack(const uint8_t *peer, size_t peer_len, df_msg_type type, const ProtobufCMessage *msg,
                       const df_wire_limits *limits, df_error_t *err);

/*  Sends through a libuv-driven socket. */
int df_netmsg_send(df_uvzmq_t *z, const uint8_t *peer, size_t peer_len, df_msg_type type,
                   const ProtobufCMessage *msg, const df_wire_limits *limits, df_error_t *err);

/*  Sends on a plain (blocking) socket, for the client. */
int df_netmsg_send_sock(zsock_t *sock, df_msg_type type, const ProtobufCMessage *msg, const df_wire_limits *limits,
                        df_error_t *err);

/*  Waits up to timeout_ms (-1: forever) for one message on a plain socket and
 *  decodes it. DF_E_IO with "timed out" when nothing came. */
int df_netmsg_recv_sock(zsock_t *sock, int timeout_ms, const df_wire_limits *limits, df_msg_type *type,
                        ProtobufCMessage **msg, df_error_t *err);

#endif
