/*  prompt.h - text to SDXL conditioning: both tokenizers, both encoders.
 *
 *  context: the penultimate hidden states of encoder 1 and encoder 2 side by
 *  side ([tokens, hidden1 + hidden2], 2048 wide for SDXL); a prompt over 75
 *  tokens becomes several 77-token chunks, encoded separately and stacked
 *  along the tokens. pooled: encoder 2's projection at the first chunk's
 *  end-of-text token.
 */
#ifndef DF_MODEL_PROMPT_H
#define DF_MODEL_PROMPT_H

#include "sdxl_model.h"

typedef struct _df_prompt_encoder_t df_prompt_encoder_t;

/*  Loads both tokenizers and text encoders of model. */
df_prompt_encoder_t *df_prompt_encoder_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                           df_dtype store, df_error_t *err);
void df_prompt_encoder_destroy(df_prompt_encoder_t **self_p);

/*  Text encoder 1 or 2 (to merge LoRAs into). */
df_clip_text_t *df_prompt_text_encoder(df_prompt_encoder_t *self, int which);

/*  Tokens per chunk and chunks for text (so the caller can size context). */
int df_prompt_tokens(df_prompt_encoder_t *self, const char *text, uint32_t *chunks, df_error_t *err);

/*  Context width (hidden1 + hidden2) and pooled width. */
uint32_t df_prompt_context_dim(const df_prompt_encoder_t *self);
uint32_t df_prompt_pooled_dim(const df_prompt_encoder_t *self);

/*  Records the encoding of text: context (f32, chunks * 77 x context_dim)
 *  and pooled (f32, pooled_dim). ids1/ids2 (may be NULL) receive the token
 *  ids, chunks * 77 each (malloc'd). */
int df_prompt_encode(df_prompt_encoder_t *self, df_vk_batch_t *batch, const char *text, df_tensor context,
                     df_tensor pooled, int32_t **ids1, int32_t **ids2, uint32_t *chunks, df_error_t *err);

#endif
