/*  result_cache.h - task outputs kept for identical requests, within a size
 *  limit, least recently used out first.
 *
 *  A job type that can name a task's output by its inputs (a generation's
 *  model and LoRA identities, prompt, every parameter and seed) gives the
 *  scheduler a key; the scheduler asks here before queueing the task and
 *  stores what a worker returns. Outputs live in a content-addressed store
 *  of their own (so evicting one never touches a user's artifacts) and are
 *  verified against their hash when read: a damaged entry is a miss, not a
 *  wrong answer. The index (key, object, size, last use) is rewritten
 *  atomically on every change, so it survives a restart and a crash.
 */
#ifndef DF_RESULT_CACHE_H
#define DF_RESULT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sha256.h"

typedef struct _df_result_cache_t df_result_cache_t;

typedef struct {
    uint64_t entries, bytes, max_bytes;
    uint64_t hits, misses, evictions;
} df_result_cache_stats;

/*  Opens (creating as needed) a cache in dir holding at most max_bytes of
 *  outputs. An index line that does not parse, or names an object that is
 *  gone, is dropped with a warning. */
df_result_cache_t *df_result_cache_new(const char *dir, uint64_t max_bytes, df_error_t *err);
void df_result_cache_destroy(df_result_cache_t **self_p);

/*  DF_OK with *data (malloc'd) and *len on a hit, which makes the entry the
 *  most recently used; DF_E_NOT_FOUND on a miss. key: 64 hex digits. */
int df_result_cache_get(df_result_cache_t *self, const char *key, uint8_t **data, size_t *len, df_error_t *err);

/*  Stores data under key (replacing what was there), then evicts the least
 *  recently used entries until the cache fits its limit. An output larger
 *  than the whole limit is not kept (DF_OK: caching is best effort). */
int df_result_cache_put(df_result_cache_t *self, const char *key, const uint8_t *data, size_t len,
                        df_error_t *err);

df_result_cache_stats df_result_cache_stats_get(const df_result_cache_t *self);

#endif
