/*  delta_codec.c - see delta_codec.h. */
#include "delta_codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "lz4_frame.h"

static const char *const k_names[DF_DELTA_ENCODING_COUNT] = {"f32", "f16", "bf16", "int8"};

const char *df_delta_encoding_name(df_delta_encoding e)
{
    return (unsigned)e < DF_DELTA_ENCODING_COUNT ? k_names[e] : "?";
}

int df_delta_encoding_parse(const char *name)
{
    for (int i = 0; name && i < DF_DELTA_ENCODING_COUNT; i++)
        if (strcmp(name, k_names[i]) == 0)
            return i;
    return -1;
}

static size_t value_bytes(df_delta_encoding e) { return e == DF_DELTA_F32 ? 4 : e == DF_DELTA_INT8 ? 1 : 2; }

int df_delta_encode(df_delta_encoding e, const float *x, uint32_t rows, uint32_t cols, float *residual,
                    float *row_scales, uint8_t **data, size_t *len, df_error_t *err)
{
    *data = NULL, *len = 0;
    if ((unsigned)e >= DF_DELTA_ENCODING_COUNT)
        return df_error_set(err, DF_E_INVALID, "delta: unknown encoding %d", (int)e);
    const size_t n = (size_t)rows * cols, vb = value_bytes(e);
    if (rows && n / rows != cols)
        return df_error_set(err, DF_E_RANGE, "delta: %u x %u values", rows, cols);
    uint8_t *raw = malloc(n * vb + 1);
    if (!raw)
        return df_error_set(err, DF_E_NOMEM, "delta: out of memory");
    if (e == DF_DELTA_F32) {
        memcpy(raw, x, n * 4);
    } else if (e == DF_DELTA_INT8) {
        for (uint32_t r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * cols;
            float *rr = residual ? residual + (size_t)r * cols : NULL;
            float peak = 0;
            for (uint32_t c = 0; c < cols; c++)
                peak = fmaxf(peak, fabsf(xr[c] + (rr ? rr[c] : 0)));
            float scale = peak / 127.0f;
            row_scales[r] = scale;
            for (uint32_t c = 0; c < cols; c++) {
                float v = xr[c] + (rr ? rr[c] : 0);
                long q = scale > 0 ? lrintf(v / scale) : 0;
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                raw[(size_t)r * cols + c] = (uint8_t)(int8_t)q;
                if (rr)
                    rr[c] = v - (float)q * scale;
            }
        }
    } else {
        /* f16 has 5 exponent bits: a row is scaled by a power of two that
         * puts its largest value near the top of f16's range, so small
         * deltas do not flush to zero. Byte planes: low bytes of every
         * value, then high bytes. */
        for (uint32_t r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * cols;
            float scale = 1;
            if (e == DF_DELTA_F16) {
                float peak = 0;
                for (uint32_t c = 0; c < cols; c++)
                    peak = fmaxf(peak, fabsf(xr[c]));
                int ex = 0;
                if (peak > 0 && peak < INFINITY)
                    frexpf(peak, &ex);
                scale = ldexpf(1.0f, ex - 15);
                row_scales[r] = scale;
            }
            for (uint32_t c = 0; c < cols; c++) {
                size_t i = (size_t)r * cols + c;
                uint16_t h = e == DF_DELTA_F16 ? df_float_to_half(xr[c] / scale) : df_float_to_bf16(xr[c]);
                raw[i] = (uint8_t)h;
                raw[n + i] = (uint8_t)(h >> 8);
            }
        }
    }
    int rc = df_lz4_compress(raw, n * vb, data, len, err);
    free(raw);
    return rc;
}

int df_delta_decode(df_delta_encoding e, const uint8_t *data, size_t len, const float *row_scales, uint32_t rows,
                    uint32_t cols, float *out, df_error_t *err)
{
    if ((unsigned)e >= DF_DELTA_ENCODING_COUNT)
        return df_error_set(err, DF_E_FORMAT, "delta: unknown encoding %d", (int)e);
    const size_t n = (size_t)rows * cols, vb = value_bytes(e);
    if (rows && n / rows != cols)
        return df_error_set(err, DF_E_RANGE, "delta: %u x %u values", rows, cols);
    if ((e == DF_DELTA_INT8 || e == DF_DELTA_F16) && !row_scales)
        return df_error_set(err, DF_E_FORMAT, "delta: %s without row scales", k_names[e]);
    uint8_t *raw = malloc(n * vb + 1);
    if (!raw)
        return df_error_set(err, DF_E_NOMEM, "delta: out of memory");
    int rc = df_lz4_decompress(data, len, raw, n * vb, err);
    if (rc == DF_OK) {
        if (e == DF_DELTA_F32) {
            memcpy(out, raw, n * 4);
        } else if (e == DF_DELTA_INT8) {
            for (uint32_t r = 0; r < rows && rc == DF_OK; r++) {
                float s = row_scales[r];
                if (!(s >= 0 && s < INFINITY)) {
                    rc = df_error_set(err, DF_E_FORMAT, "delta: row %u has scale %g", r, s);
                    break;
                }
                for (uint32_t c = 0; c < cols; c++)
                    out[(size_t)r * cols + c] = (float)(int8_t)raw[(size_t)r * cols + c] * s;
            }
        } else {
            for (uint32_t r = 0; r < rows && rc == DF_OK; r++) {
                float scale = e == DF_DELTA_F16 ? row_scales[r] : 1;
                if (!(scale > 0 && scale < INFINITY)) {
                    rc = df_error_set(err, DF_E_FORMAT, "delta: row %u has scale %g", r, scale);
                    break;
                }
                for (uint32_t c = 0; c < cols; c++) {
                    size_t i = (size_t)r * cols + c;
                    uint16_t h = (uint16_t)(raw[i] | (uint16_t)raw[n + i] << 8);
                    out[i] = e == DF_DELTA_F16 ? df_half_to_float(h) * scale : df_bf16_to_float(h);
                }
            }
        }
    }
    free(raw);
    return rc;
}
