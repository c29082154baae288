/*  softmax.c - see softmax.h. */
#include "softmax.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t rows, cols, off_x, off_dy, off_o;
    float scale;
} softmax_push;

#define T DF_VK_BIND_TEXEL
static const df_vk_kernel k_softmax[2] = {
    {"softmax_y32", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(softmax_push)},
    {"softmax_y16", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(softmax_push)},
};
#undef T

static int run(df_vk_batch_t *batch, int bwd, uint32_t rows, uint32_t cols, float scale, df_tensor x, df_tensor dy,
               df_tensor out, df_error_t *err)
{
    const char *name = bwd ? "softmax_bwd" : "softmax";
    if (!rows || !cols || (uint64_t)rows * cols > UINT32_MAX)
        return df_error_set(err, DF_E_INVALID, "%s: %u rows of %u (nonzero, below 2^32 elements)", name, rows, cols);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rx, rd, ro;
    int rc;
    if ((rc = df_bind_rules_texel(dev, x.dtype, &rx, err)) ||
        (bwd && (rc = df_bind_rules_texel(dev, dy.dtype, &rd, err))) ||
        (rc = df_bind_rules_storage(dev, out.dtype, &ro, err)))
        return df_error_prefix(err, "%s", name);
    uint64_t n = (uint64_t)rows * cols;
    if ((rc = df_bind_check(name, bwd ? "y" : "x", x.ref, n, rx.es, err)) ||
        (bwd && (rc = df_bind_check(name, "dy", dy.ref, n, rd.es, err))) ||
        (rc = df_bind_check(name, bwd ? "dx" : "y", out.ref, n, ro.es, err)))
        return rc;
    uint64_t per = df_bind_max_elems(&rx) / cols;
    if (df_bind_max_elems(&ro) / cols < per)
        per = df_bind_max_elems(&ro) / cols;
    if (bwd && df_bind_max_elems(&rd) / cols < per)
        per = df_bind_max_elems(&rd) / cols;
    if (!per)
        return df_error_set(err, DF_E_RANGE, "%s: one row does not fit a binding", name);
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t nr = rows - r0 < per ? rows - r0 : per;
        softmax_push pc = {.rows = (uint32_t)nr, .cols = cols, .scale = scale};
        df_vk_binding b[3];
        b[0] = df_bind_span(x.ref, &rx, r0 * cols, nr * cols, 0, &pc.off_x);
        b[1] = bwd ? df_bind_span(dy.ref, &rd, r0 * cols, nr * cols, 0, &pc.off_dy) : b[0];
        b[2] = df_bind_span(out.ref, &ro, r0 * cols, nr * cols, 1, &pc.off_o);
        uint32_t spec = (uint32_t)bwd;
        char label[48];
        snprintf(label, sizeof label, "%s %llux%u", name, (unsigned long long)nr, cols);
        if ((rc = df_dispatch_1d(batch, &k_softmax[out.dtype == DF_F16], &spec, 1, b, 3, &pc, nr, 64, label, err)))
            return rc;
    }
    return DF_OK;
}

int df_softmax_forward(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, float scale, df_tensor x, df_tensor y,
                       df_error_t *err)
{
    return run(batch, 0, rows, cols, scale, x, x, y, err);
}

int df_softmax_backward(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, df_tensor y, df_tensor dy, df_tensor dx,
                        df_error_t *err)
{
    return run(batch, 1, rows, cols, 1.0f, y, dy, dx, err);
}
