/*  test_gemm.c - the GEMM op against the double-precision reference, over
 *  both kernels, every transpose, f32/f16/mixed storage, odd and degenerate
 *  shapes, padded layouts, broadcast batches, unaligned operands, operands
 *  split across bindings (forced small, and a real one above 128 MiB), and
 *  every error path. A case passes only when every checked element is within
 *  the bound derived from the precision and nothing outside C changed. */
#include <math.h>
#include <stdlib.h>

#include "gemm.h"
#include "gemm_check.h"
#include "half.h"
#include "log.h"
#include "test.h"
#include "test_support.h"
#include "vk_batch.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_transfer.h"

static df_vk_instance_t *g_inst;
static uint32_t g_index;
static df_vk_device_t *g_dev;
static df_vk_transfer_t *g_xfer;

#define PATH_TEXEL 1
#define PATH_TILED 2
#define PATH_BOTH 3

static const struct {
    df_dtype a, b, c;
} k_types[] = {
    {DF_F32, DF_F32, DF_F32},
    {DF_F16, DF_F16, DF_F16},
    {DF_F16, DF_F32, DF_F32}, /* f16 weights, f32 activations */
    {DF_F32, DF_F16, DF_F16},
};

/* Runs d on dev with path and reports a failure with the case's description. */
static df_gemm_check_outcome run_case(df_vk_device_t *dev, const df_gemm_desc *d, df_gemm_path path,
                                      const df_gemm_check_opts *base, const char *what)
{
    df_error_t err;
    df_error_clear(&err);
    df_gemm_check_opts o = base ? *base : (df_gemm_check_opts){0};
    o.path = path;
    if (!o.seed)
        o.seed = (uint64_t)d->m * 7919u + d->n * 31u + d->k + d->trans_a * 3u + d->trans_b * 5u;
    if (!o.row_step)
        o.row_step = 1;
    o.c_guard = 16;
    df_gemm_check_outcome out;
    int rc = df_gemm_check_run(dev, g_xfer, d, &o, &out, &err);
    test_checks_++;
    if (rc || out.check.failures || !out.guard_ok) {
        test_failures_++;
        fprintf(stderr,
                "  FAIL %s [%s] %ux%ux%u batch %u %c%c a=%s b=%s c=%s alpha=%g beta=%g: %s"
                " (%llu/%llu off, worst ratio %.3g at [%u][%u][%u] got %.9g want %.9g%s)\n",
                what, df_gemm_path_name(path), d->m, d->n, d->k, d->batch, d->trans_a ? 'T' : 'N',
                d->trans_b ? 'T' : 'N', df_dtype_name(d->type_a), df_dtype_name(d->type_b),
                df_dtype_name(d->type_c), d->alpha, d->beta, rc ? err.msg : "mismatch",
                (unsigned long long)out.check.failures, (unsigned long long)out.check.checked,
                out.check.worst_ratio, out.check.worst_b, out.check.worst_i, out.check.worst_j,
                out.check.worst_got, out.check.worst_ref, out.guard_ok ? "" : "; wrote outside C");
    }
    return out;
}

static void each_path(const df_gemm_desc *d, int paths, const df_gemm_check_opts *o, const char *what)
{
    if (paths & PATH_TEXEL)
        run_case(g_dev, d, DF_GEMM_TEXEL, o, what);
    if (paths & PATH_TILED)
        run_case(g_dev, d, DF_GEMM_TILED, o, what);
}

static void test_small_shapes_all_layouts(void)
{
    static const uint32_t shapes[][3] = {
        {1, 1, 1}, {17, 33, 65}, {5, 3, 2}, {64, 64, 64}, {33, 17, 4}, {9, 130, 7}, {70, 1, 33},
        /* 128 rows and more take the 8 x 8 block texel kernel: odd N and K at its edges. */
        {131, 37, 19}, {200, 6, 9},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (size_t ty = 0; ty < sizeof k_types / sizeof k_types[0]; ty++) {
                df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 1);
                d.type_a = k_types[ty].a, d.type_b = k_types[ty].b, d.type_c = k_types[ty].c;
                each_path(&d, PATH_BOTH, NULL, "small");
            }
}

static void test_alpha_beta(void)
{
    static const float ab[][2] = {{0.5f, 0.0f}, {1.0f, 1.0f}, {-2.0f, 0.25f}, {0.0f, -1.0f}};
    for (size_t i = 0; i < 4; i++)
        for (int t = 0; t < 4; t++) {
            df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, 23, 45, 31, 2);
            d.alpha = ab[i][0], d.beta = ab[i][1];
            each_path(&d, PATH_BOTH, NULL, "alpha/beta");
            d.type_c = DF_F16;
            each_path(&d, PATH_BOTH, NULL, "alpha/beta f16 C");
        }
}

static void test_padded_batched_layouts(void)
{
    for (int t = 0; t < 4; t++)
        for (size_t ty = 0; ty < 2; ty++) {
            df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, 19, 21, 37, 3);
            d.type_a = d.type_b = d.type_c = k_types[ty].a;
            /* Leading dimensions and batch strides larger than needed: the gaps
             * must be skipped on read and left alone on write. */
            d.lda += 5, d.ldb += 3, d.ldc += 9;
            d.stride_a = df_gemm_extent_a(&(df_gemm_desc){.trans_a = d.trans_a, .m = d.m, .k = d.k, .n = 1,
                                                          .batch = 1, .lda = d.lda}) + 11;
            d.stride_b = (uint64_t)(d.trans_b ? d.n : d.k) * d.ldb + 2;
            d.stride_c = (uint64_t)d.m * d.ldc + 13;
            each_path(&d, PATH_BOTH, NULL, "padded");
            /* Aligned padding keeps the 4-wide fetches on the texel path. */
            d.lda = (d.lda + 3) & ~3u, d.ldb = (d.ldb + 3) & ~3u;
            d.stride_a = (uint64_t)(d.trans_a ? d.k : d.m) * d.lda + 8;
            d.stride_b = (uint64_t)(d.trans_b ? d.n : d.k) * d.ldb + 4;
            df_gemm_check_outcome o = run_case(g_dev, &d, DF_GEMM_TEXEL, NULL, "padded aligned");
            CHECK(o.plan.vec_a && o.plan.vec_b);
        }
}

static void test_broadcast_batch(void)
{
    /* One weight matrix shared by every batch entry (stride 0), as a linear
     * layer applies to a batch of activations. */
    for (int t = 0; t < 4; t++) {
        df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, 40, 24, 36, 4);
        d.stride_b = 0;
        each_path(&d, PATH_BOTH, NULL, "broadcast B");
        d = df_gemm_desc_packed(t & 1, t >> 1, 40, 24, 36, 4);
        d.stride_a = 0;
        d.type_a = DF_F16;
        each_path(&d, PATH_BOTH, NULL, "broadcast A");
    }
}

static void test_unaligned_operands(void)
{
    /* A and B one element into their buffers: 4-wide fetches are impossible
     * and the kernel must fall back to element fetches. */
    df_gemm_check_opts o = {.offset_a = 1, .offset_b = 3};
    for (int t = 0; t < 4; t++) {
        df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, 36, 44, 52, 1);
        df_gemm_check_outcome r = run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "unaligned");
        CHECK(!r.plan.vec_a && !r.plan.vec_b);
        df_gemm_desc tall = df_gemm_desc_packed(t & 1, t >> 1, 150, 44, 52, 1);
        r = run_case(g_dev, &tall, DF_GEMM_TEXEL, &o, "unaligned tall");
        CHECK(!r.plan.vec_a && !r.plan.vec_b);
        run_case(g_dev, &d, DF_GEMM_TILED, &o, "unaligned");
        d.type_a = d.type_b = DF_F16;
        run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "unaligned f16");
        /* Aligned, the same shape vectorises. */
        df_gemm_desc e = df_gemm_desc_packed(t & 1, t >> 1, 36, 44, 52, 1);
        r = run_case(g_dev, &e, DF_GEMM_TEXEL, NULL, "aligned");
        CHECK(r.plan.vec_a && r.plan.vec_b);
    }
}

static void test_gemv_and_thin(void)
{
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 1, 4096, 1280, 1);
    each_path(&d, PATH_BOTH, NULL, "1x4096x1280");
    d = df_gemm_desc_packed(0, 1, 1, 4096, 1280, 1);
    d.type_b = DF_F16;
    each_path(&d, PATH_TEXEL, NULL, "1x4096x1280 NT f16 weights");
    d = df_gemm_desc_packed(1, 0, 4096, 1, 320, 1);
    each_path(&d, PATH_BOTH, NULL, "4096x1x320");
    d = df_gemm_desc_packed(0, 0, 3, 5, 4096, 2);
    each_path(&d, PATH_BOTH, NULL, "long K");
}

static void test_large_shapes(void)
{
    df_gemm_check_opts o = {.row_step = 7};
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 1280, 1280, 1280, 1);
    df_gemm_check_outcome r = run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "1280^3");
    CHECK(r.plan.vec_a && r.plan.vec_b && r.plan.rows == 8);
    d.type_a = d.type_b = d.type_c = DF_F16;
    run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "1280^3 f16");
    o.row_step = 61;
    d = df_gemm_desc_packed(0, 1, 4096, 640, 640, 1);
    d.type_b = DF_F16;
    run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "4096x640x640 NT");
    d = df_gemm_desc_packed(1, 0, 640, 1024, 320, 2);
    run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "640x1024x320 TN batch 2");
}

/* Binding limit forced to 16 KiB: every operand of these shapes needs
 * splitting, along batch, M, N and K. */
static void test_forced_splitting(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_device_opts opts = {.max_bind_bytes = 16u << 10};
    df_vk_device_t *dev = df_vk_device_new(g_inst, g_index, &opts, &err);
    if (!dev) {
        fprintf(stderr, "%s\n", err.msg);
        test_failures_++;
        return;
    }
    for (int t = 0; t < 4; t++) {
        df_gemm_desc d = df_gemm_desc_packed(t & 1, t >> 1, 150, 70, 90, 1);
        df_gemm_check_outcome r = run_case(dev, &d, DF_GEMM_TEXEL, NULL, "split");
        CHECK(r.plan.dispatches > 1);
        r = run_case(dev, &d, DF_GEMM_TILED, NULL, "split");
        CHECK(r.plan.dispatches > 1);
        /* Transposed A (K x M) or untransposed B (K x N) can only shrink by
         * splitting K. */
        if (t != 2)
            CHECK(r.plan.k_chunks > 1);
        d.alpha = 0.75f, d.beta = -0.5f;
        run_case(dev, &d, DF_GEMM_TILED, NULL, "split alpha/beta");
        /* Batches: several entries per dispatch while they fit. */
        d = df_gemm_desc_packed(t & 1, t >> 1, 40, 40, 40, 9); /* 6.4 KB each: 2 per window */
        r = run_case(dev, &d, DF_GEMM_TEXEL, NULL, "split batch");
        CHECK(r.plan.dispatches > 1 && r.plan.dispatches < 9);
        d.type_a = DF_F16, d.type_c = DF_F16;
        run_case(dev, &d, DF_GEMM_TILED, NULL, "split batch f16");
    }
    /* f16 C cannot take a K split (partials would round to f16). */
    df_gemm_desc d = df_gemm_desc_packed(1, 0, 150, 70, 90, 1);
    d.type_c = DF_F16;
    df_gemm_check_outcome out;
    df_gemm_check_opts o = {.path = DF_GEMM_TILED, .row_step = 1};
    CHECK_FAILS(df_gemm_check_run(dev, g_xfer, &d, &o, &out, &err), &err, DF_E_UNSUPPORTED, "use an f32 C");
    df_vk_device_destroy(&dev);
}

/* Real device limits: an f32 C of 142 MB (above lavapipe's 128 MiB binding
 * limit), and on the tiled path a transposed A of 138 MB. */
static void test_real_large_operands(void)
{
    const df_vk_device_info *info = df_vk_device_info_of(g_dev);
    uint64_t limit = info->max_storage_range;
    if (limit > (256ull << 20)) {
        fprintf(stderr, "  (binding limit %llu MiB: large-operand splitting is covered by the forced test)\n",
                (unsigned long long)(limit >> 20));
        return;
    }
    uint32_t n = 4096;
    uint32_t m = (uint32_t)((limit + (limit >> 4)) / (4ull * n)) + 1; /* C ~1.06x the limit */
    df_gemm_desc d = df_gemm_desc_packed(0, 0, m, n, 8, 1);
    df_gemm_check_opts o = {.row_step = 97};
    df_gemm_check_outcome r = run_case(g_dev, &d, DF_GEMM_TEXEL, &o, "C above the binding limit");
    CHECK(r.plan.dispatches >= 2);
    CHECK_EQ(r.plan.k_chunks, 1);

    uint32_t k = (uint32_t)((limit + (limit >> 4)) / (4ull * 64)) + 1;
    d = df_gemm_desc_packed(1, 0, 64, 8, k, 1);
    o.row_step = 9;
    r = run_case(g_dev, &d, DF_GEMM_TILED, &o, "A^T above the binding limit");
    CHECK(r.plan.k_chunks >= 2);
}

static void test_errors(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_vk_buffer_t *buf = df_vk_buffer_new(g_dev, 4096, &err);
    df_vk_buffer_t *other = df_vk_buffer_new(g_dev, 4096, &err);
    df_vk_batch_t *batch = df_vk_batch_new(g_dev, 0, &err);
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 8, 8, 8, 1); /* 256 bytes each */
    df_tensor_ref a = df_ref(buf, 0), b = df_ref(buf, 256), c = df_ref(other, 0);
    CHECK_OK(df_gemm(batch, &d, a, b, c, DF_GEMM_AUTO, NULL, &err), &err);
    CHECK_FAILS(df_gemm(batch, &d, a, b, df_ref(other, 4000), DF_GEMM_AUTO, NULL, &err), &err, DF_E_RANGE,
                "C needs bytes [4000, 4256)");
    CHECK_FAILS(df_gemm(batch, &d, df_ref(buf, 2), b, c, DF_GEMM_AUTO, NULL, &err), &err, DF_E_INVALID,
                "A offset 2 is not a multiple");
    CHECK_FAILS(df_gemm(batch, &d, a, b, df_ref(buf, 128), DF_GEMM_AUTO, NULL, &err), &err, DF_E_INVALID,
                "overlaps");
    CHECK_FAILS(df_gemm(batch, &d, (df_tensor_ref){0}, b, c, DF_GEMM_AUTO, NULL, &err), &err, DF_E_INVALID,
                "A has no buffer");
    CHECK_FAILS(df_gemm(batch, &d, a, b, c, (df_gemm_path)7, NULL, &err), &err, DF_E_INVALID, "unknown kernel");
    df_gemm_desc bad = d;
    bad.ldc = 3;
    CHECK_FAILS(df_gemm(batch, &bad, a, b, c, DF_GEMM_AUTO, NULL, &err), &err, DF_E_INVALID, "ldc=3");
    CHECK_OK(df_vk_batch_submit(batch, &err), &err);
    CHECK_EQ(df_gemm_path_parse("tiled"), DF_GEMM_TILED);
    CHECK_EQ(df_gemm_path_parse("fast"), -1);
    CHECK(strcmp(df_gemm_path_name(DF_GEMM_TEXEL), "texel") == 0);
    df_gemm_path def = df_gemm_default_path(g_dev);
    CHECK(def == (df_vk_device_prefers_texel_tiles(g_dev) ? DF_GEMM_TEXEL : DF_GEMM_TILED));
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&buf);
    df_vk_buffer_destroy(&other);
}

/* The check must be able to fail: a result computed with alpha = 1 does not
 * pass as alpha = 1.001, nor a transposed product as an untransposed one. */
static void test_check_detects_wrong_results(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 31, 29, 64, 1);
    uint64_t na = df_gemm_extent_a(&d), nb = df_gemm_extent_b(&d), nc = df_gemm_extent_c(&d);
    float *a = malloc(na * 4), *b = malloc(nb * 4), *got = malloc(nc * 4);
    double *ref = malloc(nc * 8), *bound = malloc(nc * 8);
    df_gemm_check_fill(a, na, 5, 1, DF_F32);
    df_gemm_check_fill(b, nb, 5, 2, DF_F32);
    df_vk_buffer_t *ba = df_vk_buffer_new(g_dev, na * 4, &err), *bb = df_vk_buffer_new(g_dev, nb * 4, &err);
    df_vk_buffer_t *bc = df_vk_buffer_new(g_dev, nc * 4, &err);
    df_vk_batch_t *batch = df_vk_batch_new(g_dev, 0, &err);
    CHECK_OK(df_vk_upload(g_xfer, ba, 0, a, na * 4, &err), &err);
    CHECK_OK(df_vk_upload(g_xfer, bb, 0, b, nb * 4, &err), &err);
    for (int path = DF_GEMM_TEXEL; path <= DF_GEMM_TILED; path++) {
        CHECK_OK(df_gemm(batch, &d, df_ref(ba, 0), df_ref(bb, 0), df_ref(bc, 0), (df_gemm_path)path, NULL, &err), &err);
        CHECK_OK(df_vk_batch_submit(batch, &err), &err);
        CHECK_OK(df_vk_download(g_xfer, bc, 0, got, nc * 4, &err), &err);
        df_gemm_check_result r;
        CHECK_OK(df_gemm_reference(&d, a, b, NULL, ref, bound, &err), &err);
        df_gemm_compare(&d, got, ref, bound, &r);
        CHECK_EQ(r.failures, 0);
        df_gemm_desc wrong = d;
        wrong.alpha = 1.001f;
        CHECK_OK(df_gemm_reference(&wrong, a, b, NULL, ref, bound, &err), &err);
        df_gemm_compare(&d, got, ref, bound, &r);
        CHECK(r.failures > nc / 2);
        /* B read as its transpose (same storage, square K x N would be needed;
         * use the first 29 x 29 block via ldb) must not match either. */
        df_gemm_desc sq = df_gemm_desc_packed(0, 0, 31, 29, 29, 1);
        sq.lda = 64, sq.ldb = 29;
        df_gemm_desc sq_t = sq;
        sq_t.trans_b = 1;
        CHECK_OK(df_gemm(batch, &sq, df_ref(ba, 0), df_ref(bb, 0), df_ref(bc, 0), (df_gemm_path)path, NULL, &err), &err);
        CHECK_OK(df_vk_batch_submit(batch, &err), &err);
        CHECK_OK(df_vk_download(g_xfer, bc, 0, got, df_gemm_extent_c(&sq) * 4, &err), &err);
        CHECK_OK(df_gemm_reference(&sq_t, a, b, NULL, ref, bound, &err), &err);
        df_gemm_compare(&sq, got, ref, bound, &r);
        CHECK(r.failures > 0);
    }
    df_vk_batch_destroy(&batch);
    df_vk_buffer_destroy(&ba);
    df_vk_buffer_destroy(&bb);
    df_vk_buffer_destroy(&bc);
    free(a), free(b), free(got), free(ref), free(bound);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    df_error_t err;
    df_error_clear(&err);
    if (!(g_inst = test_open_instance(&g_index)))
        return 1;
    if (!(g_dev = df_vk_device_new(g_inst, g_index, NULL, &err)) || !(g_xfer = df_vk_transfer_new(g_dev, NULL, &err))) {
        fprintf(stderr, "device: %s\n", err.msg);
        return 1;
    }
    RUN(test_small_shapes_all_layouts);
    RUN(test_alpha_beta);
    RUN(test_padded_batched_layouts);
    RUN(test_broadcast_batch);
    RUN(test_unaligned_operands);
    RUN(test_gemv_and_thin);
    RUN(test_large_shapes);
    RUN(test_forced_splitting);
    RUN(test_real_large_operands);
    RUN(test_errors);
    RUN(test_check_detects_wrong_results);
    CHECK_EQ(df_vk_instance_validation_errors(g_inst), 0);
    df_vk_transfer_destroy(&g_xfer);
    df_vk_device_destroy(&g_dev);
    df_vk_instance_destroy(&g_inst);
    return test_summary();
}
