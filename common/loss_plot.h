/*  loss_plot.h - a training run's loss curve as a picture: every step's
 *  loss as a light dot, a moving average over them as a line, axes with
 *  tick marks at round values, on white. No fonts: the numbers are in the
 *  job's loss.csv beside it. */
#ifndef DF_LOSS_PLOT_H
#define DF_LOSS_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*  rgb (height rows of width x 3 bytes, at least 64 x 48) gets the plot
 *  of n losses (non-finite ones are skipped). */
int df_loss_plot(const float *losses, size_t n, uint32_t width, uint32_t height, uint8_t *rgb, df_error_t *err);

/*  The same as a PNG file at path. */
int df_loss_plot_png(const float *losses, size_t n, const char *path, df_error_t *err);

#endif
