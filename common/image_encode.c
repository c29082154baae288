/*  image_encode.c - see image_encode.h. */
#include "image_encode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "exif.h"
#include "png_write.h"

static const char *const k_names[DF_IMAGE_FORMAT_COUNT] = {"png", "jpeg", "webp"};
static const char *const k_ext[DF_IMAGE_FORMAT_COUNT] = {"png", "jpg", "webp"};

int df_image_format_parse(const char *name, df_image_format *out, df_error_t *err)
{
    if (!name || !*name || strcmp(name, "png") == 0)
        *out = DF_IMAGE_PNG;
    else if (strcmp(name, "jpeg") == 0 || strcmp(name, "jpg") == 0)
        *out = DF_IMAGE_JPEG;
    else if (strcmp(name, "webp") == 0)
        *out = DF_IMAGE_WEBP;
    else
        return df_error_set(err, DF_E_INVALID, "image format '%.40s': png, jpeg or webp", name);
    return DF_OK;
}

const char *df_image_format_ext(df_image_format f) { return (unsigned)f < DF_IMAGE_FORMAT_COUNT ? k_ext[f] : "bin"; }
const char *df_image_format_name(df_image_format f) { return (unsigned)f < DF_IMAGE_FORMAT_COUNT ? k_names[f] : "?"; }

/* ---- JPEG (libjpeg-turbo) ---- */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_failure;

/*  libjpeg's default handler exits the process; ours returns to the caller. */
static void jpeg_fail(j_common_ptr c)
{
    jpeg_failure *f = (jpeg_failure *)c->err;
    (*c->err->format_message)(c, f->msg);
    longjmp(f->jump, 1);
}

static int encode_jpeg(const uint8_t *rgb, uint32_t w, uint32_t h, int quality, const uint8_t *exif, size_t exif_len,
                       uint8_t **out, size_t *len, df_error_t *err)
{
    if (exif_len + 6 > 65533)
        return df_error_set(err, DF_E_RANGE, "jpeg: parameters of %zu bytes do not fit JPEG's EXIF segment (64 KiB)",
                            exif_len);
    struct jpeg_compress_struct c;
    jpeg_failure fail;
    /* Set before setjmp, or written through their address: safe to read
     * after a longjmp. */
    unsigned char *buf = NULL;
    unsigned long size = 0;
    uint8_t *app1 = malloc(exif_len + 6);
    if (!app1)
        return df_error_set(err, DF_E_NOMEM, "jpeg: out of memory");
    c.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_fail;
    if (setjmp(fail.jump)) {
        jpeg_destroy_compress(&c);
        free(buf);
        free(app1);
        return df_error_set(err, DF_E_FORMAT, "jpeg: %s", fail.msg);
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    memcpy(app1, "Exif\0\0", 6);
    memcpy(app1 + 6, exif, exif_len);
    jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)(exif_len + 6));
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(app1);
    *out = buf;
    *len = size;
    return DF_OK;
}

/* ---- WebP (libwebp, with the mux library for the EXIF chunk) ---- */

static int encode_webp(const uint8_t *rgb, uint32_t w, uint32_t h, int quality, const uint8_t *exif, size_t exif_len,
                       uint8_t **out, size_t *len, df_error_t *err)
{
    if (w > WEBP_MAX_DIMENSION || h > WEBP_MAX_DIMENSION)
        return df_error_set(err, DF_E_RANGE, "webp: %ux%u is larger than WebP's %d", w, h, WEBP_MAX_DIMENSION);
    uint8_t *plain = NULL;
    size_t n = quality >= 100 ? WebPEncodeLosslessRGB(rgb, (int)w, (int)h, (int)w * 3, &plain)
                              : WebPEncodeRGB(rgb, (int)w, (int)h, (int)w * 3, (float)quality, &plain);
    if (!n)
        return df_error_set(err, DF_E_FORMAT, "webp: the encoder failed on a %ux%u image", w, h);
    WebPData image = {plain, n}, chunk = {exif, exif_len}, assembled = {NULL, 0};
    WebPMux *mux = WebPMuxNew();
    int ok = mux && WebPMuxSetImage(mux, &image, 0) == WEBP_MUX_OK &&
             WebPMuxSetChunk(mux, "EXIF", &chunk, 0) == WEBP_MUX_OK && WebPMuxAssemble(mux, &assembled) == WEBP_MUX_OK;
    WebPMuxDelete(mux);
    WebPFree(plain);
    if (!ok) {
        WebPDataClear(&assembled);
        return df_error_set(err, DF_E_FORMAT, "webp: could not add the EXIF chunk");
    }
    /* Into malloc'd memory, as every encoder here returns. */
    *out = malloc(assembled.size);
    if (*out)
        memcpy(*out, assembled.bytes, assembled.size);
    *len = assembled.size;
    WebPDataClear(&assembled);
    return *out ? DF_OK : df_error_set(err, DF_E_NOMEM, "webp: out of memory");
}

int df_image_encode(df_image_format f, const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                    const char *parameters, uint8_t **out, size_t *len, df_error_t *err)
{
    *out = NULL, *len = 0;
    if (width == 0 || height == 0 || width > 65535 || height > 65535)
        return df_error_set(err, DF_E_RANGE, "image: %ux%u: sides from 1 to 65535", width, height);
    if (quality == 0)
        quality = 90;
    if (quality < 1 || quality > 100)
        return df_error_set(err, DF_E_INVALID, "image: quality %d: from 1 to 100", quality);
    if (f == DF_IMAGE_PNG) {
        df_png_text t = {"parameters", parameters};
        return df_png_encode(rgb, width, height, &t, parameters ? 1 : 0, out, len, err);
    }
    if ((unsigned)f >= DF_IMAGE_FORMAT_COUNT)
        return df_error_set(err, DF_E_INVALID, "image: unknown format %d", (int)f);
    uint8_t *exif = NULL;
    size_t exif_len = 0;
    int rc = df_exif_user_comment(parameters ? parameters : "", &exif, &exif_len, err);
    if (rc == DF_OK)
        rc = f == DF_IMAGE_JPEG ? encode_jpeg(rgb, width, height, quality, exif, exif_len, out, len, err)
                                : encode_webp(rgb, width, height, quality, exif, exif_len, out, len, err);
    free(exif);
    return rc;
}
