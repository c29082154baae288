/*  noise.h - Gaussian noise from a counter-based RNG (Philox4x32-10), so a
 *  seed gives the same noise on every device and on the host
 *  (df_philox_fill_normal in common/philox.h), element by element: a shard
 *  of a batch draws exactly its own part of the stream.
 *      y[i] = scale * normal(seed, stream, first + i)   (+ y[i] when add) */
#ifndef DF_OPS_NOISE_H
#define DF_OPS_NOISE_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint64_t n;
    uint64_t seed, stream;
    uint64_t first; /* index of y[0] in the stream; a multiple of 4 */
    float scale;
    int add;
} df_noise_desc;

int df_noise_normal(df_vk_batch_t *batch, const df_noise_desc *d, df_tensor y, df_error_t *err);

#endif
