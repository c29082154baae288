/*  train_cmd.c - `dreamfleet train`: a DreamBooth LoRA from a folder of
 *  photos, trained by the cluster (or the embedded worker), written as
 *  files the rest of the SDXL world loads.
 *
 *    dreamfleet train --data DIR --model PATH -o OUT
 *        [--prep [--captioner DIR [--caption-prompt TEXT] [--caption-beams N] [--caption-min-length N]]]
 *        [--token TOK] [--class WORD] [--resolution PX]
 *        [--steps N] [--batch N] [--grad-accum N] [--rank R] [--alpha A] [--targets attn,ff,proj,conv] [--lr X]
 *        [--lr-schedule constant|constant_with_warmup|cosine] [--warmup N] [--seed N] [--noise-offset X]
 *        [--min-snr-gamma X] [--flip] [--buckets] [--dtype f16|f32|int8] [--optimizer adamw|adamw8bit]
 *        [--train-text-encoder [--text-encoder-lr X]] [--full] [--tokenizer DIR]
 *        [--workers N] [--local-steps K] [--delta f32|f16|bf16|int8]
 *        [--class-data DIR | --class-images N] [--class-prompt TEXT] [--class-steps N] [--prior-weight X]
 *        [--checkpoint-every N] [--validation-prompt TEXT]... [--validate-every N] [--validation-steps N]
 *        [--validation-size WxH]
 *
 *  Validation: an image of each --validation-prompt (same seed each time)
 *  every --validate-every steps and after the last, through the LoRA as it
 *  stands; shown as previews while the job runs (watch --previews) and
 *  written to OUT/validation.png, a row per validation.
 *
 *  Every N steps (default 100; 0: never) the worker stores a checkpoint in
 *  the coordinator's artifact store; when it fails or is lost, the next
 *  attempt goes on from the last one, with the same result.
 *
 *  --buckets trains each photo whole at its aspect-ratio bucket (sizes of
 *  about resolution^2 in steps of 32 px) instead of its centre square.
 *
 *  Prior preservation (DreamBooth): --class-data DIR's photos (captions as
 *  for --data, else --class-prompt, by default "a photo of a WORD"), or with
 *  --class-images N and no DIR, N images the cluster generates from the
 *  class prompt into OUT/class-images first; each sample is paired with one
 *  whose loss counts --prior-weight times (default 1).
 *
 *  --workers N trains data-parallel: N workers split every step's samples
 *  and exchange through the coordinator every K steps (1: gradients before
 *  each step, exactly as one worker with the whole batch; more: the change
 *  of the LoRA over K local steps), encoded as --delta says.
 *
 *  DIR's PNG, JPEG, WebP and HEIC photos, in name order, each with its caption from a
 *  sidecar PHOTO.txt or PHOTO.caption when there is one, else "a photo of
 *  TOK WORD". A set `dreamfleet prep` made trains as it is (its images/
 *  and their captions); --prep prepares DIR first as a job of the cluster's
 *  (one task per photo), into OUT/dataset, and trains on what it accepted;
 *  --captioner DIR captions the photos without a caption file with a BLIP
 *  model there (see `dreamfleet prep`). OUT receives lora.safetensors (kohya's format),
 *  lora-peft.safetensors (PEFT's, for diffusers), loss.csv and loss.png.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "artifact_store.h"
#include "caption.h"
#include "cli.h"
#include "commands.h"
#include "delta_codec.h"
#include "dreamfleet.pb-c.h"
#include "file_identity.h"
#include "fsutil.h"
#include "loss_plot.h"
#include "lr_schedule.h"
#include "prep.h"
#include "prep_job.h"
#include "uploads.h"
#include "wire.h"

/*  The photos and class images through the VAE and text encoders once, as
 *  an encode job of their own (one task per photo, spread over the
 *  workers, each photo's cache kept in the result cache for later runs);
 *  the train job then names the sample caches in place of encoding the
 *  photos in each of its tasks. *samples gets n + nc artifact hashes. */
static int encode_samples(df_cli *cli, const Dreamfleet__TrainParams *t, Dreamfleet__PhotoGeometry **geo,
                          char ***samples_out)
{
    const size_t n = t->n_images, nc = t->n_class_images, all = n + nc;
    Dreamfleet__EncodeParams e = DREAMFLEET__ENCODE_PARAMS__INIT;
    e.model = t->model, e.tokenizer = t->tokenizer, e.model_identity = t->model_identity;
    e.resolution = t->resolution, e.buckets = t->buckets, e.flip = t->flip;
    e.latents_only = t->train_text_encoder;
    e.weights_f32 = t->weights_f32 && !t->weights_int8;
    char **images = calloc(all, sizeof *images), **captions = calloc(all, sizeof *captions);
    char **ids = calloc(all, sizeof *ids);
    int rc = images && captions && ids ? DF_EXIT_OK : DF_EXIT_FAILED;
    for (size_t i = 0; rc == DF_EXIT_OK && i < all; i++) {
        images[i] = i < n ? t->images[i] : t->class_images[i - n];
        captions[i] = i < n ? t->captions[i] : t->class_captions[i - n];
    }
    /* The photos go to the coordinator's store: workers anywhere read them
     * by hash, and the hash is the photo's identity for the result cache (a
     * photo that could not be uploaded is encoded afresh, never wrongly reused). */
    char **refs = NULL;
    if (rc == DF_EXIT_OK)
        rc = df_cli_upload_files(cli, images, all, "photos", &refs);
    for (size_t i = 0; rc == DF_EXIT_OK && i < all; i++) {
        if (!(ids[i] = calloc(1, DF_SHA256_HEX)))
            rc = DF_EXIT_FAILED;
        else if (df_artifacts_valid_hash(refs[i]))
            memcpy(ids[i], refs[i], DF_SHA256_HEX);
    }
    e.n_images = e.n_captions = e.n_image_identities = e.n_names = all;
    e.images = refs, e.names = images, e.captions = captions, e.image_identities = ids;
    /* The photos' own geometry where prep recorded it, the class images' none. */
    Dreamfleet__PhotoGeometry none = DREAMFLEET__PHOTO_GEOMETRY__INIT;
    Dreamfleet__PhotoGeometry **g = geo ? calloc(all, sizeof *g) : NULL;
    for (size_t i = 0; g && i < all; i++)
        g[i] = i < n && geo[i] ? geo[i] : &none;
    if (geo && !g)
        rc = DF_EXIT_FAILED;
    e.n_geometry = g ? all : 0, e.geometry = g;
    char id[128] = "";
    size_t len = rc == DF_EXIT_OK ? dreamfleet__encode_params__get_packed_size(&e) : 0;
    uint8_t *buf = rc == DF_EXIT_OK ? malloc(len ? len : 1) : NULL;
    if (rc == DF_EXIT_OK && !buf)
        rc = DF_EXIT_FAILED;
    if (rc == DF_EXIT_OK) {
        dreamfleet__encode_params__pack(&e, buf);
        if (!cli->json)
            fprintf(stderr, "encoding %zu photo%s once for every worker\n", all, all == 1 ? "" : "s");
        rc = df_cli_submit(cli, "encode", buf, len, 0, 1, id, sizeof id);
    }
    free(buf);
    Dreamfleet__Reply *rep = NULL;
    if (rc == DF_EXIT_OK)
        rc = df_cli_get_job(cli, id, 0, &rep);
    Dreamfleet__EncodeResult *r = NULL;
    if (rc == DF_EXIT_OK && !(r = dreamfleet__encode_result__unpack(NULL, rep->job->result.len, rep->job->result.data))) {
        df_cli_error("%s: the coordinator returned no sample caches", id);
        rc = DF_EXIT_FAILED;
    } else if (rc == DF_EXIT_OK && r->n_samples != all) {
        df_cli_error("%s: %zu sample caches for %zu photos", id, r->n_samples, all);
        rc = DF_EXIT_FAILED;
    }
    char **samples = rc == DF_EXIT_OK ? calloc(all + 1, sizeof *samples) : NULL;
    for (size_t i = 0; samples && i < all; i++)
        if (!(samples[i] = strdup(r->samples[i])))
            rc = DF_EXIT_FAILED;
    if (rc == DF_EXIT_OK && !samples)
        rc = DF_EXIT_FAILED;
    if (rc != DF_EXIT_OK && samples) {
        for (size_t i = 0; i < all; i++)
            free(samples[i]);
        free(samples);
        samples = NULL;
    }
    *samples_out = samples;
    if (r)
        dreamfleet__encode_result__free_unpacked(r, NULL);
    if (rep)
        df_wire_free(&rep->base);
    for (size_t i = 0; ids && i < all; i++)
        free(ids[i]);
    for (size_t i = 0; refs && i < all; i++)
        free(refs[i]);
    free(images), free(captions), free(ids), free(g), free(refs);
    return rc;
}

/*  What prep recorded of each photo of a prepared set (dir/metadata.jsonl)
 *  that SDXL conditions on: *geo gets one entry per image (NULL where the
 *  metadata has none), or stays NULL when there is no metadata. A line that
 *  cannot be read is passed over: the image then conditions on itself. */
static int read_geometry(const char *set_dir, char **images, size_t n, Dreamfleet__PhotoGeometry ***geo_out)
{
    *geo_out = NULL;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metadata.jsonl", set_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return DF_EXIT_OK;
    Dreamfleet__PhotoGeometry **geo = calloc(n + 1, sizeof *geo);
    int rc = geo ? DF_EXIT_OK : DF_EXIT_FAILED;
    char *line = NULL;
    size_t cap = 0;
    while (rc == DF_EXIT_OK && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        const char *file = NULL;
        int ow = 0, oh = 0, cl = 0, ct = 0;
        if (j && json_unpack(j, "{s:s, s:[i,i], s:[i,i]}", "file_name", &file, "sdxl_original", &ow, &oh,
                             "sdxl_crop", &cl, &ct) == 0 && ow > 0 && oh > 0 && cl >= 0 && ct >= 0) {
            const char *base = strrchr(file, '/');
            base = base ? base + 1 : file;
            for (size_t i = 0; i < n; i++) {
                const char *name = strrchr(images[i], '/');
                if (geo[i] || strcmp(name ? name + 1 : images[i], base) != 0)
                    continue;
                if (!(geo[i] = malloc(sizeof *geo[i]))) {
                    rc = DF_EXIT_FAILED;
                    break;
                }
                dreamfleet__photo_geometry__init(geo[i]);
                geo[i]->original_width = (uint32_t)ow, geo[i]->original_height = (uint32_t)oh;
                geo[i]->crop_left = (uint32_t)cl, geo[i]->crop_top = (uint32_t)ct;
            }
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (rc != DF_EXIT_OK) {
        for (size_t i = 0; geo && i < n; i++)
            free(geo[i]);
        free(geo);
        return rc;
    }
    *geo_out = geo;
    return DF_EXIT_OK;
}

static const char k_usage[] =
    "usage: dreamfleet train --data DIR --model PATH -o OUT\n"
    "         [--prep [--captioner DIR [--caption-prompt TEXT] [--caption-beams N] [--caption-min-length N]]]\n"
    "         [--token TOK] [--class WORD] [--resolution PX]\n"
    "         [--steps N] [--batch N] [--grad-accum N] [--rank R] [--alpha A] [--targets attn,ff,proj,conv] [--lr X]\n"
    "         [--lr-schedule constant|constant_with_warmup|cosine] [--warmup N] [--seed N] [--noise-offset X]\n"
    "         [--min-snr-gamma X] [--flip] [--buckets] [--dtype f16|f32|int8] [--optimizer adamw|adamw8bit]\n"
    "         [--train-text-encoder [--text-encoder-lr X]] [--full] [--tokenizer DIR]\n"
    "         [--workers N] [--local-steps K] [--delta f32|f16|bf16|int8]\n"
    "         [--class-data DIR | --class-images N] [--class-prompt TEXT] [--class-steps N] [--prior-weight X]\n"
    "         [--checkpoint-every N] [--validation-prompt TEXT]... [--validate-every N] [--validation-steps N]\n"
    "         [--validation-size WxH]";

static int write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        df_cli_error("%s: %s", path, strerror(errno));
    return ok ? 0 : -1;
}

/*  A file of the result (a LoRA, the validation grid): its bytes, or the artifact they were
 *  uploaded as (pulled through OUT/.store, as fetch does). */
static int save_output(df_cli *cli, const char *out, const ProtobufCBinaryData *bytes, const char *hash,
                     const char *path)
{
    if (!hash || !*hash)
        return write_file(path, bytes->data, bytes->len) ? DF_EXIT_FAILED : DF_EXIT_OK;
    char dir[PATH_MAX], from[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/.store", out);
    df_error_t err;
    df_error_clear(&err);
    df_artifacts_t *store = df_artifacts_new(dir, 0, &err);
    int rc = store && df_rpc_download(cli->rpc, hash, store, NULL, NULL, &err) == DF_OK ? DF_EXIT_OK : DF_EXIT_FAILED;
    if (rc == DF_EXIT_OK) {
        df_artifacts_path(store, hash, from, sizeof from);
        if (rename(from, path) != 0) {
            df_cli_error("%s: %s", path, strerror(errno));
            rc = DF_EXIT_FAILED;
        }
    } else {
        df_cli_error("%s", err.msg);
    }
    df_artifacts_destroy(&store);
    return rc;
}

/*  Frees the first n strings of list, and list (NULL-safe). */
static void free_list(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

/*  DIR's PNG, JPEG, WebP and HEIC photos in name order (absolute paths), each with its
 *  sidecar caption or else fallback. flag names the option in errors (NULL:
 *  quiet). DF_EXIT_USAGE when DIR cannot be read or holds no photos. */
static int list_photos(const char *flag, const char *dir, const char *fallback, char abs[PATH_MAX], char ***images_out,
                       char ***captions_out, size_t *count)
{
    *images_out = *captions_out = NULL;
    *count = 0;
    if (!realpath(dir, abs)) {
        if (flag)
            df_cli_error("%s %s: %s", flag, dir, strerror(errno));
        return DF_EXIT_USAGE;
    }
    /* A set `dreamfleet prep` made: its photos and captions are in images/. */
    char meta[PATH_MAX + 32];
    struct stat st;
    snprintf(meta, sizeof meta, "%s/metadata.jsonl", abs);
    const size_t alen = strlen(abs);
    if (stat(meta, &st) == 0 && alen + 8 < PATH_MAX) {
        snprintf(meta, sizeof meta, "%s/images", abs);
        if (stat(meta, &st) == 0 && S_ISDIR(st.st_mode))
            memcpy(abs + alen, "/images", 8);
    }
    DIR *d = opendir(abs);
    if (!d) {
        if (flag)
            df_cli_error("%s %s: %s", flag, dir, strerror(errno));
        return DF_EXIT_USAGE;
    }
    char **images = NULL, **captions = NULL;
    size_t n = 0, cap = 0;
    int rc = DF_EXIT_OK;
    for (struct dirent *e; rc == DF_EXIT_OK && (e = readdir(d));) {
        if (!df_has_ext(e->d_name, ".png") && !df_has_ext(e->d_name, ".jpg") && !df_has_ext(e->d_name, ".jpeg") &&
            !df_has_ext(e->d_name, ".webp") && !df_has_ext(e->d_name, ".heic") && !df_has_ext(e->d_name, ".heif"))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(images, cap * sizeof *grown);
            if (!grown) {
                rc = DF_EXIT_FAILED;
                break;
            }
            images = grown;
        }
        size_t len = strlen(abs) + strlen(e->d_name) + 2;
        if (!(images[n] = malloc(len)))
            rc = DF_EXIT_FAILED;
        else
            snprintf(images[n++], len, "%s/%s", abs, e->d_name);
    }
    closedir(d);
    if (rc == DF_EXIT_OK && n == 0) {
        if (flag)
            df_cli_error("%s %s: no PNG, JPEG, WebP or HEIC photos in it", flag, dir);
        rc = DF_EXIT_USAGE;
    }
    if (rc == DF_EXIT_OK) {
        df_sort_names(images, n);
        captions = calloc(n, sizeof *captions);
        for (size_t i = 0; captions && i < n; i++)
            if (!(captions[i] = df_caption_sidecar(images[i])))
                captions[i] = strdup(fallback);
        if (!captions)
            rc = DF_EXIT_FAILED;
    }
    if (rc != DF_EXIT_OK) {
        free_list(images, n);
        free_list(captions, captions ? n : 0);
        return rc;
    }
    *images_out = images, *captions_out = captions, *count = n;
    return DF_EXIT_OK;
}

int df_cmd_train(df_cli *cli, int argc, char **argv)
{
    enum { O_DATA = 1000, O_MODEL, O_TOKEN, O_CLASS, O_RES, O_STEPS, O_BATCH, O_RANK, O_ALPHA, O_TARGETS, O_LR,
           O_SCHED, O_WARMUP, O_SEED, O_OFFSET, O_SNR, O_DTYPE, O_TOK, O_ACCUM, O_FLIP, O_WORKERS, O_LOCAL,
           O_DELTA, O_PREP, O_CLASS_DATA, O_CLASS_PROMPT, O_CLASS_IMAGES, O_CLASS_STEPS, O_PRIOR, O_BUCKETS, O_CKPT, O_VPROMPT,
           O_VEVERY, O_VSTEPS, O_VSIZE, O_OPTIM, O_TRAIN_TEXT, O_TEXT_LR, O_FULL, O_CAPTIONER, O_CAPTION_PROMPT, O_CAPTION_BEAMS,
           O_CAPTION_MIN };
    static const struct option o[] = {
        {"data", required_argument, NULL, O_DATA},        {"model", required_argument, NULL, O_MODEL},
        {"token", required_argument, NULL, O_TOKEN},      {"class", required_argument, NULL, O_CLASS},
        {"resolution", required_argument, NULL, O_RES},   {"steps", required_argument, NULL, O_STEPS},
        {"batch", required_argument, NULL, O_BATCH},      {"rank", required_argument, NULL, O_RANK},
        {"alpha", required_argument, NULL, O_ALPHA},      {"targets", required_argument, NULL, O_TARGETS},
        {"lr", required_argument, NULL, O_LR},            {"lr-schedule", required_argument, NULL, O_SCHED},
        {"warmup", required_argument, NULL, O_WARMUP},    {"seed", required_argument, NULL, O_SEED},
        {"noise-offset", required_argument, NULL, O_OFFSET}, {"min-snr-gamma", required_argument, NULL, O_SNR},
        {"dtype", required_argument, NULL, O_DTYPE},      {"tokenizer", required_argument, NULL, O_TOK},
        {"grad-accum", required_argument, NULL, O_ACCUM}, {"output", required_argument, NULL, 'o'},
        {"prep", no_argument, NULL, O_PREP},              {"captioner", required_argument, NULL, O_CAPTIONER},
        {"caption-prompt", required_argument, NULL, O_CAPTION_PROMPT},
        {"caption-beams", required_argument, NULL, O_CAPTION_BEAMS},
        {"caption-min-length", required_argument, NULL, O_CAPTION_MIN},              {"flip", no_argument, NULL, O_FLIP},              {"workers", required_argument, NULL, O_WORKERS},
        {"local-steps", required_argument, NULL, O_LOCAL}, {"delta", required_argument, NULL, O_DELTA},
        {"class-data", required_argument, NULL, O_CLASS_DATA}, {"class-prompt", required_argument, NULL, O_CLASS_PROMPT},
        {"class-images", required_argument, NULL, O_CLASS_IMAGES}, {"class-steps", required_argument, NULL, O_CLASS_STEPS},
        {"prior-weight", required_argument, NULL, O_PRIOR}, {"buckets", no_argument, NULL, O_BUCKETS},
        {"checkpoint-every", required_argument, NULL, O_CKPT},
        {"validation-prompt", required_argument, NULL, O_VPROMPT}, {"validate-every", required_argument, NULL, O_VEVERY},
        {"validation-steps", required_argument, NULL, O_VSTEPS}, {"validation-size", required_argument, NULL, O_VSIZE},
        {"optimizer", required_argument, NULL, O_OPTIM},  {"train-text-encoder", no_argument, NULL, O_TRAIN_TEXT},
        {"text-encoder-lr", required_argument, NULL, O_TEXT_LR}, {"full", no_argument, NULL, O_FULL},
        {NULL, 0, NULL, 0},
    };
    Dreamfleet__TrainParams p = DREAMFLEET__TRAIN_PARAMS__INIT;
    p.resolution = 1024, p.steps = 500, p.batch = 1, p.rank = 16, p.lr = 1e-4f, p.lr_schedule = "constant";
    p.min_snr_gamma = 5;
    p.checkpoint_every = 100;
    const char *data = NULL, *model = NULL, *out = NULL, *token = "TOK", *klass = "person", *tokenizer = NULL;
    int prep = 0;
    df_prep_job_opts jo = {0};
    const char *class_data = NULL, *class_prompt = NULL;
    size_t class_count = 0;
    uint32_t class_steps = 25;
    float prior_weight = 1.0f;
    enum { MAX_VALIDATION = 16 };
    char *validation[MAX_VALIDATION];
    size_t nvalidation = 0;
    double v;
    int c;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "o:", o, NULL)) != -1) {
        switch (c) {
        case O_DATA: data = optarg; break;
        case O_MODEL: model = optarg; break;
        case O_TOKEN: token = optarg; break;
        case O_CLASS: klass = optarg; break;
        case O_TOK: tokenizer = optarg; break;
        case O_TARGETS: p.targets = optarg; break;
        case O_CLASS_DATA: class_data = optarg; break;
        case O_CLASS_PROMPT: class_prompt = optarg; break;
        case O_VPROMPT:
            if (nvalidation == MAX_VALIDATION) {
                df_cli_error("--validation-prompt: at most %d", MAX_VALIDATION);
                return DF_EXIT_USAGE;
            }
            validation[nvalidation++] = optarg;
            break;
        case O_VSIZE:
            if (sscanf(optarg, "%ux%u", &p.validation_width, &p.validation_height) != 2 || p.validation_width % 8 ||
                p.validation_height % 8 || p.validation_width < 64 || p.validation_height < 64 ||
                p.validation_width > 4096 || p.validation_height > 4096) {
                df_cli_error("--validation-size wants WxH, multiples of 8 from 64 to 4096, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            break;
        case 'o': out = optarg; break;
        case O_FLIP: p.flip = 1; break;
        case O_PREP: prep = 1; break;
        case O_CAPTIONER:
        case O_CAPTION_PROMPT:
        case O_CAPTION_BEAMS:
        case O_CAPTION_MIN:
            if (df_prep_caption_flag(c - O_CAPTIONER, optarg, &jo) != DF_EXIT_OK)
                return DF_EXIT_USAGE;
            break;
        case O_BUCKETS: p.buckets = 1; break;
        case O_DELTA:
            if (df_delta_encoding_parse(optarg) < 0) {
                df_cli_error("--delta: f32, f16, bf16 or int8, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.delta_encoding = optarg;
            break;
        case O_SCHED:
            if (df_lr_schedule_parse(optarg) < 0) {
                df_cli_error("--lr-schedule: constant, constant_with_warmup or cosine, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.lr_schedule = optarg;
            break;
        case O_TRAIN_TEXT: p.train_text_encoder = 1; break;
        case O_FULL: p.full = 1; break;
        case O_TEXT_LR: {
            char *end;
            double x = strtod(optarg, &end);
            if (*end || !(x > 0 && x < 1)) {
                df_cli_error("--text-encoder-lr wants a number above 0 and below 1, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.text_encoder_lr = (float)x;
            break;
        }
        case O_OPTIM:
            if (strcmp(optarg, "adamw") && strcmp(optarg, "adamw8bit")) {
                df_cli_error("--optimizer: adamw or adamw8bit, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.optimizer = optarg;
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f16") && strcmp(optarg, "f32") && strcmp(optarg, "int8")) {
                df_cli_error("--dtype wants f16, f32 or int8, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.weights_f32 = strcmp(optarg, "f32") == 0;
            p.weights_int8 = strcmp(optarg, "int8") == 0;
            break;
        default: {
            static const struct {
                int opt;
                const char *flag;
                double lo, hi;
            } nums[] = {{O_RES, "--resolution", 64, 2048}, {O_STEPS, "--steps", 1, 1e6}, {O_BATCH, "--batch", 1, 64},
                        {O_RANK, "--rank", 1, 1024},        {O_ALPHA, "--alpha", 0, 1e6}, {O_LR, "--lr", 1e-8, 0.5},
                        {O_WARMUP, "--warmup", 0, 1e6},     {O_SEED, "--seed", 0, 9007199254740991.0},
                        {O_OFFSET, "--noise-offset", 0, 1}, {O_SNR, "--min-snr-gamma", 0, 100},
                        {O_ACCUM, "--grad-accum", 1, 1024}, {O_WORKERS, "--workers", 1, 64},
                        {O_LOCAL, "--local-steps", 1, 64},  {O_CLASS_IMAGES, "--class-images", 1, 10000},
                        {O_CLASS_STEPS, "--class-steps", 1, 500}, {O_PRIOR, "--prior-weight", 0, 100},
                        {O_CKPT, "--checkpoint-every", 0, 1e6},  {O_VEVERY, "--validate-every", 1, 1e6},
                        {O_VSTEPS, "--validation-steps", 1, 500}};
            size_t k = 0;
            while (k < sizeof nums / sizeof nums[0] && nums[k].opt != c)
                k++;
            if (k == sizeof nums / sizeof nums[0]) {
                df_cli_error("%s", k_usage);
                return DF_EXIT_USAGE;
            }
            if (df_cli_parse_num(nums[k].flag, optarg, nums[k].lo, nums[k].hi, &v))
                return DF_EXIT_USAGE;
            switch (c) {
            case O_RES: p.resolution = (uint32_t)v; break;
            case O_STEPS: p.steps = (uint32_t)v; break;
            case O_BATCH: p.batch = (uint32_t)v; break;
            case O_RANK: p.rank = (uint32_t)v; break;
            case O_ALPHA: p.alpha = (float)v; break;
            case O_LR: p.lr = (float)v; break;
            case O_WARMUP: p.warmup = (uint32_t)v; break;
            case O_SEED: p.seed = (uint64_t)v; break;
            case O_OFFSET: p.noise_offset = (float)v; break;
            case O_ACCUM: p.accumulate = (uint32_t)v; break;
            case O_WORKERS: p.members = (uint32_t)v; break;
            case O_LOCAL: p.local_steps = (uint32_t)v; break;
            case O_CLASS_IMAGES: class_count = (size_t)v; break;
            case O_CLASS_STEPS: class_steps = (uint32_t)v; break;
            case O_PRIOR: prior_weight = (float)v; break;
            case O_CKPT: p.checkpoint_every = (uint32_t)v; break;
            case O_VEVERY: p.validate_every = (uint32_t)v; break;
            case O_VSTEPS: p.validation_steps = (uint32_t)v; break;
            default: p.min_snr_gamma = (float)v; break;
            }
        }
        }
    }
    if (optind != argc || !data || !model || !out) {
        df_cli_error("%s", k_usage);
        return DF_EXIT_USAGE;
    }
    if ((jo.captioner || jo.caption_prompt || jo.caption_beams || jo.caption_min_length) && !prep) {
        df_cli_error("--captioner and --caption-prompt caption raw photos: they go with --prep");
        return DF_EXIT_USAGE;
    }
    if (df_prep_caption_check(&jo) != DF_EXIT_OK)
        return DF_EXIT_USAGE;
    if (p.full && (p.members > 1 || p.train_text_encoder || p.weights_int8)) {
        df_cli_error("--full fine-tunes the whole UNet of a small model on one worker, in f32: not with --workers, "
                     "--train-text-encoder or --dtype int8");
        return DF_EXIT_USAGE;
    }
    if (p.full)
        p.weights_f32 = 1;
    if (p.text_encoder_lr > 0 && !p.train_text_encoder) {
        df_cli_error("--text-encoder-lr goes with --train-text-encoder");
        return DF_EXIT_USAGE;
    }
    if (p.members > 1 && !cli->coordinator) {
        df_cli_error("--workers %u: with no coordinator configured, one embedded worker trains; configure a "
                     "coordinator with workers (--coordinator or DREAMFLEET_COORDINATOR) to train on several",
                     p.members);
        return DF_EXIT_USAGE;
    }
    char data_abs[PATH_MAX];
    char **images = NULL, **captions = NULL, **class_images = NULL, **class_captions = NULL;
    size_t n = 0, nc = 0;
    char fallback[256], class_prompt_buf[256];
    snprintf(fallback, sizeof fallback, "a photo of %s %s", token, klass);
    snprintf(class_prompt_buf, sizeof class_prompt_buf, "a photo of a %s", klass);
    if (!class_prompt)
        class_prompt = class_prompt_buf;
    /* --prep: the raw photos through a prep job first (the cluster's
     * workers share them), into OUT/dataset. */
    char prepared[PATH_MAX];
    int rc = DF_EXIT_OK;
    if (prep) {
        snprintf(prepared, sizeof prepared, "%s/dataset", out);
        /* The trainer's own bucket step (8 << (UNet levels - 1): 32 for SDXL and
         * tiny), so it takes each prepared photo at the size prep made. */
        df_prep_opts po = {.resolution = p.resolution, .bucket_step = p.buckets ? 32 : 0, .max_upscale = 1.5,
                           .min_quality = 0.95, .dup_bits = 6, .token = token, .class_word = klass,
                           .person = df_caption_class_is_person(klass)};
        df_prep_report rep;
        if ((rc = df_prep_on_cluster(cli, data, prepared, &po, &jo, &rep)) != DF_EXIT_OK) {
            /* said */
        } else if (!rep.accepted) {
            df_cli_error("--prep: no photo of %s was accepted (see %s/report.txt)", data, prepared);
            rc = DF_EXIT_FAILED;
        } else if (!cli->json) {
            fprintf(stderr, "prepared %zu of %zu photos into %s%s%s\n", rep.accepted, rep.count, prepared,
                    rep.warning[0] ? "; warning: " : "", rep.warning);
        }
        df_prep_report_free(&rep);
        data = prepared;
    }
    if (rc == DF_EXIT_OK)
        rc = list_photos("--data", data, fallback, data_abs, &images, &captions, &n);
    /* --prior-weight 0: no prior preservation, whatever else was asked. */
    if (prior_weight == 0)
        class_data = NULL, class_count = 0;
    /* Prior preservation: class photos from --class-data, or made by the
     * cluster from the class prompt into OUT/class-images (kept: a later run
     * makes only what is missing). */
    char class_abs[PATH_MAX], class_dir[PATH_MAX];
    if (rc == DF_EXIT_OK && !class_data && class_count > 0) {
        snprintf(class_dir, sizeof class_dir, "%s/class-images", out);
        char **have = NULL, **have_caps = NULL;
        size_t nh = 0;
        df_error_t err;
        if (df_mkdirs(class_dir, &err) != DF_OK) {
            df_cli_error("%s", err.msg);
            rc = DF_EXIT_FAILED;
        } else if (list_photos(NULL, class_dir, class_prompt, class_abs, &have, &have_caps, &nh) != DF_EXIT_OK) {
            nh = 0;
        }
        free_list(have, nh), free_list(have_caps, nh);
        if (rc == DF_EXIT_OK && nh < class_count) {
            char count_s[32], size_s[32], steps_s[16], seed_s[32];
            snprintf(count_s, sizeof count_s, "%zu", class_count - nh);
            snprintf(size_s, sizeof size_s, "%ux%u", p.resolution, p.resolution);
            snprintf(steps_s, sizeof steps_s, "%u", class_steps);
            snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)(p.seed + 1000003ull * (nh + 1)));
            if (!cli->json)
                fprintf(stderr, "making %zu class images of '%s' for prior preservation\n", class_count - nh,
                        class_prompt);
            char *gargv[20] = {"generate", "--prompt", (char *)class_prompt, "--model", (char *)model, "--size", size_s,
                               "-n", count_s, "--steps", steps_s, "--seed", seed_s, "-o", class_dir};
            int ga = 15;
            if (tokenizer)
                gargv[ga++] = "--tokenizer", gargv[ga++] = (char *)tokenizer;
            gargv[ga] = NULL;
            rc = df_cmd_generate(cli, ga, gargv);
        }
        class_data = class_dir;
    }
    if (rc == DF_EXIT_OK && class_data) {
        rc = list_photos("--class-data", class_data, class_prompt, class_abs, &class_images, &class_captions, &nc);
        if (rc == DF_EXIT_OK && class_count > 0 && nc > class_count) { /* the first class_count, in name order */
            for (size_t i = class_count; i < nc; i++)
                free(class_images[i]), free(class_captions[i]);
            nc = class_count; /* the arrays keep their size: only the count shrinks */
        }
    }
    p.n_validation_prompts = nvalidation;
    p.validation_prompts = validation;
    p.n_class_images = p.n_class_captions = nc;
    p.class_images = class_images;
    p.class_captions = class_captions;
    p.prior_weight = nc ? prior_weight : 0;
    char model_abs[PATH_MAX], tok_abs[PATH_MAX];
    p.model = realpath(model, model_abs) ? model_abs : (char *)model;
    if (tokenizer)
        p.tokenizer = realpath(tokenizer, tok_abs) ? tok_abs : (char *)tokenizer;
    p.token = (char *)token;
    p.class_word = (char *)klass;
    char identity[DF_SHA256_HEX] = "";
    if (df_file_identity(p.model, identity, NULL) == DF_OK)
        p.model_identity = identity;
    p.n_images = p.n_captions = n;
    p.images = images;
    p.captions = captions;
    /* A prepared set's photos condition on what they were cut from. */
    Dreamfleet__PhotoGeometry **geo = NULL;
    char set_dir[PATH_MAX];
    snprintf(set_dir, sizeof set_dir, "%s", data_abs);
    const size_t sl = strlen(set_dir);
    if (sl > 7 && strcmp(set_dir + sl - 7, "/images") == 0)
        set_dir[sl - 7] = '\0';
    if (rc == DF_EXIT_OK)
        rc = read_geometry(set_dir, images, n, &geo);
    char **samples = NULL;
    if (rc == DF_EXIT_OK)
        rc = encode_samples(cli, &p, geo, &samples);
    for (size_t i = 0; geo && i < n; i++)
        free(geo[i]);
    free(geo);
    if (samples) {
        p.n_samples = n, p.samples = samples;
        p.n_class_samples = nc, p.class_samples = samples + n;
    }
    char id[128] = "";
    if (rc == DF_EXIT_OK) {
        size_t len = dreamfleet__train_params__get_packed_size(&p);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            rc = DF_EXIT_FAILED;
        else {
            dreamfleet__train_params__pack(&p, buf);
            if (!cli->json)
                fprintf(stderr, "training on %zu photos from %s\n", n, data_abs);
            rc = df_cli_submit(cli, "train", buf, len, 0, 1, id, sizeof id);
            free(buf);
        }
    }
    /* The files. */
    Dreamfleet__Reply *rep = NULL;
    if (rc == DF_EXIT_OK)
        rc = df_cli_get_job(cli, id, 1, &rep);
    if (rc == DF_EXIT_OK) {
        /* The member that returned the files (every member holds the same LoRA). */
        Dreamfleet__TrainResult *r = NULL;
        for (size_t i = 0; i < rep->job->n_tasks && !r; i++)
            if (rep->job->tasks[i]->output.len &&
                (r = dreamfleet__train_result__unpack(NULL, rep->job->tasks[i]->output.len,
                                                      rep->job->tasks[i]->output.data)) &&
                r->lora_kohya.len == 0 && !(r->lora_kohya_sha256 && *r->lora_kohya_sha256)) {
                dreamfleet__train_result__free_unpacked(r, NULL);
                r = NULL;
            }
        df_error_t err;
        char path[PATH_MAX];
        if (!r) {
            df_cli_error("%s: the worker returned no LoRA", id);
            rc = DF_EXIT_FAILED;
        } else if (df_mkdirs(out, &err) != DF_OK) {
            df_cli_error("%s", err.msg);
            rc = DF_EXIT_FAILED;
        }
        if (rc == DF_EXIT_OK) {
            /* Full fine-tuning returns the UNet (diffusers' names, the file a
             * model folder's unet/ holds) where a LoRA would be. */
            snprintf(path, sizeof path, "%s/%s", out, p.full ? "unet.safetensors" : "lora.safetensors");
            rc = save_output(cli, out, &r->lora_kohya, r->lora_kohya_sha256, path);
            if (rc == DF_EXIT_OK && !cli->json)
                printf("%s\n", path);
            snprintf(path, sizeof path, "%s/lora-peft.safetensors", out);
            if (rc == DF_EXIT_OK && !p.full)
                rc = save_output(cli, out, &r->lora_peft, r->lora_peft_sha256, path);
            if (rc == DF_EXIT_OK && !cli->json && !p.full)
                printf("%s\n", path);
            snprintf(path, sizeof path, "%s/validation.png", out);
            if (rc == DF_EXIT_OK && (r->validation_grid.len || (r->validation_grid_sha256 && *r->validation_grid_sha256)))
                rc = save_output(cli, out, &r->validation_grid, r->validation_grid_sha256, path);
            if (rc == DF_EXIT_OK && !cli->json && (r->validation_grid.len || (r->validation_grid_sha256 && *r->validation_grid_sha256)))
                printf("%s\n", path);
            snprintf(path, sizeof path, "%s/.store", out); /* emptied by the downloads */
            df_remove_tree(path);
            snprintf(path, sizeof path, "%s/loss.csv", out);
            FILE *f = rc == DF_EXIT_OK ? fopen(path, "w") : NULL;
            if (f) {
                fprintf(f, "step,loss\n");
                for (size_t i = 0; i < r->n_losses; i++)
                    fprintf(f, "%zu,%.6f\n", i + 1, r->losses[i]);
                fclose(f);
            }
            snprintf(path, sizeof path, "%s/loss.png", out);
            if (rc == DF_EXIT_OK && df_loss_plot_png(r->losses, r->n_losses, path, &err) != DF_OK) {
                df_cli_error("%s", err.msg);
                rc = DF_EXIT_FAILED;
            }
            if (rc == DF_EXIT_OK && cli->json)
                printf("{\"job\":\"%s\",\"dir\":\"%s\",\"steps\":%zu,\"final_loss\":%.6f,\"workers\":%u,\"rounds\":%u,"
                       "\"bytes_per_round\":%.0f,\"compression\":%.3f}\n",
                       id, out, r->n_losses, r->n_losses ? r->losses[r->n_losses - 1] : 0.0, r->rounds ? r->members : 1,
                       r->rounds, r->rounds ? (double)r->bytes_exchanged / r->rounds : 0.0,
                       r->bytes_exchanged ? (double)r->raw_bytes / (double)r->bytes_exchanged : 1.0);
            else if (rc == DF_EXIT_OK && r->rounds)
                fprintf(stderr, "%u worker%s at the end, %u rounds, %.2f MB to the coordinator a round (%.2fx smaller "
                        "than f32)\n", r->members, r->members == 1 ? "" : "s", r->rounds,
                        (double)r->bytes_exchanged / r->rounds / 1e6,
                        r->bytes_exchanged ? (double)r->raw_bytes / (double)r->bytes_exchanged : 1.0);
        }
        if (r)
            dreamfleet__train_result__free_unpacked(r, NULL);
        df_wire_free(&rep->base);
    }
    free_list(samples, samples ? n + nc : 0);
    free_list(images, n), free_list(captions, captions ? n : 0);
    free_list(class_images, nc), free_list(class_captions, class_captions ? nc : 0);
    return rc;
}
