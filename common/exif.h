/*  exif.h - the smallest EXIF block that carries text: one UserComment.
 *
 *  JPEG and WebP have no text chunk like PNG's, so SDXL tools keep the
 *  generation parameters in EXIF's UserComment instead (A1111 writes and
 *  reads them there). The block is big-endian TIFF, and text that is not
 *  ASCII is stored as "UNICODE" UTF-16 in that byte order, so readers that
 *  assume big-endian and readers that follow the file's order agree.
 */
#ifndef DF_EXIF_H
#define DF_EXIF_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*  *out (malloc'd, *len bytes) gets the TIFF structure (starting "MM\0*")
 *  with a UserComment holding text (UTF-8). JPEG's APP1 segment puts
 *  "Exif\0\0" before it; WebP's EXIF chunk holds it as is. */
int df_exif_user_comment(const char *text, uint8_t **out, size_t *len, df_error_t *err);

/*  Reads the UserComment back out of such a block (any byte order, ASCII or
 *  UNICODE): *text malloc'd UTF-8. DF_E_FORMAT names what is wrong. */
int df_exif_read_user_comment(const uint8_t *tiff, size_t len, char **text, df_error_t *err);

/*  The Orientation tag (0x0112) of IFD0: 1 to 8 as EXIF numbers them (how
 *  the stored pixels turn into the picture the camera meant); 1 when the
 *  block has none or is malformed. */
int df_exif_orientation(const uint8_t *tiff, size_t len);

#endif
