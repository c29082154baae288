/*  dequant.c - see dequant.h. */
#include "dequant.h"

#include <stdio.h>

#include "bind.h"
#include "quant8.h"

typedef struct {
    uint32_t rows, cols, block, blocks, off_q, off_scale, off_y;
} dequant_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_dequant[2] = {
    {"dequant_y32", 3, {S, T, S}, sizeof(dequant_push)},
    {"dequant_y16", 3, {S, T, S}, sizeof(dequant_push)},
};
#undef T
#undef S

int df_dequant_rows(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, uint32_t block, df_tensor q, df_tensor scale,
                    df_tensor y, df_error_t *err)
{
    if (!rows || !cols || !block)
        return df_error_set(err, DF_E_INVALID, "dequant: %u x %u in blocks of %u is empty", rows, cols, block);
    if (block > cols)
        block = cols;
    uint32_t nb = (uint32_t)df_quant8_blocks(cols, block);
    if ((uint64_t)rows * cols > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "dequant: %u x %u is more than 2^32 elements", rows, cols);
    if (q.dtype != DF_I8)
        return df_error_set(err, DF_E_INVALID, "dequant: q is %s, not i8", df_dtype_name(q.dtype));
    if (scale.dtype != DF_F32)
        return df_error_set(err, DF_E_INVALID, "dequant: scale is %s, not f32", df_dtype_name(scale.dtype));
    if (y.dtype != DF_F32 && y.dtype != DF_F16)
        return df_error_set(err, DF_E_INVALID, "dequant: y is %s, not f32 or f16", df_dtype_name(y.dtype));
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rq, rs, ry;
    int rc;
    if ((rc = df_bind_rules_storage(dev, DF_I8, &rq, err)) || (rc = df_bind_rules_texel(dev, DF_F32, &rs, err)) ||
        (rc = df_bind_rules_storage(dev, y.dtype, &ry, err)))
        return df_error_prefix(err, "dequant");
    uint64_t n = (uint64_t)rows * cols;
    if ((rc = df_bind_check("dequant", "q", q.ref, n, 1, err)) ||
        (rc = df_bind_check("dequant", "scale", scale.ref, (uint64_t)rows * nb, 4, err)) ||
        (rc = df_bind_check("dequant", "y", y.ref, n, ry.es, err)))
        return rc;
    /* Whole rows per dispatch, as many as every window allows. */
    uint64_t per = rows;
    while (per > 1 && (!df_bind_fits(&rq, per * cols) || !df_bind_fits(&ry, per * cols) ||
                       !df_bind_fits(&rs, per * nb)))
        per = (per + 1) / 2;
    if (!df_bind_fits(&rq, per * cols) || !df_bind_fits(&ry, per * cols) || !df_bind_fits(&rs, per * nb))
        return df_error_set(err, DF_E_RANGE, "dequant: one row of %u values does not fit a binding", cols);
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t nr = rows - r0 < per ? rows - r0 : per;
        dequant_push pc = {.rows = (uint32_t)nr, .cols = cols, .block = block, .blocks = nb};
        df_vk_binding b[3] = {
            df_bind_span(q.ref, &rq, r0 * cols, nr * cols, 0, &pc.off_q),
            df_bind_span(scale.ref, &rs, r0 * nb, nr * nb, 0, &pc.off_scale),
            df_bind_span(y.ref, &ry, r0 * cols, nr * cols, 1, &pc.off_y),
        };
        char label[48];
        snprintf(label, sizeof label, "dequant %llux%u", (unsigned long long)nr, cols);
        if ((rc = df_dispatch_1d(batch, &k_dequant[y.dtype == DF_F16], NULL, 0, b, 3, &pc, nr * cols, 64, label,
                                 err)))
            return rc;
    }
    return DF_OK;
}
