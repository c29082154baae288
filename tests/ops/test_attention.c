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

/* A shape whose batch entries outgrow 64 KiB bindings (test_ops_windows):
 * the forward pass splits it by query rows. (Splitting by heads barely
 * shrinks a window, as rows interleave the heads; causal row splits need Q
 * rows wider than K rows, which no SDXL layout has.) */
void test_op_attention_split(op_env *env)
{
    static const attn_case cases[] = {
        {2, 4, 300, 40, 64, 0, 0, DF_F32}, /* rows split: 300 x 256 floats per entry */
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

/* ---- backward ---- */

/* O for all rows in double (dense layout [b][i][h*dim + e]), used by the
 * finite differences. */
static void forward_all(const attn_case *c, const double *q, const double *k, const double *v, double *o)
{
    uint32_t row = c->heads * c->dim;
    double scale = 1 / sqrt((double)c->dim);
    double *s = malloc(c->nk * sizeof *s);
    for (uint32_t b = 0; b < c->batch; b++)
        for (uint32_t h = 0; h < c->heads; h++)
            for (uint32_t i = 0; i < c->nq; i++) {
                uint32_t nvis = c->causal ? i + 1 + (c->nk - c->nq) : c->nk;
                double m = -INFINITY, l = 0;
                for (uint32_t j = 0; j < nvis; j++) {
                    double dot = 0;
                    for (uint32_t e = 0; e < c->dim; e++)
                        dot += q[((uint64_t)b * c->nq + i) * row + h * c->dim + e] *
                               k[((uint64_t)b * c->nk + j) * row + h * c->dim + e];
                    s[j] = dot * scale;
                    m = fmax(m, s[j]);
                }
                for (uint32_t j = 0; j < nvis; j++)
                    l += s[j] = exp(s[j] - m);
                for (uint32_t e = 0; e < c->dim; e++) {
                    double acc = 0;
                    for (uint32_t j = 0; j < nvis; j++)
                        acc += s[j] / l * v[((uint64_t)b * c->nk + j) * row + h * c->dim + e];
                    o[((uint64_t)b * c->nq + i) * row + h * c->dim + e] = acc;
                }
            }
    free(s);
}

static double loss_of(const attn_case *c, const double *q, const double *k, const double *v, const float *dout,
                      double *o)
{
    forward_all(c, q, k, v, o);
    double L = 0;
    for (uint64_t i = 0; i < (uint64_t)c->batch * c->nq * c->heads * c->dim; i++)
        L += dout[i] * o[i];
    return L;
}

static void run_attn_bwd(op_env *env, const attn_case *c)
{
    df_error_t err;
    df_error_clear(&err);
    uint32_t row = c->heads * c->dim;
    df_attn_desc d = {.batch = c->batch, .heads = c->heads, .nq = c->nq, .nk = c->nk, .dim = c->dim, .causal = c->causal};
    uint64_t nqe = (uint64_t)c->batch * c->nq * row, nke = (uint64_t)c->batch * c->nk * row;
    op_tensor q = op_tensor_normal(env, nqe, c->t, 0, 1.0f), k = op_tensor_normal(env, nke, c->t, 0, 1.0f);
    op_tensor v = op_tensor_normal(env, nke, c->t, 0, 1.0f), dout = op_tensor_normal(env, nqe, c->t, 0, 1.0f);
    op_tensor o = op_tensor_output(env, nqe, c->t, 0), lse = op_tensor_output(env, df_attn_lse_elems(&d), DF_F32, 0);
    op_tensor dq = op_tensor_output(env, nqe, DF_F32, 0), dk = op_tensor_output(env, nke, DF_F32, 0);
    op_tensor dv = op_tensor_output(env, nke, DF_F32, 0);
    int rc = df_attention_forward(env->batch, &d, q.t, k.t, v.t, o.t, lse.t, &err);
    if (!rc)
        rc = df_attention_backward(env->batch, &d, q.t, k.t, v.t, o.t, lse.t, dout.t, dq.t, dk.t, dv.t, &err);
    if (!rc)
        rc = op_run_and_read(env, &dq, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, o.buf, 0, o.host, nqe, c->t, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, dk.buf, 0, dk.host, nke, DF_F32, &err);
    if (!rc)
        rc = df_vk_download_f32(env->xfer, dv.buf, 0, dv.host, nke, DF_F32, &err);
    char what[128];
    snprintf(what, sizeof what, "attention backward b=%u h=%u nq=%u nk=%u dim=%u%s against finite differences",
             c->batch, c->heads, c->nq, c->nk, c->dim, c->causal ? " causal" : "");
    int fails = 0;
    if (!rc)
        fails += op_check_scratch(env, what, nqe * df_dtype_size(c->t));
    if (!rc) {
        double *qd = malloc(nqe * sizeof *qd), *kd = malloc(nke * sizeof *kd), *vd = malloc(nke * sizeof *vd);
        double *ob = malloc(nqe * sizeof *ob);
        for (uint64_t i = 0; i < nqe; i++)
            qd[i] = q.host[i];
        for (uint64_t i = 0; i < nke; i++)
            kd[i] = k.host[i], vd[i] = v.host[i];
        /* Magnitude scale of each gradient, for the bound: the device sums nk
         * (or nq) terms of recomputed probabilities times f32 dot products of
         * dim terms; the forward's lse carries its own error. */
        double terms = (c->dim + c->nk + c->nq + 24) * U32;
        const double hstep = 1e-5;
        struct {
            double *x;
            uint64_t n;
            const float *got;
            const char *name;
        } grads[3] = {{qd, nqe, dq.host, "dq"}, {kd, nke, dk.host, "dk"}, {vd, nke, dv.host, "dv"}};
        for (int g = 0; g < 3; g++) {
            double *ref = malloc(grads[g].n * sizeof *ref), *bound = malloc(grads[g].n * sizeof *bound);
            double rms = 0;
            for (uint64_t i = 0; i < grads[g].n; i++) {
                double keep = grads[g].x[i];
                grads[g].x[i] = keep + hstep;
                double lp = loss_of(c, qd, kd, vd, dout.host, ob);
                grads[g].x[i] = keep - hstep;
                double lm = loss_of(c, qd, kd, vd, dout.host, ob);
                grads[g].x[i] = keep;
                ref[i] = (lp - lm) / (2 * hstep);
                rms += ref[i] * ref[i];
            }
            rms = sqrt(rms / grads[g].n);
            /* Each gradient element sums up to max(nq, nk) products of O(1)
             * terms, each good to `terms`: bound it by that many times the
             * gradient's scale (rms), plus the differences' own error. */
            for (uint64_t i = 0; i < grads[g].n; i++)
                bound[i] = terms * (fabs(ref[i]) + 4 * rms) * sqrt((double)(c->nk > c->nq ? c->nk : c->nq)) + 1e-7 * rms;
            /* The backward reads the forward output as stored: in f16 it is
             * rounded (2^-11), and D_i = dO_i . O_i with it. That moves
             * dq_i by scale * dD_i * |k| and dk_j by scale * sum_i dD_i |q_i|. */
            if (c->t == DF_F16 && g < 2) {
                double scale = 1 / sqrt((double)c->dim);
                for (uint32_t b = 0; b < c->batch; b++)
                    for (uint32_t h = 0; h < c->heads; h++)
                        for (uint32_t i = 0; i < c->nq; i++) {
                            uint64_t qi = ((uint64_t)b * c->nq + i) * row + h * c->dim;
                            double dD = 0;
                            for (uint32_t e = 0; e < c->dim; e++)
                                dD += U16 * fabs((double)dout.host[qi + e] * o.host[qi + e]);
                            for (uint32_t e = 0; e < c->dim; e++) {
                                if (g == 0) {
                                    double kmax = 0;
                                    for (uint32_t j = 0; j < c->nk; j++)
                                        kmax = fmax(kmax, fabs(k.host[((uint64_t)b * c->nk + j) * row + h * c->dim + e]));
                                    bound[qi + e] += scale * dD * kmax;
                                } else {
                                    for (uint32_t j = 0; j < c->nk; j++)
                                        bound[((uint64_t)b * c->nk + j) * row + h * c->dim + e] +=
                                            scale * dD * fabs(q.host[qi + e]);
                                }
                            }
                        }
            }
            char w2[192];
            snprintf(w2, sizeof w2, "%s %s", what, grads[g].name);
            fails += op_compare(w2, grads[g].got, ref, bound, grads[g].n);
            free(ref), free(bound);
        }
        free(qd), free(kd), free(vd), free(ob);
    }
    op_case_done(env, what, fails, rc, &err);
    op_tensor_free(&q), op_tensor_free(&k), op_tensor_free(&v), op_tensor_free(&dout), op_tensor_free(&o);
    op_tensor_free(&lse), op_tensor_free(&dq), op_tensor_free(&dk), op_tensor_free(&dv);
}

void test_op_attention_bwd_fd(op_env *env)
{
    static const attn_case cases[] = {
        {1, 2, 5, 7, 8, 0, 0, DF_F32},
        {2, 1, 6, 6, 8, 1, 0, DF_F32}, /* causal */
        {1, 1, 9, 4, 64, 0, 0, DF_F16}, /* SDXL head size, f16 inputs */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_attn_bwd(env, &cases[i]);
}
