/*  gemm.c - see gemm.h. */
#include "gemm.h"

#include <string.h>

#include "bind.h"
#include "vk_device.h"
#include "vk_pipeline.h"

/* Matches GemmPush in shaders/gemm_push.glsl. */
typedef struct {
    uint32_t m, n, k;
    uint32_t lda, ldb, ldc;
    uint32_t off_a, off_b, off_c;
    uint32_t stride_a, stride_b, stride_c;
    float alpha, beta;
    uint32_t off_bias;
} gemm_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_texel[2] = {
    {"gemm_texel_c32", 4, {T, T, S, T}, sizeof(gemm_push)},
    {"gemm_texel_c16", 4, {T, T, S, T}, sizeof(gemm_push)},
};
/* Indexed by a_f16 * 4 + b_f16 * 2 + c_f16. */
static const df_vk_kernel k_tiled[8] = {
    {"gemm_tiled_a32_b32_c32", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a32_b32_c16", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a32_b16_c32", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a32_b16_c16", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a16_b32_c32", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a16_b32_c16", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a16_b16_c32", 4, {S, S, S, T}, sizeof(gemm_push)},
    {"gemm_tiled_a16_b16_c16", 4, {S, S, S, T}, sizeof(gemm_push)},
};
#undef T
#undef S

#define TILED_TILE 64u

const char *df_gemm_path_name(df_gemm_path path)
{
    switch (path) {
    case DF_GEMM_AUTO: return "auto";
    case DF_GEMM_TEXEL: return "texel";
    case DF_GEMM_TILED: return "tiled";
    }
    return "?";
}

int df_gemm_path_parse(const char *name)
{
    for (int i = 0; i <= DF_GEMM_TILED; i++)
        if (name && strcmp(name, df_gemm_path_name((df_gemm_path)i)) == 0)
            return i;
    return -1;
}

df_gemm_path df_gemm_default_path(df_vk_device_t *dev)
{
    return df_vk_device_prefers_texel_tiles(dev) ? DF_GEMM_TEXEL : DF_GEMM_TILED;
}

/* A run of elements [first, first + extent) of one operand. */
typedef struct {
    uint64_t first, extent;
} span_t;

typedef struct {
    uint32_t b0, nb, m0, mc, n0, nc, k0, kc;
} chunk_t;

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static void chunk_spans(const df_gemm_desc *d, const chunk_t *c, span_t *a, span_t *b, span_t *cc)
{
    uint64_t nb1 = c->nb - 1;
    if (d->trans_a) {
        a->first = c->b0 * d->stride_a + (uint64_t)c->k0 * d->lda + c->m0;
        a->extent = nb1 * d->stride_a + (uint64_t)(c->kc - 1) * d->lda + c->mc;
    } else {
        a->first = c->b0 * d->stride_a + (uint64_t)c->m0 * d->lda + c->k0;
        a->extent = nb1 * d->stride_a + (uint64_t)(c->mc - 1) * d->lda + c->kc;
    }
    if (d->trans_b) {
        b->first = c->b0 * d->stride_b + (uint64_t)c->n0 * d->ldb + c->k0;
        b->extent = nb1 * d->stride_b + (uint64_t)(c->nc - 1) * d->ldb + c->kc;
    } else {
        b->first = c->b0 * d->stride_b + (uint64_t)c->k0 * d->ldb + c->n0;
        b->extent = nb1 * d->stride_b + (uint64_t)(c->kc - 1) * d->ldb + c->nc;
    }
    cc->first = c->b0 * d->stride_c + (uint64_t)c->m0 * d->ldc + c->n0;
    cc->extent = nb1 * d->stride_c + (uint64_t)(c->mc - 1) * d->ldc + c->nc;
}

static int span_fits(const df_bind_rules *r, const span_t *s) { return df_bind_fits(r, s->extent); }

/* Which operand does not fit: 0 none, 1 A, 2 B, 3 C. */
static int first_misfit(const df_gemm_desc *d, const chunk_t *c, const df_bind_rules rules[3])
{
    span_t s[3];
    chunk_spans(d, c, &s[0], &s[1], &s[2]);
    for (int i = 0; i < 3; i++)
        if (!span_fits(&rules[i], &s[i]))
            return i + 1;
    return 0;
}

typedef struct {
    const df_vk_kernel *kernel;
    uint32_t wg_x, wg_y;   /* invocations per workgroup */
    uint32_t cols_per_wg, rows_per_wg;
    uint32_t rows;         /* texel: rows per invocation */
    uint32_t cq;           /* texel: groups of 4 columns per invocation */
} kernel_shape;

static uint32_t pow2_ceil(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static void choose_shape(df_gemm_path path, const df_gemm_desc *d, kernel_shape *ks)
{
    memset(ks, 0, sizeof *ks);
    if (path == DF_GEMM_TILED) {
        ks->kernel = &k_tiled[(d->type_a == DF_F16) * 4 + (d->type_b == DF_F16) * 2 + (d->type_c == DF_F16)];
        ks->wg_x = ks->wg_y = 16;
        ks->cols_per_wg = ks->rows_per_wg = TILED_TILE;
        return;
    }
    ks->kernel = &k_texel[d->type_c == DF_F16];
    /* Measured on lavapipe (docs/performance.md): an 8 x 8 block of C per
     * invocation beats 16 x 4 (16 FMAs per fetch instead of 12.8) and 8 x 8
     * invocations per workgroup keep the 8 SIMD lanes on one row of blocks,
     * so they fetch the same A. Larger blocks spill registers. */
    if (d->m <= 8) {
        /* GEMV-like: one row of invocations, each owning all M rows. */
        ks->wg_x = 64, ks->wg_y = 1;
        ks->rows = pow2_ceil(d->m);
        ks->cq = 1;
    } else if (d->m < 128) {
        /* Short and wide (text-token rows): 16 x 4 blocks measured 2x faster
         * than 8 x 8 at 77 x 640 x 2048. */
        ks->wg_x = 8, ks->wg_y = 8;
        uint32_t per = pow2_ceil((d->m + 7) / 8);
        ks->rows = per > 16 ? 16 : per;
        ks->cq = 1;
    } else {
        ks->wg_x = 8, ks->wg_y = 8;
        ks->rows = 8;
        ks->cq = 2;
    }
    ks->cols_per_wg = 4 * ks->cq * ks->wg_x;
    ks->rows_per_wg = ks->rows * ks->wg_y;
}

static int rules_for(df_vk_device_t *dev, df_gemm_path path, int operand, df_dtype t, df_bind_rules *r,
                     df_error_t *err)
{
    if (path == DF_GEMM_TEXEL && operand < 2)
        return df_bind_rules_texel(dev, t, r, err);
    return df_bind_rules_storage(dev, t, r, err);
}

/* The epilogue as the kernels see it: rules for the bias binding, and a texel
 * view to bind when there is no bias (the slot still needs one). */
typedef struct {
    const df_gemm_epilogue *ep; /* NULL: none */
    df_bind_rules bias_rules;
    df_tensor_ref dummy;
    df_bind_rules dummy_rules;
} epi_t;

static int record_chunk(df_vk_batch_t *batch, const df_gemm_desc *d, df_tensor_ref A, df_tensor_ref B,
                        df_tensor_ref C, df_gemm_path path, const kernel_shape *ks,
                        const df_bind_rules rules[3], const epi_t *epi, const chunk_t *c, df_gemm_plan *plan,
                        df_error_t *err)
{
    span_t sa, sb, sc;
    chunk_spans(d, c, &sa, &sb, &sc);
    gemm_push pc = {
        .m = c->mc, .n = c->nc, .k = c->kc,
        .lda = d->lda, .ldb = d->ldb, .ldc = d->ldc,
        /* Strides only matter across the chunk's batch entries. */
        .stride_a = c->nb > 1 ? (uint32_t)d->stride_a : 0,
        .stride_b = c->nb > 1 ? (uint32_t)d->stride_b : 0,
        .stride_c = c->nb > 1 ? (uint32_t)d->stride_c : 0,
        .alpha = d->alpha,
        /* Later K chunks add onto what the earlier ones wrote. */
        .beta = c->k0 == 0 ? d->beta : 1.0f,
    };
    df_vk_binding binds[4] = {
        df_bind_span(A, &rules[0], sa.first, sa.extent, 0, &pc.off_a),
        df_bind_span(B, &rules[1], sb.first, sb.extent, 0, &pc.off_b),
        df_bind_span(C, &rules[2], sc.first, sc.extent, 1, &pc.off_c),
        df_bind_span(epi->dummy, &epi->dummy_rules, 0, 1, 0, &pc.off_bias),
    };
    /* The epilogue runs once, with the last piece of K. */
    uint32_t bias_mode = 0, act = 0;
    if (epi->ep && c->k0 + c->kc == d->k) {
        act = (uint32_t)epi->ep->act;
        if (epi->ep->bias.ref.buf) {
            bias_mode = epi->ep->bias_per_row ? 2 : 1;
            binds[3] = epi->ep->bias_per_row
                           ? df_bind_span(epi->ep->bias.ref, &epi->bias_rules, c->m0, c->mc, 0, &pc.off_bias)
                           : df_bind_span(epi->ep->bias.ref, &epi->bias_rules, c->n0, c->nc, 0, &pc.off_bias);
        }
    }
    uint32_t spec[10];
    uint32_t nspec;
    if (path == DF_GEMM_TEXEL) {
        int vec_a = pc.off_a % 4 == 0 && d->lda % 4 == 0 && pc.stride_a % 4 == 0 &&
                    (!d->trans_a || ks->rows % 4 == 0);
        int vec_b = pc.off_b % 4 == 0 && d->ldb % 4 == 0 && pc.stride_b % 4 == 0;
        spec[0] = ks->wg_x, spec[1] = ks->wg_y, spec[2] = ks->rows;
        spec[3] = !!d->trans_a, spec[4] = !!d->trans_b, spec[5] = vec_a, spec[6] = vec_b;
        spec[7] = ks->cq;
        spec[8] = bias_mode, spec[9] = act;
        nspec = 10;
        if (plan)
            plan->vec_a = vec_a, plan->vec_b = vec_b, plan->rows = ks->rows;
    } else {
        spec[0] = !!d->trans_a, spec[1] = !!d->trans_b;
        spec[2] = bias_mode, spec[3] = act;
        nspec = 4;
    }
    df_vk_pipeline_t *p = df_vk_pipeline_get(df_vk_batch_device(batch), ks->kernel, spec, nspec, err);
    if (!p)
        return err ? err->code : DF_E_VULKAN;
    char label[64];
    snprintf(label, sizeof label, "gemm_%s %ux%ux%u", df_gemm_path_name(path), c->mc, c->nc, c->kc);
    uint32_t gx = (uint32_t)div_up(c->nc, ks->cols_per_wg);
    uint32_t gy = (uint32_t)div_up(c->mc, ks->rows_per_wg);
    int rc = df_vk_batch_dispatch(batch, p, binds, 4, &pc, gx, gy, c->nb, label, err);
    if (!rc && plan)
        plan->dispatches++;
    return rc;
}

/* Splits one batch entry's M, N and K until every operand's window fits, then
 * records the pieces. */
static int record_split(df_vk_batch_t *batch, const df_gemm_desc *d, df_tensor_ref A, df_tensor_ref B,
                        df_tensor_ref C, df_gemm_path path, const kernel_shape *ks,
                        const df_bind_rules rules[3], const epi_t *epi, uint32_t max_mc, uint32_t max_nc,
                        df_gemm_plan *plan, df_error_t *err)
{
    chunk_t c = {.nb = 1, .mc = d->m < max_mc ? d->m : max_mc, .nc = d->n < max_nc ? d->n : max_nc, .kc = d->k};
    static const char *names[] = {"", "A", "B", "C"};
    for (;;) {
        int bad = first_misfit(d, &c, rules);
        if (!bad)
            break;
        /* Shrink the dimension that moves the offending operand's window. */
        uint32_t *dim;
        if (bad == 1)
            dim = d->trans_a ? &c.kc : &c.mc;
        else if (bad == 2)
            dim = d->trans_b ? &c.nc : &c.kc;
        else
            dim = &c.mc;
        if (*dim == 1)
            return df_error_set(err, DF_E_RANGE,
                                "gemm: one row of %s (leading dimension %u) does not fit in a binding of %llu bytes",
                                names[bad], bad == 1 ? d->lda : bad == 2 ? d->ldb : d->ldc,
                                (unsigned long long)rules[bad - 1].limit);
        *dim = (*dim + 1) / 2;
    }
    if (c.kc < d->k && d->type_c == DF_F16)
        return df_error_set(err, DF_E_UNSUPPORTED,
                            "gemm: K=%u must be split to fit the device's binding limit, which would round "
                            "partial sums of an f16 C to f16; use an f32 C", d->k);
    const chunk_t sizes = c;
    if (plan)
        plan->k_chunks = (uint32_t)div_up(d->k, sizes.kc);
    for (uint32_t b = 0; b < d->batch; b++)
        for (uint32_t m0 = 0; m0 < d->m; m0 += sizes.mc)
            for (uint32_t n0 = 0; n0 < d->n; n0 += sizes.nc)
                for (uint32_t k0 = 0; k0 < d->k; k0 += sizes.kc) {
                    chunk_t piece = {
                        .b0 = b, .nb = 1,
                        .m0 = m0, .mc = d->m - m0 < sizes.mc ? d->m - m0 : sizes.mc,
                        .n0 = n0, .nc = d->n - n0 < sizes.nc ? d->n - n0 : sizes.nc,
                        .k0 = k0, .kc = d->k - k0 < sizes.kc ? d->k - k0 : sizes.kc,
                    };
                    int rc = record_chunk(batch, d, A, B, C, path, ks, rules, epi, &piece, plan, err);
                    if (rc)
                        return rc;
                }
    return DF_OK;
}

int df_gemm(df_vk_batch_t *batch, const df_gemm_desc *d, df_tensor_ref A, df_tensor_ref B,
            df_tensor_ref C, df_gemm_path path, df_gemm_plan *plan, df_error_t *err)
{
    return df_gemm_ex(batch, d, A, B, C, NULL, path, plan, err);
}

static int check_epilogue(df_vk_device_t *dev, const df_gemm_desc *d, const df_gemm_epilogue *ep, epi_t *epi,
                          df_error_t *err)
{
    epi->ep = ep;
    if (!ep)
        return DF_OK;
    switch (ep->act) {
    case DF_ELT_COPY: case DF_ELT_SILU: case DF_ELT_GELU_TANH: case DF_ELT_GELU_ERF: case DF_ELT_QUICK_GELU: break;
    default:
        return df_error_set(err, DF_E_UNSUPPORTED, "gemm: epilogue activation %s (supported: copy, silu, gelu_tanh, "
                            "gelu_erf, quick_gelu)", df_elt_op_name(ep->act));
    }
    if (!ep->bias.ref.buf)
        return DF_OK;
    int rc = df_bind_rules_texel(dev, ep->bias.dtype, &epi->bias_rules, err);
    if (rc)
        return df_error_prefix(err, "gemm: bias");
    return df_bind_check("gemm", "bias", ep->bias.ref, ep->bias_per_row ? d->m : d->n, epi->bias_rules.es, err);
}

static int gemm_record(df_vk_batch_t *batch, const df_gemm_desc *d, df_tensor_ref A, df_tensor_ref B, df_tensor_ref C,
               const df_gemm_epilogue *epilogue, df_gemm_path path, df_gemm_plan *plan, df_error_t *err)
{
    int rc = df_gemm_desc_check(d, err);
    if (rc)
        return rc;
    if ((rc = df_bind_check("gemm", "A", A, df_gemm_extent_a(d), (uint32_t)df_dtype_size(d->type_a), err)) ||
        (rc = df_bind_check("gemm", "B", B, df_gemm_extent_b(d), (uint32_t)df_dtype_size(d->type_b), err)) ||
        (rc = df_bind_check("gemm", "C", C, df_gemm_extent_c(d), (uint32_t)df_dtype_size(d->type_c), err)))
        return rc;
    if (A.buf == C.buf || B.buf == C.buf) {
        /* Same allocation is fine only when the ranges are disjoint. */
        uint64_t c0 = C.offset, c1 = C.offset + df_gemm_extent_c(d) * df_dtype_size(d->type_c);
        uint64_t a0 = A.offset, a1 = A.offset + df_gemm_extent_a(d) * df_dtype_size(d->type_a);
        uint64_t b0 = B.offset, b1 = B.offset + df_gemm_extent_b(d) * df_dtype_size(d->type_b);
        if ((A.buf == C.buf && a0 < c1 && c0 < a1) || (B.buf == C.buf && b0 < c1 && c0 < b1))
            return df_error_set(err, DF_E_INVALID, "gemm: C overlaps an input (in-place GEMM is not supported)");
    }

    df_vk_device_t *dev = df_vk_batch_device(batch);
    if (path == DF_GEMM_AUTO)
        path = df_gemm_default_path(dev);
    if (path != DF_GEMM_TEXEL && path != DF_GEMM_TILED)
        return df_error_set(err, DF_E_INVALID, "gemm: unknown kernel path %d", (int)path);
    int need16_storage = d->type_c == DF_F16 ||
                         (path == DF_GEMM_TILED && (d->type_a == DF_F16 || d->type_b == DF_F16));
    if (need16_storage && !df_vk_device_has_fp16_storage(dev))
        return df_error_set(err, DF_E_UNSUPPORTED, "gemm: f16 operands need 16-bit storage, which %s lacks",
                            df_vk_device_info_of(dev)->name);
    if (path == DF_GEMM_TEXEL && (d->type_a == DF_F16 || d->type_b == DF_F16) &&
        !df_vk_device_has_fp16_texel(dev))
        return df_error_set(err, DF_E_UNSUPPORTED, "gemm: %s cannot read f16 texel buffers; use the tiled path",
                            df_vk_device_info_of(dev)->name);

    /* The kernels' act_by_code takes df_elt_op's numbers. */
    _Static_assert(DF_ELT_SILU == 4 && DF_ELT_GELU_TANH == 5 && DF_ELT_GELU_ERF == 6 && DF_ELT_QUICK_GELU == 7,
                   "shaders/activations.glsl act_by_code codes");
    epi_t epi;
    if ((rc = check_epilogue(dev, d, epilogue, &epi, err)))
        return rc;
    /* Without a bias the kernels still need a texel view in its slot: A's. */
    epi.dummy = A;
    if ((rc = df_bind_rules_texel(dev, d->type_a, &epi.dummy_rules, err)))
        return df_error_prefix(err, "gemm");
    df_bind_rules rules[3];
    if ((rc = rules_for(dev, path, 0, d->type_a, &rules[0], err)) ||
        (rc = rules_for(dev, path, 1, d->type_b, &rules[1], err)) ||
        (rc = rules_for(dev, path, 2, d->type_c, &rules[2], err)))
        return df_error_prefix(err, "gemm");
    kernel_shape ks;
    choose_shape(path, d, &ks);
    if (plan) {
        memset(plan, 0, sizeof *plan);
        plan->path = path;
        plan->k_chunks = 1;
    }

    const df_vk_device_info *info = df_vk_device_info_of(dev);
    uint64_t max_mc = (uint64_t)info->max_group_count[1] * ks.rows_per_wg;
    uint64_t max_nc = (uint64_t)info->max_group_count[0] * ks.cols_per_wg;
    /* Largest number of batch entries per dispatch whose windows fit. */
    uint32_t nb = 0;
    if (d->m <= max_mc && d->n <= max_nc) {
        uint32_t lo = 0, hi = d->batch < info->max_group_count[2] ? d->batch : info->max_group_count[2];
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo + 1) / 2;
            chunk_t c = {.nb = mid, .mc = d->m, .nc = d->n, .kc = d->k};
            if (first_misfit(d, &c, rules) == 0)
                lo = mid;
            else
                hi = mid - 1;
        }
        nb = lo;
    }
    if (nb == 0)
        return record_split(batch, d, A, B, C, path, &ks, rules, &epi, (uint32_t)min_u64(max_mc, d->m),
                            (uint32_t)min_u64(max_nc, d->n), plan, err);
    for (uint32_t b0 = 0; b0 < d->batch; b0 += nb) {
        chunk_t c = {.b0 = b0, .nb = d->batch - b0 < nb ? d->batch - b0 : nb, .mc = d->m, .nc = d->n, .kc = d->k};
        if ((rc = record_chunk(batch, d, A, B, C, path, &ks, rules, &epi, &c, plan, err)))
            return rc;
    }
    return DF_OK;
}

int df_gemm_ex(df_vk_batch_t *batch, const df_gemm_desc *d, df_tensor_ref A, df_tensor_ref B, df_tensor_ref C,
               const df_gemm_epilogue *epilogue, df_gemm_path path, df_gemm_plan *plan, df_error_t *err)
{
    int rc = gemm_record(batch, d, A, B, C, epilogue, path, plan, err);
    if (rc == DF_OK)
        df_vk_batch_count_flops(batch, df_gemm_flops(d));
    return rc;
}
