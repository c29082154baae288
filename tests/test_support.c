/*  test_support.c - see test_support.h. */
#define _GNU_SOURCE
#include "test_support.h"

#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

static int pin_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size, (void)data;
    if (info->dlpi_name && info->dlpi_name[0]) {
        /* NOLOAD: only already-loaded objects; NODELETE: never unmap them. */
        void *h = dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
        (void)h; /* the extra reference is the point; it is never closed */
    }
    return 0;
}

void test_pin_loaded_libraries(void) { dl_iterate_phdr(pin_one, NULL); }

df_vk_instance_t *test_open_instance(uint32_t *index)
{
    df_log_set_level(DF_LOG_ERROR);
    df_error_t err;
    df_error_clear(&err);
    df_vk_instance_opts opts = {.validation = DF_VK_VALIDATION_IF_AVAILABLE};
    df_vk_instance_t *inst = df_vk_instance_new(&opts, &err);
    if (!inst || df_vk_instance_choose(inst, -1, index, &err)) {
        fprintf(stderr, "no usable Vulkan device: %s\n", err.msg);
        df_vk_instance_destroy(&inst);
        return NULL;
    }
    test_pin_loaded_libraries();
    fprintf(stderr, "device: %s, validation %s\n", df_vk_instance_device(inst, *index)->name,
            df_vk_instance_validation_enabled(inst) ? "on" : "off (layer not installed)");
    return inst;
}
