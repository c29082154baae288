/*  prep.c - see prep.h. */
#include "prep.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "aspect_buckets.h"
#include "caption.h"
#include "fsutil.h"
#include "image_grid.h"
#include "image_resize.h"
#include "png_write.h"
#include "unicode.h"

#define THUMB 192 /* contact sheet cells */
#define SHEET_COLS 6

#define SHEET_MAX 300 /* photos on the contact sheet, the first in name order */

/*  What a photo became in the first pass, beside its report item: only a
 *  thumbnail, so a large folder needs no more memory than a small one (the
 *  accepted photos are decoded again to be written). */
typedef struct {
    df_image thumb;          /* for the contact sheet (empty when undecodable or past SHEET_MAX) */
} work;

/*  The folder's candidate files, sorted: everything but sidecar captions,
 *  hidden files and folders (a non-photo is reported, not skipped). */
static int list_files(const char *dir, char ***out, size_t *n, df_error_t *err)
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

/*  A frame of colour (r, g, b) three pixels wide around img, for the sheet. */
static void frame(df_image *img, uint8_t r, uint8_t g, uint8_t b)
{
    for (uint32_t y = 0; y < img->height; y++)
        for (uint32_t x = 0; x < img->width; x++)
            if (x < 3 || y < 3 || x + 3 >= img->width || y + 3 >= img->height) {
                uint8_t *p = img->rgb + 3 * ((size_t)y * img->width + x);
                p[0] = r, p[1] = g, p[2] = b;
            }
}

/*  it rejected for reason (malloc'd; NULL: out of memory). */
static int reject(df_prep_item *it, char *reason, df_error_t *err)
{
    it->reason = reason;
    return reason ? DF_OK : df_error_set(err, DF_E_NOMEM, "prep: out of memory");
}

/*  One face, large and clear enough; with a framing, its window must not
 *  need more enlargement than the photo would. */
static int check_face(const df_prep_opts *o, df_face_detector_t *fd, const df_image *img, df_prep_item *it,
                      df_error_t *err)
{
    df_error_t why;
    df_error_clear(&why);
    df_face faces[1];
    if (df_face_detect(fd, img, faces, 1, &it->faces, &why) != DF_OK)
        return reject(it, dupf("faces cannot be looked for: %s", why.msg), err);
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
    df_image win;
    if (df_face_align(img, &it->face, o->framing, it->width, it->height, &win, &why) != DF_OK)
        return reject(it, dupf("cannot be framed: %s", why.msg), err);
    const double up = fmax((double)it->width / win.width, (double)it->height / win.height);
    const double max_up = o->max_upscale > 0 ? o->max_upscale : 1.5;
    int rc = DF_OK;
    if (up > max_up)
        rc = reject(it, dupf("too small framed around the face: a %ux%u window would need %.1fx enlargement to "
                             "%ux%u (at most %.1fx)", win.width, win.height, up, it->width, it->height, max_up), err);
    df_image_free(&win);
    return rc;
}

/*  Pass 1 for one file: decode, bucket, size check, scores, hash, caption
 *  and a thumbnail. A reason rejects it; only a lack of memory is an error. */
static int examine(const char *path, const df_prep_opts *o, df_face_detector_t *fd, df_prep_item *it, work *w,
                   int thumb, df_error_t *err)
{
    df_error_t why;
    df_error_clear(&why);
    df_image img = {0};
    const uint32_t R = o->resolution ? o->resolution : 1024;
    const double max_up = o->max_upscale > 0 ? o->max_upscale : 1.5;
    if (df_image_load(path, &img, &why) != DF_OK) {
        it->reason = strdup(why.msg);
        return it->reason ? DF_OK : df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    }
    it->orig_w = img.width, it->orig_h = img.height;
    df_bucket bk = o->bucket_step ? df_aspect_bucket(R, o->bucket_step, img.width, img.height) : (df_bucket){R, R};
    it->width = bk.width, it->height = bk.height;
    int rc = DF_OK;
    /* One shrunk copy serves the scores, the hash and the thumbnail. */
    df_image small = {0};
    const int have_small = df_photo_analysis_copy(&img, &small, &why) == DF_OK;
    /* A thumbnail first: rejected photos appear on the sheet too. */
    const double ts = (double)THUMB / (img.width > img.height ? img.width : img.height);
    uint32_t tw = (uint32_t)(img.width * ts + 0.5), th = (uint32_t)(img.height * ts + 0.5);
    if (thumb && df_image_resize_lanczos(have_small ? &small : &img, tw ? tw : 1, th ? th : 1, &w->thumb, &why) !=
                     DF_OK)
        memset(&w->thumb, 0, sizeof w->thumb);
    const double up = (double)bk.width / img.width > (double)bk.height / img.height ? (double)bk.width / img.width
                                                                                      : (double)bk.height / img.height;
    if (up > max_up) {
        it->reason = dupf("too small: %ux%u would need %.1fx enlargement to %ux%u (at most %.1fx)", img.width,
                          img.height, up, bk.width, bk.height, max_up);
    } else if (!have_small || df_photo_score(&small, &it->scores, &why) != DF_OK ||
               df_photo_phash(&small, &it->phash, &why) != DF_OK) {
        it->reason = dupf("cannot be measured: %s", why.msg);
    } else {
        it->scored = 1;
        if (o->min_quality >= 0 && it->scores.quality < o->min_quality)
            it->reason = quality_reason(&it->scores, o->min_quality);
    }
    df_image_free(&small);
    if (!it->reason && fd) {
        rc = check_face(o, fd, &img, it, err);
        if (rc != DF_OK) {
            df_image_free(&img);
            return rc;
        }
    }
    df_image_free(&img);
    /* The caption: the sidecar's, or the template. */
    df_caption_opts co = {o->token, o->class_word};
    char *side = df_caption_sidecar(path);
    rc = df_caption_place(side, &co, &it->caption, err);
    it->caption_from = side ? "sidecar" : "template";
    free(side);
    return rc;
}

/*  Near-duplicates: the photos still in, best scored first (name order on
 *  ties), each kept unless it is within `bits` of one already kept, so a
 *  photo is only ever dropped for one that stays. */
static int thin_duplicates(df_prep_report *rep, int bits)
{
    size_t *order = malloc((rep->count + 1) * sizeof *order), *kept = malloc((rep->count + 1) * sizeof *kept);
    size_t n = 0, nk = 0;
    if (!order || !kept) {
        free(order), free(kept);
        return DF_E_NOMEM;
    }
    for (size_t i = 0; i < rep->count; i++)
        if (!rep->items[i].reason && rep->items[i].scored)
            order[n++] = i;
    for (size_t i = 1; i < n; i++) /* insertion sort, stable: quality descending */
        for (size_t j = i; j > 0 && rep->items[order[j]].scores.quality > rep->items[order[j - 1]].scores.quality;
             j--) {
            size_t t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    int rc = DF_OK;
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        df_prep_item *a = &rep->items[order[i]];
        for (size_t k = 0; k < nk; k++) {
            const df_prep_item *b = &rep->items[kept[k]];
            const int d = df_phash_distance(a->phash, b->phash);
            if (d > bits)
                continue;
            const char *name = strrchr(b->source, '/');
            a->reason = dupf("near-duplicate of %s (%d of 64 hash bits apart; that one scored %.2f, this %.2f)",
                             name ? name + 1 : b->source, d, b->scores.quality, a->scores.quality);
            rc = a->reason ? DF_OK : DF_E_NOMEM;
            break;
        }
        if (!a->reason)
            kept[nk++] = order[i];
    }
    free(order), free(kept);
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
        if (e->d_name[0] == '.' || (!df_has_ext(e->d_name, ".png") && !df_has_ext(e->d_name, ".txt")))
            continue;
        char path[4200];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path || unlink(path) != 0)
            rc = df_error_set(err, DF_E_IO, "prep: cannot remove %s/%s from an earlier run", dir, e->d_name);
    }
    closedir(d);
    return rc;
}

static int write_metadata(const char *out_dir, const df_prep_report *rep, df_error_t *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metadata.jsonl", out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return df_error_set(err, DF_E_IO, "prep: cannot write %s", path);
    for (size_t i = 0; i < rep->count; i++) {
        const df_prep_item *it = &rep->items[i];
        if (it->reason)
            continue;
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)it->phash);
        /* File names need not be UTF-8; JSON must be. */
        char *file = df_utf8_sanitize(it->file), *caption = df_utf8_sanitize(it->caption);
        char *source = df_utf8_sanitize(it->source);
        json_t *j = !file || !caption || !source
                        ? NULL
                        : json_pack("{s:s, s:s, s:s, s:s, s:[i,i], s:[i,i], s:[i,i], s:{s:f, s:f, s:f, s:f}, s:s}",
                              "file_name", file, "caption", caption, "caption_from", it->caption_from,
                              "source", source, "size", (int)it->width, (int)it->height, "original",
                              (int)it->orig_w, (int)it->orig_h, "crop", (int)it->crop_x, (int)it->crop_y, "scores",
                              "quality", it->scores.quality, "sharpness", it->scores.sharpness, "exposure",
                              it->scores.exposure, "contrast", it->scores.contrast, "phash", hash);
        if (j && it->faces == 1) {
            const df_face *fc = &it->face;
            json_t *face = json_pack("{s:[f,f,f,f], s:i, s:f, s:f}", "box", (double)fc->x, (double)fc->y,
                                     (double)fc->w, (double)fc->h, "eyes", fc->eyes, "roll_deg", (double)fc->roll_deg,
                                     "clarity", (double)fc->clarity);
            if (!face || json_object_set_new(j, "face", face) != 0)
                json_decref(j), j = NULL;
        }
        free(file), free(caption), free(source);
        char *line = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (line)
            fprintf(f, "%s\n", line);
        free(line);
        json_decref(j);
        if (!line) {
            fclose(f);
            return df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        }
    }
    return fclose(f) == 0 ? DF_OK : df_error_set(err, DF_E_IO, "prep: cannot write %s", path);
}

static int write_report(const char *out_dir, const df_prep_report *rep, df_error_t *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/report.txt", out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return df_error_set(err, DF_E_IO, "prep: cannot write %s", path);
    fprintf(f, "%zu of %zu photos accepted\n", rep->accepted, rep->count);
    if (rep->warning[0])
        fprintf(f, "warning: %s\n", rep->warning);
    for (size_t i = 0; i < rep->count; i++) {
        const df_prep_item *it = &rep->items[i];
        const char *name = strrchr(it->source, '/');
        name = name ? name + 1 : it->source;
        if (it->reason)
            fprintf(f, "rejected %s: %s\n", name, it->reason);
        else if (it->faces == 1)
            fprintf(f, "accepted %s -> %s (%ux%u, quality %.2f: sharpness %.2f, exposure %.2f, contrast %.2f; face "
                    "clarity %.2f, roll %.1f degrees): %s\n", name, it->file, it->width, it->height, it->scores.quality,
                    it->scores.sharpness, it->scores.exposure, it->scores.contrast, it->face.clarity,
                    it->face.roll_deg, it->caption);
        else
            fprintf(f, "accepted %s -> %s (%ux%u, quality %.2f: sharpness %.2f, exposure %.2f, contrast %.2f): %s\n",
                    name, it->file, it->width, it->height, it->scores.quality, it->scores.sharpness,
                    it->scores.exposure, it->scores.contrast, it->caption);
    }
    return fclose(f) == 0 ? DF_OK : df_error_set(err, DF_E_IO, "prep: cannot write %s", path);
}

/*  Accepted photos framed green, then rejected ones framed red. */
static int write_sheet(const char *out_dir, const df_prep_report *rep, work *w, df_error_t *err)
{
    df_image_grid_t *g = df_image_grid_new(SHEET_COLS, THUMB, THUMB, err);
    if (!g)
        return err && err->code ? err->code : DF_E_NOMEM;
    int rc = DF_OK;
    uint32_t cell = 0;
    for (int pass = 0; rc == DF_OK && pass < 2; pass++)
        for (size_t i = 0; rc == DF_OK && i < rep->count; i++) {
            if ((pass == 0) != !rep->items[i].reason || !w[i].thumb.rgb)
                continue;
            frame(&w[i].thumb, pass ? 220 : 40, pass ? 40 : 180, 40);
            rc = df_image_grid_put(g, cell / SHEET_COLS, cell % SHEET_COLS, w[i].thumb.rgb, w[i].thumb.width,
                                   w[i].thumb.height, err);
            cell++;
        }
    uint32_t gw, gh;
    const uint8_t *rgb = rc == DF_OK ? df_image_grid_rgb(g, &gw, &gh) : NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/contact-sheet.png", out_dir);
    if (rgb)
        rc = df_png_write(path, rgb, gw, gh, NULL, 0, err);
    df_image_grid_destroy(&g);
    return rc;
}

void df_prep_report_free(df_prep_report *rep)
{
    for (size_t i = 0; rep->items && i < rep->count; i++)
        free(rep->items[i].source), free(rep->items[i].file), free(rep->items[i].reason), free(rep->items[i].caption);
    free(rep->items);
    memset(rep, 0, sizeof *rep);
}

int df_prep_dir(const char *dir, const char *out_dir, const df_prep_opts *o, df_prep_report *rep, df_error_t *err)
{
    memset(rep, 0, sizeof *rep);
    const uint32_t R = o->resolution ? o->resolution : 1024;
    if (R < 64 || R > 4096 || (o->bucket_step && R % o->bucket_step))
        return df_error_set(err, DF_E_INVALID, "prep: resolution %u: from 64 to 4096, a multiple of %u", R,
                            o->bucket_step ? o->bucket_step : 1);
    char **files = NULL;
    size_t n = 0;
    int rc = list_files(dir, &files, &n, err);
    char images[4200];
    snprintf(images, sizeof images, "%s/images", out_dir);
    if (rc == DF_OK)
        rc = df_mkdirs(images, err);
    if (rc == DF_OK)
        rc = clear_images(images, err);
    df_face_detector_t *fd = rc == DF_OK && o->person ? df_face_detector_new(o->cascades, err) : NULL;
    if (rc == DF_OK && o->person && !fd)
        rc = err && err->code ? err->code : DF_E_NOT_FOUND;
    work *w = rc == DF_OK ? calloc(n + 1, sizeof *w) : NULL;
    rep->items = rc == DF_OK ? calloc(n + 1, sizeof *rep->items) : NULL;
    if (rc == DF_OK && (!w || !rep->items))
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        rep->items[i].source = files[i], files[i] = NULL;
        rep->count++;
        rep->items[i].faces = -1;
        rc = examine(rep->items[i].source, o, fd, &rep->items[i], &w[i], i < SHEET_MAX, err);
    }
    if (rc == DF_OK && o->dup_bits >= 0 && thin_duplicates(rep, o->dup_bits ? o->dup_bits : 6) != DF_OK)
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    /* The accepted photos at training size, numbered in name order (wide
     * enough numbers that the files sort in that order too). */
    int digits = 3;
    for (size_t c = rep->count; c >= 1000; c /= 10)
        digits++;
    for (size_t i = 0; rc == DF_OK && i < rep->count; i++) {
        df_prep_item *it = &rep->items[i];
        if (it->reason)
            continue;
        const char *name = strrchr(it->source, '/');
        name = name ? name + 1 : it->source;
        const char *dot = strrchr(name, '.');
        const int stem = dot ? (int)(dot - name) : (int)strlen(name);
        it->file = dupf("images/%0*zu-%.*s.png", digits, rep->accepted, stem, name);
        char path[4200], txt[4200];
        snprintf(path, sizeof path, "%s/%s", out_dir, it->file ? it->file : "");
        snprintf(txt, sizeof txt, "%.*s.txt", (int)strlen(path) - 4, path);
        if (!it->file)
            rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        /* Decoded again: only one full-size photo is in memory at a time. */
        df_image img = {0}, train = {0};
        if (rc == DF_OK)
            rc = df_image_load(it->source, &img, err);
        if (rc == DF_OK && o->framing && it->faces == 1) { /* eyes levelled, framed around the face */
            df_image win = {0};
            rc = df_face_align(&img, &it->face, o->framing, it->width, it->height, &win, err);
            if (rc == DF_OK)
                rc = df_image_cover_lanczos(&win, it->width, it->height, &train, NULL, NULL, err);
            df_image_free(&win);
        } else if (rc == DF_OK) {
            rc = df_image_cover_lanczos(&img, it->width, it->height, &train, &it->crop_x, &it->crop_y, err);
        }
        if (rc == DF_OK)
            rc = df_png_write(path, train.rgb, train.width, train.height, NULL, 0, err);
        df_image_free(&img), df_image_free(&train);
        FILE *f = rc == DF_OK ? fopen(txt, "w") : NULL;
        if (rc == DF_OK && (!f || fprintf(f, "%s\n", it->caption) < 0))
            rc = df_error_set(err, DF_E_IO, "prep: cannot write %s", txt);
        if (f && fclose(f) != 0 && rc == DF_OK)
            rc = df_error_set(err, DF_E_IO, "prep: cannot write %s", txt);
        rep->accepted++;
    }
    if (rc == DF_OK && rep->accepted < 5)
        snprintf(rep->warning, sizeof rep->warning, "only %zu photos accepted: 5 to 15 of the subject train best",
                 rep->accepted);
    else if (rc == DF_OK && rep->accepted > 30)
        snprintf(rep->warning, sizeof rep->warning, "%zu photos accepted: more than 30 mostly lengthen training",
                 rep->accepted);
    if (rc == DF_OK)
        rc = write_metadata(out_dir, rep, err);
    if (rc == DF_OK)
        rc = write_report(out_dir, rep, err);
    if (rc == DF_OK && rep->count)
        rc = write_sheet(out_dir, rep, w, err);
    for (size_t i = 0; w && i < n; i++)
        df_image_free(&w[i].thumb);
    free(w);
    df_face_detector_destroy(&fd);
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
    return rc;
}

