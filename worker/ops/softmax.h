/*  softmax.h - softmax along rows, y = softmax(scale * x), and its backward
 *  pass dx = y * (dy - sum(dy * y)) from the forward output y. */
#ifndef DF_OPS_SOFTMAX_H
#define DF_OPS_SOFTMAX_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

int df_softmax_forward(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, float scale, df_tensor x, df_tensor y,
                       df_error_t *err);
int df_softmax_backward(df_vk_batch_t *batch, uint32_t rows, uint32_t cols, df_tensor y, df_tensor dy, df_tensor dx,
                        df_error_t *err);

#endif
