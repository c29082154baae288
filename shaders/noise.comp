#version 450
// Gaussian noise from Philox4x32-10, identical in its bits to the host's
// df_philox_fill_normal up to f32 rounding: element i of stream (seed,
// stream) uses words 2*(i/2) and 2*(i/2)+1 (Box-Muller), word w being word
// w % 4 of the block philox(ctr = {w / 4 (64-bit), stream}, key = seed).
// One invocation per block of four elements.
//   y = scale * noise (+ y when ADD).
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const bool ADD = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) buffer OutBuf { Y_T y[]; };

layout(push_constant) uniform Push {
    uint n;         // elements in this dispatch
    uint first_lo, first_hi; // global index of element 0 (a multiple of 4)
    uint seed_lo, seed_hi, stream_lo, stream_hi;
    uint off_y;
    float scale;
} p;

#include "mathlib.glsl"

uvec4 philox(uvec4 c, uvec2 k)
{
    for (int r = 0; r < 10; r++) {
        uint hi0, lo0, hi1, lo1;
        umulExtended(0xD2511F53u, c.x, hi0, lo0);
        umulExtended(0xCD9E8D57u, c.z, hi1, lo1);
        c = uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k += uvec2(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

float uniform01(uint w) { return float(w >> 8) * (1.0 / 16777216.0); }

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    uint i0 = id * 4u;
    if (i0 >= p.n)
        return;
    // Block index (64-bit): (first + i0) / 4.
    uint lo = p.first_lo + i0;
    uint hi = p.first_hi + (lo < p.first_lo ? 1u : 0u);
    uint block_lo = (lo >> 2) | (hi << 30), block_hi = hi >> 2;
    uvec4 w = philox(uvec4(block_lo, block_hi, p.stream_lo, p.stream_hi), uvec2(p.seed_lo, p.seed_hi));
    float out4[4];
    for (int pair = 0; pair < 2; pair++) {
        // u1 in (0, 1] as 1 - u: log(u1) = log(1 - u), accurate for small u.
        float r = sqrt(-2.0 * ml_log1m(uniform01(w[2 * pair])));
        vec2 sc = ml_sincos(6.283185307179586 * uniform01(w[2 * pair + 1]));
        out4[2 * pair] = r * sc.y;
        out4[2 * pair + 1] = r * sc.x;
    }
    for (uint j = 0u; j < 4u; j++) {
        if (i0 + j >= p.n)
            break;
        float v = p.scale * out4[j];
        if (ADD)
            v += float(y[p.off_y + i0 + j]);
        y[p.off_y + i0 + j] = Y_T(v);
    }
}
