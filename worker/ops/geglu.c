/*  geglu.c - see geglu.h. */
#include "geglu.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t rows, inner, off_x, off_dy, off_o;
} geglu_push;

#define T DF_VK_BIND_TEXEL
static const df_vk_kernel k_geglu[2] = {
    {"geglu_y32", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(geglu_push)},
    {"geglu_y16", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(geglu_push)},
};
#undef T

static int run(df_vk_batch_t *batch, int bwd, uint32_t rows, uint32_t inner, df_tensor x, df_tensor dy, df_tensor out,
               df_error_t *err)
{
    const char *name = bwd ? "geglu_bwd" : "geglu";
    if (!rows || !inner || (uint64_t)rows * inner * 2 > UINT32_MAX)
        return df_error_set(err, DF_E_INVALID, "%s: %u rows of %u (both nonzero, 2 * rows * inner < 2^32)", name, rows, inner);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rx, rd, ro;
    int rc;
    if ((rc = df_bind_rules_texel(dev, x.dtype, &rx, err)) ||
        (bwd && (rc = df_bind_rules_texel(dev, dy.dtype, &rd, err))) ||
        (rc = df_bind_rules_storage(dev, out.dtype, &ro, err)))
        return df_error_prefix(err, "%s", name);
    uint64_t nx = 2ull * rows * inner, ny = (uint64_t)rows * inner;
    if ((rc = df_bind_check(name, "x", x.ref, nx, rx.es, err)) ||
        (bwd && (rc = df_bind_check(name, "dy", dy.ref, ny, rd.es, err))) ||
        (rc = df_bind_check(name, bwd ? "dx" : "y", out.ref, bwd ? nx : ny, ro.es, err)))
        return rc;
    /* Row windows that fit every binding. */
    uint64_t per = df_bind_max_elems(&rx) / (2ull * inner);
    uint64_t per_o = df_bind_max_elems(&ro) / (bwd ? 2ull * inner : inner);
    if (per_o < per)
        per = per_o;
    if (bwd && df_bind_max_elems(&rd) / inner < per)
        per = df_bind_max_elems(&rd) / inner;
    if (!per)
        return df_error_set(err, DF_E_RANGE, "%s: one row does not fit a binding", name);
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        geglu_push pc = {.rows = (uint32_t)n, .inner = inner};
        df_vk_binding b[3];
        b[0] = df_bind_span(x.ref, &rx, r0 * 2 * inner, n * 2 * inner, 0, &pc.off_x);
        b[1] = bwd ? df_bind_span(dy.ref, &rd, r0 * inner, n * inner, 0, &pc.off_dy) : b[0];
        b[2] = bwd ? df_bind_span(out.ref, &ro, r0 * 2 * inner, n * 2 * inner, 1, &pc.off_o)
                   : df_bind_span(out.ref, &ro, r0 * inner, n * inner, 1, &pc.off_o);
        uint32_t spec = (uint32_t)bwd;
        char label[48];
        snprintf(label, sizeof label, "%s %llux%u", name, (unsigned long long)n, inner);
        if ((rc = df_dispatch_1d(batch, &k_geglu[out.dtype == DF_F16], &spec, 1, b, 3, &pc, n * inner, 64, label, err)))
            return rc;
    }
    return DF_OK;
}

int df_geglu_forward(df_vk_batch_t *batch, uint32_t rows, uint32_t inner, df_tensor x, df_tensor y, df_error_t *err)
{
    return run(batch, 0, rows, inner, x, x, y, err);
}

int df_geglu_backward(df_vk_batch_t *batch, uint32_t rows, uint32_t inner, df_tensor x, df_tensor dy, df_tensor dx,
                      df_error_t *err)
{
    return run(batch, 1, rows, inner, x, dy, dx, err);
}
