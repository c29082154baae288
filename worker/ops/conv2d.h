/*  conv2d.h - 2-D convolution on NCHW tensors, forward and backward, as an
 *  implicit GEMM (the source is gathered tap by tap; no im2col buffer).
 *
 *      y[n][o][oy][ox] = bias[o] + sum_{c, ky, kx} w[o][c][ky][kx] * x[n][c][oy*s + ky - pad_t][ox*s + kx - pad_l]
 *
 *  with zeros outside x (padding). Kernels are 1 to 3 wide and high, stride
 *  1 or 2, each padding below the kernel size: everything SDXL's UNet and VAE
 *  use (3x3 stride 1 pad 1, 1x1, 3x3 stride 2 pad 1 in the UNet, 3x3 stride 2
 *  with pad (0, 1, 0, 1) in the VAE encoder).
 *
 *  Weights come in two layouts:
 *    OIHW    [out_c][in_c][kh][kw]  as stored by PyTorch and in safetensors;
 *    PACKED  [in_c][kh][kw][out_c]  what the kernels read fastest: four output
 *            channels per fetch forward, four reduction channels per fetch
 *            backward. df_conv2d_pack_weight converts once, at load time.
 *  Both work everywhere; OIHW is slower (one weight per fetch).
 *
 *  x, w, bias, y, dy are f32 or f16 each; arithmetic is f32. Operands larger
 *  than one binding (VAE activations at 1024 px) are split by batch entry and
 *  channel ranges; a split of the reduction channels adds partial sums into
 *  the destination, which rounds them to the destination's type in between
 *  (use an f32 destination where that matters).
 */
#ifndef DF_OPS_CONV2D_H
#define DF_OPS_CONV2D_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef enum {
    DF_CONV_OIHW = 0,
    DF_CONV_PACKED = 1,
} df_conv_layout;

typedef struct {
    uint32_t n, in_c, in_h, in_w, out_c;
    uint32_t kh, kw;                     /* 1 .. 3 */
    uint32_t stride;                     /* 1 or 2 */
    uint32_t pad_t, pad_l, pad_b, pad_r; /* each below the kernel size along its axis */
    df_conv_layout layout;
} df_conv2d_desc;

/*  A square kernel with the same padding on every side, OIHW weights. */
df_conv2d_desc df_conv2d_square(uint32_t n, uint32_t in_c, uint32_t h, uint32_t w, uint32_t out_c, uint32_t k,
                                uint32_t stride, uint32_t pad);

uint32_t df_conv2d_out_h(const df_conv2d_desc *d);
uint32_t df_conv2d_out_w(const df_conv2d_desc *d);
uint64_t df_conv2d_weight_elems(const df_conv2d_desc *d);
/*  Multiply-adds times two of the forward pass (each backward pass is the same). */
double df_conv2d_flops(const df_conv2d_desc *d);

/*  Checks sizes, kernel, stride and padding; the message names the field. */
int df_conv2d_check(const df_conv2d_desc *d, df_error_t *err);

/*  y (+)= conv(x, w) + bias. bias.ref.buf NULL means none. With accumulate
 *  the result is added to y (a fused residual add). */
int df_conv2d_forward(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor x, df_tensor w, df_tensor bias,
                      df_tensor y, int accumulate, df_error_t *err);

/*  dx (+)= the gradient of sum(dy * y) with respect to x. */
int df_conv2d_backward_data(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor dy, df_tensor w, df_tensor dx,
                            int accumulate, df_error_t *err);

/*  dw (+)= the gradient with respect to the weights, summed over the batch,
 *  in d->layout. */
int df_conv2d_backward_weight(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor x, df_tensor dy,
                              df_tensor dw, int accumulate, df_error_t *err);

/*  Rewrites OIHW weights w_oihw as PACKED into w_packed (another buffer
 *  range); d->layout is ignored. */
int df_conv2d_pack_weight(df_vk_batch_t *batch, const df_conv2d_desc *d, df_tensor w_oihw, df_tensor w_packed,
                          df_error_t *err);

#endif
