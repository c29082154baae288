#version 450
// Fused multi-head attention, forward: O = softmax(scale * Q K^T [+ causal
// mask]) V per (batch, head), never forming the Nq x Nk score matrix.
//
// Tensors are token-major as the projections produce them: row i of Q holds
// every head's D values, head h at columns h*D .. h*D+D-1 (row stride ldq),
// and so on for K, V and O; batch entries are bs* elements apart. One
// invocation owns query rows of one head: it keeps q and the running output
// in registers and walks the keys in blocks of four with the online softmax
// (running max m, running sum l, rescaling when m grows). Adjacent
// invocations take adjacent query rows of the same head, so they read the
// same keys. With R > 1 an invocation owns R consecutive query rows, so each
// fetched key and value serves R rows (the fast layout on CPU drivers, where
// fetches cost more than arithmetic). It also writes log-sum-exp (m + log l)
// per row, which the backward pass uses to recompute probabilities.
//
// Causal (CLIP): key j is visible to query i when j <= i + (nk - nq).
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint D = 64;      // head dimension, a multiple of 4, <= 128
layout(constant_id = 1) const bool CAUSAL = false;
layout(constant_id = 2) const bool VEC = true;  // every row start a multiple of 4
layout(constant_id = 3) const bool WRITE_LSE = true;
layout(constant_id = 4) const uint R = 1;       // query rows per invocation

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
    uint causal_shift; // nk - nq + the first row's index: key j is visible to row i when j <= i + shift
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
    uint blocks = (p.nq + R - 1u) / R;
    if (id >= p.batches * p.heads * blocks)
        return;
    uint i0 = (id % blocks) * R, bh = id / blocks, h = bh % p.heads, b = bh / p.heads;
    uint kb = p.off_k + b * p.bsk + h * D;
    uint vb = p.off_v + b * p.bsv + h * D;

    // R query rows per invocation: every key and value fetched serves R rows.
    vec4 q[R][D4];
    vec4 acc[R][D4];
    float m[R], l[R];
    uint nvis[R];
    uint nmax = 0u;
    for (uint r = 0u; r < R; r++) {
        uint i = min(i0 + r, p.nq - 1u); // rows past the end repeat the last and are not written
        uint qb = p.off_q + b * p.bsq + i * p.ldq + h * D;
        for (uint d = 0u; d < D4; d++) {
            q[r][d] = fetch4(Q, qb + 4u * d) * p.scale;
            acc[r][d] = vec4(0.0);
        }
        m[r] = -1.0e30;
        l[r] = 0.0;
        nvis[r] = CAUSAL ? min(p.nk, i + 1u + p.causal_shift) : p.nk;
        nmax = max(nmax, nvis[r]);
    }
    for (uint j = 0u; j < nmax; j += 4u) {
        uint nj = min(4u, nmax - j);
        vec4 kv[4][D4];
        for (uint t = 0u; t < 4u; t++)
            for (uint d = 0u; d < D4; d++)
                kv[t][d] = t < nj ? fetch4(K, kb + (j + t) * p.ldk + 4u * d) : vec4(0.0);
        vec4 e[R];
        for (uint r = 0u; r < R; r++) {
            vec4 s = vec4(0.0);
            for (uint d = 0u; d < D4; d++)
                s += vec4(dot(q[r][d], kv[0][d]), dot(q[r][d], kv[1][d]), dot(q[r][d], kv[2][d]), dot(q[r][d], kv[3][d]));
            // Keys past the end, or hidden by the causal mask, get no weight. (Every
            // row sees key 0, so the first block sets a real maximum before any
            // block can be wholly masked.)
            for (uint t = 0u; t < 4u; t++)
                if (j + t >= nvis[r])
                    s[t] = -1.0e30;
            float mx = max(max(s.x, s.y), max(s.z, s.w));
            if (mx > m[r]) {
                float c = exp(m[r] - mx);
                l[r] *= c;
                for (uint d = 0u; d < D4; d++)
                    acc[r][d] *= c;
                m[r] = mx;
            }
            e[r] = exp(s - m[r]);
            l[r] += e[r].x + e[r].y + e[r].z + e[r].w;
        }
        for (uint t = 0u; t < 4u; t++)
            for (uint d = 0u; d < D4; d++)
                kv[t][d] = t < nj ? fetch4(V, vb + (j + t) * p.ldv + 4u * d) : vec4(0.0);
        for (uint r = 0u; r < R; r++)
            for (uint d = 0u; d < D4; d++)
                acc[r][d] += e[r].x * kv[0][d] + e[r].y * kv[1][d] + e[r].z * kv[2][d] + e[r].w * kv[3][d];
    }
    for (uint r = 0u; r < R; r++) {
        uint i = i0 + r;
        if (i >= p.nq)
            break;
        float inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
        uint ob = p.off_o + b * p.bso + i * p.ldo + h * D;
        for (uint d = 0u; d < D4; d++)
            for (uint c = 0u; c < 4u; c++)
                o[ob + 4u * d + c] = Y_T(acc[r][d][c] * inv);
        if (WRITE_LSE)
            lse[p.off_l + bh * p.nq + i] = l[r] > 0.0 ? m[r] + log(l[r]) : -1.0e30;
    }
}
