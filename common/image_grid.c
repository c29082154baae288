/*  image_grid.c - see image_grid.h. */
#include "image_grid.h"

#include <stdlib.h>
#include <string.h>

#include "image_decode.h"

#define MAX_ROWS 1024u

struct _df_image_grid_t {
    uint32_t cols, cell_w, cell_h, rows;
    uint8_t *rgb; /* rows x cell_h lines of cols x cell_w pixels */
};

df_image_grid_t *df_image_grid_new(uint32_t cols, uint32_t cell_w, uint32_t cell_h, df_error_t *err)
{
    if (cols == 0 || cols > 64 || cell_w == 0 || cell_h == 0 || cell_w > 4096 || cell_h > 4096) {
        df_error_set(err, DF_E_RANGE, "image grid: %u columns of %ux%u cells (1 to 64 of at most 4096x4096)", cols,
                     cell_w, cell_h);
        return NULL;
    }
    df_image_grid_t *g = calloc(1, sizeof *g);
    if (!g) {
        df_error_set(err, DF_E_NOMEM, "image grid: out of memory");
        return NULL;
    }
    g->cols = cols, g->cell_w = cell_w, g->cell_h = cell_h;
    return g;
}

void df_image_grid_destroy(df_image_grid_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->rgb);
    free(*self_p);
    *self_p = NULL;
}

uint32_t df_image_grid_rows(const df_image_grid_t *self) { return self->rows; }

const uint8_t *df_image_grid_rgb(const df_image_grid_t *self, uint32_t *width, uint32_t *height)
{
    *width = self->cols * self->cell_w;
    *height = self->rows * self->cell_h;
    return self->rgb;
}

int df_image_grid_put(df_image_grid_t *self, uint32_t row, uint32_t col, const uint8_t *rgb, uint32_t w, uint32_t h,
                      df_error_t *err)
{
    if (col >= self->cols || row >= MAX_ROWS || !w || !h)
        return df_error_set(err, DF_E_RANGE, "image grid: cell (%u, %u) of a %u-column grid, image %ux%u", row, col,
                            self->cols, w, h);
    const uint64_t line = 3ull * self->cols * self->cell_w, row_bytes = line * self->cell_h;
    if (row >= self->rows) { /* new rows, white */
        uint8_t *grown = realloc(self->rgb, (row + 1) * row_bytes);
        if (!grown)
            return df_error_set(err, DF_E_NOMEM, "image grid: out of memory");
        memset(grown + self->rows * row_bytes, 255, (row + 1 - self->rows) * row_bytes);
        self->rgb = grown;
        self->rows = row + 1;
    }
    /* Scaled to fit the cell, aspect kept (the whole image, no crop). */
    uint32_t fw = self->cell_w, fh = (uint32_t)((uint64_t)h * self->cell_w / w);
    if (fh > self->cell_h)
        fh = self->cell_h, fw = (uint32_t)((uint64_t)w * self->cell_h / h);
    fw = fw ? fw : 1, fh = fh ? fh : 1;
    df_image src = {w, h, (uint8_t *)rgb}, fit = {0, 0, NULL};
    int rc = df_image_fit(&src, fw, fh, &fit, err);
    if (rc != DF_OK)
        return rc;
    const uint32_t x0 = col * self->cell_w + (self->cell_w - fw) / 2, y0 = row * self->cell_h + (self->cell_h - fh) / 2;
    for (uint32_t y = 0; y < fh; y++)
        memcpy(self->rgb + (uint64_t)(y0 + y) * line + 3ull * x0, fit.rgb + 3ull * fw * y, 3ull * fw);
    df_image_free(&fit);
    return DF_OK;
}
