/*  lz4_frame.c - see lz4_frame.h. */
#include "lz4_frame.h"

#include <lz4frame.h>
#include <stdlib.h>

int df_lz4_compress(const void *src, size_t n, uint8_t **dst, size_t *dst_len, df_error_t *err)
{
    LZ4F_preferences_t prefs = {0};
    prefs.frameInfo.contentSize = n;
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    size_t cap = LZ4F_compressFrameBound(n, &prefs);
    uint8_t *out = malloc(cap);
    if (!out)
        return df_error_set(err, DF_E_NOMEM, "lz4: cannot allocate %zu bytes", cap);
    size_t r = LZ4F_compressFrame(out, cap, src, n, &prefs);
    if (LZ4F_isError(r)) {
        free(out);
        return df_error_set(err, DF_E_INVALID, "lz4: compression failed: %s", LZ4F_getErrorName(r));
    }
    *dst = out;
    *dst_len = r;
    return DF_OK;
}

int df_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t expect, df_error_t *err)
{
    LZ4F_dctx *ctx = NULL;
    size_t r = LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION);
    if (LZ4F_isError(r))
        return df_error_set(err, DF_E_NOMEM, "lz4: %s", LZ4F_getErrorName(r));
    size_t in_used = 0, out_used = 0;
    int rc = DF_OK;
    for (;;) {
        size_t out_left = expect - out_used;
        /* One spare byte of output room detects a frame that decodes to more
         * than expected without ever writing past dst. */
        uint8_t spare;
        uint8_t *out = out_left ? dst + out_used : &spare;
        size_t produced = out_left ? out_left : 1; /* in: room; out: bytes written */
        size_t consumed = n - in_used;             /* in: available; out: bytes read */
        r = LZ4F_decompress(ctx, out, &produced, src + in_used, &consumed, NULL);
        if (LZ4F_isError(r)) {
            rc = df_error_set(err, DF_E_FORMAT, "lz4: malformed frame: %s", LZ4F_getErrorName(r));
            break;
        }
        if (!out_left && produced) {
            rc = df_error_set(err, DF_E_FORMAT, "lz4: frame decodes to more than the %zu bytes announced", expect);
            break;
        }
        out_used += out_left ? produced : 0;
        in_used += consumed;
        if (r == 0) { /* frame complete */
            if (in_used != n)
                rc = df_error_set(err, DF_E_FORMAT, "lz4: %zu bytes of garbage after the frame", n - in_used);
            else if (out_used != expect)
                rc = df_error_set(err, DF_E_FORMAT, "lz4: frame decodes to %zu bytes, %zu announced", out_used, expect);
            break;
        }
        if (consumed == 0 && produced == 0) { /* no progress: the input ended mid-frame */
            rc = df_error_set(err, DF_E_FORMAT, "lz4: frame truncated after %zu bytes of output", out_used);
            break;
        }
    }
    LZ4F_freeDecompressionContext(ctx);
    return rc;
}
