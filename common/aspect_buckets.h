/*  aspect_buckets.h - SDXL's aspect-ratio buckets: training sizes of about
 *  the same area as the square resolution, in steps the model can take, so
 *  a portrait or landscape photo trains whole instead of cropped square.
 */
#ifndef DF_ASPECT_BUCKETS_H
#define DF_ASPECT_BUCKETS_H

#include <stdint.h>

typedef struct {
    uint32_t width, height;
} df_bucket;

/*  The bucket for a w x h photo at square resolution res: width and height
 *  multiples of step (res too), their product at most res^2, sides from res/2
 *  to 2 res (at most 4:1), and of those the one whose aspect ratio is
 *  closest to the photo's (in log terms; the larger area on a tie). */
df_bucket df_aspect_bucket(uint32_t res, uint32_t step, uint32_t w, uint32_t h);

#endif
