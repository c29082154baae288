/*  test_vk_runtime.c - the Vulkan runtime on whatever device is installed
 *  (lavapipe in CI): device table, memory, transfers, batches, barriers,
 *  timestamps, pipelines and their cache, and every error path they have.
 *  Validation layers are on when installed; any validation error fails. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "test.h"
#include "test_support.h"
#include "vk_batch.h"
#include "vk_check.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_memory.h"
#include "vk_pipeline.h"
#include "vk_transfer.h"

static df_vk_instance_t *g_inst;
static uint32_t g_index;

/* A real embedded kernel (the tiled GEMM: A, B, C in storage buffers and a
 * texel view for its epilogue's bias), for dispatch tests. */
static const df_vk_kernel k_storage3 = {
    "gemm_tiled_a32_b32_c32", 4, {DF_VK_BIND_STORAGE, DF_VK_BIND_STORAGE, DF_VK_BIND_STORAGE, DF_VK_BIND_TEXEL}, 60};
static const df_vk_kernel k_missing = {"no_such_shader", 1, {DF_VK_BIND_STORAGE}, 0};

static df_vk_device_t *open_device(const df_vk_device_opts *opts)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = df_vk_device_new(g_inst, g_index, opts, &err);
    if (!dev)
        fprintf(stderr, "device: %s\n", err.msg);
    return dev;
}

static void test_device_table(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(df_vk_instance_device_count(g_inst) >= 1);
    const df_vk_device_info *d = df_vk_instance_device(g_inst, g_index);
    CHECK(d != NULL);
    CHECK(d->name[0] != '\0');
    CHECK(d->max_storage_range >= 1u << 27); /* the spec minimum is 2^27 */
    CHECK(d->max_texel_elements >= 65536);
    CHECK(d->compute_queue_family != UINT32_MAX);
    CHECK(d->heap_count >= 1 && d->device_local_bytes > 0);
    CHECK(d->subgroup_size >= 1);
    CHECK(df_vk_instance_device(g_inst, 9999) == NULL);
    uint32_t idx = 1234;
    CHECK_OK(df_vk_instance_choose(g_inst, -1, &idx, &err), &err);
    CHECK_EQ(idx, (uint32_t)df_vk_instance_default_device(g_inst));
    CHECK_FAILS(df_vk_instance_choose(g_inst, 99, &idx, &err), &err, DF_E_NOT_FOUND, "--device 99 does not exist");
    char buf[16];
    CHECK(strcmp(df_vk_vendor_name(0x10de, buf, sizeof buf), "NVIDIA") == 0);
    CHECK(strcmp(df_vk_vendor_name(0xabcd, buf, sizeof buf), "0xabcd") == 0);
    CHECK(df_vk_device_type_rank(VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) <
          df_vk_device_type_rank(VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU));
    CHECK(df_vk_device_type_rank(VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU) <
          df_vk_device_type_rank(VK_PHYSICAL_DEVICE_TYPE_CPU));
    FILE *devnull = fopen("/dev/null", "w");
    df_vk_device_info_print(d, 1, devnull);
    fclose(devnull);
    CHECK(df_vk_device_new(g_inst, 9999, NULL, &err) == NULL);
    CHECK_EQ(err.code, DF_E_NOT_FOUND);
}

static void test_result_names(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(strcmp(df_vk_result_name(VK_ERROR_DEVICE_LOST), "VK_ERROR_DEVICE_LOST") == 0);
    CHECK(strstr(df_vk_result_name((VkResult)-12345), "-12345") != NULL);
    CHECK_EQ(df_vk_status(VK_ERROR_OUT_OF_DEVICE_MEMORY), DF_E_DEVICE_MEMORY);
    CHECK_EQ(df_vk_status(VK_ERROR_EXTENSION_NOT_PRESENT), DF_E_UNSUPPORTED);
    CHECK_EQ(df_vk_status(VK_INCOMPLETE), DF_OK);
    CHECK_EQ(df_vk_fail(&err, VK_ERROR_DEVICE_LOST, "vkQueueSubmit"), DF_E_VULKAN);
    CHECK(strcmp(err.msg, "vkQueueSubmit: VK_ERROR_DEVICE_LOST") == 0);
}

static void test_memory_blocks(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_opts opts = {.block_bytes = 8u << 20};
    df_vk_device_t *dev = open_device(&opts);
    if (!dev)
        return;
    df_vk_memory_t *mem = df_vk_device_memory(dev);
    uint64_t align = df_vk_memory_alignment(mem);
    CHECK(align >= 256 && (align & (align - 1)) == 0);
    df_vk_buffer_t *b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = df_vk_buffer_new(dev, 1000 + 100 * i, &err);
        CHECK(b[i] != NULL);
        if (b[i])
            CHECK_EQ(b[i]->offset % align, 0);
    }
    df_vk_memory_stats st;
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.blocks, 1);
    CHECK_EQ(st.buffers, 8);
    CHECK(st.in_use >= 8 * 1000 && st.peak_in_use == st.in_use);
    /* Larger than half a block: a dedicated block, gone when freed. */
    df_vk_buffer_t *big = df_vk_buffer_new(dev, 6u << 20, &err);
    CHECK(big != NULL);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.blocks, 2);
    df_vk_buffer_destroy(&big);
    CHECK(big == NULL);
    /* Overflow into a second shared block, which goes when empty; the last
     * shared block stays as a spare. */
    df_vk_buffer_t *fill[3];
    for (int i = 0; i < 3; i++)
        fill[i] = df_vk_buffer_new(dev, 3u << 20, &err);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.blocks, 2);
    for (int i = 0; i < 3; i++)
        df_vk_buffer_destroy(&fill[i]);
    for (int i = 0; i < 8; i++)
        df_vk_buffer_destroy(&b[i]);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.in_use, 0);
    CHECK_EQ(st.buffers, 0);
    CHECK_EQ(st.blocks, 1);
    CHECK(st.peak_in_use >= (9u << 20));
    /* Two shared blocks were held at once: the high water of reservations
     * outlives the per-step peak's reset, until reset on its own. */
    CHECK(st.peak_reserved >= 2 * st.reserved && st.reserved > 0);
    df_vk_memory_reset_peak(mem);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.peak_in_use, 0);
    CHECK(st.peak_reserved >= 2 * st.reserved);
    df_vk_memory_reset_peak_reserved(mem);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.peak_reserved, st.reserved);
    /* Errors name the reason. */
    CHECK(df_vk_buffer_new(dev, 0, &err) == NULL);
    CHECK_EQ(err.code, DF_E_INVALID);
    df_error_clear(&err);
    uint64_t too_big = df_vk_device_info_of(dev)->max_alloc_size + (1u << 20);
    CHECK(df_vk_buffer_new(dev, too_big, &err) == NULL);
    CHECK(err.code == DF_E_RANGE || err.code == DF_E_DEVICE_MEMORY);
    CHECK(strstr(err.msg, "maxMemoryAllocationSize") != NULL || strstr(err.msg, "vkAllocateMemory") != NULL);
    df_vk_device_destroy(&dev);
    CHECK(dev == NULL);
}

/* A buffer larger than maxStorageBufferRange (128 MiB on lavapipe) holds
 * data like any other; only bindings are limited. */
static void test_large_buffer_roundtrip(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = open_device(NULL);
    if (!dev)
        return;
    uint64_t range = df_vk_device_info_of(dev)->max_storage_range;
    uint64_t size = range + (range >> 1); /* 1.5x the binding limit */
    if (size > (512ull << 20))
        size = 512ull << 20;
    df_vk_buffer_t *buf = df_vk_buffer_new(dev, size, &err);
    CHECK(buf != NULL);
    df_vk_transfer_t *xfer = df_vk_transfer_new(dev, NULL, &err);
    uint32_t *host = malloc(size);
    if (buf && xfer && host) {
        for (uint64_t i = 0; i < size / 4; i++)
            host[i] = (uint32_t)(i * 2654435761u);
        CHECK_OK(df_vk_upload(xfer, buf, 0, host, size, &err), &err);
        memset(host, 0, size);
        CHECK_OK(df_vk_download(xfer, buf, 0, host, size, &err), &err);
        uint64_t bad = 0;
        for (uint64_t i = 0; i < size / 4; i++)
            bad += host[i] != (uint32_t)(i * 2654435761u);
        CHECK_EQ(bad, 0);
        /* The last word past the binding limit, through a copy on the device. */
        df_vk_buffer_t *small = df_vk_buffer_new(dev, 16, &err);
        df_vk_batch_t *batch = df_vk_batch_new(dev, 0, &err);
        CHECK_OK(df_vk_batch_copy(batch, buf, size - 16, small, 0, 16, &err), &err);
        CHECK_OK(df_vk_batch_submit(batch, &err), &err);
        uint32_t tail[4];
        CHECK_OK(df_vk_download(xfer, small, 0, tail, 16, &err), &err);
        CHECK_EQ(tail[3], (uint32_t)((size / 4 - 1) * 2654435761u));
        df_vk_batch_destroy(&batch);
        df_vk_buffer_destroy(&small);
    }
    free(host);
    df_vk_transfer_destroy(&xfer);
    df_vk_buffer_destroy(&buf);
    df_vk_device_destroy(&dev);
}

/* The staging path that discrete GPUs take, forced here on a mapped device:
 * odd offsets and sizes, chunks smaller than the transfer. */
static void test_staged_transfers(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = open_device(NULL);
    if (!dev)
        return;
    df_vk_transfer_opts topts = {.staging_bytes = 4096, .force_staging = 1};
    df_vk_transfer_t *xfer = df_vk_transfer_new(dev, &topts, &err);
    CHECK(df_vk_transfer_uses_staging(xfer));
    enum { SIZE = 50000 };
    df_vk_buffer_t *buf = df_vk_buffer_new(dev, SIZE, &err);
    unsigned char *ref = malloc(SIZE), *got = malloc(SIZE);
    for (int i = 0; i < SIZE; i++)
        ref[i] = (unsigned char)(i * 7 + 1);
    CHECK_OK(df_vk_upload(xfer, buf, 0, ref, SIZE, &err), &err);
    /* Overwrite an unaligned middle piece; bytes around it must survive. */
    unsigned char patch[10001];
    for (int i = 0; i < (int)sizeof patch; i++)
        patch[i] = (unsigned char)(255 - i);
    CHECK_OK(df_vk_upload(xfer, buf, 3, patch, sizeof patch, &err), &err);
    memcpy(ref + 3, patch, sizeof patch);
    memset(got, 0, SIZE);
    CHECK_OK(df_vk_download(xfer, buf, 0, got, SIZE, &err), &err);
    CHECK(memcmp(got, ref, SIZE) == 0);
    memset(got, 0, SIZE);
    CHECK_OK(df_vk_download(xfer, buf, 4097, got, 5003, &err), &err);
    CHECK(memcmp(got, ref + 4097, 5003) == 0);
    /* f16 conversion on the way in and out. */
    float v[5] = {1.0f, -2.5f, 65504.0f, 1.0f / 3.0f, 0.0f}, back[5];
    CHECK_OK(df_vk_upload_f32(xfer, buf, 2, v, 5, DF_F16, &err), &err);
    CHECK_OK(df_vk_download_f32(xfer, buf, 2, back, 5, DF_F16, &err), &err);
    CHECK(back[0] == 1.0f && back[1] == -2.5f && back[2] == 65504.0f && back[4] == 0.0f);
    CHECK(back[3] != v[3] && back[3] > 0.3332f && back[3] < 0.3335f);
    CHECK_OK(df_vk_upload_f32(xfer, buf, 100, v, 5, DF_BF16, &err), &err);
    CHECK_OK(df_vk_download_f32(xfer, buf, 100, back, 5, DF_BF16, &err), &err);
    CHECK(back[1] == -2.5f);
    /* Errors. */
    CHECK_FAILS(df_vk_upload(xfer, buf, SIZE - 10, ref, 11, &err), &err, DF_E_RANGE, "outside");
    CHECK_FAILS(df_vk_download(xfer, buf, UINT64_MAX - 2, got, 8, &err), &err, DF_E_RANGE, "outside");
    CHECK_FAILS(df_vk_upload(xfer, NULL, 0, ref, 1, &err), &err, DF_E_INVALID, "no buffer");
    CHECK_FAILS(df_vk_upload_f32(xfer, buf, 0, v, 5, DF_I32, &err), &err, DF_E_UNSUPPORTED, "not a float");
    CHECK_FAILS(df_vk_download_f32(xfer, buf, SIZE - 4, back, 5, DF_F16, &err), &err, DF_E_RANGE, "outside");
    free(ref), free(got);
    df_vk_buffer_destroy(&buf);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
}

static void test_batch_barriers(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = open_device(NULL);
    if (!dev)
        return;
    df_vk_transfer_t *xfer = df_vk_transfer_new(dev, NULL, &err);
    df_vk_buffer_t *a = df_vk_buffer_new(dev, 4096, &err), *b = df_vk_buffer_new(dev, 4096, &err);
    df_vk_batch_t *batch = df_vk_batch_new(dev, 0, &err);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err); /* nothing recorded: fine */
    /* Independent writes: no barrier. */
    CHECK_OK(df_vk_batch_fill(batch, a, 0, 1024, 0x11111111u, &err), &err);
    CHECK_OK(df_vk_batch_fill(batch, a, 1024, 1024, 0x22222222u, &err), &err);
    CHECK_OK(df_vk_batch_fill(batch, b, 0, 4096, 0x33333333u, &err), &err);
    CHECK_EQ(df_vk_batch_pending(batch), 3);
    /* Reading what was written: one barrier; then writing what was read: another. */
    CHECK_OK(df_vk_batch_copy(batch, a, 0, b, 2048, 2048, &err), &err);
    CHECK_OK(df_vk_batch_fill(batch, a, 0, 4, 0x44444444u, &err), &err);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    CHECK_EQ(df_vk_batch_barrier_count(batch), 2);
    CHECK_EQ(df_vk_batch_pending(batch), 0);
    uint32_t w[1024];
    CHECK_OK(df_vk_download(xfer, b, 0, w, 4096, &err), &err);
    CHECK_EQ(w[0], 0x33333333u);
    CHECK_EQ(w[512], 0x11111111u);
    CHECK_EQ(w[768], 0x22222222u);
    CHECK_OK(df_vk_download(xfer, a, 0, w, 8, &err), &err);
    CHECK_EQ(w[0], 0x44444444u);
    CHECK_EQ(w[1], 0x11111111u);
    /* Transfer range errors. */
    CHECK_FAILS(df_vk_batch_copy(batch, a, 2, b, 0, 4, &err), &err, DF_E_RANGE, "copy source");
    CHECK_FAILS(df_vk_batch_copy(batch, a, 0, b, 4096, 4, &err), &err, DF_E_RANGE, "copy destination");
    CHECK_FAILS(df_vk_batch_fill(batch, a, 0, 6, 0, &err), &err, DF_E_RANGE, "fill");
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&a);
    df_vk_buffer_destroy(&b);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
}

static void test_dispatch_checks_and_timestamps(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = open_device(NULL);
    if (!dev)
        return;
    const df_vk_device_info *info = df_vk_device_info_of(dev);
    df_vk_buffer_t *buf = df_vk_buffer_new(dev, 1 << 16, &err);
    df_vk_pipeline_t *p = df_vk_pipeline_get(dev, &k_storage3, (uint32_t[]){0, 0}, 2, &err);
    CHECK(p != NULL);
    df_vk_batch_t *batch = df_vk_batch_new(dev, 1, &err);
    if (!p || !buf || !batch)
        goto done;
    /* The same spec constants give the same pipeline. */
    CHECK(df_vk_pipeline_get(dev, &k_storage3, (uint32_t[]){0, 0}, 2, &err) == p);
    CHECK(df_vk_pipeline_get(dev, &k_storage3, (uint32_t[]){1, 0}, 2, &err) != p);
    /* A 4x4x4 GEMM's push constants: A at 0, B at 64 floats, C at 128. */
    uint32_t push[15] = {4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0};
    float one = 1.0f, zero = 0.0f;
    memcpy(&push[12], &one, 4);
    memcpy(&push[13], &zero, 4);
    df_vk_binding ok[4] = {{buf, 0, 256, 0, 0}, {buf, 256, 256, 0, 0}, {buf, 512, 256, 0, 1},
                           {buf, 1024, 64, VK_FORMAT_R32G32B32A32_SFLOAT, 0}};
    CHECK_OK(df_vk_batch_dispatch(batch, p, ok, 4, push, 1, 1, 1, "first", &err), &err);
    CHECK_OK(df_vk_batch_dispatch(batch, p, ok, 4, push, 1, 1, 1, NULL, &err), &err);
    CHECK_OK(df_vk_batch_dispatch(batch, p, ok, 4, push, 0, 1, 1, NULL, &err), &err); /* empty: no-op */
    CHECK_EQ(df_vk_batch_pending(batch), 2);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    /* The second dispatch rewrites C: a write-after-write barrier. */
    CHECK_EQ(df_vk_batch_barrier_count(batch), 1);
    if (info->timestamp_bits) {
        CHECK_EQ(df_vk_batch_timing_count(batch), 2);
        const df_vk_timing *t = df_vk_batch_timings(batch);
        CHECK(strcmp(t[0].label, "first") == 0);
        CHECK(strcmp(t[1].label, "gemm_tiled_a32_b32_c32") == 0);
        CHECK(t[0].ms >= 0 && t[1].ms >= 0);
        CHECK(df_vk_batch_total_ms(batch) >= t[0].ms);
    }
    df_vk_binding bad[4];
    memcpy(bad, ok, sizeof bad);
    bad[2].offset = (1 << 16) - 128; /* runs past the end */
    CHECK_FAILS(df_vk_batch_dispatch(batch, p, bad, 4, push, 1, 1, 1, NULL, &err), &err, DF_E_RANGE,
                "binding 2 range");
    memcpy(bad, ok, sizeof bad);
    bad[1].offset = info->storage_align > 4 ? 4 : 0;
    if (info->storage_align > 4)
        CHECK_FAILS(df_vk_batch_dispatch(batch, p, bad, 4, push, 1, 1, 1, NULL, &err), &err, DF_E_INVALID,
                    "not a multiple");
    memcpy(bad, ok, sizeof bad);
    bad[0].buf = NULL;
    CHECK_FAILS(df_vk_batch_dispatch(batch, p, bad, 4, push, 1, 1, 1, NULL, &err), &err, DF_E_INVALID,
                "no buffer");
    CHECK_FAILS(df_vk_batch_dispatch(batch, p, ok, 3, push, 1, 1, 1, NULL, &err), &err, DF_E_INVALID,
                "3 bindings given");
    CHECK_FAILS(df_vk_batch_dispatch(batch, p, ok, 4, push, info->max_group_count[0] + 1u, 1, 1, NULL, &err),
                &err, DF_E_RANGE, "workgroups exceed");
    CHECK_EQ(df_vk_batch_pending(batch), 0);
    /* Pipeline errors. */
    CHECK(df_vk_pipeline_get(dev, &k_missing, NULL, 0, &err) == NULL);
    CHECK(err.code == DF_E_NOT_FOUND && strstr(err.msg, "no_such_shader"));
    df_error_clear(&err);
    uint32_t many[DF_VK_MAX_SPEC + 1] = {0};
    CHECK(df_vk_pipeline_get(dev, &k_storage3, many, DF_VK_MAX_SPEC + 1, &err) == NULL);
    CHECK_EQ(err.code, DF_E_INVALID);
done:
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&buf);
    df_vk_device_destroy(&dev);
}

static void test_pipeline_cache_file(void)
{
    df_error_t err;
    df_error_clear(&err);
    char dir[] = "/tmp/df_pcache_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/pipelines.bin", dir);
    df_vk_device_opts opts = {.pipeline_cache_path = path};

    /* First run: nothing to load; building a pipeline and closing saves it. */
    df_vk_device_t *dev = open_device(&opts);
    if (!dev)
        return;
    CHECK(!df_vk_pipelines_cache_loaded(df_vk_device_pipelines(dev)));
    CHECK(df_vk_pipeline_get(dev, &k_storage3, (uint32_t[]){1, 1}, 2, &err) != NULL);
    CHECK_EQ(df_vk_pipelines_count(df_vk_device_pipelines(dev)), 1);
    df_vk_device_destroy(&dev);
    CHECK(access(path, F_OK) == 0);

    /* Second run loads it. */
    dev = open_device(&opts);
    CHECK(dev && df_vk_pipelines_cache_loaded(df_vk_device_pipelines(dev)));
    df_vk_device_destroy(&dev);

    /* A damaged file is ignored, not fatal. */
    FILE *f = fopen(path, "wb");
    fputs("this is not a pipeline cache, just forty-odd bytes of text", f);
    fclose(f);
    dev = open_device(&opts);
    CHECK(dev != NULL);
    if (dev) {
        CHECK(!df_vk_pipelines_cache_loaded(df_vk_device_pipelines(dev)));
        CHECK(df_vk_pipeline_get(dev, &k_storage3, (uint32_t[]){0, 1}, 2, &err) != NULL);
    }
    df_vk_device_destroy(&dev);

    /* The header check names each problem. */
    const df_vk_device_info *info = df_vk_instance_device(g_inst, g_index);
    uint32_t hdr[8] = {32, VK_PIPELINE_CACHE_HEADER_VERSION_ONE, info->vendor_id, info->device_id};
    memcpy(&hdr[4], info->uuid, 16);
    CHECK_OK(df_vk_pipeline_cache_header_check(hdr, sizeof hdr, info, &err), &err);
    CHECK_FAILS(df_vk_pipeline_cache_header_check(hdr, 16, info, &err), &err, DF_E_FORMAT, "shorter");
    hdr[1] = 7;
    CHECK_FAILS(df_vk_pipeline_cache_header_check(hdr, sizeof hdr, info, &err), &err, DF_E_FORMAT, "version 7");
    hdr[1] = VK_PIPELINE_CACHE_HEADER_VERSION_ONE;
    hdr[2] ^= 1;
    CHECK_FAILS(df_vk_pipeline_cache_header_check(hdr, sizeof hdr, info, &err), &err, DF_E_FORMAT, "written by device");
    hdr[2] ^= 1;
    hdr[5] ^= 1;
    CHECK_FAILS(df_vk_pipeline_cache_header_check(hdr, sizeof hdr, info, &err), &err, DF_E_FORMAT, "UUID");
    hdr[0] = 64;
    CHECK_FAILS(df_vk_pipeline_cache_header_check(hdr, sizeof hdr, info, &err), &err, DF_E_FORMAT, "header size");

    /* An unwritable location reports the path. */
    snprintf(path, sizeof path, "%s/missing/dir/pipelines.bin", dir);
    dev = open_device(&opts);
    if (dev) {
        CHECK_FAILS(df_vk_pipelines_save(df_vk_device_pipelines(dev), &err), &err, DF_E_IO, "missing/dir");
        df_vk_device_destroy(&dev);
    }
    snprintf(path, sizeof path, "%s/pipelines.bin", dir);
    unlink(path);
    rmdir(dir);
}

/* A step's memory: its starting level excludes its own scratch, its peak
 * includes it, and the next step starts from what remains. */
static void test_batch_memory(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_t *dev = open_device(NULL);
    if (!dev)
        return;
    df_vk_memory_t *mem = df_vk_device_memory(dev);
    df_vk_buffer_t *a = df_vk_buffer_new(dev, 1 << 20, &err);
    df_vk_batch_t *batch = df_vk_batch_new(dev, 0, &err);
    df_vk_memory_stats st;
    df_vk_memory_stats_get(mem, &st);
    uint64_t before = st.in_use;
    /* Scratch allocated before the step's first command, as ops do. */
    df_vk_buffer_t *scratch = df_vk_buffer_new(dev, 3 << 20, &err);
    uint64_t padded = scratch ? scratch->padded : 0;
    CHECK_OK(df_vk_batch_hold(batch, &scratch, &err), &err);
    CHECK(scratch == NULL);
    CHECK_OK(df_vk_batch_fill(batch, a, 0, 4096, 0, &err), &err);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    df_vk_batch_memory m = df_vk_batch_memory_last(batch);
    CHECK_EQ(m.start_bytes, before);
    CHECK_EQ(m.peak_bytes, before + padded);
    df_vk_memory_stats_get(mem, &st);
    CHECK_EQ(st.in_use, before); /* the scratch went with the submit */
    /* A step with no scratch peaks where it started. */
    CHECK_OK(df_vk_batch_fill(batch, a, 0, 4096, 1, &err), &err);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    m = df_vk_batch_memory_last(batch);
    CHECK_EQ(m.start_bytes, before);
    CHECK_EQ(m.peak_bytes, before);
    /* Across steps the batch remembers the highest, until reset. */
    CHECK_EQ(df_vk_batch_memory_peak(batch), before + padded);
    df_vk_batch_memory_peak_reset(batch);
    CHECK_EQ(df_vk_batch_memory_peak(batch), 0);
    CHECK_OK(df_vk_batch_fill(batch, a, 0, 4096, 2, &err), &err);
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    CHECK_EQ(df_vk_batch_memory_peak(batch), before);
    /* The ops count their work; fills count none. */
    CHECK(df_vk_batch_flops(batch) == 0);
    df_vk_batch_count_flops(batch, 1e9);
    CHECK(df_vk_batch_flops(batch) == 1e9);
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&a);
    df_vk_device_destroy(&dev);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    if (!(g_inst = test_open_instance(&g_index)))
        return 1;
    RUN(test_device_table);
    RUN(test_result_names);
    RUN(test_memory_blocks);
    RUN(test_large_buffer_roundtrip);
    RUN(test_staged_transfers);
    RUN(test_batch_barriers);
    RUN(test_batch_memory);
    RUN(test_dispatch_checks_and_timestamps);
    RUN(test_pipeline_cache_file);
    CHECK_EQ(df_vk_instance_validation_errors(g_inst), 0);
    df_vk_instance_destroy(&g_inst);
    return test_summary();
}
