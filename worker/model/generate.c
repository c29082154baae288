/*  generate.c - see generate.h. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "layers.h"
#include "philox.h"
#include "vae_tiled.h"

/* Philox streams of an image's seed: the initial noise, then one per step
 * for the ancestral sampler. */
#define STREAM_INIT 0
#define STREAM_STEP(i) (1 + (uint64_t)(i))

/*  A LoRA merged so far, to merge again into text encoders loaded anew. */
typedef struct {
    char *path;
    float scale;
} merged_lora;

struct _df_generator_t {
    df_sdxl_t *model; /* borrowed */
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    df_dtype weights;
    df_prompt_encoder_t *text; /* NULL while released */
    int keep_text;
    df_unet_t *unet;
    df_vae_t *vae;
    merged_lora *loras;
    size_t n_loras;
    int lora_unmerged; /* LoRAs attached as adapters rather than merged */
    int unet_borrowed; /* the caller's UNet: not freed, takes no LoRAs */
    int text_borrowed; /* the caller's text encoders: never released or freed */
    df_gen_timing timing; /* of the last call */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

df_gen_timing df_generator_last_timing(const df_generator_t *self)
{
    return self->timing;
}

void df_generator_destroy(df_generator_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_generator_t *g = *self_p;
    if (!g->text_borrowed)
        df_prompt_encoder_destroy(&g->text);
    if (!g->unet_borrowed)
        df_unet_destroy(&g->unet);
    df_vae_destroy(&g->vae);
    for (size_t i = 0; i < g->n_loras; i++)
        free(g->loras[i].path);
    free(g->loras);
    free(g);
    *self_p = NULL;
}

/*  A generator over unet (NULL: its own, loaded from model), with the text
 *  encoders and the VAE of model. */
static df_generator_t *generator_over(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                      df_dtype weights, df_unet_t *unet, df_prompt_encoder_t *text, df_error_t *err)
{
    df_generator_t *g = calloc(1, sizeof *g);
    if (!g) {
        df_error_set(err, DF_E_NOMEM, "generator: out of memory");
        return NULL;
    }
    g->model = model;
    g->dev = dev;
    g->xfer = xfer;
    g->weights = weights;
    g->keep_text = 1;
    g->unet = unet;
    g->unet_borrowed = unet != NULL;
    g->text = text;
    g->text_borrowed = text != NULL;
    /* LoRAs cannot merge into bytes: with 8-bit weights they run beside them. */
    g->lora_unmerged = weights == DF_I8;
    /* The VAE stays f32: SDXL's overflows in f16. */
    if ((!g->text && !(g->text = df_prompt_encoder_new(model, dev, xfer, weights, err))) ||
        (!g->unet && !(g->unet = df_sdxl_load_unet(model, dev, xfer, weights, err))) ||
        !(g->vae = df_sdxl_load_vae(model, dev, xfer, DF_F32, err)))
        df_generator_destroy(&g);
    return g;
}

df_generator_t *df_generator_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype weights,
                                 df_error_t *err)
{
    return generator_over(model, dev, xfer, weights, NULL, NULL, err);
}

df_generator_t *df_generator_borrowing(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                       df_dtype weights, df_unet_t *unet, df_error_t *err)
{
    return generator_over(model, dev, xfer, weights, unet, NULL, err);
}

df_generator_t *df_generator_borrowing_text(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                            df_dtype weights, df_unet_t *unet, df_prompt_encoder_t *text,
                                            df_error_t *err)
{
    return generator_over(model, dev, xfer, weights, unet, text, err);
}

void df_generator_keep_text(df_generator_t *self, int keep)
{
    self->keep_text = keep;
}

int df_generator_text_loaded(const df_generator_t *self)
{
    return self->text != NULL;
}

/*  Loads the text encoders again if they were released, with the LoRAs
 *  merged so far (the same merges on the same weights: the same result as
 *  before the release). */
static int text_ready(df_generator_t *g, df_vk_batch_t *batch, df_error_t *err)
{
    if (g->text)
        return DF_OK;
    if (!(g->text = df_prompt_encoder_new(g->model, g->dev, g->xfer, g->weights, err)))
        return err && err->code ? err->code : DF_E_NOMEM;
    int rc = DF_OK;
    for (size_t i = 0; rc == DF_OK && i < g->n_loras; i++) {
        df_lora_targets t = {NULL, df_prompt_text_encoder(g->text, 1), df_prompt_text_encoder(g->text, 2), 1};
        rc = (g->lora_unmerged ? df_lora_attach : df_lora_merge)(g->loras[i].path, g->loras[i].scale,
                                                                 df_sdxl_config_of(g->model), &t, batch, g->xfer,
                                                                 NULL, err);
    }
    if (rc != DF_OK)
        df_prompt_encoder_destroy(&g->text);
    return rc;
}

int df_generator_set_lora_mode(df_generator_t *self, int unmerged, df_error_t *err)
{
    if (self->n_loras && unmerged != self->lora_unmerged)
        return df_error_set(err, DF_E_STATE, "generator: LoRAs are already %s", self->lora_unmerged ? "attached" : "merged");
    if (!unmerged && self->weights == DF_I8)
        return df_error_set(err, DF_E_UNSUPPORTED, "generator: LoRAs cannot be merged into 8-bit weights; they "
                            "apply beside them (unmerged)");
    self->lora_unmerged = unmerged;
    return DF_OK;
}

int df_generator_clear_loras(df_generator_t *self, df_error_t *err)
{
    if (self->n_loras && !self->lora_unmerged)
        return df_error_set(err, DF_E_STATE, "generator: merged LoRAs cannot be taken out (load the model again)");
    /* A borrowed UNet or text encoder's adapters are its owner's (a trainer's). */
    if (!self->unet_borrowed)
        df_weights_detach_all(df_unet_weights(self->unet));
    for (int which = 1; self->text && !self->text_borrowed && which <= 2; which++)
        df_weights_detach_all(df_clip_text_weights(df_prompt_text_encoder(self->text, which)));
    for (size_t i = 0; i < self->n_loras; i++)
        free(self->loras[i].path);
    self->n_loras = 0;
    return DF_OK;
}

int df_generator_add_lora(df_generator_t *self, df_vk_batch_t *batch, const char *path, float scale, df_error_t *err)
{
    if (self->unet_borrowed)
        return df_error_set(err, DF_E_STATE, "generator: %s: this generator's UNet is another's, it takes no LoRAs",
                            path);
    merged_lora *grown = realloc(self->loras, (self->n_loras + 1) * sizeof *grown);
    if (!grown)
        return df_error_set(err, DF_E_NOMEM, "generator: out of memory");
    self->loras = grown;
    merged_lora *m = &self->loras[self->n_loras];
    if (!(m->path = strdup(path)))
        return df_error_set(err, DF_E_NOMEM, "generator: out of memory");
    m->scale = scale;
    /* A first merge checks the whole file, so the text encoders must be in. */
    int rc = text_ready(self, batch, err);
    if (rc == DF_OK) {
        df_lora_targets t = {self->unet, df_prompt_text_encoder(self->text, 1),
                             df_prompt_text_encoder(self->text, 2), 0};
        rc = (self->lora_unmerged ? df_lora_attach : df_lora_merge)(path, scale, df_sdxl_config_of(self->model), &t,
                                                                    batch, self->xfer, NULL, err);
    }
    if (rc == DF_OK)
        self->n_loras++;
    else
        free(m->path);
    return rc;
}

int df_generate_check(const df_generator_t *self, const df_gen_params *p, df_error_t *err)
{
    const df_sdxl_config *c = df_sdxl_config_of(self->model);
    uint32_t f = df_vae_factor(self->vae), mult = f << (c->unet.levels - 1);
    int sdxl_size = c->unet.sample_size >= 128; /* SDXL-class models: SDXL's sizes */
    if (!p->prompt)
        return df_error_set(err, DF_E_INVALID, "generate: no prompt");
    if (sdxl_size) {
        if (p->width % 64 || p->height % 64 || p->width < 512 || p->height < 512 || p->width > 1536 ||
            p->height > 1536)
            return df_error_set(err, DF_E_INVALID,
                                "generate: size %ux%u: SDXL takes multiples of 64 from 512 to 1536 on each side",
                                p->width, p->height);
    } else if (p->width == 0 || p->height == 0 || p->width % mult || p->height % mult || p->width > 4096 ||
               p->height > 4096) {
        return df_error_set(err, DF_E_INVALID, "generate: size %ux%u: this model takes multiples of %u up to 4096",
                            p->width, p->height, mult);
    }
    if (p->steps < 1 || p->steps > 500)
        return df_error_set(err, DF_E_INVALID, "generate: steps %d: from 1 to 500", p->steps);
    if ((unsigned)p->sampler >= DF_SAMPLER_COUNT)
        return df_error_set(err, DF_E_INVALID, "generate: unknown sampler");
    if (p->count < 1 || p->count > 64)
        return df_error_set(err, DF_E_INVALID, "generate: %u images: from 1 to 64 per request", p->count);
    if (!(p->guidance >= 0 && p->guidance <= 50))
        return df_error_set(err, DF_E_INVALID, "generate: guidance %g: from 0 to 50", p->guidance);
    return DF_OK;
}

/*  Encodes text into rows [0, chunks * 77) of ctx (and its pooled output
 *  into pooled), then fills up to `want` chunks with the empty prompt's, so
 *  a prompt and a negative of different lengths line up. */
static int encode_padded(df_generator_t *g, df_vk_batch_t *batch, const char *text, uint32_t want, df_tensor ctx,
                         df_tensor pooled, df_error_t *err)
{
    uint32_t D = df_prompt_context_dim(g->text), chunks = 0;
    int rc = df_prompt_encode(g->text, batch, text, ctx, pooled, NULL, NULL, &chunks, err);
    df_tensor spare = {{NULL, 0}, DF_F32};
    if (rc == DF_OK && chunks < want)
        rc = df_scratch(batch, df_prompt_pooled_dim(g->text), DF_F32, &spare, err);
    for (uint32_t c = chunks; rc == DF_OK && c < want; c++) {
        df_tensor at = ctx;
        at.ref.offset += (uint64_t)c * 77 * D * 4;
        uint32_t one;
        rc = df_prompt_encode(g->text, batch, "", at, spare, NULL, NULL, &one, err);
    }
    return rc;
}

/*  The [negative; positive] conditioning in device buffers. */
typedef struct {
    df_vk_buffer_t *ctx, *pooled;
    uint32_t len; /* tokens per sample */
} conditioning;

static int condition(df_generator_t *g, df_vk_batch_t *batch, const df_gen_params *p, int cfg, conditioning *out,
                     df_error_t *err)
{
    int rc = text_ready(g, batch, err);
    if (rc != DF_OK)
        return rc;
    uint32_t D = df_prompt_context_dim(g->text), P = df_prompt_pooled_dim(g->text), cp = 0, cn = 0;
    rc = df_prompt_tokens(g->text, p->prompt, &cp, err);
    if (rc == DF_OK && cfg && p->negative_prompt)
        rc = df_prompt_tokens(g->text, p->negative_prompt, &cn, err);
    if (rc != DF_OK)
        return rc;
    uint32_t chunks = cp > cn ? cp : cn, rows = (uint32_t)cfg + 1;
    out->len = chunks * 77;
    out->ctx = df_vk_buffer_new(g->dev, (uint64_t)rows * out->len * D * 4, err);
    out->pooled = out->ctx ? df_vk_buffer_new(g->dev, (uint64_t)rows * P * 4, err) : NULL;
    if (!out->pooled)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    df_tensor ctx = df_tensor_at(out->ctx, 0, DF_F32), pooled = df_tensor_at(out->pooled, 0, DF_F32);
    if (cfg) {
        if (p->negative_prompt) {
            rc = encode_padded(g, batch, p->negative_prompt, chunks, ctx, pooled, err);
        } else { /* SDXL: no negative prompt, all-zero negative conditioning */
            rc = df_vk_batch_fill(batch, out->ctx, 0, (uint64_t)out->len * D * 4, 0, err);
            if (rc == DF_OK)
                rc = df_vk_batch_fill(batch, out->pooled, 0, (uint64_t)P * 4, 0, err);
        }
        ctx.ref.offset += (uint64_t)out->len * D * 4;
        pooled.ref.offset += (uint64_t)P * 4;
    }
    if (rc == DF_OK)
        rc = encode_padded(g, batch, p->prompt, chunks, ctx, pooled, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    return rc;
}

/*  One image: the sampling loop, then the VAE. */
static int one_image(df_generator_t *g, df_vk_batch_t *batch, const df_gen_params *p, uint32_t index, int cfg,
                     const conditioning *cond, float *x, uint8_t *rgb, df_gen_progress progress, void *pctx,
                     df_error_t *err)
{
    const df_sdxl_config *c = df_sdxl_config_of(g->model);
    uint32_t f = df_vae_factor(g->vae), h = p->height / f, w = p->width / f, rows = (uint32_t)cfg + 1;
    uint64_t n = 4ull * h * w;
    uint64_t seed = p->seed + index;
    df_scheduler_t *sched = df_scheduler_new(p->sampler, p->steps, n, err);
    float *eps = malloc(rows * n * sizeof *eps), *noise = malloc(n * sizeof *noise);
    float *denoised = progress ? malloc(n * sizeof *denoised) : NULL;
    df_vk_buffer_t *sb = df_vk_buffer_new(g->dev, rows * n * 4, err);
    df_vk_buffer_t *ob = sb ? df_vk_buffer_new(g->dev, rows * n * 4, err) : NULL;
    int rc = sched && ob ? DF_OK : err && err->code ? err->code : DF_E_NOMEM;
    if (rc == DF_OK && (!eps || !noise || (progress && !denoised)))
        rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
    if (rc == DF_OK) {
        if (p->init_noise)
            memcpy(x, p->init_noise + index * n, n * sizeof *x);
        else
            df_philox_fill_normal(x, n, seed, STREAM_INIT);
        float s0 = df_scheduler_init_noise_sigma(sched);
        for (uint64_t k = 0; k < n; k++)
            x[k] *= s0;
    }
    float ids[12];
    for (uint32_t r = 0; r < 2; r++) {
        float row[6] = {(float)(p->original_h ? p->original_h : p->height), (float)(p->original_w ? p->original_w : p->width),
                        (float)p->crop_top, (float)p->crop_left, (float)p->height, (float)p->width};
        memcpy(ids + 6 * r, row, sizeof row);
    }
    df_fmap sample = {df_tensor_at(sb, 0, DF_F32), rows, 4, h, w};
    double t0 = now_s();
    for (int i = 0; rc == DF_OK && i < p->steps; i++) {
        float scale = df_scheduler_input_scale(sched, i), ts[2];
        ts[0] = ts[1] = df_scheduler_timestep(sched, i);
        for (uint64_t k = 0; k < n; k++)
            eps[k] = x[k] * scale;
        for (uint32_t r = 0; rc == DF_OK && r < rows; r++)
            rc = df_vk_upload(g->xfer, sb, r * n * 4, eps, n * 4, err);
        df_unet_inputs in = {.sample = &sample, .timesteps = ts, .context = df_tensor_at(cond->ctx, 0, DF_F32),
                             .context_len = cond->len, .text_embeds = df_tensor_at(cond->pooled, 0, DF_F32),
                             .time_ids = ids};
        if (rc == DF_OK)
            rc = df_unet_forward(g->unet, batch, &in, df_tensor_at(ob, 0, DF_F32), err);
        if (rc == DF_OK)
            rc = df_vk_download(g->xfer, ob, 0, eps, rows * n * 4, err);
        if (rc == DF_OK && cfg) /* rows are [uncond, cond] */
            for (uint64_t k = 0; k < n; k++)
                eps[k] = eps[k] + p->guidance * (eps[n + k] - eps[k]);
        const float *step_noise = NULL;
        if (rc == DF_OK && df_scheduler_needs_noise(sched)) {
            if (p->ancestral_noise)
                step_noise = p->ancestral_noise + ((uint64_t)index * p->steps + (uint64_t)i) * n;
            else {
                df_philox_fill_normal(noise, n, seed, STREAM_STEP(i));
                step_noise = noise;
            }
        }
        if (rc == DF_OK && progress) /* before the step: it needs this step's x */
            df_scheduler_denoised(sched, i, x, eps, denoised);
        if (rc == DF_OK)
            rc = df_scheduler_step(sched, i, eps, x, step_noise, err);
        if (rc == DF_OK)
            g->timing.steps++;
        if (rc == DF_OK && progress && progress(pctx, index, i + 1, p->steps, denoised))
            rc = df_error_set(err, DF_E_STATE, "generate: cancelled");
    }
    double t1 = now_s();
    g->timing.denoise += t1 - t0;
    if (rc == DF_OK && rgb) {
        float *img = malloc(3ull * p->width * p->height * sizeof *img), *lat = malloc(n * sizeof *lat);
        if (!img || !lat)
            rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
        double inv = 1.0 / c->vae.scaling_factor;
        for (uint64_t k = 0; rc == DF_OK && k < n; k++)
            lat[k] = (float)(x[k] * inv);
        if (rc == DF_OK)
            rc = df_vae_decode_tiled(g->vae, batch, g->xfer, NULL, lat, 1, h, w, img, err);
        /* [-1, 1] planes to interleaved 8-bit RGB, as the reference rounds. */
        uint64_t plane = (uint64_t)p->width * p->height;
        for (uint64_t k = 0; rc == DF_OK && k < plane; k++)
            for (int ch = 0; ch < 3; ch++) {
                float v = img[ch * plane + k] * 0.5f + 0.5f;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                rgb[k * 3 + ch] = (uint8_t)lrintf(v * 255.0f);
            }
        free(img);
        free(lat);
        g->timing.decode += now_s() - t1;
    }
    free(eps);
    free(noise);
    free(denoised);
    if (rc != DF_OK) { /* commands may still be recorded: let the batch free */
        if (sb)
            df_vk_batch_hold(batch, &sb, NULL);
        if (ob)
            df_vk_batch_hold(batch, &ob, NULL);
    }
    df_vk_buffer_destroy(&sb);
    df_vk_buffer_destroy(&ob);
    df_scheduler_destroy(&sched);
    return rc;
}

int df_generate(df_generator_t *self, df_vk_batch_t *batch, const df_gen_params *p, float *latents, uint8_t *rgb,
                df_gen_progress progress, void *ctx, df_error_t *err)
{
    int rc = df_generate_check(self, p, err);
    if (rc != DF_OK)
        return rc;
    int cfg = p->guidance > 1;
    conditioning cond = {NULL, NULL, 0};
    memset(&self->timing, 0, sizeof self->timing);
    double t0 = now_s();
    rc = condition(self, batch, p, cfg, &cond, err);
    self->timing.text = now_s() - t0;
    /* The conditioning is computed (condition submits and waits): the text
     * encoders' memory can go to the UNet and VAE until the next call. */
    if (rc == DF_OK && !self->keep_text && !self->text_borrowed)
        df_prompt_encoder_destroy(&self->text);
    uint32_t f = df_vae_factor(self->vae);
    uint64_t n = 4ull * (p->height / f) * (p->width / f), pixels = 3ull * p->width * p->height;
    for (uint32_t i = 0; rc == DF_OK && i < p->count; i++)
        rc = one_image(self, batch, p, i, cfg, &cond, latents + i * n, rgb ? rgb + i * pixels : NULL, progress, ctx,
                       err);
    /* After a failure commands may still be recorded: let the batch free. */
    if (rc != DF_OK && cond.ctx)
        df_vk_batch_hold(batch, &cond.ctx, NULL);
    if (rc != DF_OK && cond.pooled)
        df_vk_batch_hold(batch, &cond.pooled, NULL);
    df_vk_buffer_destroy(&cond.ctx);
    df_vk_buffer_destroy(&cond.pooled);
    return rc;
}
