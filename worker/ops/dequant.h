/*  dequant.h - 8-bit weights to floats on the device:
 *      y[r, c] = q[r, c] * scale[r * blocks + c / block],   r < rows, c < cols
 *  with blocks = df_quant8_blocks(cols, block): one scale per block of
 *  values along each row. q is a DF_I8 tensor, scale f32 (common/quant8.h
 *  says how they are made), y f32 or f16. Layers with 8-bit weights run this into a scratch buffer
 *  just before the op that reads the weight, so the model's weights stay at
 *  a byte per value while every kernel sees the floats it was written for. */
#ifndef DF_OPS_DEQUANT_H
#define DF_OPS_DEQUANT_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

int df_dequant_rows(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, uint32_t block, df_tensor q, df_tensor scale,
                    df_tensor y, df_error_t *err);

#endif
