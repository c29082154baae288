/*  attention.c - see attention.h. */
#include "attention.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"

typedef struct {
    uint32_t batches, heads, nq, nk;
    uint32_t ldq, ldk, ldv, ldo;
    uint32_t bsq, bsk, bsv, bso;
    uint32_t off_q, off_k, off_v, off_o, off_l;
    float scale;
    uint32_t causal_shift;
} attn_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_fwd[2] = {
    {"attention_y32", 5, {T, T, T, S, S}, sizeof(attn_push)},
    {"attention_y16", 5, {T, T, T, S, S}, sizeof(attn_push)},
};
#undef T
#undef S

uint64_t df_attn_lse_elems(const df_attn_desc *d) { return (uint64_t)d->batch * d->heads * d->nq; }

/* Fills the defaults and checks the shape. */
static int normalize(const df_attn_desc *in, df_attn_desc *d, const char *name, df_error_t *err)
{
    *d = *in;
    if (!d->batch || !d->heads || !d->nq || !d->nk || !d->dim)
        return df_error_set(err, DF_E_INVALID, "%s: empty shape (batch %u, heads %u, nq %u, nk %u, dim %u)", name,
                            d->batch, d->heads, d->nq, d->nk, d->dim);
    if (d->dim % 4 || d->dim > 128)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: head dimension %u (a multiple of 4 up to 128)", name, d->dim);
    uint32_t row = d->heads * d->dim;
    if (!d->ldq) d->ldq = row;
    if (!d->ldk) d->ldk = row;
    if (!d->ldv) d->ldv = row;
    if (!d->ldo) d->ldo = row;
    if (d->ldq < row || d->ldk < row || d->ldv < row || d->ldo < row)
        return df_error_set(err, DF_E_INVALID, "%s: a row stride is smaller than heads * dim = %u", name, row);
    if (!d->bsq) d->bsq = (uint64_t)d->nq * d->ldq;
    if (!d->bsk) d->bsk = (uint64_t)d->nk * d->ldk;
    if (!d->bsv) d->bsv = (uint64_t)d->nk * d->ldv;
    if (!d->bso) d->bso = (uint64_t)d->nq * d->ldo;
    if (d->scale == 0)
        d->scale = 1.0f / sqrtf((float)d->dim);
    if (d->causal && d->nk < d->nq)
        return df_error_set(err, DF_E_INVALID, "%s: causal attention needs nk >= nq", name);
    return DF_OK;
}

static uint64_t extent(uint64_t batches, uint64_t bs, uint64_t rows, uint64_t ld, uint64_t row)
{
    return (batches - 1) * bs + (rows - 1) * ld + row;
}

static int forward_record(df_vk_batch_t *batch, const df_attn_desc *desc, df_tensor q, df_tensor k, df_tensor v,
                          df_tensor o, df_tensor lse, df_error_t *err)
{
    const char *name = "attention";
    df_attn_desc d;
    int rc = normalize(desc, &d, name, err);
    if (rc)
        return rc;
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rq, rk, rv, ro, rl;
    if ((rc = df_bind_rules_texel(dev, q.dtype, &rq, err)) || (rc = df_bind_rules_texel(dev, k.dtype, &rk, err)) ||
        (rc = df_bind_rules_texel(dev, v.dtype, &rv, err)) || (rc = df_bind_rules_storage(dev, o.dtype, &ro, err)) ||
        (rc = df_bind_rules_storage(dev, DF_F32, &rl, err)))
        return df_error_prefix(err, "%s", name);
    uint32_t row = d.heads * d.dim;
    int with_lse = lse.ref.buf != NULL;
    if ((rc = df_bind_check(name, "q", q.ref, extent(d.batch, d.bsq, d.nq, d.ldq, row), rq.es, err)) ||
        (rc = df_bind_check(name, "k", k.ref, extent(d.batch, d.bsk, d.nk, d.ldk, row), rk.es, err)) ||
        (rc = df_bind_check(name, "v", v.ref, extent(d.batch, d.bsv, d.nk, d.ldv, row), rv.es, err)) ||
        (rc = df_bind_check(name, "o", o.ref, extent(d.batch, d.bso, d.nq, d.ldo, row), ro.es, err)) ||
        (with_lse && (rc = df_bind_check(name, "lse", lse.ref, df_attn_lse_elems(&d), 4, err))))
        return rc;
    if (with_lse && lse.dtype != DF_F32)
        return df_error_set(err, DF_E_INVALID, "%s: lse must be f32", name);
    /* Windows: whole batch entries while they fit; else one entry at a time,
     * split by heads and then by query rows. */
    uint64_t per = d.batch;
    while (per > 1 && (!df_bind_fits(&rq, extent(per, d.bsq, d.nq, d.ldq, row)) ||
                       !df_bind_fits(&rk, extent(per, d.bsk, d.nk, d.ldk, row)) ||
                       !df_bind_fits(&rv, extent(per, d.bsv, d.nk, d.ldv, row)) ||
                       !df_bind_fits(&ro, extent(per, d.bso, d.nq, d.ldo, row))))
        per = (per + 1) / 2;
    uint32_t hc = d.heads, nqc = d.nq;
    for (;;) {
        uint64_t w = (uint64_t)hc * d.dim;
        int kv_fit = df_bind_fits(&rk, extent(1, 0, d.nk, d.ldk, w)) && df_bind_fits(&rv, extent(1, 0, d.nk, d.ldv, w));
        int q_fit = df_bind_fits(&rq, extent(1, 0, nqc, d.ldq, w)) && df_bind_fits(&ro, extent(1, 0, nqc, d.ldo, w));
        if (kv_fit && q_fit)
            break;
        if (hc > 1) {
            hc = (hc + 1) / 2;
        } else if (!kv_fit) {
            return df_error_set(err, DF_E_RANGE, "%s: the keys and values of one head (%u x %u) do not fit a binding",
                                name, d.nk, d.dim);
        } else if (nqc > 1) {
            nqc = (nqc + 1) / 2;
        }
    }
    if (hc < d.heads || nqc < d.nq)
        per = 1;
    for (uint64_t b0 = 0; b0 < d.batch; b0 += per)
        for (uint32_t h0 = 0; h0 < d.heads; h0 += hc)
            for (uint32_t i0 = 0; i0 < d.nq; i0 += nqc) {
                uint64_t nb = d.batch - b0 < per ? d.batch - b0 : per;
                uint32_t nh = d.heads - h0 < hc ? d.heads - h0 : hc, nr = d.nq - i0 < nqc ? d.nq - i0 : nqc;
                uint64_t w = (uint64_t)nh * d.dim;
                attn_push pc = {.batches = (uint32_t)nb, .heads = nh, .nq = nr, .nk = d.nk, .ldq = d.ldq,
                                .ldk = d.ldk, .ldv = d.ldv, .ldo = d.ldo, .bsq = nb > 1 ? (uint32_t)d.bsq : 0,
                                .bsk = nb > 1 ? (uint32_t)d.bsk : 0, .bsv = nb > 1 ? (uint32_t)d.bsv : 0,
                                .bso = nb > 1 ? (uint32_t)d.bso : 0, .scale = d.scale,
                                /* Causal visibility follows the global row index. */
                                .causal_shift = d.nk - d.nq + i0};
                uint64_t hoff = (uint64_t)h0 * d.dim;
                df_vk_binding b[5];
                b[0] = df_bind_span(q.ref, &rq, b0 * d.bsq + i0 * (uint64_t)d.ldq + hoff,
                                    extent(nb, d.bsq, nr, d.ldq, w), 0, &pc.off_q);
                b[1] = df_bind_span(k.ref, &rk, b0 * d.bsk + hoff, extent(nb, d.bsk, d.nk, d.ldk, w), 0, &pc.off_k);
                b[2] = df_bind_span(v.ref, &rv, b0 * d.bsv + hoff, extent(nb, d.bsv, d.nk, d.ldv, w), 0, &pc.off_v);
                b[3] = df_bind_span(o.ref, &ro, b0 * d.bso + i0 * (uint64_t)d.ldo + hoff,
                                    extent(nb, d.bso, nr, d.ldo, w), 1, &pc.off_o);
                /* lse is [batch][heads][nq]: a chunk is contiguous (one head when rows split). */
                uint64_t lfirst = (b0 * d.heads + h0) * (uint64_t)d.nq + i0;
                b[4] = with_lse ? df_bind_span(lse.ref, &rl, lfirst, nb * nh * (uint64_t)nr, 1, &pc.off_l) : b[3];
                int vec = pc.off_q % 4 == 0 && pc.off_k % 4 == 0 && pc.off_v % 4 == 0 && d.ldq % 4 == 0 &&
                          d.ldk % 4 == 0 && d.ldv % 4 == 0 && pc.bsq % 4 == 0 && pc.bsk % 4 == 0 && pc.bsv % 4 == 0;
                /* Query rows per invocation: on CPU drivers each fetched key and
                 * value then serves eight rows (24.7 GFLOPS at 4096 tokens against
                 * 6.9 with one, docs/performance.md); more spills registers. GPUs
                 * keep one. */
                uint32_t rows_per = df_vk_device_prefers_texel_tiles(dev) ? 8 : 1;
                uint32_t spec[5] = {d.dim, (uint32_t)!!d.causal, (uint32_t)vec, (uint32_t)with_lse, rows_per};
                char label[64];
                snprintf(label, sizeof label, "attention %llux%ux%ux%u", (unsigned long long)nb, nh, nr, d.nk);
                if ((rc = df_dispatch_1d(batch, &k_fwd[o.dtype == DF_F16], spec, 5, b, 5, &pc,
                                         nb * nh * ((nr + rows_per - 1) / rows_per), 64, label, err)))
                    return rc;
            }
    return DF_OK;
}

int df_attention_forward(df_vk_batch_t *batch, const df_attn_desc *desc, df_tensor q, df_tensor k, df_tensor v, df_tensor o,
                         df_tensor lse, df_error_t *err)
{
    int rc = forward_record(batch, desc, q, k, v, o, lse, err);
    if (rc == DF_OK)
        df_vk_batch_count_flops(batch, 4.0 * desc->batch * desc->heads * desc->nq * desc->nk * desc->dim);
    return rc;
}

typedef struct {
    uint32_t batches, heads, nq, nk;
    uint32_t lda, ldk, ldv, lddo;
    uint32_t bsa, bsk, bsv, bsdo;
    uint32_t off_a, off_k, off_v, off_do, off_aux, off_1, off_2;
    uint32_t ld1, bs1;
    float scale;
} bwd_push;

#define T DF_VK_BIND_TEXEL
#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_bwd = {"attention_bwd", 7, {T, T, T, T, T, S, S}, sizeof(bwd_push)};
#undef T
#undef S

static int backward_record(df_vk_batch_t *batch, const df_attn_desc *desc, df_tensor q, df_tensor k, df_tensor v,
                           df_tensor o, df_tensor lse, df_tensor dout, df_tensor dq, df_tensor dk, df_tensor dv,
                           df_error_t *err)
{
    const char *name = "attention_bwd";
    df_attn_desc d;
    int rc = normalize(desc, &d, name, err);
    if (rc)
        return rc;
    if (d.ldk != d.ldv || d.bsk != d.bsv)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: k and v must share row and batch strides (dK and dV are laid out alike)",
                            name);
    if (dq.dtype != DF_F32 || dk.dtype != DF_F32 || dv.dtype != DF_F32 || lse.dtype != DF_F32)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: lse and the gradients dq, dk, dv must be f32", name);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rq, rk, rv, ro, rdo, rf, rs;
    if ((rc = df_bind_rules_texel(dev, q.dtype, &rq, err)) || (rc = df_bind_rules_texel(dev, k.dtype, &rk, err)) ||
        (rc = df_bind_rules_texel(dev, v.dtype, &rv, err)) || (rc = df_bind_rules_texel(dev, o.dtype, &ro, err)) ||
        (rc = df_bind_rules_texel(dev, dout.dtype, &rdo, err)) || (rc = df_bind_rules_texel(dev, DF_F32, &rf, err)) ||
        (rc = df_bind_rules_storage(dev, DF_F32, &rs, err)))
        return df_error_prefix(err, "%s", name);
    uint32_t row = d.heads * d.dim;
    uint64_t eq = extent(d.batch, d.bsq, d.nq, d.ldq, row), ek = extent(d.batch, d.bsk, d.nk, d.ldk, row);
    uint64_t eo = extent(d.batch, d.bso, d.nq, d.ldo, row);
    uint64_t rows = df_attn_lse_elems(&d);
    if ((rc = df_bind_check(name, "q", q.ref, eq, rq.es, err)) || (rc = df_bind_check(name, "k", k.ref, ek, rk.es, err)) ||
        (rc = df_bind_check(name, "v", v.ref, ek, rv.es, err)) || (rc = df_bind_check(name, "o", o.ref, eo, ro.es, err)) ||
        (rc = df_bind_check(name, "dout", dout.ref, eo, rdo.es, err)) ||
        (rc = df_bind_check(name, "lse", lse.ref, rows, 4, err)) || (rc = df_bind_check(name, "dq", dq.ref, eq, 4, err)) ||
        (rc = df_bind_check(name, "dk", dk.ref, ek, 4, err)) || (rc = df_bind_check(name, "dv", dv.ref, ek, 4, err)))
        return rc;
    /* The whole problem in one window per tensor (training shapes are far
     * below the limits; a larger one is refused rather than split). */
    if (!df_bind_fits(&rq, eq) || !df_bind_fits(&rk, ek) || !df_bind_fits(&rv, ek) || !df_bind_fits(&ro, eo) ||
        !df_bind_fits(&rdo, eo) || !df_bind_fits(&rs, eq) || !df_bind_fits(&rs, ek) || !df_bind_fits(&rs, 2 * rows))
        return df_error_set(err, DF_E_RANGE, "%s: a tensor is larger than one binding; split the batch", name);
    df_vk_buffer_t *aux_buf = df_vk_buffer_new(dev, 8 * rows, err);
    const df_vk_buffer_t *aux = aux_buf;
    if (!aux_buf || df_vk_batch_hold(batch, &aux_buf, err))
        return err ? err->code : DF_E_DEVICE_MEMORY;
    uint32_t r_rows = df_vk_device_prefers_texel_tiles(dev) ? 4 : 1;
    for (uint32_t stage = 0; stage < 3; stage++) {
        bwd_push pc = {.batches = d.batch, .heads = d.heads, .nq = d.nq, .nk = d.nk, .lda = stage ? d.ldq : d.ldo,
                       .ldk = d.ldk, .ldv = d.ldv, .lddo = d.ldo, .bsa = (uint32_t)(stage ? d.bsq : d.bso),
                       .bsk = (uint32_t)d.bsk, .bsv = (uint32_t)d.bsv, .bsdo = (uint32_t)d.bso, .scale = d.scale};
        df_vk_binding b[7];
        b[0] = stage ? df_bind_span(q.ref, &rq, 0, eq, 0, &pc.off_a) : df_bind_span(o.ref, &ro, 0, eo, 0, &pc.off_a);
        b[1] = df_bind_span(k.ref, &rk, 0, ek, 0, &pc.off_k);
        b[2] = df_bind_span(v.ref, &rv, 0, ek, 0, &pc.off_v);
        b[3] = df_bind_span(dout.ref, &rdo, 0, eo, 0, &pc.off_do);
        b[4] = stage ? df_bind_span(df_ref(aux, 0), &rf, 0, 2 * rows, 0, &pc.off_aux)
                     : df_bind_span(lse.ref, &rf, 0, rows, 0, &pc.off_aux);
        uint64_t items;
        if (stage == 0) {
            b[6] = df_bind_span(df_ref(aux, 0), &rs, 0, 2 * rows, 1, &pc.off_2);
            b[5] = b[6];
            items = rows;
        } else if (stage == 1) {
            b[5] = df_bind_span(dq.ref, &rs, 0, eq, 1, &pc.off_1);
            b[6] = b[5];
            pc.ld1 = d.ldq, pc.bs1 = (uint32_t)d.bsq;
            items = (uint64_t)d.batch * d.heads * ((d.nq + r_rows - 1) / r_rows);
        } else {
            b[5] = df_bind_span(dk.ref, &rs, 0, ek, 1, &pc.off_1);
            b[6] = df_bind_span(dv.ref, &rs, 0, ek, 1, &pc.off_2);
            pc.ld1 = d.ldk, pc.bs1 = (uint32_t)d.bsk;
            items = (uint64_t)d.batch * d.heads * ((d.nk + r_rows - 1) / r_rows);
        }
        uint32_t spec[4] = {d.dim, (uint32_t)!!d.causal, stage, r_rows};
        static const char *labels[] = {"attention_bwd aux", "attention_bwd dq", "attention_bwd dkv"};
        if ((rc = df_dispatch_1d(batch, &k_bwd, spec, 4, b, 7, &pc, items, 64, labels[stage], err)))
            return rc;
    }
    return DF_OK;
}

int df_attention_backward(df_vk_batch_t *batch, const df_attn_desc *desc, df_tensor q, df_tensor k, df_tensor v,
                          df_tensor o, df_tensor lse, df_tensor dout, df_tensor dq, df_tensor dk, df_tensor dv,
                          df_error_t *err)
{
    int rc = backward_record(batch, desc, q, k, v, o, lse, dout, dq, dk, dv, err);
    if (rc == DF_OK)
        df_vk_batch_count_flops(batch, 10.0 * desc->batch * desc->heads * desc->nq * desc->nk * desc->dim);
    return rc;
}
