/*  train_sample.c - see train_sample.h. */
#include "train_sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aspect_buckets.h"
#include "image_decode.h"
#include "prompt.h"
#include "safetensors.h"
#include "unicode.h"
#include "vae_tiled.h"

struct _df_train_sample_encoder_t {
    df_sdxl_t *model;
    df_vk_device_t *dev;
    df_vk_transfer_t *xfer;
    df_vae_t *vae;
    df_prompt_encoder_t *pe;     /* NULL: latents only */
};

void df_train_sample_encoder_destroy(df_train_sample_encoder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_train_sample_encoder_t *self = *self_p;
    df_vae_destroy(&self->vae);
    df_prompt_encoder_destroy(&self->pe);
    free(self);
    *self_p = NULL;
}

df_train_sample_encoder_t *df_train_sample_encoder_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                                       df_dtype text_store, int captions, df_error_t *err)
{
    df_train_sample_encoder_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "train: out of memory");
        return NULL;
    }
    self->model = model, self->dev = dev, self->xfer = xfer;
    /* The VAE in f32: latents are made once, as exactly as the model allows. */
    self->vae = df_sdxl_load_vae(model, dev, xfer, DF_F32, err);
    if (self->vae && captions)
        self->pe = df_prompt_encoder_new(model, dev, xfer, text_store, err);
    if (!self->vae || (captions && !self->pe))
        df_train_sample_encoder_destroy(&self);
    return self;
}

void df_train_sample_free(df_train_sample *s)
{
    free(s->latents), free(s->flipped), free(s->context), free(s->pooled), free(s->pad);
    memset(s, 0, sizeof *s);
}

void df_train_sample_meta_free(df_train_sample_meta *meta)
{
    free(meta->caption), free(meta->model_identity), free(meta->image);
    memset(meta, 0, sizeof *meta);
}

/*  The photo through the VAE at its bucket's size (the square resolution
 *  without buckets), and its mirror image with flip. */
static int encode_latents(df_train_sample_encoder_t *self, df_vk_batch_t *batch, const char *image_path,
                          const df_train_sample_opts *o, const df_photo_geometry *geo, df_train_sample *s,
                          df_error_t *err)
{
    const df_sdxl_config *c = df_sdxl_config_of(self->model);
    const uint32_t R = o->resolution, f = df_vae_factor(self->vae), C = (uint32_t)c->vae.latent_channels;
    df_image src = {0}, fit = {0};
    int rc = df_image_load(image_path, &src, err);
    df_bucket bk = {R, R};
    if (rc == DF_OK && o->bucket_step)
        bk = df_aspect_bucket(R, o->bucket_step, src.width, src.height);
    const uint32_t W = bk.width, H = bk.height, lh = H / f, lw = W / f;
    const uint64_t plane = (uint64_t)W * H, per = (uint64_t)C * lh * lw;
    float *img = NULL, *mean = NULL, *logvar = NULL;
    if (rc == DF_OK)
        rc = df_image_fit(&src, W, H, &fit, err);
    if (rc == DF_OK) {
        img = malloc(3 * plane * sizeof *img), mean = malloc(per * sizeof *mean);
        logvar = malloc(per * sizeof *logvar);
        s->latents = malloc(per * sizeof *s->latents);
        s->flipped = o->flip ? malloc(per * sizeof *s->flipped) : NULL;
        if (!img || !mean || !logvar || !s->latents || (o->flip && !s->flipped))
            rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    if (rc == DF_OK) {
        s->lat_c = C, s->lat_h = lh, s->lat_w = lw;
        /* SDXL's micro-conditioning: the photo's size, and where the
         * bucket was cropped from it once scaled to cover W x H. */
        double sc = fmax((double)W / src.width, (double)H / src.height);
        float *t = s->time_ids;
        t[0] = (float)src.height, t[1] = (float)src.width;
        t[2] = (float)lrint((src.height * sc - H) / 2), t[3] = (float)lrint((src.width * sc - W) / 2);
        t[4] = (float)H, t[5] = (float)W;
        if (geo && geo->orig_w && geo->orig_h) {
            /* The photo before prep made this image of it. Where this run's
             * bucket is not the image's own size, the image is scaled by sc
             * and cropped again: both crops count, in the original scaled to
             * cover W x H. */
            t[0] = (float)geo->orig_h, t[1] = (float)geo->orig_w;
            t[2] = (float)lrint(geo->crop_top * sc + (src.height * sc - H) / 2);
            t[3] = (float)lrint(geo->crop_left * sc + (src.width * sc - W) / 2);
        }
        for (uint64_t k = 0; k < plane; k++)
            for (int ch = 0; ch < 3; ch++)
                img[ch * plane + k] = fit.rgb[k * 3 + ch] / 127.5f - 1.0f;
        rc = df_vae_encode_tiled(self->vae, batch, self->xfer, NULL, img, 1, H, W, mean, logvar, err);
    }
    for (uint64_t k = 0; rc == DF_OK && k < per; k++)
        s->latents[k] = (float)(mean[k] * c->vae.scaling_factor);
    if (rc == DF_OK && o->flip) { /* flips need their own encoding: latents are not mirrored images */
        for (uint32_t ch = 0; ch < 3; ch++)
            for (uint32_t y = 0; y < H; y++) {
                float *row = img + ch * plane + (uint64_t)y * W;
                for (uint32_t x = 0; x < W / 2; x++) {
                    float tmp = row[x];
                    row[x] = row[W - 1 - x], row[W - 1 - x] = tmp;
                }
            }
        rc = df_vae_encode_tiled(self->vae, batch, self->xfer, NULL, img, 1, H, W, mean, logvar, err);
        for (uint64_t k = 0; rc == DF_OK && k < per; k++)
            s->flipped[k] = (float)(mean[k] * c->vae.scaling_factor);
    }
    free(img), free(mean), free(logvar);
    df_image_free(&src);
    df_image_free(&fit);
    return rc;
}

/*  The caption through both text encoders, and the empty prompt's chunk
 *  that pads shorter captions. */
static int encode_caption(df_train_sample_encoder_t *self, df_vk_batch_t *batch, const char *caption,
                          df_train_sample *s, df_error_t *err)
{
    uint32_t chunks = 0, one = 0;
    int rc = df_prompt_tokens(self->pe, caption, &chunks, err);
    if (rc != DF_OK)
        return rc;
    const uint32_t D = df_prompt_context_dim(self->pe), P = df_prompt_pooled_dim(self->pe);
    const uint64_t per = 77ull * chunks * D;
    df_vk_buffer_t *cb = df_vk_buffer_new(self->dev, per * 4, err);
    df_vk_buffer_t *pad = cb ? df_vk_buffer_new(self->dev, 77ull * D * 4, err) : NULL;
    df_vk_buffer_t *pb = pad ? df_vk_buffer_new(self->dev, P * 4ull, err) : NULL;
    df_vk_buffer_t *spare = pb ? df_vk_buffer_new(self->dev, P * 4ull, err) : NULL;
    if (!spare)
        rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    s->context = malloc(per * sizeof *s->context);
    s->pad = malloc(77ull * D * sizeof *s->pad);
    s->pooled = malloc(P * sizeof *s->pooled);
    if (rc == DF_OK && (!s->context || !s->pad || !s->pooled))
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    if (rc == DF_OK)
        rc = df_prompt_encode(self->pe, batch, caption, df_tensor_at(cb, 0, DF_F32), df_tensor_at(pb, 0, DF_F32), NULL,
                              NULL, &chunks, err);
    if (rc == DF_OK)
        rc = df_prompt_encode(self->pe, batch, "", df_tensor_at(pad, 0, DF_F32), df_tensor_at(spare, 0, DF_F32), NULL,
                              NULL, &one, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc == DF_OK)
        rc = df_vk_download(self->xfer, cb, 0, s->context, per * 4, err);
    if (rc == DF_OK)
        rc = df_vk_download(self->xfer, pad, 0, s->pad, 77ull * D * 4, err);
    if (rc == DF_OK)
        rc = df_vk_download(self->xfer, pb, 0, s->pooled, P * 4ull, err);
    if (rc == DF_OK)
        s->chunks = chunks, s->D = D, s->P = P;
    df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&pad), df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&spare);
    return rc;
}

int df_train_sample_encode(df_train_sample_encoder_t *self, df_vk_batch_t *batch, const char *image_path,
                           const char *caption, const df_train_sample_opts *opts, const df_photo_geometry *geo,
                           df_train_sample *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (opts->captions && !self->pe)
        return df_error_set(err, DF_E_INVALID, "train: this sample encoder was made without text encoders");
    int rc = encode_latents(self, batch, image_path, opts, geo, out, err);
    if (rc == DF_OK && opts->captions)
        rc = encode_caption(self, batch, caption ? caption : "", out, err);
    if (rc != DF_OK)
        df_train_sample_free(out);
    return rc;
}

/* ---- the cache file ---------------------------------------------------- */

int df_train_sample_save(const df_train_sample *s, const df_train_sample_opts *opts, const char *caption,
                         const char *model_identity, const char *image_path, const char *path, df_error_t *err)
{
    df_st_writer_t *w = df_st_writer_new();
    if (!w)
        return df_error_set(err, DF_E_NOMEM, "train: out of memory");
    const int64_t lat[3] = {s->lat_c, s->lat_h, s->lat_w}, six = 6;
    const int64_t ctx[2] = {77ll * s->chunks, s->D}, pad[2] = {77, s->D}, pooled = s->P;
    char res[16], step[16];
    snprintf(res, sizeof res, "%u", opts->resolution);
    snprintf(step, sizeof step, "%u", opts->bucket_step);
    int rc = df_st_writer_add(w, "latents", DF_F32, 3, lat, s->latents, err);
    if (rc == DF_OK && s->flipped)
        rc = df_st_writer_add(w, "latents_flipped", DF_F32, 3, lat, s->flipped, err);
    if (rc == DF_OK)
        rc = df_st_writer_add(w, "time_ids", DF_F32, 1, &six, s->time_ids, err);
    if (rc == DF_OK && s->chunks) {
        rc = df_st_writer_add(w, "context", DF_F32, 2, ctx, s->context, err);
        if (rc == DF_OK)
            rc = df_st_writer_add(w, "pooled", DF_F32, 1, &pooled, s->pooled, err);
        if (rc == DF_OK)
            rc = df_st_writer_add(w, "pad_context", DF_F32, 2, pad, s->pad, err);
    }
    /* The header is JSON, so UTF-8: a path (only for messages) made valid. */
    char *image = df_utf8_sanitize(image_path ? image_path : "");
    const char *pairs[][2] = {{"format", DF_TRAIN_SAMPLE_FORMAT}, {"resolution", res}, {"bucket_step", step},
                              {"caption", s->chunks && caption ? caption : ""},
                              {"model_identity", model_identity ? model_identity : ""}, {"image", image}};
    if (rc == DF_OK && !image)
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    for (size_t i = 0; rc == DF_OK && i < sizeof pairs / sizeof pairs[0]; i++)
        if (df_st_writer_set_metadata(w, pairs[i][0], pairs[i][1], err) != DF_OK)
            rc = df_error_set(err, DF_E_INVALID, "train: sample cache metadata '%s' (not UTF-8?): %.60s", pairs[i][0],
                              pairs[i][1]);
    free(image);
    if (rc == DF_OK)
        rc = df_st_writer_write(w, path, err);
    df_st_writer_destroy(&w);
    return rc;
}

/*  Copies tensor name, which must be f32 of the given shape, into a new
 *  array, refusing values that are not finite. */
static int take(const df_safetensors_t *st, const char *name, int ndim, const int64_t *shape, float **out,
                df_error_t *err)
{
    const df_st_tensor *t = df_safetensors_find(st, name);
    if (!t)
        return df_error_set(err, DF_E_FORMAT, "%s: not a sample cache: no '%s' tensor", df_safetensors_path(st), name);
    int ok = t->dtype == DF_F32 && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok)
        return df_error_set(err, DF_E_FORMAT, "%s: tensor '%s' is not f32 of the shape the others imply",
                            df_safetensors_path(st), name);
    if (!(*out = malloc(t->nbytes ? t->nbytes : 1)))
        return df_error_set(err, DF_E_NOMEM, "train: out of memory");
    memcpy(*out, t->data, t->nbytes);
    for (uint64_t i = 0; i < t->nelem; i++)
        if (!isfinite((*out)[i]))
            return df_error_set(err, DF_E_FORMAT, "%s: tensor '%s' holds a value that is not finite",
                                df_safetensors_path(st), name);
    return DF_OK;
}

static int meta_u32(const df_safetensors_t *st, const char *key, uint32_t *out, df_error_t *err)
{
    const char *v = df_safetensors_metadata(st, key);
    char *end = NULL;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    if (!v || !*v || *end || n > 1000000)
        return df_error_set(err, DF_E_FORMAT, "%s: sample cache without a valid '%s' in its metadata",
                            df_safetensors_path(st), key);
    *out = (uint32_t)n;
    return DF_OK;
}

static char *meta_str(const df_safetensors_t *st, const char *key)
{
    const char *v = df_safetensors_metadata(st, key);
    return strdup(v ? v : "");
}

int df_train_sample_load(const char *path, df_train_sample *s, df_train_sample_meta *meta, df_error_t *err)
{
    memset(s, 0, sizeof *s);
    memset(meta, 0, sizeof *meta);
    df_safetensors_t *st = df_safetensors_open(path, err);
    if (!st)
        return err && err->code ? err->code : DF_E_IO;
    const char *format = df_safetensors_metadata(st, "format");
    int rc = format && strcmp(format, DF_TRAIN_SAMPLE_FORMAT) == 0
                 ? DF_OK
                 : df_error_set(err, DF_E_FORMAT, "%s: not a sample cache (format '%s', expected '%s')", path,
                                format ? format : "", DF_TRAIN_SAMPLE_FORMAT);
    if (rc == DF_OK)
        rc = meta_u32(st, "resolution", &meta->opts.resolution, err);
    if (rc == DF_OK)
        rc = meta_u32(st, "bucket_step", &meta->opts.bucket_step, err);
    if (rc == DF_OK) {
        meta->caption = meta_str(st, "caption");
        meta->model_identity = meta_str(st, "model_identity");
        meta->image = meta_str(st, "image");
        if (!meta->caption || !meta->model_identity || !meta->image)
            rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    /* The latents fix their own shape; everything else follows from it and
     * from the context's width. */
    const df_st_tensor *lat = rc == DF_OK ? df_safetensors_find(st, "latents") : NULL;
    if (rc == DF_OK && (!lat || lat->ndim != 3 || lat->shape[0] < 1 || lat->shape[0] > 64 || lat->shape[1] < 1 ||
                        lat->shape[1] > 1024 || lat->shape[2] < 1 || lat->shape[2] > 1024))
        rc = df_error_set(err, DF_E_FORMAT, "%s: sample cache without 3-dimensional latents of a plausible size", path);
    int64_t lshape[3] = {0};
    if (rc == DF_OK) {
        memcpy(lshape, lat->shape, sizeof lshape);
        s->lat_c = (uint32_t)lshape[0], s->lat_h = (uint32_t)lshape[1], s->lat_w = (uint32_t)lshape[2];
        rc = take(st, "latents", 3, lshape, &s->latents, err);
    }
    meta->opts.flip = rc == DF_OK && df_safetensors_find(st, "latents_flipped") != NULL;
    if (rc == DF_OK && meta->opts.flip)
        rc = take(st, "latents_flipped", 3, lshape, &s->flipped, err);
    float *ids = NULL;
    const int64_t six = 6;
    if (rc == DF_OK)
        rc = take(st, "time_ids", 1, &six, &ids, err);
    if (rc == DF_OK)
        memcpy(s->time_ids, ids, sizeof s->time_ids);
    free(ids);
    const df_st_tensor *ctx = rc == DF_OK ? df_safetensors_find(st, "context") : NULL;
    meta->opts.captions = ctx != NULL;
    if (ctx && (ctx->ndim != 2 || ctx->shape[0] < 77 || ctx->shape[0] % 77 || ctx->shape[0] > 77 * 64 ||
                ctx->shape[1] < 1 || ctx->shape[1] > 65536))
        rc = df_error_set(err, DF_E_FORMAT, "%s: the context is not chunks of 77 tokens of a plausible width", path);
    const df_st_tensor *pooled = ctx && rc == DF_OK ? df_safetensors_find(st, "pooled") : NULL;
    if (ctx && rc == DF_OK && (!pooled || pooled->ndim != 1 || pooled->shape[0] < 1 || pooled->shape[0] > 65536))
        rc = df_error_set(err, DF_E_FORMAT, "%s: the context comes without a pooled embedding", path);
    if (ctx && rc == DF_OK) {
        const int64_t cshape[2] = {ctx->shape[0], ctx->shape[1]}, pshape[2] = {77, ctx->shape[1]};
        const int64_t P = pooled->shape[0];
        s->chunks = (uint32_t)(cshape[0] / 77), s->D = (uint32_t)cshape[1], s->P = (uint32_t)P;
        rc = take(st, "context", 2, cshape, &s->context, err);
        if (rc == DF_OK)
            rc = take(st, "pooled", 1, &P, &s->pooled, err);
        if (rc == DF_OK)
            rc = take(st, "pad_context", 2, pshape, &s->pad, err);
    }
    df_safetensors_destroy(&st);
    if (rc != DF_OK) {
        df_train_sample_free(s);
        df_train_sample_meta_free(meta);
    }
    return rc;
}
