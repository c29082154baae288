/*  copy2d.h - strided 2-D copies with dtype conversion:
 *      y[r * ld_y + j] = x[r * ld_x + j],  r < rows, j < width.
 *  Concatenation along channels is two of these into one destination
 *  (NCHW: rows = N, width = C_i * H * W, ld_y = C_total * H * W; [T, C]:
 *  rows = T, width = C_i, ld_y = C_total); a slice is one out of a source;
 *  each is the other's backward pass.
 *
 *  With transpose the destination is the transposed matrix instead:
 *      y[j * ld_y + r] = x[r * ld_x + j],  ld_y >= rows
 *  (conv2d packs its weights this way). */
#ifndef DF_OPS_COPY2D_H
#define DF_OPS_COPY2D_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint32_t rows, width;
    uint32_t ld_x, ld_y; /* ld_x >= width; ld_y >= width, or >= rows when transposing */
    int transpose;
} df_copy2d_desc;

int df_copy2d(df_vk_batch_t *batch, const df_copy2d_desc *d, df_tensor x, df_tensor y, df_error_t *err);

#endif
