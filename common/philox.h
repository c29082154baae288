/*  philox.h - Philox4x32-10 counter-based random numbers.
 *
 *  A (key, counter) pair maps to four 32-bit words with no state carried
 *  between calls, so any element of a random tensor can be computed on its own:
 *  the host and every GPU kernel produce the same stream from the same seed.
 *  This is the host definition the device kernels are tested against.
 *
 *  Convention for tensors: element i of the stream (seed, stream_id) is word
 *  (i % 4) of philox(key = seed, counter = {i / 4, 0, stream_id lo, stream_id hi}).
 */
#ifndef DF_PHILOX_H
#define DF_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/*  One Philox4x32-10 block: ten rounds over ctr with key. */
void df_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/*  32-bit word i of the stream. */
uint32_t df_philox_u32(uint64_t seed, uint64_t stream, uint64_t i);

/*  Uniform float in [0, 1) from a word: the top 24 bits, so every value is
 *  exactly representable. */
float df_philox_uniform(uint32_t word);

/*  Fills dst[0..n) with uniform floats in [lo, hi) from stream (seed, stream). */
void df_philox_fill_uniform(float *dst, size_t n, uint64_t seed, uint64_t stream, float lo,
                            float hi);

/*  Fills dst[0..n) with standard normal floats (Box-Muller on word pairs
 *  2j and 2j+1, giving elements 2j and 2j+1). */
void df_philox_fill_normal(float *dst, size_t n, uint64_t seed, uint64_t stream);

#endif
