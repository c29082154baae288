/*  bind.h - binding a window of a tensor to a kernel.
 *
 *  A kernel sees an operand through one descriptor binding, which Vulkan
 *  limits (maxStorageBufferRange: 128 MiB on lavapipe; maxTexelBufferElements
 *  for texel views) and aligns (min*OffsetAlignment). Every op binds the
 *  window of elements it touches: the binding starts at the aligned offset at
 *  or below the first element, and the kernel gets the first element's index
 *  within the window in its push constants. Ops split their work until each
 *  window fits df_bind_max_elems().
 *
 *  Inputs are read through uniform texel buffers (rgba32f or rgba16f views:
 *  vectorised fetches on CPU drivers, the texture path on GPUs, free f16
 *  conversion); outputs are written through storage buffers.
 */
#ifndef DF_OPS_BIND_H
#define DF_OPS_BIND_H

#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"
#include "vk_device.h"
#include "vk_pipeline.h"

typedef struct {
    uint32_t es;      /* bytes per element */
    uint64_t align;   /* binding offset alignment, a multiple of es */
    uint32_t granule; /* binding range granularity (a texel, or 4 bytes) */
    uint64_t limit;   /* largest binding range, bytes */
    VkFormat format;  /* texel bindings; VK_FORMAT_UNDEFINED for storage */
} df_bind_rules;

/*  Rules for reading t's dtype through a texel view (f32 or f16), or for a
 *  storage binding (f32, f16, i32, u8...). DF_E_UNSUPPORTED when the device
 *  cannot. */
int df_bind_rules_texel(df_vk_device_t *dev, df_dtype dtype, df_bind_rules *r, df_error_t *err);
int df_bind_rules_storage(df_vk_device_t *dev, df_dtype dtype, df_bind_rules *r, df_error_t *err);

/*  Largest span of elements that certainly fits one binding. */
uint64_t df_bind_max_elems(const df_bind_rules *r);

/*  Whether a span of n elements fits one binding wherever it starts. */
int df_bind_fits(const df_bind_rules *r, uint64_t n);

/*  The binding for elements [first, first + n) of the tensor at ref;
 *  *elem_base gets first's index inside the bound window. */
df_vk_binding df_bind_span(df_tensor_ref ref, const df_bind_rules *r, uint64_t first, uint64_t n, int write,
                           uint32_t *elem_base);

/*  Checks that n elements of es bytes at ref lie inside its buffer and that
 *  the offset is a multiple of es; the message names the operand. */
int df_bind_check(const char *op, const char *name, df_tensor_ref ref, uint64_t n, uint32_t es, df_error_t *err);

/*  Workgroup counts (x, y) covering `groups` workgroups of a 1-D kernel
 *  within the device's per-dimension limits; kernels recover the linear
 *  index as gid.x + gid.y * num_groups.x * local_size. DF_E_RANGE when even
 *  that is too many. */
int df_linear_grid(df_vk_device_t *dev, uint64_t groups, uint32_t *gx, uint32_t *gy, df_error_t *err);

/*  Gets the pipeline for kernel with spec constants and records a 1-D
 *  dispatch of `invocations` invocations (local size `wg` in x), labelled
 *  label. */
int df_dispatch_1d(df_vk_batch_t *batch, const df_vk_kernel *kernel, const uint32_t *spec, uint32_t nspec,
                   const df_vk_binding *binds, uint32_t nbinds, const void *push, uint64_t invocations, uint32_t wg,
                   const char *label, df_error_t *err);

#endif
