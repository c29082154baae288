/*  unicode.h - the little Unicode that text processing here needs: UTF-8
 *  decoding and encoding, and the character classes and lower-casing that
 *  CLIP's tokenizer takes from Python (letters \p{L}, numbers \p{N},
 *  whitespace as str.isspace, str.lower one code point at a time), and the
 *  classes BERT's takes (punctuation, controls, accents). The tables are
 *  generated from Python's unicodedata, so there is no locale. */
#ifndef DF_UNICODE_H
#define DF_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/*  Decodes one UTF-8 sequence from s (n bytes available) into *cp. Returns
 *  its length in bytes, or 0 when the bytes there are not valid UTF-8
 *  (truncated, overlong, a surrogate, beyond U+10FFFF). */
size_t df_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/*  Writes cp as UTF-8 into out (room for 4 bytes); returns the length. */
size_t df_utf8_encode(uint32_t cp, uint8_t out[4]);

/*  A malloc'd copy of s with every byte that does not start valid UTF-8
 *  replaced by U+FFFD (a Latin-1 caption or file name stays readable and
 *  becomes valid JSON); NULL when out of memory. */
char *df_utf8_sanitize(const char *s);

int df_unicode_is_letter(uint32_t cp);
int df_unicode_is_number(uint32_t cp);
int df_unicode_is_space(uint32_t cp);
uint32_t df_unicode_lower(uint32_t cp);

/*  For BERT's tokenizer: punctuation (\p{P}), control and format characters
 *  and unassigned code points (\p{C}), nonspacing marks (\p{Mn}), and the
 *  character an accented one decomposes to (NFD) once its marks are gone
 *  (cp itself when it has none, or its decomposition is more than that). */
int df_unicode_is_punct(uint32_t cp);
int df_unicode_is_control(uint32_t cp);
int df_unicode_is_nonspacing_mark(uint32_t cp);
uint32_t df_unicode_accent_base(uint32_t cp);

#endif
