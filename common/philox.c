/*  philox.c - see philox.h. Constants from Salmon et al., "Parallel random
 *  numbers: as easy as 1, 2, 3" (SC'11). */
#include "philox.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void df_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n1 = lo1;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        uint32_t n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

uint32_t df_philox_u32(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t block = i / 4;
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    df_philox4x32(ctr, key, out);
    return out[i % 4];
}

float df_philox_uniform(uint32_t word) { return (float)(word >> 8) * (1.0f / 16777216.0f); }

void df_philox_fill_uniform(float *dst, size_t n, uint64_t seed, uint64_t stream, float lo,
                            float hi)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = lo + (hi - lo) * df_philox_uniform(df_philox_u32(seed, stream, i));
}

void df_philox_fill_normal(float *dst, size_t n, uint64_t seed, uint64_t stream)
{
    for (size_t j = 0; 2 * j < n; j++) {
        /* u1 in (0, 1] so log() is finite. */
        double u1 = 1.0 - df_philox_uniform(df_philox_u32(seed, stream, 2 * j));
        double u2 = df_philox_uniform(df_philox_u32(seed, stream, 2 * j + 1));
        double r = sqrt(-2.0 * log(u1));
        double th = 2.0 * M_PI * u2;
        dst[2 * j] = (float)(r * cos(th));
        if (2 * j + 1 < n)
            dst[2 * j + 1] = (float)(r * sin(th));
    }
}
