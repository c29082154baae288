/*  adam8.h - AdamW's moments in 8 bits: the first moment m and the square
 *  root of the second moment v each as one byte per value, in blocks of
 *  DF_ADAM8_BLOCK values sharing one f32 scale (the block's largest
 *  magnitude). A quarter of f32 state's memory, for full fine-tunes and
 *  large ranks (kohya's and diffusers' "8-bit Adam").
 *
 *  The codes are small floating-point numbers relative to the block's
 *  scale, so values orders of magnitude below the block's largest keep
 *  their relative precision (a linear code would round them to zero):
 *    m: sign bit, then 7 bits c: 0 is zero, else (1 + (c & 7) / 8) 2^((c >> 3) - 15)
 *    sqrt(v): 8 bits c: 0 is zero, else (1 + (c & 15) / 16) 2^((c >> 4) - 15)
 *  Rounding is to the nearest code. A nonzero sqrt(v) never rounds to zero
 *  (its smallest code stands in): the update divides by it, and a larger
 *  denominator only shortens the step. Storing sqrt(v) rather than v halves
 *  the range of exponents the codes must span.
 *
 *  The device's optimiser (worker/ops/optim.h) computes with the same codes;
 *  this is the host side: checkpoints hold f32 moments, and a resumed run
 *  quantizes them again (to the same codes: a block's largest value decodes
 *  to its scale exactly). */
#ifndef DF_ADAM8_H
#define DF_ADAM8_H

#include <stdint.h>

#define DF_ADAM8_BLOCK 256

uint8_t df_adam8_encode_m(float x); /* x in [-1, 1] */
float df_adam8_decode_m(uint8_t c);
uint8_t df_adam8_encode_s(float x); /* x in [0, 1] */
float df_adam8_decode_s(uint8_t c);

/*  Blocks of n values: ceil(n / DF_ADAM8_BLOCK). */
uint64_t df_adam8_blocks(uint64_t n);

/*  m, v (f32 [n]) to codes mq, sq [n] and scales m_scale, s_scale [blocks]. */
void df_adam8_quantize(const float *m, const float *v, uint64_t n, uint8_t *mq, uint8_t *sq, float *m_scale,
                       float *s_scale);
/*  The reverse: m and v (v = the decoded square root, squared). */
void df_adam8_dequantize(const uint8_t *mq, const uint8_t *sq, const float *m_scale, const float *s_scale, uint64_t n,
                         float *m, float *v);

#endif
