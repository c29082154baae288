/*  test_wire.c - SHA-256 against FIPS vectors, bounded lz4 framing, and the
 *  message envelope: round trips of every type, and each way a frame can be
 *  malformed, oversized or from another protocol version. */
#include <stdlib.h>

#include "lz4_frame.h"
#include "sha256.h"
#include "test.h"
#include "wire.h"

static void hex_of(const char *msg, size_t n, char hex[DF_SHA256_HEX])
{
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(msg, n, d);
    df_sha256_hex(d, hex);
}

static void test_sha256_vectors(void)
{
    char hex[DF_SHA256_HEX];
    hex_of("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    hex_of("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* A million 'a', fed in uneven pieces to cross block boundaries. */
    df_sha256_t s;
    df_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    for (size_t piece = 1; left; piece = (piece * 7 + 13) % sizeof a) {
        size_t take = piece < left ? piece : left;
        df_sha256_update(&s, a, take);
        left -= take;
    }
    uint8_t d[DF_SHA256_BYTES];
    df_sha256_final(&s, d);
    df_sha256_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    /* 55 and 56 bytes: the padding edge. */
    char x[64];
    memset(x, 'x', sizeof x);
    hex_of(x, 55, hex);
    char hex2[DF_SHA256_HEX];
    hex_of(x, 56, hex2);
    CHECK(strcmp(hex, hex2) != 0);
}

static void test_sha256_parse_and_file(void)
{
    df_error_t err;
    df_error_clear(&err);
    uint8_t d[DF_SHA256_BYTES], e[DF_SHA256_BYTES];
    df_sha256("abc", 3, d);
    char hex[DF_SHA256_HEX];
    df_sha256_hex(d, hex);
    CHECK_OK(df_sha256_parse(hex, e, &err), &err);
    CHECK(memcmp(d, e, sizeof d) == 0);
    hex[0] = 'B'; /* upper case is fine */
    CHECK_OK(df_sha256_parse(hex, e, &err), &err);
    hex[5] = 'g';
    CHECK_FAILS(df_sha256_parse(hex, e, &err), &err, DF_E_FORMAT, "non-hex character at 5");
    CHECK_FAILS(df_sha256_parse("abc", e, &err), &err, DF_E_FORMAT, "not 64 hex digits");
    CHECK_FAILS(df_sha256_parse(NULL, e, &err), &err, DF_E_FORMAT, "(null)");

    char path[] = "/tmp/df_sha_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    for (int i = 0; i < 100000; i++)
        fputc(i * 31, f);
    fclose(f);
    uint64_t size = 0;
    CHECK_OK(df_sha256_file(path, d, &size, &err), &err);
    CHECK_EQ(size, 100000);
    unsigned char *buf = malloc(100000);
    for (int i = 0; i < 100000; i++)
        buf[i] = (unsigned char)(i * 31);
    df_sha256(buf, 100000, e);
    CHECK(memcmp(d, e, sizeof d) == 0);
    free(buf);
    remove(path);
    CHECK_FAILS(df_sha256_file(path, d, &size, &err), &err, DF_E_IO, path);
}

static void test_lz4_bounds(void)
{
    df_error_t err;
    df_error_clear(&err);
    enum { N = 100000 };
    uint8_t *src = malloc(N), *back = malloc(N + 1);
    for (int i = 0; i < N; i++)
        src[i] = (uint8_t)(i % 251 < 200 ? 7 : i);
    uint8_t *frame;
    size_t flen;
    CHECK_OK(df_lz4_compress(src, N, &frame, &flen, &err), &err);
    CHECK(flen < N / 2);
    CHECK_OK(df_lz4_decompress(frame, flen, back, N, &err), &err);
    CHECK(memcmp(src, back, N) == 0);
    /* Announced size smaller than the content: rejected, nothing written past. */
    back[N - 1000] = 0xAB;
    CHECK_FAILS(df_lz4_decompress(frame, flen, back, N - 1000, &err), &err, DF_E_FORMAT, "more than");
    CHECK_EQ(back[N - 1000], 0xAB);
    CHECK_FAILS(df_lz4_decompress(frame, flen, back, N + 1, &err), &err, DF_E_FORMAT, "");
    /* Truncated, corrupted, trailing garbage. */
    CHECK_FAILS(df_lz4_decompress(frame, flen / 2, back, N, &err), &err, DF_E_FORMAT, "");
    uint8_t *bad = malloc(flen + 3);
    memcpy(bad, frame, flen);
    bad[flen / 2] ^= 0x5a;
    CHECK_FAILS(df_lz4_decompress(bad, flen, back, N, &err), &err, DF_E_FORMAT, "");
    memcpy(bad, frame, flen);
    bad[flen] = 1, bad[flen + 1] = 2, bad[flen + 2] = 3;
    CHECK_FAILS(df_lz4_decompress(bad, flen + 3, back, N, &err), &err, DF_E_FORMAT, "");
    CHECK_FAILS(df_lz4_decompress((const uint8_t *)"not lz4 at all", 14, back, N, &err), &err, DF_E_FORMAT,
                "malformed");
    free(bad);
    free(frame);
    free(src);
    free(back);
}

static Dreamfleet__TaskAssign make_assign(const char *id, size_t params_len, uint8_t *params)
{
    Dreamfleet__TaskAssign a = DREAMFLEET__TASK_ASSIGN__INIT;
    a.task_id = (char *)id;
    a.job_id = "j-1";
    a.type = "bench";
    a.params.data = params;
    a.params.len = params_len;
    a.attempt = 2;
    return a;
}

static void test_wire_roundtrip(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_wire_limits lim = df_wire_default_limits();
    /* Small: sent raw. */
    Dreamfleet__TaskAssign a = make_assign("t-42", 0, NULL);
    uint8_t *buf;
    size_t len;
    CHECK_OK(df_wire_encode(DF_MSG_TASK_ASSIGN, &a.base, &lim, &buf, &len, &err), &err);
    CHECK_EQ(buf[3] & DF_WIRE_FLAG_LZ4, 0);
    df_msg_type type;
    ProtobufCMessage *m;
    CHECK_OK(df_wire_decode(buf, len, &lim, &type, &m, &err), &err);
    CHECK_EQ(type, DF_MSG_TASK_ASSIGN);
    Dreamfleet__TaskAssign *got = (Dreamfleet__TaskAssign *)m;
    CHECK(got && strcmp(got->task_id, "t-42") == 0 && got->attempt == 2 && strcmp(got->type, "bench") == 0);
    df_wire_free(m);
    free(buf);
    /* Large and compressible: lz4-framed, same content back. */
    enum { P = 200000 };
    uint8_t *params = calloc(P, 1);
    for (int i = 0; i < P; i += 97)
        params[i] = (uint8_t)i;
    a = make_assign("t-43", P, params);
    CHECK_OK(df_wire_encode(DF_MSG_TASK_ASSIGN, &a.base, &lim, &buf, &len, &err), &err);
    CHECK(buf[3] & DF_WIRE_FLAG_LZ4);
    CHECK(len < P / 4);
    CHECK_OK(df_wire_decode(buf, len, &lim, &type, &m, &err), &err);
    got = (Dreamfleet__TaskAssign *)m;
    CHECK(got && got->params.len == P && memcmp(got->params.data, params, P) == 0);
    df_wire_free(m);
    free(buf);
    /* Incompressible and large: sent raw even above the threshold. */
    uint32_t x = 1;
    for (int i = 0; i < P; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32: no structure for lz4 to find */
        params[i] = (uint8_t)x;
    }
    a = make_assign("t-44", P, params);
    CHECK_OK(df_wire_encode(DF_MSG_TASK_ASSIGN, &a.base, &lim, &buf, &len, &err), &err);
    CHECK_EQ(buf[3] & DF_WIRE_FLAG_LZ4, 0);
    free(buf);
    free(params);
    /* A oneof request and every type's name. */
    Dreamfleet__Request rq = DREAMFLEET__REQUEST__INIT;
    Dreamfleet__JobQuery q = DREAMFLEET__JOB_QUERY__INIT;
    q.job_id = "j-7";
    rq.request_id = 99;
    rq.body_case = DREAMFLEET__REQUEST__BODY_STATUS;
    rq.status = &q;
    CHECK_OK(df_wire_encode(DF_MSG_REQUEST, &rq.base, &lim, &buf, &len, &err), &err);
    CHECK_OK(df_wire_decode(buf, len, &lim, &type, &m, &err), &err);
    Dreamfleet__Request *r2 = (Dreamfleet__Request *)m;
    CHECK(r2->request_id == 99 && r2->body_case == DREAMFLEET__REQUEST__BODY_STATUS &&
          strcmp(r2->status->job_id, "j-7") == 0);
    df_wire_free(m);
    free(buf);
    for (int t = 1; t < DF_MSG_TYPE_END; t++)
        CHECK(df_msg_descriptor(t) != NULL && strcmp(df_msg_type_name(t), "?") != 0);
    CHECK(strcmp(df_msg_type_name(0), "?") == 0 && strcmp(df_msg_type_name(999), "?") == 0);
    /* Encoding with the wrong descriptor is refused. */
    CHECK_FAILS(df_wire_encode(DF_MSG_HELLO, &rq.base, &lim, &buf, &len, &err), &err, DF_E_INVALID,
                "does not match");
}

/* One valid envelope to damage in each test below. */
static uint8_t *valid_frame(size_t *len, int compressed)
{
    df_wire_limits lim = df_wire_default_limits();
    static uint8_t params[100000];
    Dreamfleet__TaskAssign a = make_assign("t-1", compressed ? sizeof params : 3, params);
    uint8_t *buf = NULL;
    df_wire_encode(DF_MSG_TASK_ASSIGN, &a.base, &lim, &buf, len, NULL);
    return buf;
}

static void expect_reject(uint8_t *buf, size_t len, const df_wire_limits *lim, int code, const char *needle)
{
    df_error_t err;
    df_error_clear(&err);
    df_msg_type type;
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    CHECK_FAILS(df_wire_decode(buf, len, lim, &type, &m, &err), &err, code, needle);
    CHECK(m == NULL);
}

static void test_wire_rejects(void)
{
    df_wire_limits lim = df_wire_default_limits();
    size_t len;
    uint8_t *buf = valid_frame(&len, 0);
    expect_reject(buf, 10, &lim, DF_E_FORMAT, "shorter than the 16-byte header");
    expect_reject(buf, len - 1, &lim, DF_E_FORMAT, "header says");
    buf[0] = 'X';
    expect_reject(buf, len, &lim, DF_E_FORMAT, "bad magic");
    buf[0] = 'D', buf[2] = 2;
    expect_reject(buf, len, &lim, DF_E_UNSUPPORTED, "protocol version 2, this build speaks 1");
    buf[2] = DF_WIRE_VERSION, buf[3] = 0x80;
    expect_reject(buf, len, &lim, DF_E_FORMAT, "unknown flags");
    buf[3] = 0, buf[4] = 77;
    expect_reject(buf, len, &lim, DF_E_FORMAT, "unknown message type 77");
    buf[4] = DF_MSG_TASK_ASSIGN, buf[6] = 1;
    expect_reject(buf, len, &lim, DF_E_FORMAT, "reserved");
    buf[6] = 0, buf[12] ^= 1;
    expect_reject(buf, len, &lim, DF_E_FORMAT, "uncompressed TaskAssign with sizes");
    buf[12] ^= 1;
    buf[DF_WIRE_HEADER] = 0xff; /* a field tag with an impossible wire type */
    buf[DF_WIRE_HEADER + 1] = 0xff;
    expect_reject(buf, len, &lim, DF_E_FORMAT, "malformed TaskAssign payload");
    free(buf);

    /* Size limits apply before any allocation. */
    df_wire_limits tiny = {.max_message = 64, .max_frame = 1 << 20, .compress_above = 4096};
    buf = valid_frame(&len, 1);
    expect_reject(buf, len, &tiny, DF_E_RANGE, "exceeds the 64-byte message limit");
    df_wire_limits small_frame = {.max_message = 1 << 20, .max_frame = 100, .compress_above = 4096};
    expect_reject(buf, len, &small_frame, DF_E_RANGE, "exceeds the 100-byte limit");
    /* A compressed frame announcing fewer bytes than it holds (a bomb), or more. */
    uint32_t raw = (uint32_t)(buf[12] | buf[13] << 8 | buf[14] << 16 | (uint32_t)buf[15] << 24);
    buf[12] = (uint8_t)((raw - 1000) & 0xff), buf[13] = (uint8_t)((raw - 1000) >> 8);
    buf[14] = (uint8_t)((raw - 1000) >> 16);
    expect_reject(buf, len, &lim, DF_E_FORMAT, "more than");
    free(buf);
    buf = valid_frame(&len, 1);
    buf[len - 7] ^= 0x33; /* inside the compressed data or checksum */
    expect_reject(buf, len, &lim, DF_E_FORMAT, "lz4");
    free(buf);
    /* Encoding also respects the limits. */
    df_error_t err;
    df_error_clear(&err);
    static uint8_t params[1000];
    Dreamfleet__TaskAssign a = make_assign("t", sizeof params, params);
    uint8_t *out;
    size_t out_len;
    CHECK_FAILS(df_wire_encode(DF_MSG_TASK_ASSIGN, &a.base, &tiny, &out, &out_len, &err), &err, DF_E_RANGE,
                "message limit");
}

static void test_wire_field_zero(void)
{
    /* Found by the fuzzer: a DeviceInfo inside a WorkerHello carrying a field
     * numbered 0, its tag written as the non-minimal varint 80 00. */
    static const uint8_t frame[] = {
        0x44, 0x46, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00,
        0x0a, 0x03, 0x77, 0x2d, 0x31, 0x12, 0x04, 0x6e, 0x6f, 0x64, 0x65, 0x22, 0x10, 0x12, 0x08, 0x6c,
        0x6c, 0x76, 0x6d, 0x70, 0x69, 0x70, 0x65, 0x80, 0x00, 0x3a, 0x80, 0x00, 0x3a, 0x2a, 0x05, 0x62,
        0x65, 0x6e, 0x63, 0x68, 0x2a, 0x04, 0x6e, 0x6f, 0x6f, 0x70};
    df_wire_limits lim = df_wire_default_limits();
    expect_reject((uint8_t *)frame, sizeof frame, &lim, DF_E_FORMAT, "WorkerHello payload has a field numbered 0");
}

static void test_wire_random_garbage(void)
{
    /* Random bytes after a valid header must be rejected or decoded, never
     * crash (the fuzzer goes much further; this is the always-on floor). */
    df_wire_limits lim = df_wire_default_limits();
    uint8_t buf[256];
    uint32_t x = 12345;
    int decoded = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = 16 + round % 200;
        for (size_t i = 0; i < len; i++) {
            x = x * 1664525u + 1013904223u;
            buf[i] = (uint8_t)(x >> 24);
        }
        buf[0] = 'D', buf[1] = 'F', buf[2] = 1, buf[3] &= 1, buf[5] = 0, buf[6] = buf[7] = 0;
        buf[4] = (uint8_t)(1 + round % (DF_MSG_TYPE_END - 1));
        uint32_t pl = (uint32_t)(len - 16);
        buf[8] = (uint8_t)pl, buf[9] = buf[10] = buf[11] = 0;
        if (!(buf[3] & 1))
            buf[12] = (uint8_t)pl, buf[13] = buf[14] = buf[15] = 0;
        df_msg_type type;
        ProtobufCMessage *m;
        if (df_wire_decode(buf, len, &lim, &type, &m, NULL) == DF_OK) {
            decoded++;
            df_wire_free(m);
        }
    }
    CHECK(decoded > 0); /* protobuf accepts many random byte strings: both paths ran */
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    RUN(test_sha256_vectors);
    RUN(test_sha256_parse_and_file);
    RUN(test_lz4_bounds);
    RUN(test_wire_roundtrip);
    RUN(test_wire_rejects);
    RUN(test_wire_field_zero);
    RUN(test_wire_random_garbage);
    return test_summary();
}
