/*  adamw_state.c - see adamw_state.h. */
#include "adamw_state.h"

#include <stdlib.h>

#include "adam8.h"

static df_vk_buffer_t *zeroed(df_vk_batch_t *batch, uint64_t bytes, int *rc, df_error_t *err)
{
    if (*rc != DF_OK)
        return NULL;
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), bytes, err);
    if (!b)
        *rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    else
        *rc = df_vk_batch_fill(batch, b, 0, bytes, 0, err);
    return b;
}

int df_adamw_state_init(df_adamw_state *self, df_vk_batch_t *batch, uint64_t n, int state8, df_error_t *err)
{
    int rc = DF_OK;
    *self = (df_adamw_state){0};
    if (!state8) {
        self->m = zeroed(batch, n * 4, &rc, err);
        self->v = zeroed(batch, n * 4, &rc, err);
    } else {
        uint64_t codes = (n + 3) & ~3ull, blocks = df_adam8_blocks(n);
        self->m = zeroed(batch, codes, &rc, err);
        self->v = zeroed(batch, codes, &rc, err);
        self->m_scale = zeroed(batch, blocks * 4, &rc, err);
        self->s_scale = zeroed(batch, blocks * 4, &rc, err);
    }
    if (rc != DF_OK) /* the fills recorded so far need their buffers until the batch runs */
        df_adamw_state_release(self, batch);
    return rc;
}

void df_adamw_state_free(df_adamw_state *self)
{
    df_vk_buffer_destroy(&self->m), df_vk_buffer_destroy(&self->v);
    df_vk_buffer_destroy(&self->m_scale), df_vk_buffer_destroy(&self->s_scale);
}

void df_adamw_state_release(df_adamw_state *self, df_vk_batch_t *batch)
{
    df_vk_buffer_t **bufs[4] = {&self->m, &self->v, &self->m_scale, &self->s_scale};
    for (int i = 0; i < 4; i++)
        if (*bufs[i] && df_vk_batch_hold(batch, bufs[i], NULL) != DF_OK)
            df_vk_buffer_destroy(bufs[i]);
}

int df_adamw_state_step(const df_adamw_state *self, df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param,
                        df_tensor grad, df_error_t *err)
{
    if (!self->m_scale)
        return df_adamw_step(batch, d, param, grad, df_tensor_at(self->m, 0, DF_F32), df_tensor_at(self->v, 0, DF_F32),
                             err);
    return df_adamw8_step(batch, d, param, grad, df_tensor_at(self->m, 0, DF_U8), df_tensor_at(self->v, 0, DF_U8),
                          df_tensor_at(self->m_scale, 0, DF_F32), df_tensor_at(self->s_scale, 0, DF_F32), err);
}

int df_adamw_state_read(const df_adamw_state *self, df_vk_transfer_t *xfer, uint64_t n, float *m, float *v,
                        df_error_t *err)
{
    if (!self->m_scale) {
        int rc = df_vk_download(xfer, self->m, 0, m, n * 4, err);
        return rc == DF_OK ? df_vk_download(xfer, self->v, 0, v, n * 4, err) : rc;
    }
    uint64_t codes = (n + 3) & ~3ull, blocks = df_adam8_blocks(n);
    uint8_t *mq = malloc(codes), *sq = malloc(codes);
    float *ms = malloc(blocks * 4), *ss = malloc(blocks * 4);
    int rc = mq && sq && ms && ss ? DF_OK : df_error_set(err, DF_E_NOMEM, "adamw state: out of memory");
    if (rc == DF_OK) rc = df_vk_download(xfer, self->m, 0, mq, codes, err);
    if (rc == DF_OK) rc = df_vk_download(xfer, self->v, 0, sq, codes, err);
    if (rc == DF_OK) rc = df_vk_download(xfer, self->m_scale, 0, ms, blocks * 4, err);
    if (rc == DF_OK) rc = df_vk_download(xfer, self->s_scale, 0, ss, blocks * 4, err);
    if (rc == DF_OK)
        df_adam8_dequantize(mq, sq, ms, ss, n, m, v);
    free(mq), free(sq), free(ms), free(ss);
    return rc;
}

int df_adamw_state_write(const df_adamw_state *self, df_vk_transfer_t *xfer, uint64_t n, const float *m,
                         const float *v, df_error_t *err)
{
    if (!self->m_scale) {
        int rc = df_vk_upload(xfer, self->m, 0, m, n * 4, err);
        return rc == DF_OK ? df_vk_upload(xfer, self->v, 0, v, n * 4, err) : rc;
    }
    uint64_t codes = (n + 3) & ~3ull, blocks = df_adam8_blocks(n);
    uint8_t *mq = calloc(codes, 1), *sq = calloc(codes, 1);
    float *ms = malloc(blocks * 4), *ss = malloc(blocks * 4);
    int rc = mq && sq && ms && ss ? DF_OK : df_error_set(err, DF_E_NOMEM, "adamw state: out of memory");
    if (rc == DF_OK) {
        df_adam8_quantize(m, v, n, mq, sq, ms, ss);
        rc = df_vk_upload(xfer, self->m, 0, mq, codes, err);
    }
    if (rc == DF_OK) rc = df_vk_upload(xfer, self->v, 0, sq, codes, err);
    if (rc == DF_OK) rc = df_vk_upload(xfer, self->m_scale, 0, ms, blocks * 4, err);
    if (rc == DF_OK) rc = df_vk_upload(xfer, self->s_scale, 0, ss, blocks * 4, err);
    free(mq), free(sq), free(ms), free(ss);
    return rc;
}
