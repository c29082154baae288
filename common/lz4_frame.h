/*  lz4_frame.h - lz4 frame-format compression with hard output bounds.
 *
 *  Messages from the network are untrusted: decompression is bounded by the
 *  caller's maximum, so a tiny frame claiming (or expanding to) gigabytes is
 *  rejected instead of exhausting memory.
 */
#ifndef DF_LZ4_FRAME_H
#define DF_LZ4_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*  Compresses n bytes into a newly malloc'd lz4 frame (content size recorded
 *  in the frame header and a content checksum appended). */
int df_lz4_compress(const void *src, size_t n, uint8_t **dst, size_t *dst_len, df_error_t *err);

/*  Decompresses one lz4 frame into exactly `expect` bytes written to dst (a
 *  buffer of that size). DF_E_FORMAT when the frame is malformed, truncated,
 *  followed by garbage, fails its checksum, or decodes to any other size. */
int df_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t expect, df_error_t *err);

#endif
