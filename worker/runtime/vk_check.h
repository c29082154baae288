/*  vk_check.h - turning VkResult into df_error_t.
 *
 *  DF_VK_TRY(err, call) evaluates a Vulkan call once; on failure it records
 *  "<call name>: <VkResult name>" in err and returns the matching df_status
 *  from the enclosing function. Out-of-memory results map to
 *  DF_E_DEVICE_MEMORY so callers can tell "too big" from "broken".
 */
#ifndef DF_VK_CHECK_H
#define DF_VK_CHECK_H

#include <vulkan/vulkan.h>

#include "error.h"

/*  "VK_ERROR_DEVICE_LOST", ...; "VK_RESULT(<n>)" for values it does not know. */
const char *df_vk_result_name(VkResult r);

/*  Maps r to a df_status (DF_OK for VK_SUCCESS and other non-negative results). */
int df_vk_status(VkResult r);

/*  Records "<what>: <result name>" in err and returns df_vk_status(r). */
int df_vk_fail(df_error_t *err, VkResult r, const char *what);

#define DF_VK_TRY(err, call)                                                   \
    do {                                                                       \
        VkResult df_vk_try_r_ = (call);                                        \
        if (df_vk_try_r_ < 0)                                                  \
            return df_vk_fail((err), df_vk_try_r_, df_vk_call_name_(#call));   \
    } while (0)

/*  Trims "vkFoo(a, b)" to "vkFoo" for messages. Returns a pointer into a
 *  per-call static-free buffer: the name is copied into err by df_vk_fail. */
const char *df_vk_call_name_(const char *expr);

#endif
