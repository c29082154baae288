#version 450
// AdamW with 8-bit moments (common/adam8.h has the codes): one invocation
// per block of 256 values, so the block's new scales come from a loop of its
// own rather than a reduction across invocations (no shared memory, no
// barriers: the lavapipe-friendly shape, and the state is small).
//
// Pass 1 decodes each moment, updates it in f32 as optim.comp does and takes
// the block's largest |m| and sqrt(v); pass 2 recomputes the same values
// (same arithmetic, same results), steps the parameter with the f32 moments
// and stores them encoded against the new scales. Codes are read and written
// as 32-bit words, four to a word.
layout(local_size_x = 64) in;

layout(set = 0, binding = 0) uniform samplerBuffer G;
layout(set = 0, binding = 1) buffer PBuf { float prm[]; };
layout(set = 0, binding = 2) buffer MQBuf { uint mq[]; };
layout(set = 0, binding = 3) buffer SQBuf { uint sq[]; };
layout(set = 0, binding = 4) buffer MSBuf { float ms[]; };
layout(set = 0, binding = 5) buffer SSBuf { float ss[]; };

layout(push_constant) uniform Push {
    uint n, off_g, off_p, off_mq, off_sq, off_ms, off_ss;
    float lr, b1, b2, eps, wd, c1, c2, grad_scale;
} p;

const uint BLOCK = 256u;

float decode(uint c, uint mbits)
{
    if (c == 0u)
        return 0.0;
    uint steps = 1u << mbits;
    return ldexp(1.0 + float(c & (steps - 1u)) / float(steps), int(c >> mbits) - 15);
}

// x > 0: the nearest code (e << mbits | f), clamped; underflow gives 0 or 1.
uint encode(float x, uint mbits, bool underflow_to_zero)
{
    int ex;
    float fr = frexp(x, ex);
    int e = ex - 1 + 15;
    int steps = 1 << mbits;
    // A value a driver flushed to zero gives fr = 0: clamped, and callers
    // send only x > 0 here.
    int f = clamp(int(roundEven((2.0 * fr - 1.0) * float(steps))), 0, steps);
    if (f == steps) {
        f = 0;
        e++;
    }
    if (e > 15)
        return (15u << mbits) | uint(steps - 1);
    if (e < 0)
        return underflow_to_zero ? 0u : 1u;
    uint c = (uint(e) << mbits) | uint(f);
    return max(c, 1u) & ((1u << (mbits + 4u)) - 1u);
}

float decode_m(uint c) { float mag = decode(c & 127u, 3u); return (c & 128u) != 0u ? -mag : mag; }
uint encode_m(float x)
{
    if (!(abs(x) > 0.0)) // zero, and NaN (as the host codes it): never bits beyond the byte
        return 0u;
    uint c = encode(abs(x), 3u, true);
    return c == 0u ? 0u : (x < 0.0 ? 128u | c : c);
}
float decode_s(uint c) { return decode(c, 4u); }
uint encode_s(float x) { return x > 0.0 ? encode(x, 4u, false) : 0u; }

uint byte_at(uint word, uint k) { return (word >> (8u * k)) & 255u; }

void main()
{
    uint b = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    uint i0 = b * BLOCK;
    if (i0 >= p.n)
        return;
    uint i1 = min(i0 + BLOCK, p.n);
    float m_scale = ms[p.off_ms + b], s_scale = ss[p.off_ss + b];
    float am = 0.0, as = 0.0;
    for (uint i = i0; i < i1; i++) {
        uint ge = p.off_g + i, qe_m = p.off_mq + i, qe_s = p.off_sq + i;
        float g = texelFetch(G, int(ge >> 2))[ge & 3u] * p.grad_scale;
        float m0 = decode_m(byte_at(mq[qe_m >> 2], qe_m & 3u)) * m_scale;
        float s0 = decode_s(byte_at(sq[qe_s >> 2], qe_s & 3u)) * s_scale;
        float m1 = p.b1 * m0 + (1.0 - p.b1) * g;
        float v1 = p.b2 * (s0 * s0) + (1.0 - p.b2) * g * g;
        am = max(am, abs(m1));
        as = max(as, sqrt(v1));
    }
    // Pass 2 a word of codes at a time: the four values sharing it.
    for (uint w0 = i0; w0 < i1; w0 += 4u) {
        uint em = (p.off_mq + w0) >> 2, es = (p.off_sq + w0) >> 2;
        uint wm = mq[em], ws = sq[es], om = 0u, os = 0u;
        for (uint k = 0u; k < 4u && w0 + k < i1; k++) {
            uint i = w0 + k;
            uint ge = p.off_g + i;
            float g = texelFetch(G, int(ge >> 2))[ge & 3u] * p.grad_scale;
            float m0 = decode_m(byte_at(wm, k)) * m_scale;
            float s0 = decode_s(byte_at(ws, k)) * s_scale;
            float m1 = p.b1 * m0 + (1.0 - p.b1) * g;
            float v1 = p.b2 * (s0 * s0) + (1.0 - p.b2) * g * g;
            float w = prm[p.off_p + i] * (1.0 - p.lr * p.wd);
            prm[p.off_p + i] = w - p.lr * (m1 / p.c1) / (sqrt(v1 / p.c2) + p.eps);
            om |= ((am > 0.0 ? encode_m(m1 / am) : 0u) & 255u) << (8u * k);
            os |= ((as > 0.0 ? encode_s(sqrt(v1) / as) : 0u) & 255u) << (8u * k);
        }
        mq[em] = om;
        sq[es] = os;
    }
    ms[p.off_ms + b] = am;
    ss[p.off_ss + b] = as;
}
