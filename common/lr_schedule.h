/*  lr_schedule.h - the learning rate at each optimiser step, as diffusers'
 *  get_scheduler computes it for the training scripts:
 *
 *    constant               lr
 *    constant_with_warmup   lr * step / warmup during warmup, then lr
 *    cosine                 warmup as above, then lr * (1 + cos(pi * p)) / 2
 *                           with p the fraction of the remaining steps done
 *
 *  Steps count from 0 (the first optimiser step uses step 0's rate).
 */
#ifndef DF_LR_SCHEDULE_H
#define DF_LR_SCHEDULE_H

#include <stdint.h>

typedef enum { DF_LR_CONSTANT, DF_LR_CONSTANT_WARMUP, DF_LR_COSINE, DF_LR_SCHEDULE_COUNT } df_lr_schedule;

typedef struct {
    df_lr_schedule kind;
    float lr;
    uint64_t warmup; /* steps */
    uint64_t total;  /* steps of the run (cosine) */
} df_lr_desc;

float df_lr_at(const df_lr_desc *d, uint64_t step);

/*  "constant", "constant_with_warmup", "cosine"; -1 when unknown. */
int df_lr_schedule_parse(const char *name);
const char *df_lr_schedule_name(df_lr_schedule s);

#endif
