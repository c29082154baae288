/*  prep_output.c - the files of a prepared set (prep.h): the training
 *  images' names and captions, metadata.jsonl, report.txt and the contact
 *  sheet. */
#include "prep.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bitmap_font.h"
#include "image_grid.h"
#include "png_write.h"
#include "unicode.h"

#define THUMB DF_PREP_THUMB
#define SHEET_COLS 6
#define TEXT_LINES 4 /* under each thumbnail: its name, then scores and caption, or the reason */
#define CELL_W THUMB
#define CELL_H (THUMB + 6 + TEXT_LINES * DF_FONT_H)
#define TEXT_COLS ((CELL_W - 6) / DF_FONT_W)

int df_prep_name_files(df_prep_report *rep, df_error_t *err)
{
    int digits = 3;
    for (size_t c = rep->count; c >= 1000; c /= 10)
        digits++;
    rep->accepted = 0;
    for (size_t i = 0; i < rep->count; i++) {
        df_prep_item *it = &rep->items[i];
        free(it->file);
        it->file = NULL;
        if (it->reason)
            continue;
        const char *name = strrchr(it->source, '/');
        name = name ? name + 1 : it->source;
        const char *dot = strrchr(name, '.');
        const int stem = dot ? (int)(dot - name) : (int)strlen(name);
        char buf[1024];
        snprintf(buf, sizeof buf, "images/%0*zu-%.*s.png", digits, rep->accepted, stem, name);
        if (!(it->file = strdup(buf)))
            return df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        rep->accepted++;
    }
    return DF_OK;
}

int df_prep_write_caption(const char *out_dir, const df_prep_item *it, df_error_t *err)
{
    char txt[4300];
    snprintf(txt, sizeof txt, "%s/%.*s.txt", out_dir, (int)strlen(it->file) - 4, it->file);
    FILE *f = fopen(txt, "w");
    int ok = f && fprintf(f, "%s\n", it->caption ? it->caption : "") >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? DF_OK : df_error_set(err, DF_E_IO, "prep: cannot write %s", txt);
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
                        : json_pack("{s:s, s:s, s:s, s:s, s:[i,i], s:[i,i], s:[i,i], s:[i,i], s:[i,i], s:[i,i], s:{s:f, s:f, s:f, s:f}, s:s}",
                              "file_name", file, "caption", caption, "caption_from", it->caption_from,
                              "source", source, "size", (int)it->width, (int)it->height, "original",
                              (int)it->orig_w, (int)it->orig_h, "crop", (int)it->crop_x, (int)it->crop_y, "window",
                              (int)it->window_w, (int)it->window_h, "sdxl_original", (int)it->sdxl_orig_w,
                              (int)it->sdxl_orig_h, "sdxl_crop", (int)it->sdxl_crop_left, (int)it->sdxl_crop_top,
                              "scores",
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

/*  One photo's cell of the sheet into cell (CELL_W x CELL_H, white): its
 *  thumbnail (framed green when accepted, red when not; a grey square when
 *  it could not be decoded), and under it its name, then its scores and
 *  caption, or why it was rejected. */
static void draw_cell(uint8_t *cell, const df_prep_item *it, df_image *thumb)
{
    static const uint8_t ink[3] = {20, 20, 20}, good[3] = {20, 110, 20}, bad[3] = {170, 20, 20};
    memset(cell, 255, (size_t)CELL_W * CELL_H * 3);
    df_image grey = {0};
    /* Nothing to show but the frame; so too for a thumbnail that would not
     * fit its cell (made elsewhere: a worker's, downloaded). */
    if (!thumb->rgb || thumb->width > THUMB || thumb->height > THUMB || !thumb->width || !thumb->height) {
        grey.width = grey.height = THUMB * 3 / 4;
        if ((grey.rgb = malloc((size_t)grey.width * grey.height * 3)))
            memset(grey.rgb, 200, (size_t)grey.width * grey.height * 3);
        thumb = &grey;
    }
    if (thumb->rgb) {
        frame(thumb, it->reason ? 220 : 40, it->reason ? 40 : 180, 40);
        const uint32_t x0 = (THUMB - thumb->width) / 2, y0 = (THUMB - thumb->height) / 2;
        for (uint32_t y = 0; y < thumb->height; y++)
            memcpy(cell + 3 * ((size_t)(y0 + y) * CELL_W + x0), thumb->rgb + 3 * (size_t)y * thumb->width,
                   3 * (size_t)thumb->width);
    }
    free(grey.rgb);
    const char *name = strrchr(it->source, '/');
    name = name ? name + 1 : it->source;
    const int x = 3, y = THUMB + 3;
    df_font_draw_wrapped(cell, CELL_W, CELL_H, x, y, 1, TEXT_COLS, 1, name, ink);
    if (it->reason) {
        df_font_draw_wrapped(cell, CELL_W, CELL_H, x, y + DF_FONT_H, 1, TEXT_COLS, TEXT_LINES - 1, it->reason, bad);
        return;
    }
    char scores[96];
    if (it->faces == 1)
        snprintf(scores, sizeof scores, "quality %.2f, face %.2f", it->scores.quality, it->face.clarity);
    else
        snprintf(scores, sizeof scores, "quality %.2f (s%.2f e%.2f c%.2f)", it->scores.quality,
                 it->scores.sharpness, it->scores.exposure, it->scores.contrast);
    df_font_draw_wrapped(cell, CELL_W, CELL_H, x, y + DF_FONT_H, 1, TEXT_COLS, 1, scores, good);
    df_font_draw_wrapped(cell, CELL_W, CELL_H, x, y + 2 * DF_FONT_H, 1, TEXT_COLS, TEXT_LINES - 2,
                         it->caption ? it->caption : "", ink);
}

/*  Accepted photos first, then rejected ones, each with its words
 *  (draw_cell); the first DF_PREP_SHEET_MAX photos only. */
static int write_sheet(const char *out_dir, const df_prep_report *rep, df_image *thumbs, df_error_t *err)
{
    df_image_grid_t *g = df_image_grid_new(SHEET_COLS, CELL_W, CELL_H, err);
    uint8_t *cellbuf = malloc((size_t)CELL_W * CELL_H * 3);
    if (!g || !cellbuf) {
        df_image_grid_destroy(&g);
        free(cellbuf);
        return err && err->code ? err->code : df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    }
    int rc = DF_OK;
    uint32_t cell = 0;
    for (int pass = 0; rc == DF_OK && pass < 2; pass++)
        for (size_t i = 0; rc == DF_OK && i < rep->count && i < DF_PREP_SHEET_MAX; i++) {
            if ((pass == 0) != !rep->items[i].reason)
                continue;
            draw_cell(cellbuf, &rep->items[i], &thumbs[i]);
            rc = df_image_grid_put(g, cell / SHEET_COLS, cell % SHEET_COLS, cellbuf, CELL_W, CELL_H, err);
            cell++;
        }
    free(cellbuf);
    uint32_t gw, gh;
    const uint8_t *rgb = rc == DF_OK ? df_image_grid_rgb(g, &gw, &gh) : NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/contact-sheet.png", out_dir);
    if (rgb)
        rc = df_png_write(path, rgb, gw, gh, NULL, 0, err);
    df_image_grid_destroy(&g);
    return rc;
}


int df_prep_write_outputs(const char *out_dir, const df_prep_report *rep, df_image *thumbs, df_error_t *err)
{
    int rc = write_metadata(out_dir, rep, err);
    if (rc == DF_OK)
        rc = write_report(out_dir, rep, err);
    if (rc == DF_OK && rep->count && thumbs)
        rc = write_sheet(out_dir, rep, thumbs, err);
    return rc;
}
