/*  upsample.c - see upsample.h. */
#include "upsample.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t planes, h, w, off_x, off_o;
} up_push;

static const df_vk_kernel k_up[2] = {
    {"upsample_y32", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(up_push)},
    {"upsample_y16", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(up_push)},
};

static int run(df_vk_batch_t *batch, int bwd, uint32_t planes, uint32_t h, uint32_t w, df_tensor in, df_tensor out,
               df_error_t *err)
{
    const char *name = bwd ? "upsample2x_bwd" : "upsample2x";
    uint64_t small = (uint64_t)h * w;
    if (!planes || !small || planes * small * 4 > UINT32_MAX)
        return df_error_set(err, DF_E_INVALID, "%s: %u planes of %ux%u (nonzero, below 2^32 elements upsampled)", name,
                            planes, h, w);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules ri, ro;
    int rc;
    if ((rc = df_bind_rules_texel(dev, in.dtype, &ri, err)) || (rc = df_bind_rules_storage(dev, out.dtype, &ro, err)))
        return df_error_prefix(err, "%s", name);
    uint64_t in_per = bwd ? 4 * small : small, out_per = bwd ? small : 4 * small;
    if ((rc = df_bind_check(name, bwd ? "dy" : "x", in.ref, planes * in_per, ri.es, err)) ||
        (rc = df_bind_check(name, bwd ? "dx" : "y", out.ref, planes * out_per, ro.es, err)))
        return rc;
    uint64_t per = df_bind_max_elems(&ri) / in_per;
    if (df_bind_max_elems(&ro) / out_per < per)
        per = df_bind_max_elems(&ro) / out_per;
    if (!per)
        return df_error_set(err, DF_E_RANGE, "%s: one plane does not fit a binding", name);
    for (uint64_t p0 = 0; p0 < planes; p0 += per) {
        uint64_t n = planes - p0 < per ? planes - p0 : per;
        up_push pc = {.planes = (uint32_t)n, .h = h, .w = w};
        df_vk_binding b[2];
        b[0] = df_bind_span(in.ref, &ri, p0 * in_per, n * in_per, 0, &pc.off_x);
        b[1] = df_bind_span(out.ref, &ro, p0 * out_per, n * out_per, 1, &pc.off_o);
        uint32_t spec = (uint32_t)bwd;
        char label[48];
        snprintf(label, sizeof label, "%s %llux%ux%u", name, (unsigned long long)n, h, w);
        if ((rc = df_dispatch_1d(batch, &k_up[out.dtype == DF_F16], &spec, 1, b, 2, &pc, n * out_per, 64, label, err)))
            return rc;
    }
    return DF_OK;
}

int df_upsample2x_forward(df_vk_batch_t *batch, uint32_t planes, uint32_t h, uint32_t w, df_tensor x, df_tensor y,
                          df_error_t *err)
{
    return run(batch, 0, planes, h, w, x, y, err);
}

int df_upsample2x_backward(df_vk_batch_t *batch, uint32_t planes, uint32_t h, uint32_t w, df_tensor dy, df_tensor dx,
                           df_error_t *err)
{
    return run(batch, 1, planes, h, w, dy, dx, err);
}
