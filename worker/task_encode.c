/*  task_encode.c - see task_encode.h. */
#include "task_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifact_store.h"
#include "dreamfleet.pb-c.h"
#include "log.h"
#include "train_sample.h"

/*  What stays loaded between a job's tasks. */
typedef struct {
    df_sdxl_t *model;
    df_vk_batch_t *batch;
    df_train_sample_encoder_t *enc;
} encoder_set;

static void encoder_set_free(void *obj)
{
    encoder_set *e = obj;
    if (!e)
        return;
    df_train_sample_encoder_destroy(&e->enc);
    df_vk_batch_destroy(&e->batch);
    df_sdxl_destroy(&e->model);
    free(e);
}

static encoder_set *encoder_set_new(const char *path, const char *tokenizer, df_dtype text_store, int captions,
                                    df_vk_device_t *dev, df_vk_transfer_t *xfer, df_error_t *err)
{
    encoder_set *e = calloc(1, sizeof *e);
    if (!e) {
        df_error_set(err, DF_E_NOMEM, "encode: out of memory");
        return NULL;
    }
    if (!(e->model = df_sdxl_open(path, tokenizer, err)) || !(e->batch = df_vk_batch_new(dev, 0, err)) ||
        !(e->enc = df_train_sample_encoder_new(e->model, dev, xfer, text_store, captions, err))) {
        encoder_set_free(e);
        return NULL;
    }
    return e;
}

int df_task_run_encode(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                       int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__EncodeParams *p = dreamfleet__encode_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "encode: parameters are not an EncodeParams message");
    int rc = DF_OK;
    if (p->n_images == 0 || p->n_captions != p->n_images || (p->n_names && p->n_names != p->n_images))
        rc = df_error_set(err, DF_E_INVALID, "encode: %zu photos, %zu captions and %zu names", p->n_images,
                          p->n_captions, p->n_names);
    else if (p->resolution < 64 || p->resolution > 2048 || p->resolution % 8)
        rc = df_error_set(err, DF_E_INVALID, "encode: resolution %u: multiples of 8 from 64 to 2048", p->resolution);
    else if (!ctx->upload)
        rc = df_error_set(err, DF_E_INVALID, "encode: sample caches go to a coordinator's artifact store, and this "
                          "worker has none");
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    if (rc == DF_OK && (rc = ctx->device(ctx, &dev, &xfer, err)) != DF_OK)
        *retryable = 1;
    char path[4200];
    snprintf(path, sizeof path, "%s", p->model);
    if (rc == DF_OK && df_artifacts_valid_hash(p->model) &&
        (rc = ctx->fetch(ctx, p->model, path, sizeof path, err)) != DF_OK)
        *retryable = rc == DF_E_IO;
    const df_dtype text_store = p->weights_f32 ? DF_F32 : DF_F16;
    const int captions = !p->latents_only;
    /* The encoders: resident under a key naming what they were loaded from. */
    char key[sizeof ((df_task_resident *)0)->key];
    encoder_set *e = NULL, *own = NULL;
    if (rc == DF_OK && (size_t)snprintf(key, sizeof key, "encode|%s|%s|%s|%d", path, p->tokenizer ? p->tokenizer : "",
                                        df_dtype_name(text_store), captions) >= sizeof key)
        rc = df_error_set(err, DF_E_INVALID, "encode: model and tokenizer paths are too long");
    if (rc == DF_OK) {
        df_task_resident *r = ctx->resident;
        if (r && r->obj && strcmp(r->key, key) == 0) {
            e = r->obj;
        } else {
            if (r) /* one resident at a time: the device's memory is for this one */
                df_task_resident_release(r);
            e = encoder_set_new(path, p->tokenizer && *p->tokenizer ? p->tokenizer : NULL, text_store, captions, dev,
                                xfer, err);
            if (!e) {
                rc = err && err->code ? err->code : DF_E_INVALID;
                *retryable = rc == DF_E_DEVICE_MEMORY;
            } else if (r) {
                snprintf(r->key, sizeof r->key, "%s", key);
                r->obj = e, r->destroy = encoder_set_free;
            } else {
                own = e;
            }
        }
    }
    const uint32_t bucket_step = e ? 8u << (df_sdxl_config_of(e->model)->unet.levels - 1) : 0;
    const df_train_sample_opts o = {.resolution = p->resolution, .bucket_step = p->buckets ? bucket_step : 0,
                                    .flip = p->flip, .captions = captions};
    if (rc == DF_OK && p->resolution % bucket_step)
        rc = df_error_set(err, DF_E_INVALID, "encode: resolution %u: a multiple of %u for this model", p->resolution,
                          bucket_step);
    char **hashes = calloc(p->n_images + 1, sizeof *hashes);
    if (rc == DF_OK && !hashes)
        rc = df_error_set(err, DF_E_NOMEM, "encode: out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; rc == DF_OK && i < p->n_images; i++) {
        if (ctx->cancelled && atomic_load(ctx->cancelled)) {
            rc = df_error_set(err, DF_E_STATE, "encode: cancelled");
            break;
        }
        df_train_sample s = {0};
        char tmp[64];
        snprintf(tmp, sizeof tmp, "/tmp/dreamfleet-sample-XXXXXX");
        int fd = mkstemp(tmp);
        if (fd < 0) {
            rc = df_error_set(err, DF_E_IO, "encode: no temporary file in /tmp");
            break;
        }
        close(fd);
        df_photo_geometry geo = {0};
        if (p->n_geometry == p->n_images) {
            const Dreamfleet__PhotoGeometry *g = p->geometry[i];
            geo = (df_photo_geometry){g->original_width, g->original_height, g->crop_left, g->crop_top};
        }
        const char *name = p->n_names ? p->names[i] : p->images[i];
        char local[4200];
        rc = df_task_input(ctx, p->images[i], local, sizeof local, err);
        if (rc == DF_OK) {
            rc = df_train_sample_encode(e->enc, e->batch, local, p->captions[i], &o, &geo, &s, err);
            /* Device trouble may pass on another worker; a bad photo will not. */
            *retryable = rc == DF_E_DEVICE_MEMORY || rc == DF_E_VULKAN;
            if (rc != DF_OK && err) { /* the photo as the user knows it */
                char *msg = df_task_rename_input(strdup(err->msg), local, name);
                if (msg)
                    snprintf(err->msg, sizeof err->msg, "%s", msg);
                free(msg);
            }
        } else {
            *retryable = rc == DF_E_IO;
        }
        if (rc == DF_OK)
            rc = df_train_sample_save(&s, &o, p->captions[i], p->model_identity, name, tmp, err);
        df_train_sample_free(&s);
        if (rc == DF_OK && !(hashes[i] = malloc(65)))
            rc = df_error_set(err, DF_E_NOMEM, "encode: out of memory");
        if (rc == DF_OK) {
            rc = ctx->upload(ctx, tmp, hashes[i], err);
            *retryable = rc != DF_OK;
        }
        unlink(tmp);
        if (rc == DF_OK && ctx->progress) {
            char msg[96];
            snprintf(msg, sizeof msg, "photo %zu of %zu encoded", i + 1, p->n_images);
            ctx->progress(ctx, (float)(i + 1) / (float)p->n_images, msg);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == DF_OK) {
        Dreamfleet__EncodeResult res = DREAMFLEET__ENCODE_RESULT__INIT;
        res.worker = (char *)ctx->worker_name;
        res.device = (char *)df_vk_device_info_of(dev)->name;
        res.n_samples = p->n_images;
        res.samples = hashes;
        res.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        *out_len = dreamfleet__encode_result__get_packed_size(&res);
        if (!(*out = malloc(*out_len ? *out_len : 1)))
            rc = df_error_set(err, DF_E_NOMEM, "encode: out of memory");
        else
            dreamfleet__encode_result__pack(&res, *out);
        df_info("encode: %zu photo%s from photo %u (%s) in %.2f s", p->n_images, p->n_images == 1 ? "" : "s",
                p->first + 1, p->n_names ? p->names[0] : p->images[0], res.seconds);
    }
    for (size_t i = 0; hashes && i < p->n_images; i++)
        free(hashes[i]);
    free(hashes);
    encoder_set_free(own);
    dreamfleet__encode_params__free_unpacked(p, NULL);
    return rc;
}
