/*  vae.c - see vae.h. The order of blocks follows diffusers' Encoder and
 *  Decoder; the resnets and attention use eps 1e-6, as there. */
#include "vae.h"

#include <stdio.h>
#include <stdlib.h>

#include "eltwise.h"
#include "layers.h"
#include "sdxl_arch.h"

#define VAE_EPS 1e-6f

struct _df_vae_t {
    df_vae_config cfg;
    df_weights_t *w;
};

df_vae_t *df_vae_new(const df_vae_config *cfg, df_weights_t **weights, df_error_t *err)
{
    df_vae_t *m = calloc(1, sizeof *m);
    if (!m) {
        df_weights_destroy(weights);
        df_error_set(err, DF_E_NOMEM, "vae: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->w = *weights;
    *weights = NULL;
    return m;
}

df_vae_t *df_vae_from(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_vae_config *cfg, const df_safetensors_t *st,
                      const df_weight_layout *layout, df_dtype store, df_error_t *err)
{
    df_arch_list arch = {0};
    df_weights_t *w = NULL;
    if (store == DF_I8) /* 8-bit is for the UNet's matrices; the VAE keeps f16 */
        store = DF_F16;
    if (df_arch_vae(cfg, &arch, err) == DF_OK)
        w = df_weights_load(dev, xfer, &arch, st, layout, store, err);
    df_arch_list_free(&arch);
    return w ? df_vae_new(cfg, &w, err) : NULL;
}

void df_vae_destroy(df_vae_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_weights_destroy(&(*self_p)->w);
    free(*self_p);
    *self_p = NULL;
}

const df_vae_config *df_vae_config_of(const df_vae_t *self) { return &self->cfg; }

uint32_t df_vae_factor(const df_vae_t *self) { return 1u << (self->cfg.levels - 1); }

static uint64_t fmap_elems(const df_fmap *m) { return (uint64_t)m->n * m->c * m->h * m->w; }

/*  resnets, attention, resnets: the middle of both halves. */
static int mid_block(df_vae_t *m, df_vk_batch_t *batch, const char *side, df_fmap *x, df_error_t *err)
{
    char p[128];
    df_tensor none = {{NULL, 0}, DF_F32};
    uint32_t g = (uint32_t)m->cfg.norm_groups;
    df_fmap y;
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", side);
    int rc = df_resnet_block(batch, m->w, p, g, VAE_EPS, x, none, &y, err);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", side);
    if (rc == DF_OK)
        rc = df_pixel_attention(batch, m->w, p, g, VAE_EPS, &y, err);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", side);
    if (rc == DF_OK)
        rc = df_resnet_block(batch, m->w, p, g, VAE_EPS, &y, none, x, err);
    return rc;
}

/*  GroupNorm + SiLU, then the output convolution into out (allocated by the
 *  caller, so the decoder writes straight into the caller's image). */
static int head(df_vae_t *m, df_vk_batch_t *batch, const char *side, const df_fmap *x, const df_fmap *out,
                df_error_t *err)
{
    char p[128];
    df_fmap h;
    int rc = df_fmap_new(batch, x->n, x->c, x->h, x->w, &h, err);
    snprintf(p, sizeof p, "%s.conv_norm_out", side);
    if (rc == DF_OK)
        rc = df_group_norm(batch, m->w, p, (uint32_t)m->cfg.norm_groups, VAE_EPS, 1, x, &h, err);
    snprintf(p, sizeof p, "%s.conv_out", side);
    static const uint32_t pad[4] = {1, 1, 1, 1};
    return rc == DF_OK ? df_conv_named(batch, m->w, p, &h, 1, pad, out, 0, err) : rc;
}

static int check_map(const df_fmap *x, uint32_t c, uint32_t mult, const char *what, df_error_t *err)
{
    if (x->n == 0 || x->c != c || x->h == 0 || x->w == 0 || x->h % mult || x->w % mult)
        return df_error_set(err, DF_E_INVALID, "vae %s: input %ux%ux%ux%u must have %u channels and sides that are "
                            "multiples of %u", what, x->n, x->c, x->h, x->w, c, mult);
    return DF_OK;
}

int df_vae_encode(df_vae_t *self, df_vk_batch_t *batch, const df_fmap *image, df_tensor mean, df_tensor logvar,
                  df_error_t *err)
{
    const df_vae_config *c = &self->cfg;
    uint32_t g = (uint32_t)c->norm_groups, z = (uint32_t)c->latent_channels;
    int rc = check_map(image, (uint32_t)c->in_channels, df_vae_factor(self), "encode", err);
    if (rc != DF_OK)
        return rc;
    df_tensor none = {{NULL, 0}, DF_F32};
    df_fmap x, y;
    df_keep cur = {.n = 0};
    char p[128];
    rc = df_conv_same(batch, self->w, "encoder.conv_in", image, &x, err);
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        for (int j = 0; rc == DF_OK && j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            rc = df_resnet_block(batch, self->w, p, g, VAE_EPS, &x, none, &y, err);
            x = y;
            if (rc == DF_OK)
                rc = df_step_end(batch, &cur, &x.t, fmap_elems(&x), err);
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            rc = df_downsample(batch, self->w, p, 1, &x, &y, err);
            x = y;
        }
    }
    if (rc == DF_OK)
        rc = mid_block(self, batch, "encoder", &x, err);
    df_fmap moments;
    if (rc == DF_OK)
        rc = df_fmap_new(batch, x.n, 2 * z, x.h, x.w, &y, err);
    if (rc == DF_OK)
        rc = head(self, batch, "encoder", &x, &y, err);
    if (rc == DF_OK)
        rc = df_conv_same(batch, self->w, "quant_conv", &y, &moments, err);
    /* Moments hold mean then log-variance per sample: split them, clamping
     * the log-variance to [-30, 20]. */
    uint64_t plane = (uint64_t)z * moments.h * moments.w;
    for (uint32_t n = 0; rc == DF_OK && n < moments.n; n++) {
        uint64_t src = moments.t.ref.offset + n * 2 * plane * 4;
        rc = df_vk_batch_copy(batch, moments.t.ref.buf, src, mean.ref.buf, mean.ref.offset + n * plane * 4, plane * 4,
                              err);
        if (rc == DF_OK) {
            df_tensor lv = {{moments.t.ref.buf, src + plane * 4}, DF_F32};
            df_tensor out = {{logvar.ref.buf, logvar.ref.offset + n * plane * 4}, logvar.dtype};
            df_elt_desc e = {.op = DF_ELT_CLAMP, .n = plane, .alpha = -30, .beta = 20};
            rc = df_eltwise(batch, &e, lv, none, out, err);
        }
    }
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    df_keep_release(&cur, rc == DF_OK ? NULL : batch);
    return rc == DF_OK ? rc : df_error_prefix(err, "vae encode");
}

int df_vae_decode(df_vae_t *self, df_vk_batch_t *batch, const df_fmap *latents, df_tensor image, df_error_t *err)
{
    const df_vae_config *c = &self->cfg;
    uint32_t g = (uint32_t)c->norm_groups;
    int rc = check_map(latents, (uint32_t)c->latent_channels, 1, "decode", err);
    if (rc != DF_OK)
        return rc;
    df_tensor none = {{NULL, 0}, DF_F32};
    df_fmap z, x, y;
    df_keep cur = {.n = 0};
    char p[128];
    rc = df_conv_same(batch, self->w, "post_quant_conv", latents, &z, err);
    if (rc == DF_OK)
        rc = df_conv_same(batch, self->w, "decoder.conv_in", &z, &x, err);
    if (rc == DF_OK)
        rc = mid_block(self, batch, "decoder", &x, err);
    if (rc == DF_OK)
        rc = df_step_end(batch, &cur, &x.t, fmap_elems(&x), err);
    for (int i = 0; rc == DF_OK && i < c->levels; i++) {
        for (int j = 0; rc == DF_OK && j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            rc = df_resnet_block(batch, self->w, p, g, VAE_EPS, &x, none, &y, err);
            x = y;
            if (rc == DF_OK)
                rc = df_step_end(batch, &cur, &x.t, fmap_elems(&x), err);
        }
        if (rc == DF_OK && i < c->levels - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            rc = df_upsample(batch, self->w, p, &x, &y, err);
            x = y;
        }
    }
    df_fmap out = {image, x.n, (uint32_t)c->out_channels, x.h, x.w};
    if (rc == DF_OK)
        rc = head(self, batch, "decoder", &x, &out, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    df_keep_release(&cur, rc == DF_OK ? NULL : batch);
    return rc == DF_OK ? rc : df_error_prefix(err, "vae decode");
}
