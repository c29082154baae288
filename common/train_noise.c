/*  train_noise.c - see train_noise.h. */
#include "train_noise.h"

#include <math.h>

#include "philox.h"
#include "scheduler.h"

/* Philox streams of a (step, sample): one each for the timestep, the
 * noise and the offset's per-channel values. */
#define STREAM(step, sample, what) (((uint64_t)(step) << 24) | ((uint64_t)(sample) << 4) | (what))

float df_min_snr_weight(int t, float gamma)
{
    if (gamma <= 0)
        return 1.0f;
    double acp = df_scheduler_alpha_cumprod(t), snr = acp / (1 - acp);
    return (float)(fmin(snr, (double)gamma) / snr);
}

void df_train_noise_batch(const df_train_noise_opts *o, uint64_t step, uint32_t first_sample, uint32_t n, uint32_t c,
                          uint64_t hw, const float *x0, float *xt, float *noise, float *timesteps, float *weights)
{
    for (uint32_t s = 0; s < n; s++) {
        uint32_t g = first_sample + s; /* the sample's place in the global batch */
        float u;
        df_philox_fill_uniform(&u, 1, o->seed, STREAM(step, g, 1), 0.0f, 1.0f);
        int t = (int)(u * DF_SCHED_TRAIN_STEPS);
        t = t < 0 ? 0 : t >= DF_SCHED_TRAIN_STEPS ? DF_SCHED_TRAIN_STEPS - 1 : t;
        timesteps[s] = (float)t;
        weights[s] = df_min_snr_weight(t, o->min_snr_gamma);
        float *e = noise + (uint64_t)s * c * hw;
        df_philox_fill_normal(e, (size_t)c * hw, o->seed, STREAM(step, g, 2));
        if (o->noise_offset != 0) {
            float off[64];
            uint32_t cc = c < 64 ? c : 64;
            df_philox_fill_normal(off, cc, o->seed, STREAM(step, g, 3));
            for (uint32_t ch = 0; ch < cc; ch++)
                for (uint64_t k = 0; k < hw; k++)
                    e[ch * hw + k] += o->noise_offset * off[ch];
        }
        double acp = df_scheduler_alpha_cumprod(t), a = sqrt(acp), b = sqrt(1 - acp);
        const float *x = x0 + (uint64_t)s * c * hw;
        float *y = xt + (uint64_t)s * c * hw;
        for (uint64_t k = 0; k < (uint64_t)c * hw; k++)
            y[k] = (float)(a * x[k] + b * e[k]);
    }
}
