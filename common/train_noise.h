/*  train_noise.h - what a diffusion training step samples: SDXL's forward
 *  process on the training latents, as diffusers' DDPMScheduler.add_noise
 *  and the DreamBooth LoRA script do it.
 *
 *  Per sample: a timestep uniform over the 1000 training steps; noise,
 *  standard normal, plus noise_offset times one normal value per (sample,
 *  channel) when an offset is asked for (it teaches the model to move an
 *  image's mean, so very dark and very bright pictures become reachable);
 *  the noisy latents x_t = sqrt(acp_t) x_0 + sqrt(1 - acp_t) noise; and the
 *  loss weight, min(SNR, gamma) / SNR with SNR = acp_t / (1 - acp_t) when
 *  min-SNR-gamma weighting is on (gamma > 0; epsilon prediction), else 1.
 *  Everything comes from Philox streams of (seed, step), so a resumed run
 *  draws what the uninterrupted one would have.
 */
#ifndef DF_TRAIN_NOISE_H
#define DF_TRAIN_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct {
    uint64_t seed;
    float noise_offset;  /* 0: none; SDXL trainers use about 0.0357 */
    float min_snr_gamma; /* 0: off; 5 is the paper's and kohya's choice */
} df_train_noise_opts;

/*  For step `step`'s batch of n samples of c channels x hw values: x0 (the
 *  clean latents) in; xt (noisy latents), noise (the target of epsilon
 *  prediction), timesteps and weights (n each) out. first_sample is the
 *  batch's first sample's index in the global batch (a worker's share draws
 *  what those samples draw in the whole batch). */
void df_train_noise_batch(const df_train_noise_opts *o, uint64_t step, uint32_t first_sample, uint32_t n, uint32_t c,
                          uint64_t hw, const float *x0, float *xt, float *noise, float *timesteps, float *weights);

/*  The min-SNR-gamma weight of timestep t (1 when gamma <= 0). */
float df_min_snr_weight(int t, float gamma);

#endif
