/*  suballoc.h - first-fit range allocator over [0, capacity).
 *
 *  Hands out aligned sub-ranges of one large device allocation, so thousands
 *  of tensors cost a handful of vkAllocateMemory calls (drivers cap the number
 *  of allocations, often at 4096). Pure bookkeeping: no Vulkan here, so it is
 *  tested on its own. Free ranges are kept sorted and merged with their
 *  neighbours on release, which keeps fragmentation bounded for the
 *  allocate-a-model, free-activations pattern the engine has.
 */
#ifndef DF_SUBALLOC_H
#define DF_SUBALLOC_H

#include <stdint.h>

#include "error.h"

typedef struct _df_suballoc_t df_suballoc_t;

df_suballoc_t *df_suballoc_new(uint64_t capacity, df_error_t *err);
void df_suballoc_destroy(df_suballoc_t **self_p);

/*  Reserves size bytes at an offset that is a multiple of align (a power of
 *  two). DF_E_DEVICE_MEMORY when no free range fits; DF_E_INVALID for size 0
 *  or a bad alignment. */
int df_suballoc_alloc(df_suballoc_t *self, uint64_t size, uint64_t align, uint64_t *offset,
                      df_error_t *err);

/*  Returns [offset, offset+size) to the free list. DF_E_STATE when any part of
 *  it is already free or outside the capacity (a double free, or a bad range). */
int df_suballoc_free(df_suballoc_t *self, uint64_t offset, uint64_t size, df_error_t *err);

uint64_t df_suballoc_capacity(const df_suballoc_t *self);
uint64_t df_suballoc_used(const df_suballoc_t *self);
/*  Size of the largest free range. */
uint64_t df_suballoc_largest_free(const df_suballoc_t *self);
/*  Number of free ranges (1 when nothing is allocated). */
uint32_t df_suballoc_free_ranges(const df_suballoc_t *self);

#endif
