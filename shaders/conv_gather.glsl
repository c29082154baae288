// Reading a convolution's source plane at the taps of its output pixels,
// shared by the convolution and its weight gradient. The includer declares
// the constants KW, STRIDE, PAD_L, TRANSPOSED and GROUPS, and
// vec4 conv_taps[GROUPS * 3].
//
// For output pixel (y, x) and tap (ky, kx) the source pixel is
//   direct:      (y * STRIDE + ky - pad_t,  x * STRIDE + kx - PAD_L)
//   transposed:  ((y + pad_t - ky) / STRIDE, (x + PAD_L - kx) / STRIDE), only
//                where both divisions are exact (the adjoint of a strided
//                direct convolution: gradients flowing back to its input)
// and anything outside the plane reads as zero (the padding).

float conv_fetch1(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }

// One source value for output pixel (y, x), tap (ky, kx); plane is the index
// of the source plane's first element.
float conv_gather1(samplerBuffer t, uint plane, uint sh, uint sw, int pad_t, uint y, uint x, uint ky, uint kx)
{
    int sy, sx;
    if (!TRANSPOSED) {
        sy = int(y * STRIDE + ky) - pad_t;
        sx = int(x * STRIDE + kx) - int(PAD_L);
    } else {
        int ty = int(y) + pad_t - int(ky), tx = int(x) + int(PAD_L) - int(kx);
        if (ty < 0 || tx < 0 || ty % int(STRIDE) != 0 || tx % int(STRIDE) != 0)
            return 0.0;
        sy = ty / int(STRIDE);
        sx = tx / int(STRIDE);
    }
    if (sy < 0 || sy >= int(sh) || sx < 0 || sx >= int(sw))
        return 0.0;
    return conv_fetch1(t, plane + uint(sy) * sw + uint(sx));
}

// The vector path (direct convolutions only): a run of GROUPS * 4 output
// pixels (y, x0 ..) on one row with x0 % 4 == 0, a source width that is a
// multiple of 4 and rows that start on a texel. row is the index of the
// source row's first element, or ~0u when the row is padding. Fills
// conv_taps[g * 3 + kx][j] = source at (row, (x0 + 4g + j) * STRIDE + kx - PAD_L)
// for kx < KW (the includer declares GROUPS and conv_taps).
//
// The source columns a run needs lie in GROUPS * STRIDE + 2 aligned texels
// around x0 * STRIDE, fetched once and shuffled with constant indices (the
// driver folds them once KW, STRIDE and PAD_L are known): neighbouring groups
// share their edge texels, so a run of two 3-wide groups costs 4 fetches for
// 24 values.
void conv_row_taps(samplerBuffer t, uint row, uint x0, uint sw)
{
    const int NT = int(GROUPS * STRIDE) + 2;                            // texels -1 .. GROUPS*STRIDE
    const int LO = (4 - int(PAD_L)) >> 2;                               // first one needed
    const int HI = (4 * int(STRIDE) * (int(GROUPS) - 1) + 3 * int(STRIDE) + int(KW) - 1 - int(PAD_L) + 4) >> 2;
    vec4 tex[NT];
    int xs = int(x0 * STRIDE);
    [[unroll]] for (int k = 0; k < NT; k++) {
        int xt = xs + 4 * (k - 1);
        bool inside = row != ~0u && k >= LO && k <= HI && xt >= 0 && xt < int(sw);
        tex[k] = inside ? texelFetch(t, int((row + uint(xt)) >> 2)) : vec4(0.0);
    }
    [[unroll]] for (int g = 0; g < int(GROUPS); g++)
        [[unroll]] for (int kx = 0; kx < 3; kx++) {
            if (kx >= int(KW)) {
                conv_taps[g * 3 + kx] = vec4(0.0);
                continue;
            }
            [[unroll]] for (int j = 0; j < 4; j++) {
                int i = int(STRIDE) * (4 * g + j) + kx - int(PAD_L) + 4;
                conv_taps[g * 3 + kx][j] = tex[i >> 2][i & 3];
            }
        }
}
