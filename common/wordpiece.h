/*  wordpiece.h - BERT's WordPiece tokenizer, as BLIP's text decoder uses it
 *  (an uncased vocab.txt: one token a line, the line number its id).
 *
 *  Encoding: control and format characters dropped, CJK ideographs spaced
 *  apart, split at whitespace, lower-cased, accents removed (NFD, then the
 *  nonspacing marks), split around punctuation (ASCII's, and \p{P}); then each word
 *  taken as its longest vocabulary prefix, the rest as "##" pieces likewise,
 *  a word that cannot be spelt so (or is over 100 characters) [UNK].
 *  Decoding: special tokens left out, pieces joined to their words, and the
 *  spaces before punctuation and English contractions removed, as the
 *  reference tokenizer's clean-up does.
 *
 *  Not covered: characters whose decomposition is more than one character
 *  and marks (Hangul syllables, ligatures) stay whole; lower-casing is one
 *  code point at a time (no final sigma); "[SEP]" typed in a text is words,
 *  not the special token.
 */
#ifndef DF_WORDPIECE_H
#define DF_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct _df_wordpiece_t df_wordpiece_t;

/*  Loads vocab.txt (a token listed twice keeps its last line's id, as the
 *  reference's loader does). Its [PAD], [UNK], [CLS], [SEP] and [MASK] are
 *  special, as is every id from its size up (tokens a model adds, BLIP's
 *  [DEC] and [ENC]). */
df_wordpiece_t *df_wordpiece_load(const char *vocab_txt, df_error_t *err);
void df_wordpiece_destroy(df_wordpiece_t **self_p);

size_t df_wordpiece_size(const df_wordpiece_t *self);

/*  The id of token, or -1. */
int32_t df_wordpiece_id(const df_wordpiece_t *self, const char *token);

/*  text's ids (no [CLS] or [SEP] added) into ids (cap of them); *n gets how
 *  many there are, which may exceed cap (then only cap are written). */
int df_wordpiece_encode(const df_wordpiece_t *self, const char *text, int32_t *ids, size_t cap, size_t *n,
                        df_error_t *err);

/*  ids as text (malloc'd), special tokens (and ids past vocab.txt) left
 *  out. A negative id is DF_E_RANGE. */
int df_wordpiece_decode(const df_wordpiece_t *self, const int32_t *ids, size_t n, char **text, df_error_t *err);

#endif
