/*  prep.c - see prep.h: one photo's steps, and the whole of a folder on
 *  one machine (the set's choice is in prep_select.c, the files in
 *  prep_output.c). */
#include "prep.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aspect_buckets.h"
#include "caption.h"
#include "fsutil.h"
#include "image_resize.h"
#include "png_write.h"


/*  The folder's candidate files, sorted: everything but sidecar captions,
 *  hidden files and folders (a non-photo is reported, not skipped). */
int df_prep_list(const char *dir, char ***out, size_t *n, df_error_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return df_error_set(err, DF_E_NOT_FOUND, "prep: cannot open folder %s", dir);
    char **v = NULL;
    size_t count = 0, cap = 0;
    int rc = DF_OK;
    for (struct dirent *e; rc == DF_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.' || df_has_ext(e->d_name, ".txt") || df_has_ext(e->d_name, ".caption"))
            continue;
        char path[4200];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path || stat(path, &st) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (count == cap) {
            char **g = realloc(v, (cap = cap ? 2 * cap : 32) * sizeof *v);
            if (!g) {
                rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
                break;
            }
            v = g;
        }
        if (!(v[count] = strdup(path)))
            rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        else
            count++;
        if (count > 100000)
            rc = df_error_set(err, DF_E_RANGE, "prep: %s holds more than 100000 files", dir);
    }
    closedir(d);
    if (count)
        df_sort_names(v, count);
    *out = v, *n = count;
    return rc;
}

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dupf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return strdup(buf);
}

/*  Why scores fall short, in words. */
static char *quality_reason(const df_photo_scores *s, double min_quality)
{
    char buf[512]; /* room for every clause: n stays inside it */
    int n = snprintf(buf, sizeof buf, "quality %.3f below %.3f:", s->quality, min_quality);
    if (s->sharpness < 0.95)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " blurry (sharpness %.2f)", s->sharpness);
    if (s->exposure < 0.95)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " %s (exposure %.2f, mean level %.0f of 255, %.0f%% clipped)",
                      s->mean < 60 ? "too dark" : s->mean > 195 ? "too bright" : "clipped", s->exposure, s->mean,
                      100 * s->clipped);
    if (s->contrast < 0.95)
        n += snprintf(buf + n, sizeof buf - (size_t)n, " flat (contrast %.2f)", s->contrast);
    if (s->sharpness >= 0.95 && s->exposure >= 0.95 && s->contrast >= 0.95)
        snprintf(buf + n, sizeof buf - (size_t)n, " each score a little short (sharpness %.2f, exposure %.2f, "
                 "contrast %.2f)", s->sharpness, s->exposure, s->contrast);
    return strdup(buf);
}

/*  Whether a step failed for want of memory: the machine's trouble, not the
 *  photo's, so an error (another attempt may pass) rather than a verdict
 *  (which a cluster would keep in its result cache). */
static int short_of_memory(const df_error_t *why, df_error_t *err)
{
    if (why->code != DF_E_NOMEM)
        return 0;
    df_error_set(err, DF_E_NOMEM, "%s", why->msg);
    return 1;
}

/*  it rejected for reason (malloc'd; NULL: out of memory). */
static int reject(df_prep_item *it, char *reason, df_error_t *err)
{
    it->reason = reason;
    return reason ? DF_OK : df_error_set(err, DF_E_NOMEM, "prep: out of memory");
}

/*  One face, large and clear enough; with a framing, its window (into
 *  *win) must not need more enlargement than the photo would. */
static int check_face(const df_prep_opts *o, df_face_detector_t *fd, const df_image *img, df_prep_item *it,
                      df_image *win, df_error_t *err)
{
    df_error_t why;
    df_error_clear(&why);
    df_face faces[1];
    if (df_face_detect(fd, img, faces, 1, &it->faces, &why) != DF_OK)
        return short_of_memory(&why, err) ? DF_E_NOMEM
                                          : reject(it, dupf("faces cannot be looked for: %s", why.msg), err);
    const double min_clarity = o->min_face_clarity > 0 ? o->min_face_clarity : 0.9;
    const double min_size = o->min_face_size > 0 ? o->min_face_size : 0.1;
    const uint32_t shorter = img->width < img->height ? img->width : img->height;
    if (it->faces == 0)
        return reject(it, strdup("no face found (a photo of a person needs one, facing the camera)"), err);
    if (it->faces > 1)
        return reject(it, dupf("%d faces: a group shot (one person per photo)", it->faces), err);
    it->face = faces[0];
    if (it->face.w < min_size * shorter)
        return reject(it, dupf("face too small: %.0f px, %.0f%% of the photo's short side (at least %.0f%%)",
                               it->face.w, 100.0 * it->face.w / shorter, 100 * min_size), err);
    if (it->face.clarity < min_clarity)
        return reject(it, dupf("face not clear enough: clarity %.2f (at least %.2f)%s", it->face.clarity,
                               min_clarity, it->face.eyes < 2 ? "; its eyes were not found" : ""), err);
    if (!o->framing)
        return DF_OK;
    if (df_face_align(img, &it->face, o->framing, it->width, it->height, win, &why) != DF_OK)
        return short_of_memory(&why, err) ? DF_E_NOMEM : reject(it, dupf("cannot be framed: %s", why.msg), err);
    const double up = fmax((double)it->width / win->width, (double)it->height / win->height);
    const double max_up = o->max_upscale > 0 ? o->max_upscale : 1.5;
    if (up > max_up)
        return reject(it, dupf("too small framed around the face: a %ux%u window would need %.1fx enlargement to "
                               "%ux%u (at most %.1fx)", win->width, win->height, up, it->width, it->height, max_up),
                      err);
    return DF_OK;
}

int df_prep_check_opts(const df_prep_opts *o, df_error_t *err)
{
    const uint32_t R = o->resolution ? o->resolution : 1024;
    if (R < 64 || R > 4096 || (o->bucket_step && R % o->bucket_step))
        return df_error_set(err, DF_E_INVALID, "prep: resolution %u: from 64 to 4096, a multiple of %u", R,
                            o->bucket_step ? o->bucket_step : 1);
    if (o->framing && !o->person)
        return df_error_set(err, DF_E_INVALID, "prep: framing around a face goes with a person");
    if (o->framing != 0 && o->framing != DF_FRAME_HEAD && o->framing != DF_FRAME_BODY)
        return df_error_set(err, DF_E_INVALID, "prep: framing %d: 0 (none), 1 (head) or 2 (body)", (int)o->framing);
    if (!(o->max_upscale >= 0 && o->max_upscale <= 16) || !(o->min_quality <= 1) ||
        !(o->min_face_clarity >= 0 && o->min_face_clarity <= 1) || !(o->min_face_size >= 0 && o->min_face_size < 1))
        return df_error_set(err, DF_E_INVALID, "prep: a threshold out of range (max upscale 0-16, quality at most 1, "
                            "face clarity 0-1, face size 0-1)");
    return DF_OK;
}

int df_prep_photo(const char *path, const char *sidecar, const df_prep_opts *o, df_face_detector_t *fd,
                  df_prep_item *it, df_image *thumb, df_image *train, df_error_t *err)
{
    df_error_t why;
    df_error_clear(&why);
    df_image img = {0}, win = {0};
    const uint32_t R = o->resolution ? o->resolution : 1024;
    const double max_up = o->max_upscale > 0 ? o->max_upscale : 1.5;
    if (df_image_load(path, &img, &why) != DF_OK)
        return short_of_memory(&why, err) ? DF_E_NOMEM : reject(it, strdup(why.msg), err);
    it->orig_w = img.width, it->orig_h = img.height;
    df_bucket bk = o->bucket_step ? df_aspect_bucket(R, o->bucket_step, img.width, img.height) : (df_bucket){R, R};
    it->width = bk.width, it->height = bk.height;
    int rc = DF_OK;
    /* One shrunk copy serves the scores, the hash and the thumbnail. */
    df_image small = {0};
    const int have_small = df_photo_analysis_copy(&img, &small, &why) == DF_OK;
    if (!have_small && short_of_memory(&why, err)) {
        df_image_free(&img);
        return DF_E_NOMEM;
    }
    /* A thumbnail first: rejected photos appear on the sheet too. */
    const double ts = (double)DF_PREP_THUMB / (img.width > img.height ? img.width : img.height);
    uint32_t tw = (uint32_t)(img.width * ts + 0.5), th = (uint32_t)(img.height * ts + 0.5);
    if (thumb && df_image_resize_lanczos(have_small ? &small : &img, tw ? tw : 1, th ? th : 1, thumb, &why) != DF_OK)
        memset(thumb, 0, sizeof *thumb);
    const double up = fmax((double)bk.width / img.width, (double)bk.height / img.height);
    if (up > max_up) {
        it->reason = dupf("too small: %ux%u would need %.1fx enlargement to %ux%u (at most %.1fx)", img.width,
                          img.height, up, bk.width, bk.height, max_up);
    } else if (!have_small || df_photo_score(&small, &it->scores, &why) != DF_OK ||
               df_photo_phash(&small, &it->phash, &why) != DF_OK) {
        if (short_of_memory(&why, err))
            rc = DF_E_NOMEM;
        else
            it->reason = dupf("cannot be measured: %s", why.msg);
    } else {
        it->scored = 1;
        if (o->min_quality >= 0 && it->scores.quality < o->min_quality)
            it->reason = quality_reason(&it->scores, o->min_quality);
    }
    df_image_free(&small);
    if (rc == DF_OK && !it->reason && fd)
        rc = check_face(o, fd, &img, it, &win, err);
    /* The caption: the sidecar's; else, for a photo going into the set, a
     * captioning model's of what will be trained (the framed window, or
     * the photo); else the template. */
    if (rc == DF_OK) {
        df_caption_opts co = {o->token, o->class_word};
        char *said = NULL;
        const int own = sidecar && *sidecar;
        if (!own && o->captioner && !it->reason)
            rc = o->captioner(o->captioner_ctx, win.rgb ? &win : &img, &said, err);
        const char *text = own ? sidecar : said && *said ? said : NULL;
        if (rc == DF_OK)
            rc = df_caption_place(text, &co, &it->caption, err);
        it->caption_from = own ? "sidecar" : text ? "model" : "template";
        free(said);
    }
    /* The training image: with a framing, the window turned and framed
     * around the face; else the bucket's aspect cut around the centre. */
    if (rc == DF_OK && !it->reason) {
        const df_image *from = win.rgb ? &win : &img;
        it->window_w = from->width, it->window_h = from->height;
        it->sdxl_orig_w = it->window_w, it->sdxl_orig_h = it->window_h;
        if (!win.rgb) {
            uint32_t c[4];
            df_image_cover_crop(img.width, img.height, bk.width, bk.height, c);
            it->crop_x = c[0], it->crop_y = c[1];
            it->window_w = c[2], it->window_h = c[3];
            it->sdxl_orig_w = img.width, it->sdxl_orig_h = img.height;
            it->sdxl_crop_left = (uint32_t)lrint((double)c[0] * bk.width / c[2]);
            it->sdxl_crop_top = (uint32_t)lrint((double)c[1] * bk.height / c[3]);
        }
        if (train)
            rc = df_image_cover_lanczos(from, it->width, it->height, train, NULL, NULL, err);
    }
    df_image_free(&win);
    df_image_free(&img);
    return rc;
}

/*  Removes the training images an earlier run left in dir (a run writing
 *  fewer photos would otherwise leave stale ones beside its own). */
static int clear_images(const char *dir, df_error_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return df_error_set(err, DF_E_IO, "prep: cannot open %s", dir);
    int rc = DF_OK;
    for (struct dirent *e; rc == DF_OK && (e = readdir(d));) {
        const int pending = strncmp(e->d_name, ".pending-", 9) == 0;
        if ((e->d_name[0] == '.' && !pending) || (!df_has_ext(e->d_name, ".png") && !df_has_ext(e->d_name, ".txt")))
            continue;
        char path[4200];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path || unlink(path) != 0)
            rc = df_error_set(err, DF_E_IO, "prep: cannot remove %s/%s from an earlier run", dir, e->d_name);
    }
    closedir(d);
    return rc;
}

int df_prep_begin(const char *out_dir, df_error_t *err)
{
    char images[4200];
    snprintf(images, sizeof images, "%s/images", out_dir);
    int rc = df_mkdirs(images, err);
    return rc == DF_OK ? clear_images(images, err) : rc;
}

/*  The pending name of item i's training image, before the set's choice
 *  names it (a dot file, which clear_images also removes). */
static void pending_path(const char *out_dir, size_t i, char *path, size_t cap)
{
    snprintf(path, cap, "%s/images/.pending-%06zu.png", out_dir, i);
}

int df_prep_dir(const char *dir, const char *out_dir, const df_prep_opts *o, df_prep_report *rep, df_error_t *err)
{
    memset(rep, 0, sizeof *rep);
    int rc = df_prep_check_opts(o, err);
    char **files = NULL;
    size_t n = 0;
    if (rc == DF_OK)
        rc = df_prep_list(dir, &files, &n, err);
    if (rc == DF_OK)
        rc = df_prep_begin(out_dir, err);
    df_face_detector_t *fd = rc == DF_OK && o->person ? df_face_detector_new(o->cascades, err) : NULL;
    if (rc == DF_OK && o->person && !fd)
        rc = err && err->code ? err->code : DF_E_NOT_FOUND;
    /* Only thumbnails stay in memory: each training image goes to disk as
     * soon as it is made, under a pending name until the set is chosen. */
    df_image *thumbs = rc == DF_OK ? calloc(n + 1, sizeof *thumbs) : NULL;
    rep->items = rc == DF_OK ? calloc(n + 1, sizeof *rep->items) : NULL;
    if (rc == DF_OK && (!thumbs || !rep->items))
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        df_prep_item *it = &rep->items[i];
        it->source = files[i], files[i] = NULL;
        it->faces = -1;
        rep->count++;
        char *side = df_caption_sidecar(it->source);
        df_image train = {0};
        rc = df_prep_photo(it->source, side, o, fd, it, i < DF_PREP_SHEET_MAX ? &thumbs[i] : NULL, &train, err);
        free(side);
        char path[4300];
        pending_path(out_dir, i, path, sizeof path);
        if (rc == DF_OK && train.rgb)
            rc = df_png_write(path, train.rgb, train.width, train.height, NULL, 0, err);
        df_image_free(&train);
    }
    if (rc == DF_OK && o->dup_bits >= 0 && df_prep_thin_duplicates(rep->items, rep->count, o->dup_bits ? o->dup_bits : 6) != DF_OK)
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    if (rc == DF_OK)
        rc = df_prep_name_files(rep, err);
    /* The pending images take their names, or go with a near-duplicate. */
    for (size_t i = 0; rc == DF_OK && i < rep->count; i++) {
        const df_prep_item *it = &rep->items[i];
        char from[4300], to[4300];
        pending_path(out_dir, i, from, sizeof from);
        if (!it->file) {
            unlink(from);
            continue;
        }
        snprintf(to, sizeof to, "%s/%s", out_dir, it->file);
        if (rename(from, to) != 0)
            rc = df_error_set(err, DF_E_IO, "prep: cannot name %s", to);
        if (rc == DF_OK)
            rc = df_prep_write_caption(out_dir, it, err);
    }
    if (rc == DF_OK)
        df_prep_set_warning(rep->accepted, rep->warning, sizeof rep->warning);
    if (rc == DF_OK)
        rc = df_prep_write_outputs(out_dir, rep, thumbs, err);
    for (size_t i = 0; thumbs && i < n; i++)
        df_image_free(&thumbs[i]);
    free(thumbs);
    df_face_detector_destroy(&fd);
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
    return rc;
}
