/*  vk_instance.c - see vk_instance.h. */
#include "vk_instance.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk_check.h"

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

struct _df_vk_instance_t {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    int validation;
    atomic_uint validation_errors;
    atomic_uint validation_warnings;
    uint32_t device_count;
    df_vk_device_info *devices;
};

static VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types;
    df_vk_instance_t *self = user;
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        atomic_fetch_add(&self->validation_errors, 1);
        df_errorf("vulkan validation: %s", data->pMessage);
    } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        atomic_fetch_add(&self->validation_warnings, 1);
        df_warn("vulkan validation: %s", data->pMessage);
    }
    return VK_FALSE;
}

static int layer_available(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkLayerProperties *props = calloc(n, sizeof *props);
    if (!props)
        return 0;
    int found = 0;
    if (vkEnumerateInstanceLayerProperties(&n, props) >= 0)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(props[i].layerName, name) == 0;
    free(props);
    return found;
}

static int create_instance(df_vk_instance_t *self, const df_vk_instance_opts *opts,
                           df_error_t *err)
{
    const char *layers[1];
    const char *exts[2];
    uint32_t nlayers = 0, nexts = 0;

    if (opts->validation != DF_VK_VALIDATION_OFF) {
        if (layer_available(VALIDATION_LAYER)) {
            layers[nlayers++] = VALIDATION_LAYER;
            exts[nexts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
            self->validation = 1;
        } else if (opts->validation == DF_VK_VALIDATION_REQUIRED) {
            return df_error_set(err, DF_E_UNSUPPORTED,
                                "vulkan: validation requested but %s is not installed "
                                "(Debian package vulkan-validationlayers)",
                                VALIDATION_LAYER);
        } else {
            df_debug("vulkan: %s not installed; running without validation", VALIDATION_LAYER);
        }
    }

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = opts->app_name ? opts->app_name : "dreamfleet",
        .pEngineName = "dreamfleet",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_debug_message,
        .pUserData = self,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        /* Chained so instance creation itself is validated too. */
        .pNext = self->validation ? &dbg : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = nlayers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = nexts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &self->instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return df_error_set(err, DF_E_UNSUPPORTED,
                            "vkCreateInstance: no Vulkan 1.2 driver found (install your GPU's "
                            "Vulkan driver, or mesa-vulkan-drivers for the CPU driver lavapipe)");
    if (r < 0)
        return df_vk_fail(err, r, "vkCreateInstance");

    if (self->validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(self->instance, "vkCreateDebugUtilsMessengerEXT");
        if (!create)
            return df_error_set(err, DF_E_VULKAN,
                                "vkGetInstanceProcAddr: vkCreateDebugUtilsMessengerEXT missing");
        DF_VK_TRY(err, create(self->instance, &dbg, NULL, &self->messenger));
    }
    return DF_OK;
}

static int enumerate_devices(df_vk_instance_t *self, df_error_t *err)
{
    uint32_t n = 0;
    DF_VK_TRY(err, vkEnumeratePhysicalDevices(self->instance, &n, NULL));
    if (n == 0)
        return df_error_set(err, DF_E_UNSUPPORTED,
                            "vkEnumeratePhysicalDevices: no Vulkan device (install a GPU driver, "
                            "or mesa-vulkan-drivers for lavapipe)");
    VkPhysicalDevice *pds = calloc(n, sizeof *pds);
    self->devices = calloc(n, sizeof *self->devices);
    if (!pds || !self->devices) {
        free(pds);
        return df_error_set(err, DF_E_NOMEM, "vulkan: out of host memory listing devices");
    }
    VkResult r = vkEnumeratePhysicalDevices(self->instance, &n, pds);
    if (r < 0) {
        free(pds);
        return df_vk_fail(err, r, "vkEnumeratePhysicalDevices");
    }
    for (uint32_t i = 0; i < n; i++) {
        int rc = df_vk_device_info_query(pds[i], i, &self->devices[i], err);
        if (rc) {
            free(pds);
            return rc;
        }
    }
    self->device_count = n;
    free(pds);
    return DF_OK;
}

df_vk_instance_t *df_vk_instance_new(const df_vk_instance_opts *opts, df_error_t *err)
{
    df_vk_instance_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    df_vk_instance_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "vulkan: out of host memory");
        return NULL;
    }
    if (create_instance(self, opts, err) || enumerate_devices(self, err)) {
        df_vk_instance_destroy(&self);
        return NULL;
    }
    return self;
}

void df_vk_instance_destroy(df_vk_instance_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_vk_instance_t *self = *self_p;
    if (self->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(self->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy)
            destroy(self->instance, self->messenger, NULL);
    }
    if (self->instance)
        vkDestroyInstance(self->instance, NULL);
    free(self->devices);
    free(self);
    *self_p = NULL;
}

VkInstance df_vk_instance_handle(const df_vk_instance_t *self) { return self->instance; }

uint32_t df_vk_instance_device_count(const df_vk_instance_t *self) { return self->device_count; }

const df_vk_device_info *df_vk_instance_device(const df_vk_instance_t *self, uint32_t index)
{
    return index < self->device_count ? &self->devices[index] : NULL;
}

int df_vk_instance_default_device(const df_vk_instance_t *self)
{
    int best = -1, best_rank = 1 << 30;
    for (uint32_t i = 0; i < self->device_count; i++) {
        if (self->devices[i].compute_queue_family == UINT32_MAX)
            continue;
        int rank = df_vk_device_type_rank(self->devices[i].type);
        if (rank < best_rank) {
            best = (int)i;
            best_rank = rank;
        }
    }
    return best;
}

int df_vk_instance_choose(const df_vk_instance_t *self, int requested, uint32_t *index,
                          df_error_t *err)
{
    if (requested < 0) {
        int d = df_vk_instance_default_device(self);
        if (d < 0)
            return df_error_set(err, DF_E_NOT_FOUND, "vulkan: no device with a compute queue");
        *index = (uint32_t)d;
        return DF_OK;
    }
    if ((uint32_t)requested >= self->device_count)
        return df_error_set(err, DF_E_NOT_FOUND,
                            "vulkan: --device %d does not exist (this machine has %u device%s, "
                            "numbered from 0; see --list-devices)",
                            requested, self->device_count, self->device_count == 1 ? "" : "s");
    if (self->devices[requested].compute_queue_family == UINT32_MAX)
        return df_error_set(err, DF_E_UNSUPPORTED, "vulkan: device %d (%s) has no compute queue",
                            requested, self->devices[requested].name);
    *index = (uint32_t)requested;
    return DF_OK;
}

int df_vk_instance_validation_enabled(const df_vk_instance_t *self) { return self->validation; }

uint32_t df_vk_instance_validation_errors(const df_vk_instance_t *self)
{
    return atomic_load(&((df_vk_instance_t *)self)->validation_errors);
}

uint32_t df_vk_instance_validation_warnings(const df_vk_instance_t *self)
{
    return atomic_load(&((df_vk_instance_t *)self)->validation_warnings);
}
