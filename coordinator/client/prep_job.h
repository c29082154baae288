/*  prep_job.h - a folder of photos prepared by the cluster: a `prep` job
 *  (one task per photo, spread over the workers; the near-duplicates chosen
 *  over the whole set by the coordinator), its result written out as the
 *  same dataset folder `dreamfleet prep` makes on one machine. */
#ifndef DF_PREP_JOB_H
#define DF_PREP_JOB_H

#include "cli.h"
#include "prep.h"

/*  Prepares dir's photos (uploaded to the coordinator's artifact store, so
 *  no folder need be shared with the workers) into out_dir as df_prep_dir
 *  would, filling *rep (free with
 *  df_prep_report_free). A DF_EXIT_* code; a bad photo is in the report,
 *  not a failure. */
/*  What only the cluster can do or keeps. */
typedef struct {
    int no_cache;               /* every photo prepared again, even when the result cache knows it */
    const char *captioner;      /* a BLIP model folder the workers can read, for photos without a caption file */
    const char *caption_prompt; /* what its captions begin with (NULL: nothing) */
    uint32_t caption_beams;     /* 0 or 1: greedy captions; more: beam search */
    uint32_t caption_min_length; /* tokens at least (0: any) */
} df_prep_job_opts;

/*  The captioning flags `prep` and `train --prep` both take, in this order
 *  (their getopt ids consecutive): --captioner, --caption-prompt,
 *  --caption-beams, --caption-min-length. Takes flag `which` (0-3) with its
 *  value into *jo: DF_EXIT_OK, or DF_EXIT_USAGE with the reason said. */
int df_prep_caption_flag(int which, const char *value, df_prep_job_opts *jo);

/*  DF_EXIT_USAGE, said, when a caption setting is given without --captioner. */
int df_prep_caption_check(const df_prep_job_opts *jo);

int df_prep_on_cluster(df_cli *cli, const char *dir, const char *out_dir, const df_prep_opts *o,
                       const df_prep_job_opts *jo, df_prep_report *rep);

/*  A finished prep job's result (the set: every verdict, the images in the
 *  artifact store) written into out_dir, as df_prep_on_cluster writes it;
 *  `dreamfleet fetch` of a prep job. */
int df_prep_fetch_set(df_cli *cli, const char *job_id, const uint8_t *result, size_t len, const char *out_dir,
                      df_prep_report *rep);

#endif
