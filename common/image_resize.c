/*  image_resize.c - see image_resize.h. */
#include "image_resize.h"

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
