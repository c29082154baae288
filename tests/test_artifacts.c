/*  test_artifacts.c - the content-addressed store: chunked, resumable,
 *  verified uploads, reads, and every way an upload can be wrong. */
#include <stdlib.h>
#include <unistd.h>

#include "artifact_store.h"
#include "test.h"

static char g_dir[64];

static void data_and_hash(uint8_t *buf, size_t n, uint32_t seed, char hex[DF_SHA256_HEX])
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(seed >> 24);
    }
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(buf, n, d);
    df_sha256_hex(d, hex);
}

static void test_chunked_resumable_upload(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_artifacts_t *st = df_artifacts_new(g_dir, 0, &err);
    CHECK(st != NULL);
    enum { N = 300000, C = 65536 };
    uint8_t *buf = malloc(N), *back = malloc(N);
    char hex[DF_SHA256_HEX];
    data_and_hash(buf, N, 1, hex);
    df_artifact_info info;
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.have == 0 && !info.complete);
    /* Two chunks, then the "connection drops": the store remembers. */
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(buf, C, d);
    CHECK_OK(df_artifacts_write(st, hex, N, 0, buf, C, d, &info, &err), &err);
    CHECK_OK(df_artifacts_write(st, hex, N, C, buf + C, C, NULL, &info, &err), &err);
    df_artifacts_destroy(&st);
    st = df_artifacts_new(g_dir, 0, &err);
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.have == 2 * C && info.size == N && !info.complete);
    /* A retransmitted chunk is accepted; a chunk past the end of what is there is not. */
    CHECK_OK(df_artifacts_write(st, hex, N, C, buf + C, C, NULL, &info, &err), &err);
    CHECK_FAILS(df_artifacts_write(st, hex, N, 3 * C, buf + 3 * C, C, NULL, &info, &err), &err, DF_E_STATE,
                "resume at 131072");
    /* A chunk with the wrong checksum is refused and changes nothing. */
    CHECK_FAILS(df_artifacts_write(st, hex, N, 2 * C, buf + 2 * C, C, d, &info, &err), &err, DF_E_FORMAT,
                "fails its checksum");
    CHECK_FAILS(df_artifacts_write(st, hex, N + 1, 2 * C, buf + 2 * C, C, NULL, &info, &err), &err, DF_E_STATE,
                "announced 300000");
    CHECK_FAILS(df_artifacts_write(st, hex, N, N - 10, buf, 20, NULL, &info, &err), &err, DF_E_RANGE, "runs past");
    for (uint64_t off = 2 * C; off < N; off += C) {
        size_t n = N - off < C ? N - off : C;
        CHECK_OK(df_artifacts_write(st, hex, N, off, buf + off, n, NULL, &info, &err), &err);
    }
    CHECK(info.complete && info.have == N);
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.complete && info.size == N);
    /* Reads in pieces give the bytes back. */
    size_t got, total_read = 0;
    uint64_t total;
    while (total_read < N) {
        CHECK_OK(df_artifacts_read(st, hex, total_read, back + total_read, 70000, &got, &total, &err), &err);
        if (got == 0)
            break;
        total_read += got;
    }
    CHECK_EQ(total_read, N);
    CHECK(memcmp(buf, back, N) == 0);
    CHECK_OK(df_artifacts_read(st, hex, N, back, 10, &got, &total, &err), &err);
    CHECK_EQ(got, 0);
    CHECK_FAILS(df_artifacts_read(st, hex, N + 1, back, 10, &got, &total, &err), &err, DF_E_RANGE, "past");
    /* Writing an existing object again is a no-op. */
    CHECK_OK(df_artifacts_write(st, hex, N, 0, buf, 10, NULL, &info, &err), &err);
    CHECK(info.complete);
    free(buf), free(back);
    df_artifacts_destroy(&st);
}

static void test_wrong_content_is_discarded(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_artifacts_t *st = df_artifacts_new(g_dir, 0, &err);
    uint8_t buf[1000];
    char hex[DF_SHA256_HEX];
    data_and_hash(buf, sizeof buf, 2, hex);
    buf[500] ^= 1; /* the bytes no longer match their name */
    CHECK_FAILS(df_artifacts_write(st, hex, sizeof buf, 0, buf, sizeof buf, NULL, NULL, &err), &err, DF_E_FORMAT,
                "upload discarded");
    df_artifact_info info;
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.have == 0 && !info.complete);
    char path[256];
    df_artifacts_path(st, hex, path, sizeof path);
    CHECK(access(path, F_OK) != 0);
    df_artifacts_destroy(&st);
}

static void test_limits_and_names(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_artifacts_t *st = df_artifacts_new(g_dir, 4096, &err);
    uint8_t buf[5000];
    char hex[DF_SHA256_HEX];
    data_and_hash(buf, sizeof buf, 3, hex);
    CHECK_FAILS(df_artifacts_write(st, hex, sizeof buf, 0, buf, 100, NULL, NULL, &err), &err, DF_E_RANGE,
                "limit of 4096");
    df_artifact_info info;
    /* Names that are not hashes never reach the file system. */
    CHECK_FAILS(df_artifacts_stat(st, "../../etc/passwd", &info, &err), &err, DF_E_FORMAT, "not a sha256");
    CHECK_FAILS(df_artifacts_stat(st, "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", &info, &err),
                &err, DF_E_FORMAT, "lower-case");
    size_t n;
    uint64_t total;
    CHECK_FAILS(df_artifacts_read(st, "0000000000000000000000000000000000000000000000000000000000000000", 0, buf, 10,
                                  &n, &total, &err),
                &err, DF_E_NOT_FOUND, "not in the store");
    CHECK(df_artifacts_new("/proc/no/such/dir", 0, &err) == NULL);
    CHECK_EQ(err.code, DF_E_IO);
    df_artifacts_destroy(&st);
}

static void test_put_and_import(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_artifacts_t *st = df_artifacts_new(g_dir, 0, &err);
    char hex[DF_SHA256_HEX], hex2[DF_SHA256_HEX];
    CHECK_OK(df_artifacts_put(st, "hello", 5, hex, &err), &err);
    CHECK(strcmp(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824") == 0);
    df_artifact_info info;
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.complete && info.size == 5);
    CHECK_OK(df_artifacts_put(st, "", 0, hex, &err), &err);
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.complete && info.size == 0);
    char path[] = "/tmp/df_import_XXXXXX";
    int fd = mkstemp(path);
    enum { N = 3000000 };
    uint8_t *buf = malloc(N);
    data_and_hash(buf, N, 4, hex2);
    CHECK(write(fd, buf, N) == N);
    close(fd);
    CHECK_OK(df_artifacts_import(st, path, hex, &err), &err);
    CHECK(strcmp(hex, hex2) == 0);
    CHECK_OK(df_artifacts_import(st, path, hex, &err), &err); /* again: already there */
    CHECK_OK(df_artifacts_stat(st, hex, &info, &err), &err);
    CHECK(info.complete && info.size == N);
    unlink(path);
    CHECK_FAILS(df_artifacts_import(st, path, hex, &err), &err, DF_E_IO, path);
    free(buf);
    df_artifacts_destroy(&st);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    snprintf(g_dir, sizeof g_dir, "/tmp/df_artifacts_XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    RUN(test_chunked_resumable_upload);
    RUN(test_wrong_content_is_discarded);
    RUN(test_limits_and_names);
    RUN(test_put_and_import);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
