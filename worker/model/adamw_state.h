/*  adamw_state.h - AdamW's moments for one trained tensor, on the device:
 *  m and v in f32, or (8-bit state) the codes of m and sqrt(v) with their
 *  blocks' scales (common/adam8.h), a quarter of the memory. The LoRA
 *  trainer keeps one per factor, the full fine-tuner one per weight. */
#ifndef DF_MODEL_ADAMW_STATE_H
#define DF_MODEL_ADAMW_STATE_H

#include "optim.h"
#include "vk_batch.h"
#include "vk_transfer.h"

typedef struct {
    df_vk_buffer_t *m, *v;             /* f32 [n], or u8 codes (n rounded up to 4) */
    df_vk_buffer_t *m_scale, *s_scale; /* 8-bit state: f32 per block; else NULL */
} df_adamw_state;

/*  Zeroed moments for n values (all-zero codes and scales are the zero
 *  state too); the zeroing is recorded in batch. On failure what was made
 *  is freed. */
int df_adamw_state_init(df_adamw_state *self, df_vk_batch_t *batch, uint64_t n, int state8, df_error_t *err);
void df_adamw_state_free(df_adamw_state *self);
/*  Hands the buffers to batch, freed once its recorded work (their zeroing,
 *  say) has run: the error path of a constructor that recorded work. */
void df_adamw_state_release(df_adamw_state *self, df_vk_batch_t *batch);

/*  One AdamW step of param (f32, d->n values) with grad. */
int df_adamw_state_step(const df_adamw_state *self, df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param,
                        df_tensor grad, df_error_t *err);

/*  The moments of n values as f32 on the host (what checkpoints hold), and
 *  back (quantized again for 8-bit state: to the same codes). */
int df_adamw_state_read(const df_adamw_state *self, df_vk_transfer_t *xfer, uint64_t n, float *m, float *v,
                        df_error_t *err);
int df_adamw_state_write(const df_adamw_state *self, df_vk_transfer_t *xfer, uint64_t n, const float *m,
                         const float *v, df_error_t *err);

#endif
