#version 450
// Optimiser steps on f32 parameters (in place), gradients f32 or f16.
//   ADAMW (PyTorch's AdamW): p *= 1 - lr wd;  m = b1 m + (1 - b1) g;
//     v = b2 v + (1 - b2) g^2;  p -= lr (m / c1) / (sqrt(v / c2) + eps),
//     with c1 = 1 - b1^t, c2 = 1 - b2^t from the host.
//   SGD: p -= lr (g + wd p).
// g is multiplied by grad_scale first (1 / accumulation steps, or unscaling).
layout(local_size_x = 64) in;
layout(constant_id = 0) const bool ADAMW = true;

layout(set = 0, binding = 0) uniform samplerBuffer G;
layout(set = 0, binding = 1) buffer PBuf { float prm[]; };
layout(set = 0, binding = 2) buffer MBuf { float m[]; };
layout(set = 0, binding = 3) buffer VBuf { float v[]; };

layout(push_constant) uniform Push {
    uint n, off_g, off_p, off_m, off_v;
    float lr, b1, b2, eps, wd, c1, c2, grad_scale;
} p;

void main()
{
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (i >= p.n)
        return;
    uint ge = p.off_g + i;
    float g = texelFetch(G, int(ge >> 2))[ge & 3u] * p.grad_scale;
    float w = prm[p.off_p + i];
    if (!ADAMW) {
        prm[p.off_p + i] = w - p.lr * (g + p.wd * w);
        return;
    }
    w *= 1.0 - p.lr * p.wd;
    float mi = p.b1 * m[p.off_m + i] + (1.0 - p.b1) * g;
    float vi = p.b2 * v[p.off_v + i] + (1.0 - p.b2) * g * g;
    m[p.off_m + i] = mi;
    v[p.off_v + i] = vi;
    prm[p.off_p + i] = w - p.lr * (mi / p.c1) / (sqrt(vi / p.c2) + p.eps);
}
