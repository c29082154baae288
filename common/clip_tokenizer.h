/*  clip_tokenizer.h - CLIP's byte-level BPE tokenizer (both of SDXL's text
 *  encoders use it).
 *
 *  Text goes through clip_text.h (clean-up, pre-tokenisation); each piece's
 *  bytes are spelled with CLIP's byte-to-character table, the last character
 *  marked end-of-word ("</w>"), and merged pair by pair in the order of the
 *  merges list (lowest rank first) until no listed pair remains. Each symbol
 *  left is one token id.
 *
 *  Vocabularies load from the diffusers layout (vocab.json + merges.txt, as
 *  in tokenizer/ and tokenizer_2/) or from OpenAI's gzipped merges list
 *  (bpe_simple_vocab_16e6.txt.gz), whose vocabulary follows from the merges.
 */
#ifndef DF_CLIP_TOKENIZER_H
#define DF_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DF_CLIP_CONTEXT 77 /* tokens per chunk: start, 75 tokens, end */

typedef struct _df_clip_tokenizer_t df_clip_tokenizer_t;

/*  From vocab.json (token -> id) and merges.txt (first line a header, then
 *  "a b" per line). A merge whose parts or result are not in the vocabulary
 *  is DF_E_FORMAT naming the line. */
df_clip_tokenizer_t *df_clip_tokenizer_load(const char *vocab_json, const char *merges_txt,
                                            df_error_t *err);

/*  From OpenAI's gzipped merges list. */
df_clip_tokenizer_t *df_clip_tokenizer_load_bpe_gz(const char *path, df_error_t *err);

void df_clip_tokenizer_destroy(df_clip_tokenizer_t **self_p);

int32_t df_clip_tokenizer_bos(const df_clip_tokenizer_t *self);
int32_t df_clip_tokenizer_eos(const df_clip_tokenizer_t *self);
size_t df_clip_tokenizer_vocab_size(const df_clip_tokenizer_t *self);

/*  The id of a token as the vocabulary spells it (e.g. "!" or "person</w>"),
 *  or -1. */
int32_t df_clip_tokenizer_id(const df_clip_tokenizer_t *self, const char *token);

/*  Token ids of text without start/end tokens; *ids is malloc'd. */
int df_clip_tokenizer_encode(const df_clip_tokenizer_t *self, const char *text, int32_t **ids,
                             size_t *count, df_error_t *err);

/*  Text as model input: chunks of DF_CLIP_CONTEXT ids, each start + up to 75
 *  tokens + end, padded with pad_id (encoder 1 pads with end-of-text, encoder
 *  2 with id 0). An empty prompt is one chunk; a prompt of 76..150 tokens is
 *  two, and so on. *ids (malloc'd) holds *chunks * DF_CLIP_CONTEXT ids. */
int df_clip_tokenizer_chunks(const df_clip_tokenizer_t *self, const char *text, int32_t pad_id,
                             int32_t **ids, size_t *chunks, df_error_t *err);

/*  CLIP spells each byte as a printable character: bytes that already are one
 *  (! to ~, ¡ to ¬, ® to ÿ) stand for themselves, the other 68 take code
 *  points from 256 up, in byte order. */
uint32_t df_clip_byte_char(int b);

/*  The byte values in the order the reference lists them (printable ones
 *  first): the order of the first 256 ids of a vocabulary built from merges. */
void df_clip_byte_order(int order[256]);

#endif
