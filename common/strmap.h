/*  strmap.h - a string -> int64 hash map (open addressing, keys copied).
 *
 *  For lookups by name that happen thousands of times: tokenizer vocabularies
 *  (~50k entries), checkpoint tensor names (~2.5k). Not for untrusted sizes
 *  beyond memory: it grows by doubling. */
#ifndef DF_STRMAP_H
#define DF_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct _df_strmap_t df_strmap_t;

df_strmap_t *df_strmap_new(void);
void df_strmap_destroy(df_strmap_t **self_p);

/*  Inserts or replaces key (len bytes, need not be NUL-terminated). Returns
 *  0, or -1 when out of memory. */
int df_strmap_put(df_strmap_t *self, const char *key, size_t len, int64_t value);

/*  1 and *value when key is present, else 0. */
int df_strmap_get(const df_strmap_t *self, const char *key, size_t len, int64_t *value);

size_t df_strmap_size(const df_strmap_t *self);

#endif
