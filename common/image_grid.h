/*  image_grid.h - a contact sheet: images added row by row into cells of
 *  one size (each image scaled to fit its cell, centred, on white). The
 *  validation images of a training run go in one: a row per validation, a
 *  column per prompt.
 */
#ifndef DF_IMAGE_GRID_H
#define DF_IMAGE_GRID_H

#include <stdint.h>

#include "error.h"

typedef struct _df_image_grid_t df_image_grid_t;

/*  cols cells a row, each cell_w x cell_h pixels. */
df_image_grid_t *df_image_grid_new(uint32_t cols, uint32_t cell_w, uint32_t cell_h, df_error_t *err);
void df_image_grid_destroy(df_image_grid_t **self_p);

/*  Puts rgb (w x h) into cell (row, col), growing the grid by rows as needed
 *  (at most 1024 rows). */
int df_image_grid_put(df_image_grid_t *self, uint32_t row, uint32_t col, const uint8_t *rgb, uint32_t w, uint32_t h,
                      df_error_t *err);

uint32_t df_image_grid_rows(const df_image_grid_t *self);

/*  The grid so far (rows x cell_h high) as RGB; NULL when empty. */
const uint8_t *df_image_grid_rgb(const df_image_grid_t *self, uint32_t *width, uint32_t *height);

#endif
