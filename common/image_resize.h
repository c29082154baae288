/*  image_resize.h - high-quality resampling of photos for training sets.
 *
 *  Lanczos (3 lobes) from FFmpeg's libswscale, whose filters widen with the
 *  shrink factor, so a 12 MP photo brought down to 1024 px is filtered, not
 *  aliased. df_image_fit (image_decode.h) stays for the trainer's quick
 *  crops of photos already at training size.
 */
#ifndef DF_IMAGE_RESIZE_H
#define DF_IMAGE_RESIZE_H

#include "image_decode.h"

/*  src resampled to w x h (any aspect; no cropping) into out. */
int df_image_resize_lanczos(const df_image *src, uint32_t w, uint32_t h, df_image *out, df_error_t *err);

/*  src resampled to w x h with PIL's bicubic filter, in its fixed-point
 *  arithmetic (rows first, rounded to 8 bits, then columns): the
 *  preprocessing BLIP's image encoder was trained with. */
int df_image_resize_bicubic(const df_image *src, uint32_t w, uint32_t h, df_image *out, df_error_t *err);

/*  The largest centred crop of a src_w x src_h image with aspect w:h, as
 *  crop = {x, y, width, height} (src's pixels, each side at least 1). */
void df_image_cover_crop(uint32_t src_w, uint32_t src_h, uint32_t w, uint32_t h, uint32_t crop[4]);

/*  The largest centred crop of src with aspect w:h, resampled to w x h with
 *  Lanczos into out; *crop_x and *crop_y (may be NULL) get the crop's
 *  top-left corner in src's pixels. */
int df_image_cover_lanczos(const df_image *src, uint32_t w, uint32_t h, df_image *out, uint32_t *crop_x,
                           uint32_t *crop_y, df_error_t *err);

#endif
