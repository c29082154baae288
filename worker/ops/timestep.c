/*  timestep.c - see timestep.h. */
#include "timestep.h"

#include <math.h>
#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t batch, dim, half_dim, off_t, off_f, off_o;
} ts_push;

#define T DF_VK_BIND_TEXEL
static const df_vk_kernel k_ts[2] = {
    {"timestep_y32", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(ts_push)},
    {"timestep_y16", 3, {T, T, DF_VK_BIND_STORAGE}, sizeof(ts_push)},
};
#undef T

void df_timestep_freqs(const df_timestep_desc *d, float *freqs)
{
    uint32_t half = d->dim / 2;
    for (uint32_t j = 0; j < half; j++)
        freqs[j] = (float)(d->scale * exp(-log((double)d->max_period) * j / (half - (double)d->shift)));
}

int df_timestep_embedding(df_vk_batch_t *batch, const df_timestep_desc *d, uint32_t count, df_tensor t,
                          df_tensor freqs, df_tensor emb, df_error_t *err)
{
    if (!count || d->dim < 2 || (uint64_t)count * d->dim > UINT32_MAX)
        return df_error_set(err, DF_E_INVALID, "timestep_embedding: %u timesteps of dim %u (need dim >= 2)", count, d->dim);
    if (!(d->max_period > 0) || !(d->dim / 2 > d->shift))
        return df_error_set(err, DF_E_INVALID, "timestep_embedding: max_period must be > 0 and shift < dim / 2");
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rt, rf, ro;
    int rc;
    if (t.dtype != DF_F32 || freqs.dtype != DF_F32)
        return df_error_set(err, DF_E_UNSUPPORTED, "timestep_embedding: timesteps and frequencies must be f32");
    if ((rc = df_bind_rules_texel(dev, DF_F32, &rt, err)) || (rc = df_bind_rules_texel(dev, DF_F32, &rf, err)) ||
        (rc = df_bind_rules_storage(dev, emb.dtype, &ro, err)))
        return df_error_prefix(err, "timestep_embedding");
    uint64_t n = (uint64_t)count * d->dim;
    if ((rc = df_bind_check("timestep_embedding", "t", t.ref, count, 4, err)) ||
        (rc = df_bind_check("timestep_embedding", "freqs", freqs.ref, d->dim / 2, 4, err)) ||
        (rc = df_bind_check("timestep_embedding", "emb", emb.ref, n, ro.es, err)))
        return rc;
    if (!df_bind_fits(&ro, n))
        return df_error_set(err, DF_E_RANGE, "timestep_embedding: output does not fit a binding");
    ts_push pc = {.batch = count, .dim = d->dim, .half_dim = d->dim / 2};
    df_vk_binding b[3];
    b[0] = df_bind_span(t.ref, &rt, 0, count, 0, &pc.off_t);
    b[1] = df_bind_span(freqs.ref, &rf, 0, d->dim / 2, 0, &pc.off_f);
    b[2] = df_bind_span(emb.ref, &ro, 0, n, 1, &pc.off_o);
    uint32_t spec = !!d->flip_sin_to_cos;
    char label[48];
    snprintf(label, sizeof label, "timestep_embedding %ux%u", count, d->dim);
    return df_dispatch_1d(batch, &k_ts[emb.dtype == DF_F16], &spec, 1, b, 3, &pc, n, 64, label, err);
}
