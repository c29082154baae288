/*  unet_grad.c - the UNet's backward pass for LoRA training (unet.h).
 *
 *  The forward pass walks the blocks as df_unet_forward does, as a list of
 *  units (conv_in, each ResNet with its transformer, each resampler, the
 *  output head), keeping every unit's input and the skip connections. The
 *  backward pass walks the list in reverse: each unit runs forward again
 *  from its kept input, keeping its internals only for as long as its own
 *  backward pass needs them (one submitted step per unit), so memory holds
 *  the kept inputs and one unit's work. Up blocks take their skip
 *  connection's gradient out of the concatenation's and add it where the
 *  skip was made.
 */
#include "unet.h"

#include <stdio.h>
#include <string.h>

#include "conv2d.h"
#include "eltwise.h"
#include "layers.h"
#include "layers_grad.h"
#include "loss.h"
#include "transformer.h"
#include "upsample.h"

#define MAX_UNITS 96
#define MAX_SKIPS (DF_SDXL_MAX_LEVELS * 9 + 1)

typedef enum { U_CONV_IN, U_RESNET, U_DOWN, U_UP, U_OUT } unit_kind;

typedef struct {
    unit_kind kind;
    char res[96], attn[96]; /* weight prefixes ("" when none) */
    int depth;              /* transformer layers */
    uint32_t heads;
    int skip_in;            /* U_RESNET in an up block: the skip it concatenates, else -1 */
    int skip_out;           /* the skip its output is, else -1 */
    df_fmap in;             /* its input, kept */
} unit;

static uint64_t elems(const df_fmap *m) { return (uint64_t)m->n * m->c * m->h * m->w; }

/*  [a, b] along channels, per sample; and its backward pass, which hands
 *  out the two parts of a gradient. */
static int concat(df_vk_batch_t *batch, const df_fmap *a, const df_fmap *b, df_fmap *out, int split, df_error_t *err)
{
    int rc = split ? DF_OK : df_fmap_new(batch, a->n, a->c + b->c, a->h, a->w, out, err);
    uint64_t pa = (uint64_t)a->c * a->h * a->w * 4, pb = (uint64_t)b->c * b->h * b->w * 4;
    for (uint32_t i = 0; rc == DF_OK && i < a->n; i++) {
        uint64_t o = out->t.ref.offset + i * (pa + pb);
        if (split) {
            rc = df_vk_batch_copy(batch, out->t.ref.buf, o, a->t.ref.buf, a->t.ref.offset + i * pa, pa, err);
            if (rc == DF_OK)
                rc = df_vk_batch_copy(batch, out->t.ref.buf, o + pa, b->t.ref.buf, b->t.ref.offset + i * pb, pb, err);
        } else {
            rc = df_vk_batch_copy(batch, a->t.ref.buf, a->t.ref.offset + i * pa, out->t.ref.buf, o, pa, err);
            if (rc == DF_OK)
                rc = df_vk_batch_copy(batch, b->t.ref.buf, b->t.ref.offset + i * pb, out->t.ref.buf, o + pa, pb, err);
        }
    }
    return rc;
}

/*  Runs unit u forward from its input into *out (scratch). */
static int unit_forward(df_unet_t *self, df_vk_batch_t *batch, const unit *u, const df_fmap *skips,
                        const df_unet_inputs *in, df_tensor temb, df_fmap *out, df_error_t *err)
{
    const df_unet_config *c = df_unet_config_of(self);
    df_weights_t *w = df_unet_weights(self);
    uint32_t g = (uint32_t)c->norm_groups;
    float eps = (float)c->norm_eps;
    static const uint32_t pad1[4] = {1, 1, 1, 1};
    int rc = DF_OK;
    switch (u->kind) {
    case U_CONV_IN: return df_conv_same(batch, w, "conv_in", &u->in, out, err);
    case U_DOWN: return df_downsample(batch, w, u->res, 0, &u->in, out, err);
    case U_UP: return df_upsample(batch, w, u->res, &u->in, out, err);
    case U_OUT: {
        df_fmap h;
        rc = df_fmap_new(batch, u->in.n, u->in.c, u->in.h, u->in.w, &h, err);
        if (rc == DF_OK)
            rc = df_group_norm(batch, w, "conv_norm_out", g, eps, 1, &u->in, &h, err);
        if (rc == DF_OK)
            rc = df_fmap_new(batch, u->in.n, (uint32_t)c->out_channels, u->in.h, u->in.w, out, err);
        return rc == DF_OK ? df_conv_named(batch, w, "conv_out", &h, 1, pad1, out, 0, err) : rc;
    }
    case U_RESNET: {
        df_fmap x = u->in, cat;
        if (u->skip_in >= 0) {
            rc = concat(batch, &u->in, &skips[u->skip_in], &cat, 0, err);
            x = cat;
        }
        if (rc == DF_OK)
            rc = df_resnet_block(batch, w, u->res, g, eps, &x, temb, out, err);
        if (rc == DF_OK && u->attn[0])
            rc = df_transformer_forward(batch, w, u->attn, g, u->depth, u->heads, out, in->context, in->context_len,
                                        err);
        return rc;
    }
    }
    return df_error_set(err, DF_E_INVALID, "unet: unknown unit");
}

/*  Unit u's backward pass: dx (written; the input's shape) from dy. An up
 *  block's ResNet adds its skip's share into dskip. */
static int unit_backward(df_unet_t *self, df_vk_batch_t *batch, const unit *u, const df_fmap *skips,
                         const df_unet_inputs *in, df_tensor temb, const df_fmap *dy, const df_fmap *dx,
                         const df_fmap *dskip, df_tensor dtemb, df_tensor dcontext, df_error_t *err)
{
    const df_unet_config *c = df_unet_config_of(self);
    df_weights_t *w = df_unet_weights(self);
    uint32_t g = (uint32_t)c->norm_groups;
    float eps = (float)c->norm_eps;
    static const uint32_t pad1[4] = {1, 1, 1, 1};
    int rc = DF_OK;
    switch (u->kind) {
    case U_CONV_IN: /* the sample takes no gradient; adapters might */
        return df_conv_backward(batch, w, "conv_in", &u->in, 1, pad1, dy, NULL, 0, err);
    case U_DOWN:
        return df_conv_backward(batch, w, u->res, &u->in, 2, pad1, dy, dx, 0, err);
    case U_UP: {
        df_fmap up, dup;
        rc = df_fmap_new(batch, u->in.n, u->in.c, 2 * u->in.h, 2 * u->in.w, &up, err);
        if (rc == DF_OK)
            rc = df_upsample2x_forward(batch, u->in.n * u->in.c, u->in.h, u->in.w, u->in.t, up.t, err);
        if (rc == DF_OK)
            rc = df_fmap_new(batch, up.n, up.c, up.h, up.w, &dup, err);
        if (rc == DF_OK)
            rc = df_conv_backward(batch, w, u->res, &up, 1, pad1, dy, &dup, 0, err);
        return rc == DF_OK ? df_upsample2x_backward(batch, u->in.n * u->in.c, u->in.h, u->in.w, dup.t, dx->t, err)
                           : rc;
    }
    case U_OUT: {
        df_fmap h, dh;
        rc = df_fmap_new(batch, u->in.n, u->in.c, u->in.h, u->in.w, &h, err);
        if (rc == DF_OK)
            rc = df_group_norm(batch, w, "conv_norm_out", g, eps, 1, &u->in, &h, err);
        if (rc == DF_OK)
            rc = df_fmap_new(batch, h.n, h.c, h.h, h.w, &dh, err);
        if (rc == DF_OK)
            rc = df_conv_backward(batch, w, "conv_out", &h, 1, pad1, dy, &dh, 0, err);
        return rc == DF_OK ? df_group_norm_backward(batch, w, "conv_norm_out", g, eps, 1, &u->in, &dh, dx, err) : rc;
    }
    case U_RESNET: {
        /* The transformer's backward pass submits between its layers: what
         * lives across it (the concatenated input, the ResNet's output and
         * its gradient) is owned here, not scratch. */
        df_keep own = {.n = 0};
        df_fmap x = u->in, cat, r, dr = *dy, dcat;
        if (u->skip_in >= 0) {
            rc = concat(batch, &u->in, &skips[u->skip_in], &cat, 0, err);
            if (rc == DF_OK && u->attn[0])
                rc = df_keep_tensor(batch, &own, &cat.t, elems(&cat), err);
            x = cat;
        }
        if (rc == DF_OK && u->attn[0]) { /* back through the transformer on the ResNet's output */
            rc = df_resnet_block(batch, w, u->res, g, eps, &x, temb, &r, err);
            if (rc == DF_OK)
                rc = df_keep_tensor(batch, &own, &r.t, elems(&r), err);
            dr = r;
            if (rc == DF_OK)
                rc = df_keep_new(batch, &own, elems(&r), DF_F32, &dr.t, err);
            if (rc == DF_OK)
                rc = df_transformer_backward(batch, w, u->attn, g, u->depth, u->heads, &r, in->context,
                                             in->context_len, dy, &dr, dcontext, err);
        }
        if (rc == DF_OK && u->skip_in < 0)
            rc = df_resnet_backward(batch, w, u->res, g, eps, &x, temb, &dr, dx, dtemb, err);
        if (rc == DF_OK && u->skip_in >= 0) {
            rc = df_fmap_new(batch, x.n, x.c, x.h, x.w, &dcat, err);
            if (rc == DF_OK)
                rc = df_resnet_backward(batch, w, u->res, g, eps, &x, temb, &dr, &dcat, dtemb, err);
            /* Split: the running input's part to dx, the skip's added to dskip. */
            df_fmap ds;
            if (rc == DF_OK)
                rc = df_fmap_new(batch, dskip->n, dskip->c, dskip->h, dskip->w, &ds, err);
            if (rc == DF_OK)
                rc = concat(batch, dx, &ds, &dcat, 1, err);
            if (rc == DF_OK)
                rc = df_add_into(batch, ds.t, dskip->t, elems(&ds), err);
        }
        df_keep_release(&own, batch); /* freed once the unit's work completes */
        return rc;
    }
    }
    return df_error_set(err, DF_E_INVALID, "unet: unknown unit");
}

/*  The units of c's UNet, in forward order, as df_unet_forward runs them. */
static int plan(const df_unet_config *c, unit *units, int *count, df_error_t *err)
{
    int n = 0, skip = 0;
#define ADD(k)                                                                                                         \
    do {                                                                                                               \
        if (n == MAX_UNITS)                                                                                            \
            return df_error_set(err, DF_E_RANGE, "unet: more than %d blocks", MAX_UNITS);                              \
        memset(&units[n], 0, sizeof units[n]);                                                                         \
        units[n].kind = (k);                                                                                           \
        units[n].skip_in = units[n].skip_out = -1;                                                                     \
        n++;                                                                                                           \
    } while (0)
    ADD(U_CONV_IN);
    units[n - 1].skip_out = skip++;
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            ADD(U_RESNET);
            snprintf(units[n - 1].res, sizeof units[n - 1].res, "down_blocks.%d.resnets.%d", i, j);
            if (c->down_attn[i]) {
                snprintf(units[n - 1].attn, sizeof units[n - 1].attn, "down_blocks.%d.attentions.%d", i, j);
                units[n - 1].depth = c->transformer_depth[i];
                units[n - 1].heads = (uint32_t)c->heads[i];
            }
            units[n - 1].skip_out = skip++;
        }
        if (i < c->levels - 1) {
            ADD(U_DOWN);
            snprintf(units[n - 1].res, sizeof units[n - 1].res, "down_blocks.%d.downsamplers.0.conv", i);
            units[n - 1].skip_out = skip++;
        }
    }
    int top = c->levels - 1;
    ADD(U_RESNET);
    snprintf(units[n - 1].res, sizeof units[n - 1].res, "mid_block.resnets.0");
    snprintf(units[n - 1].attn, sizeof units[n - 1].attn, "mid_block.attentions.0");
    units[n - 1].depth = c->transformer_depth[top];
    units[n - 1].heads = (uint32_t)c->heads[top];
    ADD(U_RESNET);
    snprintf(units[n - 1].res, sizeof units[n - 1].res, "mid_block.resnets.1");
    for (int i = 0; i < c->levels; i++) {
        int level = c->levels - 1 - i;
        for (int j = 0; j <= c->layers_per_block; j++) {
            ADD(U_RESNET);
            snprintf(units[n - 1].res, sizeof units[n - 1].res, "up_blocks.%d.resnets.%d", i, j);
            if (c->up_attn[i]) {
                snprintf(units[n - 1].attn, sizeof units[n - 1].attn, "up_blocks.%d.attentions.%d", i, j);
                units[n - 1].depth = c->transformer_depth[level];
                units[n - 1].heads = (uint32_t)c->heads[level];
            }
            units[n - 1].skip_in = --skip;
        }
        if (i < c->levels - 1) {
            ADD(U_UP);
            snprintf(units[n - 1].res, sizeof units[n - 1].res, "up_blocks.%d.upsamplers.0.conv", i);
        }
    }
    ADD(U_OUT);
#undef ADD
    if (skip != 0 || n > MAX_UNITS)
        return df_error_set(err, DF_E_INVALID, "unet: skip connections do not pair up");
    *count = n;
    return DF_OK;
}

/*  A kept buffer of m's shape (zeroed when zero) into keep. */
static int keep_like(df_vk_batch_t *batch, df_keep *keep, const df_fmap *m, int zero, df_fmap *out, df_error_t *err)
{
    if (keep->n == DF_KEEP_MAX)
        return df_error_set(err, DF_E_RANGE, "unet: more than %d tensors kept", DF_KEEP_MAX);
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), elems(m) * 4, err);
    if (!b)
        return err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    keep->bufs[keep->n++] = b;
    *out = *m;
    out->t = df_tensor_at(b, 0, DF_F32);
    return zero ? df_vk_batch_fill(batch, b, 0, elems(m) * 4, 0, err) : DF_OK;
}

int df_unet_lora_grad(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor target,
                      df_tensor weights, float grad_scale, df_tensor pred, df_tensor losses, df_error_t *err)
{
    return df_unet_lora_grad_text(self, batch, in, target, weights, grad_scale, pred, losses, NULL, err);
}

int df_unet_lora_grad_text(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor target,
                           df_tensor weights, float grad_scale, df_tensor pred, df_tensor losses,
                           const df_unet_text_grads *text_grads, df_error_t *err)
{
    const df_unet_config *c = df_unet_config_of(self);
    const df_fmap *s = in->sample;
    unit units[MAX_UNITS];
    int nunits = 0, rc = plan(c, units, &nunits, err);
    if (rc != DF_OK)
        return rc;
    uint32_t mult = 1u << (c->levels - 1);
    if (s->n == 0 || s->c != (uint32_t)c->in_channels || s->h % mult || s->w % mult || s->h == 0 || s->w == 0)
        return df_error_set(err, DF_E_INVALID, "unet: sample %ux%ux%ux%u must have %d channels and sides that are "
                            "multiples of %u", s->n, s->c, s->h, s->w, c->in_channels, mult);
    if (!in->context.ref.buf || !in->text_embeds.ref.buf || !in->timesteps || !in->time_ids || !target.ref.buf ||
        !losses.ref.buf)
        return df_error_set(err, DF_E_INVALID, "unet: missing conditioning, target or loss output");
    /* Forward, a step per unit: each unit's output is kept, as the next
     * unit's input and (for down blocks) as a skip connection. */
    df_keep kept = {.n = 0};
    df_fmap skips[MAX_SKIPS], dskips[MAX_SKIPS], x = *s, out, dy;
    df_tensor temb, dtemb = {{NULL, 0}, DF_F32}, dcontext = {{NULL, 0}, DF_F32};
    const uint64_t temb_elems = (uint64_t)s->n * 4 * (uint64_t)c->block_out[0];
    rc = df_unet_embeddings(self, batch, in, &temb, err);
    if (rc == DF_OK)
        rc = df_keep_tensor(batch, &kept, &temb, temb_elems, err);
    /* The text gradients accumulate over every block that reads the text. */
    if (rc == DF_OK && text_grads && text_grads->context.ref.buf) {
        dcontext = text_grads->context;
        rc = df_vk_batch_fill(batch, dcontext.ref.buf, dcontext.ref.offset,
                              (uint64_t)s->n * in->context_len * (uint64_t)c->cross_attention_dim * 4, 0, err);
    }
    /* The time embedding's gradient: for the pooled text, or for its own
     * weights when they train (full fine-tuning). */
    const df_weight *l1 = df_weights_find(df_unet_weights(self), "time_embedding.linear_1.weight");
    const int want_text = text_grads && text_grads->text_embeds.ref.buf;
    if (rc == DF_OK && (want_text || (l1 && l1->grad.ref.buf))) {
        rc = df_keep_new(batch, &kept, temb_elems, DF_F32, &dtemb, err);
        if (rc == DF_OK)
            rc = df_vk_batch_fill(batch, dtemb.ref.buf, dtemb.ref.offset, temb_elems * 4, 0, err);
    }
    for (int i = 0; rc == DF_OK && i < nunits; i++) {
        unit *u = &units[i];
        u->in = x;
        rc = unit_forward(self, batch, u, skips, in, temb, &out, err);
        if (rc == DF_OK && u->kind != U_OUT)
            rc = df_keep_tensor(batch, &kept, &out.t, elems(&out), err);
        if (rc == DF_OK && u->skip_out >= 0) {
            skips[u->skip_out] = out;
            rc = keep_like(batch, &kept, &out, 1, &dskips[u->skip_out], err);
        }
        if (rc == DF_OK && u->kind == U_OUT) { /* the loss, and its gradient to start from */
            df_mse_desc md = {.samples = s->n, .count = (uint32_t)(elems(&out) / s->n), .grad_scale = grad_scale};
            rc = keep_like(batch, &kept, &out, 0, &dy, err);
            if (rc == DF_OK)
                rc = df_mse_loss(batch, &md, out.t, target, weights, losses, dy.t, err);
            if (rc == DF_OK && pred.ref.buf)
                rc = df_vk_batch_copy(batch, out.t.ref.buf, out.t.ref.offset, pred.ref.buf, pred.ref.offset,
                                      elems(&out) * 4, err);
        }
        x = out;
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
    }
    /* Backward, a step per unit, the running gradient in a buffer of its
     * own that the next step replaces. */
    df_vk_buffer_t *running = NULL;
    for (int i = nunits - 1; rc == DF_OK && i >= 0; i--) {
        const unit *u = &units[i];
        if (u->skip_out >= 0) /* the skip's uses downstream add to this output's gradient */
            rc = df_add_into(batch, dskips[u->skip_out].t, dy.t, elems(&dy), err);
        df_vk_buffer_t *next = NULL;
        df_fmap dx = u->in;
        if (rc == DF_OK && u->kind != U_CONV_IN) {
            if (!(next = df_vk_buffer_new(df_vk_batch_device(batch), elems(&u->in) * 4, err)))
                rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
            dx.t = df_tensor_at(next, 0, DF_F32);
        }
        if (rc == DF_OK)
            rc = unit_backward(self, batch, u, skips, in, temb, &dy, &dx, u->skip_in >= 0 ? &dskips[u->skip_in] : NULL,
                               dtemb, dcontext, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
        if (rc != DF_OK) {
            if (next)
                df_vk_batch_hold(batch, &next, NULL);
            break;
        }
        df_vk_buffer_destroy(&running);
        running = next;
        dy = dx;
    }
    if (rc == DF_OK && dtemb.ref.buf) {
        df_tensor none = {{NULL, 0}, DF_F32};
        rc = df_unet_embeddings_backward(self, batch, in, dtemb, want_text ? text_grads->text_embeds : none, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
    }
    if (running && rc != DF_OK)
        df_vk_batch_hold(batch, &running, NULL);
    df_vk_buffer_destroy(&running);
    df_keep_release(&kept, rc == DF_OK ? NULL : batch);
    return rc == DF_OK ? rc : df_error_prefix(err, "unet backward");
}
