/*  eltwise.c - see eltwise.h. */
#include "eltwise.h"

#include <stdio.h>

#include "bind.h"
#include "vk_pipeline.h"

typedef struct {
    uint32_t n, off_a, off_b, off_y, base, b_inner, b_count;
    float alpha, beta;
} elt_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_elt[2] = {
    {"eltwise_y32", 3, {T, T, S}, sizeof(elt_push)},
    {"eltwise_y16", 3, {T, T, S}, sizeof(elt_push)},
};
#undef T
#undef S

#define WG 64u

static const char *k_names[DF_ELT_COUNT] = {
    "copy", "affine", "axpby", "mul", "silu", "gelu_tanh", "gelu_erf", "quick_gelu",
    "silu_bwd", "gelu_tanh_bwd", "gelu_erf_bwd", "quick_gelu_bwd", "clamp",
};

const char *df_elt_op_name(df_elt_op op) { return (unsigned)op < DF_ELT_COUNT ? k_names[op] : "?"; }

int df_elt_op_binary(df_elt_op op)
{
    return op == DF_ELT_AXPBY || op == DF_ELT_MUL || (op >= DF_ELT_SILU_BWD && op <= DF_ELT_QUICK_GELU_BWD);
}

int df_eltwise(df_vk_batch_t *batch, const df_elt_desc *d, df_tensor a, df_tensor b, df_tensor y, df_error_t *err)
{
    const char *name = df_elt_op_name(d->op);
    if ((unsigned)d->op >= DF_ELT_COUNT)
        return df_error_set(err, DF_E_INVALID, "eltwise: unknown op %d", (int)d->op);
    if (d->n == 0)
        return df_error_set(err, DF_E_INVALID, "%s: no elements", name);
    int binary = df_elt_op_binary(d->op);
    int bcast = binary && d->b_count != 0;
    if (bcast && (d->b_inner == 0 || d->b_count > UINT32_MAX || d->b_inner > UINT32_MAX))
        return df_error_set(err, DF_E_INVALID, "%s: broadcast needs b_inner >= 1 and sizes below 2^32", name);
    uint64_t nb = binary ? (bcast ? d->b_count : d->n) : 0;
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules ra, rb, ry;
    int rc;
    if ((rc = df_bind_rules_texel(dev, a.dtype, &ra, err)) ||
        (binary && (rc = df_bind_rules_texel(dev, b.dtype, &rb, err))) ||
        (rc = df_bind_rules_storage(dev, y.dtype, &ry, err)))
        return df_error_prefix(err, "%s", name);
    if (y.dtype != DF_F32 && y.dtype != DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: output must be f32 or f16, not %s", name, df_dtype_name(y.dtype));
    if ((rc = df_bind_check(name, "a", a.ref, d->n, ra.es, err)) ||
        (binary && (rc = df_bind_check(name, "b", b.ref, nb, rb.es, err))) ||
        (rc = df_bind_check(name, "y", y.ref, d->n, ry.es, err)))
        return rc;
    if (bcast && !df_bind_fits(&rb, nb))
        return df_error_set(err, DF_E_RANGE, "%s: a broadcast b of %llu elements does not fit one binding", name,
                            (unsigned long long)nb);
    /* Chunks that fit every binding, a multiple of 4 so fetches stay aligned. */
    uint64_t chunk = df_bind_max_elems(&ra);
    if (binary && !bcast && df_bind_max_elems(&rb) < chunk)
        chunk = df_bind_max_elems(&rb);
    if (df_bind_max_elems(&ry) < chunk)
        chunk = df_bind_max_elems(&ry);
    chunk &= ~(uint64_t)3;
    if (chunk == 0)
        return df_error_set(err, DF_E_RANGE, "%s: the device's binding limit is too small", name);
    for (uint64_t first = 0; first < d->n; first += chunk) {
        uint64_t n = d->n - first < chunk ? d->n - first : chunk;
        elt_push pc = {.n = (uint32_t)n, .base = (uint32_t)first, .b_inner = (uint32_t)d->b_inner,
                       .b_count = bcast ? (uint32_t)d->b_count : 0, .alpha = d->alpha, .beta = d->beta};
        if (first > UINT32_MAX && bcast)
            return df_error_set(err, DF_E_RANGE, "%s: broadcast over more than 2^32 elements", name);
        df_vk_binding binds[3];
        binds[0] = df_bind_span(a.ref, &ra, first, n, 0, &pc.off_a);
        if (binary)
            binds[1] = bcast ? df_bind_span(b.ref, &rb, 0, nb, 0, &pc.off_b) : df_bind_span(b.ref, &rb, first, n, 0, &pc.off_b);
        else
            binds[1] = binds[0]; /* unread, but the descriptor must be valid */
        binds[2] = df_bind_span(y.ref, &ry, first, n, 1, &pc.off_y);
        uint32_t vec = pc.off_a % 4 == 0 && (!binary || bcast || pc.off_b % 4 == 0);
        uint32_t spec[2] = {(uint32_t)d->op, vec};
        df_vk_pipeline_t *p = df_vk_pipeline_get(dev, &k_elt[y.dtype == DF_F16], spec, 2, err);
        if (!p)
            return err ? err->code : DF_E_VULKAN;
        uint32_t gx, gy;
        if ((rc = df_linear_grid(dev, (n / 4 + 1 + WG - 1) / WG, &gx, &gy, err)))
            return df_error_prefix(err, "%s", name);
        char label[48];
        snprintf(label, sizeof label, "%s %llu", name, (unsigned long long)n);
        if ((rc = df_vk_batch_dispatch(batch, p, binds, 3, &pc, gx, gy, 1, label, err)))
            return rc;
    }
    return DF_OK;
}
