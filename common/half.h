/*  half.h - IEEE binary16 and bfloat16 conversion on the host.
 *
 *  Float to half rounds to nearest, ties to even, the rounding every GPU uses
 *  when it stores a float16_t, so host-side references see the same values the
 *  device does. Subnormals, infinities and NaN are preserved.
 */
#ifndef DF_HALF_H
#define DF_HALF_H

#include <stddef.h>
#include <stdint.h>

float df_half_to_float(uint16_t h);
uint16_t df_float_to_half(float f);

float df_bf16_to_float(uint16_t b);
uint16_t df_float_to_bf16(float f);

/*  Array forms; src and dst must not overlap. */
void df_half_to_float_n(const uint16_t *src, float *dst, size_t n);
void df_float_to_half_n(const float *src, uint16_t *dst, size_t n);

/*  Unit roundoff of binary16: 2^-11. */
#define DF_HALF_EPS_ROUND (1.0 / 2048.0)
/*  Smallest positive normal half: 2^-14. */
#define DF_HALF_MIN_NORMAL (1.0 / 16384.0)
/*  Largest finite half. */
#define DF_HALF_MAX 65504.0

#endif
