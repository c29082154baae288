/*  random_model.h - writes an SDXL-family model in the diffusers folder
 *  layout with deterministic random weights.
 *
 *  No real weights can be downloaded where this project is built and tested,
 *  so the loaders, the model code and the parity goldens all run on models
 *  made here: `tiny` (SDXL's structure at small widths, a few MB, with a BPE
 *  vocabulary learned from a built-in corpus) and `sdxl` (SDXL 1.0's shapes,
 *  for memory and speed measurements). The same seed gives the same bytes on
 *  every machine: each tensor draws from its own Philox stream, keyed by a
 *  hash of its name. */
#ifndef DF_RANDOM_MODEL_H
#define DF_RANDOM_MODEL_H

#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "sdxl_config.h"

/*  Creates dir (must not exist or be empty) and writes the model: configs,
 *  weights in dtype (F32 or F16), both tokenizers, the scheduler config and
 *  model_index.json. */
int df_random_model_create(const char *dir, df_sdxl_preset preset, uint64_t seed, df_dtype dtype,
                           df_error_t *err);

/*  The same model (the same values for the same seed) as one single-file
 *  checkpoint in SGM naming, like sd_xl_base_1.0.safetensors, with the
 *  configs in its metadata (DF_SGM_META_*). No tokenizer: a single file has
 *  none. */
int df_random_model_create_single(const char *path, df_sdxl_preset preset, uint64_t seed, df_dtype dtype,
                                  df_error_t *err);

#endif
