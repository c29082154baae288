/*  vk_memory.c - see vk_memory.h. */
#include "vk_memory.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "suballoc.h"
#include "vk_check.h"

#define DEFAULT_BLOCK_BYTES (256ull << 20)

struct _df_vk_block_t {
    VkDeviceMemory memory;
    VkBuffer buffer;
    uint64_t size;
    uint8_t *host;
    df_suballoc_t *ranges;
    uint32_t live;      /* buffers allocated from this block */
    int dedicated;      /* sized for one buffer; freed with it */
    df_vk_block_t *next;
};

struct _df_vk_memory_t {
    df_vk_device_t *dev;
    VkDevice vk;
    uint32_t type_index;
    int host_visible, host_coherent;
    uint64_t block_bytes;
    uint64_t align;
    VkBufferUsageFlags usage;
    pthread_mutex_t lock;
    df_vk_block_t *blocks;
    df_vk_memory_stats stats;
};

int df_vk_memory_find_type(const VkPhysicalDeviceMemoryProperties *props, uint32_t type_bits,
                           VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred)
{
    int fallback = -1;
    for (uint32_t i = 0; i < props->memoryTypeCount; i++) {
        if (!(type_bits & (1u << i)))
            continue;
        VkMemoryPropertyFlags f = props->memoryTypes[i].propertyFlags;
        if ((f & required) != required)
            continue;
        if ((f & preferred) == preferred)
            return (int)i;
        if (fallback < 0)
            fallback = (int)i;
    }
    return fallback;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

df_vk_memory_t *df_vk_memory_new(df_vk_device_t *dev, uint64_t block_bytes, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    df_vk_memory_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "vulkan memory: out of host memory");
        return NULL;
    }
    self->dev = dev;
    self->vk = df_vk_device_handle(dev);
    pthread_mutex_init(&self->lock, NULL);
    self->usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                  VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    /* 256 bytes covers every known binding alignment and a whole texel of any
     * format, so no per-binding-kind bookkeeping is needed. */
    self->align = max_u64(256, max_u64(info->storage_align, info->texel_align));
    self->block_bytes = block_bytes ? block_bytes : DEFAULT_BLOCK_BYTES;
    if (info->max_alloc_size && self->block_bytes > info->max_alloc_size)
        self->block_bytes = info->max_alloc_size;

    /* Probe which memory types can back our buffers. */
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = 4096,
                              .usage = self->usage,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkBuffer probe;
    VkResult r = vkCreateBuffer(self->vk, &bci, NULL, &probe);
    if (r < 0) {
        df_vk_fail(err, r, "vkCreateBuffer");
        df_vk_memory_destroy(&self);
        return NULL;
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(self->vk, probe, &req);
    vkDestroyBuffer(self->vk, probe, NULL);

    VkPhysicalDeviceMemoryProperties props;
    vkGetPhysicalDeviceMemoryProperties(info->physical, &props);
    /* Discrete GPUs: plain device-local memory (their host-visible
     * device-local heap is often a 256 MiB BAR window). UMA devices: memory
     * that is both, so uploads are memcpy. */
    int uma = info->type == VK_PHYSICAL_DEVICE_TYPE_CPU ||
              info->type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    VkMemoryPropertyFlags preferred =
        uma ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT : 0;
    int t = df_vk_memory_find_type(&props, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                   preferred);
    if (t < 0) /* some drivers expose no device-local type for buffers */
        t = df_vk_memory_find_type(&props, req.memoryTypeBits, 0, 0);
    if (t < 0) {
        df_error_set(err, DF_E_UNSUPPORTED, "vulkan memory: no memory type can hold buffers");
        df_vk_memory_destroy(&self);
        return NULL;
    }
    self->type_index = (uint32_t)t;
    VkMemoryPropertyFlags f = props.memoryTypes[t].propertyFlags;
    self->host_visible = !!(f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
    self->host_coherent = !!(f & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    self->align = max_u64(self->align, req.alignment);
    return self;
}

static void block_free(df_vk_memory_t *self, df_vk_block_t *b)
{
    if (b->host)
        vkUnmapMemory(self->vk, b->memory);
    if (b->buffer)
        vkDestroyBuffer(self->vk, b->buffer, NULL);
    if (b->memory)
        vkFreeMemory(self->vk, b->memory, NULL);
    self->stats.reserved -= b->memory ? b->size : 0;
    df_suballoc_destroy(&b->ranges);
    free(b);
}

void df_vk_memory_destroy(df_vk_memory_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_memory_t *self = *self_p;
    if (self->stats.buffers)
        df_warn("vulkan memory: %u buffer(s) (%llu bytes) still allocated at shutdown",
                self->stats.buffers, (unsigned long long)self->stats.in_use);
    while (self->blocks) {
        df_vk_block_t *b = self->blocks;
        self->blocks = b->next;
        block_free(self, b);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

static df_vk_block_t *block_new(df_vk_memory_t *self, uint64_t size, int dedicated, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(self->dev);
    if (info->max_alloc_size && size > info->max_alloc_size) {
        df_error_set(err, DF_E_RANGE,
                     "vulkan memory: %llu bytes exceed the device's maxMemoryAllocationSize %llu",
                     (unsigned long long)size, (unsigned long long)info->max_alloc_size);
        return NULL;
    }
    df_vk_block_t *b = calloc(1, sizeof *b);
    if (!b) {
        df_error_set(err, DF_E_NOMEM, "vulkan memory: out of host memory");
        return NULL;
    }
    b->size = size;
    b->dedicated = dedicated;
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = self->usage,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(self->vk, &bci, NULL, &b->buffer);
    if (r < 0)
        goto vk_fail_buffer;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(self->vk, b->buffer, &req);
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = self->type_index};
    r = vkAllocateMemory(self->vk, &mai, NULL, &b->memory);
    if (r < 0)
        goto vk_fail_alloc;
    b->size = size;
    self->stats.reserved += size;
    if (self->stats.reserved > self->stats.peak_reserved)
        self->stats.peak_reserved = self->stats.reserved;
    r = vkBindBufferMemory(self->vk, b->buffer, b->memory, 0);
    if (r < 0)
        goto vk_fail_bind;
    if (self->host_visible) {
        void *p = NULL;
        r = vkMapMemory(self->vk, b->memory, 0, VK_WHOLE_SIZE, 0, &p);
        if (r < 0)
            goto vk_fail_map;
        b->host = p;
    }
    b->ranges = df_suballoc_new(size, err);
    if (!b->ranges) {
        block_free(self, b);
        return NULL;
    }
    return b;

vk_fail_buffer:
    df_vk_fail(err, r, "vkCreateBuffer");
    goto fail;
vk_fail_alloc:
    df_error_set(err, df_vk_status(r), "vkAllocateMemory: %s (%llu bytes; %llu already reserved)",
                 df_vk_result_name(r), (unsigned long long)size,
                 (unsigned long long)self->stats.reserved);
    goto fail;
vk_fail_bind:
    df_vk_fail(err, r, "vkBindBufferMemory");
    goto fail;
vk_fail_map:
    df_vk_fail(err, r, "vkMapMemory");
fail:
    block_free(self, b);
    return NULL;
}

/* A new block of `size` bytes, linked in, with `padded` bytes carved from it. */
static df_vk_block_t *block_add(df_vk_memory_t *self, uint64_t size, int dedicated, uint64_t padded,
                                uint64_t *offset, df_error_t *err)
{
    df_vk_block_t *block = block_new(self, size, dedicated, err);
    if (block && df_suballoc_alloc(block->ranges, padded, self->align, offset, err)) {
        block_free(self, block);
        return NULL;
    }
    if (block) {
        block->next = self->blocks;
        self->blocks = block;
    }
    return block;
}

df_vk_buffer_t *df_vk_buffer_new(df_vk_device_t *dev, uint64_t size, df_error_t *err)
{
    df_vk_memory_t *self = df_vk_device_memory(dev);
    if (size == 0) {
        df_error_set(err, DF_E_INVALID, "vulkan buffer: size 0");
        return NULL;
    }
    uint64_t padded = (size + self->align - 1) & ~(self->align - 1);
    if (padded < size) {
        df_error_set(err, DF_E_RANGE, "vulkan buffer: size %llu overflows", (unsigned long long)size);
        return NULL;
    }
    df_vk_buffer_t *buf = calloc(1, sizeof *buf);
    if (!buf) {
        df_error_set(err, DF_E_NOMEM, "vulkan buffer: out of host memory");
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    df_vk_block_t *block = NULL;
    uint64_t offset = 0;
    int dedicated = padded > self->block_bytes / 2;
    if (!dedicated)
        for (df_vk_block_t *b = self->blocks; b; b = b->next)
            if (!b->dedicated && df_suballoc_alloc(b->ranges, padded, self->align, &offset, NULL) == DF_OK) {
                block = b;
                break;
            }
    if (!block)
        block = block_add(self, dedicated ? padded : self->block_bytes, dedicated, padded, &offset, err);
    if (!block) {
        pthread_mutex_unlock(&self->lock);
        free(buf);
        return NULL;
    }
    block->live++;
    self->stats.in_use += padded;
    self->stats.buffers++;
    if (self->stats.in_use > self->stats.peak_in_use)
        self->stats.peak_in_use = self->stats.in_use;
    pthread_mutex_unlock(&self->lock);

    buf->handle = block->buffer;
    buf->offset = offset;
    buf->size = size;
    buf->padded = padded;
    buf->host = block->host ? block->host + offset : NULL;
    buf->host_coherent = self->host_coherent;
    buf->block = block;
    buf->owner = self;
    return buf;
}

void df_vk_buffer_destroy(df_vk_buffer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_buffer_t *buf = *self_p;
    df_vk_memory_t *mem = buf->owner;
    df_vk_block_t *block = buf->block;
    pthread_mutex_lock(&mem->lock);
    df_error_t err;
    df_error_clear(&err);
    if (df_suballoc_free(block->ranges, buf->offset, buf->padded, &err))
        df_errorf("vulkan buffer: %s", err.msg);
    block->live--;
    mem->stats.in_use -= buf->padded;
    mem->stats.buffers--;
    /* Dedicated blocks go at once; of the shared blocks, empty ones go too
     * unless it is the last, which stays as a warm spare. */
    int spare_kept = 0;
    for (df_vk_block_t *b = mem->blocks; b; b = b->next)
        if (!b->dedicated && b != block)
            spare_kept = 1;
    if (block->live == 0 && (block->dedicated || spare_kept)) {
        df_vk_block_t **pp = &mem->blocks;
        while (*pp != block)
            pp = &(*pp)->next;
        *pp = block->next;
        block_free(mem, block);
    }
    pthread_mutex_unlock(&mem->lock);
    free(buf);
    *self_p = NULL;
}

int df_vk_memory_host_visible(const df_vk_memory_t *self) { return self->host_visible; }
uint64_t df_vk_memory_alignment(const df_vk_memory_t *self) { return self->align; }

void df_vk_memory_stats_get(df_vk_memory_t *self, df_vk_memory_stats *out)
{
    pthread_mutex_lock(&self->lock);
    *out = self->stats;
    uint32_t n = 0;
    for (df_vk_block_t *b = self->blocks; b; b = b->next)
        n++;
    out->blocks = n;
    pthread_mutex_unlock(&self->lock);
}

void df_vk_memory_reset_peak(df_vk_memory_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->stats.peak_in_use = self->stats.in_use;
    pthread_mutex_unlock(&self->lock);
}

void df_vk_memory_reset_peak_reserved(df_vk_memory_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->stats.peak_reserved = self->stats.reserved;
    pthread_mutex_unlock(&self->lock);
}
