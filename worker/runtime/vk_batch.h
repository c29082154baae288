/*  vk_batch.h - many dispatches, one submit.
 *
 *  A submit-and-wait round trip costs 45-157 us on lavapipe and more on a
 *  discrete GPU's driver stack, so ops record into a batch and the caller
 *  submits once per step. The batch owns everything a recorded dispatch needs
 *  until the GPU is done with it (descriptor sets, texel views) and frees it
 *  after the submit completes, leaving the batch ready to record again.
 *
 *  Barriers: the batch remembers the buffer ranges read and written since the
 *  last barrier and inserts a memory barrier only before a dispatch that
 *  reads what an earlier one wrote, or writes what an earlier one touched.
 *  Independent dispatches (the shards of a split GEMM) run back to back.
 *
 *  Profiling: with profile on, every dispatch is bracketed by GPU timestamps;
 *  after submit, df_vk_batch_timings() gives each dispatch's label and time.
 */
#ifndef DF_VK_BATCH_H
#define DF_VK_BATCH_H

#include <stdint.h>
#include <vulkan/vulkan.h>

#include "error.h"
#include "vk_device.h"
#include "vk_memory.h"
#include "vk_pipeline.h"

typedef struct {
    const df_vk_buffer_t *buf;
    uint64_t offset; /* bytes from the start of buf; aligned for the binding kind */
    uint64_t range;  /* bytes; texel bindings: a whole number of texels */
    VkFormat format; /* texel bindings: the view's format */
    int write;       /* the shader writes through this binding */
} df_vk_binding;

typedef struct {
    char label[64];
    double ms;
} df_vk_timing;

typedef struct _df_vk_batch_t df_vk_batch_t;

/*  profile: record GPU timestamps around each dispatch (ignored when the
 *  device's queue has none). */
df_vk_batch_t *df_vk_batch_new(df_vk_device_t *dev, int profile, df_error_t *err);
void df_vk_batch_destroy(df_vk_batch_t **self_p);

df_vk_device_t *df_vk_batch_device(df_vk_batch_t *self);

/*  Records one dispatch of pipeline p over groups gx * gy * gz with the given
 *  bindings (binding i of set 0 gets binds[i]) and push constants (the
 *  kernel's push_bytes are read from push). label names it in profiles; NULL
 *  uses the shader's name. */
int df_vk_batch_dispatch(df_vk_batch_t *self, const df_vk_pipeline_t *p, const df_vk_binding *binds,
                         uint32_t nbinds, const void *push, uint32_t gx, uint32_t gy, uint32_t gz,
                         const char *label, df_error_t *err);

/*  Records a buffer-to-buffer copy (both ranges in bytes from each buffer's
 *  start; offsets and size multiples of 4). */
int df_vk_batch_copy(df_vk_batch_t *self, const df_vk_buffer_t *src, uint64_t src_offset,
                     const df_vk_buffer_t *dst, uint64_t dst_offset, uint64_t size, df_error_t *err);

/*  Records a fill of [offset, offset+size) with the 32-bit pattern value. */
int df_vk_batch_fill(df_vk_batch_t *self, const df_vk_buffer_t *buf, uint64_t offset, uint64_t size,
                     uint32_t value, df_error_t *err);

/*  Hands buf to the batch: it is destroyed once the work recorded so far
 *  has completed (after the next submit, or when the batch is destroyed).
 *  For an op's short-lived scratch: call it right after allocating, before
 *  recording anything that uses the buffer, so that on failure (the buffer
 *  is then destroyed at once) nothing refers to it. *buf is set to NULL. */
int df_vk_batch_hold(df_vk_batch_t *self, df_vk_buffer_t **buf, df_error_t *err);

/*  Submits what was recorded and waits for it. With nothing recorded, returns
 *  at once. Afterwards the batch is empty and can record again. On failure
 *  the recorded work is discarded. */
int df_vk_batch_submit(df_vk_batch_t *self, df_error_t *err);

/*  Device memory of the last submitted step (all of this device's buffers,
 *  whoever owns them): in use when its first command or scratch buffer was
 *  recorded, and the most in use at any point until it completed. peak -
 *  start is what the step's ops allocated on top of their operands. The
 *  device's memory peak counter is reset when a step begins. */
typedef struct {
    uint64_t start_bytes, peak_bytes;
} df_vk_batch_memory;
df_vk_batch_memory df_vk_batch_memory_last(const df_vk_batch_t *self);

/*  The highest device memory of any step submitted since the last reset
 *  (a model evaluation runs as many steps): what a device must have. */
uint64_t df_vk_batch_memory_peak(const df_vk_batch_t *self);
void df_vk_batch_memory_peak_reset(df_vk_batch_t *self);

/*  Floating-point operations of the work recorded through this batch since
 *  it was made (the matrix ops count theirs as they record): with a clock,
 *  the achieved throughput of a whole model. */
void df_vk_batch_count_flops(df_vk_batch_t *self, double flops);
double df_vk_batch_flops(const df_vk_batch_t *self);

/*  Commands recorded and not yet submitted. */
uint32_t df_vk_batch_pending(const df_vk_batch_t *self);

/*  Timings of the last submit (profile on): one per dispatch in order. */
uint32_t df_vk_batch_timing_count(const df_vk_batch_t *self);
const df_vk_timing *df_vk_batch_timings(const df_vk_batch_t *self);
/*  Sum of the last submit's dispatch times, ms. */
double df_vk_batch_total_ms(const df_vk_batch_t *self);
/*  Barriers inserted in the last submit (for tests of the hazard tracking). */
uint32_t df_vk_batch_barrier_count(const df_vk_batch_t *self);

#endif
