/*  blip.h - BLIP image captioning on the engine: transformers'
 *  BlipForConditionalGeneration from its model folder (config.json,
 *  model.safetensors, vocab.txt), run by the same ops as SDXL.
 *
 *  The image encoder is a ViT: the photo resized to image_size² (PIL's
 *  bicubic) and normalised with CLIP's mean and deviation, cut into
 *  patches, a class token in front, pre-norm layers, a final norm. The text
 *  decoder is BERT with a cross-attention to the image after each
 *  self-attention (post-norm layers, causal), and a language-model head.
 *  Captions start from [DEC] (and a prompt's tokens) and end at [SEP] or
 *  max_length tokens: greedy (the likeliest next token each step) or by
 *  beam search, as transformers' generate does either (its beam scorer:
 *  hypotheses scored by their summed log-probabilities over their length,
 *  a search done when no beam can beat the worst of num_beams finished
 *  ones). The image's keys and values for every cross-attention are
 *  computed once per caption.
 */
#ifndef DF_MODEL_BLIP_H
#define DF_MODEL_BLIP_H

#include "blip_config.h"
#include "image_decode.h"
#include "vk_batch.h"
#include "vk_device.h"
#include "vk_transfer.h"
#include "wordpiece.h"

typedef struct _df_blip_t df_blip_t;

/*  Opens the model folder dir, weights stored as store (DF_F32 or DF_F16).
 *  A missing file, a config the engine cannot run, or a checkpoint whose
 *  tensors do not match the config is an error naming the file. */
df_blip_t *df_blip_open(const char *dir, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype store,
                        df_error_t *err);
void df_blip_destroy(df_blip_t **self_p);

const df_blip_config *df_blip_config_of(const df_blip_t *self);
const df_wordpiece_t *df_blip_tokenizer(const df_blip_t *self);

/*  The photo as the image encoder takes it: 3 x S x S floats (malloc'd). */
int df_blip_pixels(const df_blip_t *self, const df_image *photo, float **pixels, df_error_t *err);

/*  The image encoder's output for pixels: (1 + patches) x hidden floats into
 *  embeds (host memory). */
int df_blip_encode_image(df_blip_t *self, df_vk_batch_t *batch, const float *pixels, float *embeds, df_error_t *err);

/*  The decoder's logits (n x vocab floats, host) for the tokens ids after
 *  the image whose encoder output is embeds. */
int df_blip_decoder_logits(df_blip_t *self, df_vk_batch_t *batch, const float *embeds, const int32_t *ids, uint32_t n,
                           float *logits, df_error_t *err);

typedef struct {
    const char *prompt;   /* what the caption begins with (NULL or "": nothing) */
    uint32_t max_length;  /* tokens at most, [DEC] and [SEP] included (0: the config's) */
    uint32_t min_length;  /* [SEP] not taken before this many tokens (0: any time) */
    uint32_t num_beams;   /* 0 or 1: greedy; more: beam search */
} df_blip_caption_opts;

/*  A caption of photo (malloc'd text, special tokens left out). ids (may
 *  be NULL; room for max_length) gets its tokens, [DEC] first, and *nids
 *  how many. */
int df_blip_caption(df_blip_t *self, df_vk_batch_t *batch, const df_image *photo, const df_blip_caption_opts *o,
                    char **text, int32_t *ids, uint32_t *nids, df_error_t *err);

#endif
