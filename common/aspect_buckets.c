/*  aspect_buckets.c - see aspect_buckets.h. */
#include "aspect_buckets.h"

#include <math.h>

df_bucket df_aspect_bucket(uint32_t res, uint32_t step, uint32_t w, uint32_t h)
{
    df_bucket best = {res, res};
    if (!step || !w || !h || res < step)
        return best;
    const double want = log((double)w / h), area = (double)res * res;
    double best_d = fabs(want), best_area = area;
    /* Each width from res/2 to 2 res, with the tallest height the area allows. */
    for (uint32_t bw = (res / 2 + step - 1) / step * step; bw <= 2 * res; bw += step) {
        uint32_t bh = (uint32_t)(area / bw) / step * step;
        if (bh < res / 2 || bh > 2 * res || bh == 0)
            continue;
        double d = fabs(want - log((double)bw / bh)), a = (double)bw * bh;
        if (d < best_d - 1e-12 || (fabs(d - best_d) <= 1e-12 && a > best_area)) {
            best = (df_bucket){bw, bh};
            best_d = d, best_area = a;
        }
    }
    return best;
}
