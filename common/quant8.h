/*  quant8.h - 8-bit weights with one scale per row.
 *
 *  A matrix W[rows, cols] (a linear layer's [out, in], a convolution's
 *  [out, in * kh * kw]) is stored as q[rows, cols] signed bytes in -127..127
 *  and scale[rows] floats, W[r][c] ~ q[r][c] * scale[r], with scale[r] the
 *  row's largest magnitude over 127. One scale per output channel keeps a
 *  row with small weights from losing its precision to a row with large
 *  ones, and each output of a layer then depends on one scale only.
 *
 *  -128 is never produced, so the code is symmetric and a dequantizer may
 *  treat the byte as snorm. The device dequantizes with the same product
 *  (worker/ops/dequant.h); this is the host side and the tests' reference.
 */
#ifndef DF_QUANT8_H
#define DF_QUANT8_H

#include <stdint.h>

/*  Scales per row: ceil(cols / block). */
uint64_t df_quant8_blocks(uint64_t cols, uint64_t block);

/*  Quantizes w (row-major) into q and scale, one scale per block of
 *  `block` values along each row (the last block of a row may be short;
 *  block >= cols or 0: one per row), scale[r * blocks + c / block]. A block of
 *  zeros gets scale 0 and zeros; values must be finite (the weight loader
 *  refuses a tensor that is not, naming it). */
void df_quant8_rows(const float *w, uint64_t rows, uint64_t cols, uint64_t block, int8_t *q, float *scale);

/*  w[r][c] = q[r][c] * scale[r * blocks + c / block], the product as a float
 *  (what the device computes before any conversion to f16). */
void df_dequant8_rows(const int8_t *q, const float *scale, uint64_t rows, uint64_t cols, uint64_t block, float *w);

#endif
