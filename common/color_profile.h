/*  color_profile.h - photos brought to sRGB from the colour space their
 *  embedded ICC profile names (a phone's Display P3, a camera's Adobe RGB),
 *  so a training set's colours mean the same in every photo; through
 *  Little CMS (lcms2).
 *
 *  A profile that cannot be read, or is not an RGB one, leaves the pixels as
 *  they are (taken as sRGB, as a profile-less photo is): a broken profile
 *  is no reason to lose an otherwise good photo.
 */
#ifndef DF_COLOR_PROFILE_H
#define DF_COLOR_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "image_decode.h"

/*  Converts img's pixels from the profile icc (n bytes) to sRGB (perceptual
 *  intent). Returns 1 when it converted, 0 when it left them. */
int df_icc_to_srgb(df_image *img, const uint8_t *icc, size_t n);

/*  A PNG's iCCP profile (inflated into *icc, malloc'd): 1 when there is one. */
int df_png_icc_profile(const uint8_t *png, size_t n, uint8_t **icc, size_t *len);

/*  A WebP's ICCP chunk (copied into *icc, malloc'd): 1 when there is one. */
int df_webp_icc_profile(const uint8_t *webp, size_t n, uint8_t **icc, size_t *len);

#endif
