/*  bind.c - see bind.h. */
#include "bind.h"

/* Elements addressed inside one window must fit the kernels' 32-bit (and
 * texelFetch's signed 32-bit texel) indices. */
#define MAX_WINDOW_BYTES (1ull << 31)

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

int df_bind_rules_texel(df_vk_device_t *dev, df_dtype dtype, df_bind_rules *r, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    if (dtype != DF_F32 && dtype != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "texel reads support f32 and f16, not %s", df_dtype_name(dtype));
    if (dtype == DF_F16 && !df_vk_device_has_fp16_texel(dev))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s cannot read f16 texel buffers", info->name);
    r->es = (uint32_t)df_dtype_size(dtype);
    uint32_t texel = 4 * r->es;
    r->align = info->texel_align > texel ? info->texel_align : texel;
    r->granule = texel;
    r->limit = min_u64(df_vk_device_texel_limit(dev, texel), MAX_WINDOW_BYTES);
    r->format = dtype == DF_F16 ? VK_FORMAT_R16G16B16A16_SFLOAT : VK_FORMAT_R32G32B32A32_SFLOAT;
    if (r->align % r->es)
        return df_error_set(err, DF_E_UNSUPPORTED, "texel alignment %llu is not a whole number of elements",
                            (unsigned long long)r->align);
    return DF_OK;
}

int df_bind_rules_storage(df_vk_device_t *dev, df_dtype dtype, df_bind_rules *r, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    r->es = (uint32_t)df_dtype_size(dtype);
    if (!r->es)
        return df_error_set(err, DF_E_INVALID, "unknown dtype %d", (int)dtype);
    if ((dtype == DF_F16 || dtype == DF_BF16) && !df_vk_device_has_fp16_storage(dev))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s lacks 16-bit storage for %s tensors", info->name,
                            df_dtype_name(dtype));
    r->align = info->storage_align > r->es ? info->storage_align : r->es;
    /* Byte tensors are read as 32-bit words (four values to a word): their
     * windows start on a word. */
    if (r->align < 4)
        r->align = 4;
    r->granule = 4;
    r->limit = min_u64(df_vk_device_storage_limit(dev), MAX_WINDOW_BYTES);
    r->format = VK_FORMAT_UNDEFINED;
    if (r->align % r->es)
        return df_error_set(err, DF_E_UNSUPPORTED, "storage alignment %llu is not a whole number of elements",
                            (unsigned long long)r->align);
    return DF_OK;
}

uint64_t df_bind_max_elems(const df_bind_rules *r)
{
    /* Worst case: the first element sits just below an alignment boundary
     * and the range rounds up by almost a granule. */
    uint64_t slack = r->align + r->granule;
    return r->limit > slack ? (r->limit - slack) / r->es : 0;
}

int df_bind_fits(const df_bind_rules *r, uint64_t n) { return n <= df_bind_max_elems(r); }

df_vk_binding df_bind_span(df_tensor_ref ref, const df_bind_rules *r, uint64_t first, uint64_t n, int write,
                           uint32_t *elem_base)
{
    /* Alignment is relative to the VkBuffer: include the buffer's own offset
     * (itself a multiple of every alignment). */
    uint64_t start = ref.offset + first * r->es;
    uint64_t abs_start = ref.buf->offset + start;
    uint64_t bind = abs_start - abs_start % r->align - ref.buf->offset;
    uint64_t lead = start - bind;
    uint64_t range = (lead + n * r->es + r->granule - 1) / r->granule * r->granule;
    *elem_base = (uint32_t)(lead / r->es);
    df_vk_binding b = {.buf = ref.buf, .offset = bind, .range = range, .format = r->format, .write = write};
    return b;
}

int df_bind_check(const char *op, const char *name, df_tensor_ref ref, uint64_t n, uint32_t es, df_error_t *err)
{
    if (!ref.buf)
        return df_error_set(err, DF_E_INVALID, "%s: %s has no buffer", op, name);
    if (ref.offset % es)
        return df_error_set(err, DF_E_INVALID, "%s: %s offset %llu is not a multiple of its element size %u", op, name,
                            (unsigned long long)ref.offset, es);
    uint64_t need = ref.offset + n * es;
    if (n == 0 || need > ref.buf->size)
        return df_error_set(err, n ? DF_E_RANGE : DF_E_INVALID, "%s: %s needs bytes [%llu, %llu) but its buffer has %llu",
                            op, name, (unsigned long long)ref.offset, (unsigned long long)need,
                            (unsigned long long)ref.buf->size);
    return DF_OK;
}

int df_linear_grid(df_vk_device_t *dev, uint64_t groups, uint32_t *gx, uint32_t *gy, df_error_t *err)
{
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    uint64_t x = groups < info->max_group_count[0] ? groups : info->max_group_count[0];
    uint64_t y = x ? (groups + x - 1) / x : 0;
    if (y > info->max_group_count[1])
        return df_error_set(err, DF_E_RANGE, "%llu workgroups exceed the device's %u x %u grid",
                            (unsigned long long)groups, info->max_group_count[0], info->max_group_count[1]);
    *gx = (uint32_t)x;
    *gy = (uint32_t)y;
    return DF_OK;
}

int df_dispatch_1d(df_vk_batch_t *batch, const df_vk_kernel *kernel, const uint32_t *spec, uint32_t nspec,
                   const df_vk_binding *binds, uint32_t nbinds, const void *push, uint64_t invocations, uint32_t wg,
                   const char *label, df_error_t *err)
{
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_vk_pipeline_t *p = df_vk_pipeline_get(dev, kernel, spec, nspec, err);
    if (!p)
        return err ? err->code : DF_E_VULKAN;
    uint32_t gx, gy;
    int rc = df_linear_grid(dev, (invocations + wg - 1) / wg, &gx, &gy, err);
    if (rc)
        return df_error_prefix(err, "%s", label);
    return df_vk_batch_dispatch(batch, p, binds, nbinds, push, gx, gy, 1, label, err);
}
