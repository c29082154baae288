/*  test_attention.c - fused attention against a double-precision reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "ops_tests.h"

typedef struct {
    uint32_t batch, heads, nq, nk, dim;
    int causal;
    int fused_qkv; /* Q, K, V as column slices of one [tokens, 3 * heads * dim] tensor (self-attention) */
    df_dtype t;
} attn_case;

/* Reference for one (b, h, i): O row and its bound. The error of score j is
 * the dot product's (gamma_dim of the magnitudes) plus exp's (3 + 2|s - m|
 * ulp); a score error moves O by p_j |v_j - O|. Accumulating nk terms (and
 * rescaling) adds (nk + 8) ulp of sum p_j |v_j|. */
static void ref_row(const attn_case *c, const df_attn_desc *d, const float *q, const float *k, const float *v,
                    uint32_t b, uint32_t h, uint32_t i, double *out, double *bound, double *lse)
{
    uint32_t nvis = c->causal ? i + 1 + (c->nk - c->nq) : c->nk;
    double *s = malloc(nvis * sizeof *s), *ds = malloc(nvis * sizeof *ds);
    double m = -INFINITY;
    const float *qr = q + b * d->bsq + (uint64_t)i * d->ldq + h * c->dim;
    for (uint32_t j = 0; j < nvis; j++) {
        const float *kr = k + b * d->bsk + (uint64_t)j * d->ldk + h * c->dim;
        double dot = 0, mag = 0;
        for (uint32_t e = 0; e < c->dim; e++)
            dot += (double)qr[e] * kr[e], mag += fabs((double)qr[e] * kr[e]);
        s[j] = dot * d->scale;
        ds[j] = (c->dim + 2) * U32 * mag * d->scale;
        m = fmax(m, s[j]);
    }
    double l = 0;
    for (uint32_t j = 0; j < nvis; j++) {
        ds[j] += (3 + 2 * fabs(s[j] - m)) * U32;
        s[j] = exp(s[j] - m);
        l += s[j];
    }
    for (uint32_t e = 0; e < c->dim; e++) {
        double o = 0;
        for (uint32_t j = 0; j < nvis; j++)
            o += s[j] / l * v[b * d->bsv + (uint64_t)j * d->ldv + h * c->dim + e];
        double bd = 0;
        for (uint32_t j = 0; j < nvis; j++) {
            double vj = v[b * d->bsv + (uint64_t)j * d->ldv + h * c->dim + e];
            bd += s[j] / l * (fabs(vj - o) * ds[j] + (nvis + 8) * U32 * fabs(vj));
        }
        out[e] = o;
        bound[e] = bd + 4 * U32 * fabs(o);
    }
    *lse = m + log(l);
    free(s), free(ds);
}

static void run_attn(op_env *env, const attn_case *c)
{
    df_error_t err;
    df_error_clear(&err);
    uint32_t row = c->heads * c->dim;
    df_attn_desc d = {.batch = c->batch, .heads = c->heads, .nq = c->nq, .nk = c->nk, .dim = c->dim, .causal = c->causal};
    op_tensor qkv = {0}, q = {0}, k = {0}, v = {0};
    df_tensor tq, tk, tv;
    const float *hq, *hk, *hv;
    if (c->fused_qkv) {
        d.ldq = d.ldk = d.ldv = 3 * row;
        qkv = op_tensor_normal(env, (uint64_t)c->batch * c->nq * 3 * row, c->t, 0, 1.0f);
        tq = tk = tv = qkv.t;
        uint32_t es = (uint32_t)df_dtype_size(c->t);
        tk.ref.offset += (uint64_t)row * es;
        tv.ref.offset += 2ull * row * es;
        hq = qkv.host, hk = qkv.host + row, hv = qkv.host + 2 * row;
    } else {
        q = op_tensor_normal(env, (uint64_t)c->batch * c->nq * row, c->t, 0, 1.0f);
        k = op_tensor_normal(env, (uint64_t)c->batch * c->nk * row, c->t, 1, 1.0f);
        v = op_tensor_normal(env, (uint64_t)c->batch * c->nk * row, c->t, 2, 1.0f);
        tq = q.t, tk = k.t, tv = v.t;
        hq = q.host, hk = k.host, hv = v.host;
    }
    uint64_t no = (uint64_t)c->batch * c->nq * row;
    op_tensor o = op_tensor_output(env, no, c->t, 0);
    op_tensor lse = op_tensor_output(env, df_attn_lse_elems(&d), DF_F32, 0);
    int rc = df_attention_forward(env->batch, &d, tq, tk, tv, o.t, lse.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &o, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, lse.buf, 0, lse.host, lse.n, DF_F32, &err);
    char what[128];
    snprintf(what, sizeof what, "attention b=%u h=%u nq=%u nk=%u dim=%u%s%s %s", c->batch, c->heads, c->nq, c->nk,
             c->dim, c->causal ? " causal" : "", c->fused_qkv ? " fused-qkv" : "", df_dtype_name(c->t));
    int fails = 0;
    if (!rc) {
        /* The normalized descriptor (defaults filled) for indexing. */
        df_attn_desc n = d;
        if (!n.ldq)
            n.ldq = n.ldk = n.ldv = row;
        n.ldo = row;
        n.bsq = (uint64_t)c->nq * n.ldq, n.bsk = (uint64_t)c->nk * n.ldk, n.bsv = (uint64_t)c->nk * n.ldv;
        n.scale = 1.0f / sqrtf((float)c->dim);
        double *ref = malloc(no * sizeof *ref), *bound = malloc(no * sizeof *bound);
        double *lref = malloc(lse.n * sizeof *lref), *lbound = malloc(lse.n * sizeof *lbound);
        for (uint32_t b = 0; b < c->batch; b++)
            for (uint32_t h = 0; h < c->heads; h++)
                for (uint32_t i = 0; i < c->nq; i++) {
                    uint64_t ob = ((uint64_t)b * c->nq + i) * row + h * c->dim;
                    uint64_t li = ((uint64_t)b * c->heads + h) * c->nq + i;
                    ref_row(c, &n, hq, hk, hv, b, h, i, ref + ob, bound + ob, &lref[li]);
                    for (uint32_t e = 0; e < c->dim; e++)
                        bound[ob + e] += op_store_bound(c->t, ref[ob + e]);
                    lbound[li] = (c->dim + c->nk + 16) * U32 * (fabs(lref[li]) + 4);
                }
        fails += op_compare(what, o.host, ref, bound, no);
        char w2[160];
        snprintf(w2, sizeof w2, "%s lse", what);
        fails += op_compare(w2, lse.host, lref, lbound, lse.n);
        free(ref), free(bound), free(lref), free(lbound);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&qkv), op_tensor_free(&q), op_tensor_free(&k), op_tensor_free(&v), op_tensor_free(&o);
    op_tensor_free(&lse);
}

void test_op_attention(op_env *env)
{
    static const attn_case cases[] = {
        {1, 1, 1, 1, 64, 0, 0, DF_F32},
        {2, 3, 17, 23, 64, 0, 0, DF_F32},   /* odd sizes, key tail */
        {1, 2, 77, 77, 64, 1, 1, DF_F32},   /* CLIP: causal, fused QKV */
        {2, 2, 100, 77, 64, 0, 0, DF_F16},  /* cross-attention to the text tokens */
        {1, 5, 256, 256, 64, 0, 1, DF_F16}, /* self-attention, fused QKV */
        {1, 2, 9, 13, 8, 1, 0, DF_F32},     /* small head, causal with nk > nq */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_attn(env, &cases[i]);
}

void test_op_attention_errors(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    op_tensor t = op_tensor_normal(env, 1024, DF_F32, 0, 1.0f);
    int bad = 0;
    df_attn_desc d = {.batch = 1, .heads = 1, .nq = 4, .nk = 4, .dim = 6};
    bad += df_attention_forward(env->batch, &d, t.t, t.t, t.t, t.t, (df_tensor){0}, &err) != DF_E_UNSUPPORTED;
    df_error_clear(&err);
    d.dim = 64, d.nq = 100;
    bad += df_attention_forward(env->batch, &d, t.t, t.t, t.t, t.t, (df_tensor){0}, &err) != DF_E_RANGE;
    df_error_clear(&err);
    d.nq = 8, d.nk = 4, d.causal = 1;
    bad += df_attention_forward(env->batch, &d, t.t, t.t, t.t, t.t, (df_tensor){0}, &err) != DF_E_INVALID;
    df_error_clear(&err);
    d = (df_attn_desc){.batch = 1, .heads = 2, .nq = 2, .nk = 2, .dim = 8, .ldq = 8};
    bad += df_attention_forward(env->batch, &d, t.t, t.t, t.t, t.t, (df_tensor){0}, &err) != DF_E_INVALID;
    if (bad)
        fprintf(stderr, "  FAIL attention error paths: %d checks\n", bad);
    op_case_done(env, "attention error paths", bad, 0, NULL);
    op_tensor_free(&t);
}
