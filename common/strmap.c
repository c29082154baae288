/*  strmap.c - see strmap.h. Linear probing over a power-of-two table kept at
 *  most half full; each slot caches the key's hash so probes rarely touch the
 *  key bytes. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key; /* NULL: empty */
    size_t len;
    uint64_t hash;
    int64_t value;
} slot;

struct _df_strmap_t {
    slot *slots;
    size_t cap, size;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

df_strmap_t *df_strmap_new(void)
{
    df_strmap_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void df_strmap_destroy(df_strmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_strmap_t *m = *self_p;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
    *self_p = NULL;
}

static slot *find(const df_strmap_t *m, const char *key, size_t len, uint64_t h)
{
    size_t i = h & (m->cap - 1);
    for (;;) {
        slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static int grow(df_strmap_t *m)
{
    size_t old_cap = m->cap;
    slot *old = m->slots;
    slot *fresh = calloc(old_cap * 2, sizeof *fresh);
    if (!fresh)
        return -1;
    m->slots = fresh;
    m->cap = old_cap * 2;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            *find(m, old[i].key, old[i].len, old[i].hash) = old[i];
    free(old);
    return 0;
}

int df_strmap_put(df_strmap_t *self, const char *key, size_t len, int64_t value)
{
    if ((self->size + 1) * 2 > self->cap && grow(self) != 0)
        return -1;
    uint64_t h = hash_bytes(key, len);
    slot *s = find(self, key, len, h);
    if (!s->key) {
        if (!(s->key = malloc(len + 1)))
            return -1;
        memcpy(s->key, key, len);
        s->key[len] = '\0';
        s->len = len;
        s->hash = h;
        self->size++;
    }
    s->value = value;
    return 0;
}

int df_strmap_get(const df_strmap_t *self, const char *key, size_t len, int64_t *value)
{
    const slot *s = find(self, key, len, hash_bytes(key, len));
    if (!s->key)
        return 0;
    if (value)
        *value = s->value;
    return 1;
}

size_t df_strmap_size(const df_strmap_t *self) { return self->size; }
