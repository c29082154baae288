/*  task_prep.c - see task_prep.h. */
#include "task_prep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blip.h"
#include "dreamfleet.pb-c.h"
#include "log.h"
#include "png_write.h"
#include "prep.h"

/*  A captioning model kept loaded between a job's tasks. */
typedef struct {
    df_blip_t *model;
    df_vk_batch_t *batch;
} captioner;

static void captioner_free(void *obj)
{
    captioner *c = obj;
    if (!c)
        return;
    df_blip_destroy(&c->model);
    df_vk_batch_destroy(&c->batch);
    free(c);
}

/*  What prep's callback needs for one task: the model is loaded on first
 *  use (a task whose photo has its own caption, or is rejected, needs no
 *  device and evicts nothing). */
typedef struct {
    df_task_ctx *ctx;
    const char *path, *identity;
    df_blip_caption_opts opts;
    captioner *c, *own; /* own: loaded without a resident slot */
    int used;           /* a caption was asked for */
} caption_call;

/*  The captioner at path, resident on the executor under its path and
 *  identity (loaded when another model, or none, was). */
static int captioner_get(caption_call *call, df_error_t *err)
{
    df_task_ctx *ctx = call->ctx;
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    if (!ctx->device)
        return df_error_set(err, DF_E_INVALID, "prep: captions need a device, and this worker has none");
    int rc = ctx->device(ctx, &dev, &xfer, err);
    if (rc != DF_OK)
        return rc;
    char key[sizeof ((df_task_resident *)0)->key];
    if ((size_t)snprintf(key, sizeof key, "blip|%s|%s", call->path, call->identity ? call->identity : "") >=
        sizeof key)
        return df_error_set(err, DF_E_INVALID, "prep: captioner path too long");
    df_task_resident *r = ctx->resident;
    if (r && r->obj && strcmp(r->key, key) == 0) {
        call->c = r->obj;
        return DF_OK;
    }
    if (r) /* one resident at a time: the device's memory is for this one */
        df_task_resident_release(r);
    captioner *c = calloc(1, sizeof *c);
    if (!c)
        return df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    if (!(c->model = df_blip_open(call->path, dev, xfer, DF_F16, err)) || !(c->batch = df_vk_batch_new(dev, 0, err))) {
        captioner_free(c);
        return err && err->code ? err->code : DF_E_FORMAT;
    }
    if (r) {
        snprintf(r->key, sizeof r->key, "%s", key);
        r->obj = c, r->destroy = captioner_free;
    } else {
        call->own = c;
    }
    call->c = c;
    return DF_OK;
}

static int caption_photo(void *ctx, const df_image *photo, char **text, df_error_t *err)
{
    caption_call *call = ctx;
    call->used = 1;
    int rc = call->c ? DF_OK : captioner_get(call, err);
    if (rc == DF_OK)
        rc = df_blip_caption(call->c->model, call->c->batch, photo, &call->opts, text, NULL, NULL, err);
    /* A failed caption may leave work recorded in the model's batch: the
     * next task loads it afresh. */
    if (rc != DF_OK && call->c && !call->own && call->ctx->resident) {
        df_task_resident_release(call->ctx->resident);
        call->c = NULL;
    }
    return rc;
}

/*  img written as a PNG and uploaded: hex gets its artifact hash. */
static int upload_png(df_task_ctx *ctx, const df_image *img, char hex[65], df_error_t *err)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/dreamfleet-prep-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return df_error_set(err, DF_E_IO, "prep: no temporary file in /tmp");
    close(fd);
    int rc = df_png_write(tmp, img->rgb, img->width, img->height, NULL, 0, err);
    if (rc == DF_OK)
        rc = ctx->upload(ctx, tmp, hex, err);
    unlink(tmp);
    return rc;
}

/*  The examined photo *it as a message (strings borrowed from it, face and
 *  hashes); the caller frees nothing of it but what it allocated. */
static void item_message(const df_prep_item *it, Dreamfleet__PrepItem *m, Dreamfleet__PrepFace *face,
                         Dreamfleet__PhotoGeometry *geo, char *image, char *thumb)
{
    dreamfleet__prep_item__init(m);
    m->name = it->source;
    m->reason = it->reason ? it->reason : "";
    m->caption = it->caption ? it->caption : "";
    m->caption_from = (char *)(it->caption_from ? it->caption_from : "");
    m->original_width = it->orig_w, m->original_height = it->orig_h;
    m->width = it->width, m->height = it->height;
    m->crop_x = it->crop_x, m->crop_y = it->crop_y;
    m->window_width = it->window_w, m->window_height = it->window_h;
    m->scored = it->scored;
    m->quality = it->scores.quality, m->sharpness = it->scores.sharpness;
    m->exposure = it->scores.exposure, m->contrast = it->scores.contrast;
    m->mean = it->scores.mean, m->clipped = it->scores.clipped;
    m->phash = it->phash;
    m->faces = it->faces;
    if (it->faces == 1) {
        dreamfleet__prep_face__init(face);
        face->x = it->face.x, face->y = it->face.y, face->w = it->face.w, face->h = it->face.h;
        face->eyes = it->face.eyes, face->roll_deg = it->face.roll_deg, face->clarity = it->face.clarity;
        m->face = face;
    }
    dreamfleet__photo_geometry__init(geo);
    geo->original_width = it->sdxl_orig_w, geo->original_height = it->sdxl_orig_h;
    geo->crop_left = it->sdxl_crop_left, geo->crop_top = it->sdxl_crop_top;
    m->sdxl = geo;
    m->image = image, m->thumbnail = thumb;
}

int df_task_run_prep(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                     int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__PrepParams *p = dreamfleet__prep_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "prep: parameters are not a PrepParams message");
    const df_prep_opts o = {.resolution = p->resolution, .bucket_step = p->bucket_step,
                            .max_upscale = p->max_upscale, .min_quality = p->min_quality,
                            .dup_bits = p->dup_bits, .person = p->person, .framing = (df_framing)p->framing,
                            .min_face_clarity = p->min_face_clarity, .min_face_size = p->min_face_size,
                            .token = p->token && *p->token ? p->token : NULL,
                            .class_word = p->class_word && *p->class_word ? p->class_word : NULL};
    int rc = df_prep_check_opts(&o, err);
    if (rc == DF_OK && (p->n_images == 0 || (p->n_sidecars && p->n_sidecars != p->n_images) ||
                        (p->n_names && p->n_names != p->n_images)))
        rc = df_error_set(err, DF_E_INVALID, "prep: %zu photos, %zu captions and %zu names", p->n_images,
                          p->n_sidecars, p->n_names);
    else if (rc == DF_OK && !ctx->upload)
        rc = df_error_set(err, DF_E_INVALID, "prep: training images go to a coordinator's artifact store, and this "
                          "worker has none");
    /* A captioning model for photos without a caption file. */
    caption_call call = {ctx, p->captioner, p->captioner_identity,
                         {p->caption_prompt, p->caption_max_length, p->caption_min_length, p->caption_beams}, NULL,
                         NULL, 0};
    df_prep_opts with = o;
    if (rc == DF_OK && p->captioner && *p->captioner)
        with.captioner = caption_photo, with.captioner_ctx = &call;
    /* The detector loads in milliseconds: each task has its own. */
    df_face_detector_t *fd = rc == DF_OK && o.person ? df_face_detector_new(NULL, err) : NULL;
    if (rc == DF_OK && o.person && !fd)
        rc = err && err->code ? err->code : DF_E_NOT_FOUND;
    df_prep_item *items = rc == DF_OK ? calloc(p->n_images, sizeof *items) : NULL;
    Dreamfleet__PrepItem *msgs = rc == DF_OK ? calloc(p->n_images, sizeof *msgs) : NULL;
    Dreamfleet__PrepItem **ptrs = rc == DF_OK ? calloc(p->n_images, sizeof *ptrs) : NULL;
    Dreamfleet__PrepFace *faces = rc == DF_OK ? calloc(p->n_images, sizeof *faces) : NULL;
    Dreamfleet__PhotoGeometry *geos = rc == DF_OK ? calloc(p->n_images, sizeof *geos) : NULL;
    char(*hashes)[2][65] = rc == DF_OK ? calloc(p->n_images, sizeof *hashes) : NULL;
    if (rc == DF_OK && (!items || !msgs || !ptrs || !faces || !geos || !hashes))
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t done = 0;
    for (size_t i = 0; rc == DF_OK && i < p->n_images; i++) {
        if (ctx->cancelled && atomic_load(ctx->cancelled)) {
            rc = df_error_set(err, DF_E_STATE, "prep: cancelled");
            break;
        }
        df_prep_item *it = &items[i];
        it->faces = -1;
        it->source = p->n_names ? p->names[i] : p->images[i]; /* borrowed: not freed below */
        char local[4200];
        if ((rc = df_task_input(ctx, p->images[i], local, sizeof local, err)) != DF_OK) {
            *retryable = rc == DF_E_IO; /* a lost download may pass on another attempt */
            break;
        }
        df_image thumb = {0}, train = {0};
        /* Thumbnails only where the contact sheet has room for them. */
        const int sheet = p->first + i < DF_PREP_SHEET_MAX;
        rc = df_prep_photo(local, p->n_sidecars ? p->sidecars[i] : NULL, &with, fd, it, sheet ? &thumb : NULL, &train,
                           err);
        if (rc != DF_OK)
            *retryable = rc == DF_E_NOMEM || rc == DF_E_DEVICE_MEMORY || rc == DF_E_VULKAN;
        it->reason = df_task_rename_input(it->reason, local, it->source); /* as the user knows the photo */
        done++;
        /* A lost upload may pass on another attempt; a bad photo is a verdict, not a failure. */
        if (rc == DF_OK && thumb.rgb && (rc = upload_png(ctx, &thumb, hashes[i][1], err)) != DF_OK)
            *retryable = 1;
        if (rc == DF_OK && train.rgb && (rc = upload_png(ctx, &train, hashes[i][0], err)) != DF_OK)
            *retryable = 1;
        df_image_free(&thumb), df_image_free(&train);
        item_message(it, &msgs[i], &faces[i], &geos[i], hashes[i][0], hashes[i][1]);
        ptrs[i] = &msgs[i];
        if (rc == DF_OK && ctx->progress) {
            char msg[96];
            snprintf(msg, sizeof msg, "photo %zu of %zu prepared", i + 1, p->n_images);
            ctx->progress(ctx, (float)(i + 1) / (float)p->n_images, msg);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == DF_OK) {
        Dreamfleet__PrepResult res = DREAMFLEET__PREP_RESULT__INIT;
        res.worker = (char *)ctx->worker_name;
        df_vk_device_t *dev = NULL;
        df_vk_transfer_t *xfer = NULL;
        res.device = "cpu"; /* unless a captioning model ran */
        if (call.used && ctx->device && ctx->device(ctx, &dev, &xfer, NULL) == DF_OK)
            res.device = (char *)df_vk_device_info_of(dev)->name;
        res.n_items = p->n_images;
        res.items = ptrs;
        res.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        *out_len = dreamfleet__prep_result__get_packed_size(&res);
        if (!(*out = malloc(*out_len ? *out_len : 1)))
            rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        else
            dreamfleet__prep_result__pack(&res, *out);
        df_info("prep: photo %u (%s): %s in %.2f s", p->first + 1, items[0].source,
                items[0].reason ? items[0].reason : "accepted", res.seconds);
    }
    for (size_t i = 0; items && i < done; i++) {
        items[i].source = NULL; /* p's */
        free(items[i].reason), free(items[i].caption), free(items[i].file);
    }
    free(items), free(msgs), free(ptrs), free(faces), free(geos), free(hashes);
    df_face_detector_destroy(&fd);
    captioner_free(call.own);
    dreamfleet__prep_params__free_unpacked(p, NULL);
    return rc;
}
