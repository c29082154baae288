/*  result_cache.c - see result_cache.h. */
#include "result_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_store.h"
#include "log.h"

typedef struct {
    char key[DF_SHA256_HEX];
    char object[DF_SHA256_HEX];
    uint64_t size;
    uint64_t used; /* the cache's clock at the last get or put */
} entry;

struct _df_result_cache_t {
    char *dir;
    df_artifacts_t *objects;
    entry *entries;
    size_t n, cap;
    uint64_t clock, bytes, max_bytes;
    df_result_cache_stats stats;
};

static int find(const df_result_cache_t *self, const char *key)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->entries[i].key, key) == 0)
            return (int)i;
    return -1;
}

/*  Whether another entry still refers to object (two keys may produce the
 *  same bytes; the object goes with the last of them). */
static int shared(const df_result_cache_t *self, size_t skip, const char *object)
{
    for (size_t i = 0; i < self->n; i++)
        if (i != skip && strcmp(self->entries[i].object, object) == 0)
            return 1;
    return 0;
}

static void drop(df_result_cache_t *self, size_t i)
{
    if (!shared(self, i, self->entries[i].object))
        df_artifacts_remove(self->objects, self->entries[i].object, NULL);
    self->bytes -= self->entries[i].size;
    self->entries[i] = self->entries[--self->n];
}

/*  Drops the least recently used entries until the outputs fit the limit;
 *  returns how many went. */
static uint64_t evict_to_fit(df_result_cache_t *self)
{
    uint64_t evicted = 0;
    while (self->bytes > self->max_bytes && self->n) {
        size_t oldest = 0;
        for (size_t i = 1; i < self->n; i++)
            if (self->entries[i].used < self->entries[oldest].used)
                oldest = i;
        drop(self, oldest);
        evicted++;
    }
    return evicted;
}

/*  Rewrites the index: a temporary file renamed over the old one. */
static int save(df_result_cache_t *self, df_error_t *err)
{
    char path[4200], tmp[4200];
    snprintf(path, sizeof path, "%s/index", self->dir);
    snprintf(tmp, sizeof tmp, "%s/index.tmp", self->dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return df_error_set(err, DF_E_IO, "%s: %s", tmp, strerror(errno));
    fprintf(f, "dreamfleet-result-cache 1 %" PRIu64 "\n", self->clock);
    for (size_t i = 0; i < self->n; i++)
        fprintf(f, "%s %s %" PRIu64 " %" PRIu64 "\n", self->entries[i].key, self->entries[i].object,
                self->entries[i].size, self->entries[i].used);
    int bad = ferror(f) | fflush(f) | fsync(fileno(f));
    bad |= fclose(f);
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    }
    return DF_OK;
}

static int append(df_result_cache_t *self, const entry *e)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? 2 * self->cap : 64;
        entry *grown = realloc(self->entries, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->entries = grown, self->cap = cap;
    }
    self->entries[self->n++] = *e;
    self->bytes += e->size;
    return 0;
}

static void load(df_result_cache_t *self)
{
    char path[4200], line[512];
    snprintf(path, sizeof path, "%s/index", self->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return; /* a new cache */
    int lineno = 0, dropped = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (lineno == 1) {
            if (sscanf(line, "dreamfleet-result-cache 1 %" SCNu64, &self->clock) != 1) {
                df_warn("%s: not a result cache index; starting empty", path);
                break;
            }
            continue;
        }
        entry e;
        df_artifact_info info;
        if (sscanf(line, "%64s %64s %" SCNu64 " %" SCNu64, e.key, e.object, &e.size, &e.used) != 4 ||
            !df_artifacts_valid_hash(e.key) || !df_artifacts_valid_hash(e.object) ||
            df_artifacts_stat(self->objects, e.object, &info, NULL) != DF_OK || !info.complete ||
            info.size != e.size || find(self, e.key) >= 0 || append(self, &e)) {
            dropped++;
            continue;
        }
        if (e.used > self->clock)
            self->clock = e.used;
    }
    fclose(f);
    if (dropped)
        df_warn("%s: %d entr%s dropped (unreadable, or the output is gone)", path, dropped, dropped == 1 ? "y" : "ies");
}

df_result_cache_t *df_result_cache_new(const char *dir, uint64_t max_bytes, df_error_t *err)
{
    df_result_cache_t *self = calloc(1, sizeof *self);
    if (!self || !(self->dir = strdup(dir))) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "result cache: out of memory");
        return NULL;
    }
    self->max_bytes = max_bytes;
    if (!(self->objects = df_artifacts_new(dir, 0, err))) {
        df_result_cache_destroy(&self);
        return NULL;
    }
    load(self);
    /* A smaller limit than last time applies at once. */
    if (evict_to_fit(self) && save(self, err) != DF_OK) {
        df_result_cache_destroy(&self);
        return NULL;
    }
    return self;
}

void df_result_cache_destroy(df_result_cache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_result_cache_t *self = *self_p;
    df_artifacts_destroy(&self->objects);
    free(self->entries);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

int df_result_cache_get(df_result_cache_t *self, const char *key, uint8_t **data, size_t *len, df_error_t *err)
{
    *data = NULL, *len = 0;
    int at = find(self, key);
    if (at < 0) {
        self->stats.misses++;
        return df_error_set(err, DF_E_NOT_FOUND, "result cache: no entry %.16s", key);
    }
    entry *e = &self->entries[at];
    uint8_t *buf = malloc(e->size ? e->size : 1);
    size_t n = 0;
    uint64_t total = 0;
    uint8_t digest[DF_SHA256_BYTES];
    char hex[DF_SHA256_HEX] = "";
    df_error_t rerr;
    df_error_clear(&rerr);
    if (buf && df_artifacts_read(self->objects, e->object, 0, buf, e->size, &n, &total, &rerr) == DF_OK &&
        n == e->size && total == e->size) {
        df_sha256(buf, n, digest);
        df_sha256_hex(digest, hex);
    }
    if (strcmp(hex, e->object) != 0) {
        df_warn("result cache: entry %.16s is damaged or gone (%s); computing it again", key,
                 rerr.msg[0] ? rerr.msg : "contents do not match their hash");
        free(buf);
        drop(self, (size_t)at);
        save(self, NULL);
        self->stats.misses++;
        return df_error_set(err, DF_E_NOT_FOUND, "result cache: no entry %.16s", key);
    }
    e->used = ++self->clock;
    self->stats.hits++;
    *data = buf, *len = n;
    /* The hit is served either way: an index left behind on disk only
     * remembers this entry as older than it is. */
    df_error_t serr;
    if (save(self, &serr) != DF_OK)
        df_warn("result cache: %s", serr.msg);
    return DF_OK;
}

int df_result_cache_put(df_result_cache_t *self, const char *key, const uint8_t *data, size_t len, df_error_t *err)
{
    if (!df_artifacts_valid_hash(key))
        return df_error_set(err, DF_E_FORMAT, "result cache: bad key '%.80s'", key);
    if (len > self->max_bytes)
        return DF_OK;
    int at = find(self, key);
    if (at >= 0)
        drop(self, (size_t)at);
    entry e;
    snprintf(e.key, sizeof e.key, "%s", key);
    e.size = len;
    e.used = ++self->clock;
    int rc = df_artifacts_put(self->objects, data, len, e.object, err);
    if (rc != DF_OK)
        return rc;
    if (append(self, &e))
        return df_error_set(err, DF_E_NOMEM, "result cache: out of memory");
    self->stats.evictions += evict_to_fit(self);
    return save(self, err);
}

df_result_cache_stats df_result_cache_stats_get(const df_result_cache_t *self)
{
    df_result_cache_stats s = self->stats;
    s.entries = self->n;
    s.bytes = self->bytes;
    s.max_bytes = self->max_bytes;
    return s;
}
