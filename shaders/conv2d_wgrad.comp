#version 450
// Weight gradient of a 2-D convolution on NCHW planes, as an implicit GEMM
// that reduces over batch and pixels:
//
//   dw(o, c, tap) (+)= sum_{n, y, x} dy[n][o][y][x] * x[n][c] at (y, x) through tap
//
// Each invocation owns ROWS output channels o of one input channel c and all
// KH * KW taps, so every source value gathered serves ROWS products and
// every dy value KH * KW. With X_VEC (widths multiples of 4) four pixels of a
// row come per texel and the taps through conv_row_taps; otherwise each
// value is fetched on its own. The result is written at
// o * ldo + c * ldc + tap * ldt (OIHW or packed).
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint ROWS = 8;
layout(constant_id = 4) const uint KH = 3;
layout(constant_id = 5) const uint KW = 3;
layout(constant_id = 6) const uint STRIDE = 1;
layout(constant_id = 7) const uint PAD_L = 1;
layout(constant_id = 11) const bool X_VEC = false;
const bool TRANSPOSED = false;
const uint GROUPS = 1u;
vec4 conv_taps[3];

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X;
layout(set = 0, binding = 1) uniform samplerBuffer DY;
layout(set = 0, binding = 2) buffer DwBuf { Y_T dw[]; };

layout(push_constant) uniform Push {
    uint src_c, src_h, src_w;   // x: channels in this chunk, height, width
    uint dst_c, dst_h, dst_w;   // dy
    int pad_t;
    uint batches;               // batch entries summed by this dispatch
    uint off_x, off_dy, off_dw;
    uint x_nstride, dy_nstride;
    uint ldo, ldc, ldt;
    uint accumulate;
} p;

#include "conv_gather.glsl"

const uint TAPS = KH * KW;

void main()
{
    const uint c = gl_GlobalInvocationID.x;
    const uint o0 = gl_GlobalInvocationID.y * ROWS;
    if (c >= p.src_c || o0 >= p.dst_c)
        return;
    const uint npix = p.dst_h * p.dst_w;
    const uint xplane = p.src_h * p.src_w;
    uint orow[ROWS];
    [[unroll]] for (uint r = 0u; r < ROWS; r++)
        orow[r] = min(o0 + r, p.dst_c - 1u) * npix;

    float acc[ROWS * TAPS];
    [[unroll]] for (uint i = 0u; i < ROWS * TAPS; i++)
        acc[i] = 0.0;

    for (uint n = 0u; n < p.batches; n++) {
        const uint xpl = p.off_x + n * p.x_nstride + c * xplane;
        const uint dyb = p.off_dy + n * p.dy_nstride;
        if (X_VEC) {
            for (uint pg = 0u; pg < npix; pg += 4u) {
                uint y = pg / p.dst_w, x0 = pg % p.dst_w;
                vec4 a[ROWS];
                [[unroll]] for (uint r = 0u; r < ROWS; r++)
                    a[r] = texelFetch(DY, int((dyb + orow[r] + pg) >> 2));
                [[unroll]] for (uint ky = 0u; ky < KH; ky++) {
                    int sy = int(y * STRIDE + ky) - p.pad_t;
                    uint row = sy >= 0 && sy < int(p.src_h) ? xpl + uint(sy) * p.src_w : ~0u;
                    conv_row_taps(X, row, x0, p.src_w);
                    [[unroll]] for (uint kx = 0u; kx < KW; kx++)
                        [[unroll]] for (uint r = 0u; r < ROWS; r++)
                            acc[r * TAPS + ky * KW + kx] += dot(a[r], conv_taps[kx]);
                }
            }
        } else {
            for (uint pix = 0u; pix < npix; pix++) {
                uint y = pix / p.dst_w, x = pix % p.dst_w;
                float a[ROWS];
                [[unroll]] for (uint r = 0u; r < ROWS; r++)
                    a[r] = conv_fetch1(DY, dyb + orow[r] + pix);
                [[unroll]] for (uint ky = 0u; ky < KH; ky++)
                    [[unroll]] for (uint kx = 0u; kx < KW; kx++) {
                        float g = conv_gather1(X, xpl, p.src_h, p.src_w, p.pad_t, y, x, ky, kx);
                        [[unroll]] for (uint r = 0u; r < ROWS; r++)
                            acc[r * TAPS + ky * KW + kx] = fma(a[r], g, acc[r * TAPS + ky * KW + kx]);
                    }
            }
        }
    }

    [[unroll]] for (uint r = 0u; r < ROWS; r++) {
        uint o = o0 + r;
        if (o >= p.dst_c)
            break;
        [[unroll]] for (uint t = 0u; t < TAPS; t++) {
            uint e = p.off_dw + o * p.ldo + c * p.ldc + t * p.ldt;
            float v = acc[r * TAPS + t];
            if (p.accumulate != 0u)
                v += float(dw[e]);
            dw[e] = Y_T(v);
        }
    }
}
