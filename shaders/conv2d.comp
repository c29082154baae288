#version 450
// 2-D convolution on NCHW planes as an implicit GEMM: no im2col buffer, the
// source taps are gathered straight from the input. One kernel serves
//   forward:          dst = y,  src = x,  reduction over input channels
//   backward (data):  dst = dx, src = dy, reduction over output channels,
//                     as a direct convolution with flipped taps (stride 1)
//                     or a transposed gather (stride 2)
//
//   dst[n][o][y][x] (+)= bias[o] + sum_{c, ky, kx} w(o, c, tap) * src(n, c, y, x, ky, kx)
//
// The weight of (dst channel o, src channel c, tap t) is at
// o * wo + c * wc + t * wt, so the same code reads PyTorch's OIHW layout and
// the packed [IC][KH][KW][OC] layout, forward and backward.
//
// Each invocation owns ROWS dst channels x 4 CQ pixels, like the texel GEMM:
// texel fetches, no shared memory, no barriers (the shape that is fast on
// CPU drivers; see docs/performance.md). W_VEC picks how weights are fetched:
//   1: four consecutive dst channels per texel (wo == 1: packed, forward)
//   2: four consecutive src channels per texel (wc == 1: packed, backward)
//   0: one value per fetch (any layout)
// X_VEC gathers the invocation's 4 CQ pixels, all on one row, a texel at a
// time (conv_row_taps) where the widths allow; otherwise every value is
// gathered on its own.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint ROWS = 8;     // dst channels per invocation (multiple of 4 when W_VEC == 1)
layout(constant_id = 3) const uint CQ = 1;       // groups of 4 pixels per invocation: 1 or 2
layout(constant_id = 4) const uint KH = 3;
layout(constant_id = 5) const uint KW = 3;
layout(constant_id = 6) const uint STRIDE = 1;
layout(constant_id = 7) const uint PAD_L = 1;
layout(constant_id = 8) const bool TRANSPOSED = false;
layout(constant_id = 9) const bool FLIP = false;  // read tap (KH-1-ky, KW-1-kx)
layout(constant_id = 10) const uint W_VEC = 0;
layout(constant_id = 11) const bool X_VEC = false;
layout(constant_id = 12) const bool HAS_BIAS = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer SRC;
layout(set = 0, binding = 1) uniform samplerBuffer W;
layout(set = 0, binding = 2) uniform samplerBuffer BIAS;
layout(set = 0, binding = 3) buffer DstBuf { Y_T dst[]; };

layout(push_constant) uniform Push {
    uint src_c, src_h, src_w;     // channels in this dispatch's chunk
    uint dst_c, dst_h, dst_w;
    int pad_t;
    uint off_src, off_w, off_bias, off_dst;
    uint src_nstride, dst_nstride; // batch strides (gl_GlobalInvocationID.z)
    uint wo, wc, wt;
    uint accumulate;               // add onto dst instead of overwriting it
} p;

const uint GROUPS = CQ;
vec4 conv_taps[GROUPS * 3u];
#include "conv_gather.glsl"

const uint CSTEP = W_VEC == 2u ? 4u : 1u;

void main()
{
    const uint npix = p.dst_h * p.dst_w;
    const uint pix0 = gl_GlobalInvocationID.x * 4u * CQ;
    const uint o0 = gl_GlobalInvocationID.y * ROWS;
    if (pix0 >= npix || o0 >= p.dst_c)
        return;
    const uint n = gl_GlobalInvocationID.z;
    const uint src_base = p.off_src + n * p.src_nstride;
    const uint plane = p.src_h * p.src_w;

    // Pixels past the end (and dst channels past dst_c) are clamped to the
    // last valid one: computed, never stored, so the loops need no checks.
    uint py[4u * CQ], px[4u * CQ];
    [[unroll]] for (uint j = 0u; j < 4u * CQ; j++) {
        uint pix = X_VEC ? min(pix0, npix - 4u * CQ) + j : min(pix0 + j, npix - 1u);
        py[j] = pix / p.dst_w;
        px[j] = pix % p.dst_w;
    }
    uint orow[ROWS];
    [[unroll]] for (uint r = 0u; r < ROWS; r++)
        orow[r] = min(o0 + r, p.dst_c - 1u);

    vec4 acc[ROWS * CQ];
    [[unroll]] for (uint i = 0u; i < ROWS * CQ; i++)
        acc[i] = vec4(0.0);

    for (uint c = 0u; c < p.src_c; c += CSTEP) {
        [[unroll]] for (uint ky = 0u; ky < KH; ky++) {
            // xv[(cc * CQ + q) * 3 + kx]: source channel c + cc, pixel group q, tap (ky, kx).
            vec4 xv[CSTEP * CQ * 3u];
            [[unroll]] for (uint cc = 0u; cc < CSTEP; cc++) {
                uint pl = src_base + (c + cc) * plane;
                if (X_VEC) {
                    int sy = int(py[0] * STRIDE + ky) - p.pad_t;
                    uint row = sy >= 0 && sy < int(p.src_h) ? pl + uint(sy) * p.src_w : ~0u;
                    conv_row_taps(SRC, row, px[0], p.src_w);
                    [[unroll]] for (uint i = 0u; i < CQ * 3u; i++)
                        xv[cc * CQ * 3u + i] = conv_taps[i];
                } else {
                    [[unroll]] for (uint q = 0u; q < CQ; q++)
                        [[unroll]] for (uint kx = 0u; kx < KW; kx++)
                            [[unroll]] for (uint j = 0u; j < 4u; j++)
                                xv[(cc * CQ + q) * 3u + kx][j] = conv_gather1(SRC, pl, p.src_h, p.src_w, p.pad_t,
                                                                           py[4u * q + j], px[4u * q + j], ky, kx);
                }
            }
            [[unroll]] for (uint kx = 0u; kx < KW; kx++) {
                uint tap = FLIP ? (KH - 1u - ky) * KW + (KW - 1u - kx) : ky * KW + kx;
                uint wbase = p.off_w + tap * p.wt;
                if (W_VEC == 1u) {
                    [[unroll]] for (uint g = 0u; g < ROWS / 4u; g++) {
                        // dst_c is a multiple of 4 here, so groups past it clamp to the last whole one.
                        uint og = min(o0 + 4u * g, p.dst_c - 4u);
                        vec4 a = texelFetch(W, int((wbase + og + c * p.wc) >> 2));
                        [[unroll]] for (uint q = 0u; q < CQ; q++) {
                            vec4 x = xv[q * 3u + kx];
                            acc[(4u * g + 0u) * CQ + q] = fma(vec4(a.x), x, acc[(4u * g + 0u) * CQ + q]);
                            acc[(4u * g + 1u) * CQ + q] = fma(vec4(a.y), x, acc[(4u * g + 1u) * CQ + q]);
                            acc[(4u * g + 2u) * CQ + q] = fma(vec4(a.z), x, acc[(4u * g + 2u) * CQ + q]);
                            acc[(4u * g + 3u) * CQ + q] = fma(vec4(a.w), x, acc[(4u * g + 3u) * CQ + q]);
                        }
                    }
                } else if (W_VEC == 2u) {
                    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                        vec4 a = texelFetch(W, int((wbase + orow[r] * p.wo + c) >> 2));
                        [[unroll]] for (uint q = 0u; q < CQ; q++) {
                            vec4 t = fma(vec4(a.x), xv[(0u * CQ + q) * 3u + kx], acc[r * CQ + q]);
                            t = fma(vec4(a.y), xv[(1u * CQ + q) * 3u + kx], t);
                            t = fma(vec4(a.z), xv[(2u * CQ + q) * 3u + kx], t);
                            acc[r * CQ + q] = fma(vec4(a.w), xv[(3u * CQ + q) * 3u + kx], t);
                        }
                    }
                } else {
                    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                        float a = conv_fetch1(W, wbase + orow[r] * p.wo + c * p.wc);
                        [[unroll]] for (uint q = 0u; q < CQ; q++)
                            acc[r * CQ + q] = fma(vec4(a), xv[q * 3u + kx], acc[r * CQ + q]);
                    }
                }
            }
        }
    }

    const uint dst_base = p.off_dst + n * p.dst_nstride;
    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
        uint o = o0 + r;
        if (o >= p.dst_c)
            break;
        float bias = HAS_BIAS ? conv_fetch1(BIAS, p.off_bias + o) : 0.0;
        [[unroll]] for (uint j = 0u; j < 4u * CQ; j++) {
            uint pix = pix0 + j;
            if (pix >= npix)
                break;
            uint e = dst_base + o * npix + pix;
            float v = acc[r * CQ + j / 4u][j % 4u] + bias;
            if (p.accumulate != 0u)
                v += float(dst[e]);
            dst[e] = Y_T(v);
        }
    }
}
