#version 450
// Element-wise ops: y[i] = f(a[i], b[...]) for i in [0, n).
//
// OP selects f (the numbers are df_elt_op in worker/ops/eltwise.h). b is
// either an operand like a (b_count == 0) or a small tensor broadcast over a:
// b[((base + i) / b_inner) % b_count], which covers a per-channel bias on
// NCHW (b_inner = H*W) and on [tokens, C] (b_inner = 1). Each invocation
// handles four consecutive elements; with VEC the four a (and b) values come
// in one texel fetch.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint OP = 0;
layout(constant_id = 1) const bool VEC = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer A;
layout(set = 0, binding = 1) uniform samplerBuffer B;
layout(set = 0, binding = 2) buffer YBuf { Y_T y[]; };

layout(push_constant) uniform Push {
    uint n;       // elements in this dispatch
    uint off_a, off_b, off_y;
    uint base;    // global index of element 0 (for broadcasting)
    uint b_inner, b_count;
    float alpha, beta;
} p;

#include "activations.glsl"

const uint COPY = 0u, AFFINE = 1u, AXPBY = 2u, MUL = 3u, SILU = 4u, GELU_TANH = 5u, GELU_ERF = 6u,
           QUICK_GELU = 7u, SILU_BWD = 8u, GELU_TANH_BWD = 9u, GELU_ERF_BWD = 10u, QUICK_GELU_BWD = 11u,
           CLAMP = 12u;

bool uses_b() { return OP == AXPBY || OP == MUL || (OP >= SILU_BWD && OP <= QUICK_GELU_BWD); }

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }

float f(float a, float b)
{
    switch (OP) {
    case COPY: return a;
    case AFFINE: return p.alpha * a + p.beta;
    case AXPBY: return p.alpha * a + p.beta * b;
    case MUL: return p.alpha * a * b;
    case SILU: return act_silu(a);
    case GELU_TANH: return act_gelu_tanh(a);
    case GELU_ERF: return act_gelu_erf(a);
    case QUICK_GELU: return act_quick_gelu(a);
    case SILU_BWD: return b * act_silu_grad(a);
    case GELU_TANH_BWD: return b * act_gelu_tanh_grad(a);
    case GELU_ERF_BWD: return b * act_gelu_erf_grad(a);
    case QUICK_GELU_BWD: return b * act_quick_gelu_grad(a);
    case CLAMP: return min(max(a, p.alpha), p.beta);
    }
    return a;
}

void main()
{
    uint inv = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint i0 = inv * 4u;
    if (i0 >= p.n)
        return;
    vec4 av, bv = vec4(0.0);
    if (VEC && i0 + 3u < p.n) {
        av = texelFetch(A, int((p.off_a + i0) >> 2));
        if (uses_b() && p.b_count == 0u)
            bv = texelFetch(B, int((p.off_b + i0) >> 2));
    } else {
        for (uint j = 0u; j < 4u; j++)
            av[j] = i0 + j < p.n ? fetch(A, p.off_a + i0 + j) : 0.0;
        if (uses_b() && p.b_count == 0u)
            for (uint j = 0u; j < 4u; j++)
                bv[j] = i0 + j < p.n ? fetch(B, p.off_b + i0 + j) : 0.0;
    }
    if (uses_b() && p.b_count != 0u)
        for (uint j = 0u; j < 4u; j++)
            bv[j] = fetch(B, p.off_b + ((p.base + i0 + j) / p.b_inner) % p.b_count);
    for (uint j = 0u; j < 4u; j++)
        if (i0 + j < p.n)
            y[p.off_y + i0 + j] = Y_T(f(av[j], bv[j]));
}
