/*  vk_transfer.h - moving bytes between host memory and device buffers.
 *
 *  Synchronous: each call returns when the data has arrived. On devices whose
 *  tensor memory is mapped (lavapipe, integrated GPUs) this is a memcpy; on
 *  discrete GPUs it goes through a host-visible staging buffer in chunks, so
 *  any size moves with a bounded amount of pinned memory.
 *
 *  Callers must not transfer into a buffer that a submitted-but-unfinished
 *  batch uses; with df_vk_batch_submit() waiting for completion that holds by
 *  construction.
 */
#ifndef DF_VK_TRANSFER_H
#define DF_VK_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "vk_device.h"
#include "vk_memory.h"

typedef struct _df_vk_transfer_t df_vk_transfer_t;

typedef struct {
    uint64_t staging_bytes; /* size of the staging buffer; 0: 64 MiB */
    int force_staging;      /* stage even when memory is mapped (tests the discrete-GPU path) */
} df_vk_transfer_opts;

/*  The staging buffer is created on first use, and only when needed. opts may
 *  be NULL for the defaults. */
df_vk_transfer_t *df_vk_transfer_new(df_vk_device_t *dev, const df_vk_transfer_opts *opts,
                                     df_error_t *err);
void df_vk_transfer_destroy(df_vk_transfer_t **self_p);

/*  Copies size bytes from src to dst at byte offset. */
int df_vk_upload(df_vk_transfer_t *self, df_vk_buffer_t *dst, uint64_t offset, const void *src,
                 uint64_t size, df_error_t *err);
int df_vk_download(df_vk_transfer_t *self, const df_vk_buffer_t *src, uint64_t offset, void *dst,
                   uint64_t size, df_error_t *err);

/*  Uploads n floats stored on the device as dtype (f32, f16 or bf16), i.e.
 *  n * df_dtype_size(dtype) bytes at offset. Conversion happens on the host,
 *  rounding to nearest even. */
int df_vk_upload_f32(df_vk_transfer_t *self, df_vk_buffer_t *dst, uint64_t offset, const float *src,
                     uint64_t n, df_dtype dtype, df_error_t *err);
/*  Downloads n elements of dtype (f32, f16 or bf16) as floats. */
int df_vk_download_f32(df_vk_transfer_t *self, const df_vk_buffer_t *src, uint64_t offset, float *dst,
                       uint64_t n, df_dtype dtype, df_error_t *err);

/*  Whether transfers go through staging (for tests). */
int df_vk_transfer_uses_staging(const df_vk_transfer_t *self);

#endif
