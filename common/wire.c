/*  wire.c - see wire.h. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "lz4_frame.h"

static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *desc;
} s_types[DF_MSG_TYPE_END] = {
    [DF_MSG_HELLO] = {"WorkerHello", &dreamfleet__worker_hello__descriptor},
    [DF_MSG_HELLO_ACK] = {"HelloAck", &dreamfleet__hello_ack__descriptor},
    [DF_MSG_HEARTBEAT] = {"Heartbeat", &dreamfleet__heartbeat__descriptor},
    [DF_MSG_TASK_ASSIGN] = {"TaskAssign", &dreamfleet__task_assign__descriptor},
    [DF_MSG_TASK_PROGRESS] = {"TaskProgress", &dreamfleet__task_progress__descriptor},
    [DF_MSG_TASK_RESULT] = {"TaskResult", &dreamfleet__task_result__descriptor},
    [DF_MSG_TASK_FAILURE] = {"TaskFailure", &dreamfleet__task_failure__descriptor},
    [DF_MSG_TASK_ACK] = {"TaskAck", &dreamfleet__task_ack__descriptor},
    [DF_MSG_TASK_CANCEL] = {"TaskCancel", &dreamfleet__task_cancel__descriptor},
    [DF_MSG_GOODBYE] = {"Goodbye", &dreamfleet__goodbye__descriptor},
    [DF_MSG_PROTOCOL_ERROR] = {"ProtocolError", &dreamfleet__protocol_error__descriptor},
    [DF_MSG_REQUEST] = {"Request", &dreamfleet__request__descriptor},
    [DF_MSG_REPLY] = {"Reply", &dreamfleet__reply__descriptor},
    [DF_MSG_LORA_DELTA] = {"LoraDelta", &dreamfleet__lora_delta__descriptor},
};

df_wire_limits df_wire_default_limits(void)
{
    df_wire_limits l = {.max_message = 64u << 20, .max_frame = 64u << 20, .compress_above = 4096};
    return l;
}

const char *df_msg_type_name(int type)
{
    return type > 0 && type < DF_MSG_TYPE_END && s_types[type].name ? s_types[type].name : "?";
}

const ProtobufCMessageDescriptor *df_msg_descriptor(int type)
{
    return type > 0 && type < DF_MSG_TYPE_END ? s_types[type].desc : NULL;
}

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int df_wire_encode(df_msg_type type, const ProtobufCMessage *msg, const df_wire_limits *limits,
                   uint8_t **out, size_t *out_len, df_error_t *err)
{
    const ProtobufCMessageDescriptor *desc = df_msg_descriptor(type);
    if (!desc || !msg || msg->descriptor != desc)
        return df_error_set(err, DF_E_INVALID, "wire: message does not match type %d (%s)", (int)type,
                            df_msg_type_name(type));
    size_t raw = protobuf_c_message_get_packed_size(msg);
    if (raw > limits->max_message || raw > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "wire: %s of %zu bytes exceeds the %zu-byte message limit",
                            desc->short_name, raw, limits->max_message);
    uint8_t *packed = malloc(raw ? raw : 1);
    if (!packed)
        return df_error_set(err, DF_E_NOMEM, "wire: cannot allocate %zu bytes", raw);
    protobuf_c_message_pack(msg, packed);

    uint8_t *payload = packed;
    size_t payload_len = raw;
    uint8_t flags = 0;
    uint8_t *compressed = NULL;
    size_t clen = 0;
    if (raw > limits->compress_above && df_lz4_compress(packed, raw, &compressed, &clen, NULL) == DF_OK) {
        if (clen < raw) {
            payload = compressed;
            payload_len = clen;
            flags = DF_WIRE_FLAG_LZ4;
        }
    }
    int rc = DF_OK;
    if (DF_WIRE_HEADER + payload_len > limits->max_frame) {
        rc = df_error_set(err, DF_E_RANGE, "wire: %s frame of %zu bytes exceeds the %zu-byte frame limit",
                          desc->short_name, DF_WIRE_HEADER + payload_len, limits->max_frame);
    } else if (!(*out = malloc(DF_WIRE_HEADER + payload_len))) {
        rc = df_error_set(err, DF_E_NOMEM, "wire: cannot allocate %zu bytes", DF_WIRE_HEADER + payload_len);
    } else {
        uint8_t *h = *out;
        h[0] = 'D', h[1] = 'F', h[2] = DF_WIRE_VERSION, h[3] = flags;
        put_u16(h + 4, (uint16_t)type);
        put_u16(h + 6, 0);
        put_u32(h + 8, (uint32_t)payload_len);
        put_u32(h + 12, (uint32_t)raw);
        memcpy(h + DF_WIRE_HEADER, payload, payload_len);
        *out_len = DF_WIRE_HEADER + payload_len;
    }
    free(compressed);
    free(packed);
    return rc;
}

/* protobuf-c accepts a field number of 0 when its tag is a non-minimal
 * varint ("80 00"), keeps it as an unknown field, and then refuses its own
 * re-encoding of it. Field 0 is invalid protobuf: reject it at the door,
 * in nested messages too. Depth is bounded by protobuf-c's own parser. */
static int has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(base + fd->quantifier_offset);
            if (which != fd->id)
                continue;
        }
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + fd->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)(base + fd->offset);
            for (size_t j = 0; j < n; j++)
                if (items[j] && has_field_zero(items[j]))
                    return 1;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + fd->offset);
            if (sub && has_field_zero(sub))
                return 1;
        }
    }
    return 0;
}

int df_wire_decode(const uint8_t *buf, size_t len, const df_wire_limits *limits, df_msg_type *type,
                   ProtobufCMessage **msg, df_error_t *err)
{
    *msg = NULL;
    if (len > limits->max_frame)
        return df_error_set(err, DF_E_RANGE, "wire: frame of %zu bytes exceeds the %zu-byte limit", len,
                            limits->max_frame);
    if (len < DF_WIRE_HEADER)
        return df_error_set(err, DF_E_FORMAT, "wire: frame of %zu bytes is shorter than the %d-byte header",
                            len, DF_WIRE_HEADER);
    if (buf[0] != 'D' || buf[1] != 'F')
        return df_error_set(err, DF_E_FORMAT, "wire: bad magic 0x%02x%02x (not a dreamfleet message)", buf[0],
                            buf[1]);
    if (buf[2] != DF_WIRE_VERSION)
        return df_error_set(err, DF_E_UNSUPPORTED, "wire: protocol version %u, this build speaks %d", buf[2],
                            DF_WIRE_VERSION);
    uint8_t flags = buf[3];
    if (flags & ~DF_WIRE_FLAG_LZ4)
        return df_error_set(err, DF_E_FORMAT, "wire: unknown flags 0x%02x", flags);
    uint16_t t = get_u16(buf + 4);
    const ProtobufCMessageDescriptor *desc = df_msg_descriptor(t);
    if (!desc)
        return df_error_set(err, DF_E_FORMAT, "wire: unknown message type %u", t);
    if (get_u16(buf + 6) != 0)
        return df_error_set(err, DF_E_FORMAT, "wire: reserved header bytes are not zero");
    size_t payload_len = get_u32(buf + 8), raw = get_u32(buf + 12);
    if (payload_len != len - DF_WIRE_HEADER)
        return df_error_set(err, DF_E_FORMAT, "wire: %s header says %zu payload bytes, frame has %zu",
                            desc->short_name, payload_len, len - DF_WIRE_HEADER);
    if (raw > limits->max_message)
        return df_error_set(err, DF_E_RANGE, "wire: %s of %zu bytes exceeds the %zu-byte message limit",
                            desc->short_name, raw, limits->max_message);
    const uint8_t *payload = buf + DF_WIRE_HEADER;
    uint8_t *inflated = NULL;
    if (flags & DF_WIRE_FLAG_LZ4) {
        inflated = malloc(raw ? raw : 1);
        if (!inflated)
            return df_error_set(err, DF_E_NOMEM, "wire: cannot allocate %zu bytes", raw);
        int rc = df_lz4_decompress(payload, payload_len, inflated, raw, err);
        if (rc) {
            free(inflated);
            return df_error_prefix(err, "wire: %s", desc->short_name);
        }
        payload = inflated;
    } else if (raw != payload_len) {
        return df_error_set(err, DF_E_FORMAT, "wire: uncompressed %s with sizes %zu and %zu", desc->short_name,
                            payload_len, raw);
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, raw, payload);
    free(inflated);
    if (!m)
        return df_error_set(err, DF_E_FORMAT, "wire: malformed %s payload (%zu bytes)", desc->short_name, raw);
    if (has_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return df_error_set(err, DF_E_FORMAT, "wire: %s payload has a field numbered 0", desc->short_name);
    }
    *type = (df_msg_type)t;
    *msg = m;
    return DF_OK;
}

void df_wire_free(ProtobufCMessage *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}
