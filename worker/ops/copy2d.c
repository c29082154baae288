/*  copy2d.c - see copy2d.h. */
#include "copy2d.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t rows, width, ld_x, ld_y, off_x, off_y;
    uint32_t transpose;
} copy_push;

static const df_vk_kernel k_copy[2] = {
    {"copy2d_y32", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(copy_push)},
    {"copy2d_y16", 2, {DF_VK_BIND_TEXEL, DF_VK_BIND_STORAGE}, sizeof(copy_push)},
};

static uint64_t extent(uint64_t rows, uint64_t ld, uint64_t width) { return (rows - 1) * ld + width; }

/* Where the block of rows [r0, r0 + n) and columns [j0, j0 + m) of x lands in y. */
static uint64_t y_first(const df_copy2d_desc *d, uint64_t r0, uint64_t j0)
{
    return d->transpose ? j0 * d->ld_y + r0 : r0 * d->ld_y + j0;
}
static uint64_t y_extent(const df_copy2d_desc *d, uint64_t n, uint64_t m)
{
    return d->transpose ? extent(m, d->ld_y, n) : extent(n, d->ld_y, m);
}

int df_copy2d(df_vk_batch_t *batch, const df_copy2d_desc *d, df_tensor x, df_tensor y, df_error_t *err)
{
    if (!d->rows || !d->width || d->ld_x < d->width || d->ld_y < (d->transpose ? d->rows : d->width))
        return df_error_set(err, DF_E_INVALID,
                            "copy2d: %u rows of %u with ld_x %u, ld_y %u (need ld_x >= width >= 1 and ld_y >= %s)",
                            d->rows, d->width, d->ld_x, d->ld_y, d->transpose ? "rows" : "width");
    if ((uint64_t)d->rows * d->width > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "copy2d: more than 2^32 elements");
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rx, ry;
    int rc;
    if ((rc = df_bind_rules_texel(dev, x.dtype, &rx, err)) || (rc = df_bind_rules_storage(dev, y.dtype, &ry, err)))
        return df_error_prefix(err, "copy2d");
    if ((rc = df_bind_check("copy2d", "x", x.ref, extent(d->rows, d->ld_x, d->width), rx.es, err)) ||
        (rc = df_bind_check("copy2d", "y", y.ref, y_extent(d, d->rows, d->width), ry.es, err)))
        return rc;
    /* Blocks of n rows x m columns whose windows fit: fewer rows first,
     * then (one row wider than a binding, or a transposed destination whose
     * block runs through many rows of y) fewer columns. */
    uint64_t n = d->rows, m = d->width;
    for (;;) {
        int x_fits = df_bind_fits(&rx, extent(n, d->ld_x, m)), y_fits = df_bind_fits(&ry, y_extent(d, n, m));
        if (x_fits && y_fits)
            break;
        if (n == 1 && m == 1)
            return df_error_set(err, DF_E_RANGE, "copy2d: one element does not fit a binding");
        int cut_rows = (!x_fits || !d->transpose) ? n > 1 : m == 1;
        if (cut_rows)
            n = (n + 1) / 2;
        else
            m = (m + 1) / 2;
    }
    for (uint64_t r0 = 0; r0 < d->rows; r0 += n)
        for (uint64_t j0 = 0; j0 < d->width; j0 += m) {
            uint64_t nr = d->rows - r0 < n ? d->rows - r0 : n, nc = d->width - j0 < m ? d->width - j0 : m;
            copy_push pc = {.rows = (uint32_t)nr, .width = (uint32_t)nc, .ld_x = d->ld_x, .ld_y = d->ld_y,
                            .transpose = (uint32_t)!!d->transpose};
            df_vk_binding b[2];
            b[0] = df_bind_span(x.ref, &rx, r0 * d->ld_x + j0, extent(nr, d->ld_x, nc), 0, &pc.off_x);
            b[1] = df_bind_span(y.ref, &ry, y_first(d, r0, j0), y_extent(d, nr, nc), 1, &pc.off_y);
            char label[48];
            snprintf(label, sizeof label, "copy2d %llux%llu", (unsigned long long)nr, (unsigned long long)nc);
            if ((rc = df_dispatch_1d(batch, &k_copy[y.dtype == DF_F16], NULL, 0, b, 2, &pc, nr * nc, 64, label, err)))
                return rc;
        }
    return DF_OK;
}
