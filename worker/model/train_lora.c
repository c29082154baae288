/*  train_lora.c - see train_lora.h. */
#include "train_lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aspect_buckets.h"
#include "copy2d.h"
#include "full_trainer.h"
#include "generate.h"
#include "image_decode.h"
#include "log.h"
#include "philox.h"
#include "prompt.h"
#include "safetensors.h"
#include "train_sample.h"

/*  What the photos and captions became, on the host. */
typedef struct {
    uint32_t n;            /* photos */
    uint32_t ctx_len, D, P;
    uint32_t *lat_h, *lat_w; /* each photo's latent size (its bucket / 8) */
    uint64_t *at;          /* where each photo's latents start */
    uint64_t most;         /* the largest photo's latent values */
    float *latents;        /* per photo 4 x lat_h x lat_w, times the scaling factor */
    float *flipped;        /* the same of the photos mirrored (random flips), or NULL */
    float *context;        /* n x ctx_len x D */
    float *pooled;         /* n x P */
    float *time_ids;       /* n x 6 */
} dataset;

static void dataset_free(dataset *d)
{
    free(d->latents), free(d->flipped), free(d->context), free(d->pooled), free(d->time_ids);
    free(d->lat_h), free(d->lat_w), free(d->at);
    memset(d, 0, sizeof *d);
}

/*  Step 1: every entry's sample, from its cache or encoded here, then laid
 *  out side by side: latents at their own sizes, contexts padded with the
 *  empty prompt's chunk to the longest caption's. */
static int check_cache(const df_sdxl_config *c, const df_train_params *p, uint32_t i,
                       const df_train_sample_opts *want, const df_train_sample *s, const df_train_sample_meta *m,
                       df_error_t *err)
{
    const char *what = p->caches[i];
    if (m->opts.resolution != want->resolution || m->opts.bucket_step != want->bucket_step)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s (%s) was made at %u px%s, this run trains at "
                            "%u px%s", what, m->image, m->opts.resolution, m->opts.bucket_step ? " with buckets" : "",
                            want->resolution, want->bucket_step ? " with buckets" : "");
    /* Its latents must be a size this run's photos could have: the square,
     * or a bucket (sides multiples of the step, area within the square's). */
    const uint32_t f = 1u << (c->vae.levels - 1), R = want->resolution, st = want->bucket_step;
    const uint64_t h = (uint64_t)s->lat_h * f, w = (uint64_t)s->lat_w * f;
    const int fits = st ? h % st == 0 && w % st == 0 && h * w <= (uint64_t)R * R && 2 * h >= R && 2 * w >= R
                        : h == R && w == R;
    if (!fits)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s (%s) holds %ux%u latents, which a %u px run%s "
                            "cannot have", what, m->image, s->lat_w, s->lat_h, R, st ? " with buckets" : "");
    if (want->flip && !m->opts.flip)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s (%s) has no mirrored latents, which --flip "
                            "needs", what, m->image);
    if (want->captions && !m->opts.captions)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s (%s) holds no caption encoding", what,
                            m->image);
    if (want->captions && strcmp(m->caption, p->captions[i]) != 0)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s was made from caption \"%.60s\", not \"%.60s\"",
                            what, m->caption, p->captions[i]);
    if (p->base_model_identity && *p->base_model_identity && *m->model_identity &&
        strcmp(p->base_model_identity, m->model_identity) != 0)
        return df_error_set(err, DF_E_INVALID, "train: sample cache %s (%s) was made with another model", what,
                            m->image);
    return DF_OK;
}

static int load_samples(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                        const df_train_params *p, const df_train_sample_opts *o, df_train_sample *samples,
                        df_error_t *err)
{
    int rc = DF_OK;
    if (p->caches) {
        for (uint32_t i = 0; rc == DF_OK && i < p->count; i++) {
            df_train_sample_meta m;
            rc = df_train_sample_load(p->caches[i], &samples[i], &m, err);
            if (rc == DF_OK)
                rc = check_cache(df_sdxl_config_of(model), p, i, o, &samples[i], &m, err);
            df_train_sample_meta_free(&m);
        }
        return rc;
    }
    df_train_sample_encoder_t *enc = df_train_sample_encoder_new(model, dev, xfer, p->weights, o->captions, err);
    if (!enc)
        return err && err->code ? err->code : DF_E_NOMEM;
    for (uint32_t i = 0; rc == DF_OK && i < p->count; i++)
        rc = df_train_sample_encode(enc, batch, p->images[i], p->captions[i], o, NULL, &samples[i], err);
    df_train_sample_encoder_destroy(&enc);
    return rc;
}

static int build_dataset(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                         const df_train_params *p, uint32_t bucket_step, dataset *d, df_error_t *err)
{
    const df_sdxl_config *c = df_sdxl_config_of(model);
    const df_train_sample_opts o = {.resolution = p->resolution, .bucket_step = p->buckets ? bucket_step : 0,
                                    .flip = p->flip, .captions = !p->train_text};
    df_train_sample *samples = calloc(p->count, sizeof *samples);
    int rc = samples ? load_samples(model, dev, xfer, batch, p, &o, samples, err)
                     : df_error_set(err, DF_E_NOMEM, "train: out of memory");
    /* Every sample must fit this model: its latent channels, and the widths
     * of its context and pooled text (the UNet's added embedding takes the
     * pooled text beside six time ids). */
    const uint32_t pooled = (uint32_t)(c->unet.projection_class_embeddings_input_dim -
                                       6 * c->unet.addition_time_embed_dim);
    uint32_t most = 1;
    for (uint32_t i = 0; rc == DF_OK && i < p->count; i++) {
        const df_train_sample *s = &samples[i];
        if (s->lat_c != (uint32_t)c->vae.latent_channels ||
            (o.captions && (s->D != (uint32_t)c->unet.cross_attention_dim || s->P != pooled)))
            rc = df_error_set(err, DF_E_INVALID, "train: sample %u (%s) has %u latent channels, %u-wide context and "
                              "%u-wide pooled text; this model takes %d, %d and %u", i + 1,
                              p->caches ? p->caches[i] : p->images[i], s->lat_c, s->D, s->P,
                              c->vae.latent_channels, c->unet.cross_attention_dim, pooled);
        most = s->chunks > most ? s->chunks : most;
    }
    d->D = o.captions && p->count ? samples[0].D : 0, d->P = o.captions && p->count ? samples[0].P : 0;
    d->ctx_len = 77 * most;
    const uint64_t cper = (uint64_t)d->ctx_len * d->D;
    d->lat_h = calloc(p->count, sizeof *d->lat_h);
    d->lat_w = calloc(p->count, sizeof *d->lat_w);
    d->at = calloc(p->count + 1ull, sizeof *d->at);
    d->time_ids = malloc(p->count * 6 * sizeof *d->time_ids);
    for (uint32_t i = 0; rc == DF_OK && d->at && i < p->count; i++) {
        const uint64_t per = (uint64_t)samples[i].lat_c * samples[i].lat_h * samples[i].lat_w;
        d->at[i + 1] = d->at[i] + per;
        d->most = per > d->most ? per : d->most;
    }
    if (rc == DF_OK && !d->at)
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    if (rc == DF_OK) {
        d->latents = malloc(d->at[p->count] * sizeof *d->latents);
        d->flipped = p->flip ? malloc(d->at[p->count] * sizeof *d->flipped) : NULL;
        d->context = o.captions ? malloc(p->count * cper * sizeof *d->context) : NULL;
        d->pooled = o.captions ? malloc((uint64_t)p->count * d->P * sizeof *d->pooled) : NULL;
        if (!d->lat_h || !d->lat_w || !d->time_ids || !d->latents || (p->flip && !d->flipped) ||
            (o.captions && (!d->context || !d->pooled)))
            rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    for (uint32_t i = 0; rc == DF_OK && i < p->count; i++) {
        const df_train_sample *s = &samples[i];
        const uint64_t per = d->at[i + 1] - d->at[i];
        d->lat_h[i] = s->lat_h, d->lat_w[i] = s->lat_w;
        memcpy(d->latents + d->at[i], s->latents, per * sizeof *s->latents);
        if (p->flip)
            memcpy(d->flipped + d->at[i], s->flipped, per * sizeof *s->flipped);
        memcpy(d->time_ids + 6 * i, s->time_ids, sizeof s->time_ids);
        if (!o.captions)
            continue;
        const uint64_t own = 77ull * s->chunks * d->D;
        memcpy(d->context + i * cper, s->context, own * sizeof *s->context);
        for (uint64_t k = own; k < cper; k += 77ull * d->D)
            memcpy(d->context + i * cper + k, s->pad, 77ull * d->D * sizeof *s->pad);
        memcpy(d->pooled + (uint64_t)i * d->P, s->pooled, d->P * sizeof *s->pooled);
    }
    for (uint32_t i = 0; samples && i < p->count; i++)
        df_train_sample_free(&samples[i]);
    free(samples);
    return rc;
}

/*  Training the text encoders, each step encodes its captions itself: only
 *  the widths and the longest caption's length are needed here, and every
 *  caption must fit one chunk (the encoders' backward pass takes one). */
static int caption_lengths(df_prompt_encoder_t *pe, const df_train_params *p, dataset *d, df_error_t *err)
{
    uint32_t most = 1, chunks;
    for (uint32_t i = 0; i < p->count; i++) {
        int rc = df_prompt_tokens(pe, p->captions[i], &chunks, err);
        if (rc != DF_OK)
            return rc;
        if (chunks > 1)
            return df_error_set(err, DF_E_INVALID, "train: caption %u is longer than 75 tokens, which training the "
                                "text encoders cannot take: \"%.60s...\"", i + 1, p->captions[i]);
        most = chunks > most ? chunks : most;
    }
    d->D = df_prompt_context_dim(pe), d->P = df_prompt_pooled_dim(pe), d->ctx_len = 77 * most;
    return DF_OK;
}

static int check(const df_sdxl_config *c, const df_train_params *p, df_error_t *err)
{
    uint32_t mult = 8u << (c->unet.levels - 1);
    if (p->count == 0)
        return df_error_set(err, DF_E_INVALID, "train: no photos");
    if (p->resolution == 0 || p->resolution % mult || p->resolution > 2048)
        return df_error_set(err, DF_E_INVALID, "train: resolution %u: a multiple of %u up to 2048", p->resolution,
                            mult);
    if (p->steps == 0 || p->steps > 1000000)
        return df_error_set(err, DF_E_INVALID, "train: steps %u: from 1 to 1000000", p->steps);
    if (p->batch == 0 || p->batch > 64)
        return df_error_set(err, DF_E_INVALID, "train: batch %u: from 1 to 64", p->batch);
    if (p->accumulate > 1024)
        return df_error_set(err, DF_E_INVALID, "train: %u micro-batches per step: at most 1024", p->accumulate);
    if (!(p->lr.lr > 0 && p->lr.lr < 1))
        return df_error_set(err, DF_E_INVALID, "train: learning rate %g: above 0 and below 1", p->lr.lr);
    if (p->full && (p->sync || p->resume || p->checkpoint || p->train_text || p->weights != DF_F32))
        return df_error_set(err, DF_E_INVALID, "train: full fine-tuning takes f32 weights on one worker, without "
                            "checkpoints or text-encoder training");
    const uint64_t global = (uint64_t)p->batch * (p->accumulate ? p->accumulate : 1);
    if (p->sync && (!p->sync->exchange || (uint64_t)p->sync->first + p->sync->count > global))
        return df_error_set(err, DF_E_INVALID, "train: share %u+%u of a step's %llu samples", p->sync->first,
                            p->sync->count, (unsigned long long)global);
    return DF_OK;
}

/*  Photo order: a permutation of count photos per epoch (Fisher-Yates on
 *  Philox draws from seed), so global sample `at` is photo
 *  order[at % count] of epoch at / count. */
static void epoch_order(uint32_t count, uint64_t seed, uint64_t e, uint32_t *order)
{
    for (uint32_t i = 0; i < count; i++)
        order[i] = i;
    for (uint32_t i = count - 1; i > 0; i--) {
        float u;
        df_philox_fill_uniform(&u, 1, seed, (e << 20) | i, 0.0f, 1.0f);
        uint32_t j = (uint32_t)(u * (float)(i + 1));
        j = j > i ? i : j;
        uint32_t tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
}

/*  A checkpoint of the run after `steps` steps, with their losses (when
 *  known) in its metadata, handed to on_checkpoint. */
static int write_checkpoint(const df_train_params *p, df_lora_trainer_t *tr, const float *losses, uint64_t steps,
                            df_error_t *err)
{
    char *list = losses ? malloc(steps * 18 + 1) : NULL;
    size_t at = 0;
    for (uint64_t i = 0; list && i < steps; i++)
        at += (size_t)snprintf(list + at, 18, i ? ",%.9g" : "%.9g", losses[i]);
    if (list)
        list[at] = '\0';
    const char *meta[] = {"dreamfleet.losses", list, NULL};
    int rc = df_lora_trainer_checkpoint(tr, p->checkpoint, list ? meta : NULL, err);
    free(list);
    if (rc == DF_OK && p->on_checkpoint && steps < p->steps) /* the last one is the result */
        rc = p->on_checkpoint(p->checkpoint_ctx, p->checkpoint, steps, err);
    return rc;
}

/*  The losses of the steps a resumed run did not take, from its checkpoint
 *  (left as they are when it carries none). */
static void resumed_losses(const char *path, float *losses, uint64_t steps)
{
    df_safetensors_t *st = losses ? df_safetensors_open(path, NULL) : NULL;
    const char *list = st ? df_safetensors_metadata(st, "dreamfleet.losses") : NULL;
    for (uint64_t i = 0; list && *list && i < steps; i++) {
        char *end;
        losses[i] = strtof(list, &end);
        list = *end == ',' ? end + 1 : end;
    }
    df_safetensors_destroy(&st);
}

/*  Validation images after `step` steps: each prompt through the UNet being
 *  trained (its LoRA attached), the same seed every time so the images show
 *  what the training changed. The text encoders and the VAE come and go. */
static int validate(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                    df_unet_t *unet, df_prompt_encoder_t *text, const df_train_params *p, uint64_t step,
                    df_error_t *err)
{
    const uint32_t W = p->validation_width ? p->validation_width : p->resolution;
    const uint32_t H = p->validation_height ? p->validation_height : p->resolution;
    df_generator_t *gen = df_generator_borrowing_text(model, dev, xfer, p->weights, unet, text, err);
    if (!gen)
        return err && err->code ? err->code : DF_E_NOMEM;
    df_generator_keep_text(gen, 0);
    float *lat = malloc(4ull * W * H * sizeof *lat); /* room for any VAE factor */
    uint8_t *rgb = malloc(3ull * W * H);
    int rc = lat && rgb ? DF_OK : df_error_set(err, DF_E_NOMEM, "train: out of memory");
    for (uint32_t i = 0; rc == DF_OK && i < p->n_validation; i++) {
        df_gen_params gp = {.prompt = p->validation_prompts[i], .width = W, .height = H,
                            .steps = p->validation_steps ? (int)p->validation_steps : 25, .guidance = 5,
                            .sampler = DF_SAMPLER_EULER, .seed = p->lora.seed + 1000 + i, .count = 1};
        rc = df_generate(gen, batch, &gp, lat, rgb, NULL, NULL, err);
        if (rc == DF_OK && p->on_validation)
            rc = p->on_validation(p->validation_ctx, step, i, rgb, W, H, err);
    }
    free(lat), free(rgb);
    df_generator_destroy(&gen);
    return rc == DF_OK ? rc : df_error_prefix(err, "train: validation after step %llu", (unsigned long long)step);
}

/*  One round's exchange: gradients before a shared step (local_steps 1), or
 *  the change of the factors since the round began (base). */
static int exchange_round(df_train_sync *sync, df_lora_trainer_t *tr, uint64_t round, int gradient, float *values,
                          const float *base, uint64_t n, uint64_t samples, float *round_losses, uint32_t n_steps,
                          df_error_t *err)
{
    int rc = df_lora_trainer_download(tr, gradient ? DF_LORA_GRADIENTS : DF_LORA_FACTORS, values, err);
    if (rc == DF_OK && !gradient)
        for (uint64_t i = 0; i < n; i++)
            values[i] -= base[i];
    if (rc == DF_OK)
        rc = sync->exchange(sync, tr, round, gradient, values, n, samples, round_losses, n_steps, err);
    if (rc == DF_OK && !gradient)
        for (uint64_t i = 0; i < n; i++)
            values[i] += base[i];
    if (rc == DF_OK)
        rc = df_lora_trainer_upload(tr, gradient ? DF_LORA_GRADIENTS : DF_LORA_FACTORS, values, err);
    return rc;
}

int df_train_lora(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
                  const df_train_params *p, df_train_progress progress, void *ctx, const char *out_kohya,
                  const char *out_peft, float *losses, df_error_t *err)
{
    const df_sdxl_config *c = df_sdxl_config_of(model);
    int rc = check(c, p, err);
    /* Class photos (prior preservation) follow the subject's in the dataset:
     * entries count .. count + NC - 1. */
    const uint32_t N = p->count, NC = p->prior_weight > 0 ? p->class_count : 0, S = NC ? 2 : 1;
    const char **all_images = malloc((N + NC + 1) * sizeof *all_images);
    const char **all_captions = malloc((N + NC + 1) * sizeof *all_captions);
    const char **all_caches = p->caches ? malloc((N + NC + 1) * sizeof *all_caches) : NULL;
    df_train_params all = *p;
    if (rc == DF_OK && (!all_images || !all_captions || (p->caches && !all_caches)))
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    if (rc == DF_OK && p->caches && NC && !p->class_caches)
        rc = df_error_set(err, DF_E_INVALID, "train: sample caches for the photos but not for the class images");
    for (uint32_t i = 0; rc == DF_OK && i < N + NC; i++) {
        all_images[i] = i < N ? p->images[i] : p->class_images[i - N];
        all_captions[i] = i < N ? p->captions[i] : p->class_captions[i - N];
        if (all_caches)
            all_caches[i] = i < N ? p->caches[i] : p->class_caches[i - N];
    }
    all.images = all_images, all.captions = all_captions, all.caches = all_caches, all.count = N + NC;
    dataset d = {.n = N + NC};
    if (rc == DF_OK)
        rc = build_dataset(model, dev, xfer, batch, &all, 8u << (c->unet.levels - 1), &d, err);
    if (rc == DF_OK)
        df_info("train: %u samples %s", N + NC, p->caches ? "read from sample caches" : "encoded in the run");
    free(all_caches);
    /* The text encoders stay when they train (each step encodes its captions). */
    df_prompt_encoder_t *pe = rc == DF_OK && p->train_text ? df_prompt_encoder_new(model, dev, xfer, p->weights, err)
                                                          : NULL;
    if (rc == DF_OK && p->train_text && !pe)
        rc = err && err->code ? err->code : DF_E_NOMEM;
    if (rc == DF_OK && p->train_text)
        rc = caption_lengths(pe, &all, &d, err);
    free(all_images);
    df_unet_t *unet = rc == DF_OK ? df_sdxl_load_unet(model, dev, xfer, p->weights, err) : NULL;
    if (rc == DF_OK && !unet)
        rc = err && err->code ? err->code : DF_E_NOMEM;
    df_clip_text_t *te1 = pe ? df_prompt_text_encoder(pe, 1) : NULL, *te2 = pe ? df_prompt_text_encoder(pe, 2) : NULL;
    df_lora_trainer_t *tr = NULL;
    df_full_trainer_t *full = NULL;
    if (rc == DF_OK && p->full) {
        df_full_train_opts fo = {.weight_decay = p->lora.weight_decay, .state8 = p->lora.state8};
        if (!(full = df_full_trainer_new(unet, batch, xfer, &fo, err)))
            rc = err && err->code ? err->code : DF_E_NOMEM;
    } else if (rc == DF_OK) {
        tr = p->resume ? df_lora_trainer_resume_text(unet, te1, te2, p->lora.state8, batch, xfer, p->resume, err)
                       : df_lora_trainer_new_text(unet, te1, te2, batch, xfer, &p->lora, err);
        if (!tr)
            rc = err && err->code ? err->code : DF_E_NOMEM;
        else
            df_lora_trainer_set_text_lr_ratio(tr, p->lora.text_lr_ratio);
    }
    /* Device inputs of one micro-batch: b subject samples, then (prior
     * preservation) their b class samples; per sample up to the largest
     * photo's latents. */
    const uint32_t B = p->batch, C = (uint32_t)c->unet.in_channels, SB = S * B;
    const uint64_t per = d.most, cper = (uint64_t)d.ctx_len * d.D;
    float *x0 = malloc(SB * per * 4), *xt = malloc(SB * per * 4), *eps = malloc(SB * per * 4);
    float *ts = malloc(SB * 4), *wt = malloc(SB * 4), *ids = malloc(SB * 6 * 4);
    uint32_t *order = malloc(N * sizeof *order), *class_order = malloc((NC ? NC : 1) * sizeof *class_order);
    uint32_t *slot_img = malloc(SB * sizeof *slot_img);
    float *slot_coin = malloc(SB * sizeof *slot_coin);
    /* latents, noise, weights, context, pooled text, losses */
    df_vk_buffer_t *bufs[6] = {NULL};
    const uint64_t sizes[6] = {SB * per, SB * per, SB, SB * cper, (uint64_t)SB * d.P, 1 + (uint64_t)SB};
    for (int i = 0; rc == DF_OK && i < 6; i++)
        if (!(bufs[i] = df_vk_buffer_new(dev, sizes[i] * 4, err)))
            rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    if (rc == DF_OK && (!x0 || !xt || !eps || !ts || !wt || !ids || !order || !class_order || !slot_img || !slot_coin))
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    /* Training the text encoders: the gradients at the UNet's text inputs
     * (context, pooled), one sample's context gradient split per encoder,
     * and each slot's token ids. */
    df_vk_buffer_t *tbufs[4] = {NULL};
    int32_t **slot_ids = p->train_text ? calloc(2ull * SB, sizeof *slot_ids) : NULL;
    const uint32_t D1 = te1 ? (uint32_t)df_clip_text_config_of(te1)->hidden : 0;
    const uint32_t D2 = te2 ? (uint32_t)df_clip_text_config_of(te2)->hidden : 0;
    if (rc == DF_OK && p->train_text) {
        const uint64_t tsizes[4] = {SB * cper, (uint64_t)SB * d.P, 77ull * D1, 77ull * D2};
        for (int i = 0; rc == DF_OK && i < 4; i++)
            if (!(tbufs[i] = df_vk_buffer_new(dev, tsizes[i] * 4, err)))
                rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
        if (rc == DF_OK && !slot_ids)
            rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    /* The class half draws its own noise and timesteps. */
    df_train_noise_opts class_noise = p->noise;
    class_noise.seed ^= 0xc1a55ull;
    uint64_t epoch = UINT64_MAX, class_epoch = UINT64_MAX;
    const uint32_t A = p->accumulate ? p->accumulate : 1;
    const uint64_t G = (uint64_t)B * A; /* samples per step, over the whole group */
    /* Data parallel: this member's share, the round's first step, and the
     * values exchanged (with the factors at the round's start for deltas). */
    df_train_sync *sync = p->sync;
    const uint32_t K = sync ? (sync->local_steps ? sync->local_steps : 1) : 1;
    const int gradient = K == 1;
    uint32_t first = sync ? sync->first : 0, count = sync ? sync->count : (uint32_t)G;
    const uint64_t nvals = tr ? df_lora_trainer_params(tr) : 0;
    float *values = NULL, *base = NULL, round_losses[64];
    uint64_t round_start = tr ? df_lora_trainer_steps(tr) : 0, round_samples = 0;
    int validation_due = 0;
    if (rc == DF_OK && sync && K > 64)
        rc = df_error_set(err, DF_E_INVALID, "train: %u local steps per round: at most 64", K);
    if (rc == DF_OK && sync &&
        (!(values = malloc(nvals * sizeof *values)) || (!gradient && !(base = malloc(nvals * sizeof *base)))))
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    if (rc == DF_OK && base)
        rc = df_lora_trainer_download(tr, DF_LORA_FACTORS, base, err);
    if (rc == DF_OK && p->resume)
        resumed_losses(p->resume, losses, round_start < p->steps ? round_start : p->steps);
    for (uint64_t step = round_start; rc == DF_OK && step < p->steps; step++) {
        float lr = df_lr_at(&p->lr, step), loss = 0;
        /* This step's samples: global indices first .. first + count - 1 of
         * the step's G, in micro-batches of at most B. */
        for (uint32_t done = 0; rc == DF_OK && done < count;) {
            const uint32_t b = count - done < B ? count - done : B, s0 = first + done;
            /* Which photo (and side) each slot takes. Slot k < b: the
             * subject's sample s0 + k; b + k: its class pair. */
            for (uint32_t k = 0; k < S * b; k++) {
                const int cls = k >= b;
                uint64_t at = step * G + s0 + (cls ? k - b : k);
                if (!cls) {
                    if (at / N != epoch)
                        epoch_order(N, p->lora.seed ^ 0x5eedull, epoch = at / N, order);
                    slot_img[k] = order[at % N];
                } else {
                    if (at / NC != class_epoch)
                        epoch_order(NC, p->lora.seed ^ 0xc1a5ull, class_epoch = at / NC, class_order);
                    slot_img[k] = N + class_order[at % NC];
                }
                slot_coin[k] = 1;
                if (d.flipped) /* each sample of each step: mirrored half the time */
                    df_philox_fill_uniform(&slot_coin[k], 1, p->lora.seed ^ (cls ? 0xf11bcull : 0xf11bull), at, 0.0f,
                                           1.0f);
            }
            /* Through the UNet in runs of slots of one latent size (one run
             * of all of them without buckets). The loss averages a run's
             * samples; weighted by the run's share of the step's samples,
             * the runs add up to the step's objective: the subject's mean
             * plus the prior weight times the class mean. */
            for (uint32_t r0 = 0, r1; rc == DF_OK && r0 < S * b; r0 = r1) {
                const uint32_t lh = d.lat_h[slot_img[r0]], lw = d.lat_w[slot_img[r0]];
                for (r1 = r0 + 1; r1 < S * b && d.lat_h[slot_img[r1]] == lh && d.lat_w[slot_img[r1]] == lw; r1++)
                    ;
                const uint32_t m = r1 - r0;
                const uint64_t rper = (uint64_t)C * lh * lw;
                for (uint32_t k = 0; k < m; k++) {
                    const uint32_t img = slot_img[r0 + k];
                    memcpy(x0 + k * rper, (slot_coin[r0 + k] < 0.5f ? d.flipped : d.latents) + d.at[img], rper * 4);
                    memcpy(ids + 6 * k, d.time_ids + 6 * img, 6 * 4);
                    if (rc == DF_OK && p->train_text) { /* the caption through the encoders as they are now */
                        uint32_t chunks;
                        rc = df_prompt_encode(pe, batch, all_captions[img], df_tensor_at(bufs[3], k * cper * 4, DF_F32),
                                              df_tensor_at(bufs[4], (uint64_t)k * d.P * 4, DF_F32), &slot_ids[2 * k],
                                              &slot_ids[2 * k + 1], &chunks, err);
                        continue;
                    }
                    if (rc == DF_OK)
                        rc = df_vk_upload(xfer, bufs[3], k * cper * 4, d.context + img * cper, cper * 4, err);
                    if (rc == DF_OK)
                        rc = df_vk_upload(xfer, bufs[4], (uint64_t)k * d.P * 4, d.pooled + (uint64_t)img * d.P,
                                          d.P * 4ull, err);
                }
                /* Noise and timesteps by global sample index: the same
                 * whatever the split into micro-batches, runs and members;
                 * the run's subject slots first, then its class slots. */
                const uint32_t subj = r0 < b ? (r1 < b ? r1 : b) - r0 : 0, hw = lh * lw;
                if (subj)
                    df_train_noise_batch(&p->noise, step, s0 + r0, subj, C, hw, x0, xt, eps, ts, wt);
                if (m > subj) {
                    const uint64_t o = (uint64_t)subj * C * hw;
                    df_train_noise_batch(&class_noise, step, s0 + (r0 + subj - b), m - subj, C, hw, x0 + o, xt + o,
                                         eps + o, ts + subj, wt + subj);
                    for (uint32_t k = subj; k < m; k++)
                        wt[k] *= p->prior_weight;
                }
                if (rc == DF_OK) rc = df_vk_upload(xfer, bufs[0], 0, xt, m * rper * 4, err);
                if (rc == DF_OK) rc = df_vk_upload(xfer, bufs[1], 0, eps, m * rper * 4, err);
                if (rc == DF_OK) rc = df_vk_upload(xfer, bufs[2], 0, wt, m * 4, err);
                df_fmap sample = {df_tensor_at(bufs[0], 0, DF_F32), m, C, lh, lw};
                df_unet_inputs in = {.sample = &sample, .timesteps = ts,
                                     .context = df_tensor_at(bufs[3], 0, DF_F32), .context_len = d.ctx_len,
                                     .text_embeds = df_tensor_at(bufs[4], 0, DF_F32), .time_ids = ids};
                const float share = (float)m / (float)count;
                float part = 0;
                df_unet_text_grads tg = {df_tensor_at(tbufs[0], 0, DF_F32), df_tensor_at(tbufs[1], 0, DF_F32)};
                if (rc == DF_OK && full)
                    rc = df_full_trainer_accumulate(full, batch, &in, df_tensor_at(bufs[1], 0, DF_F32),
                                                    df_tensor_at(bufs[2], 0, DF_F32), share,
                                                    df_tensor_at(bufs[5], 0, DF_F32), err);
                else if (rc == DF_OK)
                    rc = df_lora_trainer_accumulate_text(tr, batch, &in, df_tensor_at(bufs[1], 0, DF_F32),
                                                         df_tensor_at(bufs[2], 0, DF_F32), share,
                                                         df_tensor_at(bufs[5], 0, DF_F32), p->train_text ? &tg : NULL,
                                                         err);
                /* The text encoders' backward passes, a sample at a time:
                 * its context gradient split into each encoder's columns. */
                for (uint32_t k = 0; rc == DF_OK && p->train_text && k < m; k++) {
                    df_copy2d_desc c1 = {.rows = 77, .width = D1, .ld_x = d.D, .ld_y = D1};
                    df_copy2d_desc c2 = {.rows = 77, .width = D2, .ld_x = d.D, .ld_y = D2};
                    df_tensor none = {{NULL, 0}, DF_F32};
                    rc = df_copy2d(batch, &c1, df_tensor_at(tbufs[0], k * cper * 4, DF_F32),
                                   df_tensor_at(tbufs[2], 0, DF_F32), err);
                    if (rc == DF_OK)
                        rc = df_copy2d(batch, &c2, df_tensor_at(tbufs[0], (k * cper + D1) * 4, DF_F32),
                                       df_tensor_at(tbufs[3], 0, DF_F32), err);
                    if (rc == DF_OK)
                        rc = df_clip_text_backward(te1, batch, slot_ids[2 * k], 1, df_tensor_at(tbufs[2], 0, DF_F32),
                                                   none, err);
                    if (rc == DF_OK)
                        rc = df_clip_text_backward(te2, batch, slot_ids[2 * k + 1], 1,
                                                   df_tensor_at(tbufs[3], 0, DF_F32),
                                                   df_tensor_at(tbufs[1], (uint64_t)k * d.P * 4, DF_F32), err);
                }
                for (uint32_t k = 0; slot_ids && k < 2 * m; k++) {
                    free(slot_ids[k]);
                    slot_ids[k] = NULL;
                }
                if (rc == DF_OK)
                    rc = df_vk_download(xfer, bufs[5], 0, &part, 4, err);
                loss += part * share;
            }
            done += b;
        }
        const uint32_t in_round = (uint32_t)(step - round_start);
        if (sync) {
            round_losses[in_round] = loss;
            round_samples += count;
        }
        const int round_ends = sync && (in_round + 1 == K || step + 1 == p->steps);
        if (rc == DF_OK && round_ends && gradient) { /* the group's mean gradient, then the same step everywhere */
            rc = exchange_round(sync, tr, step / K + 1, 1, values, NULL, nvals, round_samples, round_losses, 1, err);
            first = sync->first, count = sync->count;
        }
        if (rc == DF_OK)
            rc = full ? df_full_trainer_step(full, batch, lr, err) : df_lora_trainer_step(tr, batch, lr, err);
        if (rc == DF_OK && round_ends && !gradient) { /* the round's start plus the group's mean change */
            rc = exchange_round(sync, tr, step / K + 1, 0, values, base, nvals, round_samples, round_losses,
                                in_round + 1, err);
            memcpy(base, values, nvals * sizeof *base);
            first = sync->first, count = sync->count;
        }
        if (round_ends) {
            /* The group's losses replace this member's for the round's steps. */
            for (uint32_t i = 0; losses && i <= in_round; i++)
                losses[round_start + i] = round_losses[i];
            round_start = step + 1;
            round_samples = 0;
        } else if (!sync && losses) {
            losses[step] = loss;
        }
        if (round_ends)
            loss = round_losses[in_round];
        if (rc == DF_OK && !isfinite(loss))
            rc = df_error_set(err, DF_E_RANGE, "train: the loss became %g at step %llu (learning rate too high?)", loss,
                              (unsigned long long)step + 1);
        /* Validation when due; with local steps, at the round's end, when the
         * factors are the group's again. */
        validation_due |= p->n_validation &&
                          ((p->validate_every && (step + 1) % p->validate_every == 0) || step + 1 == p->steps);
        if (rc == DF_OK && validation_due && (!sync || gradient || round_ends)) {
            rc = validate(model, dev, xfer, batch, unet, p->train_text ? pe : NULL, p, step + 1, err);
            validation_due = 0;
        }
        if (rc == DF_OK && p->checkpoint && p->checkpoint_every && (step + 1) % p->checkpoint_every == 0 &&
            step + 1 < p->steps)
            rc = write_checkpoint(p, tr, losses, step + 1, err);
        if (rc == DF_OK && progress && progress(ctx, step + 1, p->steps, loss, lr))
            rc = df_error_set(err, DF_E_STATE, "train: cancelled at step %llu", (unsigned long long)step + 1);
    }
    free(values), free(base);
    char steps_s[32], count_s[32], res_s[32];
    snprintf(steps_s, sizeof steps_s, "%u", p->steps);
    snprintf(count_s, sizeof count_s, "%u", p->count);
    snprintf(res_s, sizeof res_s, "%u", p->resolution);
    char model_name[256] = "";
    if (p->base_model) { /* the file or folder's own name */
        size_t len = strlen(p->base_model), start = 0;
        while (len > 1 && p->base_model[len - 1] == '/')
            len--;
        for (size_t i = 0; i < len; i++)
            if (p->base_model[i] == '/')
                start = i + 1;
        snprintf(model_name, sizeof model_name, "%.*s", (int)(len - start), p->base_model + start);
    }
    /* kohya's keys where it has one, ours beside; empty values left out. */
    const char *pairs[][2] = {{"ss_base_model_version", "sdxl_base_v1-0"}, {"ss_resolution", res_s},
                              {"ss_num_train_images", count_s}, {"ss_max_train_steps", steps_s},
                              {"ss_sd_model_name", model_name}, {"dreamfleet.base_model_identity", p->base_model_identity},
                              {"dreamfleet.token", p->token}, {"dreamfleet.class", p->class_word},
                              {"dreamfleet.caption.0", p->captions[0]}};
    const char *meta[2 * sizeof pairs / sizeof pairs[0] + 1];
    size_t nm = 0;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (pairs[i][1] && pairs[i][1][0])
            meta[nm++] = pairs[i][0], meta[nm++] = pairs[i][1];
    meta[nm] = NULL;
    if (rc == DF_OK && p->checkpoint)
        rc = write_checkpoint(p, tr, losses, p->steps, err);
    if (rc == DF_OK && full && out_kohya)
        rc = df_full_trainer_save(full, out_kohya, meta, err);
    if (rc == DF_OK && tr && out_kohya)
        rc = df_lora_trainer_save(tr, out_kohya, DF_LORA_KOHYA, 0, meta, err);
    if (rc == DF_OK && tr && out_peft)
        rc = df_lora_trainer_save(tr, out_peft, DF_LORA_PEFT, 0, meta, err);
    for (int i = 0; i < 6; i++)
        df_vk_buffer_destroy(&bufs[i]);
    for (int i = 0; i < 4; i++)
        df_vk_buffer_destroy(&tbufs[i]);
    for (uint32_t k = 0; slot_ids && k < 2 * SB; k++)
        free(slot_ids[k]);
    free(slot_ids);
    free(all_captions);
    free(x0), free(xt), free(eps), free(ts), free(wt), free(ids), free(order), free(class_order);
    free(slot_img), free(slot_coin);
    df_lora_trainer_destroy(&tr);
    df_full_trainer_destroy(&full);
    df_unet_destroy(&unet);
    df_prompt_encoder_destroy(&pe);
    dataset_free(&d);
    return rc;
}
