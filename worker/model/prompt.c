/*  prompt.c - see prompt.h. */
#include "prompt.h"

#include <stdlib.h>

#include "copy2d.h"
#include "layers.h"

struct _df_prompt_encoder_t {
    df_clip_tokenizer_t *tok[2];
    int32_t pad[2];
    df_clip_text_t *te[2];
    uint32_t hidden[2], pooled;
};

void df_prompt_encoder_destroy(df_prompt_encoder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_prompt_encoder_t *p = *self_p;
    for (int i = 0; i < 2; i++) {
        df_clip_tokenizer_destroy(&p->tok[i]);
        df_clip_text_destroy(&p->te[i]);
    }
    free(p);
    *self_p = NULL;
}

df_prompt_encoder_t *df_prompt_encoder_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                           df_dtype store, df_error_t *err)
{
    df_prompt_encoder_t *p = calloc(1, sizeof *p);
    if (!p) {
        df_error_set(err, DF_E_NOMEM, "prompt encoder: out of memory");
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        p->tok[i] = df_sdxl_load_tokenizer(model, i + 1, &p->pad[i], err);
        p->te[i] = p->tok[i] ? df_sdxl_load_text_encoder(model, i + 1, dev, xfer, store, err) : NULL;
        if (!p->te[i]) {
            df_prompt_encoder_destroy(&p);
            return NULL;
        }
        const df_clip_text_config *c = df_clip_text_config_of(p->te[i]);
        p->hidden[i] = (uint32_t)c->hidden;
        if (df_clip_tokenizer_vocab_size(p->tok[i]) > (size_t)c->vocab_size) {
            df_error_set(err, DF_E_FORMAT, "tokenizer %d has %zu tokens; text encoder %d knows %d", i + 1,
                         df_clip_tokenizer_vocab_size(p->tok[i]), i + 1, c->vocab_size);
            df_prompt_encoder_destroy(&p);
            return NULL;
        }
    }
    p->pooled = (uint32_t)df_clip_text_config_of(p->te[1])->projection_dim;
    return p;
}

df_clip_text_t *df_prompt_text_encoder(df_prompt_encoder_t *self, int which)
{
    return which == 1 || which == 2 ? self->te[which - 1] : NULL;
}

uint32_t df_prompt_context_dim(const df_prompt_encoder_t *self) { return self->hidden[0] + self->hidden[1]; }
uint32_t df_prompt_pooled_dim(const df_prompt_encoder_t *self) { return self->pooled; }

int df_prompt_tokens(df_prompt_encoder_t *self, const char *text, uint32_t *chunks, df_error_t *err)
{
    int32_t *ids;
    size_t n;
    int rc = df_clip_tokenizer_chunks(self->tok[0], text, self->pad[0], &ids, &n, err);
    free(ids);
    *chunks = (uint32_t)n;
    return rc;
}

int df_prompt_encode(df_prompt_encoder_t *self, df_vk_batch_t *batch, const char *text, df_tensor context,
                     df_tensor pooled, int32_t **ids1, int32_t **ids2, uint32_t *chunks, df_error_t *err)
{
    int32_t *ids[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    int rc = DF_OK;
    for (int i = 0; i < 2 && rc == DF_OK; i++)
        rc = df_clip_tokenizer_chunks(self->tok[i], text, self->pad[i], &ids[i], &n[i], err);
    const uint32_t T = DF_CLIP_CONTEXT, D = self->hidden[0] + self->hidden[1];
    /* Each encoder's chunks side by side in the context's columns. */
    df_tensor pool_all = {{NULL, 0}, DF_F32};
    for (int i = 0; i < 2 && rc == DF_OK; i++) {
        df_tensor h;
        rc = df_scratch(batch, (uint64_t)n[i] * T * self->hidden[i], DF_F32, &h, err);
        if (rc == DF_OK && i == 1)
            rc = df_scratch(batch, (uint64_t)n[i] * self->pooled, DF_F32, &pool_all, err);
        if (rc == DF_OK)
            rc = df_clip_text_forward(self->te[i], batch, ids[i], (uint32_t)n[i], h, pool_all, err);
        if (rc == DF_OK) {
            df_copy2d_desc d = {.rows = (uint32_t)n[i] * T, .width = self->hidden[i], .ld_x = self->hidden[i], .ld_y = D};
            df_tensor dst = context;
            dst.ref.offset += (i ? self->hidden[0] : 0) * 4ull;
            rc = df_copy2d(batch, &d, h, dst, err);
        }
    }
    /* The pooled output of the first chunk, as a 77-token prompt has it. */
    if (rc == DF_OK)
        rc = df_vk_batch_copy(batch, pool_all.ref.buf, pool_all.ref.offset, pooled.ref.buf, pooled.ref.offset,
                              (uint64_t)self->pooled * 4, err);
    if (rc == DF_OK) {
        *chunks = (uint32_t)n[0];
        if (ids1) {
            *ids1 = ids[0];
            ids[0] = NULL;
        }
        if (ids2) {
            *ids2 = ids[1];
            ids[1] = NULL;
        }
    }
    free(ids[0]);
    free(ids[1]);
    return rc;
}
