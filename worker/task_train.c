/*  task_train.c - see task_train.h. */
#include "task_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifact_store.h"
#include "dreamfleet.pb-c.h"
#include "log.h"
#include "image_grid.h"
#include "png_write.h"
#include "train_exchange.h"
#include "train_lora.h"
#include "train_share.h"
#include "vk_device.h"

typedef struct {
    df_task_ctx *ctx;
} progress_ctx;

static int on_step(void *vp, uint64_t step, uint64_t steps, float loss, float lr)
{
    progress_ctx *p = vp;
    if (p->ctx->cancelled && atomic_load(p->ctx->cancelled))
        return 1;
    if (p->ctx->progress) {
        char msg[96];
        snprintf(msg, sizeof msg, "step %llu/%llu, loss %.4f, lr %.3g", (unsigned long long)step,
                 (unsigned long long)steps, loss, lr);
        p->ctx->progress(p->ctx, (float)step / (float)steps, msg);
    }
    return 0;
}

/*  A checkpoint into the coordinator's artifact store, reported so a retry
 *  after any failure goes on from it. */
static int store_checkpoint(void *vctx, const char *path, uint64_t step, df_error_t *err)
{
    df_task_ctx *ctx = vctx;
    char hex[65];
    int rc = ctx->upload(ctx, path, hex, err);
    if (rc == DF_OK) {
        ctx->checkpoint(ctx, hex);
        df_info("train: checkpoint at step %llu stored as %.12s", (unsigned long long)step, hex);
    }
    return rc;
}

/*  Validation images: into the grid (a row per validation), and each as a
 *  preview for whoever watches the task. */
typedef struct {
    df_task_ctx *ctx;
    df_image_grid_t *grid;
    uint32_t row;
    uint64_t last_step;
} validation_ctx;

static int on_validation(void *vctx, uint64_t step, uint32_t prompt, const uint8_t *rgb, uint32_t width,
                         uint32_t height, df_error_t *err)
{
    validation_ctx *v = vctx;
    if (v->last_step && step != v->last_step)
        v->row++;
    v->last_step = step;
    int rc = df_image_grid_put(v->grid, v->row, prompt, rgb, width, height, err);
    uint32_t gw, gh;
    const uint8_t *g = rc == DF_OK ? df_image_grid_rgb(v->grid, &gw, &gh) : NULL;
    if (g && v->ctx->preview) { /* the grid's newest row */
        uint32_t cell_h = gh / df_image_grid_rows(v->grid);
        uint8_t *png = NULL;
        size_t len = 0;
        if (df_png_encode(g + 3ull * gw * cell_h * v->row, gw, cell_h, NULL, 0, &png, &len, NULL) == DF_OK)
            v->ctx->preview(v->ctx, png, len);
        free(png);
    }
    df_info("train: validation image %u after step %llu", prompt, (unsigned long long)step);
    return rc;
}

/*  "attn,ff,proj,conv" to DF_LORA_* bits. */
static int parse_targets(const char *s, unsigned *out, df_error_t *err)
{
    *out = 0;
    if (!s || !*s) {
        *out = DF_LORA_ATTN;
        return DF_OK;
    }
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "attn") == 0)
            *out |= DF_LORA_ATTN;
        else if (strcmp(t, "ff") == 0)
            *out |= DF_LORA_FF;
        else if (strcmp(t, "proj") == 0)
            *out |= DF_LORA_PROJ;
        else if (strcmp(t, "conv") == 0)
            *out |= DF_LORA_CONV;
        else
            return df_error_set(err, DF_E_INVALID, "train: unknown LoRA target '%s' (attn, ff, proj, conv)", t);
    }
    return DF_OK;
}

static int slurp(const char *path, uint8_t **data, size_t *len, df_error_t *err)
{
    FILE *f = fopen(path, "rb");
    long n = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    *data = n >= 0 ? malloc((size_t)n + 1) : NULL;
    int ok = *data && fseek(f, 0, SEEK_SET) == 0 && fread(*data, 1, (size_t)n, f) == (size_t)n;
    if (f)
        fclose(f);
    if (!ok) {
        free(*data);
        *data = NULL;
        return df_error_set(err, DF_E_IO, "train: cannot read back %s", path);
    }
    *len = (size_t)n;
    return DF_OK;
}

int df_task_run_train(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                      int *retryable, df_error_t *err)
{
    *retryable = 0;
    Dreamfleet__TrainParams *p = dreamfleet__train_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "train: parameters are not a TrainParams message");
    int rc = DF_OK;
    unsigned targets = 0;
    int sched = df_lr_schedule_parse(p->lr_schedule && *p->lr_schedule ? p->lr_schedule : "constant");
    if (p->n_images == 0 || p->n_captions != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "train: %zu photos and %zu captions", p->n_images, p->n_captions);
    if (rc == DF_OK && sched < 0)
        rc = df_error_set(err, DF_E_INVALID, "train: unknown learning-rate schedule '%s'", p->lr_schedule);
    if (rc == DF_OK && p->optimizer && *p->optimizer && strcmp(p->optimizer, "adamw") &&
        strcmp(p->optimizer, "adamw8bit"))
        rc = df_error_set(err, DF_E_INVALID, "train: unknown optimizer '%s' (adamw or adamw8bit)", p->optimizer);
    if (rc == DF_OK)
        rc = parse_targets(p->targets, &targets, err);
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    if (rc == DF_OK && (rc = ctx->device(ctx, &dev, &xfer, err)) != DF_OK)
        *retryable = 1;
    /* Training wants the whole device: a model kept for generation goes. */
    if (rc == DF_OK && ctx->resident)
        df_task_resident_release(ctx->resident);
    char path[4200];
    snprintf(path, sizeof path, "%s", p->model);
    if (rc == DF_OK && df_artifacts_valid_hash(p->model) &&
        (rc = ctx->fetch(ctx, p->model, path, sizeof path, err)) != DF_OK)
        *retryable = rc == DF_E_IO;
    /* Sample caches made ahead (an encode job): fetched in place of encoding. */
    const size_t ncache = p->n_samples + p->n_class_samples;
    char (*cache_paths)[4200] = ncache ? calloc(ncache, sizeof *cache_paths) : NULL;
    const char **caches = ncache ? calloc(ncache, sizeof *caches) : NULL;
    if (rc == DF_OK && (p->n_samples != (ncache ? p->n_images : 0) ||
                        p->n_class_samples != (ncache ? p->n_class_images : 0)))
        rc = df_error_set(err, DF_E_INVALID, "train: %zu sample caches for %zu photos and %zu for %zu class images",
                          p->n_samples, p->n_images, p->n_class_samples, p->n_class_images);
    else if (rc == DF_OK && ncache && (!cache_paths || !caches))
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    for (size_t i = 0; rc == DF_OK && i < ncache; i++) {
        const char *h = i < p->n_samples ? p->samples[i] : p->class_samples[i - p->n_samples];
        if (!df_artifacts_valid_hash(h))
            rc = df_error_set(err, DF_E_INVALID, "train: sample cache '%.80s' is not an artifact's sha256", h);
        else if ((rc = ctx->fetch(ctx, h, cache_paths[i], sizeof cache_paths[i], err)) != DF_OK)
            *retryable = rc == DF_E_IO;
        caches[i] = cache_paths[i];
    }
    df_sdxl_t *model = rc == DF_OK ? df_sdxl_open(path, p->tokenizer && *p->tokenizer ? p->tokenizer : NULL, err) : NULL;
    if (rc == DF_OK && !model)
        rc = err && err->code ? err->code : DF_E_INVALID;
    df_vk_batch_t *batch = rc == DF_OK ? df_vk_batch_new(dev, 0, err) : NULL;
    if (rc == DF_OK && !batch)
        rc = err && err->code ? err->code : DF_E_NOMEM;
    char kohya[64], peft[64];
    snprintf(kohya, sizeof kohya, "/tmp/dreamfleet-train-XXXXXX");
    snprintf(peft, sizeof peft, "/tmp/dreamfleet-train-XXXXXX");
    int fk = rc == DF_OK ? mkstemp(kohya) : -1, fp = rc == DF_OK ? mkstemp(peft) : -1;
    if (rc == DF_OK && (fk < 0 || fp < 0))
        rc = df_error_set(err, DF_E_IO, "train: no temporary files in /tmp");
    if (fk >= 0)
        close(fk);
    if (fp >= 0)
        close(fp);
    float *losses = rc == DF_OK ? calloc(p->steps ? p->steps : 1, sizeof *losses) : NULL;
    if (rc == DF_OK && !losses)
        rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
    /* A member of a training group exchanges with the others each round. */
    df_train_exchange_t *ex = NULL;
    if (rc == DF_OK && p->members > 1) {
        char job_id[64];
        snprintf(job_id, sizeof job_id, "%s", ctx->task_id);
        char *dot = strrchr(job_id, '.');
        if (dot)
            *dot = '\0';
        int enc = df_delta_encoding_parse(p->delta_encoding && *p->delta_encoding ? p->delta_encoding : "f32");
        df_train_exchange_opts eo = {.ctx = ctx, .job_id = job_id, .encoding = (df_delta_encoding)(enc < 0 ? 0 : enc)};
        if (enc < 0)
            rc = df_error_set(err, DF_E_INVALID, "train: unknown delta encoding '%s'", p->delta_encoding);
        else if (p->member >= p->members)
            rc = df_error_set(err, DF_E_INVALID, "train: member %u of %u", p->member, p->members);
        else if (!(ex = df_train_exchange_new(&eo, err)))
            rc = err && err->code ? err->code : DF_E_NOMEM;
        if (ex) {
            df_train_sync *sync = df_train_exchange_sync(ex);
            uint64_t per_step = (uint64_t)(p->batch ? p->batch : 1) * (p->accumulate ? p->accumulate : 1);
            df_train_share(p->member, p->members, per_step, &sync->first, &sync->count);
            sync->local_steps = p->local_steps ? p->local_steps : 1;
        }
    }
    /* Checkpoints every N steps, and a retry going on from the last one. One
     * worker only: a training group's members leave it instead of retrying. */
    char ckpt[64] = "", resume_path[4200] = "";
    if (rc == DF_OK && !ex && p->checkpoint_every && ctx->upload && ctx->checkpoint) {
        snprintf(ckpt, sizeof ckpt, "/tmp/dreamfleet-ckpt-XXXXXX");
        int fd = mkstemp(ckpt);
        if (fd < 0)
            ckpt[0] = '\0';
        else
            close(fd);
    }
    if (rc == DF_OK && !ex && ctx->resume && df_artifacts_valid_hash(ctx->resume)) {
        df_error_t ferr;
        df_error_clear(&ferr);
        if (ctx->fetch(ctx, ctx->resume, resume_path, sizeof resume_path, &ferr) == DF_OK)
            df_info("train: attempt %u goes on from checkpoint %.12s", ctx->attempt, ctx->resume);
        else { /* lost with the store: start over, which gives the same LoRA, later */
            df_warn("train: checkpoint %.12s: %s; starting over", ctx->resume, ferr.msg);
            resume_path[0] = '\0';
        }
    }
    /* Validation images: a single worker, or a group's first member (with one
     * local step a round, every member holds the group's LoRA). */
    validation_ctx vc = {.ctx = ctx};
    const uint32_t vw = p->validation_width ? p->validation_width : p->resolution;
    const uint32_t vh = p->validation_height ? p->validation_height : p->resolution;
    const uint32_t cell = 256, cw = vw >= vh ? cell : cell * vw / vh, ch = vh >= vw ? cell : cell * vh / vw;
    if (rc == DF_OK && p->n_validation_prompts && (!ex || p->member == 0) &&
        !(vc.grid = df_image_grid_new((uint32_t)p->n_validation_prompts, cw ? cw : 1, ch ? ch : 1, err)))
        rc = err && err->code ? err->code : DF_E_INVALID;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == DF_OK) {
        df_train_params tp = {
            .images = (const char *const *)p->images, .captions = (const char *const *)p->captions,
            .count = (uint32_t)p->n_images, .resolution = p->resolution, .steps = p->steps,
            .batch = p->batch ? p->batch : 1, .accumulate = p->accumulate, .flip = p->flip, .buckets = p->buckets,
            .lora = {.rank = p->rank ? p->rank : 16, .alpha = p->alpha, .targets = targets, .seed = p->seed,
                     .weight_decay = 1e-2f, .state8 = p->optimizer && strcmp(p->optimizer, "adamw8bit") == 0,
                     .text_lr_ratio = p->text_encoder_lr > 0 && p->lr > 0 ? p->text_encoder_lr / p->lr : 0},
            .lr = {(df_lr_schedule)sched, p->lr, p->warmup, p->steps},
            .noise = {.seed = p->seed, .noise_offset = p->noise_offset, .min_snr_gamma = p->min_snr_gamma},
            .weights = p->weights_int8 ? DF_I8 : p->weights_f32 ? DF_F32 : DF_F16,
            .train_text = p->train_text_encoder,
            .full = p->full,
            .sync = ex ? df_train_exchange_sync(ex) : NULL,
            .class_images = (const char *const *)p->class_images,
            .class_captions = (const char *const *)p->class_captions, .class_count = (uint32_t)p->n_class_images,
            .prior_weight = p->n_class_images ? (p->prior_weight > 0 ? p->prior_weight : 1.0f) : 0.0f,
            .base_model = p->model, .base_model_identity = p->model_identity, .token = p->token,
            .class_word = p->class_word,
            .caches = ncache ? caches : NULL, .class_caches = p->n_class_samples ? caches + p->n_samples : NULL,
            /* Full fine-tuning keeps no checkpoints (its state is the whole model's, four times). */
            .checkpoint = ckpt[0] && !p->full ? ckpt : NULL, .checkpoint_every = p->checkpoint_every,
            .on_checkpoint = ckpt[0] && !p->full ? store_checkpoint : NULL, .checkpoint_ctx = ctx,
            .resume = resume_path[0] ? resume_path : NULL,
            .validation_prompts = vc.grid ? (const char *const *)p->validation_prompts : NULL,
            .n_validation = vc.grid ? (uint32_t)p->n_validation_prompts : 0, .validate_every = p->validate_every,
            .validation_steps = p->validation_steps, .validation_width = vw, .validation_height = vh,
            .on_validation = on_validation, .validation_ctx = &vc,
        };
        progress_ctx pc = {ctx};
        rc = df_train_lora(model, dev, xfer, batch, &tp, on_step, &pc, kohya, peft, losses, err);
        /* Out of device memory, or the group's coordinator out of reach. */
        *retryable = rc == DF_E_DEVICE_MEMORY || (ex && rc == DF_E_IO);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    Dreamfleet__TrainResult res = DREAMFLEET__TRAIN_RESULT__INIT;
    /* Every member of a group holds the same LoRA: one returns the files. */
    const int keeper = !ex || df_train_exchange_stats_get(ex).keeper == p->member;
    char kohya_hex[65] = "", peft_hex[65] = "";
    if (rc == DF_OK && keeper && ctx->upload) { /* to the artifact store: larger than a message may be */
        rc = ctx->upload(ctx, kohya, kohya_hex, err);
        if (rc == DF_OK && !p->full) /* full fine-tuning: the UNet in the first file, no second */
            rc = ctx->upload(ctx, peft, peft_hex, err);
        *retryable = rc != DF_OK;
        res.lora_kohya_sha256 = kohya_hex, res.lora_peft_sha256 = peft_hex;
    } else if (rc == DF_OK && keeper) {
        rc = slurp(kohya, &res.lora_kohya.data, &res.lora_kohya.len, err);
        if (rc == DF_OK && !p->full)
            rc = slurp(peft, &res.lora_peft.data, &res.lora_peft.len, err);
    }
    /* The validation grid: to the artifact store too (a grid of large
     * images is larger than a message may be), else inline. */
    char grid_hex[65] = "", grid_path[64] = "";
    uint32_t gw = 0, gh = 0;
    const uint8_t *grid = rc == DF_OK && vc.grid ? df_image_grid_rgb(vc.grid, &gw, &gh) : NULL;
    if (grid && ctx->upload) {
        snprintf(grid_path, sizeof grid_path, "/tmp/dreamfleet-grid-XXXXXX");
        int fd = mkstemp(grid_path);
        if (fd >= 0)
            close(fd);
        rc = fd >= 0 ? df_png_write(grid_path, grid, gw, gh, NULL, 0, err)
                     : df_error_set(err, DF_E_IO, "train: no temporary file in /tmp");
        if (rc == DF_OK)
            rc = ctx->upload(ctx, grid_path, grid_hex, err);
        res.validation_grid_sha256 = grid_hex;
        unlink(grid_path);
    } else if (grid) {
        rc = df_png_encode(grid, gw, gh, NULL, 0, &res.validation_grid.data, &res.validation_grid.len, err);
    }
    if (rc == DF_OK) {
        res.worker = (char *)ctx->worker_name;
        res.device = (char *)df_vk_device_info_of(dev)->name;
        res.n_losses = p->steps;
        res.losses = losses;
        res.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (ex) {
            df_train_exchange_stats st = df_train_exchange_stats_get(ex);
            res.rounds = st.rounds, res.members = st.members;
            res.bytes_exchanged = st.group_bytes, res.raw_bytes = st.group_raw;
        }
        *out_len = dreamfleet__train_result__get_packed_size(&res);
        if (!(*out = malloc(*out_len ? *out_len : 1)))
            rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
        else
            dreamfleet__train_result__pack(&res, *out);
        df_info("train: %u steps on %zu photos in %.1f s, final loss %.4f", p->steps, p->n_images, res.seconds,
                losses[p->steps - 1]);
    }
    if (kohya[0] && strcmp(kohya + strlen(kohya) - 6, "XXXXXX") != 0)
        unlink(kohya);
    if (peft[0] && strcmp(peft + strlen(peft) - 6, "XXXXXX") != 0)
        unlink(peft);
    if (ckpt[0])
        unlink(ckpt);
    free(res.lora_kohya.data), free(res.lora_peft.data), free(losses);
    free(cache_paths), free(caches);
    df_train_exchange_destroy(&ex);
    df_image_grid_destroy(&vc.grid);
    free(res.validation_grid.data);
    df_vk_batch_destroy(&batch);
    df_sdxl_destroy(&model);
    dreamfleet__train_params__free_unpacked(p, NULL);
    return rc;
}
