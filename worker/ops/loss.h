/*  loss.h - the diffusion training loss: mean squared error with a weight
 *  per sample (min-SNR-gamma weights, prior-preservation weights):
 *      loss_s = w_s * mean over the sample's elements of (pred - target)^2
 *      loss   = mean_s loss_s
 *  and its gradient with respect to pred (scaled by grad_scale). */
#ifndef DF_OPS_LOSS_H
#define DF_OPS_LOSS_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint32_t samples;  /* leading dimension */
    uint32_t count;    /* elements per sample */
    float grad_scale;  /* multiplies dpred (1 normally) */
} df_mse_desc;

/*  pred, target: [samples, count]; weights: f32 [samples] or no buffer
 *  (all 1); out: f32 [1 + samples] = loss, then each loss_s. dpred (may have
 *  no buffer): [samples, count]. */
int df_mse_loss(df_vk_batch_t *batch, const df_mse_desc *d, df_tensor pred, df_tensor target, df_tensor weights,
                df_tensor out, df_tensor dpred, df_error_t *err);

#endif
