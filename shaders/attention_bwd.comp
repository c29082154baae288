#version 450
// Fused attention, backward, by recomputation (FlashAttention-2): the
// probabilities are rebuilt from the forward pass's log-sum-exp, never stored.
//   p_ij = exp(scale q_i . k_j - lse_i)      D_i = dO_i . O_i
//   dV_j = sum_i p_ij dO_i                     ds_ij = p_ij (dO_i . v_j - D_i)
//   dQ_i = scale sum_j ds_ij k_j               dK_j = scale sum_i ds_ij q_i
// STAGE 0: per query row, aux = (lse_i, D_i).
// STAGE 1: R query rows per invocation, walk the visible keys -> dQ.
// STAGE 2: R key rows per invocation, walk the queries that see them -> dK, dV.
// Layouts and strides as in the forward pass; gradients are f32.
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint D = 64;
layout(constant_id = 1) const bool CAUSAL = false;
layout(constant_id = 2) const uint STAGE = 0;
layout(constant_id = 3) const uint R = 1;

layout(set = 0, binding = 0) uniform samplerBuffer A;   // Q (stages 1, 2) or O (stage 0)
layout(set = 0, binding = 1) uniform samplerBuffer K;
layout(set = 0, binding = 2) uniform samplerBuffer V;
layout(set = 0, binding = 3) uniform samplerBuffer DO;
layout(set = 0, binding = 4) uniform samplerBuffer AUX; // lse (stage 0) or (lse, D) pairs
layout(set = 0, binding = 5) buffer Out1 { float out1[]; }; // aux (stage 0), dQ, dK
layout(set = 0, binding = 6) buffer Out2 { float out2[]; }; // dV

layout(push_constant) uniform Push {
    uint batches, heads, nq, nk;
    uint lda, ldk, ldv, lddo;     // row strides: Q (or O), K, V, dO
    uint bsa, bsk, bsv, bsdo;
    uint off_a, off_k, off_v, off_do, off_aux, off_1, off_2;
    uint ld1, bs1;                // dQ / dK row and batch strides (dV shares dK's)
    float scale;
} p;

const uint D4 = D / 4u;

float fetch1(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }
vec4 fetch4(samplerBuffer t, uint e)
{
    return vec4(fetch1(t, e), fetch1(t, e + 1u), fetch1(t, e + 2u), fetch1(t, e + 3u));
}
vec4 fetch4a(samplerBuffer t, uint e) { return (e & 3u) == 0u ? texelFetch(t, int(e >> 2)) : fetch4(t, e); }

uint linear_id() { return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u; }

// Keys visible to query i, and the first query that sees key j.
uint visible_keys(uint i) { return CAUSAL ? min(p.nk, i + 1u + (p.nk - p.nq)) : p.nk; }
uint first_query(uint j) { return CAUSAL ? (j > p.nk - p.nq ? j - (p.nk - p.nq) : 0u) : 0u; }

void stage_aux(uint id)
{
    if (id >= p.batches * p.heads * p.nq)
        return;
    uint i = id % p.nq, bh = id / p.nq, h = bh % p.heads, b = bh / p.heads;
    uint ob = p.off_a + b * p.bsa + i * p.lda + h * D, db = p.off_do + b * p.bsdo + i * p.lddo + h * D;
    float s = 0.0;
    for (uint d = 0u; d < D4; d++)
        s += dot(fetch4a(A, ob + 4u * d), fetch4a(DO, db + 4u * d));
    out2[p.off_2 + id * 2u] = fetch1(AUX, p.off_aux + id);
    out2[p.off_2 + id * 2u + 1u] = s;
}

void stage_dq(uint id)
{
    uint blocks = (p.nq + R - 1u) / R;
    if (id >= p.batches * p.heads * blocks)
        return;
    uint i0 = (id % blocks) * R, bh = id / blocks, h = bh % p.heads, b = bh / p.heads;
    uint kb = p.off_k + b * p.bsk + h * D, vb = p.off_v + b * p.bsv + h * D;
    vec4 q[R][D4], g[R][D4], acc[R][D4];
    float lse[R], dd[R];
    uint nvis[R];
    uint nmax = 0u;
    for (uint r = 0u; r < R; r++) {
        uint i = min(i0 + r, p.nq - 1u);
        uint qb = p.off_a + b * p.bsa + i * p.lda + h * D, gb = p.off_do + b * p.bsdo + i * p.lddo + h * D;
        for (uint d = 0u; d < D4; d++) {
            q[r][d] = fetch4a(A, qb + 4u * d) * p.scale;
            g[r][d] = fetch4a(DO, gb + 4u * d);
            acc[r][d] = vec4(0.0);
        }
        uint row = bh * p.nq + i;
        lse[r] = fetch1(AUX, p.off_aux + row * 2u);
        dd[r] = fetch1(AUX, p.off_aux + row * 2u + 1u);
        nvis[r] = visible_keys(i);
        nmax = max(nmax, nvis[r]);
    }
    for (uint j = 0u; j < nmax; j++) {
        vec4 k[D4], v[D4];
        for (uint d = 0u; d < D4; d++) {
            k[d] = fetch4a(K, kb + j * p.ldk + 4u * d);
            v[d] = fetch4a(V, vb + j * p.ldv + 4u * d);
        }
        for (uint r = 0u; r < R; r++) {
            if (j >= nvis[r])
                continue;
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < D4; d++) {
                s += dot(q[r][d], k[d]);
                dp += dot(g[r][d], v[d]);
            }
            float ds = exp(s - lse[r]) * (dp - dd[r]) * p.scale;
            for (uint d = 0u; d < D4; d++)
                acc[r][d] += ds * k[d];
        }
    }
    for (uint r = 0u; r < R; r++) {
        uint i = i0 + r;
        if (i >= p.nq)
            break;
        uint ob = p.off_1 + b * p.bs1 + i * p.ld1 + h * D;
        for (uint d = 0u; d < D4; d++)
            for (uint c = 0u; c < 4u; c++)
                out1[ob + 4u * d + c] = acc[r][d][c];
    }
}

void stage_dkv(uint id)
{
    uint blocks = (p.nk + R - 1u) / R;
    if (id >= p.batches * p.heads * blocks)
        return;
    uint j0 = (id % blocks) * R, bh = id / blocks, h = bh % p.heads, b = bh / p.heads;
    vec4 k[R][D4], v[R][D4], dk[R][D4], dv[R][D4];
    uint first[R];
    uint fmin = p.nq;
    for (uint r = 0u; r < R; r++) {
        uint j = min(j0 + r, p.nk - 1u);
        uint kb = p.off_k + b * p.bsk + j * p.ldk + h * D, vb = p.off_v + b * p.bsv + j * p.ldv + h * D;
        for (uint d = 0u; d < D4; d++) {
            k[r][d] = fetch4a(K, kb + 4u * d);
            v[r][d] = fetch4a(V, vb + 4u * d);
            dk[r][d] = vec4(0.0);
            dv[r][d] = vec4(0.0);
        }
        first[r] = first_query(j);
        fmin = min(fmin, first[r]);
    }
    for (uint i = fmin; i < p.nq; i++) {
        vec4 q[D4], g[D4];
        uint qb = p.off_a + b * p.bsa + i * p.lda + h * D, gb = p.off_do + b * p.bsdo + i * p.lddo + h * D;
        for (uint d = 0u; d < D4; d++) {
            q[d] = fetch4a(A, qb + 4u * d);
            g[d] = fetch4a(DO, gb + 4u * d);
        }
        uint row = bh * p.nq + i;
        float lse = fetch1(AUX, p.off_aux + row * 2u), dd = fetch1(AUX, p.off_aux + row * 2u + 1u);
        for (uint r = 0u; r < R; r++) {
            if (i < first[r])
                continue;
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < D4; d++) {
                s += dot(q[d], k[r][d]);
                dp += dot(g[d], v[r][d]);
            }
            float pr = exp(s * p.scale - lse);
            float ds = pr * (dp - dd) * p.scale;
            for (uint d = 0u; d < D4; d++) {
                dv[r][d] += pr * g[d];
                dk[r][d] += ds * q[d];
            }
        }
    }
    for (uint r = 0u; r < R; r++) {
        uint j = j0 + r;
        if (j >= p.nk)
            break;
        uint ob = b * p.bs1 + j * p.ld1 + h * D;
        for (uint d = 0u; d < D4; d++)
            for (uint c = 0u; c < 4u; c++) {
                out1[p.off_1 + ob + 4u * d + c] = dk[r][d][c];
                out2[p.off_2 + ob + 4u * d + c] = dv[r][d][c];
            }
    }
}

void main()
{
    uint id = linear_id();
    if (STAGE == 0u)
        stage_aux(id);
    else if (STAGE == 1u)
        stage_dq(id);
    else
        stage_dkv(id);
}
