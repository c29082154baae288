/*  sdxl_arch.h - the tensors an SDXL-family model has, by diffusers name and
 *  shape, derived from its config.
 *
 *  One list serves two ends: the loader checks a checkpoint against it
 *  (missing, extra and mis-shaped tensors reported together), and the random
 *  model generator writes exactly it. Names are the diffusers folder layout's
 *  (the internal naming); single-file checkpoints are renamed onto them. */
#ifndef DF_SDXL_ARCH_H
#define DF_SDXL_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sdxl_config.h"

/* How a tensor is used, which decides how the random generator fills it. */
typedef enum {
    DF_ARCH_WEIGHT,      /* linear or conv weight: fan-in scaled */
    DF_ARCH_BIAS,
    DF_ARCH_NORM_WEIGHT, /* group/layer norm gain: around 1 */
    DF_ARCH_NORM_BIAS,
    DF_ARCH_EMBEDDING,   /* token and position tables */
} df_arch_role;

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    df_arch_role role;
} df_arch_tensor;

typedef struct {
    df_arch_tensor *items;
    size_t count, cap;
} df_arch_list;

/*  Appends the component's tensors to list (which may already hold some). */
int df_arch_unet(const df_unet_config *cfg, df_arch_list *list, df_error_t *err);
int df_arch_vae(const df_vae_config *cfg, df_arch_list *list, df_error_t *err);
int df_arch_clip_text(const df_clip_text_config *cfg, df_arch_list *list, df_error_t *err);

/*  Appends one tensor (for other models' lists: blip_config.h). 0, or -1
 *  when out of memory. */
int df_arch_append(df_arch_list *list, df_arch_role role, int ndim, const int64_t *shape, const char *name);

/*  The entry called name, or NULL (linear search; lists are a few thousand long). */
const df_arch_tensor *df_arch_find(const df_arch_list *list, const char *name);

void df_arch_list_free(df_arch_list *list);

/*  Elements in t. */
uint64_t df_arch_numel(const df_arch_tensor *t);

#endif
