/*  artifact_store.c - see artifact_store.h. */
#include "artifact_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct _df_artifacts_t {
    char *dir;
    uint64_t max_size;
};

int df_artifacts_valid_hash(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int check_hash(const char *hash, df_error_t *err)
{
    if (!df_artifacts_valid_hash(hash))
        return df_error_set(err, DF_E_FORMAT, "artifact: '%.80s' is not a sha256 (64 lower-case hex digits)",
                            hash ? hash : "(null)");
    return DF_OK;
}

static int make_dir(const char *path, df_error_t *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    return DF_OK;
}

df_artifacts_t *df_artifacts_new(const char *dir, uint64_t max_size, df_error_t *err)
{
    char path[4096];
    df_artifacts_t *self = calloc(1, sizeof *self);
    if (!self || !(self->dir = strdup(dir))) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "artifacts: out of memory");
        return NULL;
    }
    self->max_size = max_size;
    int rc = make_dir(dir, err);
    snprintf(path, sizeof path, "%s/objects", dir);
    if (!rc)
        rc = make_dir(path, err);
    snprintf(path, sizeof path, "%s/partial", dir);
    if (!rc)
        rc = make_dir(path, err);
    if (rc) {
        df_artifacts_destroy(&self);
        return NULL;
    }
    return self;
}

void df_artifacts_destroy(df_artifacts_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->dir);
    free(*self_p);
    *self_p = NULL;
}

void df_artifacts_path(const df_artifacts_t *self, const char *hash, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/objects/%.2s/%s", self->dir, hash, hash);
}

static void partial_path(const df_artifacts_t *self, const char *hash, const char *ext, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/partial/%s.%s", self->dir, hash, ext);
}

/* Size announced for a partial upload, 0 when none. */
static uint64_t partial_total(const df_artifacts_t *self, const char *hash)
{
    char path[4096];
    partial_path(self, hash, "size", path, sizeof path);
    FILE *f = fopen(path, "r");
    uint64_t total = 0;
    if (f) {
        if (fscanf(f, "%" SCNu64, &total) != 1)
            total = 0;
        fclose(f);
    }
    return total;
}

int df_artifacts_stat(df_artifacts_t *self, const char *hash, df_artifact_info *info, df_error_t *err)
{
    int rc = check_hash(hash, err);
    if (rc)
        return rc;
    memset(info, 0, sizeof *info);
    char path[4096];
    struct stat st;
    df_artifacts_path(self, hash, path, sizeof path);
    if (stat(path, &st) == 0) {
        info->size = info->have = (uint64_t)st.st_size;
        info->complete = 1;
        return DF_OK;
    }
    partial_path(self, hash, "part", path, sizeof path);
    if (stat(path, &st) == 0) {
        info->have = (uint64_t)st.st_size;
        info->size = partial_total(self, hash);
    }
    return DF_OK;
}

static void discard_partial(df_artifacts_t *self, const char *hash)
{
    char path[4096];
    partial_path(self, hash, "part", path, sizeof path);
    unlink(path);
    partial_path(self, hash, "size", path, sizeof path);
    unlink(path);
}

/* Verifies the complete partial file and moves it into objects/. */
static int finish(df_artifacts_t *self, const char *hash, df_error_t *err)
{
    char part[4096], dir[4096], final[4096];
    partial_path(self, hash, "part", part, sizeof part);
    uint8_t digest[DF_SHA256_BYTES];
    char hex[DF_SHA256_HEX];
    int rc = df_sha256_file(part, digest, NULL, err);
    if (rc)
        return rc;
    df_sha256_hex(digest, hex);
    if (strcmp(hex, hash) != 0) {
        discard_partial(self, hash);
        return df_error_set(err, DF_E_FORMAT, "artifact %.12s: the received file hashes to %.12s; upload discarded",
                            hash, hex);
    }
    snprintf(dir, sizeof dir, "%s/objects/%.2s", self->dir, hash);
    if ((rc = make_dir(dir, err)))
        return rc;
    df_artifacts_path(self, hash, final, sizeof final);
    if (rename(part, final) != 0)
        return df_error_set(err, DF_E_IO, "%s: %s", final, strerror(errno));
    partial_path(self, hash, "size", part, sizeof part);
    unlink(part);
    /* The rename must survive a crash before anyone is told it exists. */
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return DF_OK;
}

/* An empty object has no chunk to carry it: it is created directly. */
static int create_empty(df_artifacts_t *self, const char *hash, df_error_t *err)
{
    static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    if (strcmp(hash, empty_sha) != 0)
        return df_error_set(err, DF_E_FORMAT, "artifact %.12s: announced as empty, but that is not the empty file's hash",
                            hash);
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/objects/%.2s", self->dir, hash);
    int rc = make_dir(dir, err);
    if (rc)
        return rc;
    df_artifacts_path(self, hash, path, sizeof path);
    FILE *f = fopen(path, "wb");
    if (!f || fclose(f) != 0)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    return DF_OK;
}

int df_artifacts_write(df_artifacts_t *self, const char *hash, uint64_t total, uint64_t offset,
                       const void *data, size_t n, const uint8_t *chunk_sha, df_artifact_info *info,
                       df_error_t *err)
{
    df_artifact_info cur;
    int rc = df_artifacts_stat(self, hash, &cur, err);
    if (rc)
        return rc;
    if (info)
        *info = cur;
    if (cur.complete)
        return cur.size == total ? DF_OK
                                 : df_error_set(err, DF_E_STATE, "artifact %.12s: stored with %llu bytes, not %llu",
                                                hash, (unsigned long long)cur.size, (unsigned long long)total);
    if (self->max_size && total > self->max_size)
        return df_error_set(err, DF_E_RANGE, "artifact %.12s: %llu bytes exceed the store's limit of %llu", hash,
                            (unsigned long long)total, (unsigned long long)self->max_size);
    if (offset + n < offset || offset + n > total)
        return df_error_set(err, DF_E_RANGE, "artifact %.12s: chunk [%llu, +%zu) runs past its size %llu", hash,
                            (unsigned long long)offset, n, (unsigned long long)total);
    if (cur.have && cur.size != total)
        return df_error_set(err, DF_E_STATE, "artifact %.12s: upload in progress announced %llu bytes, not %llu",
                            hash, (unsigned long long)cur.size, (unsigned long long)total);
    if (offset > cur.have)
        return df_error_set(err, DF_E_STATE, "artifact %.12s: chunk at %llu leaves a gap; resume at %llu", hash,
                            (unsigned long long)offset, (unsigned long long)cur.have);
    if (total == 0) {
        int erc = create_empty(self, hash, err);
        if (!erc && info)
            *info = (df_artifact_info){0, 0, 1};
        return erc;
    }
    if (chunk_sha) {
        uint8_t d[DF_SHA256_BYTES];
        df_sha256(data, n, d);
        if (memcmp(d, chunk_sha, DF_SHA256_BYTES) != 0)
            return df_error_set(err, DF_E_FORMAT, "artifact %.12s: chunk at %llu fails its checksum", hash,
                                (unsigned long long)offset);
    }
    char path[4096];
    if (cur.have == 0 && offset == 0) {
        partial_path(self, hash, "size", path, sizeof path);
        FILE *f = fopen(path, "w");
        if (!f || fprintf(f, "%llu\n", (unsigned long long)total) < 0 || fclose(f) != 0)
            return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    }
    if (offset + n > cur.have) {
        /* Content-addressed: rewriting bytes we already have writes the same
         * bytes, so an overlapping retransmission is harmless. */
        partial_path(self, hash, "part", path, sizeof path);
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        if (fd < 0)
            return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
        const uint8_t *p = data;
        size_t left = n;
        off_t at = (off_t)offset;
        while (left > 0) {
            ssize_t w = pwrite(fd, p, left, at);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = errno;
                close(fd);
                return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(e));
            }
            p += w, left -= (size_t)w, at += w;
        }
        if (close(fd) != 0)
            return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
        cur.have = offset + n;
    }
    cur.size = total;
    if (cur.have == total) {
        if ((rc = finish(self, hash, err)))
            return rc;
        cur.complete = 1;
    }
    if (info)
        *info = cur;
    return DF_OK;
}

int df_artifacts_read(df_artifacts_t *self, const char *hash, uint64_t offset, void *buf, size_t cap,
                      size_t *n, uint64_t *total, df_error_t *err)
{
    int rc = check_hash(hash, err);
    if (rc)
        return rc;
    char path[4096];
    df_artifacts_path(self, hash, path, sizeof path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return df_error_set(err, errno == ENOENT ? DF_E_NOT_FOUND : DF_E_IO, "artifact %.12s: %s", hash,
                            errno == ENOENT ? "not in the store" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    }
    *total = (uint64_t)st.st_size;
    if (offset > *total) {
        close(fd);
        return df_error_set(err, DF_E_RANGE, "artifact %.12s: offset %llu is past its %llu bytes", hash,
                            (unsigned long long)offset, (unsigned long long)*total);
    }
    size_t want = *total - offset < cap ? (size_t)(*total - offset) : cap;
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, want - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != want)
        return df_error_set(err, DF_E_IO, "%s: short read", path);
    *n = got;
    return DF_OK;
}

int df_artifacts_put(df_artifacts_t *self, const void *data, size_t n, char hex[DF_SHA256_HEX], df_error_t *err)
{
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(data, n, d);
    df_sha256_hex(d, hex);
    return df_artifacts_write(self, hex, n, 0, data, n, NULL, NULL, err);
}

int df_artifacts_import(df_artifacts_t *self, const char *path, char hex[DF_SHA256_HEX], df_error_t *err)
{
    uint8_t d[DF_SHA256_BYTES];
    uint64_t size;
    int rc = df_sha256_file(path, d, &size, err);
    if (rc)
        return rc;
    df_sha256_hex(d, hex);
    df_artifact_info info;
    if ((rc = df_artifacts_stat(self, hex, &info, err)) || info.complete)
        return rc;
    if (size == 0)
        return df_artifacts_write(self, hex, 0, 0, "", 0, NULL, NULL, err);
    FILE *f = fopen(path, "rb");
    if (!f)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return df_error_set(err, DF_E_NOMEM, "artifacts: out of memory");
    }
    /* Restart any stale partial upload of the same object from zero. */
    discard_partial(self, hex);
    uint64_t offset = 0;
    size_t n;
    while (!rc && (n = fread(buf, 1, CHUNK, f)) > 0) {
        rc = df_artifacts_write(self, hex, size, offset, buf, n, NULL, NULL, err);
        offset += n;
    }
    if (!rc && offset != size)
        rc = df_error_set(err, DF_E_IO, "%s: changed while being imported", path);
    free(buf);
    fclose(f);
    return rc;
}

int df_artifacts_remove(df_artifacts_t *self, const char *hash, df_error_t *err)
{
    int rc = check_hash(hash, err);
    if (rc)
        return rc;
    char path[4200];
    df_artifacts_path(self, hash, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    return DF_OK;
}
