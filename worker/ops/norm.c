/*  norm.c - see norm.h. */
#include "norm.h"

#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "vk_pipeline.h"

#define CHUNK 1024u
#define WG 64u

typedef struct {
    uint32_t count, len, inner, channels, nch, base;
    uint32_t off_x, off_g, off_p, off_s, off_o, runs;
    float eps;
} norm_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_norm[2] = {
    {"norm_y32", 5, {T, T, T, T, S}, sizeof(norm_push)},
    {"norm_y16", 5, {T, T, T, T, S}, sizeof(norm_push)},
};
#undef T
#undef S

enum { PARTIALS = 0, FINALIZE, APPLY, BWD_PARTIALS, BWD_FINALIZE, BWD_APPLY, AFFINE_GRADS };

df_norm_desc df_norm_group(uint32_t n, uint32_t channels, uint32_t hw, uint32_t groups, float eps)
{
    df_norm_desc d = {0};
    d.segments = n * groups;
    d.len = groups ? channels / groups * hw : 0;
    d.inner = hw;
    d.channels = channels;
    d.eps = eps;
    d.affine = 1;
    return d;
}

df_norm_desc df_norm_layer(uint32_t rows, uint32_t channels, float eps)
{
    df_norm_desc d = {0};
    d.segments = rows;
    d.len = channels;
    d.inner = 1;
    d.channels = channels;
    d.eps = eps;
    d.affine = 1;
    return d;
}

uint64_t df_norm_stats_elems(const df_norm_desc *d) { return 4ull * d->segments; }

typedef struct {
    df_vk_batch_t *batch;
    df_vk_device_t *dev;
    const df_norm_desc *d;
    const char *name;
    df_bind_rules rx, rg, rp, rs, ro, rf32;
    uint32_t nch;
    uint64_t total;
} norm_ctx;

static int check_desc(const df_norm_desc *d, const char *name, df_error_t *err)
{
    if (!d->segments || !d->len || !d->inner || !d->channels)
        return df_error_set(err, DF_E_INVALID, "%s: empty shape (segments %u, length %u, inner %u, channels %u)", name,
                            d->segments, d->len, d->inner, d->channels);
    uint64_t total = (uint64_t)d->segments * d->len;
    if (total % ((uint64_t)d->inner * d->channels))
        return df_error_set(err, DF_E_INVALID, "%s: %llu elements are not whole runs of %u channels x %u", name,
                            (unsigned long long)total, d->channels, d->inner);
    if (total > UINT32_MAX)
        return df_error_set(err, DF_E_RANGE, "%s: %llu elements (at most 2^32)", name, (unsigned long long)total);
    if (!(d->eps >= 0))
        return df_error_set(err, DF_E_INVALID, "%s: eps must be >= 0", name);
    return DF_OK;
}

/* Whether the partials/apply stages may read four elements per fetch (the
 * shader's VEC): every window offset they read is texel-aligned and the four
 * elements share a channel or are four consecutive channels. */
static int can_vec(const norm_ctx *c, uint32_t stage, const norm_push *pc, uint64_t count)
{
    const df_norm_desc *d = c->d;
    int bwd = stage == BWD_PARTIALS || stage == BWD_APPLY;
    int fwd_apply = stage == APPLY;
    int chan_ok = d->inner % 4 == 0 ||
                  (d->inner == 1 && d->channels % 4 == 0 &&
                   (!d->affine || ((!bwd && !fwd_apply) || (pc->off_g % 4 == 0 && (!fwd_apply || pc->off_p % 4 == 0)))));
    return d->len % 4 == 0 && count % 4 == 0 && pc->off_x % 4 == 0 && (!bwd || pc->off_p % 4 == 0) && chan_ok;
}

static int dispatch(norm_ctx *c, uint32_t stage, df_dtype out, norm_push *pc, df_vk_binding b[5], uint64_t invocations,
                    const char *what, df_error_t *err)
{
    int partials = stage == PARTIALS || stage == BWD_PARTIALS;
    int vec = 0, subgroup = 0;
    if (partials && !df_vk_device_prefers_texel_tiles(c->dev)) {
        /* GPUs: a subgroup per chunk, where the subgroup size is fixed and
         * divides the workgroup (else one invocation per chunk). */
        const df_vk_device_info *info = df_vk_device_info_of(c->dev);
        uint32_t sg = info->subgroup_size;
        subgroup = info->subgroup_arith && info->subgroup_min == info->subgroup_max && sg >= 4 && WG % sg == 0;
        if (subgroup)
            invocations *= sg;
    } else if (partials) {
        vec = can_vec(c, stage, pc, 4 * (uint64_t)pc->count);
    } else if (stage == APPLY || stage == BWD_APPLY) {
        vec = can_vec(c, stage, pc, pc->count);
        if (vec)
            invocations /= 4;
    }
    uint32_t spec[5] = {stage, !!c->d->affine, stage == APPLY && c->d->silu, (uint32_t)vec, (uint32_t)subgroup};
    df_vk_pipeline_t *p = df_vk_pipeline_get(c->dev, &k_norm[out == DF_F16], spec, 5, err);
    if (!p)
        return err ? err->code : DF_E_VULKAN;
    uint32_t gx, gy;
    int rc = df_linear_grid(c->dev, (invocations + WG - 1) / WG, &gx, &gy, err);
    if (rc)
        return rc;
    char label[64];
    snprintf(label, sizeof label, "%s %s", c->name, what);
    return df_vk_batch_dispatch(c->batch, p, b, 5, pc, gx, gy, 1, label, err);
}

/* Segment windows for the partial stages: as many whole segments as fit. */
static int partial_stage(norm_ctx *c, uint32_t stage, df_tensor x, df_tensor gamma, df_tensor dy, df_tensor stats,
                         const df_vk_buffer_t *partials, df_error_t *err)
{
    uint64_t fit = df_bind_max_elems(&c->rx);
    if (stage == BWD_PARTIALS && df_bind_max_elems(&c->rp) < fit)
        fit = df_bind_max_elems(&c->rp);
    uint64_t segs_per = fit / c->d->len;
    if (segs_per == 0)
        return df_error_set(err, DF_E_RANGE, "%s: one segment of %u elements does not fit a binding", c->name, c->d->len);
    uint64_t npart = (uint64_t)c->d->segments * c->nch * 2;
    for (uint64_t s0 = 0; s0 < c->d->segments; s0 += segs_per) {
        uint64_t segs = c->d->segments - s0 < segs_per ? c->d->segments - s0 : segs_per;
        norm_push pc = {.count = (uint32_t)segs, .len = c->d->len, .inner = c->d->inner, .channels = c->d->channels,
                        .nch = c->nch, .base = (uint32_t)s0, .eps = c->d->eps};
        df_vk_binding b[5];
        b[0] = df_bind_span(x.ref, &c->rx, s0 * c->d->len, segs * c->d->len, 0, &pc.off_x);
        b[1] = stage == BWD_PARTIALS && c->d->affine ? df_bind_span(gamma.ref, &c->rg, 0, c->d->channels, 0, &pc.off_g)
                                                      : b[0];
        b[2] = stage == BWD_PARTIALS ? df_bind_span(dy.ref, &c->rp, s0 * c->d->len, segs * c->d->len, 0, &pc.off_p) : b[0];
        b[3] = stage == BWD_PARTIALS ? df_bind_span(stats.ref, &c->rs, 0, 4ull * c->d->segments, 0, &pc.off_s) : b[0];
        b[4] = df_bind_span(df_ref(partials, 0), &c->rf32, 0, npart, 1, &pc.off_o);
        int rc = dispatch(c, stage, DF_F32, &pc, b, segs * c->nch, "partials", err);
        if (rc)
            return rc;
    }
    return DF_OK;
}

static int finalize_stage(norm_ctx *c, uint32_t stage, df_tensor stats, const df_vk_buffer_t *partials, df_error_t *err)
{
    uint64_t npart = (uint64_t)c->d->segments * c->nch * 2;
    norm_push pc = {.count = c->d->segments, .len = c->d->len, .inner = c->d->inner, .channels = c->d->channels,
                    .nch = c->nch, .eps = c->d->eps};
    df_vk_binding b[5];
    b[3] = df_bind_span(df_ref(partials, 0), &c->rs, 0, npart, 0, &pc.off_s);
    b[0] = b[1] = b[2] = b[3];
    b[4] = df_bind_span(stats.ref, &c->rf32, 0, 4ull * c->d->segments, 1, &pc.off_o);
    return dispatch(c, stage, DF_F32, &pc, b, c->d->segments, "stats", err);
}

/* Element windows for the apply stages. */
static int apply_stage(norm_ctx *c, uint32_t stage, df_tensor x, df_tensor gamma, df_tensor beta_or_dy, df_tensor stats,
                       df_tensor out, df_error_t *err)
{
    int bwd = stage == BWD_APPLY;
    uint64_t chunk = df_bind_max_elems(&c->rx);
    if (bwd && df_bind_max_elems(&c->rp) < chunk)
        chunk = df_bind_max_elems(&c->rp);
    if (df_bind_max_elems(&c->ro) < chunk)
        chunk = df_bind_max_elems(&c->ro);
    if (chunk > 4)
        chunk &= ~(uint64_t)3; /* windows start on a texel for the vector path */
    for (uint64_t first = 0; first < c->total; first += chunk) {
        uint64_t n = c->total - first < chunk ? c->total - first : chunk;
        norm_push pc = {.count = (uint32_t)n, .len = c->d->len, .inner = c->d->inner, .channels = c->d->channels,
                        .nch = c->nch, .base = (uint32_t)first, .eps = c->d->eps};
        df_vk_binding b[5];
        b[0] = df_bind_span(x.ref, &c->rx, first, n, 0, &pc.off_x);
        b[1] = c->d->affine ? df_bind_span(gamma.ref, &c->rg, 0, c->d->channels, 0, &pc.off_g) : b[0];
        if (bwd)
            b[2] = df_bind_span(beta_or_dy.ref, &c->rp, first, n, 0, &pc.off_p);
        else
            b[2] = c->d->affine ? df_bind_span(beta_or_dy.ref, &c->rp, 0, c->d->channels, 0, &pc.off_p) : b[0];
        b[3] = df_bind_span(stats.ref, &c->rs, 0, 4ull * c->d->segments, 0, &pc.off_s);
        b[4] = df_bind_span(out.ref, &c->ro, first, n, 1, &pc.off_o);
        int rc = dispatch(c, stage, out.dtype, &pc, b, n, bwd ? "dx" : "apply", err);
        if (rc)
            return rc;
    }
    return DF_OK;
}

static int setup(norm_ctx *c, df_vk_batch_t *batch, const df_norm_desc *d, const char *name, df_tensor x,
                 df_tensor gamma, df_dtype other_type, df_tensor stats, df_tensor out, df_error_t *err)
{
    memset(c, 0, sizeof *c);
    c->batch = batch;
    c->dev = df_vk_batch_device(batch);
    c->d = d;
    c->name = name;
    int rc = check_desc(d, name, err);
    if (rc)
        return rc;
    c->total = (uint64_t)d->segments * d->len;
    c->nch = (d->len + CHUNK - 1) / CHUNK;
    if ((rc = df_bind_rules_texel(c->dev, x.dtype, &c->rx, err)) ||
        (rc = df_bind_rules_texel(c->dev, other_type, &c->rp, err)) ||
        (rc = df_bind_rules_texel(c->dev, DF_F32, &c->rs, err)) ||
        (rc = df_bind_rules_storage(c->dev, out.dtype, &c->ro, err)) ||
        (rc = df_bind_rules_storage(c->dev, DF_F32, &c->rf32, err)) ||
        (d->affine && (rc = df_bind_rules_texel(c->dev, gamma.dtype, &c->rg, err))))
        return df_error_prefix(err, "%s", name);
    if (out.dtype != DF_F32 && out.dtype != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: output must be f32 or f16", name);
    if (stats.dtype != DF_F32)
        return df_error_set(err, DF_E_INVALID, "%s: stats must be f32", name);
    if ((rc = df_bind_check(name, "x", x.ref, c->total, c->rx.es, err)) ||
        (rc = df_bind_check(name, "stats", stats.ref, df_norm_stats_elems(d), 4, err)) ||
        (rc = df_bind_check(name, "output", out.ref, c->total, c->ro.es, err)))
        return rc;
    if (d->affine && (rc = df_bind_check(name, "gamma", gamma.ref, d->channels, c->rg.es, err)))
        return rc;
    return DF_OK;
}

static const df_vk_buffer_t *scratch(norm_ctx *c, df_error_t *err)
{
    df_vk_buffer_t *buf = df_vk_buffer_new(c->dev, (uint64_t)c->d->segments * c->nch * 2 * 4, err);
    const df_vk_buffer_t *keep = buf;
    if (!buf || df_vk_batch_hold(c->batch, &buf, err))
        return NULL;
    return keep;
}

int df_norm_forward(df_vk_batch_t *batch, const df_norm_desc *d, df_tensor x, df_tensor gamma, df_tensor beta,
                    df_tensor y, df_tensor stats, df_error_t *err)
{
    norm_ctx c;
    int rc = setup(&c, batch, d, d->segments && d->inner == 1 && d->len == d->channels ? "layer_norm" : "group_norm",
                   x, gamma, d->affine ? beta.dtype : x.dtype, stats, y, err);
    if (rc)
        return rc;
    if (d->affine && (rc = df_bind_check(c.name, "beta", beta.ref, d->channels, c.rp.es, err)))
        return rc;
    const df_vk_buffer_t *part = scratch(&c, err);
    if (!part)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    if ((rc = partial_stage(&c, PARTIALS, x, gamma, x, stats, part, err)) || (rc = finalize_stage(&c, FINALIZE, stats, part, err)))
        return rc;
    return apply_stage(&c, APPLY, x, gamma, beta, stats, y, err);
}

int df_norm_backward(df_vk_batch_t *batch, const df_norm_desc *d, df_tensor x, df_tensor gamma, df_tensor stats,
                     df_tensor dy, df_tensor dx, df_tensor affine_grads, df_error_t *err)
{
    norm_ctx c;
    const char *name = d->inner == 1 && d->len == d->channels ? "layer_norm_bwd" : "group_norm_bwd";
    if (d->silu)
        return df_error_set(err, DF_E_INVALID, "%s: differentiate the fused SiLU first (desc.silu must be 0)", name);
    int rc = setup(&c, batch, d, name, x, gamma, dy.dtype, stats, dx, err);
    if (rc)
        return rc;
    if ((rc = df_bind_check(name, "dy", dy.ref, c.total, c.rp.es, err)))
        return rc;
    const df_vk_buffer_t *part = scratch(&c, err);
    if (!part)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    if ((rc = partial_stage(&c, BWD_PARTIALS, x, gamma, dy, stats, part, err)) ||
        (rc = finalize_stage(&c, BWD_FINALIZE, stats, part, err)) ||
        (rc = apply_stage(&c, BWD_APPLY, x, gamma, dy, stats, dx, err)))
        return rc;
    if (!affine_grads.ref.buf)
        return DF_OK;
    if ((rc = df_bind_check(name, "affine_grads", affine_grads.ref, 2ull * d->channels, 4, err)))
        return rc;
    if (!df_bind_fits(&c.rx, c.total) || !df_bind_fits(&c.rp, c.total))
        return df_error_set(err, DF_E_RANGE, "%s: affine gradients need x in one binding (%llu elements)", name,
                            (unsigned long long)c.total);
    norm_push pc = {.count = d->channels, .len = d->len, .inner = d->inner, .channels = d->channels, .nch = c.nch,
                    .runs = (uint32_t)(c.total / ((uint64_t)d->inner * d->channels)), .eps = d->eps};
    df_vk_binding b[5];
    b[0] = df_bind_span(x.ref, &c.rx, 0, c.total, 0, &pc.off_x);
    b[1] = b[0];
    b[2] = df_bind_span(dy.ref, &c.rp, 0, c.total, 0, &pc.off_p);
    b[3] = df_bind_span(stats.ref, &c.rs, 0, 4ull * d->segments, 0, &pc.off_s);
    b[4] = df_bind_span(affine_grads.ref, &c.rf32, 0, 2ull * d->channels, 1, &pc.off_o);
    return dispatch(&c, AFFINE_GRADS, DF_F32, &pc, b, d->channels, "affine grads", err);
}
