/*  task_train.h - the worker's half of "train" jobs: a DreamBooth LoRA
 *  trained on this worker's device (train_lora.h), returned in both file
 *  formats with the loss of every step. */
#ifndef DF_TASK_TRAIN_H
#define DF_TASK_TRAIN_H

#include "tasks.h"

int df_task_run_train(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                      int *retryable, df_error_t *err);

#endif
