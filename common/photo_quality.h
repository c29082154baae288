/*  photo_quality.h - how usable a photo is for a training set, as numbers.
 *
 *  Every score is measured on the photo's luminance brought to a fixed
 *  analysis size (its long side 512 px, Lanczos; smaller photos as they
 *  are), so a 12 MP phone photo and a 1 MP crop of the same scene score
 *  alike:
 *    sharpness  variance of the 3x3 Laplacian, over DF_SHARPNESS_FULL
 *               (capped at 1): a focused photo has strong edges, a blurred
 *               or shaken one has none
 *    exposure   1 while the mean luminance is within [60, 195] of 255,
 *               falling linearly to 0 at 15 and 240; times a penalty when
 *               more than 25% of the pixels are clipped black or white
 *               (none left at 60%)
 *    contrast   the luminance's standard deviation over 32 (capped at 1)
 *    quality    the product: a photo scores 1 only when all three do
 *  The thresholds that turn these into accept / reject belong to the
 *  caller (prep.h).
 */
#ifndef DF_PHOTO_QUALITY_H
#define DF_PHOTO_QUALITY_H

#include "image_decode.h"

#define DF_QUALITY_SIDE 512
#define DF_SHARPNESS_FULL 150.0

typedef struct {
    double sharpness, exposure, contrast, quality; /* each in [0, 1] */
    double laplacian_var;                          /* the raw figure behind sharpness */
    double mean, stddev;                           /* luminance, 0..255 */
    double clipped;                                /* fraction of pixels at <= 2 or >= 253 */
} df_photo_scores;

/*  Scores img. */
int df_photo_score(const df_image *img, df_photo_scores *out, df_error_t *err);

/*  img shrunk to the analysis size (Lanczos): scoring it gives img's own
 *  scores, and its hash and thumbnails come without another pass over a
 *  12 Mpixel photo. */
int df_photo_analysis_copy(const df_image *img, df_image *out, df_error_t *err);

/*  64-bit perceptual hash of img (the signs of the 8x8 lowest frequencies of
 *  the DCT of its 32x32 luminance, against their median): photos that look
 *  alike hash within a few bits of each other. */
int df_photo_phash(const df_image *img, uint64_t *hash, df_error_t *err);

/*  Bits that differ between two hashes (0..64). */
int df_phash_distance(uint64_t a, uint64_t b);

#endif
