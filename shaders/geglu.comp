#version 450
// GEGLU (SDXL's feed-forward): x is [rows, 2 * inner]; the first half is the
// value h, the second the gate g.
//   forward:  y[r, j] = h * gelu(g)                       (exact GELU)
//   backward: dx[r, j] = dy * gelu(g);  dx[r, inner + j] = dy * h * gelu'(g)
// One invocation per (row, j).
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const bool BACKWARD = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X;
layout(set = 0, binding = 1) uniform samplerBuffer DY;
layout(set = 0, binding = 2) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint rows, inner;
    uint off_x, off_dy, off_o;
} p;

#include "activations.glsl"

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (id >= p.rows * p.inner)
        return;
    uint r = id / p.inner, j = id % p.inner;
    uint xb = p.off_x + r * 2u * p.inner;
    float h = fetch(X, xb + j), g = fetch(X, xb + p.inner + j);
    if (!BACKWARD) {
        o[p.off_o + id] = Y_T(h * act_gelu_erf(g));
    } else {
        float dy = fetch(DY, p.off_dy + id);
        uint ob = p.off_o + r * 2u * p.inner;
        o[ob + j] = Y_T(dy * act_gelu_erf(g));
        o[ob + p.inner + j] = Y_T(dy * h * act_gelu_erf_grad(g));
    }
}
