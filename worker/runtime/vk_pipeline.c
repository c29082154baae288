/*  vk_pipeline.c - see vk_pipeline.h. */
#include "vk_pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "shader_blobs.h"
#include "vk_check.h"

/* Pipeline caches above this size are not trusted (a real one is a few MiB). */
#define MAX_CACHE_FILE_BYTES (512u << 20)

struct _df_vk_pipelines_t {
    df_vk_device_t *dev;
    VkDevice vk;
    VkPipelineCache cache;
    char *cache_path;
    int cache_loaded;
    pthread_mutex_t lock;
    df_vk_pipeline_t **items;
    uint32_t count, cap;
};

const df_shader_blob *df_shader_find(const char *name)
{
    for (size_t i = 0; i < df_shader_blob_count; i++)
        if (strcmp(df_shader_blobs[i].name, name) == 0)
            return &df_shader_blobs[i];
    return NULL;
}

int df_vk_pipeline_cache_header_check(const void *data, size_t size, const df_vk_device_info *info,
                                      df_error_t *err)
{
    /* VkPipelineCacheHeaderVersionOne: 4 uint32 then the 16-byte UUID. */
    if (size < 32)
        return df_error_set(err, DF_E_FORMAT, "pipeline cache: %zu bytes, shorter than its header", size);
    uint32_t w[4];
    memcpy(w, data, sizeof w);
    if (w[0] < 32 || w[0] > size)
        return df_error_set(err, DF_E_FORMAT, "pipeline cache: header size %u is invalid", w[0]);
    if (w[1] != VK_PIPELINE_CACHE_HEADER_VERSION_ONE)
        return df_error_set(err, DF_E_FORMAT, "pipeline cache: header version %u is unknown", w[1]);
    if (w[2] != info->vendor_id || w[3] != info->device_id)
        return df_error_set(err, DF_E_FORMAT,
                            "pipeline cache: written by device %04x:%04x, this is %04x:%04x", w[2],
                            w[3], info->vendor_id, info->device_id);
    if (memcmp((const uint8_t *)data + 16, info->uuid, VK_UUID_SIZE) != 0)
        return df_error_set(err, DF_E_FORMAT,
                            "pipeline cache: written by another driver version (UUID differs)");
    return DF_OK;
}

/* Reads the cache file; returns NULL (and logs why) when absent or unusable. */
static void *read_cache_file(const char *path, const df_vk_device_info *info, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno != ENOENT)
            df_warn("pipeline cache %s: %s; starting empty", path, strerror(errno));
        return NULL;
    }
    void *data = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len <= 0 || (unsigned long)len > MAX_CACHE_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        df_warn("pipeline cache %s: unusable size; starting empty", path);
        fclose(f);
        return NULL;
    }
    data = malloc((size_t)len);
    if (!data || fread(data, 1, (size_t)len, f) != (size_t)len) {
        df_warn("pipeline cache %s: read failed; starting empty", path);
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    df_error_t err;
    df_error_clear(&err);
    if (df_vk_pipeline_cache_header_check(data, (size_t)len, info, &err)) {
        df_warn("%s: %s; starting empty", path, err.msg);
        free(data);
        return NULL;
    }
    *size = (size_t)len;
    return data;
}

df_vk_pipelines_t *df_vk_pipelines_new(df_vk_device_t *dev, const char *cache_path,
                                       df_error_t *err)
{
    df_vk_pipelines_t *self = calloc(1, sizeof *self);
    if (!self || (cache_path && !(self->cache_path = strdup(cache_path)))) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "pipelines: out of host memory");
        return NULL;
    }
    self->dev = dev;
    self->vk = df_vk_device_handle(dev);
    pthread_mutex_init(&self->lock, NULL);

    size_t size = 0;
    void *data = cache_path ? read_cache_file(cache_path, df_vk_device_info_of(dev), &size) : NULL;
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                    .initialDataSize = size,
                                    .pInitialData = data};
    VkResult r = vkCreatePipelineCache(self->vk, &ci, NULL, &self->cache);
    if (r < 0 && data) {
        /* The driver rejected data that passed the header check: start empty. */
        df_warn("pipeline cache %s: rejected by the driver (%s); starting empty", cache_path,
                df_vk_result_name(r));
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        free(data);
        data = NULL;
        r = vkCreatePipelineCache(self->vk, &ci, NULL, &self->cache);
    }
    self->cache_loaded = data != NULL && r >= 0;
    free(data);
    if (r < 0) {
        df_vk_fail(err, r, "vkCreatePipelineCache");
        df_vk_pipelines_destroy(&self);
        return NULL;
    }
    return self;
}

int df_vk_pipelines_save(df_vk_pipelines_t *self, df_error_t *err)
{
    if (!self->cache_path || !self->cache)
        return DF_OK;
    size_t size = 0;
    DF_VK_TRY(err, vkGetPipelineCacheData(self->vk, self->cache, &size, NULL));
    void *data = malloc(size ? size : 1);
    if (!data)
        return df_error_set(err, DF_E_NOMEM, "pipeline cache: out of host memory");
    VkResult r = vkGetPipelineCacheData(self->vk, self->cache, &size, data);
    if (r < 0) {
        free(data);
        return df_vk_fail(err, r, "vkGetPipelineCacheData");
    }
    size_t plen = strlen(self->cache_path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(data);
        return df_error_set(err, DF_E_NOMEM, "pipeline cache: out of host memory");
    }
    snprintf(tmp, plen + 16, "%s.tmp", self->cache_path);
    int rc = DF_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = df_error_set(err, DF_E_IO, "pipeline cache %s: %s", tmp, strerror(errno));
    } else {
        int ok = fwrite(data, 1, size, f) == size;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, self->cache_path) != 0) {
            rc = df_error_set(err, DF_E_IO, "pipeline cache %s: write failed: %s",
                              self->cache_path, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    free(data);
    return rc;
}

static void pipeline_free(VkDevice vk, df_vk_pipeline_t *p)
{
    if (p->pipeline)
        vkDestroyPipeline(vk, p->pipeline, NULL);
    if (p->layout)
        vkDestroyPipelineLayout(vk, p->layout, NULL);
    if (p->set_layout)
        vkDestroyDescriptorSetLayout(vk, p->set_layout, NULL);
    free(p);
}

void df_vk_pipelines_destroy(df_vk_pipelines_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_pipelines_t *self = *self_p;
    df_error_t err;
    df_error_clear(&err);
    if (self->cache && df_vk_pipelines_save(self, &err))
        df_warn("%s", err.msg);
    for (uint32_t i = 0; i < self->count; i++)
        pipeline_free(self->vk, self->items[i]);
    free(self->items);
    if (self->cache)
        vkDestroyPipelineCache(self->vk, self->cache, NULL);
    pthread_mutex_destroy(&self->lock);
    free(self->cache_path);
    free(self);
    *self_p = NULL;
}

static int build(df_vk_pipelines_t *self, df_vk_pipeline_t *p, df_error_t *err)
{
    const df_vk_kernel *k = p->kernel;
    const df_shader_blob *blob = df_shader_find(k->shader);
    if (!blob)
        return df_error_set(err, DF_E_NOT_FOUND, "pipeline: no embedded shader named '%s'", k->shader);
    if (k->nbindings > DF_VK_MAX_BINDINGS || k->push_bytes > 128 || (k->push_bytes & 3))
        return df_error_set(err, DF_E_INVALID, "pipeline %s: bad kernel description", k->shader);

    VkDescriptorSetLayoutBinding b[DF_VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < k->nbindings; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = k->bindings[i] == DF_VK_BIND_TEXEL ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                                 : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dl = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                          .bindingCount = k->nbindings,
                                          .pBindings = b};
    DF_VK_TRY(err, vkCreateDescriptorSetLayout(self->vk, &dl, NULL, &p->set_layout));
    VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = k->push_bytes};
    VkPipelineLayoutCreateInfo pl = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .setLayoutCount = 1,
                                     .pSetLayouts = &p->set_layout,
                                     .pushConstantRangeCount = k->push_bytes ? 1 : 0,
                                     .pPushConstantRanges = &pr};
    DF_VK_TRY(err, vkCreatePipelineLayout(self->vk, &pl, NULL, &p->layout));

    VkShaderModuleCreateInfo smi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = blob->bytes,
                                    .pCode = blob->words};
    VkShaderModule module;
    DF_VK_TRY(err, vkCreateShaderModule(self->vk, &smi, NULL, &module));
    VkSpecializationMapEntry entries[DF_VK_MAX_SPEC];
    for (uint32_t i = 0; i < p->nspec; i++)
        entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
    VkSpecializationInfo si = {.mapEntryCount = p->nspec,
                               .pMapEntries = entries,
                               .dataSize = 4 * p->nspec,
                               .pData = p->spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = module,
                  .pName = "main",
                  .pSpecializationInfo = p->nspec ? &si : NULL},
        .layout = p->layout,
    };
    VkResult r = vkCreateComputePipelines(self->vk, self->cache, 1, &ci, NULL, &p->pipeline);
    vkDestroyShaderModule(self->vk, module, NULL);
    if (r < 0)
        return df_vk_fail(err, r, "vkCreateComputePipelines");
    return DF_OK;
}

df_vk_pipeline_t *df_vk_pipeline_get(df_vk_device_t *dev, const df_vk_kernel *kernel,
                                     const uint32_t *spec, uint32_t nspec, df_error_t *err)
{
    df_vk_pipelines_t *self = df_vk_device_pipelines(dev);
    if (nspec > DF_VK_MAX_SPEC) {
        df_error_set(err, DF_E_INVALID, "pipeline %s: %u specialization constants (max %d)",
                     kernel->shader, nspec, DF_VK_MAX_SPEC);
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    for (uint32_t i = 0; i < self->count; i++) {
        df_vk_pipeline_t *p = self->items[i];
        /* nspec 0 may come with spec NULL, which memcmp must not see. */
        if (p->kernel == kernel && p->nspec == nspec && (nspec == 0 || memcmp(p->spec, spec, 4 * nspec) == 0)) {
            pthread_mutex_unlock(&self->lock);
            return p;
        }
    }
    df_vk_pipeline_t *p = calloc(1, sizeof *p);
    if (p && self->count == self->cap) {
        uint32_t cap = self->cap ? 2 * self->cap : 32;
        df_vk_pipeline_t **items = realloc(self->items, cap * sizeof *items);
        if (items) {
            self->items = items;
            self->cap = cap;
        } else {
            free(p);
            p = NULL;
        }
    }
    if (!p) {
        pthread_mutex_unlock(&self->lock);
        df_error_set(err, DF_E_NOMEM, "pipeline: out of host memory");
        return NULL;
    }
    p->kernel = kernel;
    p->nspec = nspec;
    if (nspec)
        memcpy(p->spec, spec, 4 * nspec);
    snprintf(p->label, sizeof p->label, "%s", kernel->shader);
    int rc = build(self, p, err);
    if (rc) {
        pthread_mutex_unlock(&self->lock);
        df_error_prefix(err, "pipeline %s", kernel->shader);
        pipeline_free(self->vk, p);
        return NULL;
    }
    self->items[self->count++] = p;
    pthread_mutex_unlock(&self->lock);
    return p;
}

uint32_t df_vk_pipelines_count(const df_vk_pipelines_t *self) { return self->count; }
int df_vk_pipelines_cache_loaded(const df_vk_pipelines_t *self) { return self->cache_loaded; }
