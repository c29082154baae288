/*  loss.c - see loss.h. */
#include "loss.h"

#include <stdio.h>

#include "bind.h"

#define CHUNK 1024u

typedef struct {
    uint32_t samples, count, nch, base, items;
    uint32_t off_p, off_t, off_w, off_s, off_o;
    float grad_scale;
} mse_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_mse[2] = {
    {"mse_y32", 5, {T, T, T, T, S}, sizeof(mse_push)},
    {"mse_y16", 5, {T, T, T, T, S}, sizeof(mse_push)},
};
#undef T
#undef S

int df_mse_loss(df_vk_batch_t *batch, const df_mse_desc *d, df_tensor pred, df_tensor target, df_tensor weights,
                df_tensor out, df_tensor dpred, df_error_t *err)
{
    const char *name = "mse_loss";
    if (!d->samples || !d->count || (uint64_t)d->samples * d->count > UINT32_MAX)
        return df_error_set(err, DF_E_INVALID, "%s: %u samples of %u elements (nonzero, below 2^32 in all)", name,
                            d->samples, d->count);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rp, rt, rw, rf, rf32, rd;
    int weighted = weights.ref.buf != NULL;
    int rc;
    if ((rc = df_bind_rules_texel(dev, pred.dtype, &rp, err)) || (rc = df_bind_rules_texel(dev, target.dtype, &rt, err)) ||
        (rc = df_bind_rules_texel(dev, DF_F32, &rw, err)) || (rc = df_bind_rules_texel(dev, DF_F32, &rf, err)) ||
        (rc = df_bind_rules_storage(dev, DF_F32, &rf32, err)) ||
        (dpred.ref.buf && (rc = df_bind_rules_storage(dev, dpred.dtype, &rd, err))))
        return df_error_prefix(err, "%s", name);
    uint64_t n = (uint64_t)d->samples * d->count;
    if ((rc = df_bind_check(name, "pred", pred.ref, n, rp.es, err)) ||
        (rc = df_bind_check(name, "target", target.ref, n, rt.es, err)) ||
        (weighted && (rc = df_bind_check(name, "weights", weights.ref, d->samples, 4, err))) ||
        (rc = df_bind_check(name, "out", out.ref, 1ull + d->samples, 4, err)) ||
        (dpred.ref.buf && (rc = df_bind_check(name, "dpred", dpred.ref, n, rd.es, err))))
        return rc;
    if (out.dtype != DF_F32 || (weighted && weights.dtype != DF_F32))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: weights and out must be f32", name);
    uint32_t nch = (d->count + CHUNK - 1) / CHUNK;
    df_vk_buffer_t *part_buf = df_vk_buffer_new(dev, 4ull * d->samples * nch, err);
    const df_vk_buffer_t *part = part_buf;
    if (!part_buf || df_vk_batch_hold(batch, &part_buf, err))
        return err ? err->code : DF_E_DEVICE_MEMORY;
    /* Partial sums, sample windows. */
    uint64_t per = df_bind_max_elems(&rp) < df_bind_max_elems(&rt) ? df_bind_max_elems(&rp) : df_bind_max_elems(&rt);
    per /= d->count;
    if (!per)
        return df_error_set(err, DF_E_RANGE, "%s: one sample does not fit a binding", name);
    for (uint64_t s0 = 0; s0 < d->samples; s0 += per) {
        uint64_t ns = d->samples - s0 < per ? d->samples - s0 : per;
        mse_push pc = {.samples = d->samples, .count = d->count, .nch = nch, .base = (uint32_t)s0, .items = (uint32_t)ns,
                       .grad_scale = d->grad_scale};
        df_vk_binding b[5];
        b[0] = df_bind_span(pred.ref, &rp, s0 * d->count, ns * d->count, 0, &pc.off_p);
        b[1] = df_bind_span(target.ref, &rt, s0 * d->count, ns * d->count, 0, &pc.off_t);
        b[2] = b[3] = b[0];
        b[4] = df_bind_span(df_ref(part, 0), &rf32, 0, (uint64_t)d->samples * nch, 1, &pc.off_o);
        uint32_t spec[2] = {0, (uint32_t)weighted};
        if ((rc = df_dispatch_1d(batch, &k_mse[0], spec, 2, b, 5, &pc, ns * nch, 64, "mse_loss partials", err)))
            return rc;
    }
    /* Combine. */
    {
        mse_push pc = {.samples = d->samples, .count = d->count, .nch = nch, .grad_scale = d->grad_scale};
        df_vk_binding b[5];
        b[3] = df_bind_span(df_ref(part, 0), &rf, 0, (uint64_t)d->samples * nch, 0, &pc.off_s);
        b[2] = weighted ? df_bind_span(weights.ref, &rw, 0, d->samples, 0, &pc.off_w) : b[3];
        b[0] = b[1] = b[3];
        b[4] = df_bind_span(out.ref, &rf32, 0, 1ull + d->samples, 1, &pc.off_o);
        uint32_t spec[2] = {1, (uint32_t)weighted};
        if ((rc = df_dispatch_1d(batch, &k_mse[0], spec, 2, b, 5, &pc, 1, 64, "mse_loss", err)))
            return rc;
    }
    if (!dpred.ref.buf)
        return DF_OK;
    uint64_t chunk = df_bind_max_elems(&rp);
    if (df_bind_max_elems(&rt) < chunk)
        chunk = df_bind_max_elems(&rt);
    if (df_bind_max_elems(&rd) < chunk)
        chunk = df_bind_max_elems(&rd);
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t m = n - first < chunk ? n - first : chunk;
        mse_push pc = {.samples = d->samples, .count = d->count, .nch = nch, .base = (uint32_t)first,
                       .items = (uint32_t)m, .grad_scale = d->grad_scale};
        df_vk_binding b[5];
        b[0] = df_bind_span(pred.ref, &rp, first, m, 0, &pc.off_p);
        b[1] = df_bind_span(target.ref, &rt, first, m, 0, &pc.off_t);
        b[2] = weighted ? df_bind_span(weights.ref, &rw, 0, d->samples, 0, &pc.off_w) : b[0];
        b[3] = b[0];
        b[4] = df_bind_span(dpred.ref, &rd, first, m, 1, &pc.off_o);
        uint32_t spec[2] = {2, (uint32_t)weighted};
        if ((rc = df_dispatch_1d(batch, &k_mse[dpred.dtype == DF_F16], spec, 2, b, 5, &pc, m, 64, "mse_loss grad", err)))
            return rc;
    }
    return DF_OK;
}
