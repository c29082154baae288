/*  photo_quality.c - see photo_quality.h. */
#include "photo_quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_resize.h"

/*  The analysis size of img: its long side DF_QUALITY_SIDE, never enlarged
 *  (enlarging blurs), at least 3 pixels a side (the Laplacian's window). */
static void analysis_size(const df_image *img, uint32_t *w, uint32_t *h)
{
    const uint32_t longer = img->width > img->height ? img->width : img->height;
    const uint32_t side = longer < DF_QUALITY_SIDE ? longer : DF_QUALITY_SIDE;
    *w = (uint32_t)((uint64_t)img->width * side / longer);
    *h = (uint32_t)((uint64_t)img->height * side / longer);
    *w = *w < 3 ? 3 : *w, *h = *h < 3 ? 3 : *h;
}

int df_photo_analysis_copy(const df_image *img, df_image *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (!img->width || !img->height)
        return df_error_set(err, DF_E_INVALID, "quality: an empty image");
    uint32_t w, h;
    analysis_size(img, &w, &h);
    return df_image_resize_lanczos(img, w, h, out, err);
}

/*  Luminance (Rec. 601 weights, as JPEG's) of img at w x h, as doubles;
 *  img is read as it is when it has that size already. */
static int luminance(const df_image *img, uint32_t w, uint32_t h, double **out, df_error_t *err)
{
    df_image small = {0};
    const int same = img->width == w && img->height == h;
    int rc = same ? DF_OK : df_image_resize_lanczos(img, w, h, &small, err);
    if (rc != DF_OK)
        return rc;
    const uint8_t *rgb = same ? img->rgb : small.rgb;
    double *y = malloc((size_t)w * h * sizeof *y);
    if (!y) {
        df_image_free(&small);
        return df_error_set(err, DF_E_NOMEM, "quality: out of memory");
    }
    for (size_t k = 0; k < (size_t)w * h; k++) {
        const uint8_t *p = rgb + 3 * k;
        y[k] = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    }
    df_image_free(&small);
    *out = y;
    return DF_OK;
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

int df_photo_score(const df_image *img, df_photo_scores *s, df_error_t *err)
{
    memset(s, 0, sizeof *s);
    if (!img->width || !img->height)
        return df_error_set(err, DF_E_INVALID, "quality: an empty image");
    uint32_t w, h;
    analysis_size(img, &w, &h);
    double *y = NULL;
    int rc = luminance(img, w, h, &y, err);
    if (rc != DF_OK)
        return rc;
    const size_t n = (size_t)w * h;
    double sum = 0, sq = 0;
    size_t clipped = 0;
    for (size_t k = 0; k < n; k++) {
        sum += y[k], sq += y[k] * y[k];
        clipped += y[k] <= 2.5 || y[k] >= 252.5;
    }
    s->mean = sum / n;
    s->stddev = sqrt(fmax(0, sq / n - s->mean * s->mean));
    s->clipped = (double)clipped / n;
    /* The Laplacian over the interior. */
    double ls = 0, lsq = 0;
    size_t m = 0;
    for (uint32_t r = 1; r + 1 < h; r++)
        for (uint32_t c = 1; c + 1 < w; c++) {
            const double *p = y + (size_t)r * w + c;
            double v = p[-1] + p[1] + p[-(ptrdiff_t)w] + p[w] - 4 * p[0];
            ls += v, lsq += v * v, m++;
        }
    free(y);
    s->laplacian_var = m ? fmax(0, lsq / m - (ls / m) * (ls / m)) : 0;
    s->sharpness = clamp01(s->laplacian_var / DF_SHARPNESS_FULL);
    double e = s->mean < 60 ? (s->mean - 15) / 45 : s->mean > 195 ? (240 - s->mean) / 45 : 1;
    /* Clipping beyond a quarter of the frame costs linearly, all of it at
     * 60%: a dark backdrop or a black coat clips legitimately, a blown-out
     * or crushed photo clips most of itself. */
    double clip = s->clipped > 0.25 ? 1 - (s->clipped - 0.25) / 0.35 : 1;
    s->exposure = clamp01(e) * clamp01(clip);
    s->contrast = clamp01(s->stddev / 32);
    s->quality = s->sharpness * s->exposure * s->contrast;
    return DF_OK;
}

int df_photo_phash(const df_image *img, uint64_t *hash, df_error_t *err)
{
    enum { N = 32, K = 8 };
    double *y = NULL;
    int rc = luminance(img, N, N, &y, err);
    if (rc != DF_OK)
        return rc;
    /* The 8x8 lowest frequencies of the 2-D DCT-II, as a separable product. */
    double basis[K][N], low[K][K], tmp[K][N];
    for (int u = 0; u < K; u++)
        for (int x = 0; x < N; x++)
            basis[u][x] = cos(M_PI * (2 * x + 1) * u / (2.0 * N));
    for (int u = 0; u < K; u++)
        for (int x = 0; x < N; x++) {
            double a = 0;
            for (int r = 0; r < N; r++)
                a += basis[u][r] * y[r * N + x];
            tmp[u][x] = a;
        }
    for (int u = 0; u < K; u++)
        for (int v = 0; v < K; v++) {
            double a = 0;
            for (int x = 0; x < N; x++)
                a += tmp[u][x] * basis[v][x];
            low[u][v] = a;
        }
    free(y);
    /* The median of the 63 coefficients after the DC term (which only says how bright). */
    double sorted[K * K - 1];
    for (int i = 1; i < K * K; i++)
        sorted[i - 1] = low[i / K][i % K];
    for (int i = 1; i < K * K - 1; i++) /* insertion sort: 63 values */
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1], sorted[j - 1] = t;
        }
    const double median = sorted[(K * K - 1) / 2];
    uint64_t h = 0;
    for (int i = 0; i < K * K; i++)
        h = h << 1 | (i > 0 && low[i / K][i % K] > median);
    *hash = h;
    return DF_OK;
}

int df_phash_distance(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }
