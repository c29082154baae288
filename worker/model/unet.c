/*  unet.c - see unet.h. The block order, skip bookkeeping and norm epsilons
 *  follow diffusers' UNet2DConditionModel: ResNet group norms use the
 *  config's norm_eps, a transformer's input group norm 1e-6, its layer norms
 *  1e-5. */
#include "unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy2d.h"
#include "eltwise.h"
#include "layers.h"
#include "layers_grad.h"
#include "sdxl_arch.h"
#include "timestep.h"
#include "transformer.h"

#define MAX_SKIPS (DF_SDXL_MAX_LEVELS * 9 + 1)

struct _df_unet_t {
    df_unet_config cfg;
    df_weights_t *w;
    df_vk_transfer_t *xfer;
    df_vk_buffer_t *time_freqs, *add_freqs; /* sinusoid frequency tables */
};

void df_unet_destroy(df_unet_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_unet_t *u = *self_p;
    df_weights_destroy(&u->w);
    df_vk_buffer_destroy(&u->time_freqs);
    df_vk_buffer_destroy(&u->add_freqs);
    free(u);
    *self_p = NULL;
}

static df_timestep_desc time_desc(const df_unet_config *c, uint32_t dim)
{
    df_timestep_desc d = {.dim = dim, .max_period = 10000, .shift = (float)c->freq_shift, .scale = 1,
                          .flip_sin_to_cos = c->flip_sin_to_cos};
    return d;
}

static df_vk_buffer_t *freq_table(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_timestep_desc *d,
                                  df_error_t *err)
{
    float *f = malloc(d->dim / 2 * sizeof *f);
    df_vk_buffer_t *b = f ? df_vk_buffer_new(dev, d->dim / 2 * 4, err) : NULL;
    if (b) {
        df_timestep_freqs(d, f);
        if (df_vk_upload(xfer, b, 0, f, d->dim / 2 * 4, err) != DF_OK)
            df_vk_buffer_destroy(&b);
    } else if (!f) {
        df_error_set(err, DF_E_NOMEM, "unet: out of memory");
    }
    free(f);
    return b;
}

df_unet_t *df_unet_new(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, df_weights_t **weights,
                       df_error_t *err)
{
    df_unet_t *u = calloc(1, sizeof *u);
    if (!u) {
        df_weights_destroy(weights);
        df_error_set(err, DF_E_NOMEM, "unet: out of memory");
        return NULL;
    }
    u->cfg = *cfg;
    u->w = *weights;
    u->xfer = xfer;
    *weights = NULL;
    df_timestep_desc td = time_desc(cfg, (uint32_t)cfg->block_out[0]);
    df_timestep_desc ad = time_desc(cfg, (uint32_t)cfg->addition_time_embed_dim);
    u->time_freqs = freq_table(dev, xfer, &td, err);
    u->add_freqs = u->time_freqs ? freq_table(dev, xfer, &ad, err) : NULL;
    if (!u->add_freqs)
        df_unet_destroy(&u);
    return u;
}

df_unet_t *df_unet_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_unet_config *cfg, const df_safetensors_t *st,
                      const df_weight_layout *layout, df_dtype store, df_error_t *err)
{
    df_arch_list arch = {0};
    df_weights_t *w = NULL;
    if (df_arch_unet(cfg, &arch, err) == DF_OK)
        w = df_weights_load(dev, xfer, &arch, st, layout, store, err);
    df_arch_list_free(&arch);
    return w ? df_unet_new(dev, xfer, cfg, &w, err) : NULL;
}

const df_unet_config *df_unet_config_of(const df_unet_t *self) { return &self->cfg; }
df_weights_t *df_unet_weights(df_unet_t *self) { return self->w; }

/* ------------------------------------------------------------ embeddings */

/*  What the embeddings' backward pass reads: add_embedding's input
 *  [n, P], its first linear's output before the SiLU [n, T], and the summed
 *  embedding before the last SiLU [n, T]. */
typedef struct {
    df_tensor add, a1, emb;
    df_tensor tsin, h1; /* the time MLP's input and its first linear's output before the SiLU */
} emb_saved;

/*  silu(time_embedding(t) + add_embedding([text_embeds, time_ids])): what
 *  every ResNet block's time projection takes, [n, 4 * C0]; saved (NULL:
 *  none) gets the internals for the backward pass. */
static int embeddings(df_unet_t *u, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor *temb_silu,
                      emb_saved *saved, df_error_t *err)
{
    const df_unet_config *c = &u->cfg;
    const uint32_t n = in->sample->n, c0 = (uint32_t)c->block_out[0], T = 4 * c0;
    const uint32_t A = (uint32_t)c->addition_time_embed_dim, P = (uint32_t)c->projection_class_embeddings_input_dim;
    const uint32_t pooled = P - 6 * A;
    const df_weight *l1, *b1, *l2, *b2, *a1, *ab1, *a2, *ab2;
    int rc = df_weights_get(u->w, "time_embedding.linear_1.weight", &l1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_1.bias", &b1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_2.weight", &l2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "time_embedding.linear_2.bias", &b2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_1.weight", &a1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_1.bias", &ab1, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_2.weight", &a2, err);
    if (rc == DF_OK) rc = df_weights_get(u->w, "add_embedding.linear_2.bias", &ab2, err);
    df_tensor t, ids, tsin, h, emb, add, ah;
    if (rc == DF_OK) rc = df_scratch_from_host(batch, u->xfer, in->timesteps, n, &t, err);
    if (rc == DF_OK) rc = df_scratch_from_host(batch, u->xfer, in->time_ids, (uint64_t)n * 6, &ids, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * c0, DF_F32, &tsin, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &h, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &emb, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * P, DF_F32, &add, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &ah, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, temb_silu, err);
    if (rc != DF_OK)
        return rc;
    df_timestep_desc td = time_desc(c, c0), ad = time_desc(c, A);
    rc = df_timestep_embedding(batch, &td, n, t, df_tensor_at(u->time_freqs, 0, DF_F32), tsin, err);
    if (saved) { /* the time MLP's SiLU on its own, keeping its input */
        df_elt_desc e = {.op = DF_ELT_SILU, .n = (uint64_t)n * T};
        df_tensor no = {{NULL, 0}, DF_F32};
        saved->tsin = tsin;
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &saved->h1, err);
        if (rc == DF_OK) rc = df_linear(batch, tsin, n, l1, b1, saved->h1, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) rc = df_eltwise(batch, &e, saved->h1, no, h, err);
    } else if (rc == DF_OK) {
        rc = df_linear(batch, tsin, n, l1, b1, h, 0, DF_ELT_SILU, err);
    }
    if (rc == DF_OK) rc = df_linear(batch, h, n, l2, b2, emb, 0, DF_ELT_COPY, err);
    /* [pooled text | six sinusoids] per sample: the text goes in by copy, the
     * sinusoids are written in place, each sample's six rows contiguous. */
    for (uint32_t i = 0; rc == DF_OK && i < n; i++) {
        rc = df_vk_batch_copy(batch, in->text_embeds.ref.buf, in->text_embeds.ref.offset + (uint64_t)i * pooled * 4,
                              add.ref.buf, add.ref.offset + (uint64_t)i * P * 4, (uint64_t)pooled * 4, err);
        if (rc == DF_OK) {
            df_tensor t6 = {{ids.ref.buf, ids.ref.offset + (uint64_t)i * 6 * 4}, DF_F32};
            df_tensor dst = {{add.ref.buf, add.ref.offset + ((uint64_t)i * P + pooled) * 4}, DF_F32};
            rc = df_timestep_embedding(batch, &ad, 6, t6, df_tensor_at(u->add_freqs, 0, DF_F32), dst, err);
        }
    }
    df_tensor none = {{NULL, 0}, DF_F32};
    if (saved) { /* the SiLU on its own, keeping its input */
        df_elt_desc e = {.op = DF_ELT_SILU, .n = (uint64_t)n * T};
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &saved->a1, err);
        if (rc == DF_OK) rc = df_linear(batch, add, n, a1, ab1, saved->a1, 0, DF_ELT_COPY, err);
        if (rc == DF_OK) rc = df_eltwise(batch, &e, saved->a1, none, ah, err);
        saved->add = add, saved->emb = emb;
    } else if (rc == DF_OK) {
        rc = df_linear(batch, add, n, a1, ab1, ah, 0, DF_ELT_SILU, err);
    }
    if (rc == DF_OK) rc = df_linear(batch, ah, n, a2, ab2, emb, 1, DF_ELT_COPY, err); /* emb += aug */
    if (rc == DF_OK) {
        df_elt_desc e = {.op = DF_ELT_SILU, .n = (uint64_t)n * T};
        rc = df_eltwise(batch, &e, emb, none, *temb_silu, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "unet embeddings");
}

int df_unet_embeddings(df_unet_t *u, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor *temb_silu,
                       df_error_t *err)
{
    return embeddings(u, batch, in, temb_silu, NULL, err);
}

int df_unet_embeddings_backward(df_unet_t *u, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor dtemb_silu,
                                df_tensor dtext_embeds, df_error_t *err)
{
    const df_unet_config *c = &u->cfg;
    const uint32_t n = in->sample->n, T = 4 * (uint32_t)c->block_out[0];
    const uint32_t P = (uint32_t)c->projection_class_embeddings_input_dim;
    const uint32_t pooled = P - 6 * (uint32_t)c->addition_time_embed_dim;
    const df_weight *a1, *a2, *ab1, *ab2, *l1, *l2, *b1, *b2;
    int rc = df_weight_pair(u->w, "add_embedding.linear_1", &a1, &ab1, err);
    if (rc == DF_OK) rc = df_weight_pair(u->w, "add_embedding.linear_2", &a2, &ab2, err);
    if (rc == DF_OK) rc = df_weight_pair(u->w, "time_embedding.linear_1", &l1, &b1, err);
    if (rc == DF_OK) rc = df_weight_pair(u->w, "time_embedding.linear_2", &l2, &b2, err);
    emb_saved s;
    df_tensor temb_silu, demb, ah, dah, da1, dadd, none = {{NULL, 0}, DF_F32};
    if (rc == DF_OK) rc = embeddings(u, batch, in, &temb_silu, &s, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &demb, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &ah, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &dah, err);
    if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &da1, err);
    if (rc == DF_OK && dtext_embeds.ref.buf) rc = df_scratch(batch, (uint64_t)n * P, DF_F32, &dadd, err);
    /* temb_silu = silu(emb), emb = time part + linear_2(silu(a1)), a1 = linear_1(add). */
    df_elt_desc sb = {.op = DF_ELT_SILU_BWD, .n = (uint64_t)n * T, .alpha = 1};
    df_elt_desc sf = {.op = DF_ELT_SILU, .n = (uint64_t)n * T};
    if (rc == DF_OK) rc = df_eltwise(batch, &sb, s.emb, dtemb_silu, demb, err);
    /* The added embedding: to the text (and its weights, when they train). */
    if (rc == DF_OK) rc = df_eltwise(batch, &sf, s.a1, none, ah, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, ah, n, a2, demb, dah, 0, err);
    if (rc == DF_OK) rc = df_bias_backward_rows(batch, ab2, demb, n, err);
    if (rc == DF_OK) rc = df_eltwise(batch, &sb, s.a1, dah, da1, err);
    if (rc == DF_OK) rc = df_linear_backward(batch, s.add, n, a1, da1, dtext_embeds.ref.buf ? dadd : none, 0, err);
    if (rc == DF_OK) rc = df_bias_backward_rows(batch, ab1, da1, n, err);
    /* The text's part of each row: the pooled embedding's gradient. */
    df_copy2d_desc cd = {.rows = n, .width = pooled, .ld_x = P, .ld_y = pooled};
    if (rc == DF_OK && dtext_embeds.ref.buf) rc = df_copy2d(batch, &cd, dadd, dtext_embeds, err);
    /* Full fine-tuning: the time MLP's weights (the timestep takes no gradient). */
    if (rc == DF_OK && (l1->grad.ref.buf || l2->grad.ref.buf)) {
        df_tensor hs, dhs, dh1;
        rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &hs, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &dhs, err);
        if (rc == DF_OK) rc = df_scratch(batch, (uint64_t)n * T, DF_F32, &dh1, err);
        if (rc == DF_OK) rc = df_eltwise(batch, &sf, s.h1, none, hs, err);
        if (rc == DF_OK) rc = df_linear_backward(batch, hs, n, l2, demb, dhs, 0, err);
        if (rc == DF_OK) rc = df_bias_backward_rows(batch, b2, demb, n, err);
        if (rc == DF_OK) rc = df_eltwise(batch, &sb, s.h1, dhs, dh1, err);
        if (rc == DF_OK) rc = df_linear_backward(batch, s.tsin, n, l1, dh1, none, 0, err);
        if (rc == DF_OK) rc = df_bias_backward_rows(batch, b1, dh1, n, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "unet embeddings (backward)");
}

/* ----------------------------------------------------------------- blocks */

/*  [a, b] along channels, per sample. */
static int concat(df_vk_batch_t *batch, const df_fmap *a, const df_fmap *b, df_fmap *out, df_error_t *err)
{
    int rc = df_fmap_new(batch, a->n, a->c + b->c, a->h, a->w, out, err);
    uint64_t pa = (uint64_t)a->c * a->h * a->w * 4, pb = (uint64_t)b->c * b->h * b->w * 4;
    for (uint32_t i = 0; rc == DF_OK && i < a->n; i++) {
        uint64_t o = out->t.ref.offset + i * (pa + pb);
        rc = df_vk_batch_copy(batch, a->t.ref.buf, a->t.ref.offset + i * pa, out->t.ref.buf, o, pa, err);
        if (rc == DF_OK)
            rc = df_vk_batch_copy(batch, b->t.ref.buf, b->t.ref.offset + i * pb, out->t.ref.buf, o + pa, pb, err);
    }
    return rc;
}

int df_unet_forward(df_unet_t *self, df_vk_batch_t *batch, const df_unet_inputs *in, df_tensor out, df_error_t *err)
{
    const df_unet_config *c = &self->cfg;
    const df_fmap *s = in->sample;
    uint32_t mult = 1u << (c->levels - 1), g = (uint32_t)c->norm_groups;
    float eps = (float)c->norm_eps;
    if (s->n == 0 || s->c != (uint32_t)c->in_channels || s->h == 0 || s->w == 0 || s->h % mult || s->w % mult)
        return df_error_set(err, DF_E_INVALID,
                            "unet: sample %ux%ux%ux%u must have %d channels and sides that are multiples of %u", s->n,
                            s->c, s->h, s->w, c->in_channels, mult);
    if (in->context_len == 0 || !in->context.ref.buf || !in->text_embeds.ref.buf || !in->timesteps || !in->time_ids)
        return df_error_set(err, DF_E_INVALID, "unet: missing conditioning (context, text_embeds, timesteps, time_ids)");
    /* The evaluation runs as a series of submitted steps (one per ResNet +
     * transformer pair) so that only one block's scratch is alive at a time;
     * the embedding, the skip connections and the running activation are
     * kept across them. */
    df_keep kept = {.n = 0}, cur = {.n = 0};
    df_tensor temb;
    int rc = df_unet_embeddings(self, batch, in, &temb, err);
    if (rc == DF_OK)
        rc = df_keep_tensor(batch, &kept, &temb, (uint64_t)s->n * 4 * (uint64_t)c->block_out[0], err);
    df_fmap x, y, skips[MAX_SKIPS];
    int nskip = 0;
    char p[128];
#define FMAP_ELEMS(m) ((uint64_t)(m).n * (m).c * (m).h * (m).w)
#define SKIP()                                                                                                         \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_keep_tensor(batch, &kept, &x.t, FMAP_ELEMS(x), err);                                               \
        skips[nskip++] = x;                                                                                            \
    } while (0)
#define STEP()                                                                                                         \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_step_end(batch, &cur, &x.t, FMAP_ELEMS(x), err);                                                   \
    } while (0)
/* After SKIP() the activation already lives in a kept buffer: submitting frees the scratch. */
#define SUBMIT()                                                                                                       \
    do {                                                                                                               \
        if (rc == DF_OK)                                                                                               \
            rc = df_vk_batch_submit(batch, err);                                                                       \
    } while (0)
    if (rc == DF_OK)
        rc = df_conv_same(batch, self->w, "conv_in", s, &x, err);
    SKIP();
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        for (int j = 0; rc == DF_OK && j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            rc = df_resnet_block(batch, self->w, p, g, eps, &x, temb, &y, err);
            x = y;
            if (rc == DF_OK && c->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                rc = df_transformer_forward(batch, self->w, p, g, c->transformer_depth[i], (uint32_t)c->heads[i], &x,
                                            in->context, in->context_len, err);
            }
            SKIP();
            SUBMIT();
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            rc = df_downsample(batch, self->w, p, 0, &x, &y, err);
            x = y;
            SKIP();
            SUBMIT();
        }
    }
    int top = c->levels - 1;
    if (rc == DF_OK)
        rc = df_resnet_block(batch, self->w, "mid_block.resnets.0", g, eps, &x, temb, &y, err);
    x = y;
    if (rc == DF_OK)
        rc = df_transformer_forward(batch, self->w, "mid_block.attentions.0", g, c->transformer_depth[top],
                                    (uint32_t)c->heads[top], &x, in->context, in->context_len, err);
    STEP();
    if (rc == DF_OK)
        rc = df_resnet_block(batch, self->w, "mid_block.resnets.1", g, eps, &x, temb, &y, err);
    x = y;
    STEP();
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        int level = c->levels - 1 - i;
        for (int j = 0; rc == DF_OK && j <= c->layers_per_block; j++) {
            df_fmap cat;
            rc = concat(batch, &x, &skips[--nskip], &cat, err);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if (rc == DF_OK)
                rc = df_resnet_block(batch, self->w, p, g, eps, &cat, temb, &y, err);
            x = y;
            if (rc == DF_OK && c->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                rc = df_transformer_forward(batch, self->w, p, g, c->transformer_depth[level], (uint32_t)c->heads[level],
                                            &x, in->context, in->context_len, err);
            }
            STEP();
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            rc = df_upsample(batch, self->w, p, &x, &y, err);
            x = y;
        }
        STEP();
    }
#undef SKIP
#undef STEP
#undef SUBMIT
#undef FMAP_ELEMS
    df_fmap h;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x.n, x.c, x.h, x.w, &h, err);
    if (rc == DF_OK)
        rc = df_group_norm(batch, self->w, "conv_norm_out", g, eps, 1, &x, &h, err);
    df_fmap o = {out, s->n, (uint32_t)c->out_channels, s->h, s->w};
    static const uint32_t pad[4] = {1, 1, 1, 1};
    if (rc == DF_OK)
        rc = df_conv_named(batch, self->w, "conv_out", &h, 1, pad, &o, 0, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    /* On failure, commands may still be recorded: let the batch free. */
    df_keep_release(&kept, rc == DF_OK ? NULL : batch);
    df_keep_release(&cur, rc == DF_OK ? NULL : batch);
    return rc == DF_OK ? rc : df_error_prefix(err, "unet");
}
