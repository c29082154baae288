/*  file_identity.h - a short name for what is at a path now, cheap enough to
 *  compute for every request.
 *
 *  The result cache must know whether a model or LoRA is the one an earlier
 *  request used. Hashing 7 GB of SDXL per request would take longer than
 *  some generations, so the identity is the SHA-256 of every regular file's
 *  path (relative to the root), size, modification time in nanoseconds and
 *  inode, in sorted order: replacing, rewriting or touching a file gives a new
 *  identity, while reading it changes nothing. Folders are walked to a depth
 *  of 4 (a diffusers model is 2 deep); symbolic links are followed.
 */
#ifndef DF_FILE_IDENTITY_H
#define DF_FILE_IDENTITY_H

#include "error.h"
#include "sha256.h"

/*  hex gets the identity of the file or folder at path. DF_E_NOT_FOUND when
 *  nothing is there, DF_E_IO when it cannot be read, DF_E_RANGE when a
 *  folder holds more than 100000 entries. */
int df_file_identity(const char *path, char hex[DF_SHA256_HEX], df_error_t *err);

#endif
