/*  bpe_train.h - learns a small CLIP-style byte-level BPE vocabulary from a
 *  text corpus, for the project's own test models (the real CLIP vocabulary
 *  is data the product never ships).
 *
 *  Text is cleaned and pre-tokenised exactly as the tokenizer does
 *  (clip_text.h), so the merges learned are ones the tokenizer will apply.
 *  Each round merges the most frequent adjacent pair (ties: the pair whose
 *  spelling sorts first), which makes the result a pure function of the
 *  corpus. */
#ifndef DF_BPE_TRAIN_H
#define DF_BPE_TRAIN_H

#include <stddef.h>

#include "error.h"

/*  Learns up to max_merges merges from corpus and writes, into dir:
 *  vocab.json + merges.txt (the diffusers/transformers layout) and
 *  bpe_merges.txt.gz (OpenAI's layout, for reference tokenizers that read
 *  it). *vocab_size gets 512 + merges + 2. dir NULL: learn only (for the
 *  vocabulary's size). */
int df_bpe_train_write(const char *corpus, int max_merges, const char *dir, int *vocab_size, df_error_t *err);

/*  A built-in corpus of the words prompts are made of, for `tiny`. */
const char *df_bpe_default_corpus(void);

#endif
