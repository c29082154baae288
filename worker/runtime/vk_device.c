/*  vk_device.c - see vk_device.h. */
#include "vk_device.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk_check.h"
#include "vk_memory.h"
#include "vk_pipeline.h"

struct _df_vk_device_t {
    df_vk_instance_t *instance;
    df_vk_device_info info;
    VkDevice device;
    VkQueue queue;
    VkCommandPool pool;
    df_vk_memory_t *memory;
    df_vk_pipelines_t *pipelines;
    uint64_t max_bind_bytes;
    int portable;
    int fp16_storage;
    pthread_mutex_t lock;
};

static int create_logical_device(df_vk_device_t *self, df_error_t *err)
{
    const df_vk_device_info *info = &self->info;
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = info->compute_queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    /* Enable exactly the optional features the kernels use and the device has;
     * the info table already says which. */
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .storageBuffer16BitAccess = info->storage16 ? VK_TRUE : VK_FALSE,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = &f11,
        .shaderFloat16 = info->fp16 ? VK_TRUE : VK_FALSE,
        .shaderInt8 = info->int8 ? VK_TRUE : VK_FALSE,
        .storageBuffer8BitAccess = info->int8 ? VK_TRUE : VK_FALSE,
    };
    VkPhysicalDeviceFeatures2 feats = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                       .pNext = &f12};
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &feats,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
    };
    DF_VK_TRY(err, vkCreateDevice(info->physical, &dci, NULL, &self->device));
    vkGetDeviceQueue(self->device, info->compute_queue_family, 0, &self->queue);
    self->fp16_storage = info->storage16;

    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = info->compute_queue_family,
    };
    DF_VK_TRY(err, vkCreateCommandPool(self->device, &pci, NULL, &self->pool));
    return DF_OK;
}

df_vk_device_t *df_vk_device_new(df_vk_instance_t *instance, uint32_t index,
                                 const df_vk_device_opts *opts, df_error_t *err)
{
    df_vk_device_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    const df_vk_device_info *info = df_vk_instance_device(instance, index);
    if (!info) {
        df_error_set(err, DF_E_NOT_FOUND, "vulkan: no device %u (have %u)", index,
                     df_vk_instance_device_count(instance));
        return NULL;
    }
    if (info->compute_queue_family == UINT32_MAX) {
        df_error_set(err, DF_E_UNSUPPORTED, "vulkan: device %u (%s) has no compute queue", index,
                     info->name);
        return NULL;
    }
    df_vk_device_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "vulkan: out of host memory");
        return NULL;
    }
    self->instance = instance;
    self->info = *info;
    self->max_bind_bytes = opts->max_bind_bytes;
    self->portable = opts->portable_kernels;
    pthread_mutex_init(&self->lock, NULL);
    if (create_logical_device(self, err))
        goto fail;
    self->memory = df_vk_memory_new(self, opts->block_bytes, err);
    if (!self->memory)
        goto fail;
    self->pipelines = df_vk_pipelines_new(self, opts->pipeline_cache_path, err);
    if (!self->pipelines)
        goto fail;
    return self;
fail:
    df_error_prefix(err, "device %u (%s)", index, info->name);
    df_vk_device_destroy(&self);
    return NULL;
}

void df_vk_device_destroy(df_vk_device_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_device_t *self = *self_p;
    if (self->device)
        vkDeviceWaitIdle(self->device);
    df_vk_pipelines_destroy(&self->pipelines);
    df_vk_memory_destroy(&self->memory);
    if (self->pool)
        vkDestroyCommandPool(self->device, self->pool, NULL);
    if (self->device)
        vkDestroyDevice(self->device, NULL);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

const df_vk_device_info *df_vk_device_info_of(const df_vk_device_t *self) { return &self->info; }
VkDevice df_vk_device_handle(const df_vk_device_t *self) { return self->device; }
VkQueue df_vk_device_queue(const df_vk_device_t *self) { return self->queue; }
uint32_t df_vk_device_queue_family(const df_vk_device_t *self)
{
    return self->info.compute_queue_family;
}
df_vk_memory_t *df_vk_device_memory(df_vk_device_t *self) { return self->memory; }
df_vk_pipelines_t *df_vk_device_pipelines(df_vk_device_t *self) { return self->pipelines; }
df_vk_instance_t *df_vk_device_instance(df_vk_device_t *self) { return self->instance; }
VkCommandPool df_vk_device_command_pool(const df_vk_device_t *self) { return self->pool; }

int df_vk_device_has_fp16_storage(const df_vk_device_t *self) { return self->fp16_storage; }

int df_vk_device_prefers_texel_tiles(const df_vk_device_t *self)
{
    return self->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU && !self->portable;
}
int df_vk_device_has_fp16_texel(const df_vk_device_t *self) { return self->info.fp16_texel; }

static uint64_t clamp_limit(const df_vk_device_t *self, uint64_t limit)
{
    if (self->max_bind_bytes && self->max_bind_bytes < limit)
        return self->max_bind_bytes;
    return limit;
}

uint64_t df_vk_device_storage_limit(const df_vk_device_t *self)
{
    return clamp_limit(self, self->info.max_storage_range);
}

uint64_t df_vk_device_texel_limit(const df_vk_device_t *self, uint32_t texel_bytes)
{
    return clamp_limit(self, self->info.max_texel_elements * texel_bytes);
}

void df_vk_device_lock(df_vk_device_t *self) { pthread_mutex_lock(&self->lock); }
void df_vk_device_unlock(df_vk_device_t *self) { pthread_mutex_unlock(&self->lock); }

int df_vk_device_submit_wait(df_vk_device_t *self, VkCommandBuffer cmd, VkFence fence,
                             df_error_t *err)
{
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &cmd};
    pthread_mutex_lock(&self->lock);
    VkResult r = vkQueueSubmit(self->queue, 1, &si, fence);
    pthread_mutex_unlock(&self->lock);
    if (r < 0)
        return df_vk_fail(err, r, "vkQueueSubmit");
    /* No timeout: a kernel can legitimately run for minutes on a CPU device;
     * a hung GPU surfaces as VK_ERROR_DEVICE_LOST. */
    r = vkWaitForFences(self->device, 1, &fence, VK_TRUE, UINT64_MAX);
    if (r < 0)
        return df_vk_fail(err, r, "vkWaitForFences");
    DF_VK_TRY(err, vkResetFences(self->device, 1, &fence));
    return DF_OK;
}
