/*  sgm_names.c - see sgm_names.h. The block numbering follows from the
 *  configs: with L resnets per level, diffusers' down level i, resnet j is
 *  SGM's input block 1 + i(L+1) + j, its downsampler block (i+1)(L+1); up
 *  level i, resnet j is output block i(L+1) + j, its upsampler sits in
 *  output block i(L+1) + L after the resnet (and the attention, if any). */
#include "sgm_names.h"

#include <stdio.h>
#include <string.h>

static int set(df_sgm_ref *ref, const char *fmt_prefix, const char *a, const char *b)
{
    ref->part = -1;
    ref->transpose = 0;
    size_t n = (size_t)snprintf(ref->name, sizeof ref->name, "%s%s%s", fmt_prefix, a, b);
    return n < sizeof ref->name ? 0 : -1;
}

/*  If s starts with prefix, the rest; else NULL. */
static const char *after(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/*  A UNet ResNet's parts: diffusers' names on the left. */
static const char *const k_unet_resnet[][2] = {
    {"norm1.", "in_layers.0."},       {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
    {"norm2.", "out_layers.0."},      {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."},
};

static int unet_resnet(const char *block, const char *rest, df_sgm_ref *ref)
{
    for (size_t i = 0; i < sizeof k_unet_resnet / sizeof k_unet_resnet[0]; i++) {
        const char *r = after(rest, k_unet_resnet[i][0]);
        if (r) {
            char head[96];
            snprintf(head, sizeof head, "%s%s", block, k_unet_resnet[i][1]);
            return set(ref, DF_SGM_UNET, head, r);
        }
    }
    return -1;
}

int df_sgm_unet(const df_unet_config *c, const char *in, df_sgm_ref *ref)
{
    const int L = c->layers_per_block, n = c->levels;
    const char *r;
    int i, j;
    char block[64];
    static const char *const plain[][2] = {
        {"conv_in.", "input_blocks.0.0."},         {"time_embedding.linear_1.", "time_embed.0."},
        {"time_embedding.linear_2.", "time_embed.2."}, {"add_embedding.linear_1.", "label_emb.0.0."},
        {"add_embedding.linear_2.", "label_emb.0.2."}, {"conv_norm_out.", "out.0."},
        {"conv_out.", "out.2."},
    };
    for (size_t k = 0; k < sizeof plain / sizeof plain[0]; k++)
        if ((r = after(in, plain[k][0])))
            return set(ref, DF_SGM_UNET, plain[k][1], r);
    if ((r = after(in, "down_blocks."))) {
        const char *rest;
        if (sscanf(r, "%d.", &i) != 1 || i < 0 || i >= n)
            return -1;
        if ((rest = strchr(r, '.')) == NULL)
            return -1;
        rest++;
        const char *t;
        if ((t = after(rest, "resnets."))) {
            if (sscanf(t, "%d.", &j) != 1 || j < 0 || j >= L)
                return -1;
            snprintf(block, sizeof block, "input_blocks.%d.0.", 1 + i * (L + 1) + j);
            return unet_resnet(block, strchr(t, '.') + 1, ref);
        }
        if ((t = after(rest, "attentions."))) {
            if (sscanf(t, "%d.", &j) != 1 || j < 0 || j >= L || !c->down_attn[i])
                return -1;
            snprintf(block, sizeof block, "input_blocks.%d.1.", 1 + i * (L + 1) + j);
            return set(ref, DF_SGM_UNET, block, strchr(t, '.') + 1);
        }
        if ((t = after(rest, "downsamplers.0.conv.")) && i < n - 1) {
            snprintf(block, sizeof block, "input_blocks.%d.0.op.", (i + 1) * (L + 1));
            return set(ref, DF_SGM_UNET, block, t);
        }
        return -1;
    }
    if ((r = after(in, "mid_block."))) {
        const char *t;
        if ((t = after(r, "resnets.0.")))
            return unet_resnet("middle_block.0.", t, ref);
        if ((t = after(r, "attentions.0.")))
            return set(ref, DF_SGM_UNET, "middle_block.1.", t);
        if ((t = after(r, "resnets.1.")))
            return unet_resnet("middle_block.2.", t, ref);
        return -1;
    }
    if ((r = after(in, "up_blocks."))) {
        if (sscanf(r, "%d.", &i) != 1 || i < 0 || i >= n)
            return -1;
        const char *rest = strchr(r, '.') + 1, *t;
        if ((t = after(rest, "resnets."))) {
            if (sscanf(t, "%d.", &j) != 1 || j < 0 || j > L)
                return -1;
            snprintf(block, sizeof block, "output_blocks.%d.0.", i * (L + 1) + j);
            return unet_resnet(block, strchr(t, '.') + 1, ref);
        }
        if ((t = after(rest, "attentions."))) {
            if (sscanf(t, "%d.", &j) != 1 || j < 0 || j > L || !c->up_attn[i])
                return -1;
            snprintf(block, sizeof block, "output_blocks.%d.1.", i * (L + 1) + j);
            return set(ref, DF_SGM_UNET, block, strchr(t, '.') + 1);
        }
        if ((t = after(rest, "upsamplers.0.conv.")) && i < n - 1) {
            snprintf(block, sizeof block, "output_blocks.%d.%d.conv.", i * (L + 1) + L, c->up_attn[i] ? 2 : 1);
            return set(ref, DF_SGM_UNET, block, t);
        }
        return -1;
    }
    return -1;
}

/*  A VAE ResNet: only the shortcut is renamed. */
static int vae_resnet(const char *block, const char *rest, df_sgm_ref *ref)
{
    const char *t = after(rest, "conv_shortcut.");
    char head[96];
    snprintf(head, sizeof head, "%s%s", block, t ? "nin_shortcut." : "");
    return set(ref, DF_SGM_VAE, head, t ? t : rest);
}

int df_sgm_vae(const df_vae_config *c, const char *in, df_sgm_ref *ref)
{
    const int n = c->levels, L = c->layers_per_block;
    static const char *const plain[] = {"encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.",
                                        "decoder.conv_out.", "quant_conv.", "post_quant_conv."};
    for (size_t k = 0; k < sizeof plain / sizeof plain[0]; k++)
        if (after(in, plain[k]))
            return set(ref, DF_SGM_VAE, in, "");
    const char *side = strncmp(in, "encoder.", 8) == 0 ? "encoder." : strncmp(in, "decoder.", 8) == 0 ? "decoder." : NULL;
    if (!side)
        return -1;
    const char *r = in + 8, *t;
    char block[96];
    int i, j;
    if ((t = after(r, "conv_norm_out."))) {
        snprintf(block, sizeof block, "%snorm_out.", side);
        return set(ref, DF_SGM_VAE, block, t);
    }
    if ((t = after(r, "mid_block."))) {
        const char *u;
        if ((u = after(t, "resnets.0."))) {
            snprintf(block, sizeof block, "%smid.block_1.", side);
            return vae_resnet(block, u, ref);
        }
        if ((u = after(t, "resnets.1."))) {
            snprintf(block, sizeof block, "%smid.block_2.", side);
            return vae_resnet(block, u, ref);
        }
        if ((u = after(t, "attentions.0."))) {
            static const char *const parts[][2] = {
                {"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}};
            for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
                const char *w = after(u, parts[k][0]);
                if (w) {
                    snprintf(block, sizeof block, "%smid.attn_1.%s", side, parts[k][1]);
                    return set(ref, DF_SGM_VAE, block, w);
                }
            }
        }
        return -1;
    }
    int enc = side[0] == 'e';
    if ((t = after(r, enc ? "down_blocks." : "up_blocks."))) {
        if (sscanf(t, "%d.", &i) != 1 || i < 0 || i >= n)
            return -1;
        int sgm_level = enc ? i : n - 1 - i; /* the decoder's levels count up from the image side */
        const char *rest = strchr(t, '.') + 1, *u;
        if ((u = after(rest, "resnets."))) {
            if (sscanf(u, "%d.", &j) != 1 || j < 0 || j >= L + !enc)
                return -1;
            snprintf(block, sizeof block, "%s%s.%d.block.%d.", side, enc ? "down" : "up", sgm_level, j);
            return vae_resnet(block, strchr(u, '.') + 1, ref);
        }
        if ((u = after(rest, enc ? "downsamplers.0.conv." : "upsamplers.0.conv.")) && i < n - 1) {
            snprintf(block, sizeof block, "%s%s.%d.%s.conv.", side, enc ? "down" : "up", sgm_level,
                     enc ? "downsample" : "upsample");
            return set(ref, DF_SGM_VAE, block, u);
        }
    }
    return -1;
}

int df_sgm_te1(const char *in, df_sgm_ref *ref)
{
    return strncmp(in, "text_model.", 11) == 0 ? set(ref, DF_SGM_TE1, in, "") : -1;
}

int df_sgm_te2(const char *in, df_sgm_ref *ref)
{
    const char *r, *t;
    int l;
    if (strcmp(in, "text_model.embeddings.token_embedding.weight") == 0)
        return set(ref, DF_SGM_TE2, "token_embedding.weight", "");
    if (strcmp(in, "text_model.embeddings.position_embedding.weight") == 0)
        return set(ref, DF_SGM_TE2, "positional_embedding", "");
    if ((r = after(in, "text_model.final_layer_norm.")))
        return set(ref, DF_SGM_TE2, "ln_final.", r);
    if (strcmp(in, "text_projection.weight") == 0) {
        int rc = set(ref, DF_SGM_TE2, "text_projection", "");
        ref->transpose = 1;
        return rc;
    }
    if (!(r = after(in, "text_model.encoder.layers.")) || sscanf(r, "%d.", &l) != 1 || l < 0)
        return -1;
    r = strchr(r, '.') + 1;
    char block[96];
    snprintf(block, sizeof block, "transformer.resblocks.%d.", l);
    static const char *const qkv[3] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
    for (int k = 0; k < 3; k++)
        if ((t = after(r, qkv[k]))) {
            char tail[64];
            snprintf(tail, sizeof tail, "attn.in_proj_%s", t); /* in_proj_weight / in_proj_bias */
            int rc = set(ref, DF_SGM_TE2, block, tail);
            ref->part = k;
            return rc;
        }
    static const char *const parts[][2] = {{"self_attn.out_proj.", "attn.out_proj."}, {"layer_norm1.", "ln_1."},
                                           {"layer_norm2.", "ln_2."}, {"mlp.fc1.", "mlp.c_fc."}, {"mlp.fc2.", "mlp.c_proj."}};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if ((t = after(r, parts[k][0]))) {
            char head[128];
            snprintf(head, sizeof head, "%s%s", block, parts[k][1]);
            return set(ref, DF_SGM_TE2, head, t);
        }
    return -1;
}
