/*  timestep.h - sinusoidal embeddings of timesteps (and of SDXL's six
 *  micro-conditioning numbers), as diffusers' get_timestep_embedding:
 *      f_j = scale * exp(-ln(max_period) * j / (half - shift)),  half = dim / 2
 *      emb = [sin(t f), cos(t f)]  ([cos, sin] when flip_sin_to_cos), 0-padded to dim
 *  The frequencies are a small constant table computed on the host in double
 *  (df_timestep_freqs); the device does t * f and an accurate sin/cos. */
#ifndef DF_OPS_TIMESTEP_H
#define DF_OPS_TIMESTEP_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint32_t dim;
    float max_period; /* 10000 */
    float shift;      /* downscale_freq_shift: 0 for SDXL */
    float scale;      /* 1 */
    int flip_sin_to_cos;
} df_timestep_desc;

/*  Writes the dim / 2 frequencies for d into freqs (host memory). */
void df_timestep_freqs(const df_timestep_desc *d, float *freqs);

/*  t: f32 [batch]; freqs: f32 [dim / 2] (from df_timestep_freqs, uploaded);
 *  emb: [batch, dim]. */
int df_timestep_embedding(df_vk_batch_t *batch, const df_timestep_desc *d, uint32_t count, df_tensor t,
                          df_tensor freqs, df_tensor emb, df_error_t *err);

#endif
