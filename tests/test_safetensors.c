/*  test_safetensors.c - the safetensors reader and writer: a round trip, and
 *  every way a header can be wrong, each with the message a user would see. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"
#include "safetensors.h"
#include "test.h"

static char g_dir[64];

/*  A file image: 8-byte length, the header text, then `data_bytes` bytes of
 *  data (a counting pattern). Returns a malloc'd buffer and its size. */
static uint8_t *image(const char *header, size_t data_bytes, size_t *size)
{
    size_t h = strlen(header);
    *size = 8 + h + data_bytes;
    uint8_t *b = malloc(*size);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_bytes; i++)
        b[8 + h + i] = (uint8_t)i;
    return b;
}

/*  Parses header + data and expects DF_E_FORMAT with needle in the message. */
static void expect_bad(const char *header, size_t data_bytes, const char *needle, int line)
{
    size_t n;
    uint8_t *b = image(header, data_bytes, &n);
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *st = df_safetensors_from_memory(b, n, "bad.safetensors", &err);
    test_checks_++;
    if (st || err.code != DF_E_FORMAT || !strstr(err.msg, needle) || !strstr(err.msg, "bad.safetensors")) {
        fprintf(stderr, "%s:%d: header %s: expected DF_E_FORMAT with \"%s\", got %s: \"%s\"\n", __FILE__,
                line, header, needle, df_status_name(err.code), err.msg);
        test_failures_++;
    }
    df_safetensors_destroy(&st);
    free(b);
}
#define BAD(h, n, needle) expect_bad(h, n, needle, __LINE__)

static void test_round_trip(void)
{
    df_error_t err;
    df_error_clear(&err);
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    uint16_t h[4];
    for (int i = 0; i < 4; i++)
        h[i] = df_float_to_half((float)i * 0.25f - 0.5f);
    int64_t ids[3] = {0, 1, 76};
    int64_t sa[2] = {2, 3}, sh[1] = {4}, si[1] = {3}, se[2] = {0, 5};

    df_st_writer_t *w = df_st_writer_new();
    CHECK_OK(df_st_writer_add(w, "layer.weight", DF_F32, 2, sa, a, &err), &err);
    CHECK_OK(df_st_writer_add(w, "layer.bias", DF_F16, 1, sh, h, &err), &err);
    CHECK_OK(df_st_writer_add(w, "position_ids", DF_I64, 1, si, ids, &err), &err);
    CHECK_OK(df_st_writer_add(w, "empty", DF_F32, 2, se, NULL, &err), &err);
    CHECK_OK(df_st_writer_set_metadata(w, "format", "pt", &err), &err);
    CHECK_OK(df_st_writer_set_metadata(w, "ss_network_dim", "16", &err), &err);
    CHECK_FAILS(df_st_writer_add(w, "layer.bias", DF_F16, 1, sh, h, &err), &err, DF_E_INVALID, "twice");
    CHECK_FAILS(df_st_writer_add(w, "", DF_F16, 1, sh, h, &err), &err, DF_E_INVALID, "name");
    CHECK_FAILS(df_st_writer_add(w, "__metadata__", DF_F16, 1, sh, h, &err), &err, DF_E_INVALID, "name");
    int64_t neg[1] = {-1};
    CHECK_FAILS(df_st_writer_add(w, "neg", DF_F16, 1, neg, h, &err), &err, DF_E_INVALID, "shape");
    CHECK_FAILS(df_st_writer_add(w, "nodata", DF_F16, 1, sh, NULL, &err), &err, DF_E_INVALID, "no data");
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    CHECK_OK(df_st_writer_write(w, path, &err), &err);
    df_st_writer_destroy(&w);
    CHECK(w == NULL);
    CHECK(access(path, F_OK) == 0);

    df_safetensors_t *st = df_safetensors_open(path, &err);
    CHECK(st != NULL);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ(df_safetensors_count(st), 4);
    CHECK(strcmp(df_safetensors_at(st, 0)->name, "layer.weight") == 0); /* the writer's order */
    CHECK(df_safetensors_at(st, 4) == NULL);
    const df_st_tensor *t = df_safetensors_find(st, "layer.weight");
    CHECK(t && t->dtype == DF_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nelem == 6);
    /* The header is padded so the data section starts 8-aligned. */
    CHECK(t && ((uintptr_t)t->data % 8) == 0);
    float f[6] = {0};
    CHECK_OK(df_st_tensor_to_f32(t, f, &err), &err);
    CHECK(memcmp(f, a, sizeof a) == 0);
    t = df_safetensors_find(st, "layer.bias");
    CHECK(t && t->dtype == DF_F16 && t->nbytes == 8);
    CHECK_OK(df_st_tensor_to_f32(t, f, &err), &err);
    CHECK(f[0] == -0.5f && f[3] == 0.25f);
    t = df_safetensors_find(st, "position_ids");
    CHECK(t && t->dtype == DF_I64 && memcmp(t->data, ids, sizeof ids) == 0);
    CHECK_FAILS(df_st_tensor_to_f32(t, f, &err), &err, DF_E_FORMAT, "not a float");
    t = df_safetensors_find(st, "empty");
    CHECK(t && t->nelem == 0 && t->nbytes == 0);
    CHECK(df_safetensors_find(st, "missing") == NULL);
    CHECK(df_safetensors_metadata(st, "format") && strcmp(df_safetensors_metadata(st, "format"), "pt") == 0);
    CHECK(df_safetensors_metadata(st, "nope") == NULL);
    CHECK(strcmp(df_safetensors_path(st), path) == 0);
    df_safetensors_destroy(&st);
    CHECK(st == NULL);
    df_safetensors_destroy(&st); /* idempotent */

    /* A writer with nothing in it writes a valid empty file. */
    w = df_st_writer_new();
    CHECK_OK(df_st_writer_write(w, path, &err), &err);
    df_st_writer_destroy(&w);
    st = df_safetensors_open(path, &err);
    CHECK(st && df_safetensors_count(st) == 0);
    df_safetensors_destroy(&st);
    unlink(path);
}

static void test_bf16_and_scalar(void)
{
    /* A scalar (shape []) holds one element; BF16 converts by its own rule. */
    char hdr[] = "{\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}";
    size_t n;
    uint8_t *b = image(hdr, 2, &n);
    uint16_t one = df_float_to_bf16(1.5f);
    memcpy(b + n - 2, &one, 2);
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *st = df_safetensors_from_memory(b, n, "s.safetensors", &err);
    CHECK(st != NULL);
    if (st) {
        const df_st_tensor *t = df_safetensors_at(st, 0);
        CHECK(t->ndim == 0 && t->nelem == 1);
        float f = 0;
        CHECK_OK(df_st_tensor_to_f32(t, &f, &err), &err);
        CHECK(f == 1.5f);
    }
    df_safetensors_destroy(&st);
    free(b);
}

static void test_bad_headers(void)
{
    const char *ok_entry = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[512];
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "pass the end");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "backwards");
    BAD("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unsupported dtype");
    BAD("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":7,\"data_offsets\":[0,4]}}", 4, "shape");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
        "overflows");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unexpected keys");
    BAD("{\"a\":[1,2]}", 4, "not a JSON object");
    BAD("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name");
    /* Two tensors on the same bytes, and a partial overlap; the message names both. */
    snprintf(h, sizeof h, "{%s,\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", ok_entry);
    BAD(h, 8, "overlap tensor 'a'");
    snprintf(h, sizeof h, "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6,10]},%s}", ok_entry);
    BAD(h, 10, "overlap tensor 'a'");
    snprintf(h, sizeof h, "{%s,%s}", ok_entry, ok_entry);
    BAD(h, 8, "duplicate");
    snprintf(h, sizeof h, "{%s,\"__metadata__\":{\"k\":1}}", ok_entry);
    BAD(h, 8, "metadata \"k\" is not a string");
    snprintf(h, sizeof h, "{%s,\"__metadata__\":[]}", ok_entry);
    BAD(h, 8, "__metadata__");
    BAD("[1,2,3]", 0, "JSON object");
    BAD("{\"a\":", 0, "header JSON");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} trailing", 4, "header JSON");

    /* Framing: too short, header length beyond the file or absurd. */
    df_error_t err;
    df_error_clear(&err);
    uint8_t tiny[4] = {0};
    df_safetensors_t *st = df_safetensors_from_memory(tiny, sizeof tiny, "t.safetensors", &err);
    CHECK(!st && err.code == DF_E_FORMAT && strstr(err.msg, "too short"));
    size_t n;
    uint8_t *b = image("{}", 0, &n);
    b[0] = 200; /* claims 200 bytes of header, has 2 */
    df_error_clear(&err);
    st = df_safetensors_from_memory(b, n, "t.safetensors", &err);
    CHECK(!st && err.code == DF_E_FORMAT && strstr(err.msg, "truncated"));
    b[0] = 0;
    b[5] = 1; /* 2^40 */
    df_error_clear(&err);
    st = df_safetensors_from_memory(b, n, "t.safetensors", &err);
    CHECK(!st && err.code == DF_E_FORMAT && strstr(err.msg, "limit"));
    free(b);
    b = image("{}", 0, &n);
    df_error_clear(&err);
    st = df_safetensors_from_memory(b, n, "t.safetensors", &err);
    CHECK(st && df_safetensors_count(st) == 0);
    df_safetensors_destroy(&st);
    free(b);
}

static void test_files(void)
{
    df_error_t err;
    df_error_clear(&err);
    char path[128];
    snprintf(path, sizeof path, "%s/none.safetensors", g_dir);
    CHECK_FAILS(df_safetensors_open(path, &err) ? DF_OK : err.code, &err, DF_E_NOT_FOUND, "none.safetensors");
    CHECK_FAILS(df_safetensors_open(g_dir, &err) ? DF_OK : err.code, &err, DF_E_IO, "not a regular file");
    /* A zero-byte file, and a PNG renamed to .safetensors. */
    snprintf(path, sizeof path, "%s/zero.safetensors", g_dir);
    FILE *f = fopen(path, "wb");
    fclose(f);
    CHECK_FAILS(df_safetensors_open(path, &err) ? DF_OK : err.code, &err, DF_E_FORMAT, "too short");
    f = fopen(path, "wb");
    fwrite("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 1, 16, f);
    fclose(f);
    CHECK_FAILS(df_safetensors_open(path, &err) ? DF_OK : err.code, &err, DF_E_FORMAT, "zero.safetensors");
    unlink(path);
    /* The writer reports a directory that does not exist. */
    df_st_writer_t *w = df_st_writer_new();
    snprintf(path, sizeof path, "%s/no/such/dir.safetensors", g_dir);
    CHECK_FAILS(df_st_writer_write(w, path, &err), &err, DF_E_IO, "no/such");
    df_st_writer_destroy(&w);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    snprintf(g_dir, sizeof g_dir, "/tmp/df_st_XXXXXX");
    if (!mkdtemp(g_dir))
        return 2;
    RUN(test_round_trip);
    RUN(test_bf16_and_scalar);
    RUN(test_bad_headers);
    RUN(test_files);
    rmdir(g_dir);
    return test_summary();
}
