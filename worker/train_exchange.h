/*  train_exchange.h - a training task's side of data-parallel rounds
 *  (coordinator/train_group.h holds the other): its values go out as
 *  LoraDelta parts in the group's encoding (common/delta_codec.h), the
 *  group's average comes back and replaces them.
 *
 *  Nothing is acknowledged: a member that hears nothing for resend_ms sends
 *  its parts again (the coordinator counts each once, and answers a repeat
 *  of a finished round with its average again), and gives up after
 *  give_up_ms with a failure another attempt may mend.
 */
#ifndef DF_TRAIN_EXCHANGE_H
#define DF_TRAIN_EXCHANGE_H

#include "delta_codec.h"
#include "lora_trainer.h"
#include "tasks.h"
#include "train_lora.h"

typedef struct {
    df_task_ctx *ctx;           /* send_delta and recv_delta */
    const char *job_id;         /* copied */
    df_delta_encoding encoding;
    uint32_t resend_ms;         /* 0: 5000 */
    uint32_t give_up_ms;        /* 0: 30 minutes */
} df_train_exchange_opts;

typedef struct _df_train_exchange_t df_train_exchange_t;

/*  An exchange; the caller fills its sync's first, count and local_steps. */
df_train_exchange_t *df_train_exchange_new(const df_train_exchange_opts *opts, df_error_t *err);
void df_train_exchange_destroy(df_train_exchange_t **self_p);

/*  The sync to hand to df_train_lora (owned by the exchange). */
df_train_sync *df_train_exchange_sync(df_train_exchange_t *self);

typedef struct {
    uint32_t rounds;     /* completed */
    uint32_t members;    /* in the last round */
    uint32_t keeper;     /* the member that returns the LoRA files, as the last round said */
    uint64_t bytes_sent; /* encoded bytes this member sent (its own parts, first sends) */
    uint64_t raw_bytes;  /* the same values as f32 */
    uint64_t group_bytes, group_raw; /* the same over all members, as the coordinator counted them */
} df_train_exchange_stats;

df_train_exchange_stats df_train_exchange_stats_get(const df_train_exchange_t *self);

#endif
