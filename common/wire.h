/*  wire.h - the envelope every dreamfleet message travels in.
 *
 *  A 16-byte header, then the payload: one protobuf message from
 *  proto/dreamfleet.proto, lz4-framed when that makes it smaller and it is
 *  above the compression threshold.
 *
 *      offset  size  field
 *      0       2     magic "DF"
 *      2       1     protocol version (DF_WIRE_VERSION)
 *      3       1     flags: bit 0 = payload is an lz4 frame; others must be 0
 *      4       2     message type (df_msg_type), little-endian
 *      6       2     reserved, 0
 *      8       4     payload bytes as sent, little-endian (must match the frame)
 *      12      4     payload bytes after decompression, little-endian
 *
 *  Both sizes are checked against the limits before anything is allocated or
 *  decompressed, so a hostile or broken peer costs at most one bounded
 *  allocation and an error message; it can never crash or stall a daemon.
 */
#ifndef DF_WIRE_H
#define DF_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "dreamfleet.pb-c.h"
#include "error.h"

#define DF_WIRE_VERSION 1
#define DF_WIRE_HEADER 16
#define DF_WIRE_FLAG_LZ4 0x01

typedef enum {
    DF_MSG_HELLO = 1,
    DF_MSG_HELLO_ACK = 2,
    DF_MSG_HEARTBEAT = 3,
    DF_MSG_TASK_ASSIGN = 4,
    DF_MSG_TASK_PROGRESS = 5,
    DF_MSG_TASK_RESULT = 6,
    DF_MSG_TASK_FAILURE = 7,
    DF_MSG_TASK_ACK = 8,
    DF_MSG_TASK_CANCEL = 9,
    DF_MSG_GOODBYE = 10,
    DF_MSG_PROTOCOL_ERROR = 11,
    DF_MSG_REQUEST = 12,
    DF_MSG_REPLY = 13,
    DF_MSG_LORA_DELTA = 14,
    DF_MSG_TYPE_END
} df_msg_type;

typedef struct {
    size_t max_message;    /* largest payload after decompression */
    size_t max_frame;      /* largest envelope on the wire */
    size_t compress_above; /* payloads larger than this are lz4-framed when it helps */
} df_wire_limits;

/*  64 MiB each way, compression above 4 KiB. */
df_wire_limits df_wire_default_limits(void);

/*  "TaskAssign", ...; "?" for an unknown value. */
const char *df_msg_type_name(int type);

/*  The protobuf descriptor for a type; NULL when unknown. */
const ProtobufCMessageDescriptor *df_msg_descriptor(int type);

/*  Packs msg (whose descriptor must match type) into a newly malloc'd
 *  envelope. DF_E_RANGE when it exceeds the limits. */
int df_wire_encode(df_msg_type type, const ProtobufCMessage *msg, const df_wire_limits *limits,
                   uint8_t **out, size_t *out_len, df_error_t *err);

/*  Checks and unpacks an envelope. On success *msg is a message of the
 *  returned *type, freed with df_wire_free(). Errors: DF_E_UNSUPPORTED for
 *  another protocol version, DF_E_RANGE for size limits, DF_E_FORMAT for
 *  everything else malformed; the message says which field and why. */
int df_wire_decode(const uint8_t *buf, size_t len, const df_wire_limits *limits, df_msg_type *type,
                   ProtobufCMessage **msg, df_error_t *err);

void df_wire_free(ProtobufCMessage *msg);

#endif
