/*  upsample.h - nearest-neighbour 2x upsampling of NCHW planes and its
 *  backward pass (each input pixel's gradient is the sum of its 2x2 block). */
#ifndef DF_OPS_UPSAMPLE_H
#define DF_OPS_UPSAMPLE_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

/*  x: planes x h x w -> y: planes x 2h x 2w. */
int df_upsample2x_forward(df_vk_batch_t *batch, uint32_t planes, uint32_t h, uint32_t w, df_tensor x, df_tensor y,
                          df_error_t *err);
/*  dy: planes x 2h x 2w -> dx: planes x h x w. */
int df_upsample2x_backward(df_vk_batch_t *batch, uint32_t planes, uint32_t h, uint32_t w, df_tensor dy, df_tensor dx,
                           df_error_t *err);

#endif
