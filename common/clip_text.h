/*  clip_text.h - the text side of CLIP's tokenizer, before byte-pair merges.
 *
 *  Clean-up, as CLIP's reference tokenizer does it: HTML entities unescaped
 *  twice ("&amp;amp;" -> "&"), whitespace runs collapsed to one space, the
 *  ends stripped, then lower-cased. (The reference also runs ftfy's text
 *  repair first; that is treated as the identity, as the goldens are.)
 *
 *  Pre-tokenisation splits the clean text the way CLIP's regular expression
 *  does: the special tokens <|startoftext|> and <|endoftext|>, the
 *  contractions 's 't 're 've 'm 'll 'd, runs of letters, single digits, runs
 *  of anything else that is not whitespace.
 */
#ifndef DF_CLIP_TEXT_H
#define DF_CLIP_TEXT_H

#include <stddef.h>

#include "error.h"

/* Prompts longer than this (bytes) are refused: BPE is quadratic in the
 * length of a word, and no real prompt comes near it. */
#define DF_CLIP_MAX_TEXT 16384

/*  The cleaned, lower-cased text as a new NUL-terminated string (*out, free
 *  it). Text that is not valid UTF-8 is DF_E_FORMAT naming the byte offset;
 *  text over DF_CLIP_MAX_TEXT bytes is DF_E_RANGE. */
int df_clip_clean(const char *text, char **out, df_error_t *err);

typedef struct {
    size_t start, len; /* byte span in the clean text */
    int special;       /* 1 for <|startoftext|>, 2 for <|endoftext|> */
} df_clip_piece;

/*  Splits clean text into pieces; *pieces is malloc'd (free it). */
int df_clip_pretokenize(const char *clean, df_clip_piece **pieces, size_t *count, df_error_t *err);

#endif
