/*  task_encode.h - the worker's half of "encode" jobs: photos and captions
 *  made into sample caches (worker/model/train_sample.h) ahead of training,
 *  each uploaded to the coordinator's artifact store. The VAE and text
 *  encoders stay resident between tasks, so a worker taking several photos
 *  of a job loads them once. */
#ifndef DF_TASK_ENCODE_H
#define DF_TASK_ENCODE_H

#include "tasks.h"

int df_task_run_encode(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                       int *retryable, df_error_t *err);

#endif
