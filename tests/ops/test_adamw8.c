/*  test_adamw8.c - AdamW with 8-bit moments: three steps on the device
 *  against the host's simulation with the same codes (common/adam8.c), and
 *  against plain f32 AdamW, which it must follow closely; blocks whose
 *  gradients are ten thousand times smaller than others keep their steps
 *  (a linear code would lose them); and the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam8.h"
#include "ops_tests.h"
#include "optim.h"

enum { STEPS = 3 };

static df_vk_buffer_t *zeros(op_env *env, uint64_t bytes)
{
    df_vk_buffer_t *b = df_vk_buffer_new(env->dev, bytes, NULL);
    void *z = calloc(1, bytes);
    if (b && z)
        df_vk_upload(env->xfer, b, 0, z, bytes, NULL);
    free(z);
    return b;
}

/*  One AdamW step in f32 on the host with the moments held as codes, as the
 *  shader computes it. */
static void host_step(float *p, const float *g, uint64_t n, uint8_t *mq, uint8_t *sq, float *ms, float *ss,
                      const df_adamw_desc *d)
{
    float *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    df_adam8_dequantize(mq, sq, ms, ss, n, m, v);
    float c1 = (float)(1.0 - pow(d->beta1, (double)d->step)), c2 = (float)(1.0 - pow(d->beta2, (double)d->step));
    for (uint64_t i = 0; i < n; i++) {
        m[i] = d->beta1 * m[i] + (1.0f - d->beta1) * g[i];
        v[i] = d->beta2 * v[i] + (1.0f - d->beta2) * g[i] * g[i];
        float w = p[i] * (1.0f - d->lr * d->weight_decay);
        p[i] = w - d->lr * (m[i] / c1) / (sqrtf(v[i] / c2) + d->eps);
    }
    df_adam8_quantize(m, v, n, mq, sq, ms, ss);
    free(m), free(v);
}

void test_op_adamw8(op_env *env)
{
    df_error_t err;
    df_error_clear(&err);
    const uint64_t n = 10001, nb = df_adam8_blocks(n), padded = (n + 3) & ~3ull;
    op_tensor prm = op_tensor_normal(env, n, DF_F32, 0, 1.0f);
    op_tensor g[STEPS];
    for (int s = 0; s < STEPS; s++) {
        g[s] = op_tensor_normal(env, n, DF_F32, 0, 0.1f);
        /* Every third block's gradients 1e-4 times the others'. */
        for (uint64_t i = 0; i < n; i++)
            if ((i / DF_ADAM8_BLOCK) % 3 == 1)
                g[s].host[i] *= 1e-4f;
        df_vk_upload_f32(env->xfer, g[s].buf, 0, g[s].host, n, DF_F32, NULL);
    }
    df_vk_buffer_t *mqb = zeros(env, padded), *sqb = zeros(env, padded), *msb = zeros(env, nb * 4),
                   *ssb = zeros(env, nb * 4);
    df_adamw_desc d = {.n = n, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f,
                       .grad_scale = 1};
    int rc = DF_OK;
    for (int s = 0; s < STEPS && rc == DF_OK; s++) {
        d.step = (uint64_t)s + 1;
        rc = df_adamw8_step(env->batch, &d, prm.t, g[s].t, df_tensor_at(mqb, 0, DF_U8), df_tensor_at(sqb, 0, DF_U8),
                            df_tensor_at(msb, 0, DF_F32), df_tensor_at(ssb, 0, DF_F32), &err);
    }
    float *got = malloc(n * sizeof *got);
    uint8_t *mq = malloc(padded), *sq = malloc(padded);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(env->batch, &err);
    if (rc == DF_OK)
        rc = df_vk_download_f32(env->xfer, prm.buf, 0, got, n, DF_F32, &err);
    if (rc == DF_OK)
        rc = df_vk_download(env->xfer, mqb, 0, mq, padded, &err);
    if (rc == DF_OK)
        rc = df_vk_download(env->xfer, sqb, 0, sq, padded, &err);
    int fails = 0;
    if (rc == DF_OK) {
        /* The host's run with the same codes, and plain f32 AdamW. */
        float *p8 = malloc(n * sizeof *p8), *ms = calloc(nb, 4), *ss = calloc(nb, 4);
        uint8_t *hmq = calloc(n, 1), *hsq = calloc(n, 1);
        double *p32 = malloc(n * sizeof *p32), *m32 = calloc(n, sizeof *m32), *v32 = calloc(n, sizeof *v32);
        memcpy(p8, prm.host, n * sizeof *p8);
        for (uint64_t i = 0; i < n; i++)
            p32[i] = prm.host[i];
        for (int s = 0; s < STEPS; s++) {
            d.step = (uint64_t)s + 1;
            host_step(p8, g[s].host, n, hmq, hsq, ms, ss, &d);
            for (uint64_t i = 0; i < n; i++) {
                double gi = g[s].host[i];
                m32[i] = 0.9 * m32[i] + 0.1 * gi;
                v32[i] = 0.999 * v32[i] + 0.001 * gi * gi;
                p32[i] = p32[i] * (1 - 1e-2 * 1e-2) -
                         1e-2 * (m32[i] / (1 - pow(0.9, s + 1))) / (sqrt(v32[i] / (1 - pow(0.999, s + 1))) + 1e-8);
            }
        }
        /* The device's codes are the host's, but for values on a rounding
         * boundary that a fused multiply-add may tip (Vulkan allows it):
         * a code or two in ten thousand, and then by one step. */
        uint64_t differ = 0, far = 0;
        for (uint64_t i = 0; i < n; i++) {
            differ += mq[i] != hmq[i] || sq[i] != hsq[i];
            far += abs((int)(mq[i] & 127) - (int)(hmq[i] & 127)) > 1 || abs((int)sq[i] - (int)hsq[i]) > 1 ||
                   ((mq[i] ^ hmq[i]) & 128 && (mq[i] & 127) > 1);
        }
        /* Parameters: the host's to f32 rounding where the codes agree (an
         * update of lr at most per step). Against f32 AdamW, every step of
         * every block, the tiny-gradient ones included, within 10 %. */
        double worst_host = 0, de[2] = {0, 0}, dn[2] = {0, 0}, worst_32;
        for (uint64_t i = 0; i < n; i++) {
            if (mq[i] == hmq[i] && sq[i] == hsq[i])
                worst_host = fmax(worst_host, fabs((double)got[i] - p8[i]) / (1e-2 * STEPS));
            int tiny = (i / DF_ADAM8_BLOCK) % 3 == 1;
            double moved = p32[i] - prm.host[i];
            de[tiny] += ((double)got[i] - p32[i]) * ((double)got[i] - p32[i]);
            dn[tiny] += moved * moved;
        }
        /* Norm-wise over each kind of block (one value's move can be near
         * zero where its gradients changed sign). */
        worst_32 = fmax(sqrt(de[0] / dn[0]), sqrt(de[1] / dn[1]));
        fprintf(stderr, "  adamw8: %llu of %llu codes differ from the host's (%llu by more than a step); "
                "parameters within %.2g of a step of the host's, moves within %.2g of f32 AdamW's\n",
                (unsigned long long)differ, (unsigned long long)n, (unsigned long long)far, worst_host, worst_32);
        fails += differ > n / 1000 || far > 0;
        fails += worst_host > 1e-4;
        fails += worst_32 > 0.1;
        free(p8), free(ms), free(ss), free(hmq), free(hsq), free(p32), free(m32), free(v32);
    }
    op_case_done(env, "adamw8 three steps", fails, rc, &err);
    /* Refusals. */
    df_error_clear(&err);
    d.step = 1;
    int bad = df_adamw8_step(env->batch, &d, prm.t, g[0].t, df_tensor_at(mqb, 1, DF_U8), df_tensor_at(sqb, 0, DF_U8),
                             df_tensor_at(msb, 0, DF_F32), df_tensor_at(ssb, 0, DF_F32), &err) != DF_E_INVALID ||
              !strstr(err.msg, "4-byte boundary");
    op_case_done(env, "adamw8 unaligned codes refused", bad, 0, NULL);
    df_error_clear(&err);
    bad = df_adamw8_step(env->batch, &d, prm.t, g[0].t, df_tensor_at(mqb, 0, DF_F32), df_tensor_at(sqb, 0, DF_U8),
                         df_tensor_at(msb, 0, DF_F32), df_tensor_at(ssb, 0, DF_F32), &err) != DF_E_UNSUPPORTED;
    op_case_done(env, "adamw8 f32 codes refused", bad, 0, NULL);
    df_error_clear(&err);
    d.n = n + 300; /* more values than the scales cover */
    bad = df_adamw8_step(env->batch, &d, prm.t, g[0].t, df_tensor_at(mqb, 0, DF_U8), df_tensor_at(sqb, 0, DF_U8),
                         df_tensor_at(msb, 0, DF_F32), df_tensor_at(ssb, 0, DF_F32), &err) != DF_E_RANGE;
    op_case_done(env, "adamw8 state too small refused", bad, 0, NULL);
    df_vk_buffer_destroy(&mqb), df_vk_buffer_destroy(&sqb), df_vk_buffer_destroy(&msb), df_vk_buffer_destroy(&ssb);
    for (int s = 0; s < STEPS; s++)
        op_tensor_free(&g[s]);
    op_tensor_free(&prm);
    free(got), free(mq), free(sq);
}
