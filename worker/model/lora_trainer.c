/*  lora_trainer.c - see lora_trainer.h. */
#include "lora_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "adamw_state.h"
#include "optim.h"
#include "philox.h"
#include "safetensors.h"


/*  One adapter's optimiser state: the moments of its down and up factors. */
typedef struct {
    const df_weight_adapter *a;
    const df_weight *w;
    int comp; /* 0 the UNet, 1 text encoder 1, 2 text encoder 2 */
    df_adamw_state mo[2];
} trained;

/*  The components' prefixes in kohya's keys, PEFT's keys and checkpoints
 *  (the UNet's keep the checkpoints' earlier, unprefixed names). */
static const char *const k_kohya[3] = {"lora_unet_", "lora_te1_", "lora_te2_"};
static const char *const k_peft[3] = {"unet.", "text_encoder.", "text_encoder_2."};
static const char *const k_ckpt[3] = {"", "te1/", "te2/"};

struct _df_lora_trainer_t {
    df_unet_t *unet;
    df_weights_t *comps[3]; /* the UNet's weights, and the text encoders' when they train */
    df_vk_transfer_t *xfer;
    df_lora_train_opts o;
    trained *items;
    size_t n;
    uint64_t steps, params;
};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/*  Whether targets ask for the weight called name. */
static int wanted(const df_weight *w, unsigned targets)
{
    const char *n = w->name;
    if ((targets & DF_LORA_ATTN) && strstr(n, ".attn") &&
        (ends_with(n, ".to_q.weight") || ends_with(n, ".to_k.weight") || ends_with(n, ".to_v.weight") ||
         ends_with(n, ".to_out.0.weight")))
        return 1;
    if ((targets & DF_LORA_FF) && (ends_with(n, ".ff.net.0.proj.weight") || ends_with(n, ".ff.net.2.weight")))
        return 1;
    if ((targets & DF_LORA_PROJ) && (ends_with(n, ".proj_in.weight") || ends_with(n, ".proj_out.weight")) &&
        w->ndim == 2)
        return 1;
    if ((targets & DF_LORA_CONV) && strstr(n, ".resnets.") &&
        (ends_with(n, ".conv1.weight") || ends_with(n, ".conv2.weight")) && w->ndim == 4)
        return 1;
    return 0;
}

/*  A text encoder's attention projections (q, k, v, out of every layer):
 *  what diffusers and kohya train there. */
static int wanted_text(const df_weight *w)
{
    const char *n = w->name;
    return strstr(n, ".self_attn.") && (ends_with(n, ".q_proj.weight") || ends_with(n, ".k_proj.weight") ||
                                        ends_with(n, ".v_proj.weight") || ends_with(n, ".out_proj.weight"));
}

/*  The component's prefix ("lora_unet_", ...) and the module's name with
 *  '.' as '_' (kohya's key). */
static void kohya_module(int comp, const df_weight *w, char *buf, size_t cap)
{
    size_t len = strlen(w->name) - strlen(".weight"), pre = strlen(k_kohya[comp]);
    snprintf(buf, cap, "%s%.*s", k_kohya[comp], (int)len, w->name);
    for (char *p = buf + pre; *p; p++)
        if (*p == '.')
            *p = '_';
}

/*  One new adapter on w of component comp, initialised as the reference
 *  does; `made` numbers it (its stream of random draws). */
static int create_one(df_lora_trainer_t *self, df_vk_batch_t *batch, int comp, const df_weight *w, size_t made,
                      df_error_t *err)
{
    df_vk_device_t *dev = df_vk_batch_device(batch);
    uint64_t out = (uint64_t)w->shape[0], fan_in = w->nelem / out, r = self->o.rank;
    float *down = malloc(r * fan_in * sizeof *down);
    df_vk_buffer_t *db = NULL, *ub = NULL;
    if (!down)
        return df_error_set(err, DF_E_NOMEM, "lora: out of memory");
    float bound = 1.0f / sqrtf((float)fan_in);
    df_philox_fill_uniform(down, r * fan_in, self->o.seed, made, -bound, bound);
    int rc = DF_OK;
    if (!(db = df_vk_buffer_new(dev, r * fan_in * 4, err)) || !(ub = df_vk_buffer_new(dev, out * r * 4, err)))
        rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    if (rc == DF_OK)
        rc = df_vk_upload(self->xfer, db, 0, down, r * fan_in * 4, err);
    if (rc == DF_OK)
        rc = df_vk_batch_fill(batch, ub, 0, out * r * 4, 0, err);
    char mod[200], dk[230], uk[230];
    kohya_module(comp, w, mod, sizeof mod);
    snprintf(dk, sizeof dk, "%s.lora_down.weight", mod);
    snprintf(uk, sizeof uk, "%s.lora_up.weight", mod);
    if (rc == DF_OK)
        rc = df_weights_attach(self->comps[comp], w->name, &db, &ub, (uint32_t)r, self->o.alpha / (float)r, dk, uk,
                               err);
    df_vk_buffer_destroy(&db);
    df_vk_buffer_destroy(&ub);
    free(down);
    return rc;
}

/*  New adapters on every targeted weight: the UNet's first (their random
 *  streams as before text encoders could train), then the text encoders'. */
static int create(df_lora_trainer_t *self, df_vk_batch_t *batch, df_error_t *err)
{
    int rc = DF_OK;
    size_t made = 0, unet_made = 0;
    for (int comp = 0; comp < 3; comp++) {
        df_weights_t *ws = self->comps[comp];
        for (size_t i = 0; ws && rc == DF_OK && i < df_weights_count(ws); i++) {
            const df_weight *w = df_weights_at(ws, i);
            if (comp ? !wanted_text(w) : !wanted(w, self->o.targets))
                continue;
            rc = create_one(self, batch, comp, w, made++, err);
            unet_made += comp == 0;
        }
    }
    if (rc == DF_OK && unet_made == 0)
        rc = df_error_set(err, DF_E_INVALID, "lora: no layer of this UNet matches the targets");
    return rc;
}

void df_lora_trainer_destroy(df_lora_trainer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_lora_trainer_t *t = *self_p;
    for (size_t i = 0; i < t->n; i++)
        for (int f = 0; f < 2; f++) {
            df_adamw_state_free(&t->items[i].mo[f]);
        }
    free(t->items);
    free(t);
    *self_p = NULL;
}

df_lora_trainer_t *df_lora_trainer_new(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                       const df_lora_train_opts *opts, df_error_t *err)
{
    return df_lora_trainer_new_text(unet, NULL, NULL, batch, xfer, opts, err);
}

/*  Adapters attached over the trainer's components. */
static size_t adapters_attached(const df_lora_trainer_t *self)
{
    size_t n = 0;
    for (int comp = 0; comp < 3; comp++)
        n += self->comps[comp] ? df_weights_adapter_count(self->comps[comp]) : 0;
    return n;
}

df_lora_trainer_t *df_lora_trainer_new_text(df_unet_t *unet, df_clip_text_t *te1, df_clip_text_t *te2,
                                            df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                            const df_lora_train_opts *opts, df_error_t *err)
{
    df_lora_trainer_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "lora trainer: out of memory");
        return NULL;
    }
    self->unet = unet;
    self->comps[0] = df_unet_weights(unet);
    self->comps[1] = te1 ? df_clip_text_weights(te1) : NULL;
    self->comps[2] = te2 ? df_clip_text_weights(te2) : NULL;
    self->xfer = xfer;
    self->o = *opts;
    if (!self->o.targets)
        self->o.targets = DF_LORA_ATTN;
    if (self->o.beta1 == 0)
        self->o.beta1 = 0.9f;
    if (self->o.beta2 == 0)
        self->o.beta2 = 0.999f;
    if (self->o.eps == 0)
        self->o.eps = 1e-8f;
    int rc = DF_OK;
    df_weights_t *ws = df_unet_weights(unet);
    if (adapters_attached(self) == 0) {
        if (self->o.rank < 1 || self->o.rank > 1024)
            rc = df_error_set(err, DF_E_INVALID, "lora: rank %u: from 1 to 1024", self->o.rank);
        if (rc == DF_OK && self->o.alpha == 0)
            self->o.alpha = (float)self->o.rank;
        if (rc == DF_OK)
            rc = create(self, batch, err);
    } else { /* adapters from a file: its rank and alpha */
        const df_weight_adapter *a = df_weights_adapter_at(ws, 0, NULL);
        self->o.rank = a->rank;
        self->o.alpha = a->scale * (float)a->rank;
    }
    for (int comp = 0; rc == DF_OK && comp < 3; comp++)
        if (self->comps[comp])
            rc = df_weights_adapter_grads(self->comps[comp], batch, err);
    size_t n = adapters_attached(self);
    if (rc == DF_OK && !(self->items = calloc(n ? n : 1, sizeof *self->items)))
        rc = df_error_set(err, DF_E_NOMEM, "lora trainer: out of memory");
    for (size_t i = 0, comp = 0, k = 0; rc == DF_OK && i < n; i++, k++) {
        while (!self->comps[comp] || k >= df_weights_adapter_count(self->comps[comp]))
            comp++, k = 0;
        const char *wname;
        trained *t = &self->items[i];
        t->comp = (int)comp;
        t->a = df_weights_adapter_at(self->comps[comp], k, &wname);
        t->w = df_weights_find(self->comps[comp], wname);
        uint64_t nd = t->w->nelem / (uint64_t)t->w->shape[0] * t->a->rank, nu = (uint64_t)t->w->shape[0] * t->a->rank;
        if (rc == DF_OK) rc = df_adamw_state_init(&t->mo[0], batch, nd, self->o.state8, err);
        if (rc == DF_OK) rc = df_adamw_state_init(&t->mo[1], batch, nu, self->o.state8, err);
        self->n = i + 1;
        self->params += nd + nu;
    }
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc != DF_OK) { /* the zeroing recorded so far still needs its buffers */
        for (size_t i = 0; i < self->n; i++)
            for (int f = 0; f < 2; f++)
                df_adamw_state_release(&self->items[i].mo[f], batch);
        df_lora_trainer_destroy(&self);
    }
    return self;
}

uint64_t df_lora_trainer_params(const df_lora_trainer_t *self) { return self->params; }
void df_lora_trainer_set_text_lr_ratio(df_lora_trainer_t *self, float ratio) { self->o.text_lr_ratio = ratio; }
uint64_t df_lora_trainer_steps(const df_lora_trainer_t *self) { return self->steps; }

int df_lora_trainer_accumulate(df_lora_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                               df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                               df_error_t *err)
{
    df_tensor none = {{NULL, 0}, DF_F32};
    return df_unet_lora_grad(self->unet, batch, in, target, weights, grad_scale, none, losses, err);
}

int df_lora_trainer_accumulate_text(df_lora_trainer_t *self, df_vk_batch_t *batch, const df_unet_inputs *in,
                                    df_tensor target, df_tensor weights, float grad_scale, df_tensor losses,
                                    const df_unet_text_grads *text_grads, df_error_t *err)
{
    df_tensor none = {{NULL, 0}, DF_F32};
    return df_unet_lora_grad_text(self->unet, batch, in, target, weights, grad_scale, none, losses, text_grads, err);
}

int df_lora_trainer_step(df_lora_trainer_t *self, df_vk_batch_t *batch, float lr, df_error_t *err)
{
    int rc = DF_OK;
    uint64_t step = self->steps + 1;
    for (size_t i = 0; rc == DF_OK && i < self->n; i++) {
        trained *t = &self->items[i];
        uint64_t nd = t->w->nelem / (uint64_t)t->w->shape[0] * t->a->rank, nu = (uint64_t)t->w->shape[0] * t->a->rank;
        /* The text encoders' adapters may step at a rate of their own (the
         * schedule's shape, scaled), as diffusers' and kohya's scripts allow. */
        float at = t->comp && self->o.text_lr_ratio > 0 ? lr * self->o.text_lr_ratio : lr;
        df_adamw_desc d = {.n = nd, .lr = at, .beta1 = self->o.beta1, .beta2 = self->o.beta2, .eps = self->o.eps,
                           .weight_decay = self->o.weight_decay, .step = step, .grad_scale = 1};
        rc = df_adamw_state_step(&t->mo[0], batch, &d, t->a->down, t->a->grad_down, err);
        d.n = nu;
        if (rc == DF_OK)
            rc = df_adamw_state_step(&t->mo[1], batch, &d, t->a->up, t->a->grad_up, err);
        if (rc == DF_OK)
            rc = df_vk_batch_fill(batch, t->a->grad_down.ref.buf, t->a->grad_down.ref.offset, nd * 4, 0, err);
        if (rc == DF_OK)
            rc = df_vk_batch_fill(batch, t->a->grad_up.ref.buf, t->a->grad_up.ref.offset, nu * 4, 0, err);
    }
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc == DF_OK)
        self->steps = step;
    return rc;
}

size_t df_lora_trainer_tensor_count(const df_lora_trainer_t *self) { return 2 * self->n; }

void df_lora_trainer_tensor_shape(const df_lora_trainer_t *self, size_t i, uint32_t *rows, uint32_t *cols)
{
    const trained *t = &self->items[i / 2];
    uint32_t out = (uint32_t)t->w->shape[0], fan_in = (uint32_t)(t->w->nelem / out);
    *rows = i % 2 ? out : t->a->rank;
    *cols = i % 2 ? t->a->rank : fan_in;
}

/*  Tensor i of the exchange vector on the device. */
static df_tensor exchanged(const df_lora_trainer_t *self, size_t i, df_lora_values which)
{
    const df_weight_adapter *a = self->items[i / 2].a;
    if (which == DF_LORA_FACTORS)
        return i % 2 ? a->up : a->down;
    return i % 2 ? a->grad_up : a->grad_down;
}

static int move_values(df_lora_trainer_t *self, df_lora_values which, float *host, int up, df_error_t *err)
{
    uint64_t at = 0;
    for (size_t i = 0; i < 2 * self->n; i++) {
        uint32_t rows, cols;
        df_lora_trainer_tensor_shape(self, i, &rows, &cols);
        df_tensor t = exchanged(self, i, which);
        uint64_t bytes = (uint64_t)rows * cols * 4;
        int rc = up ? df_vk_upload(self->xfer, (df_vk_buffer_t *)t.ref.buf, t.ref.offset, host + at, bytes, err)
                    : df_vk_download(self->xfer, t.ref.buf, t.ref.offset, host + at, bytes, err);
        if (rc)
            return rc;
        at += (uint64_t)rows * cols;
    }
    return DF_OK;
}

int df_lora_trainer_download(df_lora_trainer_t *self, df_lora_values which, float *host, df_error_t *err)
{
    return move_values(self, which, host, 0, err);
}

int df_lora_trainer_upload(df_lora_trainer_t *self, df_lora_values which, const float *host, df_error_t *err)
{
    return move_values(self, which, (float *)host, 1, err);
}

int df_lora_trainer_save(df_lora_trainer_t *self, const char *path, df_lora_format format, int half,
                         const char *const *metadata, df_error_t *err)
{
    df_st_writer_t *wr = df_st_writer_new();
    void **keep = calloc(3 * self->n + 1, sizeof *keep);
    size_t nkeep = 0;
    int rc = wr && keep ? DF_OK : df_error_set(err, DF_E_NOMEM, "lora: out of memory");
    for (size_t i = 0; rc == DF_OK && i < self->n; i++) {
        const trained *t = &self->items[i];
        const df_weight *w = t->w;
        uint32_t r = t->a->rank;
        uint64_t out = (uint64_t)w->shape[0], fan_in = w->nelem / out, nd = r * fan_in, nu = out * r;
        float *down = malloc(nd * 4), *up = malloc(nu * 4);
        keep[nkeep++] = down, keep[nkeep++] = up;
        if (!down || !up) {
            rc = df_error_set(err, DF_E_NOMEM, "lora: out of memory");
            break;
        }
        rc = df_vk_download(self->xfer, t->a->down.ref.buf, t->a->down.ref.offset, down, nd * 4, err);
        if (rc == DF_OK)
            rc = df_vk_download(self->xfer, t->a->up.ref.buf, t->a->up.ref.offset, up, nu * 4, err);
        /* PEFT files carry no alpha: its scale goes into B. */
        if (format == DF_LORA_PEFT)
            for (uint64_t k = 0; k < nu; k++)
                up[k] *= t->a->scale;
        int64_t sd[4] = {r, w->ndim == 4 ? w->shape[1] : (int64_t)fan_in, w->ndim == 4 ? w->shape[2] : 1,
                         w->ndim == 4 ? w->shape[3] : 1};
        int64_t su[4] = {(int64_t)out, r, 1, 1};
        char mod[200], dk[240], uk[240], ak[240];
        if (format == DF_LORA_KOHYA) {
            kohya_module(t->comp, w, mod, sizeof mod);
            snprintf(dk, sizeof dk, "%s.lora_down.weight", mod);
            snprintf(uk, sizeof uk, "%s.lora_up.weight", mod);
            snprintf(ak, sizeof ak, "%s.alpha", mod);
        } else {
            size_t len = strlen(w->name) - strlen(".weight");
            snprintf(dk, sizeof dk, "%s%.*s.lora_A.weight", k_peft[t->comp], (int)len, w->name);
            snprintf(uk, sizeof uk, "%s%.*s.lora_B.weight", k_peft[t->comp], (int)len, w->name);
        }
        df_dtype dt = half ? DF_F16 : DF_F32;
        if (half) { /* in place: the halves fit in the floats' room */
            df_float_to_half_n(down, (uint16_t *)down, nd);
            df_float_to_half_n(up, (uint16_t *)up, nu);
        }
        if (rc == DF_OK)
            rc = df_st_writer_add(wr, dk, dt, w->ndim, sd, down, err);
        if (rc == DF_OK)
            rc = df_st_writer_add(wr, uk, dt, w->ndim, su, up, err);
        if (rc == DF_OK && format == DF_LORA_KOHYA) {
            float *alpha = malloc(sizeof *alpha);
            keep[nkeep++] = alpha;
            if (!alpha)
                rc = df_error_set(err, DF_E_NOMEM, "lora: out of memory");
            else {
                *alpha = t->a->scale * (float)r;
                rc = df_st_writer_add(wr, ak, DF_F32, 0, NULL, alpha, err);
            }
        }
    }
    char rank[32], alpha[32], steps[32];
    snprintf(rank, sizeof rank, "%u", self->o.rank);
    snprintf(alpha, sizeof alpha, "%g", self->o.alpha);
    snprintf(steps, sizeof steps, "%llu", (unsigned long long)self->steps);
    if (rc == DF_OK) rc = df_st_writer_set_metadata(wr, "ss_network_module", "networks.lora", err);
    if (rc == DF_OK) rc = df_st_writer_set_metadata(wr, "ss_network_dim", rank, err);
    if (rc == DF_OK) rc = df_st_writer_set_metadata(wr, "ss_network_alpha", alpha, err);
    if (rc == DF_OK) rc = df_st_writer_set_metadata(wr, "dreamfleet.steps", steps, err);
    if (rc == DF_OK) rc = df_st_writer_set_metadata(wr, "dreamfleet.format", format == DF_LORA_KOHYA ? "kohya" : "peft",
                                                    err);
    for (size_t i = 0; rc == DF_OK && metadata && metadata[i] && metadata[i + 1]; i += 2)
        rc = df_st_writer_set_metadata(wr, metadata[i], metadata[i + 1], err);
    if (rc == DF_OK)
        rc = df_st_writer_write(wr, path, err);
    for (size_t i = 0; keep && i < nkeep; i++)
        free(keep[i]);
    free(keep);
    df_st_writer_destroy(&wr);
    return rc;
}

/* ------------------------------------------------------------ checkpoints */

/*  The six tensors of adapter i: factors and moments, by the weight's name.
 *  Moments are f32 whichever way the trainer holds them, so a checkpoint
 *  resumes with either. */
static const char *const k_parts[6] = {"down", "up", "m_down", "v_down", "m_up", "v_up"};

int df_lora_trainer_checkpoint(df_lora_trainer_t *self, const char *path, const char *const *metadata,
                               df_error_t *err)
{
    df_st_writer_t *wr = df_st_writer_new();
    void **keep = calloc(7 * self->n + 1, sizeof *keep);
    size_t nkeep = 0;
    int rc = wr && keep ? DF_OK : df_error_set(err, DF_E_NOMEM, "checkpoint: out of memory");
    for (size_t i = 0; rc == DF_OK && i < self->n; i++) {
        const trained *t = &self->items[i];
        uint64_t out = (uint64_t)t->w->shape[0], fan_in = t->w->nelem / out, r = t->a->rank;
        for (int f = 0; rc == DF_OK && f < 2; f++) { /* down, up: the factor, m, v */
            int64_t shape[2] = {f ? (int64_t)out : (int64_t)r, f ? (int64_t)r : (int64_t)fan_in};
            uint64_t n = (uint64_t)shape[0] * (uint64_t)shape[1];
            float *vals[3];
            for (int k = 0; k < 3; k++)
                if (!(vals[k] = keep[nkeep++] = malloc(n * 4)))
                    rc = df_error_set(err, DF_E_NOMEM, "checkpoint: out of memory");
            df_tensor factor = f ? t->a->up : t->a->down;
            if (rc == DF_OK)
                rc = df_vk_download(self->xfer, factor.ref.buf, factor.ref.offset, vals[0], n * 4, err);
            if (rc == DF_OK)
                rc = df_adamw_state_read(&t->mo[f], self->xfer, n, vals[1], vals[2], err);
            for (int k = 0; rc == DF_OK && k < 3; k++) {
                char name[300];
                snprintf(name, sizeof name, "%s/%s%s", k_parts[k ? 2 * f + k + 1 : f], k_ckpt[t->comp], t->w->name);
                rc = df_st_writer_add(wr, name, DF_F32, 2, shape, vals[k], err);
            }
        }
        float *scale = keep[nkeep++] = malloc(sizeof *scale);
        char name[300];
        snprintf(name, sizeof name, "scale/%s%s", k_ckpt[t->comp], t->w->name);
        if (!scale)
            rc = df_error_set(err, DF_E_NOMEM, "checkpoint: out of memory");
        else if (rc == DF_OK) {
            *scale = t->a->scale;
            rc = df_st_writer_add(wr, name, DF_F32, 0, NULL, scale, err);
        }
    }
    char num[7][40];
    snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)self->steps);
    snprintf(num[1], sizeof num[1], "%.9g", self->o.beta1);
    snprintf(num[2], sizeof num[2], "%.9g", self->o.beta2);
    snprintf(num[3], sizeof num[3], "%.9g", self->o.eps);
    snprintf(num[4], sizeof num[4], "%.9g", self->o.weight_decay);
    snprintf(num[5], sizeof num[5], "%llu", (unsigned long long)self->o.seed);
    snprintf(num[6], sizeof num[6], "%s", self->o.state8 ? "8bit" : "f32");
    static const char *const keys[7] = {"dreamfleet.checkpoint.step", "dreamfleet.adamw.beta1",
                                        "dreamfleet.adamw.beta2", "dreamfleet.adamw.eps",
                                        "dreamfleet.adamw.weight_decay", "dreamfleet.seed",
                                        "dreamfleet.adamw.state"};
    for (int i = 0; rc == DF_OK && i < 7; i++)
        rc = df_st_writer_set_metadata(wr, keys[i], num[i], err);
    for (size_t i = 0; rc == DF_OK && metadata && metadata[i] && metadata[i + 1]; i += 2)
        rc = df_st_writer_set_metadata(wr, metadata[i], metadata[i + 1], err);
    if (rc == DF_OK)
        rc = df_st_writer_write(wr, path, err);
    for (size_t i = 0; keep && i < nkeep; i++)
        free(keep[i]);
    free(keep);
    df_st_writer_destroy(&wr);
    return rc;
}

static int upload_tensor(df_vk_transfer_t *xfer, const df_st_tensor *t, df_vk_buffer_t *dst, uint64_t offset,
                         df_error_t *err)
{
    float *v = malloc(t->nelem * 4 + 4);
    int rc = v ? df_st_tensor_to_f32(t, v, err) : df_error_set(err, DF_E_NOMEM, "checkpoint: out of memory");
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, dst, offset, v, t->nelem * 4, err);
    free(v);
    return rc;
}

df_lora_trainer_t *df_lora_trainer_resume(df_unet_t *unet, df_vk_batch_t *batch, df_vk_transfer_t *xfer,
                                          const char *path, df_error_t *err)
{
    return df_lora_trainer_resume_text(unet, NULL, NULL, -1, batch, xfer, path, err);
}

df_lora_trainer_t *df_lora_trainer_resume_text(df_unet_t *unet, df_clip_text_t *te1, df_clip_text_t *te2, int state8,
                                               df_vk_batch_t *batch, df_vk_transfer_t *xfer, const char *path,
                                               df_error_t *err)
{
    df_weights_t *comps[3] = {df_unet_weights(unet), te1 ? df_clip_text_weights(te1) : NULL,
                              te2 ? df_clip_text_weights(te2) : NULL};
    static const char *const names[3] = {"the UNet", "text encoder 1", "text encoder 2"};
    for (int comp = 0; comp < 3; comp++)
        if (comps[comp] && df_weights_adapter_count(comps[comp])) {
            df_error_set(err, DF_E_STATE, "%s: %s already carries adapters", path, names[comp]);
            return NULL;
        }
    df_safetensors_t *st = df_safetensors_open(path, err);
    if (!st)
        return NULL;
    const char *step = df_safetensors_metadata(st, "dreamfleet.checkpoint.step");
    int rc = step ? DF_OK : df_error_set(err, DF_E_FORMAT, "%s: not a dreamfleet training checkpoint", path);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    /* The factors, attached in the file's order (the trainer's own). */
    for (size_t i = 0; rc == DF_OK && i < df_safetensors_count(st); i++) {
        const df_st_tensor *d = df_safetensors_at(st, i);
        if (strncmp(d->name, "down/", 5) != 0)
            continue;
        const char *wname = d->name + 5;
        int comp = strncmp(wname, "te1/", 4) == 0 ? 1 : strncmp(wname, "te2/", 4) == 0 ? 2 : 0;
        if (!comps[comp]) {
            rc = df_error_set(err, DF_E_FORMAT, "%s trains %s too; resume it with the text encoders", path,
                              names[comp]);
            break;
        }
        df_weights_t *ws = comps[comp];
        char un[300], sn[300];
        snprintf(un, sizeof un, "up/%s", wname);
        snprintf(sn, sizeof sn, "scale/%s", wname);
        const df_st_tensor *u = df_safetensors_find(st, un), *sc = df_safetensors_find(st, sn);
        const df_weight *w = df_weights_find(ws, wname + strlen(k_ckpt[comp]));
        float scale = 0;
        if (!u || !sc || !w || d->ndim != 2 || u->ndim != 2 || (uint64_t)u->shape[0] != (uint64_t)w->shape[0] ||
            d->shape[0] != u->shape[1] || (uint64_t)d->shape[1] * (uint64_t)w->shape[0] != w->nelem ||
            sc->nelem != 1 || df_st_tensor_to_f32(sc, &scale, NULL) != DF_OK) {
            rc = df_error_set(err, DF_E_FORMAT, "%s: '%s' does not fit this UNet (or its factors are incomplete)",
                              path, wname);
            break;
        }
        df_vk_buffer_t *db = df_vk_buffer_new(dev, d->nelem * 4, err), *ub = db ? df_vk_buffer_new(dev, u->nelem * 4, err) : NULL;
        if (!ub)
            rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
        if (rc == DF_OK)
            rc = upload_tensor(xfer, d, db, 0, err);
        if (rc == DF_OK)
            rc = upload_tensor(xfer, u, ub, 0, err);
        char mod[200], dk[230], uk[230];
        kohya_module(comp, w, mod, sizeof mod);
        snprintf(dk, sizeof dk, "%s.lora_down.weight", mod);
        snprintf(uk, sizeof uk, "%s.lora_up.weight", mod);
        if (rc == DF_OK)
            rc = df_weights_attach(ws, w->name, &db, &ub, (uint32_t)d->shape[0], scale, dk, uk, err);
        df_vk_buffer_destroy(&db);
        df_vk_buffer_destroy(&ub);
    }
    df_lora_train_opts o = {0};
    if (rc == DF_OK) {
        const char *b1 = df_safetensors_metadata(st, "dreamfleet.adamw.beta1");
        const char *b2 = df_safetensors_metadata(st, "dreamfleet.adamw.beta2");
        const char *ep = df_safetensors_metadata(st, "dreamfleet.adamw.eps");
        const char *wd = df_safetensors_metadata(st, "dreamfleet.adamw.weight_decay");
        const char *sd = df_safetensors_metadata(st, "dreamfleet.seed");
        o.beta1 = b1 ? strtof(b1, NULL) : 0, o.beta2 = b2 ? strtof(b2, NULL) : 0;
        o.eps = ep ? strtof(ep, NULL) : 0, o.weight_decay = wd ? strtof(wd, NULL) : 0;
        o.seed = sd ? strtoull(sd, NULL, 10) : 0;
        const char *state = df_safetensors_metadata(st, "dreamfleet.adamw.state");
        /* The moments are f32 in the file: either kind of state takes them. */
        o.state8 = state8 >= 0 ? state8 : state && strcmp(state, "8bit") == 0;
        if (df_weights_adapter_count(comps[0]) == 0)
            rc = df_error_set(err, DF_E_FORMAT, "%s: no factors in the checkpoint", path);
        for (int comp = 1; rc == DF_OK && comp < 3; comp++)
            if (comps[comp] && df_weights_adapter_count(comps[comp]) == 0)
                rc = df_error_set(err, DF_E_FORMAT, "%s has no adapters for %s: it did not train the text encoders",
                                  path, names[comp]);
    }
    df_lora_trainer_t *self = rc == DF_OK ? df_lora_trainer_new_text(unet, te1, te2, batch, xfer, &o, err) : NULL;
    if (!self && rc == DF_OK)
        rc = err && err->code ? err->code : DF_E_NOMEM;
    /* The moments, then the step count. */
    for (size_t i = 0; rc == DF_OK && i < self->n; i++)
        for (int f = 0; rc == DF_OK && f < 2; f++) {
            const trained *t = &self->items[i];
            uint64_t n = (f ? (uint64_t)t->w->shape[0] : t->w->nelem / (uint64_t)t->w->shape[0]) * t->a->rank;
            float *mv[2] = {malloc(n * 4), malloc(n * 4)};
            if (!mv[0] || !mv[1])
                rc = df_error_set(err, DF_E_NOMEM, "checkpoint: out of memory");
            for (int k = 0; rc == DF_OK && k < 2; k++) {
                char name[300];
                snprintf(name, sizeof name, "%s/%s%s", k_parts[2 + 2 * f + k], k_ckpt[t->comp], t->w->name);
                const df_st_tensor *mt = df_safetensors_find(st, name);
                if (!mt || mt->nelem != n)
                    rc = df_error_set(err, DF_E_FORMAT, "%s: '%s' is missing or mis-shaped", path, name);
                else
                    rc = df_st_tensor_to_f32(mt, mv[k], err);
            }
            if (rc == DF_OK)
                rc = df_adamw_state_write(&t->mo[f], xfer, n, mv[0], mv[1], err);
            free(mv[0]), free(mv[1]);
        }
    if (rc == DF_OK)
        self->steps = strtoull(step, NULL, 10);
    if (rc != DF_OK) {
        df_lora_trainer_destroy(&self);
        for (int comp = 0; comp < 3; comp++)
            if (comps[comp])
                df_weights_detach_all(comps[comp]);
    }
    df_safetensors_destroy(&st);
    return self;
}
