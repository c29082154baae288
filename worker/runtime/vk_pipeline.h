/*  vk_pipeline.h - compute pipelines built from embedded SPIR-V.
 *
 *  A kernel is described once, statically, by the op that owns it: which
 *  shader, the kind of each binding, the size of its push constants. A
 *  pipeline is that kernel with concrete specialization constants (tile
 *  sizes, transposes). Pipelines are built on first use and kept for the
 *  device's lifetime; the driver's VkPipelineCache is persisted to a file so
 *  later processes skip shader compilation (seconds on lavapipe).
 */
#ifndef DF_VK_PIPELINE_H
#define DF_VK_PIPELINE_H

#include <stdint.h>
#include <vulkan/vulkan.h>

#include "error.h"
#include "vk_device.h"

#define DF_VK_MAX_BINDINGS 8
#define DF_VK_MAX_SPEC 16

typedef enum {
    DF_VK_BIND_STORAGE = 0, /* storage buffer (read/write) */
    DF_VK_BIND_TEXEL = 1,   /* uniform texel buffer (read through the texture path) */
} df_vk_bind_kind;

typedef struct {
    const char *shader; /* name in df_shader_blobs */
    uint32_t nbindings; /* bindings 0 .. nbindings-1 of set 0 */
    df_vk_bind_kind bindings[DF_VK_MAX_BINDINGS];
    uint32_t push_bytes; /* multiple of 4, <= 128 */
} df_vk_kernel;

typedef struct {
    const df_vk_kernel *kernel;
    uint32_t spec[DF_VK_MAX_SPEC];
    uint32_t nspec;
    VkPipeline pipeline;
    VkPipelineLayout layout;
    VkDescriptorSetLayout set_layout;
    char label[64]; /* shader name, for profiles and errors */
} df_vk_pipeline_t;

df_vk_pipelines_t *df_vk_pipelines_new(df_vk_device_t *dev, const char *cache_path,
                                       df_error_t *err);
/*  Saves the pipeline cache (when a path was given) and frees every pipeline. */
void df_vk_pipelines_destroy(df_vk_pipelines_t **self_p);

/*  The pipeline for kernel with specialization constants spec[0..nspec)
 *  (constant_id i gets spec[i]); built on first request. The result lives as
 *  long as the device. */
df_vk_pipeline_t *df_vk_pipeline_get(df_vk_device_t *dev, const df_vk_kernel *kernel,
                                     const uint32_t *spec, uint32_t nspec, df_error_t *err);

/*  Writes the VkPipelineCache to the configured path now (temp file + rename,
 *  so a crash never leaves a torn cache). No-op without a path. */
int df_vk_pipelines_save(df_vk_pipelines_t *self, df_error_t *err);

/*  Pipelines built so far (for tests and stats). */
uint32_t df_vk_pipelines_count(const df_vk_pipelines_t *self);
/*  Whether the cache file was accepted at load. */
int df_vk_pipelines_cache_loaded(const df_vk_pipelines_t *self);

/*  Checks that data looks like a VkPipelineCache written by this device
 *  (header version one, vendor, device and pipelineCacheUUID). Returns
 *  DF_OK or DF_E_FORMAT with the reason. */
int df_vk_pipeline_cache_header_check(const void *data, size_t size, const df_vk_device_info *info,
                                      df_error_t *err);

#endif
