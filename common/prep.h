/*  prep.h - a folder of phone photos made into a training set the trainer
 *  can trust, with what was rejected and why.
 *
 *  For each file of the folder, in name order (sidecar captions, hidden
 *  files and folders aside):
 *    1. decode (image_decode.h: PNG, JPEG, WebP; EXIF orientation, gray,
 *       alpha and 16-bit handled); a file that is not a readable photo is
 *       rejected with the decoder's reason, and the rest go on;
 *    2. pick its aspect-ratio bucket around resolution^2 (or the square),
 *       and reject it as too small when covering the bucket would need more
 *       than max_upscale times enlargement;
 *    3. score it (photo_quality.h) and reject it below min_quality, naming
 *       the weak scores;
 *    3b. for a person (opts.person), find faces (face_detect.h): none, or
 *       more than one (a group shot), a face too small in the frame, or one
 *       not clear enough (blurred, eyes not found) rejects the photo;
 *    4. hash it (perceptual hash); of photos within dup_bits of each other
 *       the best scored stays, the others are rejected as near-duplicates;
 *    5. caption it: a sidecar PHOTO.txt / PHOTO.caption, else what a
 *       captioning model says of it (opts.captioner: BLIP on a worker),
 *       cleaned, with the identifier placed (caption.h); else the template;
 *    6. crop it to its bucket's aspect around the centre, or with a framing
 *       turn it so the eyes are level and frame it around the face, and
 *       resample it with Lanczos (image_resize.h) to the bucket's size.
 *  The result, in out_dir: images/NNN-NAME.png with NNN-NAME.txt beside
 *  each (so any trainer reading sidecars takes it), metadata.jsonl (one line
 *  per accepted photo: file, caption, sizes, bucket, crop, scores, hash),
 *  report.txt (every photo, accepted or rejected with its reason, and the
 *  warnings), and contact-sheet.png (accepted photos framed green, with
 *  their names, scores and captions, then rejected ones framed red, with
 *  their reasons; in the report's order).
 *
 *  The work is in three parts, so that a cluster can share it: one photo
 *  at a time (df_prep_photo: all but step 4, which needs the whole set),
 *  the set's choice (df_prep_thin_duplicates, df_prep_set_warning: plain
 *  arithmetic on the items, no images), and the files (df_prep_name_files,
 *  df_prep_write_*). df_prep_dir runs the three on one machine; a `prep`
 *  job runs the first on the workers, one task per photo, the second in the
 *  coordinator, and the third in the client.
 */
#ifndef DF_PREP_H
#define DF_PREP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "face_detect.h"
#include "photo_quality.h"

#define DF_PREP_SHEET_MAX 300 /* photos on the contact sheet, the first in name order */
#define DF_PREP_THUMB 192     /* a thumbnail's longer side: the contact sheet's cells */

typedef struct {
    uint32_t resolution;     /* 0: 1024 */
    uint32_t bucket_step;    /* side multiple of buckets; 0: square crops */
    double max_upscale;      /* largest enlargement allowed (0: 1.5) */
    double min_quality;      /* reject below this quality (photo_quality.h); < 0: accept any */
    int dup_bits;            /* near-duplicates: hashes at most this many bits apart (0: 6; < 0: keep all) */
    int person;              /* face checks (3b) */
    df_framing framing;      /* 0: the photo's own composition; else framed around the face (person only) */
    double min_face_clarity; /* reject a face below this clarity (0: 0.9) */
    double min_face_size;    /* reject a face narrower than this fraction of the photo's short side (0: 0.1) */
    const char *cascades;    /* the face detector's cascade folder (NULL: the build's) */
    const char *token;       /* the identifier ("TOK" when NULL) */
    const char *class_word;  /* the subject's class ("person" when NULL) */
    /* A captioning model for photos without a caption file (NULL: the
     * template): *text gets the caption of photo (malloc'd). An error is
     * the model's trouble, not the photo's: it fails the preparation. */
    int (*captioner)(void *ctx, const df_image *photo, char **text, df_error_t *err);
    void *captioner_ctx;
} df_prep_opts;

typedef struct {
    char *source;            /* the photo's path */
    char *file;              /* its training image, relative to out_dir ("images/000-x.png"); NULL if rejected */
    char *reason;            /* why it was rejected; NULL if accepted */
    char *caption;
    const char *caption_from; /* "sidecar", "model" or "template" */
    uint32_t orig_w, orig_h;  /* upright, as decoded (0 when it could not be) */
    uint32_t width, height;   /* its bucket */
    uint32_t crop_x, crop_y;  /* where the bucket's aspect was cut from the photo (0, 0 when framed) */
    uint32_t window_w, window_h; /* the region of the photo resampled (a framing's turned window, or the crop) */
    /* SDXL's size conditioning for the training image (its time ids): the
     * photo's size and where the crop began in the photo scaled to cover the
     * bucket; for a framing, whose turned window is no crop of the photo,
     * the window's size and 0, 0. */
    uint32_t sdxl_orig_w, sdxl_orig_h, sdxl_crop_left, sdxl_crop_top;
    df_photo_scores scores;
    uint64_t phash;
    int scored;               /* scores and hash were measured */
    int faces;                /* faces found (person only; -1: not looked for) */
    df_face face;             /* the face, when exactly one */
} df_prep_item;

typedef struct {
    df_prep_item *items;     /* every file considered, in name order */
    size_t count, accepted;
    char warning[256];       /* "" or why the set may train badly (too few or too many photos) */
} df_prep_report;

/*  Prepares the photos of dir into out_dir (created; existing files of the
 *  same names are replaced). Fails only when dir cannot be read or out_dir
 *  written: bad photos are rejected in the report, not errors. */
int df_prep_dir(const char *dir, const char *out_dir, const df_prep_opts *o, df_prep_report *rep, df_error_t *err);
void df_prep_report_free(df_prep_report *rep);

/*  The options checked: DF_E_INVALID naming the fault. */
int df_prep_check_opts(const df_prep_opts *o, df_error_t *err);

/*  The candidate files of dir, sorted by name (*files malloc'd, each path
 *  "dir/NAME"): everything but sidecar captions, hidden files and folders
 *  (a file that is not a photo is a candidate, to be reported). */
int df_prep_list(const char *dir, char ***files, size_t *count, df_error_t *err);

/*  One photo through every step but the near-duplicates (4): *it (its
 *  source set by the caller, faces -1) gets the verdict, sizes, scores,
 *  hash and caption; *thumb (NULL: not wanted) a thumbnail for the contact
 *  sheet whenever the photo decodes; *train (NULL: not wanted), when the
 *  photo is accepted, its training image at the bucket's size. sidecar is
 *  the photo's caption text (NULL: the template); fd the face detector for
 *  a person. A bad photo is a verdict; only a lack of memory is an error. */
int df_prep_photo(const char *path, const char *sidecar, const df_prep_opts *o, df_face_detector_t *fd,
                  df_prep_item *it, df_image *thumb, df_image *train, df_error_t *err);

/*  Step 4 over the set: the items still accepted and scored, best quality
 *  first (the first on ties), each rejected as a near-duplicate when its
 *  hash is within bits of one kept before it; a photo is only ever dropped
 *  for one that stays. DF_E_NOMEM or DF_OK. */
int df_prep_thin_duplicates(df_prep_item *items, size_t count, int bits);

/*  What may make a set of `accepted` photos train badly, into warning ("" when nothing). */
void df_prep_set_warning(size_t accepted, char *warning, size_t cap);

/*  out_dir/images made, and emptied of an earlier run's training images
 *  (a run writing fewer photos would otherwise leave stale ones beside its own). */
int df_prep_begin(const char *out_dir, df_error_t *err);

/*  Names the accepted items' training images in the order given
 *  ("images/NNN-STEM.png", numbers wide enough to sort), counting
 *  rep->accepted. */
int df_prep_name_files(df_prep_report *rep, df_error_t *err);

/*  The caption beside item's training image (out_dir/images/NNN-STEM.txt). */
int df_prep_write_caption(const char *out_dir, const df_prep_item *it, df_error_t *err);

/*  metadata.jsonl, report.txt and, with thumbs (one per item, empty ones
 *  left out; framed in place), contact-sheet.png. */
int df_prep_write_outputs(const char *out_dir, const df_prep_report *rep, df_image *thumbs, df_error_t *err);

#endif
