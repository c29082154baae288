/*  clip_text_grad.c - the CLIP text encoder's backward pass, for training
 *  LoRAs on the text encoders (clip_text.h).
 *
 *  The forward pass runs again keeping each layer's input (77 rows per
 *  sequence: a few MB even for OpenCLIP bigG's 32 layers). The gradient
 *  starts from the penultimate output's (the context SDXL reads) and, for
 *  the encoder with a projection, from the pooled output's: through the
 *  projection and the final layer norm at each sequence's end-of-text row,
 *  then through the last layer, whose output nothing else reads. Each layer
 *  is then computed again from its input and differentiated:
 *      x1 = x + out(attn(q, k, v of ln1 x)),  y = x1 + fc2(act(fc1(ln2 x1)))
 *  one submitted step per layer, so scratch holds one layer's internals.
 *  Nothing before the first layer is trainable: the embeddings get no
 *  gradient.
 */
#include "clip_text.h"

#include <stdio.h>

#include "attention.h"
#include "clip_tokenizer.h"
#include "eltwise.h"
#include "layers.h"
#include "layers_grad.h"

static df_tensor at_f32(df_tensor t, uint64_t elems)
{
    t.ref.offset += elems * 4;
    return t;
}

/*  d (in: the gradient of layer l's output; out: of its input x), adapters'
 *  gradients accumulating on the way. */
static int layer_backward(df_clip_text_t *self, df_vk_batch_t *batch, int l, uint32_t nseq, df_tensor x, df_tensor d,
                          df_error_t *err)
{
    const df_clip_text_config *c = df_clip_text_config_of(self);
    const df_weights_t *w = df_clip_text_weights(self);
    const uint32_t rows = nseq * DF_CLIP_CONTEXT, D = (uint32_t)c->hidden, I = (uint32_t)c->intermediate;
    const uint64_t n = (uint64_t)rows * D;
    const float eps = (float)c->layer_norm_eps;
    char p[128], ln1[160], ln2[160];
    snprintf(p, sizeof p, "text_model.encoder.layers.%d", l);
    snprintf(ln1, sizeof ln1, "%s.layer_norm1", p);
    snprintf(ln2, sizeof ln2, "%s.layer_norm2", p);
    const df_weight *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *w1, *b1, *w2, *b2;
    int rc = DF_OK;
#define PAIR(wt, bs, name)                                                                                             \
    if (rc == DF_OK) {                                                                                                 \
        char q_[200];                                                                                                  \
        snprintf(q_, sizeof q_, "%s.%s", p, name);                                                                     \
        rc = df_weight_pair(w, q_, &wt, &bs, err);                                                                     \
    }
    PAIR(wq, bq, "self_attn.q_proj") PAIR(wk, bk, "self_attn.k_proj") PAIR(wv, bv, "self_attn.v_proj")
    PAIR(wo, bo, "self_attn.out_proj") PAIR(w1, b1, "mlp.fc1") PAIR(w2, b2, "mlp.fc2")
#undef PAIR
    df_attn_desc ad = {.batch = nseq, .heads = (uint32_t)c->heads, .nq = DF_CLIP_CONTEXT, .nk = DF_CLIP_CONTEXT,
                       .dim = D / (uint32_t)c->heads, .causal = 1};
    /* Forward again, keeping what the backward pass reads. */
    df_tensor h, q, k, v, a, lse, x1, h2, f, g, dg, df, dh, dq, dk, dv, da, tmp;
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &h, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &q, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &k, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &v, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &a, err);
    if (rc == DF_OK) rc = df_scratch(batch, df_attn_lse_elems(&ad), DF_F32, &lse, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &x1, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &h2, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * I, DF_F32, &f, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * I, DF_F32, &g, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * I, DF_F32, &dg, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)rows * I, DF_F32, &df, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &dh, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &dq, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &dk, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &dv, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &da, err);
    if (rc == DF_OK) rc = df_scratch(batch, n, DF_F32, &tmp, err);
    df_elt_op act = c->quick_gelu ? DF_ELT_QUICK_GELU : DF_ELT_GELU_ERF;
    df_elt_op act_bwd = c->quick_gelu ? DF_ELT_QUICK_GELU_BWD : DF_ELT_GELU_ERF_BWD;
    df_tensor none = {{NULL, 0}, DF_F32};
    if (rc == DF_OK) rc = df_layer_norm(batch, w, ln1, x, rows, eps, h, err);
    if (rc == DF_OK) rc = df_linear(batch, h, rows, wq, bq, q, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, h, rows, wk, bk, k, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_linear(batch, h, rows, wv, bv, v, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_attention_forward(batch, &ad, q, k, v, a, lse, err);
    if (rc == DF_OK) rc = df_vk_batch_copy(batch, x.ref.buf, x.ref.offset, x1.ref.buf, x1.ref.offset, n * 4, err);
    if (rc == DF_OK) rc = df_linear(batch, a, rows, wo, bo, x1, 1, DF_ELT_COPY, err);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, ln2, x1, rows, eps, h2, err);
    if (rc == DF_OK) rc = df_linear(batch, h2, rows, w1, b1, f, 0, DF_ELT_COPY, err);
    if (rc == DF_OK) {
        df_elt_desc e = {.op = act, .n = (uint64_t)rows * I, .alpha = 1};
        rc = df_eltwise(batch, &e, f, none, g, err);
    }
    /* Back through the MLP, then the attention; each branch's input
     * gradient goes through its layer norm onto the residual in d. */
    if (rc == DF_OK) rc = df_linear_backward(batch, g, rows, w2, d, dg, 0, err);
    if (rc == DF_OK) {
        df_elt_desc e = {.op = act_bwd, .n = (uint64_t)rows * I, .alpha = 1};
        rc = df_eltwise(batch, &e, f, dg, df, err);
    }
    if (rc == DF_OK) rc = df_linear_backward(batch, h2, rows, w1, df, dh, 0, err);
    if (rc == DF_OK) rc = df_layer_norm_backward(batch, w, ln2, x1, rows, eps, dh, tmp, err);
    if (rc == DF_OK) rc = df_add_into(batch, tmp, d, n, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, a, rows, wo, d, da, 0, err);
    if (rc == DF_OK) rc = df_attention_backward(batch, &ad, q, k, v, a, lse, da, dq, dk, dv, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, h, rows, wq, dq, dh, 0, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, h, rows, wk, dk, dh, 1, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, h, rows, wv, dv, dh, 1, err);
    if (rc == DF_OK) rc = df_layer_norm_backward(batch, w, ln1, x, rows, eps, dh, tmp, err);
    if (rc == DF_OK) rc = df_add_into(batch, tmp, d, n, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "text encoder layer %d (backward)", l);
}

/*  The pooled output's gradient into dlast (written: zero but at each
 *  sequence's end-of-text row), the gradient of the last layer's output. */
static int pooled_backward(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                           df_tensor last, df_tensor dpooled, df_tensor dlast, df_error_t *err)
{
    const df_clip_text_config *c = df_clip_text_config_of(self);
    const df_weights_t *w = df_clip_text_weights(self);
    const uint32_t T = DF_CLIP_CONTEXT, D = (uint32_t)c->hidden;
    const float eps = (float)c->layer_norm_eps;
    const df_weight *proj;
    df_tensor eos, eos_n, deos_n, deos;
    int rc = df_weights_get(w, "text_projection.weight", &proj, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &eos, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &eos_n, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &deos_n, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)nseq * D, DF_F32, &deos, err);
    for (uint32_t b = 0; rc == DF_OK && b < nseq; b++)
        rc = df_vk_batch_copy(batch, last.ref.buf, last.ref.offset + ((uint64_t)b * T + df_clip_text_eos_at(ids + b * T)) * D * 4,
                              eos.ref.buf, eos.ref.offset + (uint64_t)b * D * 4, (uint64_t)D * 4, err);
    if (rc == DF_OK) rc = df_layer_norm(batch, w, "text_model.final_layer_norm", eos, nseq, eps, eos_n, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, eos_n, nseq, proj, dpooled, deos_n, 0, err);
    if (rc == DF_OK)
        rc = df_layer_norm_backward(batch, w, "text_model.final_layer_norm", eos, nseq, eps, deos_n, deos, err);
    if (rc == DF_OK)
        rc = df_vk_batch_fill(batch, dlast.ref.buf, dlast.ref.offset, (uint64_t)nseq * T * D * 4, 0, err);
    for (uint32_t b = 0; rc == DF_OK && b < nseq; b++)
        rc = df_vk_batch_copy(batch, deos.ref.buf, deos.ref.offset + (uint64_t)b * D * 4, dlast.ref.buf,
                              dlast.ref.offset + ((uint64_t)b * T + df_clip_text_eos_at(ids + b * T)) * D * 4,
                              (uint64_t)D * 4, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "text encoder pooled output (backward)");
}

int df_clip_text_backward(df_clip_text_t *self, df_vk_batch_t *batch, const int32_t *ids, uint32_t nseq,
                          df_tensor dhidden, df_tensor dpooled, df_error_t *err)
{
    const df_clip_text_config *c = df_clip_text_config_of(self);
    const int L = c->layers;
    const uint64_t n = (uint64_t)nseq * DF_CLIP_CONTEXT * (uint32_t)c->hidden;
    if (nseq == 0 || L < 2)
        return df_error_set(err, DF_E_INVALID, "text encoder backward: need sequences and two layers or more");
    if (dpooled.ref.buf && !c->with_projection)
        return df_error_set(err, DF_E_INVALID, "text encoder backward: no projection for a pooled gradient");
    if (!dhidden.ref.buf && !dpooled.ref.buf)
        return DF_OK;
    df_keep keep = {.n = 0};
    df_tensor xs, d, dlast;
    int rc = df_keep_new(batch, &keep, n * (uint64_t)(L + 1), DF_F32, &xs, err);
    if (rc == DF_OK) rc = df_keep_new(batch, &keep, n, DF_F32, &d, err);
    if (rc == DF_OK) rc = df_clip_text_forward_all(self, batch, ids, nseq, xs, err);
    if (rc == DF_OK) {
        if (dhidden.ref.buf)
            rc = df_vk_batch_copy(batch, dhidden.ref.buf, dhidden.ref.offset, d.ref.buf, d.ref.offset, n * 4, err);
        else
            rc = df_vk_batch_fill(batch, d.ref.buf, d.ref.offset, n * 4, 0, err);
    }
    if (rc == DF_OK && dpooled.ref.buf) { /* the pooled path joins at the penultimate output */
        rc = df_keep_new(batch, &keep, n, DF_F32, &dlast, err);
        if (rc == DF_OK) rc = pooled_backward(self, batch, ids, nseq, at_f32(xs, n * (uint64_t)L), dpooled, dlast, err);
        if (rc == DF_OK) rc = layer_backward(self, batch, L - 1, nseq, at_f32(xs, n * (uint64_t)(L - 1)), dlast, err);
        if (rc == DF_OK) rc = df_add_into(batch, dlast, d, n, err);
        if (rc == DF_OK) rc = df_vk_batch_submit(batch, err);
    }
    for (int l = L - 2; rc == DF_OK && l >= 0; l--) {
        rc = layer_backward(self, batch, l, nseq, at_f32(xs, n * (uint64_t)l), d, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
    }
    df_keep_release(&keep, rc == DF_OK ? NULL : batch);
    return rc;
}
