/*  prep_cmd.c - `dreamfleet prep`: a folder of photos into a training set,
 *  locally (no coordinator needed):
 *
 *    dreamfleet prep DIR -o OUT [--resolution PX] [--square] [--token TOK] [--class WORD]
 *        [--subject person|other] [--framing none|head|body] [--min-quality X] [--min-face-clarity X]
 *        [--max-upscale X] [--dup-bits N] [--cluster [--no-cache]]
 *        [--captioner DIR [--caption-prompt TEXT] [--caption-beams N] [--caption-min-length N]]
 *
 *  --subject person (the default when the class is a person's: person, man,
 *  woman, boy, girl, child...) checks every photo for exactly one clear
 *  face; --framing head or body turns each so the eyes are level and frames
 *  it around the face.
 *
 *  --cluster prepares on the cluster's workers instead (the configured
 *  coordinator's, or the embedded one), one task per photo; the photos go
 *  to the coordinator's artifact store (workers need no shared folder),
 *  and the result is the same folder byte for byte; each photo's verdict is kept in the result cache, and
 *  --no-cache prepares every photo again.
 *
 *  --captioner DIR captions the photos that have no caption file with a
 *  BLIP model (transformers' folder: config.json, model.safetensors,
 *  vocab.txt), which the workers run (so it implies --cluster); its words
 *  then get the identifier like a caption file's. --caption-prompt TEXT
 *  makes every caption begin so ("a picture of"); --caption-beams N finds
 *  captions by beam search (greedy by default), --caption-min-length N
 *  makes them at least N tokens long.
 *
 *  OUT then holds images/ (with caption sidecars), metadata.jsonl,
 *  report.txt and contact-sheet.png (common/prep.h); `dreamfleet train
 *  --data OUT` trains on it. Prints each photo's fate and a summary, or
 *  with --json one object per photo and a final summary object.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caption.h"
#include "cli.h"
#include "commands.h"
#include "prep.h"
#include "prep_job.h"
#include "unicode.h"

#include <jansson.h>

static const char k_usage[] =
    "usage: dreamfleet prep DIR -o OUT [--resolution PX] [--square] [--token TOK] [--class WORD]\n"
    "         [--subject person|other] [--framing none|head|body] [--min-quality X] [--min-face-clarity X]\n"
    "         [--max-upscale X] [--dup-bits N] [--cluster [--no-cache]]\n"
    "         [--captioner DIR [--caption-prompt TEXT] [--caption-beams N] [--caption-min-length N]]\n";

int df_cmd_prep(df_cli *cli, int argc, char **argv)
{
    enum { O_RES = 1000, O_SQUARE, O_TOKEN, O_CLASS, O_QUALITY, O_UPSCALE, O_DUP, O_SUBJECT, O_FRAMING, O_FACE,
           O_CLUSTER, O_NO_CACHE, O_CAPTIONER, O_CAPTION_PROMPT, O_CAPTION_BEAMS,
           O_CAPTION_MIN };
    const int json = cli->json;
    int on_cluster = 0;
    df_prep_job_opts jo = {0};
    static const struct option o[] = {
        {"output", required_argument, NULL, 'o'},      {"resolution", required_argument, NULL, O_RES},
        {"square", no_argument, NULL, O_SQUARE},        {"token", required_argument, NULL, O_TOKEN},
        {"class", required_argument, NULL, O_CLASS},    {"min-quality", required_argument, NULL, O_QUALITY},
        {"max-upscale", required_argument, NULL, O_UPSCALE}, {"dup-bits", required_argument, NULL, O_DUP},
        {"subject", required_argument, NULL, O_SUBJECT}, {"framing", required_argument, NULL, O_FRAMING},
        {"min-face-clarity", required_argument, NULL, O_FACE}, {"cluster", no_argument, NULL, O_CLUSTER},
        {"no-cache", no_argument, NULL, O_NO_CACHE},      {"captioner", required_argument, NULL, O_CAPTIONER},
        {"caption-prompt", required_argument, NULL, O_CAPTION_PROMPT},
        {"caption-beams", required_argument, NULL, O_CAPTION_BEAMS},
        {"caption-min-length", required_argument, NULL, O_CAPTION_MIN},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
    };
    /* Buckets in the trainer's step (32 px for SDXL), so train takes each photo at the size made here. */
    df_prep_opts po = {.resolution = 1024, .bucket_step = 32, .max_upscale = 1.5, .min_quality = 0.95, .dup_bits = 6,
                       .token = "TOK", .class_word = "person"};
    const char *out = NULL, *subject = NULL;
    double v;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "o:h", o, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_SQUARE: po.bucket_step = 0; break;
        case O_TOKEN: po.token = optarg; break;
        case O_CLASS: po.class_word = optarg; break;
        case O_RES:
            if (df_cli_parse_num("--resolution", optarg, 64, 4096, &v) || (uint32_t)v % 32 || v != (uint32_t)v) {
                df_cli_error("--resolution wants a multiple of 32 from 64 to 4096");
                return DF_EXIT_USAGE;
            }
            po.resolution = (uint32_t)v;
            break;
        case O_QUALITY:
            if (df_cli_parse_num("--min-quality", optarg, 0, 1, &po.min_quality))
                return DF_EXIT_USAGE;
            break;
        case O_UPSCALE:
            if (df_cli_parse_num("--max-upscale", optarg, 1, 8, &po.max_upscale))
                return DF_EXIT_USAGE;
            break;
        case O_DUP:
            if (df_cli_parse_num("--dup-bits", optarg, 0, 32, &v))
                return DF_EXIT_USAGE;
            po.dup_bits = v == 0 ? -1 : (int)v; /* 0: keep near-duplicates */
            break;
        case O_SUBJECT:
            if (strcmp(optarg, "person") && strcmp(optarg, "other")) {
                df_cli_error("--subject wants person or other, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            subject = optarg;
            break;
        case O_FRAMING:
            if (strcmp(optarg, "none") == 0)
                po.framing = 0;
            else if (strcmp(optarg, "head") == 0)
                po.framing = DF_FRAME_HEAD;
            else if (strcmp(optarg, "body") == 0)
                po.framing = DF_FRAME_BODY;
            else {
                df_cli_error("--framing wants none, head or body, not '%s'", optarg);
                return DF_EXIT_USAGE;
            }
            break;
        case O_FACE:
            if (df_cli_parse_num("--min-face-clarity", optarg, 0.01, 1, &po.min_face_clarity))
                return DF_EXIT_USAGE;
            break;
        case O_CLUSTER: on_cluster = 1; break;
        case O_NO_CACHE: jo.no_cache = 1; break;
        case O_CAPTIONER:
        case O_CAPTION_PROMPT:
        case O_CAPTION_BEAMS:
        case O_CAPTION_MIN:
            if (df_prep_caption_flag(c - O_CAPTIONER, optarg, &jo) != DF_EXIT_OK)
                return DF_EXIT_USAGE;
            break;
        case 'h': fputs(k_usage, stdout); return DF_EXIT_OK;
        default: fputs(k_usage, stderr); return DF_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || !out) {
        fputs(k_usage, stderr);
        return DF_EXIT_USAGE;
    }
    const char *dir = argv[optind];
    po.person = subject ? strcmp(subject, "person") == 0 : df_caption_class_is_person(po.class_word);
    if (df_prep_caption_check(&jo) != DF_EXIT_OK)
        return DF_EXIT_USAGE;
    if (jo.captioner) /* the model runs on the workers' engine */
        on_cluster = 1;
    if (jo.no_cache && !on_cluster) {
        df_cli_error("--no-cache goes with --cluster (prep on one machine keeps no cache)");
        return DF_EXIT_USAGE;
    }
    if (po.framing && !po.person) {
        df_cli_error("--framing frames photos around a face: it goes with --subject person");
        return DF_EXIT_USAGE;
    }
    df_prep_report rep = {0};
    df_error_t err;
    df_error_clear(&err);
    if (on_cluster) {
        int rc = df_cli_connect(cli);
        if (rc == DF_EXIT_OK)
            rc = df_prep_on_cluster(cli, dir, out, &po, &jo, &rep);
        if (rc != DF_EXIT_OK) {
            df_prep_report_free(&rep);
            return rc;
        }
    } else if (df_prep_dir(dir, out, &po, &rep, &err) != DF_OK) {
        df_cli_error("%s", err.msg);
        df_prep_report_free(&rep);
        return DF_EXIT_FAILED;
    }
    for (size_t i = 0; i < rep.count; i++) {
        const df_prep_item *it = &rep.items[i];
        const char *name = strrchr(it->source, '/');
        name = name ? name + 1 : it->source;
        if (json) { /* one object per photo (JSON wants UTF-8: names made valid) */
            char *n8 = df_utf8_sanitize(name), *why = df_utf8_sanitize(it->reason ? it->reason : "");
            char *cap = df_utf8_sanitize(it->caption ? it->caption : "");
            json_t *j = n8 && why && cap ? json_pack("{s:s, s:b, s:s, s:s, s:f}", "photo", n8, "accepted", !it->reason,
                                                     "reason", why, "caption", cap, "quality", it->scores.quality)
                                         : NULL;
            char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (line)
                printf("%s\n", line);
            free(line), free(n8), free(why), free(cap);
            json_decref(j);
            continue;
        }
        if (it->reason)
            fprintf(stderr, "rejected %s: %s\n", name, it->reason);
        else
            fprintf(stderr, "accepted %s (%ux%u, quality %.2f): %s\n", name, it->width, it->height,
                    it->scores.quality, it->caption);
    }
    if (rep.warning[0])
        fprintf(stderr, "warning: %s\n", rep.warning);
    char *out8 = json ? df_utf8_sanitize(out) : NULL;
    json_t *sum = out8 ? json_pack("{s:s, s:I, s:I, s:I, s:s}", "dir", out8, "photos", (json_int_t)rep.count,
                                   "accepted", (json_int_t)rep.accepted, "rejected",
                                   (json_int_t)(rep.count - rep.accepted), "warning", rep.warning)
                       : NULL;
    char *sum_line = sum ? json_dumps(sum, JSON_COMPACT) : NULL;
    if (sum_line)
        printf("%s\n", sum_line);
    free(sum_line), free(out8);
    json_decref(sum);
    if (!json)
        printf("%zu of %zu photos accepted into %s (report.txt, contact-sheet.png)\n", rep.accepted, rep.count, out);
    int rc = rep.accepted ? DF_EXIT_OK : DF_EXIT_FAILED;
    if (!rep.accepted)
        df_cli_error("no photo of %s was accepted (see %s/report.txt)", dir, out);
    df_prep_report_free(&rep);
    return rc;
}
