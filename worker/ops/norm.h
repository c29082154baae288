/*  norm.h - group norm and layer norm, forward and backward.
 *
 *  Both normalise x, viewed as S segments of L contiguous elements, with a
 *  per-channel affine map (element e has channel (e / inner) % C):
 *      group norm on NCHW:  S = N * groups, L = (C / groups) * H * W, inner = H * W
 *      layer norm on [T, C]: S = T,         L = C,                   inner = 1
 *  The forward pass writes per-segment statistics (four f32 per segment:
 *  mean, 1/sqrt(var + eps), and two slots the backward pass fills) which
 *  the backward pass reuses. Statistics are computed in chunks of 1024 with
 *  two passes each (no cancellation) and merged exactly (Chan et al.), in f32.
 */
#ifndef DF_OPS_NORM_H
#define DF_OPS_NORM_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint32_t segments, len, inner, channels;
    float eps;
    int affine; /* gamma and beta given (else 1 and 0) */
    int silu;   /* forward: apply SiLU to the result (GroupNorm -> SiLU in ResNet blocks) */
} df_norm_desc;

df_norm_desc df_norm_group(uint32_t n, uint32_t channels, uint32_t hw, uint32_t groups, float eps);
df_norm_desc df_norm_layer(uint32_t rows, uint32_t channels, float eps);

/*  Elements of the statistics tensor: 4 * segments (f32). */
uint64_t df_norm_stats_elems(const df_norm_desc *d);

/*  y = norm(x) * gamma + beta (then SiLU). stats (f32) receives mean and
 *  rstd per segment. gamma and beta are ignored unless d->affine. */
int df_norm_forward(df_vk_batch_t *batch, const df_norm_desc *d, df_tensor x, df_tensor gamma, df_tensor beta,
                    df_tensor y, df_tensor stats, df_error_t *err);

/*  dx from dy, x, gamma and the forward pass's stats (its two free slots are
 *  written). When affine_grads has a buffer it receives (dgamma, dbeta) per
 *  channel (f32, 2 * channels). d->silu must be 0: differentiate the SiLU
 *  with the element-wise op first. */
int df_norm_backward(df_vk_batch_t *batch, const df_norm_desc *d, df_tensor x, df_tensor gamma, df_tensor stats,
                     df_tensor dy, df_tensor dx, df_tensor affine_grads, df_error_t *err);

#endif
