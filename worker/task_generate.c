/*  task_generate.c - see task_generate.h. */
#include "task_generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "artifact_store.h"
#include "dreamfleet.pb-c.h"
#include "generate.h"
#include "image_encode.h"
#include "latent_preview.h"
#include "log.h"

/*  What stays loaded between tasks: the model and its components. */
typedef struct {
    df_sdxl_t *model;
    df_generator_t *gen;
    df_vk_batch_t *batch;
    char loras[2048]; /* the LoRAs attached, when unmerged ("" when none) */
} loaded;

static void loaded_free(void *p)
{
    loaded *l = p;
    if (!l)
        return;
    df_generator_destroy(&l->gen);
    df_vk_batch_destroy(&l->batch);
    df_sdxl_destroy(&l->model);
    free(l);
}

static loaded *load(const char *path, const char *tokenizer, df_dtype weights, df_vk_device_t *dev,
                    df_vk_transfer_t *xfer, df_error_t *err)
{
    loaded *l = calloc(1, sizeof *l);
    if (!l) {
        df_error_set(err, DF_E_NOMEM, "generate: out of memory");
        return NULL;
    }
    if (!(l->model = df_sdxl_open(path, tokenizer, err)) || !(l->batch = df_vk_batch_new(dev, 0, err)) ||
        !(l->gen = df_generator_new(l->model, dev, xfer, weights, err))) {
        loaded_free(l);
        return NULL;
    }
    /* Below 16 GiB of device memory the text encoders (1.5 GiB for SDXL in
     * f16) give way to the UNet and VAE once a task's prompts are encoded. */
    df_generator_keep_text(l->gen, df_vk_device_info_of(dev)->device_local_bytes >= (16ull << 30));
    return l;
}

typedef struct {
    df_task_ctx *ctx;
    uint32_t count;
    uint32_t h, w; /* latent size */
} progress_ctx;

static int on_step(void *vp, uint32_t image, int step, int steps, const float *latents)
{
    progress_ctx *p = vp;
    if (p->ctx->cancelled && atomic_load(p->ctx->cancelled))
        return 1;
    if (p->ctx->progress) {
        char msg[64];
        snprintf(msg, sizeof msg, "image %u/%u, step %d/%d", image + 1, p->count, step, steps);
        p->ctx->progress(p->ctx, ((float)image * (float)steps + (float)step) / ((float)p->count * (float)steps), msg);
    }
    /* A thumbnail of where the image is heading, for `watch --previews`;
     * it is 1/64 of the image's pixels and costs microseconds next to a
     * step. */
    uint8_t *png = NULL;
    size_t len = 0;
    if (p->ctx->preview && df_latent_preview_png(latents, p->h, p->w, &png, &len, NULL) == DF_OK)
        p->ctx->preview(p->ctx, png, len);
    free(png);
    return 0;
}

/*  A1111's names for the samplers, as its "parameters" text uses them. */
static const char *display_name(df_sampler s)
{
    static const char *const names[DF_SAMPLER_COUNT] = {"Euler", "Euler Karras", "Euler a", "DPM++ 2M",
                                                        "DPM++ 2M Karras", "DDIM"};
    return (unsigned)s < DF_SAMPLER_COUNT ? names[s] : "?";
}

static int is_hash(const char *s) { return df_artifacts_valid_hash(s); }

int df_task_run_generate(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                         int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__GenerateParams *p = dreamfleet__generate_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "generate: parameters are not a GenerateParams message");
    int sampler = df_sampler_parse(p->sampler);
    int rc = sampler < 0 ? df_error_set(err, DF_E_INVALID, "generate: unknown sampler '%s'", p->sampler) : DF_OK;
    df_image_format format = DF_IMAGE_PNG;
    if (rc == DF_OK)
        rc = df_image_format_parse(p->format, &format, err);
    if (rc == DF_OK && p->quality > 100)
        rc = df_error_set(err, DF_E_INVALID, "generate: quality %u: from 1 to 100", p->quality);
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    if (rc == DF_OK && (rc = ctx->device(ctx, &dev, &xfer, err)) != DF_OK)
        *retryable = 1; /* another worker's device may do */
    /* The model: a registered single file travels as an artifact; anything
     * else is a path this worker can read. */
    char path[4200];
    snprintf(path, sizeof path, "%s", p->model);
    if (rc == DF_OK && is_hash(p->model) && (rc = ctx->fetch(ctx, p->model, path, sizeof path, err)) != DF_OK)
        *retryable = rc == DF_E_IO;
    df_dtype weights = p->weights_int8 ? DF_I8 : p->weights_f32 ? DF_F32 : DF_F16;
    /* 8-bit weights take LoRAs beside them only (nothing to merge into). */
    const int unmerged = p->lora_unmerged || weights == DF_I8;
    /* The LoRAs: local paths, artifacts fetched like models. */
    char (*lora_paths)[4200] = p->n_loras ? calloc(p->n_loras, sizeof *lora_paths) : NULL;
    if (rc == DF_OK && p->n_loras && !lora_paths)
        rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
    for (size_t i = 0; rc == DF_OK && i < p->n_loras; i++) {
        snprintf(lora_paths[i], sizeof lora_paths[i], "%s", p->loras[i]->path);
        if (is_hash(p->loras[i]->path) &&
            (rc = ctx->fetch(ctx, p->loras[i]->path, lora_paths[i], sizeof lora_paths[i], err)) != DF_OK)
            *retryable = rc == DF_E_IO;
    }
    /* What is loaded: the model, its storage type and the LoRAs merged in;
     * attached (unmerged) LoRAs are swapped on the loaded model instead. */
    char key[sizeof ((df_task_resident *)0)->key], loras[sizeof ((loaded *)0)->loras] = "";
    size_t kl = rc == DF_OK ? (size_t)snprintf(key, sizeof key, "%s|%s|%s|%s", path, p->tokenizer ? p->tokenizer : "",
                                               df_dtype_name(weights), unmerged ? "attach" : "merge")
                            : 0, ll = 0;
    for (size_t i = 0; rc == DF_OK && i < p->n_loras && ll < sizeof loras; i++)
        ll += (size_t)snprintf(loras + ll, sizeof loras - ll, "|%s:%g", lora_paths[i], p->loras[i]->scale);
    if (rc == DF_OK && !unmerged && kl < sizeof key)
        kl += (size_t)snprintf(key + kl, sizeof key - kl, "%s", loras);
    if (rc == DF_OK && (kl >= sizeof key || ll >= sizeof loras))
        rc = df_error_set(err, DF_E_INVALID, "generate: model, tokenizer and LoRA paths are too long");
    loaded *l = NULL, *own = NULL;
    if (rc == DF_OK) {
        df_task_resident *r = ctx->resident;
        if (r && r->obj && strcmp(r->key, key) == 0) {
            l = r->obj;
            if (unmerged && strcmp(l->loras, loras) != 0) { /* other LoRAs: swap them */
                df_info("generate: %zu LoRA%s swapped in on the resident model", p->n_loras, p->n_loras == 1 ? "" : "s");
                l->loras[0] = '\0';
                rc = df_generator_clear_loras(l->gen, err);
                for (size_t i = 0; rc == DF_OK && i < p->n_loras; i++)
                    rc = df_generator_add_lora(l->gen, l->batch, lora_paths[i], p->loras[i]->scale, err);
                if (rc == DF_OK)
                    snprintf(l->loras, sizeof l->loras, "%s", loras);
                else /* half a set attached: start over next time */
                    df_task_resident_release(r), l = NULL;
            }
        } else {
            if (r) /* one model resident at a time: the device's memory is for this one */
                df_task_resident_release(r);
            l = load(path, p->tokenizer && *p->tokenizer ? p->tokenizer : NULL, weights, dev, xfer, err);
            if (!l)
                rc = err && err->code ? err->code : DF_E_INVALID;
            if (rc == DF_OK)
                rc = df_generator_set_lora_mode(l->gen, unmerged, err);
            for (size_t i = 0; rc == DF_OK && i < p->n_loras; i++)
                rc = df_generator_add_lora(l->gen, l->batch, lora_paths[i], p->loras[i]->scale, err);
            if (rc == DF_OK)
                snprintf(l->loras, sizeof l->loras, "%s", loras);
            if (rc != DF_OK) {
                loaded_free(l);
                l = NULL;
            } else if (r) {
                snprintf(r->key, sizeof r->key, "%s", key);
                r->obj = l;
                r->destroy = loaded_free;
            } else {
                own = l;
            }
            *retryable = rc == DF_E_DEVICE_MEMORY;
        }
    }
    df_gen_params gp = {
        .prompt = p->prompt, .negative_prompt = p->has_negative ? p->negative_prompt : NULL,
        .width = p->width, .height = p->height, .steps = (int)p->steps, .guidance = p->guidance,
        .sampler = (df_sampler)sampler, .seed = p->seed + p->first, .count = p->count,
        .original_w = p->original_width, .original_h = p->original_height, .crop_left = p->crop_left,
        .crop_top = p->crop_top,
    };
    /* Given initial noise: this task's images, f32 little-endian. */
    float *init = NULL;
    if (rc == DF_OK && p->init_noise) {
        const Dreamfleet__Tensor *t = p->init_noise;
        uint64_t want = 4ull * p->count * (p->height / 8) * (p->width / 8);
        if (t->dtype != DREAMFLEET__DTYPE__F32 || t->data.len != want * 4)
            rc = df_error_set(err, DF_E_INVALID, "generate: init_noise is not f32 [%u, 4, %u, %u]", p->count,
                              p->height / 8, p->width / 8);
        else if (!(init = malloc(want * sizeof *init)))
            rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
        else {
            memcpy(init, t->data.data, want * 4);
            gp.init_noise = init;
        }
    }
    if (rc == DF_OK)
        rc = df_generate_check(l->gen, &gp, err);
    uint64_t nlat = 0, npix = 3ull * p->width * p->height;
    float *latents = NULL;
    uint8_t *rgb = NULL;
    if (rc == DF_OK) {
        nlat = 4ull * (p->width / 8) * (p->height / 8);
        latents = malloc(p->count * nlat * sizeof *latents);
        rgb = malloc(p->count * npix);
        if (!latents || !rgb)
            rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    progress_ctx pc = {ctx, p->count, p->height / 8, p->width / 8};
    if (rc == DF_OK) {
        rc = df_generate(l->gen, l->batch, &gp, latents, rgb, on_step, &pc, err);
        *retryable = rc == DF_E_DEVICE_MEMORY || rc == DF_E_VULKAN;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;

    Dreamfleet__GenerateResult res = DREAMFLEET__GENERATE_RESULT__INIT;
    Dreamfleet__GeneratedImage *imgs = rc == DF_OK ? calloc(p->count, sizeof *imgs) : NULL;
    Dreamfleet__GeneratedImage **ptrs = rc == DF_OK ? calloc(p->count, sizeof *ptrs) : NULL;
    Dreamfleet__Tensor *lt = rc == DF_OK ? calloc(p->count, sizeof *lt) : NULL;
    uint64_t shape[4] = {1, 4, p->height / 8, p->width / 8};
    if (rc == DF_OK && (!imgs || !ptrs || !lt))
        rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
    for (uint32_t i = 0; rc == DF_OK && i < p->count; i++) {
        uint32_t index = p->first + i;
        uint64_t seed = p->seed + index;
        /* A1111's layout: prompt, the negative prompt's line only when one
         * was given, then the settings. */
        char text[6000], neg[2100] = "";
        if (p->has_negative)
            snprintf(neg, sizeof neg, "\nNegative prompt: %s", p->negative_prompt);
        snprintf(text, sizeof text,
                 "%s%s\nSteps: %u, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %ux%u, Model: %s, Version: dreamfleet %s",
                 p->prompt, neg, p->steps, display_name((df_sampler)sampler), p->guidance, (unsigned long long)seed,
                 p->width, p->height, p->model, DF_ENGINE_VERSION);
        dreamfleet__generated_image__init(&imgs[i]);
        ptrs[i] = &imgs[i];
        imgs[i].index = index;
        imgs[i].seed = seed;
        imgs[i].seconds = secs / p->count;
        imgs[i].format = (char *)df_image_format_name(format);
        rc = df_image_encode(format, rgb + i * npix, p->width, p->height, (int)p->quality, text, &imgs[i].image.data,
                             &imgs[i].image.len, err);
        if (p->save_latents) {
            dreamfleet__tensor__init(&lt[i]);
            lt[i].name = "latents";
            lt[i].n_shape = 4;
            lt[i].shape = shape;
            lt[i].dtype = DREAMFLEET__DTYPE__F32;
            lt[i].data.data = (uint8_t *)(latents + i * nlat);
            lt[i].data.len = nlat * 4;
            imgs[i].latents = &lt[i];
        }
    }
    if (rc == DF_OK) {
        res.worker = (char *)ctx->worker_name;
        res.device = (char *)df_vk_device_info_of(dev)->name;
        res.n_images = p->count;
        res.images = ptrs;
        *out_len = dreamfleet__generate_result__get_packed_size(&res);
        *out = malloc(*out_len ? *out_len : 1);
        if (!*out)
            rc = df_error_set(err, DF_E_NOMEM, "generate: out of memory");
        else
            dreamfleet__generate_result__pack(&res, *out);
    }
    for (uint32_t i = 0; imgs && i < p->count; i++)
        free(imgs[i].image.data);
    free(imgs), free(ptrs), free(lt), free(latents), free(rgb), free(init), free(lora_paths);
    loaded_free(own);
    dreamfleet__generate_params__free_unpacked(p, NULL);
    return rc;
}
