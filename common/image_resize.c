/*  image_resize.c - see image_resize.h. */
#include "image_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libswscale/swscale.h>

/*  Resamples a w0 x h0 window of rgb (rows `stride` bytes apart) to w x h. */
static int resample(const uint8_t *rgb, uint32_t stride, uint32_t w0, uint32_t h0, uint32_t w, uint32_t h,
                    df_image *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (!w0 || !h0 || !w || !h || w > 16384 || h > 16384 || w0 > 65535 || h0 > 65535)
        return df_error_set(err, DF_E_INVALID, "resize: %ux%u to %ux%u: sizes from 1 to 16384", w0, h0, w, h);
    /* Full-resolution chroma and accurate rounding: RGB in, RGB out, no
     * trip through subsampled YUV. */
    struct SwsContext *sws = sws_getContext((int)w0, (int)h0, AV_PIX_FMT_RGB24, (int)w, (int)h, AV_PIX_FMT_RGB24,
                                            SWS_LANCZOS | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP,
                                            NULL, NULL, NULL);
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!sws || !dst) {
        sws_freeContext(sws);
        free(dst);
        return df_error_set(err, DF_E_NOMEM, "resize: %ux%u to %ux%u: out of memory", w0, h0, w, h);
    }
    const uint8_t *src_planes[4] = {rgb, NULL, NULL, NULL};
    const int src_stride[4] = {(int)stride, 0, 0, 0};
    uint8_t *dst_planes[4] = {dst, NULL, NULL, NULL};
    const int dst_stride[4] = {(int)w * 3, 0, 0, 0};
    int rows = sws_scale(sws, src_planes, src_stride, 0, (int)h0, dst_planes, dst_stride);
    sws_freeContext(sws);
    if (rows != (int)h) {
        free(dst);
        return df_error_set(err, DF_E_UNSUPPORTED, "resize: %ux%u to %ux%u: libswscale wrote %d rows", w0, h0, w, h,
                            rows);
    }
    out->width = w, out->height = h, out->rgb = dst;
    return DF_OK;
}

int df_image_resize_lanczos(const df_image *src, uint32_t w, uint32_t h, df_image *out, df_error_t *err)
{
    return resample(src->rgb, src->width * 3, src->width, src->height, w, h, out, err);
}

void df_image_cover_crop(uint32_t src_w, uint32_t src_h, uint32_t w, uint32_t h, uint32_t crop[4])
{
    /* Full width when the photo is taller than w:h, else full height. */
    uint32_t cw = src_w, ch = src_h;
    if ((uint64_t)src_w * h > (uint64_t)src_h * w)
        cw = (uint32_t)(((uint64_t)src_h * w + h / 2) / h);
    else
        ch = (uint32_t)(((uint64_t)src_w * h + w / 2) / w);
    cw = cw ? cw : 1, ch = ch ? ch : 1;
    crop[0] = (src_w - cw) / 2, crop[1] = (src_h - ch) / 2, crop[2] = cw, crop[3] = ch;
}

int df_image_cover_lanczos(const df_image *src, uint32_t w, uint32_t h, df_image *out, uint32_t *crop_x,
                           uint32_t *crop_y, df_error_t *err)
{
    if (!w || !h || !src->width || !src->height)
        return df_error_set(err, DF_E_INVALID, "resize: %ux%u to %ux%u: sizes from 1", src->width, src->height, w, h);
    uint32_t c[4];
    df_image_cover_crop(src->width, src->height, w, h, c);
    const uint32_t x = c[0], y = c[1], cw = c[2], ch = c[3];
    if (crop_x)
        *crop_x = x;
    if (crop_y)
        *crop_y = y;
    return resample(src->rgb + ((size_t)y * src->width + x) * 3, src->width * 3, cw, ch, w, h, out, err);
}

/* ---- PIL's bicubic ------------------------------------------------------ */

/*  Keys' cubic with a = -0.5, as PIL's BICUBIC filter. */
static double cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

#define PIL_PRECISION 22 /* PIL's fixed-point bits for 8-bit images */

/*  One pass along an axis: out_n samples from in_n, each from its taps'
 *  fixed-point weights (PIL's coefficients: the filter widened by the
 *  shrink factor, normalised, rounded to PIL_PRECISION bits). */
typedef struct {
    int *first, *count;
    int32_t *k;        /* count[i] weights of sample i at k + i * taps */
    int taps;
} pil_axis;

static int pil_axis_new(uint32_t in_n, uint32_t out_n, pil_axis *a)
{
    const double scale = (double)in_n / out_n, fscale = scale > 1 ? scale : 1, support = 2.0 * fscale;
    a->taps = (int)ceil(support) * 2 + 1;
    a->first = malloc(out_n * sizeof *a->first), a->count = malloc(out_n * sizeof *a->count);
    a->k = malloc((size_t)out_n * (size_t)a->taps * sizeof *a->k);
    double *w = malloc((size_t)a->taps * sizeof *w);
    if (!a->first || !a->count || !a->k || !w) {
        free(w);
        return -1;
    }
    for (uint32_t i = 0; i < out_n; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > (int)in_n ? (int)in_n : hi;
        int n = hi - lo;
        n = n > a->taps ? a->taps : n;
        double sum = 0;
        for (int x = 0; x < n; x++)
            sum += w[x] = cubic((x + lo - center + 0.5) / fscale);
        for (int x = 0; x < n; x++) {
            const double v = sum != 0 ? w[x] / sum : 0;
            a->k[(size_t)i * a->taps + x] = (int32_t)(v * (1 << PIL_PRECISION) + (v < 0 ? -0.5 : 0.5));
        }
        a->first[i] = lo, a->count[i] = n;
    }
    free(w);
    return 0;
}

static void pil_axis_free(pil_axis *a) { free(a->first), free(a->count), free(a->k); }

static uint8_t pil_clip(int64_t v)
{
    v >>= PIL_PRECISION;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int df_image_resize_bicubic(const df_image *src, uint32_t w, uint32_t h, df_image *out, df_error_t *err)
{
    if (!w || !h || !src->width || !src->height || w > 65536 || h > 65536)
        return df_error_set(err, DF_E_INVALID, "resize: %ux%u to %ux%u: sizes from 1", src->width, src->height, w, h);
    pil_axis ax = {0}, ay = {0};
    uint8_t *mid = malloc((size_t)w * src->height * 3), *dst = malloc((size_t)w * h * 3);
    if (!mid || !dst || pil_axis_new(src->width, w, &ax) || pil_axis_new(src->height, h, &ay)) {
        pil_axis_free(&ax), pil_axis_free(&ay), free(mid), free(dst);
        return df_error_set(err, DF_E_NOMEM, "resize: out of memory");
    }
    /* Rows first, to 8 bits, then columns: PIL's order and rounding. */
    for (uint32_t y = 0; y < src->height; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int64_t acc = 1 << (PIL_PRECISION - 1);
                const int32_t *k = ax.k + (size_t)x * ax.taps;
                for (int t = 0; t < ax.count[x]; t++)
                    acc += (int64_t)src->rgb[((size_t)y * src->width + (size_t)(ax.first[x] + t)) * 3 + c] * k[t];
                mid[((size_t)y * w + x) * 3 + c] = pil_clip(acc);
            }
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int64_t acc = 1 << (PIL_PRECISION - 1);
                const int32_t *k = ay.k + (size_t)y * ay.taps;
                for (int t = 0; t < ay.count[y]; t++)
                    acc += (int64_t)mid[((size_t)(ay.first[y] + t) * w + x) * 3 + c] * k[t];
                dst[((size_t)y * w + x) * 3 + c] = pil_clip(acc);
            }
    pil_axis_free(&ax), pil_axis_free(&ay);
    free(mid);
    memset(out, 0, sizeof *out);
    out->width = w, out->height = h, out->rgb = dst;
    return DF_OK;
}
