#version 450
// Fused multi-head attention, forward: O = softmax(scale * Q K^T [+ causal
// mask]) V per (batch, head), never forming the Nq x Nk score matrix.
//
// Tensors are token-major as the projections produce them: row i of Q holds
// every head's D values, head h at columns h*D .. h*D+D-1 (row stride ldq),
// and so on for K, V and O; batch entries are bs* elements apart. One
// invocation owns one query row of one head: it keeps q and the running
// output in registers and walks the keys in blocks of four with the online
// softmax (running max m, running sum l, rescaling when m grows). Adjacent
// invocations take adjacent query rows of the same head, so they read the
// same keys. It also writes log-sum-exp (m + log l) per row, which the
// backward pass uses to recompute probabilities.
//
// Causal (CLIP): key j is visible to query i when j <= i + (nk - nq).
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint D = 64;      // head dimension, a multiple of 4, <= 128
layout(constant_id = 1) const bool CAUSAL = false;
layout(constant_id = 2) const bool VEC = true;  // every row start a multiple of 4
layout(constant_id = 3) const bool WRITE_LSE = true;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer Q;
layout(set = 0, binding = 1) uniform samplerBuffer K;
layout(set = 0, binding = 2) uniform samplerBuffer V;
layout(set = 0, binding = 3) buffer OBuf { Y_T o[]; };
layout(set = 0, binding = 4) buffer LBuf { float lse[]; };

layout(push_constant) uniform Push {
    uint batches, heads, nq, nk;
    uint ldq, ldk, ldv, ldo;
    uint bsq, bsk, bsv, bso;
    uint off_q, off_k, off_v, off_o, off_l;
    float scale;
} p;

const uint D4 = D / 4u;

vec4 fetch4(samplerBuffer t, uint e)
{
    if (VEC)
        return texelFetch(t, int(e >> 2));
    return vec4(texelFetch(t, int(e >> 2))[e & 3u], texelFetch(t, int((e + 1u) >> 2))[(e + 1u) & 3u],
                texelFetch(t, int((e + 2u) >> 2))[(e + 2u) & 3u], texelFetch(t, int((e + 3u) >> 2))[(e + 3u) & 3u]);
}

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (id >= p.batches * p.heads * p.nq)
        return;
    uint i = id % p.nq, bh = id / p.nq, h = bh % p.heads, b = bh / p.heads;
    uint qb = p.off_q + b * p.bsq + i * p.ldq + h * D;
    uint kb = p.off_k + b * p.bsk + h * D;
    uint vb = p.off_v + b * p.bsv + h * D;

    vec4 q[D4];
    for (uint d = 0u; d < D4; d++)
        q[d] = fetch4(Q, qb + 4u * d) * p.scale;
    vec4 acc[D4];
    for (uint d = 0u; d < D4; d++)
        acc[d] = vec4(0.0);
    float m = -1.0e30, l = 0.0;

    uint nvis = CAUSAL ? min(p.nk, i + 1u + (p.nk - p.nq)) : p.nk;
    uint j = 0u;
    for (; j + 4u <= nvis; j += 4u) {
        vec4 s = vec4(0.0);
        for (uint d = 0u; d < D4; d++) {
            s.x += dot(q[d], fetch4(K, kb + j * p.ldk + 4u * d));
            s.y += dot(q[d], fetch4(K, kb + (j + 1u) * p.ldk + 4u * d));
            s.z += dot(q[d], fetch4(K, kb + (j + 2u) * p.ldk + 4u * d));
            s.w += dot(q[d], fetch4(K, kb + (j + 3u) * p.ldk + 4u * d));
        }
        float mx = max(max(s.x, s.y), max(s.z, s.w));
        if (mx > m) { // rescale what was accumulated under the old maximum
            float c = exp(m - mx);
            l *= c;
            for (uint d = 0u; d < D4; d++)
                acc[d] *= c;
            m = mx;
        }
        vec4 e = exp(s - m);
        l += e.x + e.y + e.z + e.w;
        for (uint d = 0u; d < D4; d++)
            acc[d] += e.x * fetch4(V, vb + j * p.ldv + 4u * d) + e.y * fetch4(V, vb + (j + 1u) * p.ldv + 4u * d) +
                      e.z * fetch4(V, vb + (j + 2u) * p.ldv + 4u * d) + e.w * fetch4(V, vb + (j + 3u) * p.ldv + 4u * d);
    }
    for (; j < nvis; j++) {
        float s = 0.0;
        for (uint d = 0u; d < D4; d++)
            s += dot(q[d], fetch4(K, kb + j * p.ldk + 4u * d));
        if (s > m) {
            float c = exp(m - s);
            l *= c;
            for (uint d = 0u; d < D4; d++)
                acc[d] *= c;
            m = s;
        }
        float e = exp(s - m);
        l += e;
        for (uint d = 0u; d < D4; d++)
            acc[d] += e * fetch4(V, vb + j * p.ldv + 4u * d);
    }
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    uint ob = p.off_o + b * p.bso + i * p.ldo + h * D;
    for (uint d = 0u; d < D4; d++)
        for (uint c = 0u; c < 4u; c++)
            o[ob + 4u * d + c] = Y_T(acc[d][c] * inv);
    if (WRITE_LSE)
        lse[p.off_l + id] = l > 0.0 ? m + log(l) : -1.0e30;
}
