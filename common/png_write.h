/*  png_write.h - 8-bit RGB images to PNG (libpng), in memory or to a file,
 *  with text chunks: the generation parameters travel inside the image, in
 *  the "parameters" tEXt chunk other SDXL tools read (A1111's convention). */
#ifndef DF_PNG_WRITE_H
#define DF_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct {
    const char *key, *value;
} df_png_text;

/*  Encodes rgb (height rows of width x 3 bytes) as a PNG in *out
 *  (malloc'd, *len bytes) with the given text chunks. */
int df_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, const df_png_text *text, int ntext,
                  uint8_t **out, size_t *len, df_error_t *err);

/*  The same, written to path (via path.tmp and a rename). */
int df_png_write(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height, const df_png_text *text,
                 int ntext, df_error_t *err);

#endif
