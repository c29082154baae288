/*  image_decode.c - see image_decode.h. */
#include "image_decode.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <libheif/heif.h>

#include "color_profile.h"
#include "exif.h"

void df_image_free(df_image *img)
{
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static int load_png(const char *path, const uint8_t *data, size_t n, df_image *out, df_error_t *err)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, data, n))
        return df_error_set(err, DF_E_FORMAT, "%s: not a readable PNG (%s)", path, im.message);
    if ((uint64_t)im.width * im.height > DF_IMAGE_MAX_PIXELS) {
        png_image_free(&im);
        return df_error_set(err, DF_E_RANGE, "%s: %ux%u pixels is over the %u limit", path, im.width, im.height,
                            DF_IMAGE_MAX_PIXELS);
    }
    im.format = PNG_FORMAT_RGB;
    out->rgb = malloc(PNG_IMAGE_SIZE(im));
    if (!out->rgb) {
        png_image_free(&im);
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&im, &white, out->rgb, 0, NULL)) {
        free(out->rgb);
        out->rgb = NULL;
        return df_error_set(err, DF_E_FORMAT, "%s: corrupt PNG (%s)", path, im.message);
    }
    out->width = im.width, out->height = im.height;
    uint8_t *icc = NULL;
    size_t icc_len = 0;
    if (df_png_icc_profile(data, n, &icc, &icc_len))
        df_icc_to_srgb(out, icc, icc_len);
    free(icc);
    return DF_OK;
}

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_fail(j_common_ptr c)
{
    jpeg_failure *f = (jpeg_failure *)c->err;
    (*c->err->format_message)(c, f->msg);
    longjmp(f->jump, 1);
}

/*  A truncated JPEG only warns in libjpeg (it pads with gray): refuse it. */
static void jpeg_warn(j_common_ptr c, int level)
{
    if (level < 0)
        jpeg_fail(c);
}

/*  Turns img as EXIF orientation o says (2-8; 1 is as stored): phones store
 *  a portrait as a landscape frame plus this tag. */
static int apply_orientation(df_image *img, int o, df_error_t *err)
{
    if (o < 2 || o > 8)
        return DF_OK;
    const uint32_t W = img->width, H = img->height, swap = o >= 5;
    const uint32_t ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = malloc((size_t)ow * oh * 3);
    if (!dst)
        return df_error_set(err, DF_E_NOMEM, "image: out of memory");
    for (uint32_t y = 0; y < oh; y++)
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t sx, sy; /* where displayed pixel (x, y) is stored */
            switch (o) {
            case 2: sx = W - 1 - x, sy = y; break;         /* mirrored */
            case 3: sx = W - 1 - x, sy = H - 1 - y; break; /* upside down */
            case 4: sx = x, sy = H - 1 - y; break;         /* mirrored vertically */
            case 5: sx = y, sy = x; break;                 /* transposed */
            case 6: sx = y, sy = H - 1 - x; break;         /* turn 90 degrees clockwise to view */
            case 7: sx = W - 1 - y, sy = H - 1 - x; break; /* transverse */
            default: sx = W - 1 - y, sy = x; break;        /* 8: turn 90 degrees counter-clockwise */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    free(img->rgb);
    img->rgb = dst, img->width = ow, img->height = oh;
    return DF_OK;
}

/*  The Orientation of the first EXIF APP1 segment that has one (1: none). */
static int jpeg_orientation(struct jpeg_decompress_struct *d)
{
    for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            int o = df_exif_orientation(m->data + 6, m->data_length - 6);
            if (o != 1)
                return o;
        }
    return 1;
}

static int load_jpeg(const char *path, const uint8_t *data, size_t n, df_image *out, df_error_t *err)
{
    struct jpeg_decompress_struct d;
    jpeg_failure fail;
    uint8_t *rgb = NULL; /* written before any longjmp that reads it */
    d.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_fail;
    fail.mgr.emit_message = jpeg_warn;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&d);
        free(out->rgb);
        out->rgb = NULL;
        return df_error_set(err, DF_E_FORMAT, "%s: corrupt JPEG (%s)", path, fail.msg);
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, data, (unsigned long)n);
    jpeg_save_markers(&d, JPEG_APP0 + 1, 0xffff);
    jpeg_save_markers(&d, JPEG_APP0 + 2, 0xffff); /* ICC profile */
    jpeg_read_header(&d, TRUE);
    if ((uint64_t)d.image_width * d.image_height > DF_IMAGE_MAX_PIXELS) {
        uint32_t w = d.image_width, h = d.image_height;
        jpeg_destroy_decompress(&d);
        return df_error_set(err, DF_E_RANGE, "%s: %ux%u pixels is over the %u limit", path, w, h, DF_IMAGE_MAX_PIXELS);
    }
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    rgb = malloc((size_t)d.output_width * d.output_height * 3);
    out->rgb = rgb;
    if (!rgb) {
        jpeg_destroy_decompress(&d);
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = rgb + (size_t)d.output_scanline * d.output_width * 3;
        jpeg_read_scanlines(&d, &row, 1);
    }
    out->width = d.output_width, out->height = d.output_height;
    int orientation = jpeg_orientation(&d);
    JOCTET *icc = NULL;
    unsigned int icc_len = 0;
    if (jpeg_read_icc_profile(&d, &icc, &icc_len))
        df_icc_to_srgb(out, icc, icc_len);
    free(icc);
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    int rc = apply_orientation(out, orientation, err);
    if (rc != DF_OK) {
        free(out->rgb);
        out->rgb = NULL;
    }
    return rc;
}

static int load_webp(const char *path, const uint8_t *data, size_t n, df_image *out, df_error_t *err)
{
    int w = 0, h = 0;
    if (!WebPGetInfo(data, n, &w, &h))
        return df_error_set(err, DF_E_FORMAT, "%s: not a readable WebP", path);
    if ((uint64_t)w * (uint64_t)h > DF_IMAGE_MAX_PIXELS)
        return df_error_set(err, DF_E_RANGE, "%s: %dx%d pixels is over the %u limit", path, w, h, DF_IMAGE_MAX_PIXELS);
    /* Alpha over white, as for PNG. */
    uint8_t *rgba = WebPDecodeRGBA(data, n, &w, &h);
    if (!rgba)
        return df_error_set(err, DF_E_FORMAT, "%s: corrupt WebP", path);
    out->rgb = malloc((size_t)w * h * 3);
    if (!out->rgb) {
        WebPFree(rgba);
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < (size_t)w * h; i++)
        for (int c = 0; c < 3; c++)
            out->rgb[i * 3 + c] = (uint8_t)((rgba[i * 4 + c] * rgba[i * 4 + 3] + 255 * (255 - rgba[i * 4 + 3]) + 127) / 255);
    WebPFree(rgba);
    out->width = (uint32_t)w, out->height = (uint32_t)h;
    uint8_t *icc = NULL;
    size_t icc_len = 0;
    if (df_webp_icc_profile(data, n, &icc, &icc_len))
        df_icc_to_srgb(out, icc, icc_len);
    free(icc);
    return DF_OK;
}

/*  HEIF (an iPhone's HEIC, or AVIF): libheif applies the container's
 *  rotation and mirroring, so the picture comes out upright. */
static int load_heif(const char *path, const uint8_t *data, size_t n, df_image *out, df_error_t *err)
{
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *handle = NULL;
    struct heif_image *img = NULL;
    int rc = ctx ? DF_OK : df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    struct heif_error e = {heif_error_Ok, heif_suberror_Unspecified, ""};
    if (rc == DF_OK && (e = heif_context_read_from_memory_without_copy(ctx, data, n, NULL)).code != heif_error_Ok)
        rc = df_error_set(err, DF_E_FORMAT, "%s: not a readable HEIF (%s)", path, e.message);
    if (rc == DF_OK && (e = heif_context_get_primary_image_handle(ctx, &handle)).code != heif_error_Ok)
        rc = df_error_set(err, DF_E_FORMAT, "%s: HEIF without a primary image (%s)", path, e.message);
    if (rc == DF_OK) {
        const uint64_t w = (uint64_t)heif_image_handle_get_width(handle);
        const uint64_t h = (uint64_t)heif_image_handle_get_height(handle);
        if (w * h > DF_IMAGE_MAX_PIXELS)
            rc = df_error_set(err, DF_E_RANGE, "%s: %llux%llu pixels is over the %u limit", path,
                              (unsigned long long)w, (unsigned long long)h, DF_IMAGE_MAX_PIXELS);
    }
    if (rc == DF_OK && (e = heif_decode_image(handle, &img, heif_colorspace_RGB, heif_chroma_interleaved_RGBA,
                                              NULL)).code != heif_error_Ok)
        rc = df_error_set(err, DF_E_FORMAT, "%s: corrupt HEIF (%s)", path, e.message);
    int stride = 0;
    const uint8_t *rgba = rc == DF_OK ? heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride) : NULL;
    const int w = img ? heif_image_get_width(img, heif_channel_interleaved) : 0;
    const int h = img ? heif_image_get_height(img, heif_channel_interleaved) : 0;
    if (rc == DF_OK && (!rgba || w <= 0 || h <= 0 || stride < 4 * w))
        rc = df_error_set(err, DF_E_FORMAT, "%s: HEIF decoded to no pixels", path);
    if (rc == DF_OK && !(out->rgb = malloc((size_t)w * h * 3)))
        rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    for (int y = 0; rc == DF_OK && y < h; y++) { /* alpha over white, as for PNG */
        const uint8_t *src = rgba + (size_t)y * stride;
        uint8_t *dst = out->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                dst[3 * x + c] = (uint8_t)((src[4 * x + c] * src[4 * x + 3] + 255 * (255 - src[4 * x + 3]) + 127) / 255);
    }
    if (rc == DF_OK)
        out->width = (uint32_t)w, out->height = (uint32_t)h;
    const size_t icc_len = rc == DF_OK ? heif_image_handle_get_raw_color_profile_size(handle) : 0;
    uint8_t *icc = icc_len ? malloc(icc_len) : NULL;
    if (icc && heif_image_handle_get_raw_color_profile(handle, icc).code == heif_error_Ok)
        df_icc_to_srgb(out, icc, icc_len);
    free(icc);
    heif_image_release(img);
    heif_image_handle_release(handle);
    heif_context_free(ctx);
    return rc;
}

/*  An ISO base media file whose brand libheif decodes. */
static int is_heif(const uint8_t *data, size_t n)
{
    return n >= 12 && memcmp(data + 4, "ftyp", 4) == 0 &&
           heif_check_filetype(data, (int)(n < 4096 ? n : 4096)) == heif_filetype_yes_supported;
}

int df_image_load(const char *path, df_image *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return df_error_set(err, errno == ENOENT ? DF_E_NOT_FOUND : DF_E_IO, "%s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    int rc = DF_OK;
    if (len < 0)
        rc = df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    else if (len == 0)
        rc = df_error_set(err, DF_E_FORMAT, "%s: empty file", path);
    else if (len > (1l << 30))
        rc = df_error_set(err, DF_E_RANGE, "%s: %ld bytes is over 1 GiB", path, len);
    else if (!(data = malloc((size_t)len)))
        rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
    else if (fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)len, f) != (size_t)len)
        rc = df_error_set(err, DF_E_IO, "%s: read failed", path);
    fclose(f);
    if (rc == DF_OK) {
        if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
            rc = load_png(path, data, (size_t)len, out, err);
        else if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
            rc = load_jpeg(path, data, (size_t)len, out, err);
        else if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
            rc = load_webp(path, data, (size_t)len, out, err);
        else if (is_heif(data, (size_t)len))
            rc = load_heif(path, data, (size_t)len, out, err);
        else
            rc = df_error_set(err, DF_E_FORMAT, "%s: not a PNG, JPEG, WebP or HEIF image", path);
    }
    free(data);
    return rc;
}

int df_image_fit(const df_image *img, uint32_t w, uint32_t h, df_image *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (w == 0 || h == 0 || !img->rgb)
        return df_error_set(err, DF_E_INVALID, "image: cannot fit to %ux%u", w, h);
    /* The crop: as wide as the image allows at aspect w:h, centred. */
    double cw = img->width, ch = (double)img->width * h / w;
    if (ch > img->height)
        ch = img->height, cw = (double)img->height * w / h;
    double x0 = (img->width - cw) / 2, y0 = (img->height - ch) / 2, sx = cw / w, sy = ch / h;
    out->rgb = malloc((size_t)w * h * 3);
    if (!out->rgb)
        return df_error_set(err, DF_E_NOMEM, "image: out of memory");
    out->width = w, out->height = h;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            double acc[3] = {0, 0, 0};
            if (sx > 1 || sy > 1) { /* shrinking: average the source area */
                int xa = (int)floor(x0 + x * sx), xb = (int)ceil(x0 + (x + 1) * sx);
                int ya = (int)floor(y0 + y * sy), yb = (int)ceil(y0 + (y + 1) * sy);
                xb = xb > (int)img->width ? (int)img->width : xb;
                yb = yb > (int)img->height ? (int)img->height : yb;
                int count = 0;
                for (int yy = ya; yy < yb; yy++)
                    for (int xx = xa; xx < xb; xx++, count++)
                        for (int c = 0; c < 3; c++)
                            acc[c] += img->rgb[((size_t)yy * img->width + xx) * 3 + c];
                for (int c = 0; c < 3; c++)
                    acc[c] /= count ? count : 1;
            } else { /* enlarging: bilinear */
                double fx = x0 + (x + 0.5) * sx - 0.5, fy = y0 + (y + 0.5) * sy - 0.5;
                fx = fx < 0 ? 0 : fx, fy = fy < 0 ? 0 : fy;
                int ix = (int)fx, iy = (int)fy;
                int jx = ix + 1 < (int)img->width ? ix + 1 : ix, jy = iy + 1 < (int)img->height ? iy + 1 : iy;
                double ax = fx - ix, ay = fy - iy;
                for (int c = 0; c < 3; c++) {
                    double p00 = img->rgb[((size_t)iy * img->width + ix) * 3 + c];
                    double p01 = img->rgb[((size_t)iy * img->width + jx) * 3 + c];
                    double p10 = img->rgb[((size_t)jy * img->width + ix) * 3 + c];
                    double p11 = img->rgb[((size_t)jy * img->width + jx) * 3 + c];
                    acc[c] = (p00 * (1 - ax) + p01 * ax) * (1 - ay) + (p10 * (1 - ax) + p11 * ax) * ay;
                }
            }
            for (int c = 0; c < 3; c++)
                out->rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)lrint(acc[c] < 0 ? 0 : acc[c] > 255 ? 255 : acc[c]);
        }
    return DF_OK;
}
