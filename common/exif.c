/*  exif.c - see exif.h. */
#include "exif.h"

#include <stdlib.h>
#include <string.h>

#define TAG_EXIF_IFD 0x8769
#define TAG_USER_COMMENT 0x9286
#define TAG_ORIENTATION 0x0112
#define TYPE_LONG 4
#define TYPE_UNDEFINED 7

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/*  UTF-8 to UTF-16BE; returns the bytes written, or -1 on malformed UTF-8. */
static long utf16be(const char *s, uint8_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        uint32_t c;
        int extra;
        if (*p < 0x80)
            c = *p, extra = 0;
        else if ((*p & 0xe0) == 0xc0)
            c = *p & 0x1f, extra = 1;
        else if ((*p & 0xf0) == 0xe0)
            c = *p & 0x0f, extra = 2;
        else if ((*p & 0xf8) == 0xf0)
            c = *p & 0x07, extra = 3;
        else
            return -1;
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return -1;
            c = (c << 6) | (*p & 0x3f);
        }
        if (c >= 0x10000) { /* a surrogate pair */
            c -= 0x10000;
            put16(out + n, 0xd800 | (c >> 10)), put16(out + n + 2, 0xdc00 | (c & 0x3ff));
            n += 4;
        } else {
            put16(out + n, c);
            n += 2;
        }
    }
    return n;
}

int df_exif_user_comment(const char *text, uint8_t **out, size_t *len, df_error_t *err)
{
    size_t tl = strlen(text);
    int ascii = 1;
    for (size_t i = 0; i < tl; i++)
        ascii &= (unsigned char)text[i] < 0x80;
    /* Header 8, IFD0 at 8 (2 + 12 + 4), Exif IFD at 26 (2 + 12 + 4), the
     * comment at 44: an 8-byte charset name, then the text. */
    size_t cap = 44 + 8 + (ascii ? tl : 4 * tl);
    if (cap > 0xffffffffu - 16)
        return df_error_set(err, DF_E_RANGE, "exif: comment of %zu bytes is too long", tl);
    uint8_t *b = calloc(1, cap);
    if (!b)
        return df_error_set(err, DF_E_NOMEM, "exif: out of memory");
    memcpy(b, "MM\0*", 4);
    put32(b + 4, 8);
    put16(b + 8, 1); /* IFD0: one entry, the Exif IFD's offset */
    put16(b + 10, TAG_EXIF_IFD), put16(b + 12, TYPE_LONG), put32(b + 14, 1), put32(b + 18, 26);
    put32(b + 22, 0);
    long body;
    if (ascii) {
        memcpy(b + 44, "ASCII\0\0\0", 8);
        memcpy(b + 52, text, tl);
        body = (long)tl;
    } else {
        memcpy(b + 44, "UNICODE\0", 8);
        body = utf16be(text, b + 52);
        if (body < 0) {
            free(b);
            return df_error_set(err, DF_E_FORMAT, "exif: the comment is not UTF-8");
        }
    }
    put16(b + 26, 1); /* Exif IFD: the UserComment */
    put16(b + 28, TAG_USER_COMMENT), put16(b + 30, TYPE_UNDEFINED), put32(b + 32, (uint32_t)(8 + body));
    put32(b + 36, 44);
    put32(b + 40, 0);
    *out = b;
    *len = 52 + (size_t)body;
    return DF_OK;
}

typedef struct {
    const uint8_t *p;
    size_t len;
    int big;
} tiff;

static unsigned get16(const tiff *t, size_t at)
{
    const uint8_t *p = t->p + at;
    return t->big ? (unsigned)(p[0] << 8 | p[1]) : (unsigned)(p[1] << 8 | p[0]);
}

static uint32_t get32(const tiff *t, size_t at)
{
    const uint8_t *p = t->p + at;
    return t->big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                  : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/*  The entry tag of the IFD at off: its value/offset field's position. */
static int find_entry(const tiff *t, size_t off, unsigned tag, uint32_t *count, size_t *field)
{
    if (off + 2 > t->len)
        return 0;
    unsigned n = get16(t, off);
    for (unsigned i = 0; i < n; i++) {
        size_t e = off + 2 + 12 * (size_t)i;
        if (e + 12 > t->len)
            return 0;
        if (get16(t, e) == tag) {
            *count = get32(t, e + 4);
            *field = e + 8;
            return 1;
        }
    }
    return 0;
}

int df_exif_orientation(const uint8_t *data, size_t len)
{
    tiff t = {data, len, 0};
    if (len < 8 || !(memcmp(data, "MM\0*", 4) == 0 || memcmp(data, "II*\0", 4) == 0))
        return 1;
    t.big = data[0] == 'M';
    uint32_t count;
    size_t field;
    if (!find_entry(&t, get32(&t, 4), TAG_ORIENTATION, &count, &field) || count != 1)
        return 1;
    unsigned v = get16(&t, field); /* a SHORT sits in the field's first two bytes */
    return v >= 1 && v <= 8 ? (int)v : 1;
}

int df_exif_read_user_comment(const uint8_t *data, size_t len, char **text, df_error_t *err)
{
    *text = NULL;
    tiff t = {data, len, 0};
    if (len < 8 || !(memcmp(data, "MM\0*", 4) == 0 || memcmp(data, "II*\0", 4) == 0))
        return df_error_set(err, DF_E_FORMAT, "exif: no TIFF header");
    t.big = data[0] == 'M';
    uint32_t count;
    size_t field;
    if (!find_entry(&t, get32(&t, 4), TAG_EXIF_IFD, &count, &field) ||
        !find_entry(&t, get32(&t, field), TAG_USER_COMMENT, &count, &field))
        return df_error_set(err, DF_E_FORMAT, "exif: no UserComment");
    uint32_t at = get32(&t, field);
    if (count < 8 || at > len || count > len - at)
        return df_error_set(err, DF_E_FORMAT, "exif: UserComment out of bounds");
    const uint8_t *c = data + at;
    size_t n = count - 8;
    char *s = malloc(3 * n + 1);
    if (!s)
        return df_error_set(err, DF_E_NOMEM, "exif: out of memory");
    size_t o = 0;
    if (memcmp(c, "UNICODE\0", 8) == 0) {
        tiff u = {c + 8, n, t.big};
        for (size_t i = 0; i + 1 < n; i += 2) {
            uint32_t v = get16(&u, i);
            if (v >= 0xd800 && v < 0xdc00 && i + 3 < n) {
                v = 0x10000 + ((v - 0xd800) << 10) + (get16(&u, i + 2) - 0xdc00);
                i += 2;
            }
            if (v < 0x80)
                s[o++] = (char)v;
            else if (v < 0x800)
                s[o++] = (char)(0xc0 | v >> 6), s[o++] = (char)(0x80 | (v & 0x3f));
            else if (v < 0x10000)
                s[o++] = (char)(0xe0 | v >> 12), s[o++] = (char)(0x80 | ((v >> 6) & 0x3f)),
                s[o++] = (char)(0x80 | (v & 0x3f));
            else
                s[o++] = (char)(0xf0 | v >> 18), s[o++] = (char)(0x80 | ((v >> 12) & 0x3f)),
                s[o++] = (char)(0x80 | ((v >> 6) & 0x3f)), s[o++] = (char)(0x80 | (v & 0x3f));
        }
    } else {
        memcpy(s, c + 8, n);
        o = n;
    }
    s[o] = '\0';
    *text = s;
    return DF_OK;
}
