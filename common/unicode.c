/*  unicode.c - see unicode.h. */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_classes.h"

size_t df_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((b & 0xe0) == 0xc0) {
        len = 2, c = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, c = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, c = b & 0x07, min = 0x10000;
    } else {
        return 0; /* a continuation byte or 0xf8.. */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

size_t df_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static int in_ranges(const df_unicode_range *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

int df_unicode_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(df_unicode_letters, df_unicode_letters_count, cp);
}

int df_unicode_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return in_ranges(df_unicode_numbers, df_unicode_numbers_count, cp);
}

int df_unicode_is_space(uint32_t cp)
{
    return in_ranges(df_unicode_spaces, df_unicode_spaces_count, cp);
}

/*  cp's mapping in table (n pairs sorted by from), or cp itself. */
static uint32_t mapped(const df_unicode_pair *table, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < table[mid].from)
            hi = mid;
        else if (cp > table[mid].from)
            lo = mid + 1;
        else
            return table[mid].to;
    }
    return cp;
}

uint32_t df_unicode_lower(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return mapped(df_unicode_lower_table, df_unicode_lower_table_count, cp);
}

char *df_utf8_sanitize(const char *s)
{
    const size_t n = strlen(s);
    char *out = malloc(3 * n + 1); /* each bad byte becomes 3 */
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = df_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (len) {
            memcpy(out + k, s + i, len);
            k += len, i += len;
        } else {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3, i++;
        }
    }
    out[k] = '\0';
    return out;
}

int df_unicode_is_punct(uint32_t cp) { return in_ranges(df_unicode_punctuation, df_unicode_punctuation_count, cp); }
int df_unicode_is_control(uint32_t cp) { return in_ranges(df_unicode_controls, df_unicode_controls_count, cp); }

int df_unicode_is_nonspacing_mark(uint32_t cp)
{
    return in_ranges(df_unicode_nonspacing_marks, df_unicode_nonspacing_marks_count, cp);
}

uint32_t df_unicode_accent_base(uint32_t cp) { return mapped(df_unicode_accent_bases, df_unicode_accent_bases_count, cp); }
