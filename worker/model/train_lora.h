/*  train_lora.h - DreamBooth LoRA training of SDXL on one device, from
 *  photos and their captions to a LoRA file.
 *
 *  1. Each photo is cropped to the training size around its centre,
 *     resampled, and encoded once by the VAE (the latent distribution's
 *     mean, times the scaling factor); its caption once by both text
 *     encoders. Both are then released: training holds only the UNet.
 *  2. Each step draws batch x accumulate photos (a fresh permutation of the
 *     photos per epoch), in micro-batches of `batch` whose gradients add up, timesteps, noise and min-SNR weights (train_noise.h), with
 *     SDXL's micro-conditioning from each photo's original size and crop;
 *     the UNet's LoRA gradients accumulate and AdamW steps at the
 *     schedule's learning rate.
 *  3. The LoRA is written in kohya's and/or PEFT's format.
 *  Everything is a function of the seed: the same run gives the same file.
 */
#ifndef DF_MODEL_TRAIN_LORA_H
#define DF_MODEL_TRAIN_LORA_H

#include "lora_trainer.h"
#include "lr_schedule.h"
#include "sdxl_model.h"
#include "train_noise.h"

typedef struct {
    const char *const *images;   /* photo paths (PNG or JPEG) */
    const char *const *captions; /* one per photo */
    uint32_t count;
    uint32_t resolution;         /* square side in pixels */
    uint32_t steps, batch;
    uint32_t accumulate;         /* micro-batches of `batch` per optimiser step (0: 1) */
    int flip;                    /* mirror each sample half the time (both sides encoded once) */
    df_lora_train_opts lora;     /* rank, alpha, targets, seed, AdamW betas / eps / weight decay */
    df_lr_desc lr;
    df_train_noise_opts noise;
    df_dtype weights;            /* the UNet's and text encoders' storage */
    const char *checkpoint;      /* written at the end (and every checkpoint_every steps); NULL: none */
    uint32_t checkpoint_every;
    const char *resume;          /* a checkpoint to go on from; NULL: a fresh LoRA */
} df_train_params;

/*  Called after every step; returning non-zero cancels. */
typedef int (*df_train_progress)(void *ctx, uint64_t step, uint64_t steps, float loss, float lr);

/*  Trains and writes the LoRA to out_kohya and/or out_peft (either may be
 *  NULL). losses (steps values, may be NULL) receive each step's loss. */
int df_train_lora(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                  const df_train_params *p, df_train_progress progress, void *ctx, const char *out_kohya,
                  const char *out_peft, float *losses, df_error_t *err);

#endif
