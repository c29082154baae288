/*  train_group.h - the coordinator's half of data-parallel training: the
 *  members (tasks) of one train job, their contributions to the round in
 *  progress, and the average every member gets back.
 *
 *  A round completes when every live member has sent all its parts
 *  (LoraDelta messages holding whole tensors). The average of each value is
 *  weighted by the samples behind each contribution; it is encoded once, in
 *  the members' encoding (with error feedback of its own when that is lossy),
 *  so every member decodes the same bytes and the members never drift
 *  apart. With the reply each member learns its share of the next round's
 *  samples, split among the members still live (train_share.h): a member
 *  that leaves mid-round (its worker lost) is dropped, the round completes
 *  without it, and the others take its samples from the next round on.
 *
 *  No sockets and no clock: the scheduler feeds it messages and the time,
 *  and sends what it says to send.
 */
#ifndef DF_TRAIN_GROUP_H
#define DF_TRAIN_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "dreamfleet.pb-c.h"
#include "error.h"

typedef struct _df_train_group_t df_train_group_t;

/*  A group of `members` (at most 64) splitting `samples` per step. */
df_train_group_t *df_train_group_new(const char *job_id, uint32_t members, uint64_t samples, df_error_t *err);
void df_train_group_destroy(df_train_group_t **self_p);

typedef enum {
    DF_ROUND_WAITING,  /* taken; the round waits for more */
    DF_ROUND_COMPLETE, /* this completed the round: send the reply to every live member */
    DF_ROUND_REPEAT,   /* a member asking again for the round just completed: send it the reply again */
    DF_ROUND_STALE,    /* a repeat of something already counted, or from a dropped member: ignore */
    DF_ROUND_LOST,     /* a round the group can no longer answer (a coordinator restarted between two
                          members' rounds): the member cannot go on with the others, drop it */
} df_round_outcome;

/*  Takes member's part of a round. Errors (DF_E_FORMAT, DF_E_RANGE,
 *  DF_E_MISMATCH) say what does not fit: another encoding, tensor shapes
 *  that differ from the other members', a round ahead of the group, values
 *  that do not decode. */
int df_train_group_add(df_train_group_t *self, uint32_t member, const Dreamfleet__LoraDelta *d, uint64_t now_ms,
                       df_round_outcome *outcome, df_error_t *err);

/*  Takes member out of the group; *complete = 1 when the round in progress
 *  was waiting only for it (send the reply to every live member). */
void df_train_group_drop(df_train_group_t *self, uint32_t member, int *complete);

int df_train_group_live(const df_train_group_t *self, uint32_t member);
uint32_t df_train_group_live_count(const df_train_group_t *self);
/*  Whether member has sent every part of the round in progress. */
int df_train_group_contributed(const df_train_group_t *self, uint32_t member);
/*  When the round in progress got its first part (0: none yet). */
uint64_t df_train_group_round_started(const df_train_group_t *self);
/*  Rounds completed. */
uint32_t df_train_group_rounds(const df_train_group_t *self);

/*  The reply of the last completed round to member, in parts: valid until
 *  the next call that changes the group. */
size_t df_train_group_reply_parts(const df_train_group_t *self);
const Dreamfleet__LoraDelta *df_train_group_reply(df_train_group_t *self, uint32_t member, const char *task_id,
                                                  size_t part);

#endif
