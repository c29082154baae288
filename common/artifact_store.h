/*  artifact_store.h - content-addressed files on disk, written in chunks.
 *
 *  Objects are named by the SHA-256 of their bytes and live at
 *  DIR/objects/<first two hex digits>/<hash>. An upload in progress lives in
 *  DIR/partial/<hash>.part (with its announced size in <hash>.size) and grows
 *  one verified chunk at a time, so a broken transfer resumes from what
 *  arrived; the object appears (by rename) only once the whole file hashes to
 *  its name. The coordinator keeps its inputs and outputs here; each worker
 *  keeps its cache of base models here.
 */
#ifndef DF_ARTIFACT_STORE_H
#define DF_ARTIFACT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sha256.h"

typedef struct _df_artifacts_t df_artifacts_t;

typedef struct {
    uint64_t size;  /* whole object (or the announced size of a partial one); 0 if unknown */
    uint64_t have;  /* bytes stored so far */
    int complete;   /* the object exists and was verified */
} df_artifact_info;

/*  Opens (creating as needed) a store in dir. max_size bounds any one object
 *  (0: no bound). */
df_artifacts_t *df_artifacts_new(const char *dir, uint64_t max_size, df_error_t *err);
void df_artifacts_destroy(df_artifacts_t **self_p);

/*  What the store holds of hash (nothing is not an error: have 0). hash must
 *  be 64 lower-case hex digits; anything else is DF_E_FORMAT. */
int df_artifacts_stat(df_artifacts_t *self, const char *hash, df_artifact_info *info, df_error_t *err);

/*  Adds a chunk of the object `hash` of `total` bytes at `offset`. A chunk
 *  that was already stored (a retransmission) is accepted as is; one that
 *  would leave a gap is DF_E_STATE and the message says where to resume.
 *  chunk_sha (32 bytes, or NULL) must be the chunk's digest. When the last
 *  byte arrives the whole file is verified against hash: a mismatch discards
 *  the upload (DF_E_FORMAT). *info (may be NULL) says where things stand. */
int df_artifacts_write(df_artifacts_t *self, const char *hash, uint64_t total, uint64_t offset,
                       const void *data, size_t n, const uint8_t *chunk_sha, df_artifact_info *info,
                       df_error_t *err);

/*  Reads up to cap bytes of a complete object from offset; *n gets the count
 *  (0 at the end), *total the object's size. */
int df_artifacts_read(df_artifacts_t *self, const char *hash, uint64_t offset, void *buf, size_t cap,
                      size_t *n, uint64_t *total, df_error_t *err);

/*  Stores bytes held in memory as an object; hex gets its name. */
int df_artifacts_put(df_artifacts_t *self, const void *data, size_t n, char hex[DF_SHA256_HEX], df_error_t *err);

/*  Copies a local file into the store; hex gets its name. */
int df_artifacts_import(df_artifacts_t *self, const char *path, char hex[DF_SHA256_HEX], df_error_t *err);

/*  Deletes a complete object (gone already is not an error). */
int df_artifacts_remove(df_artifacts_t *self, const char *hash, df_error_t *err);

/*  Path of a complete object (whether or not it exists). */
void df_artifacts_path(const df_artifacts_t *self, const char *hash, char *buf, size_t cap);

/*  Checks that s is 64 lower-case hex digits (a safe file name). */
int df_artifacts_valid_hash(const char *s);

#endif
