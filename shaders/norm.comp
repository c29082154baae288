#version 450
// Normalisation over segments: group norm (a segment is one sample's group
// of channels, contiguous in NCHW) and layer norm (a segment is one row).
//
//   x is S segments of L elements; element e has channel (e / inner) % C.
//   forward:  y = (x - mean_s) * rstd_s * gamma_c + beta_c   [then SiLU, if asked]
//   backward: g = dy * gamma_c,  xhat = (x - mean_s) * rstd_s,
//             dx = rstd_s * (g - mean_s(g) - xhat * mean_s(g * xhat)),
//             dgamma_c = sum dy * xhat,  dbeta_c = sum dy.
//
// Per segment the stats tensor holds four floats: mean, rstd (written by the
// forward pass and kept for the backward one), mean g, mean g*xhat (written
// by the backward pass).
//
// STAGE picks the kernel; all share one binding layout (four texel inputs,
// one storage output):
//   0 partials: per (segment, chunk of up to CHUNK elements), one invocation
//     computes the chunk's mean and sum of squared deviations (two passes
//     over the chunk: no cancellation) -> partials
//   1 finalize: per segment, merges its chunks (Chan et al.) -> stats.xy
//   2 apply: one element per invocation -> y
//   3 bwd partials: per chunk, sums of g and g * xhat -> partials
//   4 bwd finalize: per segment -> stats.zw
//   5 bwd apply: dx
//   6 affine grads: per channel, (dgamma, dbeta) over its elements
// One invocation per chunk or segment keeps barriers out (they are costly on
// CPU drivers); at SDXL's sizes there are enough chunks to fill a GPU.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint STAGE = 0;
layout(constant_id = 1) const bool AFFINE = true;
layout(constant_id = 2) const bool SILU_AFTER = false;
// Four elements per fetch (partials and apply stages): segment lengths and
// window offsets are multiples of 4 and the four share a channel (inner % 4
// == 0) or are four consecutive channels (inner == 1, channels % 4 == 0).
layout(constant_id = 3) const bool VEC = false;
// The GPU path for the partials stages: one subgroup per chunk, its lanes
// striding through it (neighbouring lanes read neighbouring elements) and
// combining with subgroupAdd. Chosen by the host for fixed-size subgroups
// that divide the workgroup; CPU drivers keep one invocation per chunk.
layout(constant_id = 4) const bool SUBGROUP = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X;  // x (window)
layout(set = 0, binding = 1) uniform samplerBuffer G;  // gamma (whole)
layout(set = 0, binding = 2) uniform samplerBuffer P;  // beta (fwd, whole) or dy (bwd, window like x)
layout(set = 0, binding = 3) uniform samplerBuffer S;  // stats or partials (whole, f32)
layout(set = 0, binding = 4) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint count;     // items in this dispatch: chunks, segments, elements or channels
    uint len;       // L
    uint inner, channels;
    uint nch;       // chunks per segment
    uint base;      // global index of item 0: its segment (partials/finalize) or element (apply)
    uint off_x, off_g, off_p, off_s, off_o;
    uint runs;      // affine grads: runs of `inner` elements per channel
    float eps;
} p;

#include "activations.glsl"

const uint CHUNK = 1024u;

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }
uint channel_of(uint e) { return (e / p.inner) % p.channels; }
float gamma_at(uint c) { return AFFINE ? fetch(G, p.off_g + c) : 1.0; }
vec2 stats_xy(uint s) { return vec2(fetch(S, p.off_s + s * 4u), fetch(S, p.off_s + s * 4u + 1u)); }
vec2 stats_zw(uint s) { return vec2(fetch(S, p.off_s + s * 4u + 2u), fetch(S, p.off_s + s * 4u + 3u)); }

vec4 fetch4(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2)); }
// gamma or beta (at offset off) for the four elements from global element e (VEC).
vec4 chan4(samplerBuffer t, uint off, uint e)
{
    return p.inner == 1u ? fetch4(t, off + e % p.channels) : vec4(fetch(t, off + channel_of(e)));
}
vec4 gamma4(uint e) { return AFFINE ? chan4(G, p.off_g, e) : vec4(1.0); }
float hsum(vec4 v) { return (v.x + v.y) + (v.z + v.w); }

uint linear_id() { return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u; }

// Chunk k of segment s (local to the x window; global segment p.base + s).
void stage_partials(uint id, bool bwd)
{
    uint s = id / p.nch, k = id % p.nch;
    if (s >= p.count)
        return;
    uint gs = p.base + s;
    uint start = k * CHUNK, end = min(start + CHUNK, p.len);
    uint xb = p.off_x + s * p.len;
    float a = 0.0, b = 0.0;
    if (VEC) {
        // Four running sums per pass: four independent chains instead of one.
        vec4 a4 = vec4(0.0), b4 = vec4(0.0);
        if (!bwd) {
            for (uint i = start; i < end; i += 4u)
                a4 += fetch4(X, xb + i);
            a = hsum(a4) / float(end - start);
            for (uint i = start; i < end; i += 4u) {
                vec4 d = fetch4(X, xb + i) - a;
                b4 = fma(d, d, b4);
            }
        } else {
            vec2 st = stats_xy(gs);
            uint gbase = gs * p.len, pb = p.off_p + s * p.len;
            for (uint i = start; i < end; i += 4u) {
                vec4 g = fetch4(P, pb + i) * gamma4(gbase + i);
                a4 += g;
                b4 = fma(g, (fetch4(X, xb + i) - st.x) * st.y, b4);
            }
            a = hsum(a4);
        }
        b = hsum(b4);
    } else if (!bwd) {
        for (uint i = start; i < end; i++)
            a += fetch(X, xb + i);
        a /= float(end - start);
        for (uint i = start; i < end; i++) {
            float d = fetch(X, xb + i) - a;
            b += d * d;
        }
    } else {
        vec2 st = stats_xy(gs);
        uint gbase = gs * p.len;
        uint pb = p.off_p + s * p.len;
        for (uint i = start; i < end; i++) {
            float g = fetch(P, pb + i) * gamma_at(channel_of(gbase + i));
            a += g;
            b += g * (fetch(X, xb + i) - st.x) * st.y;
        }
    }
    uint o2 = p.off_o + (gs * p.nch + k) * 2u;
    o[o2] = Y_T(a);
    o[o2 + 1u] = Y_T(b);
}

void stage_partials_subgroup(bool bwd)
{
    // Subgroups are runs of consecutive invocations; every lane of one gets
    // the same chunk, so the early return below is uniform.
    uint id = linear_id() / gl_SubgroupSize, lane = gl_SubgroupInvocationID;
    uint s = id / p.nch, k = id % p.nch;
    if (s >= p.count)
        return;
    uint gs = p.base + s;
    uint start = k * CHUNK, end = min(start + CHUNK, p.len);
    uint xb = p.off_x + s * p.len;
    float a = 0.0, b = 0.0;
    if (!bwd) {
        for (uint i = start + lane; i < end; i += gl_SubgroupSize)
            a += fetch(X, xb + i);
        a = subgroupAdd(a) / float(end - start);
        for (uint i = start + lane; i < end; i += gl_SubgroupSize) {
            float d = fetch(X, xb + i) - a;
            b += d * d;
        }
    } else {
        vec2 st = stats_xy(gs);
        uint gbase = gs * p.len, pb = p.off_p + s * p.len;
        for (uint i = start + lane; i < end; i += gl_SubgroupSize) {
            float g = fetch(P, pb + i) * gamma_at(channel_of(gbase + i));
            a += g;
            b += g * (fetch(X, xb + i) - st.x) * st.y;
        }
        a = subgroupAdd(a);
    }
    b = subgroupAdd(b);
    if (lane == 0u) {
        uint o2 = p.off_o + (gs * p.nch + k) * 2u;
        o[o2] = Y_T(a);
        o[o2 + 1u] = Y_T(b);
    }
}

void stage_finalize(uint s, bool bwd)
{
    if (s >= p.count)
        return;
    uint gs = p.base + s;
    float n = 0.0, mean = 0.0, m2 = 0.0;
    for (uint k = 0u; k < p.nch; k++) {
        uint e = p.off_s + (gs * p.nch + k) * 2u;
        float a = fetch(S, e), b = fetch(S, e + 1u);
        if (bwd) {
            mean += a;
            m2 += b;
            continue;
        }
        float nk = float(min((k + 1u) * CHUNK, p.len) - k * CHUNK);
        float nn = n + nk;
        float delta = a - mean;
        mean += delta * (nk / nn);
        m2 += b + delta * delta * (n * nk / nn);
        n = nn;
    }
    if (bwd) {
        o[p.off_o + gs * 4u + 2u] = Y_T(mean / float(p.len));
        o[p.off_o + gs * 4u + 3u] = Y_T(m2 / float(p.len));
    } else {
        o[p.off_o + gs * 4u] = Y_T(mean);
        o[p.off_o + gs * 4u + 1u] = Y_T(inversesqrt(m2 / float(p.len) + p.eps));
    }
}

void stage_apply(uint i, bool bwd)
{
    if (VEC) {
        uint i0 = i * 4u;
        if (i0 >= p.count)
            return;
        uint e = p.base + i0;
        vec2 st = stats_xy(e / p.len);
        vec4 xhat = (fetch4(X, p.off_x + i0) - st.x) * st.y;
        vec4 y;
        if (!bwd) {
            y = xhat;
            if (AFFINE)
                y = y * gamma4(e) + chan4(P, p.off_p, e);
            if (SILU_AFTER)
                y = vec4(act_silu(y.x), act_silu(y.y), act_silu(y.z), act_silu(y.w));
        } else {
            vec2 bs = stats_zw(e / p.len);
            vec4 g = fetch4(P, p.off_p + i0) * gamma4(e);
            y = st.y * (g - bs.x - xhat * bs.y);
        }
        for (uint j = 0u; j < 4u; j++)
            o[p.off_o + i0 + j] = Y_T(y[j]);
        return;
    }
    if (i >= p.count)
        return;
    uint e = p.base + i;
    uint s = e / p.len;
    uint c = channel_of(e);
    vec2 st = stats_xy(s);
    float xhat = (fetch(X, p.off_x + i) - st.x) * st.y;
    if (!bwd) {
        float y = xhat;
        if (AFFINE)
            y = y * fetch(G, p.off_g + c) + fetch(P, p.off_p + c);
        if (SILU_AFTER)
            y = act_silu(y);
        o[p.off_o + i] = Y_T(y);
    } else {
        vec2 bs = stats_zw(s);
        float g = fetch(P, p.off_p + i) * gamma_at(c);
        o[p.off_o + i] = Y_T(st.y * (g - bs.x - xhat * bs.y));
    }
}

// Channel c's elements come in `runs` runs of `inner`, every inner*channels.
void stage_affine_grads(uint c)
{
    if (c >= p.channels)
        return;
    float dg = 0.0, db = 0.0;
    uint period = p.inner * p.channels;
    for (uint run = 0u; run < p.runs; run++)
        for (uint j = 0u; j < p.inner; j++) {
            uint e = run * period + c * p.inner + j;
            vec2 st = stats_xy(e / p.len);
            float dy = fetch(P, p.off_p + e);
            db += dy;
            dg += dy * (fetch(X, p.off_x + e) - st.x) * st.y;
        }
    o[p.off_o + c * 2u] = Y_T(dg);
    o[p.off_o + c * 2u + 1u] = Y_T(db);
}

void main()
{
    uint id = linear_id();
    switch (STAGE) {
    case 0u:
        if (SUBGROUP)
            stage_partials_subgroup(false);
        else
            stage_partials(id, false);
        break;
    case 1u: stage_finalize(id, false); break;
    case 2u: stage_apply(id, false); break;
    case 3u:
        if (SUBGROUP)
            stage_partials_subgroup(true);
        else
            stage_partials(id, true);
        break;
    case 4u: stage_finalize(id, true); break;
    case 5u: stage_apply(id, true); break;
    case 6u: stage_affine_grads(id); break;
    }
}
