/*  geglu.h - SDXL's feed-forward gate: x is [rows, 2 * inner], value then
 *  gate; y = value * gelu(gate) (exact GELU), and its backward pass. */
#ifndef DF_OPS_GEGLU_H
#define DF_OPS_GEGLU_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

/*  y: [rows, inner]. */
int df_geglu_forward(df_vk_batch_t *batch, uint32_t rows, uint32_t inner, df_tensor x, df_tensor y, df_error_t *err);
/*  dx: [rows, 2 * inner] from x and dy [rows, inner]. */
int df_geglu_backward(df_vk_batch_t *batch, uint32_t rows, uint32_t inner, df_tensor x, df_tensor dy, df_tensor dx,
                      df_error_t *err);

#endif
