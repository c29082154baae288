/*  weights.h - a model component's weights on the device, by internal name.
 *
 *  Loading checks a checkpoint against the component's expected tensor list
 *  (sdxl_arch.h) and reports every missing, extra and mis-shaped tensor in
 *  one error, then copies each tensor from the file's mapping to its own
 *  device buffer, converting to the storage type on the way (one tensor's
 *  worth of host memory at most, never a second copy of the model).
 *
 *  A name map lets one loader serve several file layouts: it turns a file's
 *  tensor name into the internal (diffusers) name, or says the tensor
 *  belongs to another component. */
#ifndef DF_MODEL_WEIGHTS_H
#define DF_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "sgm_names.h"
#include "sdxl_arch.h"
#include "tensor_ref.h"
#include "vk_batch.h"
#include "vk_transfer.h"

/*  A low-rank adapter applied beside a weight instead of merged into it
 *  (LoRA unmerged, and LoRA training): the layer adds
 *  scale * up @ (down @ x). For a convolution, down is a convolution of the
 *  weight's kernel size into rank channels and up a 1x1 one. */
typedef struct df_weight_adapter {
    df_tensor down;  /* f32 [rank, in (x kh x kw)] */
    df_tensor up;    /* f32 [out, rank] */
    uint32_t rank;
    float scale;     /* the LoRA's alpha / rank times its strength */
    /* Gradients of a loss with respect to down and up (laid out alike),
     * accumulated by backward passes; no buffer when not training. */
    df_tensor grad_down, grad_up;
    /* The factors' names in the file they came from (NULL when none). */
    const char *down_key, *up_key;
    struct df_weight_adapter *next;
} df_weight_adapter;

typedef struct {
    const char *name;
    df_tensor t;       /* f32, f16, or i8 for 8-bit weights (read through df_weight_values) */
    df_tensor scale;   /* 8-bit weights: f32 per block of DF_WEIGHT_I8_BLOCK along each row (quant8.h) */
    df_tensor unpacked; /* 8-bit weights: the component's one f16 buffer they are dequantized into */
    int ndim;
    int64_t shape[4];
    uint64_t nelem;
    const df_weight_adapter *adapters; /* NULL: none */
    df_tensor grad; /* full fine-tuning: f32, the weight's shape, accumulated by backward passes; else no buffer */
} df_weight;

/*  How a file layout stores a component: where each internal tensor is (a
 *  whole file tensor, a third of a fused one, or a transposed one), and
 *  which file tensors are the component's at all. */
typedef struct {
    /* Fills ref for the internal name; -1 when the layout has no place for it. */
    int (*locate)(void *ctx, const char *internal, df_sgm_ref *ref);
    /* 1: the component's tensor; 0: another component's; -1: a buffer to ignore. */
    int (*owns)(void *ctx, const char *file_name);
    void *ctx;
} df_weight_layout;

typedef struct _df_weights_t df_weights_t;

/*  8-bit weights carry one scale per this many values along a row. */
#define DF_WEIGHT_I8_BLOCK 64

/*  Loads the tensors of arch from st into device memory as store_type (F32
 *  or F16; or I8: every matrix, i.e. each ".weight" of two or more
 *  dimensions, as bytes with a scale per output row, the rest f16; a byte
 *  per value halves an f16 model's memory for a quantization error of at
 *  most half a step of its row). layout NULL: file names are internal names, every tensor is the
 *  component's. Shapes must match, except that a linear weight may be stored
 *  as a 1x1 convolution's. Errors name the file; a mismatch lists up to a
 *  dozen names of each kind and the counts. */
df_weights_t *df_weights_load(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_arch_list *arch,
                              const df_safetensors_t *st, const df_weight_layout *layout, df_dtype store_type,
                              df_error_t *err);
void df_weights_destroy(df_weights_t **self_p);

/*  The weight's values as a float tensor ops can read: w->t itself, or for
 *  an 8-bit weight its values dequantized (recorded in batch) into the
 *  component's unpack buffer, which the next 8-bit weight of the component
 *  overwrites; use the result in the op recorded next. (The batch orders
 *  the reuse: a write after a recorded read gets a barrier.) */
int df_weight_values(df_vk_batch_t *batch, const df_weight *w, df_tensor *out, df_error_t *err);

/*  The weight called name; NULL when the component has none. */
const df_weight *df_weights_find(const df_weights_t *self, const char *name);

/*  Like find, for names the model code knows exist (the arch list promised
 *  them): the message says which is missing if one is. */
int df_weights_get(const df_weights_t *self, const char *name, const df_weight **out, df_error_t *err);

/*  Attaches an adapter to the weight called name, taking ownership of
 *  down_buf and up_buf (device buffers of [rank, nelem / out] and [out,
 *  rank] f32 values; freed by the weights, also on failure). Adapters of one
 *  weight apply in the order attached. */
int df_weights_attach(df_weights_t *self, const char *name, df_vk_buffer_t **down_buf, df_vk_buffer_t **up_buf,
                      uint32_t rank, float scale, const char *down_key, const char *up_key, df_error_t *err);
/*  Gives every adapter zeroed gradient buffers (once; later calls keep
 *  them). The zeroing is recorded in batch. */
int df_weights_adapter_grads(df_weights_t *self, df_vk_batch_t *batch, df_error_t *err);
/*  Full fine-tuning: gives every weight a zeroed f32 gradient buffer (once;
 *  the zeroing recorded in batch). The weights must be stored as f32: an
 *  optimiser steps them in place. */
int df_weights_grads(df_weights_t *self, df_vk_batch_t *batch, df_error_t *err);
/*  Frees those gradient buffers (the weights train no more). */
void df_weights_drop_grads(df_weights_t *self);

/*  The adapters of a weight, in the order attached (NULL when none), and
 *  the i-th adapter of the whole component in the order attached. */
const df_weight_adapter *df_weights_adapter_at(const df_weights_t *self, size_t i, const char **weight_name);
/*  Drops every adapter (the base weights are untouched). */
void df_weights_detach_all(df_weights_t *self);
/*  Adapters attached, over all weights. */
size_t df_weights_adapter_count(const df_weights_t *self);

/*  The i-th weight (0 .. df_weights_count - 1), in the arch list's order. */
const df_weight *df_weights_at(const df_weights_t *self, size_t i);

/*  Device bytes the weights occupy. */
uint64_t df_weights_bytes(const df_weights_t *self);
size_t df_weights_count(const df_weights_t *self);

#endif
