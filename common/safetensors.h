/*  safetensors.h - reading and writing .safetensors files.
 *
 *  The format: an 8-byte little-endian header length N, N bytes of JSON
 *  ({"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]},
 *  ..., "__metadata__": {"key": "string"}}), then the data section, which
 *  the offsets index.
 *
 *  A reader maps the file read-only and hands out pointers into the mapping,
 *  so weights go from the page cache to a device staging buffer without a
 *  second full copy in host memory. Opening validates the whole header before
 *  anything uses it: JSON shape, known dtype, shape consistent with the byte
 *  size (no overflow), offsets inside the data section, tensors that do not
 *  overlap, no duplicate names. A bad file fails with DF_E_FORMAT and a
 *  message naming the file and the tensor.
 *
 *  A writer collects tensors (by reference: the caller keeps the bytes alive
 *  until df_st_writer_write returns) and metadata, then writes the file to a
 *  temporary name and renames it into place, so a reader never sees half a
 *  file.
 */
#ifndef DF_SAFETENSORS_H
#define DF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"

#define DF_ST_MAX_DIMS 8
/* A header larger than this is refused as malformed (the Rust reference uses
 * the same bound); real SDXL checkpoints need about 200 KiB. */
#define DF_ST_MAX_HEADER (100u * 1024 * 1024)

typedef struct {
    const char *name;
    df_dtype dtype;       /* F32/F16/BF16 for weights; I32/I64/U8/BOOL appear in some files */
    int ndim;             /* 0 for a scalar */
    int64_t shape[DF_ST_MAX_DIMS];
    uint64_t nelem;
    uint64_t offset;      /* within the data section */
    uint64_t nbytes;
    const void *data;     /* points into the mapping */
} df_st_tensor;

typedef struct _df_safetensors_t df_safetensors_t;

/*  Maps and validates path. */
df_safetensors_t *df_safetensors_open(const char *path, df_error_t *err);

/*  Validates a file image already in memory (not copied: buf must outlive the
 *  reader). label names it in messages. For tests and the fuzzer. */
df_safetensors_t *df_safetensors_from_memory(const void *buf, size_t size, const char *label,
                                             df_error_t *err);

void df_safetensors_destroy(df_safetensors_t **self_p);

/*  The file's path (or label). */
const char *df_safetensors_path(const df_safetensors_t *self);

/*  Tensors in the header's order. */
size_t df_safetensors_count(const df_safetensors_t *self);
const df_st_tensor *df_safetensors_at(const df_safetensors_t *self, size_t i);

/*  The tensor called name, or NULL. */
const df_st_tensor *df_safetensors_find(const df_safetensors_t *self, const char *name);

/*  A metadata value, or NULL when the key is absent. */
const char *df_safetensors_metadata(const df_safetensors_t *self, const char *key);

/*  Copies t's elements into dst as f32 (from F32, F16 or BF16); DF_E_FORMAT
 *  for other dtypes. dst holds t->nelem floats. */
int df_st_tensor_to_f32(const df_st_tensor *t, float *dst, df_error_t *err);

/* --- writer --------------------------------------------------------------- */

typedef struct _df_st_writer_t df_st_writer_t;

df_st_writer_t *df_st_writer_new(void);
void df_st_writer_destroy(df_st_writer_t **self_p);

/*  Adds a tensor. data (nelem * dtype size bytes) is referenced, not copied.
 *  A duplicate or empty name, or a dimension < 0, is DF_E_INVALID. */
int df_st_writer_add(df_st_writer_t *self, const char *name, df_dtype dtype, int ndim,
                     const int64_t *shape, const void *data, df_error_t *err);

/*  Produces a tensor's bytes when the file is written, so a generator never
 *  holds a whole model in memory: fills dst (nbytes) and returns DF_OK. */
typedef int (*df_st_fill_fn)(void *ctx, const char *name, void *dst, uint64_t nbytes, df_error_t *err);

/*  Adds a tensor whose bytes come from fill(ctx, ...) during the write. */
int df_st_writer_add_fill(df_st_writer_t *self, const char *name, df_dtype dtype, int ndim,
                          const int64_t *shape, df_st_fill_fn fill, void *ctx, df_error_t *err);

/*  Adds (or replaces) a metadata string. */
int df_st_writer_set_metadata(df_st_writer_t *self, const char *key, const char *value,
                              df_error_t *err);

/*  Writes everything to path (via path.tmp and a rename). */
int df_st_writer_write(df_st_writer_t *self, const char *path, df_error_t *err);

#endif
