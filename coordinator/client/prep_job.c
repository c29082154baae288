/*  prep_job.c - see prep_job.h. */
#include "prep_job.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact_store.h"
#include "caption.h"
#include "commands.h"
#include "dreamfleet.pb-c.h"
#include "file_identity.h"
#include "fsutil.h"
#include "rpc.h"
#include "uploads.h"
#include "wire.h"

/*  The job's parameters for the photos in files, uploaded as refs. */
static int pack_params(const df_prep_opts *o, const df_prep_job_opts *jo, const char *cap_path, const char *cap_id,
                       char **files, char **refs, size_t n, uint8_t **buf, size_t *len)
{
    Dreamfleet__PrepParams p = DREAMFLEET__PREP_PARAMS__INIT;
    p.resolution = o->resolution, p.bucket_step = o->bucket_step, p.max_upscale = o->max_upscale;
    p.min_quality = o->min_quality, p.dup_bits = o->dup_bits, p.person = o->person != 0;
    p.framing = (uint32_t)o->framing, p.min_face_clarity = o->min_face_clarity, p.min_face_size = o->min_face_size;
    p.token = (char *)(o->token ? o->token : ""), p.class_word = (char *)(o->class_word ? o->class_word : "");
    p.no_cache = jo && jo->no_cache;
    if (jo && cap_path) {
        p.captioner = (char *)cap_path, p.captioner_identity = (char *)cap_id;
        p.caption_prompt = (char *)(jo->caption_prompt ? jo->caption_prompt : "");
        p.caption_beams = jo->caption_beams, p.caption_min_length = jo->caption_min_length;
    }
    char **sidecars = calloc(n + 1, sizeof *sidecars), **ids = calloc(n + 1, sizeof *ids);
    int rc = sidecars && ids ? DF_EXIT_OK : DF_EXIT_FAILED;
    for (size_t i = 0; rc == DF_EXIT_OK && i < n; i++) {
        char *side = df_caption_sidecar(files[i]);
        sidecars[i] = side ? side : strdup("");
        /* An uploaded photo is known by its content; one that could not be
         * is prepared afresh (never wrongly reused). */
        if ((ids[i] = calloc(1, DF_SHA256_HEX)) && df_artifacts_valid_hash(refs[i]))
            memcpy(ids[i], refs[i], DF_SHA256_HEX);
        if (!sidecars[i] || !ids[i])
            rc = DF_EXIT_FAILED;
    }
    p.n_images = p.n_sidecars = p.n_image_identities = p.n_names = n;
    p.images = refs, p.names = files, p.sidecars = sidecars, p.image_identities = ids;
    *len = rc == DF_EXIT_OK ? dreamfleet__prep_params__get_packed_size(&p) : 0;
    *buf = rc == DF_EXIT_OK ? malloc(*len ? *len : 1) : NULL;
    if (*buf)
        dreamfleet__prep_params__pack(&p, *buf);
    else
        rc = DF_EXIT_FAILED;
    for (size_t i = 0; i < n; i++) {
        if (sidecars)
            free(sidecars[i]);
        if (ids)
            free(ids[i]);
    }
    free(sidecars), free(ids);
    return rc;
}

/*  m as a report item (strings copied). */
static int item_from(const Dreamfleet__PrepItem *m, df_prep_item *it)
{
    it->source = strdup(m->name);
    it->reason = m->reason[0] ? strdup(m->reason) : NULL;
    it->caption = strdup(m->caption);
    it->caption_from = strcmp(m->caption_from, "sidecar") == 0 ? "sidecar"
                       : strcmp(m->caption_from, "model") == 0 ? "model"
                                                               : "template";
    it->orig_w = m->original_width, it->orig_h = m->original_height;
    it->width = m->width, it->height = m->height;
    it->crop_x = m->crop_x, it->crop_y = m->crop_y;
    it->window_w = m->window_width, it->window_h = m->window_height;
    it->scored = m->scored;
    it->scores.quality = m->quality, it->scores.sharpness = m->sharpness;
    it->scores.exposure = m->exposure, it->scores.contrast = m->contrast;
    it->scores.mean = m->mean, it->scores.clipped = m->clipped;
    it->phash = m->phash;
    if (m->sdxl) {
        it->sdxl_orig_w = m->sdxl->original_width, it->sdxl_orig_h = m->sdxl->original_height;
        it->sdxl_crop_left = m->sdxl->crop_left, it->sdxl_crop_top = m->sdxl->crop_top;
    }
    it->faces = m->faces;
    if (m->face) {
        it->face.x = m->face->x, it->face.y = m->face->y, it->face.w = m->face->w, it->face.h = m->face->h;
        it->face.eyes = m->face->eyes, it->face.roll_deg = m->face->roll_deg, it->face.clarity = m->face->clarity;
    }
    return it->source && it->caption && (!m->reason[0] || it->reason) ? DF_OK : DF_E_NOMEM;
}

/*  Artifact hash pulled through store; path gets where it lies. */
static int pull(df_cli *cli, df_artifacts_t *store, const char *hash, char *path, size_t cap, df_error_t *err)
{
    int rc = df_rpc_download(cli->rpc, hash, store, NULL, NULL, err);
    if (rc == DF_OK)
        df_artifacts_path(store, hash, path, cap);
    return rc;
}

/*  The set r (NULL: no photos) written into out_dir as df_prep_dir writes
 *  it: the accepted photos' training images and captions pulled from the
 *  artifact store, the thumbnails for the sheet, metadata, report, sheet. */
static int write_set(df_cli *cli, const Dreamfleet__PrepResult *r, const char *out_dir, df_prep_report *rep)
{
    df_error_t err;
    df_error_clear(&err);
    const size_t n = r ? r->n_items : 0;
    int rc = DF_EXIT_OK;
    /* The set's folder, as df_prep_dir writes it. */
    char store_dir[PATH_MAX + 16];
    snprintf(store_dir, sizeof store_dir, "%s/.store", out_dir);
    df_artifacts_t *store = NULL;
    if (rc == DF_EXIT_OK && (df_prep_begin(out_dir, &err) != DF_OK || !(store = df_artifacts_new(store_dir, 0, &err))))
        rc = DF_EXIT_FAILED;
    df_image *thumbs = rc == DF_EXIT_OK ? calloc(n + 1, sizeof *thumbs) : NULL;
    rep->items = rc == DF_EXIT_OK ? calloc(n + 1, sizeof *rep->items) : NULL;
    if (rc == DF_EXIT_OK && (!thumbs || !rep->items)) {
        df_error_set(&err, DF_E_NOMEM, "prep: out of memory");
        rc = DF_EXIT_FAILED;
    }
    for (size_t i = 0; rc == DF_EXIT_OK && i < n; i++) {
        if (item_from(r->items[i], &rep->items[i]) != DF_OK) {
            df_error_set(&err, DF_E_NOMEM, "prep: out of memory");
            rc = DF_EXIT_FAILED;
        }
        rep->count++;
        char path[PATH_MAX];
        /* A thumbnail that cannot be had leaves a gap on the sheet, nothing worse. */
        if (rc == DF_EXIT_OK && i < DF_PREP_SHEET_MAX && r->items[i]->thumbnail[0] &&
            pull(cli, store, r->items[i]->thumbnail, path, sizeof path, &err) == DF_OK) {
            df_error_t ignored;
            if (df_image_load(path, &thumbs[i], &ignored) != DF_OK)
                memset(&thumbs[i], 0, sizeof thumbs[i]);
            remove(path);
        }
    }
    if (rc == DF_EXIT_OK && df_prep_name_files(rep, &err) != DF_OK)
        rc = DF_EXIT_FAILED;
    for (size_t i = 0; rc == DF_EXIT_OK && i < n; i++) {
        const df_prep_item *it = &rep->items[i];
        if (!it->file)
            continue;
        char from[PATH_MAX], to[PATH_MAX + 16];
        snprintf(to, sizeof to, "%s/%s", out_dir, it->file);
        if (pull(cli, store, r->items[i]->image, from, sizeof from, &err) != DF_OK)
            rc = DF_EXIT_FAILED;
        else if (rename(from, to) != 0) {
            df_error_set(&err, DF_E_IO, "prep: cannot write %s: %s", to, strerror(errno));
            rc = DF_EXIT_FAILED;
        } else if (df_prep_write_caption(out_dir, it, &err) != DF_OK)
            rc = DF_EXIT_FAILED;
    }
    if (rc == DF_EXIT_OK) {
        if (r)
            snprintf(rep->warning, sizeof rep->warning, "%s", r->warning);
        else
            df_prep_set_warning(0, rep->warning, sizeof rep->warning);
        if (df_prep_write_outputs(out_dir, rep, thumbs, &err) != DF_OK)
            rc = DF_EXIT_FAILED;
    }
    if (rc == DF_EXIT_FAILED && err.code)
        df_cli_error("%s", err.msg);
    df_artifacts_destroy(&store);
    df_remove_tree(store_dir); /* what was downloaded has been moved out or read */
    for (size_t i = 0; thumbs && i < n; i++)
        df_image_free(&thumbs[i]);
    free(thumbs);
    return rc;
}

int df_prep_caption_flag(int which, const char *value, df_prep_job_opts *jo)
{
    if (which == 0 || which == 1) {
        *(which ? &jo->caption_prompt : &jo->captioner) = value;
        return DF_EXIT_OK;
    }
    const int beams = which == 2;
    const char *flag = beams ? "--caption-beams" : "--caption-min-length";
    double v;
    if (df_cli_parse_num(flag, value, beams ? 1 : 0, beams ? 64 : 500, &v) || v != (uint32_t)v) {
        df_cli_error("%s wants a whole number from %d to %d", flag, beams ? 1 : 0, beams ? 64 : 500);
        return DF_EXIT_USAGE;
    }
    *(beams ? &jo->caption_beams : &jo->caption_min_length) = (uint32_t)v;
    return DF_EXIT_OK;
}

int df_prep_caption_check(const df_prep_job_opts *jo)
{
    if ((jo->caption_prompt || jo->caption_beams || jo->caption_min_length) && !jo->captioner) {
        df_cli_error("--caption-prompt, --caption-beams and --caption-min-length go with --captioner");
        return DF_EXIT_USAGE;
    }
    return DF_EXIT_OK;
}

int df_prep_on_cluster(df_cli *cli, const char *dir, const char *out_dir, const df_prep_opts *o,
                       const df_prep_job_opts *jo, df_prep_report *rep)
{
    memset(rep, 0, sizeof *rep);
    df_error_t err;
    df_error_clear(&err);
    /* The captioner, before any upload: the workers read it at its absolute
     * path, and its identity keys the result cache. */
    char cap_abs[PATH_MAX], cap_id[DF_SHA256_HEX] = "";
    if (jo && jo->captioner && (!realpath(jo->captioner, cap_abs) || df_file_identity(cap_abs, cap_id, NULL) != DF_OK)) {
        df_cli_error("--captioner %s: %s", jo->captioner, errno ? strerror(errno) : "cannot be read");
        return DF_EXIT_USAGE;
    }
    /* The photos named as prep on one machine names them (dir as given). */
    char **files = NULL;
    size_t n = 0;
    if (df_prep_check_opts(o, &err) != DF_OK || df_prep_list(dir, &files, &n, &err) != DF_OK) {
        df_cli_error("%s", err.msg);
        for (size_t i = 0; files && i < n; i++)
            free(files[i]);
        free(files);
        return DF_EXIT_USAGE;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    char **refs = NULL;
    int rc = DF_EXIT_OK;
    if (n && (rc = df_cli_upload_files(cli, files, n, "photos", &refs)) == DF_EXIT_OK)
        rc = pack_params(o, jo, jo && jo->captioner ? cap_abs : NULL, cap_id, files, refs, n, &buf, &len);
    for (size_t i = 0; refs && i < n; i++)
        free(refs[i]);
    free(refs);
    char id[128] = "";
    if (rc == DF_EXIT_OK && n) {
        if (!cli->json)
            fprintf(stderr, "preparing %zu photo%s on the cluster\n", n, n == 1 ? "" : "s");
        rc = df_cli_submit(cli, "prep", buf, len, 0, 1, id, sizeof id);
    }
    free(buf);
    Dreamfleet__Reply *reply = NULL;
    Dreamfleet__PrepResult *r = NULL;
    if (rc == DF_EXIT_OK && n)
        rc = df_cli_get_job(cli, id, 0, &reply);
    if (rc == DF_EXIT_OK && n &&
        !(r = dreamfleet__prep_result__unpack(NULL, reply->job->result.len, reply->job->result.data))) {
        df_cli_error("%s: the coordinator returned no prepared set", id);
        rc = DF_EXIT_FAILED;
    } else if (rc == DF_EXIT_OK && n && r->n_items != n) {
        df_cli_error("%s: %zu verdicts for %zu photos", id, r->n_items, n);
        rc = DF_EXIT_FAILED;
    }
    if (rc == DF_EXIT_OK)
        rc = write_set(cli, r, out_dir, rep);
    if (r)
        dreamfleet__prep_result__free_unpacked(r, NULL);
    if (reply)
        df_wire_free(&reply->base);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    return rc;
}

int df_prep_fetch_set(df_cli *cli, const char *job_id, const uint8_t *result, size_t len, const char *out_dir,
                      df_prep_report *rep)
{
    memset(rep, 0, sizeof *rep);
    Dreamfleet__PrepResult *r = dreamfleet__prep_result__unpack(NULL, len, result);
    if (!r) {
        df_cli_error("%s: its result is not a prepared set", job_id);
        return DF_EXIT_FAILED;
    }
    int rc = write_set(cli, r, out_dir, rep);
    dreamfleet__prep_result__free_unpacked(r, NULL);
    return rc;
}
