/*  suballoc.c - see suballoc.h.
 *
 *  The free list is a sorted array of [start, end) ranges. Arrays beat linked
 *  lists here: the list stays short (tens of ranges), and binary search plus
 *  memmove is cache-friendly and easy to check.
 */
#include "suballoc.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t start, end;
} range_t;

struct _df_suballoc_t {
    uint64_t capacity;
    uint64_t used;
    range_t *free;
    uint32_t nfree, cap;
};

df_suballoc_t *df_suballoc_new(uint64_t capacity, df_error_t *err)
{
    if (capacity == 0) {
        df_error_set(err, DF_E_INVALID, "suballoc: capacity must be > 0");
        return NULL;
    }
    df_suballoc_t *self = calloc(1, sizeof *self);
    if (self)
        self->free = malloc(16 * sizeof *self->free);
    if (!self || !self->free) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "suballoc: out of host memory");
        return NULL;
    }
    self->capacity = capacity;
    self->cap = 16;
    self->nfree = 1;
    self->free[0] = (range_t){0, capacity};
    return self;
}

void df_suballoc_destroy(df_suballoc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->free);
    free(*self_p);
    *self_p = NULL;
}

static int reserve(df_suballoc_t *self, uint32_t n, df_error_t *err)
{
    if (n <= self->cap)
        return DF_OK;
    uint32_t cap = self->cap * 2;
    while (cap < n)
        cap *= 2;
    range_t *f = realloc(self->free, cap * sizeof *f);
    if (!f)
        return df_error_set(err, DF_E_NOMEM, "suballoc: out of host memory");
    self->free = f;
    self->cap = cap;
    return DF_OK;
}

static void remove_at(df_suballoc_t *self, uint32_t i)
{
    memmove(&self->free[i], &self->free[i + 1], (self->nfree - i - 1) * sizeof *self->free);
    self->nfree--;
}

static int insert_at(df_suballoc_t *self, uint32_t i, range_t r, df_error_t *err)
{
    int rc = reserve(self, self->nfree + 1, err);
    if (rc)
        return rc;
    memmove(&self->free[i + 1], &self->free[i], (self->nfree - i) * sizeof *self->free);
    self->free[i] = r;
    self->nfree++;
    return DF_OK;
}

int df_suballoc_alloc(df_suballoc_t *self, uint64_t size, uint64_t align, uint64_t *offset,
                      df_error_t *err)
{
    if (size == 0)
        return df_error_set(err, DF_E_INVALID, "suballoc: size 0");
    if (align == 0 || (align & (align - 1)))
        return df_error_set(err, DF_E_INVALID, "suballoc: alignment %llu is not a power of two",
                            (unsigned long long)align);
    for (uint32_t i = 0; i < self->nfree; i++) {
        range_t r = self->free[i];
        uint64_t start = (r.start + align - 1) & ~(align - 1);
        if (start < r.start || start > r.end || r.end - start < size)
            continue;
        uint64_t end = start + size;
        /* Split into the aligned-away head and the tail, keeping order. */
        int has_head = start > r.start, has_tail = end < r.end;
        if (has_head && has_tail) {
            self->free[i].end = start;
            int rc = insert_at(self, i + 1, (range_t){end, r.end}, err);
            if (rc) {
                self->free[i] = r;
                return rc;
            }
        } else if (has_head) {
            self->free[i].end = start;
        } else if (has_tail) {
            self->free[i].start = end;
        } else {
            remove_at(self, i);
        }
        self->used += size;
        *offset = start;
        return DF_OK;
    }
    return df_error_set(err, DF_E_DEVICE_MEMORY,
                        "suballoc: no free range of %llu bytes (largest free %llu of %llu)",
                        (unsigned long long)size, (unsigned long long)df_suballoc_largest_free(self),
                        (unsigned long long)self->capacity);
}

int df_suballoc_free(df_suballoc_t *self, uint64_t offset, uint64_t size, df_error_t *err)
{
    uint64_t end = offset + size;
    if (size == 0 || end < offset || end > self->capacity)
        return df_error_set(err, DF_E_STATE, "suballoc: free of [%llu, %llu) outside [0, %llu)",
                            (unsigned long long)offset, (unsigned long long)end,
                            (unsigned long long)self->capacity);
    /* First free range that starts at or after offset. */
    uint32_t lo = 0, hi = self->nfree;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (self->free[mid].start < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t i = lo;
    int touches_prev = i > 0 && self->free[i - 1].end == offset;
    int touches_next = i < self->nfree && self->free[i].start == end;
    if ((i > 0 && self->free[i - 1].end > offset) || (i < self->nfree && self->free[i].start < end))
        return df_error_set(err, DF_E_STATE,
                            "suballoc: [%llu, %llu) is already free (double free?)",
                            (unsigned long long)offset, (unsigned long long)end);
    if (touches_prev && touches_next) {
        self->free[i - 1].end = self->free[i].end;
        remove_at(self, i);
    } else if (touches_prev) {
        self->free[i - 1].end = end;
    } else if (touches_next) {
        self->free[i].start = offset;
    } else {
        int rc = insert_at(self, i, (range_t){offset, end}, err);
        if (rc)
            return rc;
    }
    self->used -= size;
    return DF_OK;
}

uint64_t df_suballoc_capacity(const df_suballoc_t *self) { return self->capacity; }
uint64_t df_suballoc_used(const df_suballoc_t *self) { return self->used; }
uint32_t df_suballoc_free_ranges(const df_suballoc_t *self) { return self->nfree; }

uint64_t df_suballoc_largest_free(const df_suballoc_t *self)
{
    uint64_t best = 0;
    for (uint32_t i = 0; i < self->nfree; i++)
        if (self->free[i].end - self->free[i].start > best)
            best = self->free[i].end - self->free[i].start;
    return best;
}
