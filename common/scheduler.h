/*  scheduler.h - SDXL's noise schedule and the samplers that walk it, as
 *  diffusers defines them for SDXL's scheduler config (scaled-linear betas
 *  0.00085 .. 0.012 over 1000 training steps, epsilon prediction, "leading"
 *  timestep spacing with steps_offset 1).
 *
 *    euler            EulerDiscreteScheduler
 *    euler_karras     the same on Karras sigmas
 *    euler_a          EulerAncestralDiscreteScheduler (fresh noise each step)
 *    dpmpp_2m         DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint
 *    dpmpp_2m_karras  the same on Karras sigmas
 *    ddim             DDIMScheduler, eta 0
 *
 *  A sampling loop asks, per step i: the timestep the UNet receives, the
 *  factor its input is scaled by, and then hands the (guided) noise
 *  prediction to df_scheduler_step, which updates the latents in place. The
 *  latents start as standard normal noise times init_noise_sigma. All the
 *  arithmetic is on the host: latents are small (4 x 128 x 128 at 1024 px)
 *  next to a UNet evaluation.
 */
#ifndef DF_SCHEDULER_H
#define DF_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DF_SCHED_TRAIN_STEPS 1000
#define DF_SCHED_MAX_STEPS 1000

typedef enum {
    DF_SAMPLER_EULER,
    DF_SAMPLER_EULER_KARRAS,
    DF_SAMPLER_EULER_A,
    DF_SAMPLER_DPMPP_2M,
    DF_SAMPLER_DPMPP_2M_KARRAS,
    DF_SAMPLER_DDIM,
    DF_SAMPLER_COUNT
} df_sampler;

/*  "euler", "euler_karras", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim". */
const char *df_sampler_name(df_sampler s);
/*  The names above; -1 when unknown. */
int df_sampler_parse(const char *name);

typedef struct _df_scheduler_t df_scheduler_t;

/*  A schedule of `steps` (1 .. DF_SCHED_MAX_STEPS) for latents of `n`
 *  values. */
df_scheduler_t *df_scheduler_new(df_sampler sampler, int steps, uint64_t n, df_error_t *err);
void df_scheduler_destroy(df_scheduler_t **self_p);

int df_scheduler_steps(const df_scheduler_t *self);
/*  What the initial standard-normal noise is multiplied by. */
float df_scheduler_init_noise_sigma(const df_scheduler_t *self);
/*  The timestep the UNet receives at step i (a float: Karras schedules fall
 *  between integers). */
float df_scheduler_timestep(const df_scheduler_t *self, int i);
/*  The factor the latents are scaled by before they go into the UNet. */
float df_scheduler_input_scale(const df_scheduler_t *self, int i);
/*  The sigma at step i (i = steps: the final one), for tests and progress. */
float df_scheduler_sigma(const df_scheduler_t *self, int i);
/*  Whether step() takes fresh noise (euler_a). */
int df_scheduler_needs_noise(const df_scheduler_t *self);

/*  One step: x (n values, in place) from the noise prediction eps at step i.
 *  noise (n standard-normal values) is required when needs_noise, else
 *  ignored. Steps must be taken in order 0, 1, ... (the multistep solver
 *  remembers the previous prediction). */
int df_scheduler_step(df_scheduler_t *self, int i, const float *eps, float *x, const float *noise, df_error_t *err);

/*  The clean latents the noise prediction eps at step i implies for x (the
 *  "denoised" estimate previews show), into out (n values); x is the
 *  sampler's own latents before step i. */
void df_scheduler_denoised(const df_scheduler_t *self, int i, const float *x, const float *eps, float *out);

/*  The training-time quantities (for the trainer): alphas_cumprod[t]. */
double df_scheduler_alpha_cumprod(int t);

#endif
