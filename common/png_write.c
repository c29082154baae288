/*  png_write.c - see png_write.h. */
#include "png_write.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} sink;

static void sink_write(png_structp png, png_bytep bytes, png_size_t n)
{
    sink *s = png_get_io_ptr(png);
    if (s->failed)
        return;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        uint8_t *d = realloc(s->data, cap);
        if (!d) {
            s->failed = 1;
            return;
        }
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, bytes, n);
    s->len += n;
}

static void sink_flush(png_structp png) { (void)png; }

int df_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, const df_png_text *text, int ntext,
                  uint8_t **out, size_t *len, df_error_t *err)
{
    *out = NULL;
    *len = 0;
    if (width == 0 || height == 0 || width > 65535 || height > 65535)
        return df_error_set(err, DF_E_INVALID, "png: %ux%u is not a size PNG can hold here", width, height);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    /* volatile: these change after setjmp and are read after a longjmp. */
    volatile png_bytep *volatile rows = NULL;
    png_text *volatile chunks = NULL;
    sink s = {0};
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return df_error_set(err, DF_E_NOMEM, "png: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free((void *)rows);
        free(chunks);
        free(s.data);
        return df_error_set(err, DF_E_NOMEM, "png: encoding failed");
    }
    png_set_write_fn(png, &s, sink_write, sink_flush);
    /* zlib level 3 with libpng's adaptive filters: a third of the default
     * level's time for files 5-7% larger (bench_prep: 0.33 -> 0.11 s for a
     * 1152x896 training image). */
    png_set_compression_level(png, 3);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (ntext > 0) {
        chunks = calloc((size_t)ntext, sizeof *chunks);
        if (!chunks)
            png_error(png, "out of memory");
        for (int i = 0; i < ntext; i++) {
            chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
            chunks[i].key = (png_charp)text[i].key;
            chunks[i].text = (png_charp)text[i].value;
        }
        png_set_text(png, info, chunks, ntext);
    }
    rows = malloc(height * sizeof *rows);
    if (!rows)
        png_error(png, "out of memory");
    for (uint32_t y = 0; y < height; y++)
        rows[y] = (png_bytep)(rgb + (size_t)y * width * 3);
    png_set_rows(png, info, (png_bytepp)rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free((void *)rows);
    free(chunks);
    if (s.failed) {
        free(s.data);
        return df_error_set(err, DF_E_NOMEM, "png: out of memory");
    }
    *out = s.data;
    *len = s.len;
    return DF_OK;
}

int df_png_write(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height, const df_png_text *text,
                 int ntext, df_error_t *err)
{
    uint8_t *data;
    size_t len;
    int rc = df_png_encode(rgb, width, height, text, ntext, &data, &len, err);
    if (rc != DF_OK)
        return rc;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    free(data);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(e));
    }
    return DF_OK;
}
