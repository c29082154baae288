/*  vk_device.h - one logical Vulkan device: queue, memory, pipelines.
 *
 *  The engine runs one df_vk_device_t per GPU. Everything that allocates
 *  (buffers, pipelines, command batches) hangs off it, so destroying the
 *  device last tears the whole stack down in order.
 */
#ifndef DF_VK_DEVICE_H
#define DF_VK_DEVICE_H

#include <stdint.h>
#include <vulkan/vulkan.h>

#include "error.h"
#include "vk_device_info.h"
#include "vk_instance.h"

typedef struct {
    /* File the VkPipelineCache is loaded from and saved to; NULL: none. A file
     * written by another driver or device is ignored with a warning. */
    const char *pipeline_cache_path;
    /* Size of each device-memory block tensors are carved from; 0: 256 MiB
     * (clamped to the device's maxMemoryAllocationSize). */
    uint64_t block_bytes;
    /* Upper bound on any one descriptor binding, below the device's own
     * limits; 0: the device's limits. Tests lower it to exercise the
     * splitting that large tensors need on small-limit devices. */
    uint64_t max_bind_bytes;
    /* Use the portable GPU kernels even on a CPU driver (shared-memory GEMM
     * tiles, one attention row per invocation): tests run both paths where
     * only one device exists. */
    int portable_kernels;
} df_vk_device_opts;

typedef struct _df_vk_device_t df_vk_device_t;
typedef struct _df_vk_memory_t df_vk_memory_t;
typedef struct _df_vk_pipelines_t df_vk_pipelines_t;

/*  Opens physical device `index` of instance (borrowed: it must outlive the
 *  device). */
df_vk_device_t *df_vk_device_new(df_vk_instance_t *instance, uint32_t index,
                                 const df_vk_device_opts *opts, df_error_t *err);
/*  Waits for the device to go idle, saves the pipeline cache, frees all. */
void df_vk_device_destroy(df_vk_device_t **self_p);

const df_vk_device_info *df_vk_device_info_of(const df_vk_device_t *self);
VkDevice df_vk_device_handle(const df_vk_device_t *self);
VkQueue df_vk_device_queue(const df_vk_device_t *self);
uint32_t df_vk_device_queue_family(const df_vk_device_t *self);
df_vk_memory_t *df_vk_device_memory(df_vk_device_t *self);
df_vk_pipelines_t *df_vk_device_pipelines(df_vk_device_t *self);
df_vk_instance_t *df_vk_device_instance(df_vk_device_t *self);

/*  Whether ops should use the layouts tuned for CPU drivers (texel-buffer
 *  register tiles): true on lavapipe unless portable_kernels was asked for. */
int df_vk_device_prefers_texel_tiles(const df_vk_device_t *self);

/*  Enabled features (device support and our request combined). */
int df_vk_device_has_fp16_storage(const df_vk_device_t *self);
int df_vk_device_has_fp16_texel(const df_vk_device_t *self);

/*  Largest byte range one storage-buffer binding may cover. */
uint64_t df_vk_device_storage_limit(const df_vk_device_t *self);
/*  Largest byte range one uniform-texel-buffer binding may cover, for texels
 *  of texel_bytes bytes. */
uint64_t df_vk_device_texel_limit(const df_vk_device_t *self, uint32_t texel_bytes);

/*  Submits cmd on the device's queue and waits for it (serialised by a lock:
 *  Vulkan queues are externally synchronised). */
int df_vk_device_submit_wait(df_vk_device_t *self, VkCommandBuffer cmd, VkFence fence,
                             df_error_t *err);

/*  Lock around any use of the device's command pool (also externally
 *  synchronised in Vulkan). */
void df_vk_device_lock(df_vk_device_t *self);
void df_vk_device_unlock(df_vk_device_t *self);
VkCommandPool df_vk_device_command_pool(const df_vk_device_t *self);

#endif
