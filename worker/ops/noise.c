/*  noise.c - see noise.h. */
#include "noise.h"

#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t n, first_lo, first_hi, seed_lo, seed_hi, stream_lo, stream_hi, off_y;
    float scale;
} noise_push;

static const df_vk_kernel k_noise[2] = {
    {"noise_y32", 1, {DF_VK_BIND_STORAGE}, sizeof(noise_push)},
    {"noise_y16", 1, {DF_VK_BIND_STORAGE}, sizeof(noise_push)},
};

int df_noise_normal(df_vk_batch_t *batch, const df_noise_desc *d, df_tensor y, df_error_t *err)
{
    if (!d->n)
        return df_error_set(err, DF_E_INVALID, "noise: no elements");
    if (d->first % 4)
        return df_error_set(err, DF_E_INVALID, "noise: first (%llu) must be a multiple of 4 (one Philox block)",
                            (unsigned long long)d->first);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules ry;
    int rc = df_bind_rules_storage(dev, y.dtype, &ry, err);
    if (rc || (rc = df_bind_check("noise", "y", y.ref, d->n, ry.es, err)))
        return rc ? df_error_prefix(err, "noise") : rc;
    if (y.dtype != DF_F32 && y.dtype != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "noise: y must be f32 or f16");
    uint64_t chunk = df_bind_max_elems(&ry) & ~(uint64_t)3;
    for (uint64_t off = 0; off < d->n; off += chunk) {
        uint64_t k = d->n - off < chunk ? d->n - off : chunk;
        uint64_t first = d->first + off;
        noise_push pc = {.n = (uint32_t)k, .first_lo = (uint32_t)first, .first_hi = (uint32_t)(first >> 32),
                         .seed_lo = (uint32_t)d->seed, .seed_hi = (uint32_t)(d->seed >> 32),
                         .stream_lo = (uint32_t)d->stream, .stream_hi = (uint32_t)(d->stream >> 32), .scale = d->scale};
        df_vk_binding b = df_bind_span(y.ref, &ry, off, k, 1, &pc.off_y);
        uint32_t spec = (uint32_t)!!d->add;
        char label[48];
        snprintf(label, sizeof label, "noise %llu", (unsigned long long)k);
        if ((rc = df_dispatch_1d(batch, &k_noise[y.dtype == DF_F16], &spec, 1, &b, 1, &pc, (k + 3) / 4, 64, label, err)))
            return rc;
    }
    return DF_OK;
}
