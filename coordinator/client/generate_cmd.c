/*  generate_cmd.c - `dreamfleet generate`: submits a generate job, follows it
 *  and writes its images (and, on request, the final latents).
 *
 *    dreamfleet generate --prompt TEXT [--negative-prompt TEXT] --model PATH [--tokenizer DIR]
 *        [--size WxH] [--steps N] [--cfg X] [--sampler NAME] [--seed N] [-n COUNT]
 *        [--original-size WxH] [--crop X,Y] [--dtype f16|f32|int8] [--lora FILE[:SCALE]]... [--lora-mode merged|unmerged]
 *        [--init-noise FILE]
 *        [--save-latents FILE] [--format png|jpeg|webp] [--quality N] [--no-cache] [--previews DIR] -o DIR
 *
 *  The model, tokenizer and LoRAs go with their identities (file_identity.h)
 *  when this machine can see them, so the coordinator can answer a repeated
 *  request from its result cache; --no-cache computes the images anyway.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "dreamfleet.pb-c.h"
#include "file_identity.h"
#include "image_encode.h"
#include "fsutil.h"
#include "safetensors.h"
#include "scheduler.h"
#include "wire.h"

static const char k_usage[] =
    "usage: dreamfleet generate --prompt TEXT --model PATH -o DIR [--negative-prompt TEXT] [--tokenizer DIR]\n"
    "         [--size WxH] [--steps N] [--cfg X] [--sampler NAME] [--seed N] [-n COUNT] [--original-size WxH]\n"
    "         [--crop X,Y] [--dtype f16|f32|int8] [--lora FILE[:SCALE]]... [--lora-mode merged|unmerged]\n"
    "         [--init-noise FILE] [--save-latents FILE]\n"
    "         [--format png|jpeg|webp] [--quality 1-100] [--shards N] [--no-cache] [--previews DIR]\n"
    "  samplers: euler (default), euler_karras, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim";

static int parse_pair(const char *flag, const char *v, char sep, uint32_t *a, uint32_t *b)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != sep) {
        df_cli_error("%s wants two numbers separated by '%c', not '%s'", flag, sep, v);
        return -1;
    }
    const char *rest = end + 1;
    unsigned long y = strtoul(rest, &end, 10);
    if (end == rest || *end || x > 65535 || y > 65535) {
        df_cli_error("%s wants two numbers separated by '%c', not '%s'", flag, sep, v);
        return -1;
    }
    *a = (uint32_t)x;
    *b = (uint32_t)y;
    return 0;
}

/*  Writes every image of the finished job into dir, and the latents into
 *  latents_path when given. */
static int collect(df_cli *cli, const char *job_id, const char *dir, const char *latents_path)
{
    Dreamfleet__Reply *rep;
    int rc = df_cli_get_job(cli, job_id, 1, &rep);
    if (rc)
        return rc;
    df_error_t err;
    df_error_clear(&err);
    if (df_mkdirs(dir, &err) != DF_OK) {
        df_cli_error("%s", err.msg);
        df_wire_free(&rep->base);
        return DF_EXIT_FAILED;
    }
    const Dreamfleet__JobInfo *j = rep->job;
    Dreamfleet__GenerateResult **results = calloc(j->n_tasks ? j->n_tasks : 1, sizeof *results);
    size_t images = 0, nlat = 0;
    uint64_t shape[4] = {0};
    for (size_t i = 0; results && i < j->n_tasks && rc == DF_EXIT_OK; i++) {
        results[i] = dreamfleet__generate_result__unpack(NULL, j->tasks[i]->output.len, j->tasks[i]->output.data);
        if (!results[i]) {
            df_cli_error("%s: task %s returned no images", job_id, j->tasks[i]->task_id);
            rc = DF_EXIT_FAILED;
            break;
        }
        for (size_t k = 0; k < results[i]->n_images; k++) {
            const Dreamfleet__GeneratedImage *im = results[i]->images[k];
            char path[4200];
            df_image_format fmt = DF_IMAGE_PNG;
            df_image_format_parse(im->format, &fmt, NULL); /* a name we do not know: bytes kept as png */
            snprintf(path, sizeof path, "%s/%s-%04u-seed%llu.%s", dir, job_id, im->index,
                     (unsigned long long)im->seed, df_image_format_ext(fmt));
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(im->image.data, 1, im->image.len, f) != im->image.len) {
                df_cli_error("%s: %s", path, strerror(errno));
                rc = DF_EXIT_FAILED;
            }
            if (f)
                fclose(f);
            if (!cli->json)
                printf("%s\n", path);
            images++;
            if (im->latents && im->latents->n_shape == 4) {
                nlat++;
                memcpy(shape, im->latents->shape, sizeof shape);
            }
        }
    }
    /* All images' latents as one [N, 4, h, w] tensor, in image order. */
    if (rc == DF_EXIT_OK && latents_path) {
        uint64_t per = shape[1] * shape[2] * shape[3];
        float *all = nlat == images && per ? calloc(images * per, sizeof *all) : NULL;
        if (!all) {
            df_cli_error("%s: the workers returned no latents", latents_path);
            rc = DF_EXIT_FAILED;
        }
        for (size_t i = 0; all && i < j->n_tasks; i++)
            for (size_t k = 0; k < results[i]->n_images; k++) {
                const Dreamfleet__GeneratedImage *im = results[i]->images[k];
                if (im->index < images && im->latents->data.len == per * 4)
                    memcpy(all + (uint64_t)im->index * per, im->latents->data.data, per * 4);
            }
        if (all) {
            int64_t s[4] = {(int64_t)images, (int64_t)shape[1], (int64_t)shape[2], (int64_t)shape[3]};
            df_st_writer_t *w = df_st_writer_new();
            if (!w || df_st_writer_add(w, "latents", DF_F32, 4, s, all, &err) != DF_OK ||
                df_st_writer_write(w, latents_path, &err) != DF_OK) {
                df_cli_error("%s", err.msg[0] ? err.msg : "out of memory");
                rc = DF_EXIT_FAILED;
            }
            df_st_writer_destroy(&w);
            free(all);
        }
    }
    if (rc == DF_EXIT_OK && cli->json)
        printf("{\"job\":\"%s\",\"dir\":\"%s\",\"images\":%zu}\n", job_id, dir, images);
    for (size_t i = 0; results && i < j->n_tasks; i++)
        if (results[i])
            dreamfleet__generate_result__free_unpacked(results[i], NULL);
    free(results);
    df_wire_free(&rep->base);
    return rc;
}

/*  The identity of what path names (a 64-digit sha256 names itself), with
 *  the tokenizer folder's folded in when there is one; "" when this machine
 *  cannot see it, which leaves the request out of the result cache. */
static char *identity_of(const char *path, const char *tokenizer, char hex[DF_SHA256_HEX])
{
    char tok[DF_SHA256_HEX] = "";
    if (tokenizer && !tokenizer[0]) /* protobuf's empty string: none given */
        tokenizer = NULL;
    int named = strlen(path) == 64 && strspn(path, "0123456789abcdef") == 64;
    if (named)
        snprintf(hex, DF_SHA256_HEX, "%s", path);
    if ((!named && df_file_identity(path, hex, NULL) != DF_OK) ||
        (tokenizer && df_file_identity(tokenizer, tok, NULL) != DF_OK)) {
        hex[0] = '\0';
        return hex;
    }
    if (tokenizer) {
        char both[2 * DF_SHA256_HEX];
        uint8_t d[DF_SHA256_BYTES];
        snprintf(both, sizeof both, "%s%s", hex, tok);
        df_sha256(both, strlen(both), d);
        df_sha256_hex(d, hex);
    }
    return hex;
}

int df_cmd_generate(df_cli *cli, int argc, char **argv)
{
    enum { O_PROMPT = 1000, O_NEG, O_MODEL, O_TOK, O_SIZE, O_STEPS, O_CFG, O_SAMPLER, O_SEED, O_ORIG, O_CROP,
           O_DTYPE, O_LATENTS, O_SHARDS, O_NOISE, O_LORA, O_NOCACHE, O_FORMAT, O_QUALITY, O_PREVIEWS, O_LORA_MODE };
    static const struct option o[] = {
        {"prompt", required_argument, NULL, O_PROMPT},   {"negative-prompt", required_argument, NULL, O_NEG},
        {"model", required_argument, NULL, O_MODEL},     {"tokenizer", required_argument, NULL, O_TOK},
        {"size", required_argument, NULL, O_SIZE},       {"steps", required_argument, NULL, O_STEPS},
        {"cfg", required_argument, NULL, O_CFG},         {"sampler", required_argument, NULL, O_SAMPLER},
        {"seed", required_argument, NULL, O_SEED},       {"original-size", required_argument, NULL, O_ORIG},
        {"crop", required_argument, NULL, O_CROP},       {"dtype", required_argument, NULL, O_DTYPE},
        {"save-latents", required_argument, NULL, O_LATENTS}, {"shards", required_argument, NULL, O_SHARDS},
        {"init-noise", required_argument, NULL, O_NOISE}, {"lora", required_argument, NULL, O_LORA},
        {"no-cache", no_argument, NULL, O_NOCACHE},     {"output", required_argument, NULL, 'o'},
        {"format", required_argument, NULL, O_FORMAT},   {"quality", required_argument, NULL, O_QUALITY},
        {"previews", required_argument, NULL, O_PREVIEWS}, {"lora-mode", required_argument, NULL, O_LORA_MODE},
        {NULL, 0, NULL, 0},
    };
    Dreamfleet__GenerateParams p = DREAMFLEET__GENERATE_PARAMS__INIT;
    p.width = p.height = 1024;
    p.steps = 30;
    p.guidance = 5.0f;
    p.sampler = "euler";
    p.count = 1;
    const char *out_dir = NULL, *latents = NULL, *model = NULL, *tokenizer = NULL, *noise_path = NULL;
    uint32_t shards = 0;
    int c;
    double v;
    /* --lora FILE[:SCALE], repeatable. */
    enum { MAX_LORAS = 16 };
    Dreamfleet__LoraRef lora_refs[MAX_LORAS], *lora_ptrs[MAX_LORAS];
    char lora_abs[MAX_LORAS][PATH_MAX], lora_ids[MAX_LORAS][DF_SHA256_HEX];
    size_t nlora = 0;
    int lora_mode_merged = 0;
    optind = 0; /* 0, not 1: glibc then re-reads the option string (the top level used "+") */
    while ((c = getopt_long(argc, argv, "n:o:", o, NULL)) != -1) {
        switch (c) {
        case O_PROMPT: p.prompt = optarg; break;
        case O_NEG:
            p.negative_prompt = optarg;
            p.has_negative = 1;
            break;
        case O_MODEL: model = optarg; break;
        case O_TOK: tokenizer = optarg; break;
        case O_SIZE:
            if (parse_pair("--size", optarg, 'x', &p.width, &p.height))
                return DF_EXIT_USAGE;
            break;
        case O_STEPS:
            if (df_cli_parse_num("--steps", optarg, 1, 500, &v))
                return DF_EXIT_USAGE;
            p.steps = (uint32_t)v;
            break;
        case O_CFG:
            if (df_cli_parse_num("--cfg", optarg, 0, 50, &v))
                return DF_EXIT_USAGE;
            p.guidance = (float)v;
            break;
        case O_SAMPLER:
            if (df_sampler_parse(optarg) < 0) {
                df_cli_error("--sampler: unknown '%s' (euler, euler_karras, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim)",
                             optarg);
                return DF_EXIT_USAGE;
            }
            p.sampler = optarg;
            break;
        case O_SEED:
            if (df_cli_parse_num("--seed", optarg, 0, 9007199254740991.0, &v))
                return DF_EXIT_USAGE;
            p.seed = (uint64_t)v;
            break;
        case 'n':
            if (df_cli_parse_num("-n", optarg, 1, 10000, &v))
                return DF_EXIT_USAGE;
            p.count = (uint32_t)v;
            break;
        case O_ORIG:
            if (parse_pair("--original-size", optarg, 'x', &p.original_width, &p.original_height))
                return DF_EXIT_USAGE;
            break;
        case O_CROP:
            if (parse_pair("--crop", optarg, ',', &p.crop_left, &p.crop_top))
                return DF_EXIT_USAGE;
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f16") && strcmp(optarg, "f32") && strcmp(optarg, "int8")) {
                df_cli_error("--dtype wants f16, f32 or int8, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            p.weights_f32 = strcmp(optarg, "f32") == 0;
            p.weights_int8 = strcmp(optarg, "int8") == 0;
            break;
        case O_LATENTS:
            latents = optarg;
            p.save_latents = 1;
            break;
        case O_SHARDS:
            if (df_cli_parse_num("--shards", optarg, 1, 10000, &v))
                return DF_EXIT_USAGE;
            shards = (uint32_t)v;
            break;
        case O_NOISE: noise_path = optarg; break;
        case O_NOCACHE: p.no_cache = 1; break;
        case O_PREVIEWS: cli->previews_dir = optarg; break;
        case O_LORA_MODE:
            if (strcmp(optarg, "merged") && strcmp(optarg, "unmerged")) {
                df_cli_error("--lora-mode wants merged (fastest) or unmerged (swappable without reloading)");
                return DF_EXIT_USAGE;
            }
            p.lora_unmerged = strcmp(optarg, "unmerged") == 0;
            lora_mode_merged = !p.lora_unmerged;
            break;
        case O_FORMAT: {
            df_image_format f;
            df_error_t ferr;
            if (df_image_format_parse(optarg, &f, &ferr) != DF_OK) {
                df_cli_error("--format: %s", ferr.msg);
                return DF_EXIT_USAGE;
            }
            p.format = (char *)df_image_format_name(f);
            break;
        }
        case O_QUALITY:
            if (df_cli_parse_num("--quality", optarg, 1, 100, &v))
                return DF_EXIT_USAGE;
            p.quality = (uint32_t)v;
            break;
        case O_LORA: {
            if (nlora == MAX_LORAS) {
                df_cli_error("--lora: at most %d", MAX_LORAS);
                return DF_EXIT_USAGE;
            }
            char file[PATH_MAX];
            snprintf(file, sizeof file, "%s", optarg);
            float scale = 1.0f;
            char *colon = strrchr(file, ':');
            if (colon) {
                char *end;
                double sc = strtod(colon + 1, &end);
                if (end == colon + 1 || *end || !(sc >= -10 && sc <= 10)) {
                    df_cli_error("--lora %s: the scale after ':' must be a number from -10 to 10", optarg);
                    return DF_EXIT_USAGE;
                }
                scale = (float)sc;
                *colon = '\0';
            }
            struct stat sb;
            int hash = strlen(file) == 64 && strspn(file, "0123456789abcdef") == 64;
            if (!hash && stat(file, &sb) != 0) {
                df_cli_error("--lora %s: %s", file, strerror(errno));
                return DF_EXIT_USAGE;
            }
            dreamfleet__lora_ref__init(&lora_refs[nlora]);
            if (hash || !realpath(file, lora_abs[nlora]))
                snprintf(lora_abs[nlora], sizeof lora_abs[nlora], "%s", file);
            lora_refs[nlora].path = lora_abs[nlora];
            lora_refs[nlora].scale = scale;
            lora_refs[nlora].identity = identity_of(lora_abs[nlora], NULL, lora_ids[nlora]);
            lora_ptrs[nlora] = &lora_refs[nlora];
            nlora++;
            break;
        }
        case 'o': out_dir = optarg; break;
        default: df_cli_error("%s", k_usage); return DF_EXIT_USAGE;
        }
    }
    if (optind != argc || !p.prompt || !model || !out_dir) {
        df_cli_error("%s", k_usage);
        return DF_EXIT_USAGE;
    }
    if (lora_mode_merged && p.weights_int8) {
        df_cli_error("--lora-mode merged cannot go with --dtype int8: a LoRA cannot merge into 8-bit weights, "
                     "it runs beside them (unmerged)");
        return DF_EXIT_USAGE;
    }
    p.n_loras = nlora;
    p.loras = lora_ptrs;
    /* Paths as the workers will see them: absolute, when they exist here. A
     * 64-digit sha256 names a model registered with `model add`. */
    char model_abs[PATH_MAX], tok_abs[PATH_MAX];
    p.model = realpath(model, model_abs) ? model_abs : (char *)model;
    if (tokenizer)
        p.tokenizer = realpath(tokenizer, tok_abs) ? tok_abs : (char *)tokenizer;
    char model_id[DF_SHA256_HEX];
    p.model_identity = identity_of(p.model, p.tokenizer, model_id);
    /* --init-noise: tensor "noise" [N, 4, h, w], standard normal, f32/f16/bf16. */
    df_safetensors_t *nst = NULL;
    float *noise = NULL;
    Dreamfleet__Tensor nt = DREAMFLEET__TENSOR__INIT;
    uint64_t nshape[4] = {p.count, 4, p.height / 8, p.width / 8};
    if (noise_path) {
        df_error_t err;
        df_error_clear(&err);
        nst = df_safetensors_open(noise_path, &err);
        const df_st_tensor *t = nst ? df_safetensors_find(nst, "noise") : NULL;
        if (!nst) {
            df_cli_error("--init-noise: %s", err.msg);
            return DF_EXIT_USAGE;
        }
        if (!t || t->ndim != 4 || (uint64_t)t->shape[0] != nshape[0] || t->shape[1] != 4 ||
            (uint64_t)t->shape[2] != nshape[2] || (uint64_t)t->shape[3] != nshape[3]) {
            df_cli_error("--init-noise %s: needs a tensor 'noise' of shape [%u, 4, %u, %u] for %u images of %ux%u",
                         noise_path, p.count, p.height / 8, p.width / 8, p.count, p.width, p.height);
            df_safetensors_destroy(&nst);
            return DF_EXIT_USAGE;
        }
        noise = malloc(t->nelem * sizeof *noise);
        if (!noise || df_st_tensor_to_f32(t, noise, &err) != DF_OK) {
            df_cli_error("--init-noise %s: %s", noise_path, noise ? err.msg : "out of memory");
            free(noise);
            df_safetensors_destroy(&nst);
            return DF_EXIT_USAGE;
        }
        nt.name = "noise";
        nt.n_shape = 4;
        nt.shape = nshape;
        nt.dtype = DREAMFLEET__DTYPE__F32;
        nt.data.data = (uint8_t *)noise;
        nt.data.len = t->nelem * 4;
        p.init_noise = &nt;
        df_safetensors_destroy(&nst);
    }
    size_t len = dreamfleet__generate_params__get_packed_size(&p);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        free(noise);
        df_cli_error("out of memory");
        return DF_EXIT_FAILED;
    }
    dreamfleet__generate_params__pack(&p, buf);
    free(noise);
    char id[128] = "";
    int rc = df_cli_submit(cli, "generate", buf, len, shards, 1, id, sizeof id);
    free(buf);
    if (rc == DF_EXIT_OK)
        rc = collect(cli, id, out_dir, latents);
    return rc;
}
