/*  test_support.h - helpers for test binaries that load Vulkan drivers. */
#ifndef DF_TEST_SUPPORT_H
#define DF_TEST_SUPPORT_H

/*  Marks every shared library loaded so far as never-unloaded.
 *
 *  The Vulkan loader unloads the driver when the instance is destroyed, so
 *  allocations the driver keeps for the process's lifetime show up in
 *  LeakSanitizer's report as "<unknown module>", which no suppression can
 *  name. Pinned, they stay attributable to libvulkan_lvp (suppressed in
 *  lsan.supp) while leaks in our own code are still reported. Call it after
 *  the instance exists. */
void test_pin_loaded_libraries(void);

#include "vk_instance.h"

/*  The Vulkan test binaries' common start: quiet logging, an instance with
 *  validation when installed, the default device's index, and the driver
 *  pinned (above). Prints why and returns NULL when there is no usable
 *  Vulkan device. */
df_vk_instance_t *test_open_instance(uint32_t *index);

#endif
