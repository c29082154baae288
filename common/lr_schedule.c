/*  lr_schedule.c - see lr_schedule.h. */
#include "lr_schedule.h"

#include <math.h>
#include <string.h>

static const char *const k_names[DF_LR_SCHEDULE_COUNT] = {"constant", "constant_with_warmup", "cosine"};

int df_lr_schedule_parse(const char *name)
{
    for (int i = 0; name && i < DF_LR_SCHEDULE_COUNT; i++)
        if (strcmp(name, k_names[i]) == 0)
            return i;
    return -1;
}

const char *df_lr_schedule_name(df_lr_schedule s) { return (unsigned)s < DF_LR_SCHEDULE_COUNT ? k_names[s] : "?"; }

float df_lr_at(const df_lr_desc *d, uint64_t step)
{
    if (d->kind == DF_LR_CONSTANT)
        return d->lr;
    if (step < d->warmup)
        return d->lr * (float)step / (float)(d->warmup ? d->warmup : 1);
    if (d->kind == DF_LR_CONSTANT_WARMUP)
        return d->lr;
    /* Cosine: half a period over the steps after the warmup. */
    uint64_t span = d->total > d->warmup ? d->total - d->warmup : 1;
    double p = (double)(step - d->warmup) / (double)span;
    p = p > 1 ? 1 : p;
    return (float)(d->lr * 0.5 * (1.0 + cos(M_PI * p)));
}
