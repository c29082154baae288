/*  copy2d.c - see copy2d.h. */
#include "copy2d.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t rows, width, ld_x, ld_y, off_x, off_y;
} copy_push;

static const df_vk_kernel k_copy[2] = {
    {"copy2d_y32", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(copy_push)},
    {"copy2d_y16", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(copy_push)},
};

static uint64_t extent(uint64_t rows, uint64_t ld, uint64_t width) { return (rows - 1) * ld + width; }

int df_copy2d(df_vk_batch_t *batch, const df_copy2d_desc *d, df_tensor x, df_tensor y, df_error_t *err)
{
    if (!d->rows || !d->width || d->ld_x < d->width || d->ld_y < d->width)
        return df_error_set(err, DF_E_INVALID, "copy2d: %u rows of %u with ld_x %u, ld_y %u (need ld >= width >= 1)",
                            d->rows, d->width, d->ld_x, d->ld_y);
    if ((uint64_t)d->rows * d->width > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "copy2d: more than 2^32 elements");
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rx, ry;
    int rc;
    if ((rc = df_bind_rules_texel(dev, x.dtype, &rx, err)) || (rc = df_bind_rules_storage(dev, y.dtype, &ry, err)))
        return df_error_prefix(err, "copy2d");
    if ((rc = df_bind_check("copy2d", "x", x.ref, extent(d->rows, d->ld_x, d->width), rx.es, err)) ||
        (rc = df_bind_check("copy2d", "y", y.ref, extent(d->rows, d->ld_y, d->width), ry.es, err)))
        return rc;
    uint64_t per = UINT32_MAX;
    if (df_bind_max_elems(&rx) / d->ld_x < per)
        per = df_bind_max_elems(&rx) / d->ld_x;
    if (df_bind_max_elems(&ry) / d->ld_y < per)
        per = df_bind_max_elems(&ry) / d->ld_y;
    if (!per)
        return df_error_set(err, DF_E_RANGE, "copy2d: one row does not fit a binding");
    for (uint64_t r0 = 0; r0 < d->rows; r0 += per) {
        uint64_t n = d->rows - r0 < per ? d->rows - r0 : per;
        copy_push pc = {.rows = (uint32_t)n, .width = d->width, .ld_x = d->ld_x, .ld_y = d->ld_y};
        df_vk_binding b[2];
        b[0] = df_bind_span(x.ref, &rx, r0 * d->ld_x, extent(n, d->ld_x, d->width), 0, &pc.off_x);
        b[1] = df_bind_span(y.ref, &ry, r0 * d->ld_y, extent(n, d->ld_y, d->width), 1, &pc.off_y);
        char label[48];
        snprintf(label, sizeof label, "copy2d %llux%u", (unsigned long long)n, d->width);
        if ((rc = df_dispatch_1d(batch, &k_copy[y.dtype == DF_F16], NULL, 0, b, 2, &pc, n * d->width, 64, label, err)))
            return rc;
    }
    return DF_OK;
}
