/*  vk_memory.h - device memory for tensors, carved from large blocks.
 *
 *  Each block is one VkDeviceMemory with one VkBuffer bound over all of it; a
 *  df_vk_buffer_t is a range of that buffer. Ranges are aligned so any of them
 *  can be bound as a storage buffer or a texel buffer, and padded so a texel
 *  view rounded up to whole texels stays inside the range.
 *
 *  A buffer may be larger than the device's maxStorageBufferRange (128 MiB on
 *  lavapipe): the limit applies to one binding, not to memory, and the op
 *  layer binds windows of large tensors (see vk_window.h). Requests larger
 *  than half a block get a block of their own.
 *
 *  Memory type: device-local. On devices whose device-local memory is also
 *  host-visible (CPU drivers such as lavapipe, integrated GPUs) the blocks are
 *  mapped persistently and transfers become memcpy.
 */
#ifndef DF_VK_MEMORY_H
#define DF_VK_MEMORY_H

#include <stdint.h>
#include <vulkan/vulkan.h>

#include "error.h"
#include "vk_device.h"

typedef struct _df_vk_block_t df_vk_block_t;

typedef struct {
    VkBuffer handle;   /* the block's buffer */
    uint64_t offset;   /* bytes from the start of handle */
    uint64_t size;     /* bytes requested */
    uint64_t padded;   /* bytes reserved (size rounded up to the alignment) */
    uint8_t *host;     /* mapped address of offset, NULL when not host-visible */
    int host_coherent; /* writes through host need no flush */
    df_vk_block_t *block;
    df_vk_memory_t *owner;
} df_vk_buffer_t;

typedef struct {
    uint64_t in_use;      /* bytes handed out now (padded) */
    uint64_t peak_in_use; /* maximum of in_use since creation or reset */
    uint64_t reserved;    /* bytes of VkDeviceMemory held */
    uint64_t peak_reserved; /* maximum of reserved since creation or
                             * df_vk_memory_reset_peak_reserved: what the
                             * device had to give over a whole run,
                             * fragmentation and spare blocks included */
    uint32_t blocks;
    uint32_t buffers;
} df_vk_memory_stats;

df_vk_memory_t *df_vk_memory_new(df_vk_device_t *dev, uint64_t block_bytes, df_error_t *err);
/*  Frees every block; buffers still alive are reported as leaks (logged). */
void df_vk_memory_destroy(df_vk_memory_t **self_p);

/*  Allocates size bytes of tensor memory on dev. */
df_vk_buffer_t *df_vk_buffer_new(df_vk_device_t *dev, uint64_t size, df_error_t *err);
void df_vk_buffer_destroy(df_vk_buffer_t **self_p);

/*  Whether buffers of this manager are host-mapped. */
int df_vk_memory_host_visible(const df_vk_memory_t *self);
/*  Offset alignment of every buffer (a multiple of every binding alignment). */
uint64_t df_vk_memory_alignment(const df_vk_memory_t *self);

void df_vk_memory_stats_get(df_vk_memory_t *self, df_vk_memory_stats *out);
/*  Resets peak_in_use (batches do, at each step). */
void df_vk_memory_reset_peak(df_vk_memory_t *self);
/*  Resets peak_reserved (only a caller measuring a whole run does). */
void df_vk_memory_reset_peak_reserved(df_vk_memory_t *self);

/*  Picks a memory type index among type_bits with all of `required` flags,
 *  preferring one that also has `preferred`. -1 when none. */
int df_vk_memory_find_type(const VkPhysicalDeviceMemoryProperties *props, uint32_t type_bits,
                           VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred);

#endif
