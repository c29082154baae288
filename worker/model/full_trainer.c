/*  full_trainer.c - see full_trainer.h. */
#include "full_trainer.h"

#include <stdio.h>
#include <stdlib.h>

#include "adamw_state.h"
#include "safetensors.h"

struct _df_full_trainer_t {
    df_unet_t *unet;
    df_vk_transfer_t *xfer;
    df_full_train_opts o;
    df_adamw_state *state; /* one per weight, in the weights' order */
    size_t n;
    uint64_t steps, params;
};

df_full_trainer_t *df_full_trainer_new(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                       const df_full_train_opts *opts, df_error_t *err)
{
    df_weights_t *ws = df_unet_weights(unet);
    if (df_weights_adapter_count(ws)) {
        df_error_set(err, DF_E_STATE, "full fine-tuning: the UNet carries adapters");
        return NULL;
    }
    df_full_trainer_t *self = calloc(1, sizeof *self);
    size_t count = df_weights_count(ws);
    if (self)
        self->state = calloc(count ? count : 1, sizeof *self->state);
    if (!self || !self->state) {
        free(self);
        df_error_set(err, DF_E_NOMEM, "full fine-tuning: out of memory");
        return NULL;
    }
    self->unet = unet;
    self->xfer = xfer;
    self->o = *opts;
    if (self->o.beta1 == 0)
        self->o.beta1 = 0.9f;
    if (self->o.beta2 == 0)
        self->o.beta2 = 0.999f;
    if (self->o.eps == 0)
        self->o.eps = 1e-8f;
    int rc = df_weights_grads(ws, batch, err);
    for (size_t i = 0; rc == DF_OK && i < count; i++) {
        const df_weight *w = df_weights_at(ws, i);
        rc = df_adamw_state_init(&self->state[i], batch, w->nelem, self->o.state8, err);
        self->n = i + 1;
        self->params += w->nelem;
    }
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc != DF_OK) { /* the zeroing recorded so far still needs its buffers */
        for (size_t i = 0; i < self->n; i++)
            df_adamw_state_release(&self->state[i], batch);
        df_full_trainer_destroy(&self);
    }
    return self;
}

void df_full_trainer_destroy(df_full_trainer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_full_trainer_t *t = *self_p;
    for (size_t i = 0; i < t->n; i++)
        df_adamw_state_free(&t->state[i]);
    /* The UNet trains no more: later backward passes accumulate nothing. */
    df_weights_drop_grads(df_unet_weights(t->unet));
    free(t->state);
    free(t);
    *self_p = NULL;
}

uint64_t df_full_trainer_params(const df_full_trainer_t *self) { return self->params; }

int df_full_trainer_accumulate(df_full_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                               df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                               df_error_t *err)
{
    df_tensor none = {{NULL, 0}, DF_F32};
    return df_unet_lora_grad(self->unet, batch, in, target, weights, grad_scale, none, losses, err);
}

int df_full_trainer_step(df_full_trainer_t *self, df_vk_batch_t *batch, float lr, df_error_t *err)
{
    df_weights_t *ws = df_unet_weights(self->unet);
    uint64_t step = self->steps + 1;
    int rc = DF_OK;
    for (size_t i = 0; rc == DF_OK && i < self->n; i++) {
        const df_weight *w = df_weights_at(ws, i);
        df_adamw_desc d = {.n = w->nelem, .lr = lr, .beta1 = self->o.beta1, .beta2 = self->o.beta2,
                           .eps = self->o.eps, .weight_decay = self->o.weight_decay, .step = step, .grad_scale = 1};
        rc = df_adamw_state_step(&self->state[i], batch, &d, w->t, w->grad, err);
        if (rc == DF_OK)
            rc = df_vk_batch_fill(batch, w->grad.ref.buf, w->grad.ref.offset, w->nelem * 4, 0, err);
    }
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc == DF_OK)
        self->steps = step;
    return rc;
}

int df_full_trainer_save(df_full_trainer_t *self, const char *path, const char *const *metadata, df_error_t *err)
{
    df_weights_t *ws = df_unet_weights(self->unet);
    df_st_writer_t *wr = df_st_writer_new();
    float **vals = calloc(self->n ? self->n : 1, sizeof *vals);
    int rc = wr && vals ? DF_OK : df_error_set(err, DF_E_NOMEM, "full fine-tuning: out of memory");
    for (size_t i = 0; rc == DF_OK && i < self->n; i++) {
        const df_weight *w = df_weights_at(ws, i);
        if (!(vals[i] = malloc(w->nelem * 4)))
            rc = df_error_set(err, DF_E_NOMEM, "full fine-tuning: out of memory");
        if (rc == DF_OK)
            rc = df_vk_download(self->xfer, w->t.ref.buf, w->t.ref.offset, vals[i], w->nelem * 4, err);
        if (rc == DF_OK)
            rc = df_st_writer_add(wr, w->name, DF_F32, w->ndim, w->shape, vals[i], err);
    }
    char steps[32];
    snprintf(steps, sizeof steps, "%llu", (unsigned long long)self->steps);
    if (rc == DF_OK)
        rc = df_st_writer_set_metadata(wr, "dreamfleet.steps", steps, err);
    for (size_t i = 0; rc == DF_OK && metadata && metadata[i] && metadata[i + 1]; i += 2)
        rc = df_st_writer_set_metadata(wr, metadata[i], metadata[i + 1], err);
    if (rc == DF_OK)
        rc = df_st_writer_write(wr, path, err);
    for (size_t i = 0; vals && i < self->n; i++)
        free(vals[i]);
    free(vals);
    df_st_writer_destroy(&wr);
    return rc;
}
