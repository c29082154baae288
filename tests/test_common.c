/*  test_common.c - host-side foundations: errors, logging names, fp16/bf16,
 *  dtypes, Philox, and the GEMM descriptor, reference and comparison. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "delta_codec.h"
#include "dtype.h"
#include "error.h"
#include "exif.h"
#include "file_identity.h"
#include "image_decode.h"
#include "image_encode.h"
#include "loss_plot.h"
#include "gemm_desc.h"
#include "half.h"
#include "log.h"
#include "aspect_buckets.h"
#include "philox.h"
#include "quant8.h"
#include "adam8.h"
#include "test.h"
#include "png_write.h"
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <stdlib.h>

static void test_error_first_wins(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK_EQ(err.code, DF_OK);
    CHECK_EQ(df_error_set(&err, DF_E_IO, "open %s: %s", "x.bin", "denied"), DF_E_IO);
    CHECK(strcmp(err.msg, "open x.bin: denied") == 0);
    /* A second error must not overwrite the first, more precise one. */
    CHECK_EQ(df_error_set(&err, DF_E_INVALID, "later"), DF_E_INVALID);
    CHECK_EQ(err.code, DF_E_IO);
    CHECK_EQ(df_error_prefix(&err, "model %d", 3), DF_E_IO);
    CHECK(strcmp(err.msg, "model 3: open x.bin: denied") == 0);
    /* NULL is allowed everywhere. */
    CHECK_EQ(df_error_set(NULL, DF_E_NOMEM, "x"), DF_E_NOMEM);
    CHECK_EQ(df_error_prefix(NULL, "x"), DF_OK);
    df_error_clear(NULL);
    /* Prefixing a clear error does nothing. */
    df_error_clear(&err);
    CHECK_EQ(df_error_prefix(&err, "ctx"), DF_OK);
    CHECK(err.msg[0] == '\0');
}

static void test_error_truncation(void)
{
    df_error_t err;
    df_error_clear(&err);
    char big[2 * DF_ERROR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    df_error_set(&err, DF_E_FORMAT, "%s", big);
    CHECK_EQ(strlen(err.msg), DF_ERROR_MSG_MAX - 1);
    df_error_prefix(&err, "%s", "prefix");
    CHECK_EQ(strlen(err.msg), DF_ERROR_MSG_MAX - 1);
    CHECK(strncmp(err.msg, "prefix: xxx", 11) == 0);
}

static void test_status_and_log_names(void)
{
    CHECK(strcmp(df_status_name(DF_E_VULKAN), "DF_E_VULKAN") == 0);
    CHECK(strcmp(df_status_name(-999), "DF_E_UNKNOWN") == 0);
    CHECK_EQ(df_log_level_parse("warn"), DF_LOG_WARN);
    CHECK_EQ(df_log_level_parse("loud"), -1);
    CHECK_EQ(df_log_level_parse(NULL), -1);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_half_exhaustive_roundtrip(void)
{
    /* Every half converts to a float and back to itself (NaNs stay NaN). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = df_half_to_float((uint16_t)h);
        uint16_t back = df_float_to_half(f);
        int is_nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (is_nan ? !isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h)
            bad++;
    }
    CHECK_EQ(bad, 0);
}

static void test_half_rounding(void)
{
    CHECK_EQ(df_float_to_half(1.0f), 0x3c00);
    CHECK_EQ(df_float_to_half(-2.0f), 0xc000);
    CHECK_EQ(df_float_to_half(65504.0f), 0x7bff);
    CHECK_EQ(df_float_to_half(65519.0f), 0x7bff);  /* below the midpoint to 65536 */
    CHECK_EQ(df_float_to_half(65520.0f), 0x7c00);  /* the midpoint rounds to even: infinity */
    CHECK_EQ(df_float_to_half(INFINITY), 0x7c00);
    CHECK_EQ(df_float_to_half(-INFINITY), 0xfc00);
    CHECK(isnan(df_half_to_float(df_float_to_half(NAN))));
    /* Ties to even between 1 and 1 + 2^-10: 1 + 2^-11 -> 1, 1 + 3*2^-11 -> 1 + 2^-9. */
    CHECK_EQ(df_float_to_half(1.0f + 0x1p-11f), 0x3c00);
    CHECK_EQ(df_float_to_half(1.0f + 3 * 0x1p-11f), 0x3c02);
    CHECK_EQ(df_float_to_half(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above the tie */
    /* Subnormals: 2^-24 is the smallest; 2^-25 ties to even (0); a bit more rounds up. */
    CHECK_EQ(df_float_to_half(0x1p-24f), 0x0001);
    CHECK_EQ(df_float_to_half(0x1p-25f), 0x0000);
    CHECK_EQ(df_float_to_half(0x1p-25f * 1.0001f), 0x0001);
    CHECK_EQ(df_float_to_half(3 * 0x1p-25f), 0x0002); /* 1.5 ulp ties to 2 */
    CHECK_EQ(df_float_to_half(0x1p-14f), 0x0400);      /* smallest normal */
    CHECK_EQ(df_float_to_half(0x1p-14f - 0x1p-25f), 0x0400); /* rounds up into the normals */
    CHECK_EQ(df_float_to_half(-0.0f), 0x8000);
    CHECK(df_half_to_float(0x0001) == 0x1p-24f);
    CHECK(df_half_to_float(0x03ff) == 1023 * 0x1p-24f);
}

static void test_bf16(void)
{
    CHECK_EQ(df_float_to_bf16(1.0f), 0x3f80);
    CHECK(df_bf16_to_float(0x3f80) == 1.0f);
    /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1). */
    CHECK_EQ(df_float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    CHECK_EQ(df_float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    CHECK(isnan(df_bf16_to_float(df_float_to_bf16(NAN))));
    CHECK_EQ(bits(df_bf16_to_float(df_float_to_bf16(-3.5f))), bits(-3.5f));
}

static void test_dtype(void)
{
    CHECK_EQ(df_dtype_size(DF_F32), 4);
    CHECK_EQ(df_dtype_size(DF_F16), 2);
    CHECK_EQ(df_dtype_size(DF_U8), 1);
    CHECK_EQ(df_dtype_size((df_dtype)99), 0);
    CHECK_EQ(df_dtype_parse("BF16"), DF_BF16);
    CHECK_EQ(df_dtype_parse("f32"), DF_F32);
    CHECK_EQ(df_dtype_parse("F64"), -1);
    CHECK(strcmp(df_dtype_name(DF_F16), "f16") == 0);
    CHECK(strcmp(df_dtype_name((df_dtype)-1), "?") == 0);
    CHECK_EQ(df_dtype_parse("I8"), DF_I8);
    CHECK_EQ(df_dtype_size(DF_I8), 1);
}

/* 8-bit AdamW codes: every code decodes and encodes back to itself, the
 * decoded values rise with the code, 1 is exact, a nonzero sqrt(v) never
 * becomes zero while a negligible m does, and a quantized state survives a
 * trip through f32 (what checkpoints store) unchanged. */
static void test_adam8_codes(void)
{
    int round_trip = 1, rising = 1;
    for (int c = 0; c < 256; c++) {
        round_trip &= df_adam8_encode_s(df_adam8_decode_s((uint8_t)c)) == c;
        if (c && (c & 127))
            round_trip &= df_adam8_encode_m(df_adam8_decode_m((uint8_t)c)) == c;
        if (c > 0)
            rising &= df_adam8_decode_s((uint8_t)c) > df_adam8_decode_s((uint8_t)(c - 1));
        if (c > 0 && c < 128)
            rising &= df_adam8_decode_m((uint8_t)c) > df_adam8_decode_m((uint8_t)(c - 1));
    }
    CHECK(round_trip);
    CHECK(rising);
    CHECK(df_adam8_decode_m(df_adam8_encode_m(1.0f)) == 1.0f);
    CHECK(df_adam8_decode_m(df_adam8_encode_m(-1.0f)) == -1.0f);
    CHECK(df_adam8_decode_s(df_adam8_encode_s(1.0f)) == 1.0f);
    CHECK(df_adam8_encode_s(1e-30f) != 0);
    CHECK(df_adam8_encode_m(1e-30f) == 0);
    /* Relative precision: m within 1/16, sqrt(v) within 1/32, over the range. */
    int precise = 1;
    for (float x = 1.0f; x > 1e-4f; x *= 0.93f) {
        precise &= fabsf(df_adam8_decode_m(df_adam8_encode_m(-x)) + x) <= x / 16 * 1.0001f;
        precise &= fabsf(df_adam8_decode_s(df_adam8_encode_s(x)) - x) <= x / 32 * 1.0001f;
    }
    CHECK(precise);
    enum { N = 600 };
    float m[N], v[N], m2[N], v2[N], ms[3], ss[3], ms2[3], ss2[3];
    uint8_t mq[N], sq[N], mq2[N], sq2[N];
    df_philox_fill_normal(m, N, 3, 1);
    df_philox_fill_normal(v, N, 3, 2);
    for (int i = 0; i < N; i++)
        v[i] = v[i] * v[i] * (i % 7 == 0 ? 1e-6f : 1.0f);
    CHECK_EQ(df_adam8_blocks(N), 3);
    df_adam8_quantize(m, v, N, mq, sq, ms, ss);
    df_adam8_dequantize(mq, sq, ms, ss, N, m2, v2);
    df_adam8_quantize(m2, v2, N, mq2, sq2, ms2, ss2);
    CHECK(memcmp(mq, mq2, N) == 0 && memcmp(sq, sq2, N) == 0);
    CHECK(memcmp(ms, ms2, sizeof ms) == 0 && memcmp(ss, ss2, sizeof ss) == 0);
}

/* Row-wise 8-bit weights: each value within half a step of its row's scale,
 * the row's largest magnitude exact, -128 never used, a zero row all zero. */
static void test_quant8(void)
{
    enum { ROWS = 5, COLS = 33 };
    float w[ROWS * COLS], back[ROWS * COLS], scale[ROWS];
    int8_t q[ROWS * COLS];
    df_philox_fill_normal(w, ROWS * COLS, 7, 1);
    for (int c = 0; c < COLS; c++) {
        w[1 * COLS + c] = 0;      /* a zero row */
        w[2 * COLS + c] *= 1e-4f; /* a row of small weights keeps its precision */
    }
    w[3 * COLS + 4] = -9.0f; /* the row's extreme is negative */
    df_quant8_rows(w, ROWS, COLS, COLS, q, scale);
    df_dequant8_rows(q, scale, ROWS, COLS, COLS, back);
    CHECK_EQ(scale[1], 0.0f);
    CHECK(scale[3] == 9.0f / 127.0f);
    CHECK_EQ(q[3 * COLS + 4], -127);
    int worst_ok = 1, no_min = 1;
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
            worst_ok &= fabsf(back[r * COLS + c] - w[r * COLS + c]) <= 0.5001f * scale[r];
            no_min &= q[r * COLS + c] != -128;
        }
    CHECK(worst_ok);
    CHECK(no_min);
    /* In blocks of 8 along the rows (5 per row, the last of one value):
     * every block's extreme is exact, and the error stays within half its
     * own block's step. */
    float bscale[ROWS * 5];
    CHECK_EQ(df_quant8_blocks(COLS, 8), 5);
    CHECK_EQ(df_quant8_blocks(COLS, 64), 1);
    CHECK_EQ(df_quant8_blocks(COLS, 0), 1); /* 0: a scale per row, no division by zero */
    df_quant8_rows(w, ROWS, COLS, 8, q, bscale);
    df_dequant8_rows(q, bscale, ROWS, COLS, 8, back);
    CHECK(bscale[3 * 5 + 0] == 9.0f / 127.0f);
    CHECK(bscale[0 * 5 + 4] == fabsf(w[32]) / 127.0f);
    int block_ok = 1;
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++)
            block_ok &= fabsf(back[r * COLS + c] - w[r * COLS + c]) <= 0.5001f * bscale[r * 5 + c / 8];
    CHECK(block_ok);
}

static void test_philox_known_answers(void)
{
    /* Known-answer vectors of Philox4x32-10 from the Random123 distribution. */
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        df_philox4x32(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++)
            CHECK_EQ(out[j], kat[i].out[j]);
    }
}

static void test_philox_streams(void)
{
    /* Element i is addressable on its own and streams differ. */
    float a[64], b[64];
    df_philox_fill_uniform(a, 64, 42, 7, -1.0f, 1.0f);
    for (uint64_t i = 0; i < 64; i++)
        CHECK(a[i] == -1.0f + 2.0f * df_philox_uniform(df_philox_u32(42, 7, i)));
    df_philox_fill_uniform(b, 64, 42, 8, -1.0f, 1.0f);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += a[i] == b[i];
    CHECK(same < 4);
    /* Normal fill: mean ~0, variance ~1 over many samples. */
    enum { N = 1 << 16 };
    float *n = malloc(N * sizeof *n);
    df_philox_fill_normal(n, N, 1, 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++)
        s += n[i], s2 += (double)n[i] * n[i];
    double mean = s / N, var = s2 / N - mean * mean;
    /* 5 standard errors: sd(mean) = 1/256, sd(var) ~ sqrt(2/N) = 0.0055. */
    CHECK(fabs(mean) < 5.0 / 256);
    CHECK(fabs(var - 1.0) < 5 * 0.0056);
    free(n);
    /* A fill large enough to be split over threads gives, at every index,
     * what a small fill or the formula gives: the split changes nothing. */
    enum { BIG = (1 << 21) + 3 };
    float *big = malloc(BIG * sizeof *big), small[1000];
    df_philox_fill_normal(big, BIG, 9, 4);
    df_philox_fill_normal(small, 1000, 9, 4);
    int agree = 1;
    for (int i = 0; i < 1000; i++)
        agree &= big[i] == small[i];
    for (size_t j = (BIG - 1) / 2 - 5000; j < (BIG + 1) / 2; j += 997) { /* pairs spread over the later spans */
        double u1 = 1.0 - df_philox_uniform(df_philox_u32(9, 4, 2 * j));
        double u2 = df_philox_uniform(df_philox_u32(9, 4, 2 * j + 1));
        agree &= big[2 * j] == (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
    for (size_t j = 1 << 17; j < (size_t)BIG / 2; j += 65537) {
        double u1 = 1.0 - df_philox_uniform(df_philox_u32(9, 4, 2 * j));
        double u2 = df_philox_uniform(df_philox_u32(9, 4, 2 * j + 1));
        agree &= big[2 * j + 1] == (float)(sqrt(-2.0 * log(u1)) * sin(2.0 * M_PI * u2));
    }
    CHECK(agree);
    free(big);
}

static void test_aspect_buckets(void)
{
    /* SDXL's published buckets at 1024 in steps of 64. */
    static const struct {
        uint32_t w, h, bw, bh;
    } cases[] = {{1000, 1000, 1024, 1024}, {3000, 4000, 896, 1152}, {4000, 3000, 1152, 896},
                 {1920, 1080, 1344, 768},  {1080, 1920, 768, 1344}, {6000, 600, 2048, 512}, {600, 6000, 512, 2048}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        df_bucket b = df_aspect_bucket(1024, 64, cases[i].w, cases[i].h);
        if (b.width != cases[i].bw || b.height != cases[i].bh)
            fprintf(stderr, "  %ux%u -> %ux%u, expected %ux%u\n", cases[i].w, cases[i].h, b.width, b.height,
                    cases[i].bw, cases[i].bh);
        CHECK(b.width == cases[i].bw && b.height == cases[i].bh);
    }
    /* Every answer: multiples of the step, within the area, at most 4:1. */
    for (uint32_t w = 100; w < 5000; w += 377)
        for (uint32_t h = 100; h < 5000; h += 411) {
            df_bucket b = df_aspect_bucket(512, 64, w, h);
            CHECK(b.width % 64 == 0 && b.height % 64 == 0 && (uint64_t)b.width * b.height <= 512u * 512u &&
                  b.width <= 4 * b.height && b.height <= 4 * b.width);
        }
    df_bucket none = df_aspect_bucket(512, 64, 0, 10); /* no photo size: the square */
    CHECK(none.width == 512 && none.height == 512);
}

static void test_gemm_desc_checks(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 4, 5, 6, 2);
    CHECK_OK(df_gemm_desc_check(&d, &err), &err);
    CHECK_EQ(df_gemm_extent_a(&d), 2 * 4 * 6);
    CHECK_EQ(df_gemm_extent_c(&d), 2 * 4 * 5);
    CHECK(df_gemm_flops(&d) == 2.0 * 4 * 5 * 6 * 2);

    df_gemm_desc bad = d;
    bad.k = 0;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "K=0");
    bad = d, bad.lda = 5;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "lda=5");
    bad = d, bad.ldb = 4;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "ldb=4");
    bad = d, bad.ldc = 4;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "ldc=4");
    bad = d, bad.stride_c = 19;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "overlap");
    bad = d, bad.type_b = DF_BF16;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_UNSUPPORTED, "B has type bf16");
    bad = d, bad.alpha = NAN;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_INVALID, "finite");
    bad = d, bad.stride_a = 1ull << 40;
    CHECK_FAILS(df_gemm_desc_check(&bad, &err), &err, DF_E_RANGE, "2^40");
    CHECK_FAILS(df_gemm_desc_check(NULL, &err), &err, DF_E_INVALID, "NULL");
    /* Transposed leading dimensions follow the stored shape. */
    df_gemm_desc t = df_gemm_desc_packed(1, 1, 4, 5, 6, 1);
    CHECK_EQ(t.lda, 4);
    CHECK_EQ(t.ldb, 6);
    CHECK_OK(df_gemm_desc_check(&t, &err), &err);
}

static void test_gemm_reference_small(void)
{
    /* [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50], then alpha = 2, beta = -1 on C = 1. */
    df_error_t err;
    df_error_clear(&err);
    float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, c0[] = {1, 1, 1, 1};
    double ref[4], bound[4];
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 2, 2, 2, 1);
    d.alpha = 2.0f, d.beta = -1.0f;
    CHECK_OK(df_gemm_reference(&d, a, b, c0, ref, bound, &err), &err);
    CHECK(ref[0] == 37 && ref[1] == 43 && ref[2] == 85 && ref[3] == 99);
    /* A^T with A stored as [1 3; 2 4] gives the same product. */
    float at[] = {1, 3, 2, 4};
    d.trans_a = 1;
    CHECK_OK(df_gemm_reference(&d, at, b, c0, ref, bound, &err), &err);
    CHECK(ref[0] == 37 && ref[3] == 99);
    /* Bound grows with K and covers the magnitudes, not the result. */
    CHECK(bound[0] > 0 && bound[0] < 1e-4);
}

static void test_gemm_compare_catches_errors(void)
{
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 1, 3, 1, 1);
    double ref[3] = {1.0, 2.0, 3.0}, bound[3] = {1e-6, 1e-6, 1e-6};
    float exact[3] = {1.0f, 2.0f, 3.0f};
    df_gemm_check_result r;
    df_gemm_compare(&d, exact, ref, bound, &r);
    CHECK_EQ(r.failures, 0);
    CHECK_EQ(r.checked, 3);
    float off[3] = {1.0f, 2.00001f, 3.0f}; /* 1e-5 > bound */
    df_gemm_compare(&d, off, ref, bound, &r);
    CHECK_EQ(r.failures, 1);
    CHECK_EQ(r.worst_j, 1);
    CHECK(r.worst_ratio > 5);
    float nan[3] = {1.0f, NAN, 3.0f};
    df_gemm_compare(&d, nan, ref, bound, &r);
    CHECK_EQ(r.failures, 1);
    CHECK(isinf(r.worst_ratio));
}

static void test_gemm_f16_bound(void)
{
    /* With C in f16, the bound must admit the f16 rounding of the result:
     * 1/3 stored as f16 is off by ~1e-4, far above the f32 bound. */
    df_error_t err;
    df_error_clear(&err);
    float a[] = {1.0f / 3.0f}, b[] = {1.0f};
    double ref[1], bound[1];
    df_gemm_desc d = df_gemm_desc_packed(0, 0, 1, 1, 1, 1);
    CHECK_OK(df_gemm_reference(&d, a, b, NULL, ref, bound, &err), &err);
    float stored = df_half_to_float(df_float_to_half((float)ref[0]));
    CHECK(fabs(stored - ref[0]) > bound[0]);
    d.type_c = DF_F16;
    CHECK_OK(df_gemm_reference(&d, a, b, NULL, ref, bound, &err), &err);
    CHECK(fabs(stored - ref[0]) <= bound[0]);
    /* ... but not two ulps. */
    CHECK(fabs(stored + 2 * 0x1p-12 - ref[0]) > bound[0]);
}

/*  PNG out and back in through libpng's reader: pixels and the text chunk. */
static void test_png_round_trip(void)
{
    uint8_t rgb[2 * 3 * 3];
    for (int i = 0; i < 18; i++)
        rgb[i] = (uint8_t)(i * 14);
    df_png_text t = {"parameters", "a photo of TOK person\nSteps: 30, Seed: 1"};
    uint8_t *png = NULL;
    size_t len = 0;
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(df_png_encode(rgb, 3, 2, &t, 1, &png, &len, &err), &err);
    CHECK(len > 8 && memcmp(png, "\x89PNG", 4) == 0);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_memory(&img, png, len));
    img.format = PNG_FORMAT_RGB;
    uint8_t back[18] = {0};
    CHECK(png_image_finish_read(&img, NULL, back, 0, NULL));
    CHECK(img.width == 3 && img.height == 2 && memcmp(back, rgb, 18) == 0);
    /* The text chunk, found by scanning: tEXt, key, NUL, value. */
    int found = 0;
    for (size_t i = 0; i + 20 < len && !found; i++)
        found = memcmp(png + i, "tEXtparameters", 14) == 0 && strncmp((char *)png + i + 15, t.value, strlen(t.value)) == 0;
    CHECK(found);
    free(png);
    CHECK_FAILS(df_png_encode(rgb, 0, 2, NULL, 0, &png, &len, &err), &err, DF_E_INVALID, "0x2");
    char path[] = "/nonexistent-dir/x.png";
    CHECK_FAILS(df_png_write(path, rgb, 3, 2, NULL, 0, &err), &err, DF_E_IO, "/nonexistent-dir/x.png");
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/*  The identity stays put while nothing changes, and moves when a file is
 *  rewritten (even to the same size), touched, added or renamed. */
static void test_file_identity(void)
{
    char dir[] = "/tmp/df-ident-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sub[64], a[96], b[96], moved[96];
    snprintf(sub, sizeof sub, "%s/unet", dir);
    snprintf(a, sizeof a, "%s/unet/w.safetensors", dir);
    snprintf(b, sizeof b, "%s/config.json", dir);
    snprintf(moved, sizeof moved, "%s/unet/w2.safetensors", dir);
    mkdir(sub, 0755);
    write_text(a, "weights one");
    write_text(b, "{}");
    df_error_t err;
    df_error_clear(&err);
    char h0[DF_SHA256_HEX], h1[DF_SHA256_HEX], f0[DF_SHA256_HEX], f1[DF_SHA256_HEX];
    CHECK_OK(df_file_identity(dir, h0, &err), &err);
    CHECK_OK(df_file_identity(dir, h1, &err), &err);
    CHECK(strcmp(h0, h1) == 0);
    CHECK_OK(df_file_identity(a, f0, &err), &err);
    CHECK(strcmp(f0, h0) != 0);
    /* Same size, new contents and a new time stamp. */
    struct timeval later[2] = {{2000000000, 0}, {2000000000, 0}};
    write_text(a, "weights two");
    utimes(a, later);
    CHECK_OK(df_file_identity(a, f1, &err), &err);
    CHECK(strcmp(f0, f1) != 0);
    CHECK_OK(df_file_identity(dir, h1, &err), &err);
    CHECK(strcmp(h0, h1) != 0);
    strcpy(h0, h1);
    CHECK(rename(a, moved) == 0);
    CHECK_OK(df_file_identity(dir, h1, &err), &err);
    CHECK(strcmp(h0, h1) != 0);
    char missing[96];
    snprintf(missing, sizeof missing, "%s/nothing", dir);
    CHECK_FAILS(df_file_identity(missing, h1, &err), &err, DF_E_NOT_FOUND, "nothing");
    unlink(moved), unlink(b), rmdir(sub), rmdir(dir);
}

/*  A JPEG back to RGB, and its EXIF block (NULL when none). */
static uint8_t *decode_jpeg(const uint8_t *data, size_t len, uint32_t *w, uint32_t *h, uint8_t **exif, size_t *exif_len)
{
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr e;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, data, (unsigned long)len);
    jpeg_save_markers(&d, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&d, TRUE);
    *exif = NULL, *exif_len = 0;
    for (jpeg_saved_marker_ptr m = d.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            *exif_len = m->data_length - 6;
            *exif = malloc(*exif_len);
            memcpy(*exif, m->data + 6, *exif_len);
        }
    jpeg_start_decompress(&d);
    *w = d.output_width, *h = d.output_height;
    uint8_t *rgb = malloc((size_t)*w * *h * 3);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = rgb + (size_t)d.output_scanline * *w * 3;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return rgb;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++)
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? 1e9 : 10 * log10(255.0 * 255.0 * (double)n / se);
}

/*  Every format decodes back to the picture (lossless exactly, lossy above
 *  35 dB PSNR on a smooth image) with the parameters readable from where
 *  other tools look for them; bad requests are refused by name. */
static void test_image_formats(void)
{
    const uint32_t w = 96, h = 64;
    uint8_t *rgb = malloc(w * h * 3);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *p = rgb + (y * w + x) * 3;
            p[0] = (uint8_t)(x * 2), p[1] = (uint8_t)(y * 3), p[2] = (uint8_t)(128 + 60 * sin(x * 0.1 + y * 0.05));
        }
    const char *params = "a photo of TOK person, caf\xc3\xa9 \xf0\x9f\x93\xb7\nSteps: 30, Sampler: Euler, Seed: 7";
    df_error_t err;
    df_error_clear(&err);
    uint8_t *out = NULL;
    size_t len = 0;
    /* JPEG */
    CHECK_OK(df_image_encode(DF_IMAGE_JPEG, rgb, w, h, 95, params, &out, &len, &err), &err);
    CHECK(len > 100 && out[0] == 0xff && out[1] == 0xd8);
    if (out) {
        uint32_t dw, dh;
        uint8_t *exif;
        size_t el;
        uint8_t *back = decode_jpeg(out, len, &dw, &dh, &exif, &el);
        CHECK(dw == w && dh == h);
        double q = psnr(rgb, back, w * h * 3);
        fprintf(stderr, "  jpeg q95: %zu bytes, PSNR %.1f dB\n", len, q);
        CHECK(q > 35);
        char *text = NULL;
        CHECK(exif != NULL);
        if (exif)
            CHECK_OK(df_exif_read_user_comment(exif, el, &text, &err), &err);
        CHECK(text && strcmp(text, params) == 0);
        free(text), free(exif), free(back), free(out);
    }
    /* WebP, lossy and lossless */
    for (int quality = 90; quality <= 100; quality += 10) {
        out = NULL;
        CHECK_OK(df_image_encode(DF_IMAGE_WEBP, rgb, w, h, quality, params, &out, &len, &err), &err);
        CHECK(len > 12 && memcmp(out, "RIFF", 4) == 0 && memcmp(out + 8, "WEBP", 4) == 0);
        if (!out)
            continue;
        int dw = 0, dh = 0;
        uint8_t *back = WebPDecodeRGB(out, len, &dw, &dh);
        CHECK(back && dw == (int)w && dh == (int)h);
        if (back) {
            double q = psnr(rgb, back, w * h * 3);
            fprintf(stderr, "  webp q%d: %zu bytes, %s %.1f dB\n", quality, len, q > 1e8 ? "lossless," : "PSNR",
                    q > 1e8 ? 0.0 : q);
            CHECK(quality == 100 ? memcmp(rgb, back, w * h * 3) == 0 : q > 35);
            WebPFree(back);
        }
        WebPData data = {out, len};
        WebPDemuxer *dm = WebPDemux(&data);
        WebPChunkIterator it;
        char *text = NULL;
        CHECK(dm && WebPDemuxGetChunk(dm, "EXIF", 1, &it));
        if (dm && WebPDemuxGetChunk(dm, "EXIF", 1, &it)) {
            CHECK_OK(df_exif_read_user_comment(it.chunk.bytes, it.chunk.size, &text, &err), &err);
            WebPDemuxReleaseChunkIterator(&it);
        }
        CHECK(text && strcmp(text, params) == 0);
        free(text);
        WebPDemuxDelete(dm);
        free(out);
    }
    /* PNG keeps its text chunk. */
    out = NULL;
    CHECK_OK(df_image_encode(DF_IMAGE_PNG, rgb, w, h, 0, params, &out, &len, &err), &err);
    CHECK(len > 8 && memcmp(out, "\x89PNG", 4) == 0);
    free(out);
    /* Names and errors. */
    df_image_format f;
    CHECK_OK(df_image_format_parse("jpg", &f, &err), &err);
    CHECK(f == DF_IMAGE_JPEG && strcmp(df_image_format_ext(f), "jpg") == 0);
    CHECK_FAILS(df_image_format_parse("gif", &f, &err), &err, DF_E_INVALID, "gif");
    CHECK_FAILS(df_image_encode(DF_IMAGE_JPEG, rgb, w, h, 101, NULL, &out, &len, &err), &err, DF_E_INVALID,
                "quality 101");
    CHECK_FAILS(df_image_encode(DF_IMAGE_WEBP, rgb, 0, h, 90, NULL, &out, &len, &err), &err, DF_E_RANGE, "0x64");
    char *huge = malloc(70000);
    memset(huge, 'x', 69999);
    huge[69999] = '\0';
    CHECK_FAILS(df_image_encode(DF_IMAGE_JPEG, rgb, w, h, 90, huge, &out, &len, &err), &err, DF_E_RANGE, "64 KiB");
    free(huge);
    uint8_t junk[16] = "II*\0\x08\0\0\0\x05\0";
    char *text = NULL;
    CHECK_FAILS(df_exif_read_user_comment(junk, sizeof junk, &text, &err), &err, DF_E_FORMAT, "UserComment");
    CHECK_FAILS(df_exif_read_user_comment(junk, 3, &text, &err), &err, DF_E_FORMAT, "TIFF");
    free(rgb);
}

/*  LoRA deltas: every encoding round-trips within its precision, int8's
 *  error feedback loses nothing over rounds, sizes are reported against raw
 *  f32, and damaged input is refused. */
static void test_delta_codec(void)
{
    enum { R = 64, K = 320 };
    static float x[R * K], back[R * K], resid[R * K], sum[R * K], scales[R];
    df_philox_fill_normal(x, R * K, 3, 0);
    for (int i = 0; i < R * K; i++)
        x[i] *= 1e-4f * (1 + (i / K) % 4); /* Adam-sized steps, rows of different scale */
    df_error_t err;
    df_error_clear(&err);
    const double raw = 4.0 * R * K;
    const double bound[4] = {0, 1e-3, 8e-3, 0}; /* of each row's largest value */
    for (int e = 0; e < DF_DELTA_ENCODING_COUNT; e++) {
        uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(df_delta_encode((df_delta_encoding)e, x, R, K, NULL, scales, &data, &len, &err), &err);
        CHECK_OK(df_delta_decode((df_delta_encoding)e, data, len, scales, R, K, back, &err), &err);
        double worst = 0;
        for (int r = 0; r < R; r++) {
            double peak = 0;
            for (int c = 0; c < K; c++)
                peak = fmax(peak, fabs(x[r * K + c]));
            for (int c = 0; c < K; c++) {
                double d = fabs(back[r * K + c] - x[r * K + c]);
                /* int8: in half steps of the row's scale; the floats: of the row's peak. */
                worst = fmax(worst, e == DF_DELTA_INT8 ? d / (scales[r] * 0.5) : d / peak);
            }
        }
        fprintf(stderr, "  delta %-5s %6zu bytes, %.2fx smaller than f32, worst error %.3g %s\n",
                df_delta_encoding_name((df_delta_encoding)e), len, raw / (double)len, worst,
                e == DF_DELTA_INT8 ? "half-steps" : "of the row's peak");
            CHECK(e == DF_DELTA_INT8 ? worst <= 1.0 + 1e-3 : worst <= bound[e]);
        CHECK(e == DF_DELTA_F32 || len < raw / 1.8);
        free(data);
    }
    /* Error feedback: ten rounds of the same delta sum to ten deltas, short
     * by at most the last residual. */
    memset(resid, 0, sizeof resid);
    memset(sum, 0, sizeof sum);
    for (int round = 0; round < 10; round++) {
        uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(df_delta_encode(DF_DELTA_INT8, x, R, K, resid, scales, &data, &len, &err), &err);
        CHECK_OK(df_delta_decode(DF_DELTA_INT8, data, len, scales, R, K, back, &err), &err);
        for (int i = 0; i < R * K; i++)
            sum[i] += back[i];
        free(data);
    }
    double drift = 0;
    for (int i = 0; i < R * K; i++)
        drift = fmax(drift, fabs(sum[i] + resid[i] - 10.0 * x[i]) / (10.0 * fabs(x[i]) + 1e-9));
    CHECK(drift < 1e-4);
    /* Damage: a truncated frame, a size that does not match, a bad scale. */
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(df_delta_encode(DF_DELTA_INT8, x, R, K, NULL, scales, &data, &len, &err), &err);
    CHECK_FAILS(df_delta_decode(DF_DELTA_INT8, data, len / 2, scales, R, K, back, &err), &err, DF_E_FORMAT, "");
    CHECK_FAILS(df_delta_decode(DF_DELTA_INT8, data, len, scales, R, K - 1, back, &err), &err, DF_E_FORMAT, "");
    scales[3] = NAN;
    CHECK_FAILS(df_delta_decode(DF_DELTA_INT8, data, len, scales, R, K, back, &err), &err, DF_E_FORMAT, "row 3");
    CHECK_FAILS(df_delta_decode(DF_DELTA_INT8, data, len, NULL, R, K, back, &err), &err, DF_E_FORMAT, "row scales");
    CHECK_FAILS(df_delta_decode((df_delta_encoding)9, data, len, scales, R, K, back, &err), &err, DF_E_FORMAT,
                "encoding");
    CHECK(df_delta_encoding_parse("bf16") == DF_DELTA_BF16 && df_delta_encoding_parse("fp8") == -1);
    free(data);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/*  Decoding what our encoders wrote, a gray image with alpha, and every
 *  way a file can be bad; fitting crops the centre and resamples. */
static void test_image_decode(void)
{
    char dir[] = "/tmp/df-decode-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const uint32_t w = 40, h = 30;
    uint8_t *rgb = malloc(w * h * 3);
    for (uint32_t i = 0; i < w * h; i++)
        rgb[i * 3] = (uint8_t)(i % w * 6), rgb[i * 3 + 1] = (uint8_t)(i / w * 8), rgb[i * 3 + 2] = 100;
    df_error_t err;
    df_error_clear(&err);
    char path[128];
    static const df_image_format formats[3] = {DF_IMAGE_PNG, DF_IMAGE_JPEG, DF_IMAGE_WEBP};
    for (int f = 0; f < 3; f++) {
        uint8_t *data;
        size_t len;
        /* WebP at quality 100 is lossless. */
        CHECK_OK(df_image_encode(formats[f], rgb, w, h, f == 2 ? 100 : 95, "x", &data, &len, &err), &err);
        snprintf(path, sizeof path, "%s/img%d", dir, f); /* no extension: the bytes decide */
        write_bytes(path, data, len);
        df_image im;
        CHECK_OK(df_image_load(path, &im, &err), &err);
        CHECK(im.width == w && im.height == h);
        int worst = 0;
        for (uint32_t i = 0; im.rgb && i < w * h * 3; i++)
            worst = abs((int)im.rgb[i] - rgb[i]) > worst ? abs((int)im.rgb[i] - rgb[i]) : worst;
        CHECK(f == 1 ? worst < 12 : worst == 0);
        df_image_free(&im);
        if (f == 2) {
            snprintf(path, sizeof path, "%s/cut.webp", dir);
            write_bytes(path, data, len / 2);
            CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_FORMAT, "WebP");
        } else if (f) { /* cut in half: refused, not padded with gray */
            snprintf(path, sizeof path, "%s/cut.jpg", dir);
            write_bytes(path, data, len / 2);
            CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_FORMAT, "corrupt JPEG");
        } else {
            snprintf(path, sizeof path, "%s/cut.png", dir);
            write_bytes(path, data, len - 20);
            CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_FORMAT, "PNG");
        }
        df_image_free(&im);
        free(data);
    }
    /* EXIF orientation: a 32x16 JPEG, red left half and blue right half,
     * tagged with each orientation in an APP1 segment spliced after SOI. */
    {
        const uint32_t ow = 32, oh = 16;
        uint8_t *src = malloc(ow * oh * 3);
        for (uint32_t i = 0; i < ow * oh; i++) {
            int left = i % ow < ow / 2, top = i / ow < oh / 2;
            src[i * 3] = left ? 230 : 20, src[i * 3 + 1] = top ? 20 : 200, src[i * 3 + 2] = left ? 20 : 230;
        }
        uint8_t *jpg;
        size_t jlen;
        CHECK_OK(df_image_encode(DF_IMAGE_JPEG, src, ow, oh, 100, NULL, &jpg, &jlen, &err), &err);
        /* Which quadrant (left/right, top/bottom of the stored image) shows at
         * the displayed image's top-left corner, per orientation. */
        static const struct {
            int o, right, bottom;
        } corner[] = {{1, 0, 0}, {2, 1, 0}, {3, 1, 1}, {4, 0, 1}, {5, 0, 0}, {6, 0, 1}, {7, 1, 1}, {8, 1, 0}};
        for (size_t c = 0; c < sizeof corner / sizeof corner[0]; c++) {
            /* FFE1, length, "Exif\0\0", big-endian TIFF with one IFD0 entry. */
            uint8_t app1[] = {0xff, 0xe1, 0, 34, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8,
                              0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)corner[c].o, 0, 0, 0, 0, 0, 0};
            uint8_t *spliced = malloc(jlen + sizeof app1);
            memcpy(spliced, jpg, 2);
            memcpy(spliced + 2, app1, sizeof app1);
            memcpy(spliced + 2 + sizeof app1, jpg + 2, jlen - 2);
            snprintf(path, sizeof path, "%s/oriented%d.jpg", dir, corner[c].o);
            write_bytes(path, spliced, jlen + sizeof app1);
            free(spliced);
            df_image im;
            CHECK_OK(df_image_load(path, &im, &err), &err);
            int swapped = corner[c].o >= 5;
            CHECK(im.width == (swapped ? oh : ow) && im.height == (swapped ? ow : oh));
            const uint8_t *p = im.rgb ? im.rgb + (1 * im.width + 1) * 3 : NULL; /* pixel (1, 1) */
            int red = p && p[0] > 128, green = p && p[1] > 128;
            if (!(red == !corner[c].right && green == corner[c].bottom))
                fprintf(stderr, "  orientation %d: top-left pixel %d,%d,%d\n", corner[c].o, p ? p[0] : -1,
                        p ? p[1] : -1, p ? p[2] : -1);
            CHECK(red == !corner[c].right && green == corner[c].bottom);
            df_image_free(&im);
        }
        free(jpg);
        free(src);
    }
    /* Gray with alpha: transparent pixels come out white. */
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = 2, pi.height = 1, pi.format = PNG_FORMAT_GA;
    uint8_t ga[4] = {0, 255, 0, 0}; /* black opaque, black transparent */
    snprintf(path, sizeof path, "%s/ga.png", dir);
    CHECK(png_image_write_to_file(&pi, path, 0, ga, 0, NULL));
    df_image im;
    CHECK_OK(df_image_load(path, &im, &err), &err);
    CHECK(im.rgb && im.rgb[0] == 0 && im.rgb[3] == 255 && im.rgb[5] == 255);
    df_image_free(&im);
    /* Bad files, each by name and reason. */
    snprintf(path, sizeof path, "%s/empty.png", dir);
    write_bytes(path, "", 0);
    CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_FORMAT, "empty file");
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_bytes(path, "hello", 5);
    CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_FORMAT, "not a PNG, JPEG, WebP or HEIF");
    snprintf(path, sizeof path, "%s/missing.png", dir);
    CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_NOT_FOUND, "missing.png");
    /* A PNG header claiming 20000 x 20000 pixels: refused before decoding. */
    pi.width = 20000, pi.height = 20000, pi.format = PNG_FORMAT_GRAY;
    uint8_t *big = calloc(1, 20000u * 20000u);
    snprintf(path, sizeof path, "%s/bomb.png", dir);
    CHECK(big && png_image_write_to_file(&pi, path, 0, big, 0, NULL));
    free(big);
    CHECK_FAILS(df_image_load(path, &im, &err), &err, DF_E_RANGE, "over the");
    /* Fit: a 40x30 image to 10x10 takes the centred 30x30, averaged 3x3. */
    df_image src = {w, h, rgb}, out;
    CHECK_OK(df_image_fit(&src, 10, 10, &out, &err), &err);
    double want = 0;
    for (int yy = 0; yy < 3; yy++)
        for (int xx = 5; xx < 8; xx++)
            want += rgb[(yy * w + xx) * 3] / 9.0;
    CHECK(out.rgb && abs(out.rgb[0] - (int)lrint(want)) <= 1 && out.rgb[2] == 100);
    df_image_free(&out);
    CHECK_OK(df_image_fit(&src, 80, 60, &out, &err), &err); /* enlarging: bilinear, same aspect */
    CHECK(out.rgb && out.rgb[2] == 100 && out.width == 80);
    df_image_free(&out);
    CHECK_FAILS(df_image_fit(&src, 0, 10, &out, &err), &err, DF_E_INVALID, "0x10");
    free(rgb);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/*  The loss plot: a falling curve is drawn falling, axes in black; bad
 *  sizes refused; non-finite losses skipped; a PNG comes out. */
static void test_loss_plot(void)
{
    float losses[200];
    for (int i = 0; i < 200; i++)
        losses[i] = 1.0f / (1 + i * 0.05f) + 0.05f * (float)((i * 37) % 11) / 11.0f;
    losses[50] = NAN;
    const uint32_t w = 320, h = 200;
    uint8_t *rgb = malloc(w * h * 3);
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(df_loss_plot(losses, 200, w, h, rgb, &err), &err);
    /* The mean line's red: its first column higher in the picture than its last. */
    int first = -1, last = -1;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *a = rgb + ((size_t)y * w + 26) * 3, *b = rgb + ((size_t)y * w + (w - 14)) * 3;
        if (first < 0 && a[0] > 150 && a[1] < 80)
            first = (int)y;
        if (last < 0 && b[0] > 150 && b[1] < 80)
            last = (int)y;
    }
    CHECK(first >= 0 && last > first);
    const uint8_t *corner = rgb + ((size_t)(h - 24) * w + 24) * 3;
    CHECK(corner[0] == 0 && corner[1] == 0 && corner[2] == 0);
    CHECK_FAILS(df_loss_plot(losses, 200, 10, 10, rgb, &err), &err, DF_E_INVALID, "10x10");
    CHECK_OK(df_loss_plot(losses, 0, w, h, rgb, &err), &err); /* nothing to draw: the axes */
    char path[] = "/tmp/df-lossplot-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_OK(df_loss_plot_png(losses, 200, path, &err), &err);
    FILE *f = fopen(path, "rb");
    uint8_t sig[8] = {0};
    CHECK(f && fread(sig, 1, 8, f) == 8 && memcmp(sig, "\x89PNG", 4) == 0);
    if (f)
        fclose(f);
    unlink(path);
    free(rgb);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    df_log_set_level(DF_LOG_WARN);
    RUN(test_error_first_wins);
    RUN(test_error_truncation);
    RUN(test_status_and_log_names);
    RUN(test_half_exhaustive_roundtrip);
    RUN(test_half_rounding);
    RUN(test_bf16);
    RUN(test_dtype);
    RUN(test_quant8);
    RUN(test_adam8_codes);
    RUN(test_philox_known_answers);
    RUN(test_aspect_buckets);
    RUN(test_philox_streams);
    RUN(test_gemm_desc_checks);
    RUN(test_gemm_reference_small);
    RUN(test_gemm_compare_catches_errors);
    RUN(test_gemm_f16_bound);
    RUN(test_png_round_trip);
    RUN(test_file_identity);
    RUN(test_image_formats);
    RUN(test_delta_codec);
    RUN(test_image_decode);
    RUN(test_loss_plot);
    return test_summary();
}
