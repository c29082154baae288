/*  test_support.c - see test_support.h. */
#define _GNU_SOURCE
#include "test_support.h"

#include <dlfcn.h>
#include <link.h>
#include <stddef.h>

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
