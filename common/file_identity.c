/*  file_identity.c - see file_identity.h. */
#include "file_identity.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 4
#define MAX_ENTRIES 100000

typedef struct {
    char **lines; /* "relative-path size mtime-ns inode" */
    size_t n, cap;
} listing;

static int add_line(listing *l, const char *rel, const struct stat *st, df_error_t *err)
{
    if (l->n == MAX_ENTRIES)
        return df_error_set(err, DF_E_RANGE, "%s: more than %d files", rel, MAX_ENTRIES);
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **grown = realloc(l->lines, cap * sizeof *grown);
        if (!grown)
            return df_error_set(err, DF_E_NOMEM, "file identity: out of memory");
        l->lines = grown, l->cap = cap;
    }
    char line[4400];
    snprintf(line, sizeof line, "%s %" PRIu64 " %" PRId64 ".%09ld %" PRIu64, rel, (uint64_t)st->st_size,
             (int64_t)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec, (uint64_t)st->st_ino);
    if (!(l->lines[l->n] = strdup(line)))
        return df_error_set(err, DF_E_NOMEM, "file identity: out of memory");
    l->n++;
    return DF_OK;
}

static int walk(listing *l, const char *root, const char *rel, int depth, df_error_t *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    int rc = DF_OK;
    struct dirent *e;
    while (rc == DF_OK && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[4200], full[4400];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st) != 0)
            continue; /* a dangling link names nothing a loader could read */
        if (S_ISREG(st.st_mode))
            rc = add_line(l, sub, &st, err);
        else if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH)
            rc = walk(l, root, sub, depth + 1, err);
    }
    closedir(d);
    return rc;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int df_file_identity(const char *path, char hex[DF_SHA256_HEX], df_error_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return df_error_set(err, errno == ENOENT ? DF_E_NOT_FOUND : DF_E_IO, "%s: %s", path, strerror(errno));
    listing l = {NULL, 0, 0};
    int rc = S_ISDIR(st.st_mode) ? walk(&l, path, "", 1, err) : add_line(&l, "", &st, err);
    if (rc == DF_OK) {
        qsort(l.lines, l.n, sizeof *l.lines, by_text);
        df_sha256_t s;
        df_sha256_init(&s);
        for (size_t i = 0; i < l.n; i++)
            df_sha256_update(&s, l.lines[i], strlen(l.lines[i]) + 1);
        uint8_t d[DF_SHA256_BYTES];
        df_sha256_final(&s, d);
        df_sha256_hex(d, hex);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.lines[i]);
    free(l.lines);
    return rc;
}
