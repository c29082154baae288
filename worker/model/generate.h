/*  generate.h - text to image with SDXL: the whole pipeline on one device.
 *
 *  Per image: the prompt (and the negative prompt) through both text
 *  encoders; Philox noise from the image's seed (host-side, so the same seed
 *  gives the same noise on every device) times the schedule's initial sigma;
 *  then per step the UNet on [negative, positive] (classifier-free guidance,
 *  when the scale is above 1), eps = uncond + scale (cond - uncond), and the
 *  sampler's update; finally the latents divided by the VAE's scaling factor
 *  and decoded in tiles.
 *
 *  As SDXL's pipeline does: no negative prompt means an all-zero negative
 *  conditioning (force_zeros_for_empty_prompt); a negative prompt, even an
 *  empty one, is encoded. Micro-conditioning defaults to original size =
 *  target size = the image's, crop (0, 0).
 *
 *  A generator holds the model's components resident between calls.
 */
#ifndef DF_MODEL_GENERATE_H
#define DF_MODEL_GENERATE_H

#include "lora.h"
#include "prompt.h"
#include "scheduler.h"
#include "sdxl_model.h"

typedef struct {
    const char *prompt;
    const char *negative_prompt; /* NULL: none (zeros) */
    uint32_t width, height;      /* pixels, multiples of the VAE factor x 8 for SDXL-size models */
    int steps;
    float guidance;              /* <= 1: no unconditional pass */
    df_sampler sampler;
    uint64_t seed;               /* image i uses seed + i */
    uint32_t count;
    uint32_t original_w, original_h; /* 0: the image's size */
    uint32_t crop_left, crop_top;
    /* For parity with other implementations (NULL: from the seed): */
    const float *init_noise;      /* count x 4 x h x w, standard normal */
    const float *ancestral_noise; /* per image: steps x 4 x h x w (euler_a) */
} df_gen_params;

/*  Called after every step of every image with the denoised estimate that
 *  step made (4 x h x w, the clean latents the sampler is heading for: what
 *  a preview shows); returning non-zero cancels. */
typedef int (*df_gen_progress)(void *ctx, uint32_t image, int step, int steps, const float *latents);

typedef struct _df_generator_t df_generator_t;

df_generator_t *df_generator_new(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_dtype weights,
                                 df_error_t *err);
void df_generator_destroy(df_generator_t **self_p);

/*  A generator over a UNet the caller holds (not NULL; a UNet being trained, its
 *  adapters attached: validation images), which it neither frees nor
 *  changes; it loads the text encoders and the VAE of model. Such a
 *  generator takes no LoRAs of its own. */
df_generator_t *df_generator_borrowing(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                       df_dtype weights, df_unet_t *unet, df_error_t *err);
/*  The same over the caller's text encoders too (text encoders being
 *  trained), which it never releases or frees. */
df_generator_t *df_generator_borrowing_text(df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                                            df_dtype weights, df_unet_t *unet, df_prompt_encoder_t *text,
                                            df_error_t *err);

/*  keep 1 (the default): the text encoders stay loaded between calls. 0:
 *  they are released once a call's conditioning is computed and loaded again
 *  (with their LoRAs merged again) by the next call. SDXL's encoders hold
 *  1.5 GiB in f16, which a small GPU needs for the UNet and the VAE. */
void df_generator_keep_text(df_generator_t *self, int keep);
int df_generator_text_loaded(const df_generator_t *self);

/*  unmerged 0 (the default): LoRAs are merged into the weights, the
 *  fastest to run; 1: attached beside them (lora.h), a little slower per
 *  step but removable. Only before the first LoRA. */
int df_generator_set_lora_mode(df_generator_t *self, int unmerged, df_error_t *err);

/*  Takes every attached LoRA out (unmerged mode; DF_E_STATE when LoRAs were
 *  merged, which only a new generator undoes). */
int df_generator_clear_loras(df_generator_t *self, df_error_t *err);

/*  Merges (or attaches) a LoRA (kohya, PEFT or diffusers format), scaled. */
int df_generator_add_lora(df_generator_t *self, df_vk_batch_t *batch, const char *path, float scale, df_error_t *err);

/*  Checks params against the model (sizes, steps, sampler, counts): the
 *  message names the parameter. */
int df_generate_check(const df_generator_t *self, const df_gen_params *p, df_error_t *err);

/*  Generates p->count images. latents (count x 4 x h x w, host) receive the
 *  final latents (before the VAE); rgb (count x height x width x 3 bytes,
 *  host; may be NULL to skip decoding) the images. */
int df_generate(df_generator_t *self, df_vk_batch_t *batch, const df_gen_params *p, float *latents, uint8_t *rgb,
                df_gen_progress progress, void *ctx, df_error_t *err);

/*  Where the last df_generate call's time went (wall-clock seconds). */
typedef struct {
    double text;     /* loading the text encoders when released, and encoding */
    double denoise;  /* every step of every image */
    double decode;   /* the VAE */
    int steps;       /* steps run, over all images */
} df_gen_timing;
df_gen_timing df_generator_last_timing(const df_generator_t *self);

#endif
