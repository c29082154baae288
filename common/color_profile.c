/*  color_profile.c - see color_profile.h. */
#include "color_profile.h"

#include <stdlib.h>
#include <string.h>

#include <lcms2.h>
#include <zlib.h>

int df_icc_to_srgb(df_image *img, const uint8_t *icc, size_t n)
{
    if (!img->rgb || !icc || n < 128 || n > (64u << 20))
        return 0;
    cmsHPROFILE in = cmsOpenProfileFromMem(icc, (cmsUInt32Number)n);
    if (!in)
        return 0;
    int done = 0;
    if (cmsGetColorSpace(in) == cmsSigRgbData) {
        cmsHPROFILE srgb = cmsCreate_sRGBProfile();
        cmsHTRANSFORM t = srgb ? cmsCreateTransform(in, TYPE_RGB_8, srgb, TYPE_RGB_8, INTENT_PERCEPTUAL, 0) : NULL;
        if (t) {
            for (uint32_t y = 0; y < img->height; y++) { /* in place, a row at a time */
                uint8_t *row = img->rgb + (size_t)y * img->width * 3;
                cmsDoTransform(t, row, row, img->width);
            }
            cmsDeleteTransform(t);
            done = 1;
        }
        if (srgb)
            cmsCloseProfile(srgb);
    }
    cmsCloseProfile(in);
    return done;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

int df_png_icc_profile(const uint8_t *png, size_t n, uint8_t **icc, size_t *len)
{
    *icc = NULL, *len = 0;
    /* Chunks after the 8-byte signature: length, type, data, CRC; iCCP comes before IDAT. */
    for (size_t at = 8; at + 12 <= n;) {
        const uint32_t clen = be32(png + at);
        const uint8_t *type = png + at + 4, *data = png + at + 8;
        if (clen > n - at - 12 || memcmp(type, "IDAT", 4) == 0)
            return 0;
        if (memcmp(type, "iCCP", 4) == 0) {
            /* A name of 1-79 bytes, its NUL, the method (0: zlib), the profile. */
            const uint8_t *nul = memchr(data, 0, clen < 81 ? clen : 81);
            if (!nul || (size_t)(nul - data) + 2 > clen || nul[1] != 0)
                return 0;
            const uint8_t *z = nul + 2;
            const size_t zlen = clen - (size_t)(z - data);
            uLongf out = 1u << 20;
            for (int tries = 0; tries < 6; tries++, out *= 2) { /* profiles are KBs; allow up to 32 MB */
                uint8_t *buf = malloc(out);
                if (!buf)
                    return 0;
                uLongf got = out;
                int zr = uncompress(buf, &got, z, (uLong)zlen);
                if (zr == Z_OK) {
                    *icc = buf, *len = got;
                    return 1;
                }
                free(buf);
                if (zr != Z_BUF_ERROR)
                    return 0;
            }
            return 0;
        }
        at += 12 + (size_t)clen;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int df_webp_icc_profile(const uint8_t *webp, size_t n, uint8_t **icc, size_t *len)
{
    *icc = NULL, *len = 0;
    /* RIFF, size, WEBP, then chunks: a four-letter id, a little-endian size, data padded to even. */
    for (size_t at = 12; at + 8 <= n;) {
        const uint32_t clen = le32(webp + at + 4);
        if (clen > n - at - 8)
            return 0;
        if (memcmp(webp + at, "ICCP", 4) == 0) {
            if (!(*icc = malloc(clen ? clen : 1)))
                return 0;
            memcpy(*icc, webp + at + 8, clen);
            *len = clen;
            return 1;
        }
        at += 8 + (size_t)clen + (clen & 1);
    }
    return 0;
}
