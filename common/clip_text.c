/*  clip_text.c - see clip_text.h. */
#include "clip_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* --------------------------------------------------------- HTML entities */

/*  Named entities that prompts actually carry (pasted from web pages and
 *  prompt sites). Python's html.unescape knows all 2231 of HTML5's; the rest
 *  stay as written here. `legacy` ones may appear without the ';'. */
static const struct {
    const char *name;
    uint32_t cp;
    int legacy;
} s_entities[] = {
    {"amp", '&', 1},      {"lt", '<', 1},        {"gt", '>', 1},       {"quot", '"', 1},
    {"apos", '\'', 0},    {"nbsp", 0xa0, 1},     {"copy", 0xa9, 1},    {"reg", 0xae, 1},
    {"trade", 0x2122, 0}, {"hellip", 0x2026, 0}, {"mdash", 0x2014, 0}, {"ndash", 0x2013, 0},
    {"lsquo", 0x2018, 0}, {"rsquo", 0x2019, 0},  {"ldquo", 0x201c, 0}, {"rdquo", 0x201d, 0},
    {"laquo", 0xab, 1},   {"raquo", 0xbb, 1},    {"deg", 0xb0, 1},     {"times", 0xd7, 1},
    {"middot", 0xb7, 1},  {"bull", 0x2022, 0},   {"eacute", 0xe9, 1},  {"egrave", 0xe8, 1},
    {"aacute", 0xe1, 1},  {"agrave", 0xe0, 1},   {"ouml", 0xf6, 1},    {"uuml", 0xfc, 1},
    {"auml", 0xe4, 1},    {"szlig", 0xdf, 1},    {"ntilde", 0xf1, 1},  {"ccedil", 0xe7, 1},
    {"euro", 0x20ac, 0},  {"pound", 0xa3, 1},    {"yen", 0xa5, 1},     {"cent", 0xa2, 1},
    {"sect", 0xa7, 1},    {"para", 0xb6, 1},     {"plusmn", 0xb1, 1},  {"frac12", 0xbd, 1},
};

/*  What html.unescape does with &#N; for code points HTML calls invalid:
 *  the C1 range maps to Windows-1252's characters. */
static const uint16_t s_cp1252[32] = {
    0x20ac, 0x81,   0x201a, 0x192,  0x201e, 0x2026, 0x2020, 0x2021, 0x2c6,  0x2030, 0x160,
    0x2039, 0x152,  0x8d,   0x17d,  0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x2dc,  0x2122, 0x161,  0x203a, 0x153,  0x9d,   0x17e,  0x178,
};

/*  Code points a numeric reference silently drops. */
static int dropped_codepoint(uint32_t c)
{
    return (c >= 0x1 && c <= 0x8) || c == 0xb || (c >= 0xe && c <= 0x1f) || (c >= 0x7f && c <= 0x9f) ||
           (c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe;
}

static size_t put_cp(char *out, uint32_t cp)
{
    return df_utf8_encode(cp, (uint8_t *)out);
}

/*  Decodes one reference at s (which starts with '&'). Writes the
 *  replacement into out (at most as many bytes as it consumed, which holds
 *  for every entry: the shortest reference "&lt" is 3 bytes for 1) and
 *  returns the bytes consumed, or 0 when s is not a reference. */
static size_t decode_ref(const char *s, char *out, size_t *wrote)
{
    *wrote = 0;
    if (s[1] == '#') {
        int hex = s[2] == 'x' || s[2] == 'X';
        size_t i = hex ? 3 : 2, digits = 0;
        uint64_t v = 0;
        for (;; i++, digits++) {
            int d;
            char c = s[i];
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                d = (c | 0x20) - 'a' + 10;
            else
                break;
            if (v <= 0x10ffff)
                v = v * (hex ? 16 : 10) + (uint64_t)d;
        }
        if (digits == 0)
            return 0;
        if (s[i] == ';')
            i++;
        uint32_t cp;
        if (v >= 0x80 && v <= 0x9f)
            cp = s_cp1252[v - 0x80];
        else if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            cp = 0xfffd;
        else if (v == 0xd)
            cp = '\r';
        else if (dropped_codepoint((uint32_t)v))
            return i;
        else
            cp = (uint32_t)v;
        /* A reference like "&#1;" or "&#x10ffff;" is longer than its UTF-8. */
        *wrote = put_cp(out, cp);
        return i;
    }
    for (size_t e = 0; e < sizeof s_entities / sizeof s_entities[0]; e++) {
        size_t n = strlen(s_entities[e].name);
        if (strncmp(s + 1, s_entities[e].name, n) != 0)
            continue;
        if (s[1 + n] == ';') {
            *wrote = put_cp(out, s_entities[e].cp);
            return n + 2;
        }
        if (s_entities[e].legacy) {
            *wrote = put_cp(out, s_entities[e].cp);
            return n + 1;
        }
    }
    return 0;
}

/*  One pass of html.unescape, in place (the result is never longer). */
static void unescape_html(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if (*r == '&') {
            char buf[4];
            size_t wrote, used = decode_ref(r, buf, &wrote);
            if (used) {
                memcpy(w, buf, wrote);
                w += wrote;
                r += used;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
}

int df_clip_clean(const char *text, char **out, df_error_t *err)
{
    *out = NULL;
    size_t n = strlen(text);
    if (n > DF_CLIP_MAX_TEXT)
        return df_error_set(err, DF_E_RANGE, "prompt is %zu bytes; the limit is %d", n, DF_CLIP_MAX_TEXT);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = df_utf8_decode((const uint8_t *)text + i, n - i, &cp);
        if (!len)
            return df_error_set(err, DF_E_FORMAT, "prompt is not valid UTF-8 at byte %zu", i);
        i += len;
    }
    char *s = malloc(n + 1);
    /* Lower-casing can lengthen a character's UTF-8 (a few do), so leave room. */
    char *o = malloc(2 * n + 1);
    if (!s || !o) {
        free(s);
        free(o);
        return df_error_set(err, DF_E_NOMEM, "prompt: out of memory");
    }
    memcpy(s, text, n + 1);
    unescape_html(s);
    unescape_html(s);

    /* Collapse whitespace runs to one space, strip both ends, lower-case. */
    size_t len = strlen(s), w = 0;
    int pending_space = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = df_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (!l) { /* unescaping only writes valid UTF-8; be safe anyway */
            cp = 0xfffd;
            l = 1;
        }
        i += l;
        if (df_unicode_is_space(cp)) {
            pending_space = w > 0;
            continue;
        }
        if (pending_space)
            o[w++] = ' ';
        pending_space = 0;
        w += df_utf8_encode(df_unicode_lower(cp), (uint8_t *)o + w);
    }
    o[w] = '\0';
    free(s);
    *out = o;
    return DF_OK;
}

/* ------------------------------------------------------ pre-tokenisation */

static uint32_t cp_at(const char *s, size_t i, size_t *len)
{
    uint32_t cp = 0;
    *len = df_utf8_decode((const uint8_t *)s + i, strlen(s + i), &cp);
    if (!*len)
        *len = 1;
    return cp;
}

/*  Length of the contraction at s ("'s", "'ll", ...), or 0. */
static size_t contraction(const char *s)
{
    static const char *const forms[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strncmp(s, forms[i], strlen(forms[i])) == 0)
            return strlen(forms[i]);
    return 0;
}

int df_clip_pretokenize(const char *clean, df_clip_piece **pieces, size_t *count, df_error_t *err)
{
    size_t n = strlen(clean), cap = 16, k = 0;
    df_clip_piece *p = malloc(cap * sizeof *p);
    if (!p)
        return df_error_set(err, DF_E_NOMEM, "prompt: out of memory");
    for (size_t i = 0; i < n;) {
        if (k == cap) {
            df_clip_piece *q = realloc(p, 2 * cap * sizeof *p);
            if (!q) {
                free(p);
                return df_error_set(err, DF_E_NOMEM, "prompt: out of memory");
            }
            p = q;
            cap *= 2;
        }
        df_clip_piece *piece = &p[k];
        piece->start = i;
        piece->special = 0;
        size_t l;
        uint32_t cp = cp_at(clean, i, &l);
        /* The alternatives in the reference's order: the first that matches
         * at this position wins. */
        if (strncmp(clean + i, "<|startoftext|>", 15) == 0) {
            piece->len = 15, piece->special = 1;
        } else if (strncmp(clean + i, "<|endoftext|>", 13) == 0) {
            piece->len = 13, piece->special = 2;
        } else if ((piece->len = contraction(clean + i)) > 0) {
        } else if (df_unicode_is_letter(cp)) {
            size_t j = i + l;
            while (j < n && df_unicode_is_letter(cp_at(clean, j, &l)))
                j += l;
            piece->len = j - i;
        } else if (df_unicode_is_number(cp)) {
            piece->len = l;
        } else if (!df_unicode_is_space(cp)) {
            size_t j = i + l;
            for (; j < n; j += l) {
                uint32_t c = cp_at(clean, j, &l);
                if (df_unicode_is_space(c) || df_unicode_is_letter(c) || df_unicode_is_number(c))
                    break;
            }
            piece->len = j - i;
        } else {
            i += l; /* whitespace separates pieces and belongs to none */
            continue;
        }
        i += piece->len;
        k++;
    }
    *pieces = p;
    *count = k;
    return DF_OK;
}
