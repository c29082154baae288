/*  sdxl_arch.c - see sdxl_arch.h. The structure follows diffusers'
 *  UNet2DConditionModel, AutoencoderKL and transformers' CLIPTextModel as
 *  configured for SDXL; each function walks the blocks in the order the
 *  reference builds them. */
#include "sdxl_arch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    df_arch_list *list;
    int failed;
} builder;

static void add(builder *b, df_arch_role role, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(builder *b, df_arch_role role, int ndim, const int64_t *shape, const char *fmt, ...)
{
    df_arch_list *l = b->list;
    if (b->failed)
        return;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        df_arch_tensor *t = realloc(l->items, cap * sizeof *t);
        if (!t) {
            b->failed = 1;
            return;
        }
        l->items = t;
        l->cap = cap;
    }
    df_arch_tensor *t = &l->items[l->count++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->role = role;
}

/* Shorthands: each names a tensor by prefix + suffix. */
static void linear(builder *b, const char *prefix, int64_t out, int64_t in, int bias)
{
    int64_t w[2] = {out, in};
    add(b, DF_ARCH_WEIGHT, 2, w, "%s.weight", prefix);
    if (bias)
        add(b, DF_ARCH_BIAS, 1, &out, "%s.bias", prefix);
}

static void conv(builder *b, const char *prefix, int64_t out, int64_t in, int64_t k)
{
    int64_t w[4] = {out, in, k, k};
    add(b, DF_ARCH_WEIGHT, 4, w, "%s.weight", prefix);
    add(b, DF_ARCH_BIAS, 1, &out, "%s.bias", prefix);
}

static void norm(builder *b, const char *prefix, int64_t c)
{
    add(b, DF_ARCH_NORM_WEIGHT, 1, &c, "%s.weight", prefix);
    add(b, DF_ARCH_NORM_BIAS, 1, &c, "%s.bias", prefix);
}

static const char *join(char *buf, size_t cap, const char *prefix, const char *suffix)
{
    /* Names stay far below the buffers (the longest SDXL name is ~80 bytes);
     * checking the length keeps a truncation from passing unnoticed. */
    if ((size_t)snprintf(buf, cap, "%s.%s", prefix, suffix) >= cap)
        buf[0] = '\0';
    return buf;
}

/*  ResnetBlock2D: temb > 0 adds the time-embedding projection. */
static void resnet(builder *b, const char *p, int64_t cin, int64_t cout, int64_t temb)
{
    char n[160];
    norm(b, join(n, sizeof n, p, "norm1"), cin);
    conv(b, join(n, sizeof n, p, "conv1"), cout, cin, 3);
    if (temb)
        linear(b, join(n, sizeof n, p, "time_emb_proj"), cout, temb, 1);
    norm(b, join(n, sizeof n, p, "norm2"), cout);
    conv(b, join(n, sizeof n, p, "conv2"), cout, cout, 3);
    if (cin != cout)
        conv(b, join(n, sizeof n, p, "conv_shortcut"), cout, cin, 1);
}

/*  Transformer2DModel with `depth` BasicTransformerBlocks. */
static void transformer(builder *b, const char *p, int64_t c, int64_t ctx, int depth, int linear_proj)
{
    char n[160];
    norm(b, join(n, sizeof n, p, "norm"), c);
    if (linear_proj)
        linear(b, join(n, sizeof n, p, "proj_in"), c, c, 1);
    else
        conv(b, join(n, sizeof n, p, "proj_in"), c, c, 1);
    for (int d = 0; d < depth; d++) {
        char t[160];
        snprintf(t, sizeof t, "%s.transformer_blocks.%d", p, d);
        norm(b, join(n, sizeof n, t, "norm1"), c);
        linear(b, join(n, sizeof n, t, "attn1.to_q"), c, c, 0);
        linear(b, join(n, sizeof n, t, "attn1.to_k"), c, c, 0);
        linear(b, join(n, sizeof n, t, "attn1.to_v"), c, c, 0);
        linear(b, join(n, sizeof n, t, "attn1.to_out.0"), c, c, 1);
        norm(b, join(n, sizeof n, t, "norm2"), c);
        linear(b, join(n, sizeof n, t, "attn2.to_q"), c, c, 0);
        linear(b, join(n, sizeof n, t, "attn2.to_k"), c, ctx, 0);
        linear(b, join(n, sizeof n, t, "attn2.to_v"), c, ctx, 0);
        linear(b, join(n, sizeof n, t, "attn2.to_out.0"), c, c, 1);
        norm(b, join(n, sizeof n, t, "norm3"), c);
        linear(b, join(n, sizeof n, t, "ff.net.0.proj"), 8 * c, c, 1); /* GEGLU: value and gate halves */
        linear(b, join(n, sizeof n, t, "ff.net.2"), c, 4 * c, 1);
    }
    if (linear_proj)
        linear(b, join(n, sizeof n, p, "proj_out"), c, c, 1);
    else
        conv(b, join(n, sizeof n, p, "proj_out"), c, c, 1);
}

static int finish(builder *b, const char *what, df_error_t *err)
{
    return b->failed ? df_error_set(err, DF_E_NOMEM, "%s: out of memory listing tensors", what) : DF_OK;
}

int df_arch_unet(const df_unet_config *c, df_arch_list *list, df_error_t *err)
{
    builder b = {list, 0};
    char p[160];
    int n = c->levels;
    int64_t c0 = c->block_out[0], temb = 4 * c0, ctx = c->cross_attention_dim;
    conv(&b, "conv_in", c0, c->in_channels, 3);
    linear(&b, "time_embedding.linear_1", temb, c0, 1);
    linear(&b, "time_embedding.linear_2", temb, temb, 1);
    linear(&b, "add_embedding.linear_1", temb, c->projection_class_embeddings_input_dim, 1);
    linear(&b, "add_embedding.linear_2", temb, temb, 1);

    int64_t out = c0;
    for (int i = 0; i < n; i++) {
        int64_t in = out;
        out = c->block_out[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j == 0 ? in : out, out, temb);
            if (c->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                transformer(&b, p, out, ctx, c->transformer_depth[i], c->use_linear_projection);
            }
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            conv(&b, p, out, out, 3);
        }
    }

    int64_t top = c->block_out[n - 1];
    resnet(&b, "mid_block.resnets.0", top, top, temb);
    transformer(&b, "mid_block.attentions.0", top, ctx, c->transformer_depth[n - 1], c->use_linear_projection);
    resnet(&b, "mid_block.resnets.1", top, top, temb);

    /* Up blocks run deepest first; each resnet takes the previous output and
     * one skip connection, the last one from the level's input side. */
    int64_t prev = top;
    for (int i = 0; i < n; i++) {
        int level = n - 1 - i;
        int64_t o = c->block_out[level];
        int64_t skip_in = c->block_out[level > 0 ? level - 1 : 0];
        for (int j = 0; j <= c->layers_per_block; j++) {
            int64_t skip = j == c->layers_per_block ? skip_in : o;
            int64_t rin = j == 0 ? prev : o;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, rin + skip, o, temb);
            if (c->up_attn[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                transformer(&b, p, o, ctx, c->transformer_depth[level], c->use_linear_projection);
            }
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            conv(&b, p, o, o, 3);
        }
        prev = o;
    }
    norm(&b, "conv_norm_out", c0);
    conv(&b, "conv_out", c->out_channels, c0, 3);
    return finish(&b, "unet", err);
}

/*  The VAE's single-head attention (AttentionBlock in diffusers' naming of
 *  today: group_norm, to_q/k/v with bias, to_out.0). */
static void vae_attention(builder *b, const char *p, int64_t c)
{
    char n[160];
    norm(b, join(n, sizeof n, p, "group_norm"), c);
    linear(b, join(n, sizeof n, p, "to_q"), c, c, 1);
    linear(b, join(n, sizeof n, p, "to_k"), c, c, 1);
    linear(b, join(n, sizeof n, p, "to_v"), c, c, 1);
    linear(b, join(n, sizeof n, p, "to_out.0"), c, c, 1);
}

static void vae_mid(builder *b, const char *side, int64_t c)
{
    char p[160];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", side);
    resnet(b, p, c, c, 0);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", side);
    vae_attention(b, p, c);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", side);
    resnet(b, p, c, c, 0);
}

int df_arch_vae(const df_vae_config *c, df_arch_list *list, df_error_t *err)
{
    builder b = {list, 0};
    char p[160];
    int n = c->levels;
    int64_t c0 = c->block_out[0], top = c->block_out[n - 1], z = c->latent_channels;

    conv(&b, "encoder.conv_in", c0, c->in_channels, 3);
    int64_t out = c0;
    for (int i = 0; i < n; i++) {
        int64_t in = out;
        out = c->block_out[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j == 0 ? in : out, out, 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            conv(&b, p, out, out, 3);
        }
    }
    vae_mid(&b, "encoder", top);
    norm(&b, "encoder.conv_norm_out", top);
    conv(&b, "encoder.conv_out", 2 * z, top, 3); /* mean and log-variance */
    conv(&b, "quant_conv", 2 * z, 2 * z, 1);
    conv(&b, "post_quant_conv", z, z, 1);

    conv(&b, "decoder.conv_in", top, z, 3);
    vae_mid(&b, "decoder", top);
    int64_t prev = top;
    for (int i = 0; i < n; i++) {
        int64_t o = c->block_out[n - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j == 0 ? prev : o, o, 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            conv(&b, p, o, o, 3);
        }
        prev = o;
    }
    norm(&b, "decoder.conv_norm_out", c0);
    conv(&b, "decoder.conv_out", c->out_channels, c0, 3);
    return finish(&b, "vae", err);
}

int df_arch_clip_text(const df_clip_text_config *c, df_arch_list *list, df_error_t *err)
{
    builder b = {list, 0};
    char p[160], n[160];
    int64_t d = c->hidden;
    int64_t tok[2] = {c->vocab_size, d}, pos[2] = {c->max_positions, d};
    add(&b, DF_ARCH_EMBEDDING, 2, tok, "text_model.embeddings.token_embedding.weight");
    add(&b, DF_ARCH_EMBEDDING, 2, pos, "text_model.embeddings.position_embedding.weight");
    for (int l = 0; l < c->layers; l++) {
        snprintf(p, sizeof p, "text_model.encoder.layers.%d", l);
        norm(&b, join(n, sizeof n, p, "layer_norm1"), d);
        linear(&b, join(n, sizeof n, p, "self_attn.q_proj"), d, d, 1);
        linear(&b, join(n, sizeof n, p, "self_attn.k_proj"), d, d, 1);
        linear(&b, join(n, sizeof n, p, "self_attn.v_proj"), d, d, 1);
        linear(&b, join(n, sizeof n, p, "self_attn.out_proj"), d, d, 1);
        norm(&b, join(n, sizeof n, p, "layer_norm2"), d);
        linear(&b, join(n, sizeof n, p, "mlp.fc1"), c->intermediate, d, 1);
        linear(&b, join(n, sizeof n, p, "mlp.fc2"), d, c->intermediate, 1);
    }
    norm(&b, "text_model.final_layer_norm", d);
    if (c->with_projection)
        linear(&b, "text_projection", c->projection_dim, d, 0);
    return finish(&b, "text encoder", err);
}

int df_arch_append(df_arch_list *list, df_arch_role role, int ndim, const int64_t *shape, const char *name)
{
    builder b = {list, 0};
    add(&b, role, ndim, shape, "%s", name);
    return b.failed ? -1 : 0;
}

const df_arch_tensor *df_arch_find(const df_arch_list *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].name, name) == 0)
            return &list->items[i];
    return NULL;
}

void df_arch_list_free(df_arch_list *list)
{
    free(list->items);
    memset(list, 0, sizeof *list);
}

uint64_t df_arch_numel(const df_arch_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}
