/*  quant8.c - see quant8.h. */
#include "quant8.h"

#include <math.h>

uint64_t df_quant8_blocks(uint64_t cols, uint64_t block)
{
    return block == 0 || block >= cols ? 1 : (cols + block - 1) / block;
}

void df_quant8_rows(const float *w, uint64_t rows, uint64_t cols, uint64_t block, int8_t *q, float *scale)
{
    if (block == 0 || block > cols) /* 0, like anything past the row: one scale per row */
        block = cols;
    uint64_t nb = df_quant8_blocks(cols, block);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t b = 0; b < nb; b++) {
            uint64_t c0 = b * block, c1 = c0 + block < cols ? c0 + block : cols;
            const float *row = w + r * cols;
            float amax = 0;
            for (uint64_t c = c0; c < c1; c++)
                if (fabsf(row[c]) > amax)
                    amax = fabsf(row[c]);
            float s = amax / 127.0f;
            scale[r * nb + b] = s;
            for (uint64_t c = c0; c < c1; c++) {
                /* row[c] / s can exceed 127 by a rounding step; the clamp keeps -128 out. */
                float v = s > 0 ? roundf(row[c] / s) : 0.0f;
                q[r * cols + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
}

void df_dequant8_rows(const int8_t *q, const float *scale, uint64_t rows, uint64_t cols, uint64_t block, float *w)
{
    if (block == 0 || block > cols)
        block = cols;
    uint64_t nb = df_quant8_blocks(cols, block);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            w[r * cols + c] = (float)q[r * cols + c] * scale[r * nb + c / block];
}
