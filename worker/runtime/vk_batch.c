/*  vk_batch.c - see vk_batch.h. */
#include "vk_batch.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk_check.h"

#define SETS_PER_POOL 256
#define MAX_TIMED_DISPATCHES 4096

typedef struct {
    VkBuffer buffer;
    uint64_t start, end;
} span_t;

typedef struct {
    span_t *v;
    uint32_t n, cap;
} span_list;

struct _df_vk_batch_t {
    df_vk_device_t *dev;
    VkDevice vk;
    VkCommandBuffer cmd;
    VkFence fence;
    int recording;
    uint32_t pending;

    VkDescriptorPool *pools;
    uint32_t npools, pool_cap, pool_cur;

    VkBufferView *views;
    uint32_t nviews, view_cap;

    df_vk_buffer_t **held; /* scratch freed after the submit */
    uint32_t nheld, held_cap;

    span_list reads, writes;
    uint32_t barriers, barriers_last;

    int profile;
    VkQueryPool queries;
    uint32_t timed;       /* dispatches with timestamps in the current recording */
    df_vk_timing *labels; /* MAX_TIMED_DISPATCHES labels of the current recording */
    df_vk_timing *timings;
    uint32_t ntimings;
    float ts_period_ns;
    uint64_t ts_mask;

    double flops; /* counted by the ops that record through this batch */

    /* Device memory of the step being recorded and of the last one run. */
    int mem_open;
    uint64_t mem_start;
    df_vk_batch_memory mem_last;
    uint64_t mem_peak_max; /* the largest step peak since the last reset */
};

/* Opens the step's memory accounting at its first command (or first held
 * scratch buffer, which was allocated just before: exclude it from the
 * starting level so it shows as the step's own). */
static void mem_open(df_vk_batch_t *self, uint64_t exclude)
{
    if (self->mem_open)
        return;
    df_vk_memory_t *mem = df_vk_device_memory(self->dev);
    df_vk_memory_stats st;
    df_vk_memory_stats_get(mem, &st);
    self->mem_start = st.in_use >= exclude ? st.in_use - exclude : 0;
    df_vk_memory_reset_peak(mem);
    self->mem_open = 1;
}

static void mem_close(df_vk_batch_t *self)
{
    if (!self->mem_open)
        return;
    df_vk_memory_stats st;
    df_vk_memory_stats_get(df_vk_device_memory(self->dev), &st);
    self->mem_last.start_bytes = self->mem_start;
    self->mem_last.peak_bytes = st.peak_in_use;
    if (st.peak_in_use > self->mem_peak_max)
        self->mem_peak_max = st.peak_in_use;
    self->mem_open = 0;
}

static int grow(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*v, c * elem);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

df_vk_batch_t *df_vk_batch_new(df_vk_device_t *dev, int profile, df_error_t *err)
{
    df_vk_batch_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
        return NULL;
    }
    self->dev = dev;
    self->vk = df_vk_device_handle(dev);
    const df_vk_device_info *info = df_vk_device_info_of(dev);

    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = df_vk_device_command_pool(dev),
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    df_vk_device_lock(dev);
    VkResult r = vkAllocateCommandBuffers(self->vk, &ai, &self->cmd);
    df_vk_device_unlock(dev);
    if (r < 0) {
        df_vk_fail(err, r, "vkAllocateCommandBuffers");
        goto fail;
    }
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(self->vk, &fci, NULL, &self->fence);
    if (r < 0) {
        df_vk_fail(err, r, "vkCreateFence");
        goto fail;
    }
    if (profile && info->timestamp_bits) {
        VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                     .queryCount = 2 * MAX_TIMED_DISPATCHES};
        r = vkCreateQueryPool(self->vk, &qci, NULL, &self->queries);
        if (r < 0) {
            df_vk_fail(err, r, "vkCreateQueryPool");
            goto fail;
        }
        self->labels = calloc(MAX_TIMED_DISPATCHES, sizeof *self->labels);
        self->timings = calloc(MAX_TIMED_DISPATCHES, sizeof *self->timings);
        if (!self->labels || !self->timings) {
            df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
            goto fail;
        }
        self->profile = 1;
        self->ts_period_ns = info->timestamp_period_ns;
        self->ts_mask = info->timestamp_bits >= 64 ? ~0ull : ((1ull << info->timestamp_bits) - 1);
    }
    return self;
fail:
    df_vk_batch_destroy(&self);
    return NULL;
}

static void release_recorded(df_vk_batch_t *self)
{
    for (uint32_t i = 0; i < self->nviews; i++)
        vkDestroyBufferView(self->vk, self->views[i], NULL);
    self->nviews = 0;
    for (uint32_t i = 0; i < self->nheld; i++)
        df_vk_buffer_destroy(&self->held[i]);
    self->nheld = 0;
    for (uint32_t i = 0; i < self->npools; i++)
        vkResetDescriptorPool(self->vk, self->pools[i], 0);
    self->pool_cur = 0;
    self->reads.n = self->writes.n = 0;
    self->pending = 0;
    self->timed = 0;
    self->barriers_last = self->barriers;
    self->barriers = 0;
}

void df_vk_batch_destroy(df_vk_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_batch_t *self = *self_p;
    if (self->recording)
        vkEndCommandBuffer(self->cmd);
    release_recorded(self);
    for (uint32_t i = 0; i < self->npools; i++)
        vkDestroyDescriptorPool(self->vk, self->pools[i], NULL);
    free(self->pools);
    free(self->views);
    free(self->held);
    free(self->reads.v);
    free(self->writes.v);
    if (self->queries)
        vkDestroyQueryPool(self->vk, self->queries, NULL);
    free(self->labels);
    free(self->timings);
    if (self->fence)
        vkDestroyFence(self->vk, self->fence, NULL);
    if (self->cmd) {
        df_vk_device_lock(self->dev);
        vkFreeCommandBuffers(self->vk, df_vk_device_command_pool(self->dev), 1, &self->cmd);
        df_vk_device_unlock(self->dev);
    }
    free(self);
    *self_p = NULL;
}

df_vk_device_t *df_vk_batch_device(df_vk_batch_t *self) { return self->dev; }

static int begin(df_vk_batch_t *self, df_error_t *err)
{
    if (self->recording)
        return DF_OK;
    mem_open(self, 0);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    DF_VK_TRY(err, vkBeginCommandBuffer(self->cmd, &bi));
    self->recording = 1;
    if (self->profile)
        vkCmdResetQueryPool(self->cmd, self->queries, 0, 2 * MAX_TIMED_DISPATCHES);
    return DF_OK;
}

static int overlaps(const span_list *l, VkBuffer b, uint64_t start, uint64_t end)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i].buffer == b && l->v[i].start < end && start < l->v[i].end)
            return 1;
    return 0;
}

static int add_span(span_list *l, VkBuffer b, uint64_t start, uint64_t end)
{
    if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return -1;
    l->v[l->n++] = (span_t){b, start, end};
    return 0;
}

static void barrier(df_vk_batch_t *self)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(self->cmd, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
    self->reads.n = self->writes.n = 0;
    self->barriers++;
}

/* Inserts a barrier when the access pattern conflicts with what was recorded
 * since the last one, then records the access. */
static int track(df_vk_batch_t *self, const VkBuffer *bufs, const uint64_t *starts,
                 const uint64_t *ends, const int *writes, uint32_t n, df_error_t *err)
{
    int need = 0;
    for (uint32_t i = 0; i < n && !need; i++) {
        if (overlaps(&self->writes, bufs[i], starts[i], ends[i]))
            need = 1;
        else if (writes[i] && overlaps(&self->reads, bufs[i], starts[i], ends[i]))
            need = 1;
    }
    if (need)
        barrier(self);
    for (uint32_t i = 0; i < n; i++)
        if (add_span(writes[i] ? &self->writes : &self->reads, bufs[i], starts[i], ends[i]))
            return df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
    return DF_OK;
}

static int alloc_set(df_vk_batch_t *self, VkDescriptorSetLayout layout, VkDescriptorSet *set,
                     df_error_t *err)
{
    for (;;) {
        if (self->pool_cur == self->npools) {
            VkDescriptorPoolSize sizes[2] = {
                {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * DF_VK_MAX_BINDINGS},
                {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, SETS_PER_POOL * DF_VK_MAX_BINDINGS},
            };
            VkDescriptorPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                              .maxSets = SETS_PER_POOL,
                                              .poolSizeCount = 2,
                                              .pPoolSizes = sizes};
            if (grow((void **)&self->pools, &self->pool_cap, self->npools + 1, sizeof *self->pools))
                return df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
            DF_VK_TRY(err, vkCreateDescriptorPool(self->vk, &pci, NULL, &self->pools[self->npools]));
            self->npools++;
        }
        VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                          .descriptorPool = self->pools[self->pool_cur],
                                          .descriptorSetCount = 1,
                                          .pSetLayouts = &layout};
        VkResult r = vkAllocateDescriptorSets(self->vk, &ai, set);
        if (r == VK_SUCCESS)
            return DF_OK;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
            return df_vk_fail(err, r, "vkAllocateDescriptorSets");
        self->pool_cur++; /* this pool is full: move to the next (or a new one) */
    }
}

static uint32_t format_bytes(VkFormat f)
{
    switch (f) {
    case VK_FORMAT_R32G32B32A32_SFLOAT: return 16;
    case VK_FORMAT_R16G16B16A16_SFLOAT: return 8;
    case VK_FORMAT_R32_SFLOAT:
    case VK_FORMAT_R32_UINT:
    case VK_FORMAT_R32_SINT: return 4;
    case VK_FORMAT_R16_SFLOAT: return 2;
    case VK_FORMAT_R8G8B8A8_UINT:
    case VK_FORMAT_R8G8B8A8_SINT: return 4;
    default: return 0;
    }
}

static int check_binding(df_vk_batch_t *self, const df_vk_pipeline_t *p, uint32_t i,
                         const df_vk_binding *b, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(self->dev);
    const char *name = p->label;
    if (!b->buf)
        return df_error_set(err, DF_E_INVALID, "%s: binding %u has no buffer", name, i);
    if (b->range == 0 || b->offset + b->range < b->offset || b->offset + b->range > b->buf->padded)
        return df_error_set(err, DF_E_RANGE,
                            "%s: binding %u range [%llu, +%llu) is outside its buffer of %llu bytes",
                            name, i, (unsigned long long)b->offset, (unsigned long long)b->range,
                            (unsigned long long)b->buf->padded);
    if (p->kernel->bindings[i] == DF_VK_BIND_STORAGE) {
        if ((b->buf->offset + b->offset) % info->storage_align)
            return df_error_set(err, DF_E_INVALID, "%s: binding %u offset %llu is not a multiple of %llu",
                                name, i, (unsigned long long)b->offset,
                                (unsigned long long)info->storage_align);
        if (b->range > info->max_storage_range)
            return df_error_set(err, DF_E_RANGE,
                                "%s: binding %u covers %llu bytes, above maxStorageBufferRange %llu",
                                name, i, (unsigned long long)b->range,
                                (unsigned long long)info->max_storage_range);
    } else {
        uint32_t tb = format_bytes(b->format);
        if (!tb)
            return df_error_set(err, DF_E_UNSUPPORTED, "%s: binding %u has an unsupported texel format %d",
                                name, i, (int)b->format);
        if ((b->buf->offset + b->offset) % info->texel_align || b->range % tb)
            return df_error_set(err, DF_E_INVALID,
                                "%s: texel binding %u offset %llu / range %llu not aligned to %llu / %u",
                                name, i, (unsigned long long)b->offset, (unsigned long long)b->range,
                                (unsigned long long)info->texel_align, tb);
        if (b->range / tb > info->max_texel_elements)
            return df_error_set(err, DF_E_RANGE,
                                "%s: texel binding %u has %llu texels, above maxTexelBufferElements %llu",
                                name, i, (unsigned long long)(b->range / tb),
                                (unsigned long long)info->max_texel_elements);
    }
    return DF_OK;
}

int df_vk_batch_dispatch(df_vk_batch_t *self, const df_vk_pipeline_t *p, const df_vk_binding *binds,
                         uint32_t nbinds, const void *push, uint32_t gx, uint32_t gy, uint32_t gz,
                         const char *label, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(self->dev);
    const df_vk_kernel *k = p->kernel;
    if (nbinds != k->nbindings)
        return df_error_set(err, DF_E_INVALID, "%s: %u bindings given, kernel has %u", p->label,
                            nbinds, k->nbindings);
    if (gx == 0 || gy == 0 || gz == 0)
        return DF_OK; /* nothing to do */
    if (gx > info->max_group_count[0] || gy > info->max_group_count[1] || gz > info->max_group_count[2])
        return df_error_set(err, DF_E_RANGE, "%s: %u x %u x %u workgroups exceed the device's %u x %u x %u",
                            p->label, gx, gy, gz, info->max_group_count[0], info->max_group_count[1],
                            info->max_group_count[2]);
    int rc;
    for (uint32_t i = 0; i < nbinds; i++)
        if ((rc = check_binding(self, p, i, &binds[i], err)))
            return rc;
    if ((rc = begin(self, err)))
        return rc;

    VkDescriptorSet set;
    if ((rc = alloc_set(self, p->set_layout, &set, err)))
        return rc;
    /* The writes below point into self->views: make room for every view of
     * this dispatch first, so no reallocation moves them. */
    if (grow((void **)&self->views, &self->view_cap, self->nviews + nbinds, sizeof *self->views))
        return df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
    VkWriteDescriptorSet writes[DF_VK_MAX_BINDINGS];
    VkDescriptorBufferInfo infos[DF_VK_MAX_BINDINGS];
    VkBuffer bufs[DF_VK_MAX_BINDINGS];
    uint64_t starts[DF_VK_MAX_BINDINGS], ends[DF_VK_MAX_BINDINGS];
    int wr[DF_VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < nbinds; i++) {
        const df_vk_binding *b = &binds[i];
        uint64_t off = b->buf->offset + b->offset;
        writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                           .dstSet = set,
                                           .dstBinding = i,
                                           .descriptorCount = 1};
        if (k->bindings[i] == DF_VK_BIND_STORAGE) {
            infos[i] = (VkDescriptorBufferInfo){b->buf->handle, off, b->range};
            writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            writes[i].pBufferInfo = &infos[i];
        } else {
            VkBufferViewCreateInfo vci = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                          .buffer = b->buf->handle,
                                          .format = b->format,
                                          .offset = off,
                                          .range = b->range};
            DF_VK_TRY(err, vkCreateBufferView(self->vk, &vci, NULL, &self->views[self->nviews]));
            writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
            writes[i].pTexelBufferView = &self->views[self->nviews];
            self->nviews++;
        }
        bufs[i] = b->buf->handle;
        starts[i] = off;
        ends[i] = off + b->range;
        wr[i] = b->write && k->bindings[i] == DF_VK_BIND_STORAGE;
    }
    vkUpdateDescriptorSets(self->vk, nbinds, writes, 0, NULL);
    if ((rc = track(self, bufs, starts, ends, wr, nbinds, err)))
        return rc;

    int timed = self->profile && self->timed < MAX_TIMED_DISPATCHES;
    if (timed)
        vkCmdWriteTimestamp(self->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, self->queries,
                            2 * self->timed);
    vkCmdBindPipeline(self->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
    vkCmdBindDescriptorSets(self->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0, NULL);
    if (k->push_bytes)
        vkCmdPushConstants(self->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, k->push_bytes, push);
    vkCmdDispatch(self->cmd, gx, gy, gz);
    if (timed) {
        vkCmdWriteTimestamp(self->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, self->queries,
                            2 * self->timed + 1);
        snprintf(self->labels[self->timed].label, sizeof self->labels[0].label, "%s",
                 label ? label : p->label);
        self->timed++;
    }
    self->pending++;
    return DF_OK;
}

int df_vk_batch_hold(df_vk_batch_t *self, df_vk_buffer_t **buf, df_error_t *err)
{
    if (grow((void **)&self->held, &self->held_cap, self->nheld + 1, sizeof *self->held)) {
        df_vk_buffer_destroy(buf); /* safe: nothing recorded uses it yet (see the header) */
        return df_error_set(err, DF_E_NOMEM, "batch: out of host memory");
    }
    mem_open(self, (*buf)->padded);
    self->held[self->nheld++] = *buf;
    *buf = NULL;
    return DF_OK;
}

static int check_transfer_range(const df_vk_buffer_t *b, uint64_t off, uint64_t size,
                                const char *what, df_error_t *err)
{
    if (!b || size == 0 || (off & 3) || (size & 3) || off + size < off || off + size > b->padded)
        return df_error_set(err, DF_E_RANGE, "batch %s: range [%llu, +%llu) invalid for a buffer of %llu bytes",
                            what, (unsigned long long)off, (unsigned long long)size,
                            b ? (unsigned long long)b->padded : 0ull);
    return DF_OK;
}

int df_vk_batch_copy(df_vk_batch_t *self, const df_vk_buffer_t *src, uint64_t src_offset,
                     const df_vk_buffer_t *dst, uint64_t dst_offset, uint64_t size, df_error_t *err)
{
    int rc;
    if ((rc = check_transfer_range(src, src_offset, size, "copy source", err)) ||
        (rc = check_transfer_range(dst, dst_offset, size, "copy destination", err)) ||
        (rc = begin(self, err)))
        return rc;
    VkBuffer bufs[2] = {src->handle, dst->handle};
    uint64_t starts[2] = {src->offset + src_offset, dst->offset + dst_offset};
    uint64_t ends[2] = {starts[0] + size, starts[1] + size};
    int wr[2] = {0, 1};
    if ((rc = track(self, bufs, starts, ends, wr, 2, err)))
        return rc;
    VkBufferCopy region = {starts[0], starts[1], size};
    vkCmdCopyBuffer(self->cmd, src->handle, dst->handle, 1, &region);
    self->pending++;
    return DF_OK;
}

int df_vk_batch_fill(df_vk_batch_t *self, const df_vk_buffer_t *buf, uint64_t offset, uint64_t size,
                     uint32_t value, df_error_t *err)
{
    int rc;
    if ((rc = check_transfer_range(buf, offset, size, "fill", err)) || (rc = begin(self, err)))
        return rc;
    VkBuffer b = buf->handle;
    uint64_t start = buf->offset + offset, end = start + size;
    int wr = 1;
    if ((rc = track(self, &b, &start, &end, &wr, 1, err)))
        return rc;
    vkCmdFillBuffer(self->cmd, b, start, size, value);
    self->pending++;
    return DF_OK;
}

static void read_timings(df_vk_batch_t *self)
{
    self->ntimings = 0;
    if (!self->profile || self->timed == 0)
        return;
    uint64_t *ts = malloc(2 * self->timed * sizeof *ts);
    if (!ts)
        return;
    VkResult r = vkGetQueryPoolResults(self->vk, self->queries, 0, 2 * self->timed,
                                       2 * self->timed * sizeof *ts, ts, sizeof *ts,
                                       VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r == VK_SUCCESS) {
        for (uint32_t i = 0; i < self->timed; i++) {
            uint64_t d = (ts[2 * i + 1] - ts[2 * i]) & self->ts_mask;
            self->timings[i] = self->labels[i];
            self->timings[i].ms = d * (double)self->ts_period_ns * 1e-6;
        }
        self->ntimings = self->timed;
    } else {
        df_warn("vkGetQueryPoolResults: %s; no timings for this batch", df_vk_result_name(r));
    }
    free(ts);
}

int df_vk_batch_submit(df_vk_batch_t *self, df_error_t *err)
{
    if (!self->recording) {
        self->ntimings = 0;
        mem_close(self);
        return DF_OK;
    }
    self->recording = 0;
    VkResult r = vkEndCommandBuffer(self->cmd);
    int rc = r < 0 ? df_vk_fail(err, r, "vkEndCommandBuffer") : DF_OK;
    if (!rc)
        rc = df_vk_device_submit_wait(self->dev, self->cmd, self->fence, err);
    if (!rc)
        read_timings(self);
    mem_close(self); /* before the scratch goes */
    release_recorded(self);
    r = vkResetCommandBuffer(self->cmd, 0);
    if (!rc && r < 0)
        rc = df_vk_fail(err, r, "vkResetCommandBuffer");
    return rc;
}

uint32_t df_vk_batch_pending(const df_vk_batch_t *self) { return self->pending; }
df_vk_batch_memory df_vk_batch_memory_last(const df_vk_batch_t *self) { return self->mem_last; }
uint32_t df_vk_batch_timing_count(const df_vk_batch_t *self) { return self->ntimings; }
const df_vk_timing *df_vk_batch_timings(const df_vk_batch_t *self) { return self->timings; }
uint32_t df_vk_batch_barrier_count(const df_vk_batch_t *self) { return self->barriers_last; }

double df_vk_batch_total_ms(const df_vk_batch_t *self)
{
    double t = 0;
    for (uint32_t i = 0; i < self->ntimings; i++)
        t += self->timings[i].ms;
    return t;
}

void df_vk_batch_count_flops(df_vk_batch_t *self, double flops) { self->flops += flops; }
double df_vk_batch_flops(const df_vk_batch_t *self) { return self->flops; }

uint64_t df_vk_batch_memory_peak(const df_vk_batch_t *self) { return self->mem_peak_max; }
void df_vk_batch_memory_peak_reset(df_vk_batch_t *self) { self->mem_peak_max = 0; }
