/*  vk_device_info.h - what one Vulkan physical device offers.
 *
 *  Queried once per device when the instance is created. The op layer reads
 *  it to pick kernels (texel-buffer kernels for CPU devices, shared-memory
 *  tiles for GPUs, cooperative matrices where present) and to split work so
 *  every bound window respects the device's limits.
 */
#ifndef DF_VK_DEVICE_INFO_H
#define DF_VK_DEVICE_INFO_H

#include <stdint.h>
#include <stdio.h>
#include <vulkan/vulkan.h>

#include "error.h"

#define DF_VK_MAX_HEAPS 16

typedef struct {
    uint64_t size;
    int device_local;
} df_vk_heap_info;

typedef struct {
    uint32_t index;                 /* position in the instance's table */
    VkPhysicalDevice physical;
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    char driver[VK_MAX_DRIVER_NAME_SIZE + VK_MAX_DRIVER_INFO_SIZE + 4];
    uint32_t vendor_id, device_id;
    VkPhysicalDeviceType type;
    uint32_t api_version;
    uint8_t uuid[VK_UUID_SIZE];

    uint32_t heap_count;
    df_vk_heap_info heaps[DF_VK_MAX_HEAPS];
    uint64_t device_local_bytes;    /* sum of device-local heaps */

    /* Features the kernels care about. */
    int fp16;                       /* shaderFloat16 arithmetic */
    int storage16;                  /* 16-bit values in storage buffers */
    int int8;                       /* shaderInt8 + 8-bit storage */
    int fp16_texel;                 /* R16G16B16A16_SFLOAT uniform texel buffers */
    uint32_t subgroup_size;
    uint32_t subgroup_min, subgroup_max; /* with subgroup size control, else == size */
    int subgroup_arith;             /* arithmetic subgroup ops in compute shaders */
    int subgroup_shuffle;
    int coopmat_khr;                /* VK_KHR_cooperative_matrix */
    int coopmat_nv;                 /* VK_NV_cooperative_matrix */

    /* Limits. */
    uint64_t max_storage_range;     /* maxStorageBufferRange, bytes */
    uint64_t max_texel_elements;    /* maxTexelBufferElements */
    uint64_t max_alloc_size;        /* maxMemoryAllocationSize */
    uint64_t storage_align;         /* minStorageBufferOffsetAlignment */
    uint64_t texel_align;           /* minTexelBufferOffsetAlignment */
    uint32_t max_shared_bytes;      /* maxComputeSharedMemorySize */
    uint32_t max_invocations;       /* maxComputeWorkGroupInvocations */
    uint32_t max_group_count[3];    /* maxComputeWorkGroupCount */
    uint32_t max_push_bytes;
    uint32_t compute_queue_family;  /* UINT32_MAX when none */
    uint32_t timestamp_bits;        /* valid bits on that queue; 0: no timestamps */
    float timestamp_period_ns;
} df_vk_device_info;

/*  Fills info for physical device pd. */
int df_vk_device_info_query(VkPhysicalDevice pd, uint32_t index, df_vk_device_info *info,
                            df_error_t *err);

/*  "NVIDIA", "AMD", "Intel", "Mesa", ... or "0x%04x". Returns buf. */
const char *df_vk_vendor_name(uint32_t vendor_id, char *buf, size_t cap);

/*  "discrete", "integrated", "virtual", "cpu", "other". */
const char *df_vk_device_type_name(VkPhysicalDeviceType type);

/*  Preference rank for automatic choice: discrete 0 < integrated 1 < virtual
 *  2 < cpu 3 < other 4. */
int df_vk_device_type_rank(VkPhysicalDeviceType type);

/*  Prints one device as an indented block (the --list-devices format). */
void df_vk_device_info_print(const df_vk_device_info *info, int selected, FILE *out);

#endif
