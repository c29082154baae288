/*  delta_codec.h - LoRA deltas (new - old factors) packed small for the
 *  network, as workers send them each round of data-parallel training.
 *
 *  Encodings, each then compressed as one lz4 frame:
 *    f32   exact
 *    f16   IEEE half, each row scaled by a power of two (its row scale)
 *          that keeps small deltas clear of f16's subnormals
 *    bf16  bfloat16. Both: each value's bytes split into planes
 *          (every value's low byte, then every high byte) before lz4: the
 *          high bytes (sign, exponent) of a delta repeat a lot, the low
 *          ones hardly, and lz4 only finds the repeats laid side by side
 *    int8  per row (of a factor) a scale max|x| / 127 and one signed byte
 *          per value; with error feedback, what rounding lost this round is
 *          carried into the next, so nothing is lost over a run, only late
 *  Decoding checks every size against what the header says it should be:
 *  a message from the network cannot make it write out of bounds.
 */
#ifndef DF_DELTA_CODEC_H
#define DF_DELTA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum { DF_DELTA_F32, DF_DELTA_F16, DF_DELTA_BF16, DF_DELTA_INT8, DF_DELTA_ENCODING_COUNT } df_delta_encoding;

const char *df_delta_encoding_name(df_delta_encoding e);
/*  "f32", "f16", "bf16", "int8"; -1 when unknown. */
int df_delta_encoding_parse(const char *name);

/*  Encodes x (rows x cols f32) into *data (malloc'd lz4 frame, *len bytes).
 *  int8 and f16 write rows scales into row_scales; residual (rows x cols, may be
 *  NULL: no error feedback) is added to x before rounding and receives what
 *  the rounding lost. Other encodings ignore both. */
int df_delta_encode(df_delta_encoding e, const float *x, uint32_t rows, uint32_t cols, float *residual,
                    float *row_scales, uint8_t **data, size_t *len, df_error_t *err);

/*  Decodes into out (rows x cols f32). row_scales: rows values (int8, f16). */
int df_delta_decode(df_delta_encoding e, const uint8_t *data, size_t len, const float *row_scales, uint32_t rows,
                    uint32_t cols, float *out, df_error_t *err);

#endif
