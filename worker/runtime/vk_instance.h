/*  vk_instance.h - the Vulkan instance and the table of devices it sees.
 *
 *  One per process (or per test). With validation requested and the Khronos
 *  layer installed, every message the layer emits is logged and counted so a
 *  test can fail on the first validation error instead of scrolling past it.
 */
#ifndef DF_VK_INSTANCE_H
#define DF_VK_INSTANCE_H

#include <stdint.h>

#include "error.h"
#include "vk_device_info.h"

typedef enum {
    DF_VK_VALIDATION_OFF = 0,
    DF_VK_VALIDATION_IF_AVAILABLE = 1, /* on when VK_LAYER_KHRONOS_validation is installed */
    DF_VK_VALIDATION_REQUIRED = 2,     /* error when it is not */
} df_vk_validation;

typedef struct {
    df_vk_validation validation;
    const char *app_name; /* NULL: "dreamfleet" */
} df_vk_instance_opts;

typedef struct _df_vk_instance_t df_vk_instance_t;

/*  Creates the instance and queries every physical device. A machine with no
 *  Vulkan driver at all gives DF_E_UNSUPPORTED with a hint to install one. */
df_vk_instance_t *df_vk_instance_new(const df_vk_instance_opts *opts, df_error_t *err);
void df_vk_instance_destroy(df_vk_instance_t **self_p);

VkInstance df_vk_instance_handle(const df_vk_instance_t *self);

uint32_t df_vk_instance_device_count(const df_vk_instance_t *self);
const df_vk_device_info *df_vk_instance_device(const df_vk_instance_t *self, uint32_t index);

/*  Index of the preferred device (discrete > integrated > virtual > CPU, the
 *  first of its kind in enumeration order), or -1 when there is none. */
int df_vk_instance_default_device(const df_vk_instance_t *self);

/*  Resolves a --device argument: requested < 0 picks the default; an index out
 *  of range is DF_E_NOT_FOUND naming the count. */
int df_vk_instance_choose(const df_vk_instance_t *self, int requested, uint32_t *index,
                          df_error_t *err);

int df_vk_instance_validation_enabled(const df_vk_instance_t *self);
/*  Validation errors (and warnings) reported since creation. */
uint32_t df_vk_instance_validation_errors(const df_vk_instance_t *self);
uint32_t df_vk_instance_validation_warnings(const df_vk_instance_t *self);

#endif
