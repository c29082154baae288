/*  image_decode.h - photos to 8-bit RGB: PNG (libpng), JPEG (libjpeg-turbo),
 *  WebP (libwebp) and HEIF, an iPhone's HEIC (libheif), gray and alpha
 *  flattened (alpha over white), 16-bit reduced, a JPEG's EXIF orientation
 *  and a HEIF's rotation applied (the picture as the camera meant it, not as
 *  its pixels are stored), and an embedded ICC profile's colours brought to
 *  sRGB (color_profile.h). A file that is not one of them,
 *  truncated, corrupt or larger than the pixel limit (a decompression bomb)
 *  is refused with its name and the reason, before any large allocation.
 */
#ifndef DF_IMAGE_DECODE_H
#define DF_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DF_IMAGE_MAX_PIXELS (100u * 1000u * 1000u)

typedef struct {
    uint32_t width, height;
    uint8_t *rgb; /* height rows of width x 3 bytes, malloc'd */
} df_image;

/*  Decodes the file at path into *out, which it overwrites (free a previous
 *  image first). On failure *out holds no image. */
int df_image_load(const char *path, df_image *out, df_error_t *err);
void df_image_free(df_image *img);

/*  The largest centred crop of img with aspect w:h, resampled to w x h
 *  (area averaging when shrinking, bilinear when enlarging) into out. */
int df_image_fit(const df_image *img, uint32_t w, uint32_t h, df_image *out, df_error_t *err);

#endif
