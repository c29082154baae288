/*  sha256.h - SHA-256 (FIPS 180-4), streaming.
 *
 *  Names artifacts in the content-addressed store and checks every chunk and
 *  every whole file that crosses the network.
 */
#ifndef DF_SHA256_H
#define DF_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DF_SHA256_BYTES 32
#define DF_SHA256_HEX 65 /* 64 hex digits and a NUL */

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in block */
} df_sha256_t;

void df_sha256_init(df_sha256_t *s);
void df_sha256_update(df_sha256_t *s, const void *data, size_t n);
void df_sha256_final(df_sha256_t *s, uint8_t digest[DF_SHA256_BYTES]);

/*  One-shot digest of a buffer. */
void df_sha256(const void *data, size_t n, uint8_t digest[DF_SHA256_BYTES]);

/*  Lower-case hex of a digest. */
void df_sha256_hex(const uint8_t digest[DF_SHA256_BYTES], char hex[DF_SHA256_HEX]);

/*  Parses 64 hex digits (either case); DF_E_FORMAT otherwise. */
int df_sha256_parse(const char *hex, uint8_t digest[DF_SHA256_BYTES], df_error_t *err);

/*  Digest of a whole file, read in pieces. DF_E_IO names the path. */
int df_sha256_file(const char *path, uint8_t digest[DF_SHA256_BYTES], uint64_t *size, df_error_t *err);

#endif
