/*  loss_plot.c - see loss_plot.h. */
#include "loss_plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "png_write.h"

#define MARGIN 24

static void put(uint8_t *rgb, uint32_t w, uint32_t h, int x, int y, const uint8_t c[3])
{
    if (x < 0 || y < 0 || (uint32_t)x >= w || (uint32_t)y >= h)
        return;
    memcpy(rgb + ((size_t)y * w + (size_t)x) * 3, c, 3);
}

/*  A line by Bresenham's walk. */
static void line(uint8_t *rgb, uint32_t w, uint32_t h, int x0, int y0, int x1, int y1, const uint8_t c[3])
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        put(rgb, w, h, x0, y0, c);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy)
            e += dy, x0 += sx;
        if (e2 <= dx)
            e += dx, y0 += sy;
    }
}

int df_loss_plot(const float *losses, size_t n, uint32_t width, uint32_t height, uint8_t *rgb, df_error_t *err)
{
    if (width < 64 || height < 48 || width > 8192 || height > 8192)
        return df_error_set(err, DF_E_INVALID, "loss plot: %ux%u: from 64x48 to 8192x8192", width, height);
    static const uint8_t axis[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, dot[3] = {160, 190, 230},
                         mean[3] = {200, 40, 30};
    memset(rgb, 255, (size_t)width * height * 3);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(losses[i]))
            lo = fminf(lo, losses[i]), hi = fmaxf(hi, losses[i]);
    const int x0 = MARGIN, y0 = (int)height - MARGIN, x1 = (int)width - MARGIN / 2, y1 = MARGIN / 2;
    if (lo <= hi) {
        if (lo > 0 && lo < 0.5f * hi) /* start the axis at 0 when the data comes near it */
            lo = 0;
        if (hi - lo < 1e-6f)
            hi = lo + 1e-6f;
        /* Horizontal grid lines at round values: a step of 1, 2 or 5 times a power of ten. */
        double span = hi - lo, tick = pow(10, floor(log10(span / 4)));
        tick *= span / tick > 20 ? 5 : span / tick > 8 ? 2 : 1;
        for (double v = ceil(lo / tick) * tick; v <= hi; v += tick) {
            int y = y0 - (int)lrint((v - lo) / (hi - lo) * (y0 - y1));
            line(rgb, width, height, x0 + 1, y, x1, y, grid);
            line(rgb, width, height, x0 - 4, y, x0, y, axis);
        }
        int window = (int)(n / 20) + 1, px = -1, py = 0, count = 0;
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            int x = n > 1 ? x0 + (int)lrint((double)i / (double)(n - 1) * (x1 - x0)) : (x0 + x1) / 2;
            if (isfinite(losses[i])) {
                int y = y0 - (int)lrint((losses[i] - lo) / (hi - lo) * (y0 - y1));
                put(rgb, width, height, x, y, dot), put(rgb, width, height, x + 1, y, dot);
                put(rgb, width, height, x, y + 1, dot), put(rgb, width, height, x + 1, y + 1, dot);
            }
            /* The trailing mean of the last `window` steps' finite losses,
             * kept as a running sum. */
            if (isfinite(losses[i]))
                sum += losses[i], count++;
            if (i >= (size_t)window && isfinite(losses[i - (size_t)window]))
                sum -= losses[i - (size_t)window], count--;
            if (count) {
                int y = y0 - (int)lrint((sum / count - lo) / (hi - lo) * (y0 - y1));
                if (px >= 0)
                    line(rgb, width, height, px, py, x, y, mean);
                else
                    put(rgb, width, height, x, y, mean);
                px = x, py = y;
            }
        }
    }
    line(rgb, width, height, x0, y0, x1, y0, axis);
    line(rgb, width, height, x0, y0, x0, y1, axis);
    return DF_OK;
}

int df_loss_plot_png(const float *losses, size_t n, const char *path, df_error_t *err)
{
    const uint32_t w = 640, h = 360;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb)
        return df_error_set(err, DF_E_NOMEM, "loss plot: out of memory");
    df_png_text t = {"Title", "training loss per step (dots) and its moving average (line)"};
    int rc = df_loss_plot(losses, n, w, h, rgb, err);
    if (rc == DF_OK)
        rc = df_png_write(path, rgb, w, h, &t, 1, err);
    free(rgb);
    return rc;
}
