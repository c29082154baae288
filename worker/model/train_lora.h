/*  train_lora.h - DreamBooth LoRA training of SDXL on one device, from
 *  photos and their captions to a LoRA file.
 *
 *  1. Each photo is cropped to the training size around its centre,
 *     resampled, and encoded once by the VAE (the latent distribution's
 *     mean, times the scaling factor); its caption once by both text
 *     encoders (train_sample.h). Both are then released: training holds
 *     only the UNet. With sample caches made ahead (the `encode` job), the
 *     run reads those and loads neither.
 *     Training the text encoders too (train_text) keeps them, and every
 *     sample's caption goes through them (with their adapters) at every
 *     step, their backward passes continuing from the UNet's.
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
    const char *const *images;   /* photo paths (PNG, JPEG, WebP or HEIC) */
    const char *const *captions; /* one per photo */
    uint32_t count;
    /* Sample caches (train_sample.h), one per photo and one per class image,
     * in place of encoding them here; NULL: encode. Each is checked against
     * this run's resolution, buckets, flips, captions and model. */
    const char *const *caches;
    const char *const *class_caches;
    uint32_t resolution;         /* square side in pixels */
    uint32_t steps, batch;
    uint32_t accumulate;         /* micro-batches of `batch` per optimiser step (0: 1) */
    int flip;                    /* mirror each sample half the time (both sides encoded once) */
    int buckets;                 /* each photo at its aspect-ratio bucket (aspect_buckets.h), not cropped square */
    df_lora_train_opts lora;     /* rank, alpha, targets, seed, AdamW betas / eps / weight decay */
    int train_text;              /* LoRAs on both text encoders too (captions then fit 75 tokens) */
    int full;                    /* full fine-tuning: every UNet weight trains (f32 weights, one worker, no
                                  * checkpoints); out_kohya then receives the UNet, out_peft nothing */
    df_lr_desc lr;
    df_train_noise_opts noise;
    df_dtype weights;            /* the UNet's and text encoders' storage */
    const char *checkpoint;      /* written at the end (and every checkpoint_every steps); NULL: none */
    uint32_t checkpoint_every;
    const char *resume;          /* a checkpoint to go on from; NULL: a fresh LoRA */
    /* Called after each checkpoint is written (may be NULL): to store it
     * where a later attempt finds it. Checkpoints carry the losses so far. */
    int (*on_checkpoint)(void *ctx, const char *path, uint64_t step, df_error_t *err);
    void *checkpoint_ctx;
    struct df_train_sync *sync;  /* data parallel (below); NULL: this run takes every sample */
    /* Prior preservation: class photos and captions (class_count 0: none);
     * each sample is paired with one, whose loss counts prior_weight times. */
    const char *const *class_images;
    const char *const *class_captions;
    uint32_t class_count;
    float prior_weight;
    /* Validation: an image of each prompt every validate_every steps (0:
     * only after the last step), with the LoRA as it stands, through the
     * UNet being trained; each goes to on_validation. */
    const char *const *validation_prompts;
    uint32_t n_validation;
    uint32_t validate_every, validation_steps; /* 0 steps: 25 */
    uint32_t validation_width, validation_height; /* 0: the resolution */
    int (*on_validation)(void *ctx, uint64_t step, uint32_t prompt, const uint8_t *rgb, uint32_t width,
                         uint32_t height, df_error_t *err);
    void *validation_ctx;
    /* For the LoRA files' metadata (each may be NULL). */
    const char *base_model, *base_model_identity, *token, *class_word;
} df_train_params;

/*  Data-parallel training: this run is one member of a group that splits
 *  each step's batch x accumulate samples (global sample indices, so the
 *  same photos, noise and timesteps whichever member draws them). Every
 *  local_steps steps (a round) the member calls exchange with its values,
 *  which come back replaced by the group's average, the same for every
 *  member:
 *    local_steps 1: the values are the mean gradients over the member's
 *      samples; every member feeds the average to the same AdamW step, so
 *      the group trains exactly as one worker with the whole batch;
 *    more: each member steps alone on its share; the values are the change
 *      of the factors over the round, and every member continues from the
 *      round's start plus the average change.
 *  losses: the member's mean loss of each of the round's steps (n_steps),
 *  replaced by the group's. *first and *count: the member's share, changed
 *  by the group for the next round (members come and go). */
typedef struct df_train_sync {
    uint32_t local_steps;       /* 0: 1 */
    uint32_t first, count;      /* this member's share in the first round */
    int (*exchange)(struct df_train_sync *sync, const df_lora_trainer_t *tr, uint64_t round, int gradient,
                    float *values, uint64_t n, uint64_t samples, float *losses, uint32_t n_steps, df_error_t *err);
    void *ctx;
} df_train_sync;

/*  Called after every step; returning non-zero cancels. */
typedef int (*df_train_progress)(void *ctx, uint64_t step, uint64_t steps, float loss, float lr);

/*  Trains and writes the LoRA to out_kohya and/or out_peft (either may be
 *  NULL). losses (steps values, may be NULL) receive each step's loss. */
int df_train_lora(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                  const df_train_params *p, df_train_progress progress, void *ctx, const char *out_kohya,
                  const char *out_peft, float *losses, df_error_t *err);

#endif
