/*  vk_transfer.c - see vk_transfer.h. */
#include "vk_transfer.h"

#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "vk_batch.h"
#include "vk_check.h"

#define DEFAULT_STAGING_BYTES (64ull << 20)
/* Conversions go through a host scratch of this many elements at a time. */
#define CONVERT_CHUNK (1u << 20)

struct _df_vk_transfer_t {
    df_vk_device_t *dev;
    int mapped; /* tensor memory is host-visible: no staging */
    uint64_t staging_bytes;
    /* Staging: a buffer outside the tensor allocator, host-visible memory. */
    VkBuffer staging;
    VkDeviceMemory staging_mem;
    uint8_t *staging_host;
    df_vk_buffer_t staging_view; /* lets df_vk_batch_copy address it */
    df_vk_batch_t *batch;
};

df_vk_transfer_t *df_vk_transfer_new(df_vk_device_t *dev, const df_vk_transfer_opts *opts,
                                     df_error_t *err)
{
    df_vk_transfer_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    df_vk_transfer_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "transfer: out of host memory");
        return NULL;
    }
    self->dev = dev;
    self->mapped = df_vk_memory_host_visible(df_vk_device_memory(dev)) && !opts->force_staging;
    self->staging_bytes =
        opts->staging_bytes ? (opts->staging_bytes + 255) & ~255ull : DEFAULT_STAGING_BYTES;
    return self;
}

void df_vk_transfer_destroy(df_vk_transfer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_transfer_t *self = *self_p;
    VkDevice vk = df_vk_device_handle(self->dev);
    df_vk_batch_destroy(&self->batch);
    if (self->staging_host)
        vkUnmapMemory(vk, self->staging_mem);
    if (self->staging)
        vkDestroyBuffer(vk, self->staging, NULL);
    if (self->staging_mem)
        vkFreeMemory(vk, self->staging_mem, NULL);
    free(self);
    *self_p = NULL;
}

int df_vk_transfer_uses_staging(const df_vk_transfer_t *self) { return !self->mapped; }

static int ensure_staging(df_vk_transfer_t *self, df_error_t *err)
{
    if (self->staging_host)
        return DF_OK;
    VkDevice vk = df_vk_device_handle(self->dev);
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = self->staging_bytes,
                              .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    DF_VK_TRY(err, vkCreateBuffer(vk, &bci, NULL, &self->staging));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk, self->staging, &req);
    VkPhysicalDeviceMemoryProperties props;
    vkGetPhysicalDeviceMemoryProperties(df_vk_device_info_of(self->dev)->physical, &props);
    /* Coherent so no flush/invalidate is needed; cached makes downloads
     * (host reads) fast where the driver offers it. */
    int t = df_vk_memory_find_type(&props, req.memoryTypeBits,
                                   VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                   VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (t < 0)
        return df_error_set(err, DF_E_UNSUPPORTED, "transfer: no host-visible coherent memory type");
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = (uint32_t)t};
    DF_VK_TRY(err, vkAllocateMemory(vk, &mai, NULL, &self->staging_mem));
    DF_VK_TRY(err, vkBindBufferMemory(vk, self->staging, self->staging_mem, 0));
    void *p;
    DF_VK_TRY(err, vkMapMemory(vk, self->staging_mem, 0, VK_WHOLE_SIZE, 0, &p));
    self->staging_host = p;
    self->staging_view = (df_vk_buffer_t){.handle = self->staging,
                                          .offset = 0,
                                          .size = self->staging_bytes,
                                          .padded = self->staging_bytes,
                                          .host = p,
                                          .host_coherent = 1};
    self->batch = df_vk_batch_new(self->dev, 0, err);
    return self->batch ? DF_OK : err ? err->code : DF_E_VULKAN;
}

static int check_range(const df_vk_buffer_t *b, uint64_t offset, uint64_t size, const char *what,
                       df_error_t *err)
{
    if (!b)
        return df_error_set(err, DF_E_INVALID, "%s: no buffer", what);
    if (offset + size < offset || offset + size > b->size)
        return df_error_set(err, DF_E_RANGE, "%s: [%llu, +%llu) is outside the buffer's %llu bytes", what,
                            (unsigned long long)offset, (unsigned long long)size,
                            (unsigned long long)b->size);
    return DF_OK;
}

/* Staged copy of [offset, offset+size) in pieces of at most the staging size.
 * Device copies need 4-byte granularity: a ragged head or tail is widened to
 * whole words and the bytes outside the request are preserved by first
 * reading them back (uploads) or ignored (downloads). */
static int staged(df_vk_transfer_t *self, df_vk_buffer_t *buf, uint64_t offset, uint8_t *host,
                  uint64_t size, int upload, df_error_t *err)
{
    int rc = ensure_staging(self, err);
    if (rc)
        return rc;
    while (size > 0) {
        uint64_t start = offset & ~3ull;
        uint64_t lead = offset - start;
        uint64_t take = size;
        if (lead + take > self->staging_bytes)
            take = self->staging_bytes - lead;
        uint64_t span = (lead + take + 3) & ~3ull;
        if (start + span > buf->padded)
            return df_error_set(err, DF_E_RANGE, "transfer: range exceeds buffer");
        if (upload) {
            if (lead || span != take) { /* read-modify-write of the partial words */
                if ((rc = df_vk_batch_copy(self->batch, buf, start, &self->staging_view, 0, span, err)) ||
                    (rc = df_vk_batch_submit(self->batch, err)))
                    return rc;
            }
            memcpy(self->staging_host + lead, host, take);
            if ((rc = df_vk_batch_copy(self->batch, &self->staging_view, 0, buf, start, span, err)) ||
                (rc = df_vk_batch_submit(self->batch, err)))
                return rc;
        } else {
            if ((rc = df_vk_batch_copy(self->batch, buf, start, &self->staging_view, 0, span, err)) ||
                (rc = df_vk_batch_submit(self->batch, err)))
                return rc;
            memcpy(host, self->staging_host + lead, take);
        }
        offset += take;
        host += take;
        size -= take;
    }
    return DF_OK;
}

int df_vk_upload(df_vk_transfer_t *self, df_vk_buffer_t *dst, uint64_t offset, const void *src,
                 uint64_t size, df_error_t *err)
{
    int rc = check_range(dst, offset, size, "upload", err);
    if (rc || size == 0)
        return rc;
    if (self->mapped && dst->host) {
        memcpy(dst->host + offset, src, size);
        return DF_OK;
    }
    return staged(self, dst, offset, (uint8_t *)src, size, 1, err);
}

int df_vk_download(df_vk_transfer_t *self, const df_vk_buffer_t *src, uint64_t offset, void *dst,
                   uint64_t size, df_error_t *err)
{
    int rc = check_range(src, offset, size, "download", err);
    if (rc || size == 0)
        return rc;
    if (self->mapped && src->host) {
        memcpy(dst, src->host + offset, size);
        return DF_OK;
    }
    return staged(self, (df_vk_buffer_t *)src, offset, dst, size, 0, err);
}

static int check_float_type(df_dtype t, const char *what, df_error_t *err)
{
    if (t != DF_F32 && t != DF_F16 && t != DF_BF16)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: dtype %s is not a float type", what,
                            df_dtype_name(t));
    return DF_OK;
}

int df_vk_upload_f32(df_vk_transfer_t *self, df_vk_buffer_t *dst, uint64_t offset, const float *src,
                     uint64_t n, df_dtype dtype, df_error_t *err)
{
    int rc = check_float_type(dtype, "upload", err);
    if (rc)
        return rc;
    if (dtype == DF_F32)
        return df_vk_upload(self, dst, offset, src, n * 4, err);
    if ((rc = check_range(dst, offset, n * 2, "upload", err)))
        return rc;
    uint16_t *tmp = malloc(sizeof *tmp * (n < CONVERT_CHUNK ? n : CONVERT_CHUNK) + 2);
    if (!tmp)
        return df_error_set(err, DF_E_NOMEM, "upload: out of host memory");
    for (uint64_t i = 0; i < n && !rc; i += CONVERT_CHUNK) {
        uint64_t m = n - i < CONVERT_CHUNK ? n - i : CONVERT_CHUNK;
        for (uint64_t j = 0; j < m; j++)
            tmp[j] = dtype == DF_F16 ? df_float_to_half(src[i + j]) : df_float_to_bf16(src[i + j]);
        rc = df_vk_upload(self, dst, offset + 2 * i, tmp, 2 * m, err);
    }
    free(tmp);
    return rc;
}

int df_vk_download_f32(df_vk_transfer_t *self, const df_vk_buffer_t *src, uint64_t offset, float *dst,
                       uint64_t n, df_dtype dtype, df_error_t *err)
{
    int rc = check_float_type(dtype, "download", err);
    if (rc)
        return rc;
    if (dtype == DF_F32)
        return df_vk_download(self, src, offset, dst, n * 4, err);
    if ((rc = check_range(src, offset, n * 2, "download", err)))
        return rc;
    uint16_t *tmp = malloc(sizeof *tmp * (n < CONVERT_CHUNK ? n : CONVERT_CHUNK) + 2);
    if (!tmp)
        return df_error_set(err, DF_E_NOMEM, "download: out of host memory");
    for (uint64_t i = 0; i < n && !rc; i += CONVERT_CHUNK) {
        uint64_t m = n - i < CONVERT_CHUNK ? n - i : CONVERT_CHUNK;
        rc = df_vk_download(self, src, offset + 2 * i, tmp, 2 * m, err);
        for (uint64_t j = 0; !rc && j < m; j++)
            dst[i + j] = dtype == DF_F16 ? df_half_to_float(tmp[j]) : df_bf16_to_float(tmp[j]);
    }
    free(tmp);
    return rc;
}
