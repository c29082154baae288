/*  philox.c - see philox.h. Constants from Salmon et al., "Parallel random
 *  numbers: as easy as 1, 2, 3" (SC'11). */
#include "philox.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>

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

/*  Pairs [j0, j1) of a normal fill. */
typedef struct {
    float *dst;
    size_t n, j0, j1;
    uint64_t seed, stream;
} normal_span;

static void *fill_normal_span(void *arg)
{
    const normal_span *s = arg;
    float *dst = s->dst;
    const size_t n = s->n;
    const uint64_t seed = s->seed, stream = s->stream;
    for (size_t j = s->j0; j < s->j1; j++) {
        /* u1 in (0, 1] so log() is finite. */
        double u1 = 1.0 - df_philox_uniform(df_philox_u32(seed, stream, 2 * j));
        double u2 = df_philox_uniform(df_philox_u32(seed, stream, 2 * j + 1));
        double r = sqrt(-2.0 * log(u1));
        double th = 2.0 * M_PI * u2;
        dst[2 * j] = (float)(r * cos(th));
        if (2 * j + 1 < n)
            dst[2 * j + 1] = (float)(r * sin(th));
    }
    return NULL;
}

/*  Every value is a function of its index alone, so large fills are split
 *  over the machine's cores (a random SDXL model is 2.6 G values); the
 *  result does not depend on the split. */
void df_philox_fill_normal(float *dst, size_t n, uint64_t seed, uint64_t stream)
{
    enum { MAX_THREADS = 32, MIN_PAIRS = 1 << 18 };
    const size_t pairs = (n + 1) / 2;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t threads = cpus > 1 ? (size_t)cpus : 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > pairs / MIN_PAIRS)
        threads = pairs / MIN_PAIRS ? pairs / MIN_PAIRS : 1;
    normal_span spans[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    size_t started = 0;
    for (size_t t = 0; t < threads; t++)
        spans[t] = (normal_span){dst, n, pairs * t / threads, pairs * (t + 1) / threads, seed, stream};
    /* Span 0 runs here; a thread that cannot start has its span run here too. */
    for (size_t t = 1; t < threads; t++) {
        if (pthread_create(&tids[t], NULL, fill_normal_span, &spans[t]) == 0)
            started |= (size_t)1 << t;
        else
            fill_normal_span(&spans[t]);
    }
    fill_normal_span(&spans[0]);
    for (size_t t = 1; t < threads; t++)
        if (started >> t & 1)
            pthread_join(tids[t], NULL);
}
