/*  test_prep.c - training-set preparation (issue 8): captions with the
 *  identifier in place, Lanczos resampling, quality scores, perceptual
 *  hashes, and `prep` over a folder holding a case of every rejection. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <lcms2.h>
#include <libheif/heif.h>
#include <zlib.h>

#include "bitmap_font.h"
#include "caption.h"
#include "face_detect.h"
#include "image_decode.h"
#include "image_encode.h"
#include "image_resize.h"
#include "philox.h"
#include "photo_quality.h"
#include "png_write.h"
#include "prep.h"
#include "test.h"

static char g_dir[64];
static const char *g_photos; /* tests/data/photos */

/* ---- captions ---------------------------------------------------------- */

static void expect_caption(const char *text, const char *token, const char *cls, const char *want)
{
    df_error_t err;
    df_error_clear(&err);
    df_caption_opts o = {token, cls};
    char *got = NULL;
    CHECK_OK(df_caption_place(text, &o, &got, &err), &err);
    if (!got || strcmp(got, want) != 0) {
        fprintf(stderr, "  caption \"%s\": got \"%s\", want \"%s\"\n", text ? text : "(null)", got ? got : "", want);
        test_failures_++;
    }
    free(got);
}

static void test_caption_rules(void)
{
    /* The generic subject becomes the identifier with its class, article and all. */
    expect_caption("a photo of a man smiling", NULL, NULL, "a photo of TOK person smiling");
    expect_caption("A woman standing on a beach.", NULL, NULL, "TOK person standing on a beach");
    expect_caption("the dog running in a park", "sks", "dog", "sks dog running in a park");
    expect_caption("close-up of a puppy", "sks", "dog", "close-up of sks dog");
    /* The earliest mention only; "woman" is not "man". */
    expect_caption("a woman and her dog", NULL, NULL, "TOK person and her dog");
    /* Already carrying the token: left where it is, only cleaned. */
    expect_caption("  TOK person   in the rain ,, at night. ", NULL, NULL, "TOK person in the rain, at night");
    expect_caption("@alice at the beach", "@alice", "woman", "@alice at the beach");
    /* The class word itself first; other words only of its kind. */
    expect_caption("a man walking a dog", "sks", "dog", "a man walking sks dog");
    expect_caption("a man and a woman", NULL, "woman", "a man and TOK woman");
    expect_caption("a man walking his puppy", "sks", "dog", "a man walking his sks dog");
    expect_caption("a red product on a table", "zwx", "mug", "a red zwx mug on a table");
    /* Not UTF-8 (Latin-1): the bad byte becomes U+FFFD, the rest stays. */
    expect_caption("caf\xe9 with a man", NULL, NULL, "caf\xef\xbf\xbd with TOK person");
    /* No subject named: the identifier goes in front. */
    expect_caption("sunset over the sea", NULL, NULL, "TOK person, sunset over the sea");
    /* Nothing at all: the template. */
    expect_caption("", NULL, NULL, "a photo of TOK person");
    expect_caption(NULL, "TOK", "cat", "a photo of TOK cat");
    expect_caption(" \t\n ", NULL, NULL, "a photo of TOK person");
    /* Control characters are dropped, an ellipsis kept. */
    expect_caption("a man\x01 waiting...", NULL, NULL, "TOK person waiting...");
}

/*  Sidecars: .txt first, then .caption, on one line; none gives NULL. */
static void test_caption_sidecar(void)
{
    char photo[128], side[140];
    snprintf(photo, sizeof photo, "%s/side.v1.png", g_dir);
    CHECK(df_caption_sidecar(photo) == NULL);
    snprintf(side, sizeof side, "%s/side.v1.caption", g_dir);
    FILE *f = fopen(side, "w");
    CHECK(f != NULL);
    if (f)
        fputs("  a man\nin a hat \n", f), fclose(f);
    char *got = df_caption_sidecar(photo);
    CHECK(got && strcmp(got, "a man in a hat") == 0);
    free(got);
    unlink(side);
}

/* ---- pictures ---------------------------------------------------------- */

/*  A w x h "photo": a lit gradient, a few discs and stripes placed by the
 *  seed (so different seeds make different pictures), and fine texture of
 *  amplitude `texture`, around mean level `level`. */
static df_image make_photo(uint32_t w, uint32_t h, double level, double texture, uint64_t seed)
{
    df_image img = {w, h, malloc((size_t)w * h * 3)};
    float *noise = malloc((size_t)w * h * sizeof *noise), shape[16];
    df_philox_fill_normal(noise, (uint64_t)w * h, seed, 0);
    df_philox_fill_uniform(shape, 16, seed, 1, 0.0f, 1.0f);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            const double u = (double)x / w, v = (double)y / h;
            double base = 0.6 * (shape[0] * u + shape[1] * v - 0.5 * (shape[0] + shape[1]));
            for (int d = 0; d < 3; d++) { /* discs, light or dark */
                const double cx = shape[2 + 3 * d], cy = shape[3 + 3 * d], r = 0.08 + 0.15 * shape[4 + 3 * d];
                if ((u - cx) * (u - cx) + (v - cy) * (v - cy) < r * r)
                    base += d % 2 ? -0.5 : 0.5;
            }
            base += 0.25 * sin(2 * M_PI * (3 + 6 * shape[11]) * (shape[12] * u + (1 - shape[12]) * v));
            for (int c = 0; c < 3; c++) {
                double val = level * (1 + 1.2 * base) + texture * noise[(size_t)y * w + x] + (c - 1) * 10 * shape[13];
                img.rgb[3 * ((size_t)y * w + x) + c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
            }
        }
    free(noise);
    return img;
}

/*  img blurred by three passes of a box filter of radius r (about a Gaussian). */
static void blur(df_image *img, int r)
{
    const uint32_t w = img->width, h = img->height;
    uint8_t *tmp = malloc((size_t)w * h * 3);
    for (int pass = 0; pass < 6; pass++) { /* horizontal and vertical, three times */
        const int horiz = pass % 2 == 0;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    int sum = 0, n = 0;
                    for (int d = -r; d <= r; d++) {
                        long xx = horiz ? (long)x + d : (long)x, yy = horiz ? (long)y : (long)y + d;
                        if (xx < 0 || yy < 0 || xx >= (long)w || yy >= (long)h)
                            continue;
                        sum += img->rgb[3 * ((size_t)yy * w + (size_t)xx) + c], n++;
                    }
                    tmp[3 * ((size_t)y * w + x) + c] = (uint8_t)(sum / n);
                }
        memcpy(img->rgb, tmp, (size_t)w * h * 3);
    }
    free(tmp);
}

static void save_png(const char *dir, const char *name, const df_image *img)
{
    char path[300];
    df_error_t err;
    df_error_clear(&err);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_OK(df_png_write(path, img->rgb, img->width, img->height, NULL, 0, &err), &err);
}

/*  Lanczos through libswscale: a flat picture stays flat; a one-pixel
 *  checkerboard shrunk 8x comes out mid-grey (a filter as wide as the
 *  shrink, where point sampling would keep black and white); a crop to
 *  another aspect comes from the centre. */
static void test_resize(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_image flat = {300, 200, malloc(300 * 200 * 3)}, out = {0};
    memset(flat.rgb, 77, 300 * 200 * 3);
    CHECK_OK(df_image_resize_lanczos(&flat, 123, 45, &out, &err), &err);
    int worst = 0;
    for (size_t k = 0; out.rgb && k < 123 * 45 * 3; k++)
        worst = abs(out.rgb[k] - 77) > worst ? abs(out.rgb[k] - 77) : worst;
    CHECK(out.width == 123 && out.height == 45 && worst <= 1);
    df_image_free(&out);
    df_image check = {1024, 1024, malloc(1024 * 1024 * 3)};
    for (size_t k = 0; k < 1024 * 1024; k++)
        memset(check.rgb + 3 * k, ((k % 1024) + (k / 1024)) % 2 ? 255 : 0, 3);
    CHECK_OK(df_image_resize_lanczos(&check, 128, 128, &out, &err), &err);
    worst = 0;
    for (size_t k = 0; out.rgb && k < 128 * 128 * 3; k++)
        worst = abs(out.rgb[k] - 128) > worst ? abs(out.rgb[k] - 128) : worst;
    fprintf(stderr, "  a 1-pixel checkerboard shrunk 8x: within %d levels of mid-grey\n", worst);
    CHECK(worst <= 8);
    df_image_free(&out), df_image_free(&check);
    /* A landscape cropped square: the centre, left and right bands dropped. */
    df_image wide = {400, 100, calloc(400 * 100 * 3, 1)};
    for (uint32_t y = 0; y < 100; y++)
        for (uint32_t x = 150; x < 250; x++)
            memset(wide.rgb + 3 * (y * 400 + x), 200, 3);
    uint32_t cx = 9, cy = 9;
    CHECK_OK(df_image_cover_lanczos(&wide, 64, 64, &out, &cx, &cy, &err), &err);
    CHECK(cx == 150 && cy == 0 && out.rgb && out.rgb[3 * (32 * 64 + 32)] >= 198);
    df_image_free(&out);
    CHECK_FAILS(df_image_resize_lanczos(&wide, 0, 10, &out, &err), &err, DF_E_INVALID, "sizes from 1");
    df_image_free(&wide), df_image_free(&flat);
}

/*  A sharp, well-exposed photo scores 1; blurring it, darkening it or
 *  flattening it takes the matching score down. */
static void test_scores(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_photo_scores good, blurred, dark, flat;
    df_image img = make_photo(1200, 900, 128, 18, 1);
    CHECK_OK(df_photo_score(&img, &good, &err), &err);
    blur(&img, 6);
    CHECK_OK(df_photo_score(&img, &blurred, &err), &err);
    df_image_free(&img);
    img = make_photo(1200, 900, 14, 2, 1);
    CHECK_OK(df_photo_score(&img, &dark, &err), &err);
    df_image_free(&img);
    img = make_photo(1200, 900, 128, 18, 1);
    for (size_t k = 0; k < 1200 * 900 * 3; k++) /* contrast squeezed into 16 levels */
        img.rgb[k] = (uint8_t)(120 + img.rgb[k] / 16);
    CHECK_OK(df_photo_score(&img, &flat, &err), &err);
    df_image_free(&img);
    fprintf(stderr, "  quality: good %.2f (Laplacian variance %.0f), blurred %.2f (%.1f), dark %.2f (mean %.0f), "
            "flat %.2f (stddev %.1f)\n", good.quality, good.laplacian_var, blurred.quality, blurred.laplacian_var,
            dark.quality, dark.mean, flat.quality, flat.stddev);
    CHECK(good.quality >= 0.99);
    CHECK(blurred.sharpness < 0.3 && blurred.exposure >= 0.99 && blurred.quality < 0.3);
    CHECK(dark.exposure < 0.2 && dark.quality < 0.2);
    CHECK(flat.contrast < 0.5 && flat.quality < 0.5);
}

/*  Perceptual hashes: the same photo at another size, re-encoded as JPEG or
 *  a little brighter hashes within a few bits; another photo far away. */
static void test_phash(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_image a = make_photo(800, 600, 128, 10, 3), b = make_photo(800, 600, 128, 10, 4), small = {0};
    uint64_t ha, hb, hs, hj, hl;
    CHECK_OK(df_photo_phash(&a, &ha, &err), &err);
    CHECK_OK(df_photo_phash(&b, &hb, &err), &err);
    CHECK_OK(df_image_resize_lanczos(&a, 400, 300, &small, &err), &err);
    CHECK_OK(df_photo_phash(&small, &hs, &err), &err);
    uint8_t *jpg = NULL;
    size_t len = 0;
    char path[128];
    snprintf(path, sizeof path, "%s/hash.jpg", g_dir);
    CHECK_OK(df_image_encode(DF_IMAGE_JPEG, a.rgb, a.width, a.height, 70, NULL, &jpg, &len, &err), &err);
    FILE *f = fopen(path, "wb");
    if (f)
        fwrite(jpg, 1, len, f), fclose(f);
    free(jpg);
    df_image back = {0};
    CHECK_OK(df_image_load(path, &back, &err), &err);
    CHECK_OK(df_photo_phash(&back, &hj, &err), &err);
    for (size_t k = 0; k < 800 * 600 * 3; k++)
        a.rgb[k] = (uint8_t)(a.rgb[k] > 235 ? 255 : a.rgb[k] + 20);
    CHECK_OK(df_photo_phash(&a, &hl, &err), &err);
    fprintf(stderr, "  hash bits apart: resized %d, JPEG 70 %d, brighter %d; another photo %d\n",
            df_phash_distance(ha, hs), df_phash_distance(ha, hj), df_phash_distance(ha, hl), df_phash_distance(ha, hb));
    CHECK(df_phash_distance(ha, hs) <= 4 && df_phash_distance(ha, hj) <= 4 && df_phash_distance(ha, hl) <= 6);
    CHECK(df_phash_distance(ha, hb) >= 16);
    CHECK_EQ(df_phash_distance(0, ~0ull), 64);
    unlink(path);
    df_image_free(&a), df_image_free(&b), df_image_free(&small), df_image_free(&back);
}

/* ---- a whole folder ------------------------------------------------------ */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static const df_prep_item *item_named(const df_prep_report *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++) {
        const char *s = strrchr(r->items[i].source, '/');
        if (s && strcmp(s + 1, name) == 0)
            return &r->items[i];
    }
    return NULL;
}

static void expect_rejected(const df_prep_report *r, const char *name, const char *why)
{
    const df_prep_item *it = item_named(r, name);
    if (!it || !it->reason || !strstr(it->reason, why)) {
        fprintf(stderr, "  %s: expected rejection with \"%s\", got %s\n", name, why,
                !it ? "no such item" : it->reason ? it->reason : "accepted");
        test_failures_++;
    }
    test_checks_++;
}

/*  A folder with good photos (landscape, portrait, a JPEG with a sidecar
 *  caption) and one of every kind of reject: blurred, dark, flat, too
 *  small, a near-duplicate, corrupt, empty, and not a photo at all. */
static void test_prep_folder(void)
{
    df_error_t err;
    df_error_clear(&err);
    char in[128], out[128], out2[128], path[300];
    snprintf(in, sizeof in, "%s/photos", g_dir);
    mkdir(in, 0755);
    df_image img = make_photo(1200, 900, 128, 18, 1);
    save_png(in, "a-landscape.png", &img);
    for (size_t k = 0; k < 1200 * 900 * 3; k++) /* the same, a little brighter: a near-duplicate */
        img.rgb[k] = (uint8_t)(img.rgb[k] > 250 ? 255 : img.rgb[k] + 5);
    save_png(in, "b-landscape-again.png", &img);
    blur(&img, 6);
    save_png(in, "c-blurred.png", &img);
    df_image_free(&img);
    img = make_photo(900, 1200, 128, 18, 2);
    save_png(in, "d-portrait.png", &img);
    df_image_free(&img);
    img = make_photo(1000, 1000, 128, 18, 5);
    uint8_t *jpg = NULL;
    size_t len = 0;
    CHECK_OK(df_image_encode(DF_IMAGE_JPEG, img.rgb, img.width, img.height, 92, NULL, &jpg, &len, &err), &err);
    snprintf(path, sizeof path, "%s/e-square.jpg", in);
    FILE *f = fopen(path, "wb");
    if (f)
        fwrite(jpg, 1, len, f), fclose(f);
    snprintf(path, sizeof path, "%s/e-square.txt", in);
    if ((f = fopen(path, "w")))
        fputs("a photo of a man in a red hat.\n", f), fclose(f);
    free(jpg);
    df_image_free(&img);
    img = make_photo(1200, 900, 12, 2, 6);
    save_png(in, "f-dark.png", &img);
    df_image_free(&img);
    img = make_photo(1200, 900, 128, 18, 7);
    for (size_t k = 0; k < 1200 * 900 * 3; k++)
        img.rgb[k] = (uint8_t)(120 + img.rgb[k] / 16);
    save_png(in, "g-flat.png", &img);
    df_image_free(&img);
    img = make_photo(320, 240, 128, 18, 8);
    save_png(in, "h-small.png", &img);
    df_image_free(&img);
    const char *junk[][2] = {{"i-corrupt.png", "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR garbage"}, {"j-empty.jpg", ""},
                             {"k-notes.md", "# not a photo\n"}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", in, junk[i][0]);
        if ((f = fopen(path, "wb")))
            fwrite(junk[i][1], 1, i == 0 ? 24 : strlen(junk[i][1]), f), fclose(f);
    }
    snprintf(out, sizeof out, "%s/set", g_dir);
    df_prep_opts o = {.resolution = 512, .bucket_step = 64, .max_upscale = 1.5, .min_quality = 0.95, .dup_bits = 6,
                      .token = "TOK", .class_word = "person"};
    df_prep_report rep;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    CHECK_EQ(rep.count, 11);
    CHECK_EQ(rep.accepted, 3);
    for (size_t i = 0; i < rep.count; i++) {
        const char *name = strrchr(rep.items[i].source, '/') + 1;
        fprintf(stderr, "  %s: %s\n", name, rep.items[i].reason ? rep.items[i].reason : rep.items[i].caption);
    }
    expect_rejected(&rep, "b-landscape-again.png", "near-duplicate of a-landscape.png");
    expect_rejected(&rep, "c-blurred.png", "blurry");
    expect_rejected(&rep, "f-dark.png", "too dark");
    expect_rejected(&rep, "g-flat.png", "flat");
    expect_rejected(&rep, "h-small.png", "too small: 320x240 would need");
    expect_rejected(&rep, "i-corrupt.png", "i-corrupt.png");
    expect_rejected(&rep, "j-empty.jpg", "j-empty.jpg");
    expect_rejected(&rep, "k-notes.md", "k-notes.md");
    CHECK(strstr(rep.warning, "only 3 photos") != NULL);
    /* The accepted ones at their buckets, captions placed. */
    const df_prep_item *land = item_named(&rep, "a-landscape.png"), *port = item_named(&rep, "d-portrait.png");
    const df_prep_item *sq = item_named(&rep, "e-square.jpg");
    CHECK(land && !land->reason && land->width > land->height && land->width % 64 == 0 &&
          land->width * land->height <= 512 * 512);
    CHECK(port && !port->reason && port->height > port->width);
    CHECK(sq && !sq->reason && sq->width == 512 && sq->height == 512 && strcmp(sq->caption_from, "sidecar") == 0 &&
          strcmp(sq->caption, "a photo of TOK person in a red hat") == 0);
    CHECK(land && strcmp(land->caption, "a photo of TOK person") == 0);
    if (land && land->file) {
        snprintf(path, sizeof path, "%s/%s", out, land->file);
        df_image back = {0};
        CHECK_OK(df_image_load(path, &back, &err), &err);
        CHECK(back.width == land->width && back.height == land->height);
        df_image_free(&back);
        snprintf(path, sizeof path, "%s/images/000-a-landscape.txt", out);
        const char *t = read_text(path);
        CHECK(t && strcmp(t, "a photo of TOK person\n") == 0);
    }
    snprintf(path, sizeof path, "%s/metadata.jsonl", out);
    const char *meta = read_text(path);
    CHECK(meta && strstr(meta, "\"file_name\":\"images/002-e-square.png\"") &&
          strstr(meta, "\"caption\":\"a photo of TOK person in a red hat\"") && strstr(meta, "\"size\":[512,512]"));
    snprintf(path, sizeof path, "%s/report.txt", out);
    const char *report = read_text(path);
    CHECK(report && strstr(report, "3 of 11 photos accepted") && strstr(report, "rejected c-blurred.png: quality"));
    snprintf(path, sizeof path, "%s/contact-sheet.png", out);
    df_image sheet = {0};
    CHECK_OK(df_image_load(path, &sheet, &err), &err);
    /* 11 cells, each a thumbnail and four lines of words: the 3 accepted
     * first (green scores under them), then the 8 rejected (dark red
     * reasons), the files that are no photo as grey squares. */
    const uint32_t cw = 192, ch = 192 + 6 + 4 * DF_FONT_H;
    CHECK(sheet.width == 6 * cw && sheet.height == 2 * ch);
    int green = 0, red = 0, grey = 0;
    for (uint32_t c = 0; sheet.rgb && c < 11; c++) {
        const uint32_t x0 = (c % 6) * cw, y0 = (c / 6) * ch;
        int g = 0, r = 0;
        for (uint32_t y = y0 + 192; y < y0 + ch; y++)
            for (uint32_t x = x0; x < x0 + cw; x++) {
                const uint8_t *px = sheet.rgb + 3 * ((size_t)y * sheet.width + x);
                g += px[0] == 20 && px[1] == 110 && px[2] == 20;
                r += px[0] == 170 && px[1] == 20 && px[2] == 20;
            }
        green += c < 3 && g > 20 && r == 0;
        red += c >= 3 && r > 20 && g == 0;
        const uint8_t *mid = sheet.rgb + 3 * ((size_t)(y0 + 96) * sheet.width + x0 + 96);
        grey += mid[0] == 200 && mid[1] == 200 && mid[2] == 200;
    }
    CHECK_EQ(green, 3);
    CHECK_EQ(red, 8);
    CHECK_EQ(grey, 3); /* the corrupt PNG, the empty JPEG, the notes */
    df_image_free(&sheet);
    /* The same folder again gives the same files, byte for byte. */
    snprintf(out2, sizeof out2, "%s/set2", g_dir);
    df_prep_report rep2;
    CHECK_OK(df_prep_dir(in, out2, &o, &rep2, &err), &err);
    const char *names[] = {"metadata.jsonl", "images/000-a-landscape.png", "images/001-d-portrait.png",
                           "contact-sheet.png"};
    for (int i = 0; i < 4; i++) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "cmp -s '%s/%s' '%s/%s'", out, names[i], out2, names[i]);
        CHECK(system(cmd) == 0);
    }
    df_prep_report_free(&rep2);
    df_prep_report_free(&rep);
    /* Again into the same folder from a folder of one photo: only its image
     * and caption are left in images/, none of the earlier run's. */
    char one[128];
    snprintf(one, sizeof one, "%s/one", g_dir);
    mkdir(one, 0755);
    img = make_photo(800, 600, 128, 18, 9);
    save_png(one, "only.png", &img);
    df_image_free(&img);
    CHECK_OK(df_prep_dir(one, out, &o, &rep2, &err), &err);
    CHECK_EQ(rep2.accepted, 1);
    snprintf(path, sizeof path, "ls '%s/images' | wc -l | grep -qx 2", out);
    CHECK(system(path) == 0);
    df_prep_report_free(&rep2);
    /* A folder that is not there is an error, not a report. */
    CHECK_FAILS(df_prep_dir("/nonexistent/photos", out, &o, &rep, &err), &err, DF_E_NOT_FOUND, "/nonexistent/photos");
    df_prep_report_free(&rep);
    o.resolution = 500;
    CHECK_FAILS(df_prep_dir(in, out, &o, &rep, &err), &err, DF_E_INVALID, "resolution 500");
    df_prep_report_free(&rep);
}

/*  Real photographs (tests/data/photos, public domain and CC0): a portrait
 *  and a cat pass at 512 px, their captions in place for the class; the
 *  portrait is refused at 1024 px (it would need 2x enlargement), and
 *  refused as blurry once blurred. */
static void test_prep_real_photos(void)
{
    df_error_t err;
    df_error_clear(&err);
    char in[128], out[128], src[600], path[300];
    snprintf(in, sizeof in, "%s/real", g_dir);
    snprintf(out, sizeof out, "%s/real-set", g_dir);
    mkdir(in, 0755);
    const char *names[2] = {"astronaut.png", "chelsea.png"};
    for (int i = 0; i < 2; i++) {
        char cmd[1200];
        snprintf(src, sizeof src, "%s/%s", g_photos, names[i]);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", src, in);
        CHECK(system(cmd) == 0);
    }
    df_image img = {0};
    snprintf(path, sizeof path, "%s/astronaut.png", in);
    CHECK_OK(df_image_load(path, &img, &err), &err);
    if (img.rgb) {
        blur(&img, 4);
        save_png(in, "astronaut-blurred.png", &img);
    }
    df_image_free(&img);
    df_prep_opts o = {.resolution = 512, .bucket_step = 64, .max_upscale = 1.5, .min_quality = 0.95, .dup_bits = 6,
                      .token = "TOK", .class_word = "woman"};
    df_prep_report rep;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    for (size_t i = 0; i < rep.count; i++)
        fprintf(stderr, "  %s: quality %.3f (sharpness %.2f, exposure %.2f, contrast %.2f) %s\n",
                strrchr(rep.items[i].source, '/') + 1, rep.items[i].scores.quality, rep.items[i].scores.sharpness,
                rep.items[i].scores.exposure, rep.items[i].scores.contrast,
                rep.items[i].reason ? rep.items[i].reason : "accepted");
    const df_prep_item *a = item_named(&rep, "astronaut.png"), *c = item_named(&rep, "chelsea.png");
    CHECK(a && !a->reason && a->width == 512 && a->height == 512 && strcmp(a->caption, "a photo of TOK woman") == 0);
    CHECK(c && !c->reason && c->width > c->height);
    expect_rejected(&rep, "astronaut-blurred.png", "blurry");
    df_prep_report_free(&rep);
    o.resolution = 1024;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    expect_rejected(&rep, "astronaut.png", "too small: 512x512 would need 2.0x enlargement to 1024x1024");
    df_prep_report_free(&rep);
}

/*  out gets png with an iCCP chunk of icc (zlib'd) right after IHDR. */
static uint8_t *with_iccp(const uint8_t *png, size_t n, const uint8_t *icc, size_t icc_len, size_t *out_len)
{
    uLongf zlen = compressBound((uLong)icc_len);
    uint8_t *chunk = malloc(12 + 6 + zlen), *out = NULL;
    if (!chunk || compress(chunk + 8 + 6, &zlen, icc, (uLong)icc_len) != Z_OK) {
        free(chunk);
        return NULL;
    }
    const uint32_t len = 6 + (uint32_t)zlen;
    const uint8_t head[8] = {len >> 24, len >> 16 & 255, len >> 8 & 255, len & 255, 'i', 'C', 'C', 'P'};
    memcpy(chunk, head, 8);
    memcpy(chunk + 8, "test\0\0", 6); /* name, NUL, method 0 */
    const uint32_t crc = (uint32_t)crc32(0, chunk + 4, 4 + len);
    const uint8_t tail[4] = {crc >> 24, crc >> 16 & 255, crc >> 8 & 255, crc & 255};
    memcpy(chunk + 8 + len, tail, 4);
    *out_len = n + 12 + len;
    if ((out = malloc(*out_len))) { /* signature and IHDR are the first 33 bytes */
        memcpy(out, png, 33);
        memcpy(out + 33, chunk, 12 + len);
        memcpy(out + 45 + len, png + 33, n - 33);
    }
    free(chunk);
    return out;
}

static uint8_t first_pixel_of(const char *path, const uint8_t *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f)
        fwrite(bytes, 1, n, f), fclose(f);
    df_image img = {0};
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(df_image_load(path, &img, &err), &err);
    uint8_t v = img.rgb ? img.rgb[0] : 0;
    df_image_free(&img);
    return v;
}

/*  Colour profiles: a grey of 128 in a linear-light RGB space (sRGB's
 *  primaries, gamma 1) is about 188 in sRGB; embedded in a PNG (iCCP) and
 *  in a JPEG (APP2), it comes out so. A profile that is not one leaves the
 *  pixels as they are. */
static void test_color_profiles(void)
{
    cmsCIExyY d65;
    cmsWhitePointFromTemp(&d65, 6504);
    cmsCIExyYTRIPLE primaries = {{0.64, 0.33, 1}, {0.30, 0.60, 1}, {0.15, 0.06, 1}};
    cmsToneCurve *linear = cmsBuildGamma(NULL, 1.0), *curves[3] = {linear, linear, linear};
    cmsHPROFILE prof = cmsCreateRGBProfile(&d65, &primaries, curves);
    cmsUInt32Number icc_len = 0;
    cmsSaveProfileToMem(prof, NULL, &icc_len);
    uint8_t *icc = malloc(icc_len);
    CHECK(icc && cmsSaveProfileToMem(prof, icc, &icc_len));
    cmsCloseProfile(prof), cmsFreeToneCurve(linear);
    static uint8_t grey[16 * 16 * 3];
    memset(grey, 128, sizeof grey);
    df_error_t err;
    df_error_clear(&err);
    uint8_t *png = NULL, *tagged = NULL;
    size_t n = 0, tn = 0;
    char path[200];
    snprintf(path, sizeof path, "%s/profiled.png", g_dir);
    CHECK_OK(df_png_encode(grey, 16, 16, NULL, 0, &png, &n, &err), &err);
    CHECK(first_pixel_of(path, png, n) == 128); /* no profile: as stored */
    tagged = png ? with_iccp(png, n, icc, icc_len, &tn) : NULL;
    const uint8_t from_png = tagged ? first_pixel_of(path, tagged, tn) : 0;
    free(tagged);
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 7 + 3);
    tagged = png ? with_iccp(png, n, junk, sizeof junk, &tn) : NULL;
    const uint8_t from_junk = tagged ? first_pixel_of(path, tagged, tn) : 0;
    free(tagged), free(png);
    /* The same profile in a JPEG's APP2 markers. */
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *jpg = NULL;
    unsigned long jlen = 0;
    jpeg_mem_dest(&c, &jpg, &jlen);
    c.image_width = 16, c.image_height = 16, c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    jpeg_write_icc_profile(&c, icc, icc_len);
    for (int y = 0; y < 16; y++) {
        JSAMPROW row = grey + y * 16 * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    snprintf(path, sizeof path, "%s/profiled.jpg", g_dir);
    const uint8_t from_jpeg = first_pixel_of(path, jpg, jlen);
    free(jpg), free(icc);
    fprintf(stderr, "  grey 128 in linear light: %u from the PNG, %u from the JPEG (sRGB: 188); a junk profile: %u\n",
            from_png, from_jpeg, from_junk);
    CHECK(abs(from_png - 188) <= 2 && abs(from_jpeg - 188) <= 2 && from_junk == 128);
}

/*  An iPhone's HEIC: the cat encoded by libheif (HEVC) with a container
 *  rotation of 90 degrees clockwise comes back upright, turned, within a few
 *  levels of the original; a truncated file is refused by name. */
static void test_heif(void)
{
    df_error_t err;
    df_error_clear(&err);
    char src[600], path[300], cut[300];
    snprintf(src, sizeof src, "%s/chelsea.png", g_photos);
    snprintf(path, sizeof path, "%s/chelsea.heic", g_dir);
    snprintf(cut, sizeof cut, "%s/cut.heic", g_dir);
    df_image cat = {0}, back = {0};
    CHECK_OK(df_image_load(src, &cat, &err), &err);
    if (!cat.rgb)
        return;
    struct heif_context *ctx = heif_context_alloc();
    struct heif_encoder *enc = NULL;
    struct heif_image *img = NULL;
    struct heif_error e = heif_context_get_encoder_for_format(ctx, heif_compression_HEVC, &enc);
    CHECK(e.code == heif_error_Ok); /* Debian's libheif1 brings x265 */
    if (e.code == heif_error_Ok)
        e = heif_image_create((int)cat.width, (int)cat.height, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &img);
    if (e.code == heif_error_Ok)
        e = heif_image_add_plane(img, heif_channel_interleaved, (int)cat.width, (int)cat.height, 8);
    if (e.code == heif_error_Ok) {
        int stride = 0;
        uint8_t *plane = heif_image_get_plane(img, heif_channel_interleaved, &stride);
        for (uint32_t y = 0; y < cat.height; y++)
            memcpy(plane + (size_t)y * stride, cat.rgb + (size_t)y * cat.width * 3, cat.width * 3);
        heif_encoder_set_lossy_quality(enc, 90);
        struct heif_encoding_options *opt = heif_encoding_options_alloc();
        opt->image_orientation = heif_orientation_rotate_90_cw;
        e = heif_context_encode_image(ctx, img, enc, opt, NULL);
        heif_encoding_options_free(opt);
    }
    if (e.code == heif_error_Ok)
        e = heif_context_write_to_file(ctx, path);
    CHECK(e.code == heif_error_Ok);
    heif_image_release(img);
    if (enc)
        heif_encoder_release(enc);
    heif_context_free(ctx);
    CHECK_OK(df_image_load(path, &back, &err), &err);
    CHECK(back.width == cat.height && back.height == cat.width);
    double diff = 0;
    for (uint32_t y = 0; back.rgb && back.width == cat.height && y < back.height; y++)
        for (uint32_t x = 0; x < back.width; x++)
            for (int c = 0; c < 3; c++) /* turned clockwise: (x, y) shows the original's (y, H - 1 - x) */
                diff += abs(back.rgb[3 * ((size_t)y * back.width + x) + c] -
                            cat.rgb[3 * ((size_t)(cat.height - 1 - x) * cat.width + y) + c]);
    diff /= 3.0 * cat.width * cat.height;
    fprintf(stderr, "  HEIC (HEVC quality 90, turned by its container): %ux%u, %.2f levels from the original\n",
            back.width, back.height, diff);
    CHECK(diff < 4);
    /* The first half of the file only. */
    FILE *f = fopen(path, "rb"), *g = fopen(cut, "wb");
    static uint8_t buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (g)
        fwrite(buf, 1, n / 2, g), fclose(g);
    if (f)
        fclose(f);
    df_image_free(&back);
    CHECK_FAILS(df_image_load(cut, &back, &err), &err, DF_E_FORMAT, cut);
    df_image_free(&cat);
    unlink(path), unlink(cut);
}

/*  img turned by deg degrees clockwise about its centre (bilinear), on grey. */
static df_image turned(const df_image *img, double deg)
{
    const uint32_t w = img->width, h = img->height;
    df_image out = {w, h, malloc((size_t)w * h * 3)};
    const double a = deg * M_PI / 180, c = cos(a), s = sin(a), cx = w / 2.0, cy = h / 2.0;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            /* The source of (x, y): turned back counter-clockwise. */
            const double dx = x - cx, dy = y - cy, sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy;
            const long x0 = (long)floor(sx), y0 = (long)floor(sy);
            const double fx = sx - x0, fy = sy - y0;
            for (int ch = 0; ch < 3; ch++) {
                double v = 128;
                if (x0 >= 0 && y0 >= 0 && x0 + 1 < (long)w && y0 + 1 < (long)h) {
                    const uint8_t *p = img->rgb + 3 * ((size_t)y0 * w + (size_t)x0) + ch;
                    v = (1 - fy) * ((1 - fx) * p[0] + fx * p[3]) + fy * ((1 - fx) * p[3 * w] + fx * p[3 * w + 3]);
                }
                out.rgb[3 * ((size_t)y * w + x) + ch] = (uint8_t)lrint(v);
            }
        }
    return out;
}

/*  Faces: the portrait has one with both eyes, nearly level; turned 9
 *  degrees counter-clockwise the detector sees the roll (Haar eye boxes
 *  place the eyes to a few pixels, a few degrees at this size), and framing
 *  it levels the eyes again. */
static void test_faces(void)
{
    df_error_t err;
    df_error_clear(&err);
    char path[600];
    snprintf(path, sizeof path, "%s/astronaut.png", g_photos);
    df_image img = {0};
    CHECK_OK(df_image_load(path, &img, &err), &err);
    df_face_detector_t *fd = df_face_detector_new(NULL, &err);
    CHECK(fd != NULL);
    if (!fd || !img.rgb) {
        df_image_free(&img);
        return;
    }
    df_face f[4], g[4];
    int n = 0, m = 0;
    CHECK_OK(df_face_detect(fd, &img, f, 4, &n, &err), &err);
    CHECK(n == 1 && f[0].eyes == 2 && f[0].clarity >= 0.9f && fabsf(f[0].roll_deg) < 8);
    df_image tilted = turned(&img, -9);
    CHECK_OK(df_face_detect(fd, &tilted, g, 4, &m, &err), &err);
    CHECK(m == 1 && g[0].eyes == 2);
    df_image framed = {0};
    if (m == 1 && g[0].eyes == 2) {
        CHECK_OK(df_face_align(&tilted, &g[0], DF_FRAME_HEAD, 1, 1, &framed, &err), &err);
        df_face h[4];
        int k = 0;
        CHECK_OK(df_face_detect(fd, &framed, h, 4, &k, &err), &err);
        fprintf(stderr, "  portrait: roll %.1f degrees; turned -9 degrees: %.1f; framed: %ux%u, roll %.1f\n",
                f[0].roll_deg, g[0].roll_deg, framed.width, framed.height, k == 1 ? h[0].roll_deg : 99.0f);
        CHECK(g[0].roll_deg < f[0].roll_deg - 3);
        CHECK(k == 1 && h[0].eyes == 2 && fabsf(h[0].roll_deg) < 3);
        CHECK(framed.width == framed.height && framed.width == (uint32_t)floorf(3 * g[0].w)); /* 3 face widths */
    }
    df_image_free(&framed), df_image_free(&tilted);
    CHECK_FAILS(df_face_align(&img, &f[0], DF_FRAME_HEAD, 0, 1, &framed, &err), &err, DF_E_INVALID, "empty");
    df_face_detector_destroy(&fd);
    df_image_free(&img);
    CHECK(df_face_detector_new("/nonexistent", &err) == NULL && strstr(err.msg, "opencv-data"));
}

/*  prep of a person: a group shot, a photo without a face, a face too small
 *  for the asked fraction and a blurred face are refused, each saying so;
 *  the portrait passes with its face in the metadata. */
static void test_prep_person(void)
{
    df_error_t err;
    df_error_clear(&err);
    char in[128], out[128], path[600];
    snprintf(in, sizeof in, "%s/person", g_dir);
    snprintf(out, sizeof out, "%s/person-set", g_dir);
    mkdir(in, 0755);
    df_image a = {0}, cat = {0};
    snprintf(path, sizeof path, "%s/astronaut.png", g_photos);
    CHECK_OK(df_image_load(path, &a, &err), &err);
    snprintf(path, sizeof path, "%s/chelsea.png", g_photos);
    CHECK_OK(df_image_load(path, &cat, &err), &err);
    if (!a.rgb || !cat.rgb) {
        df_image_free(&a), df_image_free(&cat);
        return;
    }
    save_png(in, "a-portrait.png", &a);
    save_png(in, "b-cat.png", &cat);
    df_image two = {1024, 512, malloc(1024 * 512 * 3)}; /* the portrait twice, side by side */
    for (uint32_t y = 0; y < 512; y++)
        for (int k = 0; k < 2; k++)
            memcpy(two.rgb + 3 * ((size_t)y * 1024 + 512 * k), a.rgb + 3 * (size_t)y * 512, 512 * 3);
    save_png(in, "c-group.png", &two);
    df_image_free(&two);
    /* The face alone blurred: the rest stays sharp. */
    df_image soft = {512, 512, malloc(512 * 512 * 3)}, face = {120, 140, malloc(120 * 140 * 3)};
    memcpy(soft.rgb, a.rgb, 512 * 512 * 3);
    for (uint32_t y = 0; y < 140; y++)
        memcpy(face.rgb + 3 * y * 120, a.rgb + 3 * ((size_t)(y + 50) * 512 + 165), 120 * 3);
    blur(&face, 3);
    for (uint32_t y = 0; y < 140; y++)
        memcpy(soft.rgb + 3 * ((size_t)(y + 50) * 512 + 165), face.rgb + 3 * y * 120, 120 * 3);
    save_png(in, "d-soft-face.png", &soft);
    df_image_free(&soft), df_image_free(&face), df_image_free(&a), df_image_free(&cat);
    df_prep_opts o = {.resolution = 512, .bucket_step = 64, .min_quality = -1, .dup_bits = -1, .person = 1,
                      .class_word = "woman"};
    df_prep_report rep;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    for (size_t i = 0; i < rep.count; i++)
        fprintf(stderr, "  %s: %d face(s)%s%s\n", strrchr(rep.items[i].source, '/') + 1, rep.items[i].faces,
                rep.items[i].reason ? ": " : ", accepted", rep.items[i].reason ? rep.items[i].reason : "");
    const df_prep_item *p = item_named(&rep, "a-portrait.png");
    CHECK(p && !p->reason && p->faces == 1 && p->face.eyes == 2);
    expect_rejected(&rep, "b-cat.png", "no face found");
    expect_rejected(&rep, "c-group.png", "2 faces: a group shot");
    expect_rejected(&rep, "d-soft-face.png", "face not clear enough");
    snprintf(path, sizeof path, "%s/metadata.jsonl", out);
    const char *meta = read_text(path);
    CHECK(meta && strstr(meta, "\"face\":{\"box\":[") && strstr(meta, "\"eyes\":2"));
    df_prep_report_free(&rep);
    o.min_face_size = 0.25;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    expect_rejected(&rep, "a-portrait.png", "face too small");
    df_prep_report_free(&rep);
    /* At 1024 px with up to 3x: the whole photo would do (2x), the window
     * three face widths across would not (3.7x). */
    o.min_face_size = 0, o.framing = DF_FRAME_HEAD, o.resolution = 1024, o.max_upscale = 3;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    expect_rejected(&rep, "a-portrait.png", "too small framed around the face");
    df_prep_report_free(&rep);
    o.resolution = 256, o.max_upscale = 1.5;
    CHECK_OK(df_prep_dir(in, out, &o, &rep, &err), &err);
    p = item_named(&rep, "a-portrait.png");
    CHECK(p && !p->reason && p->width == 256 && p->height == 256);
    df_prep_report_free(&rep);
    CHECK(df_caption_class_is_person("Woman") && df_caption_class_is_person("person") && !df_caption_class_is_person("dog"));
}

/*  The sheet's words: a glyph where it is asked for, in its colour; text
 *  that is not ASCII as '?'; lines broken at spaces, a word longer than a
 *  line cut, and "..." where the text goes on past the last line; nothing
 *  drawn outside the image. */
static void test_bitmap_font(void)
{
    enum { W = 60, H = 30 };
    uint8_t img[W * H * 3];
    const uint8_t ink[3] = {1, 2, 3};
    memset(img, 255, sizeof img);
    CHECK_EQ(df_font_draw(img, W, H, 0, 0, 1, "T", 10, ink), 1);
    /* T: the top row five pixels wide, then the stem in the middle column. */
    for (int x = 0; x < 6; x++)
        CHECK_EQ(img[3 * x] == 1, x < 5);
    for (int y = 1; y < 9; y++)
        for (int x = 0; x < 6; x++)
            CHECK_EQ(img[3 * (y * W + x)] == 1, y < 7 && x == 2);
    CHECK(memcmp(img, ink, 3) == 0);
    /* Scale 2: each pixel a 2 x 2 square. */
    memset(img, 255, sizeof img);
    df_font_draw(img, W, H, 0, 0, 2, "T", 1, ink);
    CHECK(img[3 * (1 * W + 9)] == 1 && img[3 * (1 * W + 10)] == 255 && img[3 * (13 * W + 5)] == 1);
    /* Not ASCII: one '?' per character, however many bytes. */
    uint8_t q[W * H * 3], e[W * H * 3];
    memset(q, 255, sizeof q), memset(e, 255, sizeof e);
    CHECK_EQ(df_font_draw(q, W, H, 0, 0, 1, "??", 10, ink), 2);
    CHECK_EQ(df_font_draw(e, W, H, 0, 0, 1, "\xc3\xa9\xe2\x82\xac", 10, ink), 2); /* e-acute, euro */
    CHECK(memcmp(q, e, sizeof q) == 0);
    /* Wrapping: 9 columns, 3 lines. */
    uint8_t a[W * H * 3], b[W * H * 3];
    memset(a, 255, sizeof a), memset(b, 255, sizeof b);
    CHECK_EQ(df_font_draw_wrapped(a, W, H, 0, 0, 1, 9, 3, "one two three", ink), 2);
    df_font_draw(b, W, H, 0, 0, 1, "one two", 7, ink);
    df_font_draw(b, W, H, 0, DF_FONT_H, 1, "three", 5, ink);
    CHECK(memcmp(a, b, sizeof a) == 0);
    memset(a, 255, sizeof a), memset(b, 255, sizeof b);
    CHECK_EQ(df_font_draw_wrapped(a, W, H, 0, 0, 1, 4, 2, "abcdefgh ij klm", ink), 2);
    df_font_draw(b, W, H, 0, 0, 1, "abcd", 4, ink);
    df_font_draw(b, W, H, 0, DF_FONT_H, 1, "e...", 4, ink);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* Off the edges: clipped, nothing written outside (the guard bytes stay). */
    uint8_t guarded[W * H * 3 + 16];
    memset(guarded, 255, sizeof guarded);
    memset(guarded + W * H * 3, 0xAB, 16);
    df_font_draw(guarded, W, H, -3, -4, 3, "WWWWWWWWWWWW", 100, ink);
    df_font_draw(guarded, W, H, W - 4, H - 4, 3, "WW", 100, ink);
    df_font_draw_wrapped(guarded, W, H, 50, 20, 2, 40, 9, "a long line of words past the corner", ink);
    int intact = 1;
    for (int k = 0; k < 16; k++)
        intact &= guarded[W * H * 3 + k] == 0xAB;
    CHECK(intact);
    CHECK_EQ(df_font_draw_wrapped(guarded, W, H, 0, 0, 1, 0, 3, "x", ink), 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_prep PHOTOS_DIR [filter]\n");
        return 2;
    }
    g_photos = argv[1];
    test_filter_ = argc > 2 ? argv[2] : NULL;
    snprintf(g_dir, sizeof g_dir, "/tmp/df_prep_XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    RUN(test_caption_rules);
    RUN(test_caption_sidecar);
    RUN(test_resize);
    RUN(test_scores);
    RUN(test_phash);
    RUN(test_bitmap_font);
    RUN(test_prep_folder);
    RUN(test_prep_real_photos);
    RUN(test_heif);
    RUN(test_color_profiles);
    RUN(test_faces);
    RUN(test_prep_person);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
