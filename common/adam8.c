/*  adam8.c - see adam8.h. */
#include "adam8.h"

#include <math.h>

/*  x > 0 as (1 + f / 2^mbits) 2^(e - 15), rounded to the nearest; the code
 *  (e << mbits | f), clamped to [1, 15 << mbits | (2^mbits - 1)], or 0 when
 *  x underflows and underflow_to_zero. */
static unsigned encode(float x, int mbits, int underflow_to_zero)
{
    int ex;
    float fr = frexpf(x, &ex); /* x = fr 2^ex, fr in [0.5, 1) */
    int e = ex - 1 + 15, steps = 1 << mbits;
    int f = (int)rintf((2.0f * fr - 1.0f) * (float)steps); /* ties to even, as the shader */
    if (f == steps)
        f = 0, e++;
    if (e > 15)
        return (15u << mbits) | (unsigned)(steps - 1);
    if (e < 0)
        return underflow_to_zero ? 0u : 1u;
    unsigned c = ((unsigned)e << mbits) | (unsigned)f;
    return c ? c : 1u;
}

static float decode(unsigned c, int mbits)
{
    if (!c)
        return 0.0f;
    unsigned steps = 1u << mbits;
    return ldexpf(1.0f + (float)(c & (steps - 1)) / (float)steps, (int)(c >> mbits) - 15);
}

uint8_t df_adam8_encode_m(float x)
{
    if (x == 0 || x != x)
        return 0;
    unsigned c = encode(fabsf(x), 3, 1);
    return (uint8_t)(c ? (x < 0 ? 0x80u | c : c) : 0u);
}

float df_adam8_decode_m(uint8_t c)
{
    float mag = decode(c & 0x7fu, 3);
    return c & 0x80u ? -mag : mag;
}

uint8_t df_adam8_encode_s(float x) { return x > 0 ? (uint8_t)encode(x, 4, 0) : 0; }
float df_adam8_decode_s(uint8_t c) { return decode(c, 4); }

uint64_t df_adam8_blocks(uint64_t n) { return (n + DF_ADAM8_BLOCK - 1) / DF_ADAM8_BLOCK; }

void df_adam8_quantize(const float *m, const float *v, uint64_t n, uint8_t *mq, uint8_t *sq, float *m_scale,
                       float *s_scale)
{
    for (uint64_t b = 0; b * DF_ADAM8_BLOCK < n; b++) {
        uint64_t i0 = b * DF_ADAM8_BLOCK, i1 = i0 + DF_ADAM8_BLOCK < n ? i0 + DF_ADAM8_BLOCK : n;
        float am = 0, as = 0;
        for (uint64_t i = i0; i < i1; i++) {
            am = fmaxf(am, fabsf(m[i]));
            as = fmaxf(as, sqrtf(v[i]));
        }
        m_scale[b] = am, s_scale[b] = as;
        for (uint64_t i = i0; i < i1; i++) {
            mq[i] = am > 0 ? df_adam8_encode_m(m[i] / am) : 0;
            sq[i] = as > 0 ? df_adam8_encode_s(sqrtf(v[i]) / as) : 0;
        }
    }
}

void df_adam8_dequantize(const uint8_t *mq, const uint8_t *sq, const float *m_scale, const float *s_scale, uint64_t n,
                         float *m, float *v)
{
    for (uint64_t i = 0; i < n; i++) {
        float s = df_adam8_decode_s(sq[i]) * s_scale[i / DF_ADAM8_BLOCK];
        m[i] = df_adam8_decode_m(mq[i]) * m_scale[i / DF_ADAM8_BLOCK];
        v[i] = s * s;
    }
}
