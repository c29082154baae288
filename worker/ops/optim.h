/*  optim.h - optimiser steps on f32 parameters, in place: AdamW (as
 *  PyTorch's, decoupled weight decay, bias-corrected moments in f32 state)
 *  and plain SGD with weight decay. */
#ifndef DF_OPS_OPTIM_H
#define DF_OPS_OPTIM_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint64_t n;
    float lr, beta1, beta2, eps, weight_decay;
    uint64_t step;      /* 1 for the first step (bias correction) */
    float grad_scale;   /* multiplies the gradient first (1 / accumulation) */
} df_adamw_desc;

/*  param, m, v: f32 [n] (updated); grad: f32 or f16 [n]. */
int df_adamw_step(df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param, df_tensor grad, df_tensor m,
                  df_tensor v, df_error_t *err);

/*  AdamW with 8-bit moments (common/adam8.h): m_codes and s_codes are
 *  DF_U8 [n] (at offsets that are multiples of 4), m_scale and s_scale f32
 *  [df_adam8_blocks(n)]; all zero is the zero state. The parameter steps with
 *  the moments' f32 values, which are then stored encoded. */
int df_adamw8_step(df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param, df_tensor grad, df_tensor m_codes,
                   df_tensor s_codes, df_tensor m_scale, df_tensor s_scale, df_error_t *err);

/*  param -= lr * (grad * grad_scale + weight_decay * param). */
int df_sgd_step(df_vk_batch_t *batch, uint64_t n, float lr, float weight_decay, float grad_scale, df_tensor param,
                df_tensor grad, df_error_t *err);

#endif
