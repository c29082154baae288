/*  full_trainer.h - full fine-tuning of a UNet: every weight trains, with
 *  f32 master weights stepped in place by AdamW, for models small enough to
 *  hold weights, gradients and moments four times over (the tiny model;
 *  SDXL's 2.6 G parameters would need ~42 GB, beyond the GPUs this project
 *  targets, which is what LoRA is for).
 *
 *  The gradients come from the same backward pass as LoRA training
 *  (df_unet_lora_grad), which accumulates each weight's gradient when it has
 *  a buffer (df_weights_grads). */
#ifndef DF_MODEL_FULL_TRAINER_H
#define DF_MODEL_FULL_TRAINER_H

#include "unet.h"

typedef struct {
    float beta1, beta2, eps, weight_decay; /* 0 betas/eps: 0.9, 0.999, 1e-8 */
    int state8;                            /* AdamW's moments in 8 bits */
} df_full_train_opts;

typedef struct _df_full_trainer_t df_full_trainer_t;

/*  Gives every weight of unet (loaded as f32, else refused) a gradient and
 *  moments. The UNet is borrowed; it must carry no adapters. */
df_full_trainer_t *df_full_trainer_new(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                       const df_full_train_opts *opts, df_error_t *err);
void df_full_trainer_destroy(df_full_trainer_t **self_p);

/*  Trainable values: every weight's. */
uint64_t df_full_trainer_params(const df_full_trainer_t *self);

/*  One micro-batch's gradients, as df_lora_trainer_accumulate. */
int df_full_trainer_accumulate(df_full_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                               df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                               df_error_t *err);

/*  AdamW on every weight at learning rate lr, then the gradients zeroed. */
int df_full_trainer_step(df_full_trainer_t *self, df_vk_batch_t *batch, float lr, df_error_t *err);

/*  Writes the UNet's weights (f32) under diffusers' names, as a diffusers
 *  folder's unet/diffusion_pytorch_model.safetensors holds them, with
 *  metadata (key/value pairs, NULL-terminated; may be NULL). */
int df_full_trainer_save(df_full_trainer_t *self, const char *path, const char *const *metadata, df_error_t *err);

#endif
