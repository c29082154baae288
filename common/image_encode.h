/*  image_encode.h - generated images as PNG, JPEG or WebP files, each with
 *  the generation parameters inside: PNG in its "parameters" text chunk,
 *  JPEG and WebP in EXIF's UserComment (exif.h), where SDXL tools look. */
#ifndef DF_IMAGE_ENCODE_H
#define DF_IMAGE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum { DF_IMAGE_PNG, DF_IMAGE_JPEG, DF_IMAGE_WEBP, DF_IMAGE_FORMAT_COUNT } df_image_format;

/*  "png", "jpeg" (or "jpg"), "webp"; "" is png. DF_E_INVALID otherwise. */
int df_image_format_parse(const char *name, df_image_format *out, df_error_t *err);
/*  The file extension without the dot: "png", "jpg", "webp". */
const char *df_image_format_ext(df_image_format f);
/*  The name df_image_format_parse takes: "png", "jpeg", "webp". */
const char *df_image_format_name(df_image_format f);

/*  Encodes rgb (height rows of width x 3 bytes) into *out (malloc'd, *len
 *  bytes). quality 1-100 for JPEG and WebP (0: 90; WebP at 100 is
 *  lossless); PNG is always lossless. parameters may be NULL. */
int df_image_encode(df_image_format f, const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                    const char *parameters, uint8_t **out, size_t *len, df_error_t *err);

#endif
