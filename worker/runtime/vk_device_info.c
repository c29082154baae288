/*  vk_device_info.c - see vk_device_info.h. */
#include "vk_device_info.h"

#include <stdlib.h>
#include <string.h>

#include "vk_check.h"

const char *df_vk_vendor_name(uint32_t vendor_id, char *buf, size_t cap)
{
    switch (vendor_id) {
    case 0x10de: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x10005: return "Mesa";
    case 0x106b: return "Apple";
    case 0x13b5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "ImgTec";
    default: snprintf(buf, cap, "0x%04x", vendor_id); return buf;
    }
}

const char *df_vk_device_type_name(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

int df_vk_device_type_rank(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static int has_extension(const VkExtensionProperties *exts, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(exts[i].extensionName, name) == 0)
            return 1;
    return 0;
}

int df_vk_device_info_query(VkPhysicalDevice pd, uint32_t index, df_vk_device_info *info,
                            df_error_t *err)
{
    memset(info, 0, sizeof *info);
    info->index = index;
    info->physical = pd;

    VkPhysicalDeviceDriverProperties driver = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceSubgroupSizeControlProperties sgctl = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES,
        .pNext = &driver};
    VkPhysicalDeviceSubgroupProperties subgroup = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, .pNext = &sgctl};
    VkPhysicalDeviceMaintenance3Properties maint3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &subgroup};
    VkPhysicalDeviceProperties2 props = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                         .pNext = &maint3};
    vkGetPhysicalDeviceProperties2(pd, &props);
    const VkPhysicalDeviceLimits *lim = &props.properties.limits;

    snprintf(info->name, sizeof info->name, "%s", props.properties.deviceName);
    snprintf(info->driver, sizeof info->driver, "%s %s", driver.driverName, driver.driverInfo);
    info->vendor_id = props.properties.vendorID;
    info->device_id = props.properties.deviceID;
    info->type = props.properties.deviceType;
    info->api_version = props.properties.apiVersion;
    memcpy(info->uuid, props.properties.pipelineCacheUUID, VK_UUID_SIZE);

    info->max_storage_range = lim->maxStorageBufferRange;
    info->max_texel_elements = lim->maxTexelBufferElements;
    info->max_alloc_size = maint3.maxMemoryAllocationSize;
    info->storage_align = lim->minStorageBufferOffsetAlignment;
    info->texel_align = lim->minTexelBufferOffsetAlignment;
    info->max_shared_bytes = lim->maxComputeSharedMemorySize;
    info->max_invocations = lim->maxComputeWorkGroupInvocations;
    memcpy(info->max_group_count, lim->maxComputeWorkGroupCount, sizeof info->max_group_count);
    info->max_push_bytes = lim->maxPushConstantsSize;
    info->timestamp_period_ns = lim->timestampPeriod;

    info->subgroup_size = subgroup.subgroupSize;
    info->subgroup_min = info->subgroup_max = subgroup.subgroupSize;
    if (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) {
        info->subgroup_arith = !!(subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
        info->subgroup_shuffle = !!(subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
    }

    VkPhysicalDeviceSubgroupSizeControlFeatures sgctl_f = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &sgctl_f};
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f11};
    VkPhysicalDeviceFeatures2 feats = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                       .pNext = &f12};
    vkGetPhysicalDeviceFeatures2(pd, &feats);
    info->fp16 = f12.shaderFloat16;
    info->storage16 = f11.storageBuffer16BitAccess;
    info->int8 = f12.shaderInt8 && f12.storageBuffer8BitAccess;
    if (sgctl_f.subgroupSizeControl) {
        info->subgroup_min = sgctl.minSubgroupSize;
        info->subgroup_max = sgctl.maxSubgroupSize;
    }

    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(pd, VK_FORMAT_R16G16B16A16_SFLOAT, &fp);
    info->fp16_texel = !!(fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT);

    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    info->heap_count = mem.memoryHeapCount < DF_VK_MAX_HEAPS ? mem.memoryHeapCount : DF_VK_MAX_HEAPS;
    for (uint32_t i = 0; i < info->heap_count; i++) {
        info->heaps[i].size = mem.memoryHeaps[i].size;
        info->heaps[i].device_local = !!(mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT);
        if (info->heaps[i].device_local)
            info->device_local_bytes += mem.memoryHeaps[i].size;
    }

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32)
        nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    info->compute_queue_family = UINT32_MAX;
    /* Prefer a compute queue without graphics: on discrete GPUs it is the
     * async-compute engine, free of the display's work. */
    for (int pass = 0; pass < 2 && info->compute_queue_family == UINT32_MAX; pass++)
        for (uint32_t i = 0; i < nq; i++) {
            int compute = !!(qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT);
            int graphics = !!(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT);
            if (compute && (pass == 1 || !graphics)) {
                info->compute_queue_family = i;
                info->timestamp_bits = qf[i].timestampValidBits;
                break;
            }
        }

    uint32_t next = 0;
    VkResult r = vkEnumerateDeviceExtensionProperties(pd, NULL, &next, NULL);
    if (r < 0)
        return df_vk_fail(err, r, "vkEnumerateDeviceExtensionProperties");
    VkExtensionProperties *exts = calloc(next ? next : 1, sizeof *exts);
    if (!exts)
        return df_error_set(err, DF_E_NOMEM, "device info: out of host memory");
    r = vkEnumerateDeviceExtensionProperties(pd, NULL, &next, exts);
    if (r < 0) {
        free(exts);
        return df_vk_fail(err, r, "vkEnumerateDeviceExtensionProperties");
    }
    info->coopmat_khr = has_extension(exts, next, "VK_KHR_cooperative_matrix");
    info->coopmat_nv = has_extension(exts, next, "VK_NV_cooperative_matrix");
    free(exts);
    return DF_OK;
}

static void print_bytes(FILE *out, uint64_t b)
{
    if (b >= (1ull << 30))
        fprintf(out, "%.1f GiB", b / 1073741824.0);
    else
        fprintf(out, "%.0f MiB", b / 1048576.0);
}

void df_vk_device_info_print(const df_vk_device_info *d, int selected, FILE *out)
{
    char vbuf[16];
    fprintf(out, "[%u]%s %s\n", d->index, selected ? " *" : "", d->name);
    fprintf(out, "    vendor      %s (0x%04x), device 0x%04x, %s\n",
            df_vk_vendor_name(d->vendor_id, vbuf, sizeof vbuf), d->vendor_id, d->device_id,
            df_vk_device_type_name(d->type));
    fprintf(out, "    driver      %s, Vulkan %u.%u.%u\n", d->driver, VK_API_VERSION_MAJOR(d->api_version),
            VK_API_VERSION_MINOR(d->api_version), VK_API_VERSION_PATCH(d->api_version));
    fprintf(out, "    memory     ");
    for (uint32_t i = 0; i < d->heap_count; i++) {
        fprintf(out, " heap%u ", i);
        print_bytes(out, d->heaps[i].size);
        fprintf(out, "%s%s", d->heaps[i].device_local ? " device-local" : " host",
                i + 1 < d->heap_count ? "," : "");
    }
    fprintf(out, "\n");
    fprintf(out, "    features    fp16 %s, 16-bit storage %s, int8 %s, fp16 texel %s\n",
            d->fp16 ? "yes" : "no", d->storage16 ? "yes" : "no", d->int8 ? "yes" : "no",
            d->fp16_texel ? "yes" : "no");
    fprintf(out, "    subgroups   size %u (%u..%u), arithmetic %s, shuffle %s\n", d->subgroup_size,
            d->subgroup_min, d->subgroup_max, d->subgroup_arith ? "yes" : "no",
            d->subgroup_shuffle ? "yes" : "no");
    fprintf(out, "    coop-matrix %s\n",
            d->coopmat_khr ? "VK_KHR_cooperative_matrix"
            : d->coopmat_nv ? "VK_NV_cooperative_matrix"
                            : "no");
    fprintf(out, "    limits      storage range ");
    print_bytes(out, d->max_storage_range);
    fprintf(out, ", texel elements %llu, allocation ", (unsigned long long)d->max_texel_elements);
    print_bytes(out, d->max_alloc_size);
    fprintf(out, ", shared %u KiB, invocations %u\n", d->max_shared_bytes / 1024, d->max_invocations);
    fprintf(out, "    timestamps  %s\n", d->timestamp_bits ? "yes" : "no");
}
