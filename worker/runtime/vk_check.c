/*  vk_check.c - see vk_check.h. */
#include "vk_check.h"

#include <stdio.h>
#include <string.h>

const char *df_vk_result_name(VkResult r)
{
    switch (r) {
#define CASE(x) case x: return #x;
    CASE(VK_SUCCESS)
    CASE(VK_NOT_READY)
    CASE(VK_TIMEOUT)
    CASE(VK_EVENT_SET)
    CASE(VK_EVENT_RESET)
    CASE(VK_INCOMPLETE)
    CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    CASE(VK_ERROR_INITIALIZATION_FAILED)
    CASE(VK_ERROR_DEVICE_LOST)
    CASE(VK_ERROR_MEMORY_MAP_FAILED)
    CASE(VK_ERROR_LAYER_NOT_PRESENT)
    CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    CASE(VK_ERROR_TOO_MANY_OBJECTS)
    CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    CASE(VK_ERROR_FRAGMENTED_POOL)
    CASE(VK_ERROR_UNKNOWN)
    CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    CASE(VK_ERROR_FRAGMENTATION)
    CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    CASE(VK_PIPELINE_COMPILE_REQUIRED)
#undef CASE
    default: {
        /* Not thread-safe for unknown codes only; known codes never get here. */
        static _Thread_local char buf[32];
        snprintf(buf, sizeof buf, "VK_RESULT(%d)", (int)r);
        return buf;
    }
    }
}

int df_vk_status(VkResult r)
{
    if (r >= 0)
        return DF_OK;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return DF_E_DEVICE_MEMORY;
    if (r == VK_ERROR_EXTENSION_NOT_PRESENT || r == VK_ERROR_FEATURE_NOT_PRESENT ||
        r == VK_ERROR_LAYER_NOT_PRESENT || r == VK_ERROR_FORMAT_NOT_SUPPORTED ||
        r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return DF_E_UNSUPPORTED;
    return DF_E_VULKAN;
}

int df_vk_fail(df_error_t *err, VkResult r, const char *what)
{
    return df_error_set(err, df_vk_status(r), "%s: %s", what, df_vk_result_name(r));
}

const char *df_vk_call_name_(const char *expr)
{
    static _Thread_local char name[96];
    size_t n = strcspn(expr, "( ");
    if (n >= sizeof name)
        n = sizeof name - 1;
    memcpy(name, expr, n);
    name[n] = '\0';
    return name;
}
