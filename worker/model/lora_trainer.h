/*  lora_trainer.h - training a LoRA on the UNet: adapters beside the frozen
 *  weights (weights.h), their gradients from the UNet's backward pass
 *  (unet.h), AdamW on the factors in f32 with its state on the device.
 *
 *  New adapters start as the reference initialises LoRA: the down factor
 *  uniform in +-1/sqrt(fan_in) (kaiming-uniform with a = sqrt(5), PEFT's
 *  choice), the up factor zero, so training starts from the base model's
 *  output exactly. A UNet that already carries adapters (a LoRA attached
 *  from a file: resuming, or fine-tuning a LoRA further) trains those.
 *  Saving writes kohya's format (ComfyUI, A1111/Forge, stable-diffusion.cpp
 *  load it) or PEFT's (diffusers' load_lora_weights), with the run's facts
 *  in the header's metadata.
 */
#ifndef DF_MODEL_LORA_TRAINER_H
#define DF_MODEL_LORA_TRAINER_H

#include "clip_text.h"
#include "unet.h"

/*  Which layers get adapters (bits). */
enum {
    DF_LORA_ATTN = 1,   /* to_q, to_k, to_v, to_out.0 of every attention (the default) */
    DF_LORA_FF = 2,     /* the feed-forward's two linear layers */
    DF_LORA_PROJ = 4,   /* the transformers' proj_in and proj_out */
    DF_LORA_CONV = 8,   /* the ResNets' 3x3 convolutions (LoCon) */
};

typedef struct {
    uint32_t rank;       /* 1 .. 1024 */
    float alpha;         /* scale alpha / rank; 0: alpha = rank */
    unsigned targets;    /* DF_LORA_* bits; 0: DF_LORA_ATTN */
    uint64_t seed;       /* the down factors' initialisation */
    float lr, beta1, beta2, eps, weight_decay; /* AdamW; 0 betas/eps: 0.9, 0.999, 1e-8 */
    int state8;          /* AdamW's moments in 8 bits (common/adam8.h): a quarter of the memory */
    float text_lr_ratio; /* the text encoders' learning rate over the UNet's (0: 1, the same) */
} df_lora_train_opts;

typedef struct _df_lora_trainer_t df_lora_trainer_t;

/*  Takes the UNet's existing adapters, or makes new ones per opts; gives
 *  them gradient buffers and optimiser state. The UNet is borrowed. */
df_lora_trainer_t *df_lora_trainer_new(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                       const df_lora_train_opts *opts, df_error_t *err);
void df_lora_trainer_destroy(df_lora_trainer_t **self_p);

/*  df_lora_trainer_new that also trains adapters on the text encoders given
 *  (either may be NULL): their attention projections, q, k, v and out of
 *  every layer, as diffusers' and kohya's text-encoder training does (rank,
 *  alpha and seed as for the UNet's). Text encoders that already carry
 *  adapters train those. Their gradients come from df_clip_text_backward;
 *  they take the same AdamW steps, checkpoints and files as the UNet's
 *  (kohya's lora_te1_/lora_te2_ keys, PEFT's text_encoder./text_encoder_2.). */
df_lora_trainer_t *df_lora_trainer_new_text(df_unet_t *unet, df_clip_text_t *te1, df_clip_text_t *te2,
                                            df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                            const df_lora_train_opts *opts, df_error_t *err);

/*  The text encoders' learning rate over the UNet's from now on (0: the
 *  same); a resumed trainer takes the caller's, not the checkpoint's. */
void df_lora_trainer_set_text_lr_ratio(df_lora_trainer_t *self, float ratio);

/*  Trainable values (both factors of every adapter). */
uint64_t df_lora_trainer_params(const df_lora_trainer_t *self);

/*  Adds one micro-batch's gradients: the loss of predicting target (the
 *  noise) from in (the noisy latents and conditioning), weights per sample
 *  (no buffer: 1), scaled by grad_scale (1 / micro-batches per step).
 *  losses: f32 [1 + n] on the device. */
int df_lora_trainer_accumulate(df_lora_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                               df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                               df_error_t *err);
/*  The same, also writing the gradients with respect to the UNet's text
 *  inputs (unet.h), from which the text encoders' backward passes go on. */
int df_lora_trainer_accumulate_text(df_lora_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                                    df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                                    const df_unet_text_grads *text_grads, df_error_t *err);

/*  The optimiser step on the accumulated gradients (at learning rate lr,
 *  which the schedule sets), then the gradients are zeroed. */
int df_lora_trainer_step(df_lora_trainer_t *self, df_vk_batch_t *batch, float lr, df_error_t *err);

/*  The trainable values seen as one vector, for exchanging them between
 *  workers: tensor 2i is adapter i's down factor, 2i + 1 its up factor,
 *  laid end to end (df_lora_trainer_params values in all). */
size_t df_lora_trainer_tensor_count(const df_lora_trainer_t *self);
/*  Tensor i's shape as a matrix: rank x fan-in for a down factor, outputs x
 *  rank for an up one. */
void df_lora_trainer_tensor_shape(const df_lora_trainer_t *self, size_t i, uint32_t *rows, uint32_t *cols);

typedef enum { DF_LORA_FACTORS, DF_LORA_GRADIENTS } df_lora_values;

/*  Copies the factors (or their accumulated gradients) to host (params
 *  floats), or replaces them from host. */
int df_lora_trainer_download(df_lora_trainer_t *self, df_lora_values which, float *host, df_error_t *err);
int df_lora_trainer_upload(df_lora_trainer_t *self, df_lora_values which, const float *host, df_error_t *err);

/*  Optimiser steps taken. */
uint64_t df_lora_trainer_steps(const df_lora_trainer_t *self);

typedef enum { DF_LORA_KOHYA, DF_LORA_PEFT } df_lora_format;

/*  Writes the LoRA (f32, or f16 when half) with metadata (key/value pairs,
 *  NULL-terminated; may be NULL) besides the rank and alpha. */
int df_lora_trainer_save(df_lora_trainer_t *self, const char *path, df_lora_format format, int half,
                         const char *const *metadata, df_error_t *err);

/*  A checkpoint: everything a run needs to go on exactly as if it had not
 *  stopped (the factors, AdamW's moments, the step count, the options), in
 *  one safetensors file written atomically; metadata as for save. */
int df_lora_trainer_checkpoint(df_lora_trainer_t *self, const char *path, const char *const *metadata,
                               df_error_t *err);

/*  A trainer that goes on from a checkpoint: its factors are attached to
 *  unet (which must carry no adapters) and its state restored. Errors name
 *  the file and what does not fit this UNet. */
df_lora_trainer_t *df_lora_trainer_resume(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                          const char *path, df_error_t *err);
/*  The same with the text encoders a checkpoint of text-encoder training
 *  needs (NULL when it trained none; a mismatch either way is refused by
 *  name), and the kind of AdamW state to go on with (state8 1: 8-bit, 0:
 *  f32, -1: the checkpoint's; the file's moments are f32, either takes them). */
df_lora_trainer_t *df_lora_trainer_resume_text(df_unet_t *unet, df_clip_text_t *te1, df_clip_text_t *te2, int state8,
                                               df_vk_batch_t *batch, df_vk_transfer_t *xfer, const char *path,
                                               df_error_t *err);

#endif
