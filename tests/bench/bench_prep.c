/*  bench_prep.c - how long `prep` takes per photo, on photos the size a phone
 *  takes (12 Mpixels, JPEG), beside the baselines from the same run: decoding
 *  alone, and shrinking by plain area averaging (df_image_fit) where prep
 *  uses Lanczos.
 *
 *    bench_prep [--photos N] [--width W --height H]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "image_decode.h"
#include "image_encode.h"
#include "face_detect.h"
#include "image_resize.h"
#include "philox.h"
#include "photo_quality.h"
#include "png_write.h"
#include "prep.h"

/*  A w x h photo-like picture: gradients, a disc and grain. */
static int write_photo(const char *path, uint32_t w, uint32_t h, uint64_t seed)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    float *grain = malloc((size_t)w * 64 * sizeof *grain);
    if (!rgb || !grain)
        return -1;
    df_philox_fill_normal(grain, (uint64_t)w * 64, seed, 0);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            const double u = (double)x / w, v = (double)y / h;
            const int disc = (u - 0.5) * (u - 0.5) + (v - 0.45) * (v - 0.45) < 0.04;
            for (int c = 0; c < 3; c++) {
                double val = 60 + 120 * u * (c == 0) + 100 * v * (c == 1) + (disc ? 70 : 0) + (double)(seed % 5) * 9 +
                             12 * grain[(size_t)(y % 64) * w + x];
                rgb[3 * ((size_t)y * w + x) + c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
            }
        }
    uint8_t *jpg = NULL;
    size_t len = 0;
    int rc = df_image_encode(DF_IMAGE_JPEG, rgb, w, h, 92, NULL, &jpg, &len, NULL);
    FILE *f = rc == DF_OK ? fopen(path, "wb") : NULL;
    if (f)
        rc = fwrite(jpg, 1, len, f) == len ? DF_OK : -1, fclose(f);
    free(jpg), free(rgb), free(grain);
    return rc == DF_OK && f ? 0 : -1;
}

int main(int argc, char **argv)
{
    uint32_t n = 15, w = 4000, h = 3000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--photos") == 0)
            n = (uint32_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--width") == 0)
            w = (uint32_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--height") == 0)
            h = (uint32_t)atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_prep [--photos N] [--width W --height H]\n");
            return 2;
        }
    }
    if (n < 1 || n > 1000 || w < 64 || h < 64 || (uint64_t)w * h > DF_IMAGE_MAX_PIXELS) {
        fprintf(stderr, "bench_prep: 1 to 1000 photos of 64 px to 100 Mpixels\n");
        return 2;
    }
    char dir[64] = "/tmp/df_bench_prep_XXXXXX", in[96], out[96], path[160];
    if (!mkdtemp(dir))
        return 1;
    snprintf(in, sizeof in, "%s/photos", dir);
    snprintf(out, sizeof out, "%s/set", dir);
    mkdir(in, 0755);
    fprintf(stderr, "writing %u photos of %ux%u (%.1f Mpixels, JPEG 92)...\n", n, w, h, w * (double)h / 1e6);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/photo%02u.jpg", in, i);
        if (write_photo(path, w, h, i) != 0) {
            fprintf(stderr, "bench_prep: cannot write %s\n", path);
            return 1;
        }
    }
    df_error_t err;
    df_error_clear(&err);
    /* Baselines: decoding alone, and decoding plus area-averaging to 1024. */
    double decode = 0, area = 0;
    for (uint32_t i = 0; i < n; i++) {
        df_image img = {0}, fit = {0};
        snprintf(path, sizeof path, "%s/photo%02u.jpg", in, i);
        double a = df_bench_now_s();
        if (df_image_load(path, &img, &err) != DF_OK) {
            fprintf(stderr, "bench_prep: %s\n", err.msg);
            return 1;
        }
        double b = df_bench_now_s();
        if (df_image_fit(&img, 1152, 896, &fit, &err) != DF_OK) {
            fprintf(stderr, "bench_prep: %s\n", err.msg);
            return 1;
        }
        decode += b - a, area += df_bench_now_s() - b;
        df_image_free(&img), df_image_free(&fit);
    }
    /* Face detection alone (photos without faces still cost a full search). */
    double faces = 0, load = df_bench_now_s();
    df_face_detector_t *fd = df_face_detector_new(NULL, &err);
    load = df_bench_now_s() - load;
    for (uint32_t i = 0; fd && i < n; i++) {
        df_image img = {0};
        df_face f[1];
        int count = 0;
        snprintf(path, sizeof path, "%s/photo%02u.jpg", in, i);
        if (df_image_load(path, &img, &err) != DF_OK)
            break;
        double a = df_bench_now_s();
        df_face_detect(fd, &img, f, 1, &count, &err);
        faces += df_bench_now_s() - a;
        df_image_free(&img);
    }
    const int have_faces = fd != NULL;
    df_face_detector_destroy(&fd);
    /* prep's steps one by one, to see where its time goes. */
    enum { DECODE, ANALYSIS, THUMB, SCORES, LANCZOS, PNG, STEPS };
    double step[STEPS] = {0};
    const char *step_name[STEPS] = {"decode", "analysis copy (512 px)", "thumbnail", "scores + hash",
                                    "Lanczos to the bucket", "PNG out"};
    for (uint32_t i = 0; i < n; i++) {
        df_image img = {0}, small = {0}, thumb = {0}, train = {0};
        df_photo_scores sc;
        uint64_t hash;
        snprintf(path, sizeof path, "%s/photo%02u.jpg", in, i);
        double t[STEPS + 1];
        t[0] = df_bench_now_s();
        int ok = df_image_load(path, &img, &err) == DF_OK;
        t[1] = df_bench_now_s();
        ok = ok && df_photo_analysis_copy(&img, &small, &err) == DF_OK;
        t[2] = df_bench_now_s();
        ok = ok && df_image_resize_lanczos(&small, 192, 144, &thumb, &err) == DF_OK;
        t[3] = df_bench_now_s();
        ok = ok && df_photo_score(&small, &sc, &err) == DF_OK && df_photo_phash(&small, &hash, &err) == DF_OK;
        t[4] = df_bench_now_s();
        ok = ok && df_image_cover_lanczos(&img, 1152, 896, &train, NULL, NULL, &err) == DF_OK;
        t[5] = df_bench_now_s();
        snprintf(path, sizeof path, "%s/step.png", dir);
        ok = ok && df_png_write(path, train.rgb, train.width, train.height, NULL, 0, &err) == DF_OK;
        t[6] = df_bench_now_s();
        df_image_free(&img), df_image_free(&small), df_image_free(&thumb), df_image_free(&train);
        if (!ok) {
            fprintf(stderr, "bench_prep: %s\n", err.msg);
            return 1;
        }
        for (int k = 0; k < STEPS; k++)
            step[k] += t[k + 1] - t[k];
    }
    df_prep_opts o = {.resolution = 1024, .bucket_step = 64, .min_quality = -1, .dup_bits = -1};
    df_prep_report rep;
    double a = df_bench_now_s();
    if (df_prep_dir(in, out, &o, &rep, &err) != DF_OK) {
        fprintf(stderr, "bench_prep: %s\n", err.msg);
        return 1;
    }
    const double per = (df_bench_now_s() - a) / n;
    df_prep_report_free(&rep);
    printf("%u photos of %ux%u, JPEG 92, seconds per photo:\n", n, w, h);
    printf("  %-24s %6.3f s   (baseline: decoding alone)\n", "decode", decode / n);
    printf("  %-24s %6.3f s   (baseline: decode + area averaging to 1152x896)\n", "decode + area resize",
           (decode + area) / n);
    printf("  %-24s %6.3f s   (decoded once: scores, hash, thumbnail, Lanczos, PNG out)\n", "prep", per);
    printf("  %-24s %6.3f s   (a person's photos add this to prep)\n", "face detection", have_faces ? faces / n : -1.0);
    printf("  %-24s %6.3f s   (once per prep; once per photo on the cluster)\n", "face detector loading", load);
    printf("prep's steps one by one, seconds per photo:\n");
    for (int k = 0; k < STEPS; k++)
        printf("  %-24s %6.3f s\n", step_name[k], step[k] / n);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
