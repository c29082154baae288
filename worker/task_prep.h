/*  task_prep.h - the worker's half of "prep" jobs: a raw photo examined and
 *  prepared (common/prep.h: decoded, bucketed, scored, hashed, its face
 *  checked, captioned, resampled to its training size). The training image
 *  and a thumbnail for the contact sheet go to the coordinator's artifact
 *  store; the verdict and measurements come back as a PrepItem. Runs on the
 *  CPU: a prep task never opens the worker's device. */
#ifndef DF_TASK_PREP_H
#define DF_TASK_PREP_H

#include "tasks.h"

int df_task_run_prep(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len,
                     int *retryable, df_error_t *err);

#endif
