/*  train_share.h - how a training group splits each step's samples: the
 *  live members, ranked by their place in the group, take contiguous runs
 *  of the step's global sample indices, as even as whole samples allow.
 *  The coordinator (for each round) and the workers (for the first) must
 *  agree, so both use this.
 */
#ifndef DF_TRAIN_SHARE_H
#define DF_TRAIN_SHARE_H

#include <stdint.h>

/*  Rank `rank` of `of` live members, of `samples` per step. */
static inline void df_train_share(uint32_t rank, uint32_t of, uint64_t samples, uint32_t *first, uint32_t *count)
{
    uint64_t a = of ? rank * samples / of : 0, b = of ? (rank + 1ull) * samples / of : samples;
    *first = (uint32_t)a;
    *count = (uint32_t)(b - a);
}

#endif
