#version 450
// Sinusoidal timestep embedding (diffusers' get_timestep_embedding):
//   emb[b, j] = sin(t_b * f_j), emb[b, half + j] = cos(t_b * f_j), j < half,
// halves swapped when FLIP (flip_sin_to_cos), a zero column appended for odd
// dim. The frequencies f_j (with the scale folded in) come from the host,
// computed in double: the device's exp() is not accurate enough for t near 1000.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const bool FLIP = true;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer T;
layout(set = 0, binding = 1) uniform samplerBuffer F;
layout(set = 0, binding = 2) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint batch, dim, half_dim, off_t, off_f, off_o;
} p;

#include "mathlib.glsl"

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (id >= p.batch * p.dim)
        return;
    uint b = id / p.dim, i = id % p.dim;
    float v = 0.0;
    if (i < 2u * p.half_dim) {
        uint j = i % p.half_dim;
        vec2 sc = ml_sincos(fetch(T, p.off_t + b) * fetch(F, p.off_f + j));
        bool first = i < p.half_dim;
        v = (first != FLIP) ? sc.x : sc.y;
    }
    o[p.off_o + id] = Y_T(v);
}
