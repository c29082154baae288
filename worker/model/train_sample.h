/*  train_sample.h - what training needs of one photo and its caption,
 *  computed once: the VAE's latents and the text encoders' outputs.
 *
 *  A training run encodes every photo before its first step. Done inside
 *  the run, each member of a data-parallel group would encode every photo
 *  again, and a retried run would start over; so the same encodings can
 *  also be made ahead, sharded over workers as tasks of their own (the
 *  `encode` job), and kept as one small safetensors file per photo (a
 *  sample cache) in the artifact store, which the run then reads instead
 *  of loading the VAE and text encoders at all.
 *
 *  A sample cache holds (f32, values exactly as the in-run encoder makes
 *  them, so training from caches gives the same LoRA to the bit):
 *    latents          C x h x w: the latent distribution's mean times the
 *                     VAE's scaling factor, at the photo's bucket / 8
 *    latents_flipped  the same of the mirrored photo (made with flip)
 *    time_ids         6: SDXL's micro-conditioning (original size, crop,
 *                     target size)
 *    context          chunks*77 x D: the caption's penultimate states of
 *                     both encoders (absent when the text encoders train)
 *    pooled           P: encoder 2's projection
 *    pad_context      77 x D: the empty prompt's chunk, which pads a short
 *                     caption to the longest of a batch
 *  and in its metadata what it was made from (format, resolution, bucket
 *  step, the caption, the model's identity), which a run checks against
 *  its own parameters before trusting the numbers.
 */
#ifndef DF_MODEL_TRAIN_SAMPLE_H
#define DF_MODEL_TRAIN_SAMPLE_H

#include "sdxl_model.h"

#define DF_TRAIN_SAMPLE_FORMAT "dreamfleet.train_sample.1"

typedef struct {
    uint32_t lat_c, lat_h, lat_w;
    float *latents;              /* lat_c x lat_h x lat_w */
    float *flipped;              /* the mirrored photo's, or NULL */
    float time_ids[6];
    uint32_t chunks;             /* 77-token chunks of the caption; 0: not encoded */
    uint32_t D, P;               /* context and pooled widths (0 when not encoded) */
    float *context;              /* chunks*77 x D */
    float *pooled;               /* P */
    float *pad;                  /* 77 x D */
} df_train_sample;

/*  What a prepared photo was cut from (prep.h's sdxl_original and
 *  sdxl_crop): SDXL's size conditioning then tells of the photo as it was
 *  taken, not of the image prep made of it. */
typedef struct {
    uint32_t orig_w, orig_h;     /* 0: the image file's own size */
    uint32_t crop_left, crop_top; /* in the original scaled to cover the training size */
} df_photo_geometry;

/*  How a photo is made into latents; the same for every photo of a run. */
typedef struct {
    uint32_t resolution;         /* square side; with buckets, the bucket area's side */
    uint32_t bucket_step;        /* aspect buckets in multiples of this (0: centred square crops) */
    int flip;                    /* the mirror image too */
    int captions;                /* encode the caption (0: latents only, for text-encoder training) */
} df_train_sample_opts;

/*  What a cache says it was made from (strings malloc'd; free with
 *  df_train_sample_meta_free). */
typedef struct {
    df_train_sample_opts opts;
    char *caption;               /* "" when not encoded */
    char *model_identity;        /* "" when the maker had none */
    char *image;                 /* the photo's path, for messages */
} df_train_sample_meta;

typedef struct _df_train_sample_encoder_t df_train_sample_encoder_t;

/*  Loads the VAE (f32) and, with captions, both text encoders (in
 *  text_store) of model. */
df_train_sample_encoder_t *df_train_sample_encoder_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                                       df_dtype text_store, int captions, df_error_t *err);
void df_train_sample_encoder_destroy(df_train_sample_encoder_t **self_p);

/*  Encodes the photo at image_path (decoded upright, cropped around its
 *  centre to its bucket's aspect, resampled) and caption into *out (its
 *  arrays malloc'd; free with df_train_sample_free). geo (NULL: none) is
 *  what the photo was cut from, for its time ids. */
int df_train_sample_encode(df_train_sample_encoder_t *self, df_vk_batch_t *batch, const char *image_path,
                           const char *caption, const df_train_sample_opts *opts, const df_photo_geometry *geo,
                           df_train_sample *out, df_error_t *err);

void df_train_sample_free(df_train_sample *s);

/*  Writes s as a sample cache at path, recording opts, caption, the model's
 *  identity (may be NULL) and the photo's path. */
int df_train_sample_save(const df_train_sample *s, const df_train_sample_opts *opts, const char *caption,
                         const char *model_identity, const char *image_path, const char *path, df_error_t *err);

/*  Reads the sample cache at path into *s and what it was made from into
 *  *meta, checking its format and that every tensor has the shape the
 *  others imply: DF_E_FORMAT naming path and the fault otherwise. */
int df_train_sample_load(const char *path, df_train_sample *s, df_train_sample_meta *meta, df_error_t *err);
void df_train_sample_meta_free(df_train_sample_meta *meta);

#endif
