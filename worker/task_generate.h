/*  task_generate.h - the worker's half of "generate" jobs: images from a
 *  prompt with an SDXL model kept resident on the executor's device between
 *  tasks; each image comes back as a PNG carrying its parameters. */
#ifndef DF_TASK_GENERATE_H
#define DF_TASK_GENERATE_H

#include "tasks.h"

int df_task_run_generate(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                         int *retryable, df_error_t *err);

#endif
