/*  attention.h - fused multi-head attention, forward and backward.
 *
 *      O = softmax(scale * Q K^T [+ causal mask]) V    per (batch, head)
 *
 *  computed with an online softmax, so the nq x nk score matrix never exists
 *  (at 1024x1024 images and 4096 tokens it would be 64 MiB per head). Tensors
 *  are token-major, as the projection GEMMs produce them: row t of Q holds all
 *  heads, head h in columns h*dim .. h*dim+dim-1. Row strides let Q, K and V
 *  be column slices of one fused QKV tensor. The forward pass can save the
 *  per-row log-sum-exp; the backward pass recomputes the probabilities from
 *  it instead of storing them.
 */
#ifndef DF_OPS_ATTENTION_H
#define DF_OPS_ATTENTION_H

#include "error.h"
#include "tensor_ref.h"
#include "vk_batch.h"

typedef struct {
    uint32_t batch, heads, nq, nk, dim; /* dim: head dimension, a multiple of 4 up to 128 (64 in SDXL) */
    uint32_t ldq, ldk, ldv, ldo;        /* token row strides in elements; 0: heads * dim */
    uint64_t bsq, bsk, bsv, bso;        /* batch strides in elements; 0: rows * row stride */
    float scale;                        /* 0: 1 / sqrt(dim) */
    int causal;                         /* key j visible to query i when j <= i + nk - nq (CLIP) */
} df_attn_desc;

/*  Elements of the log-sum-exp tensor: batch * heads * nq (f32). */
uint64_t df_attn_lse_elems(const df_attn_desc *d);

/*  lse may have no buffer (inference). */
int df_attention_forward(df_vk_batch_t *batch, const df_attn_desc *d, df_tensor q, df_tensor k, df_tensor v,
                         df_tensor o, df_tensor lse, df_error_t *err);

/*  dq, dk, dv (f32, laid out like q, k, v: same strides) from dout, the
 *  inputs, the forward output o and its lse. k and v must share strides. */
int df_attention_backward(df_vk_batch_t *batch, const df_attn_desc *d, df_tensor q, df_tensor k, df_tensor v,
                          df_tensor o, df_tensor lse, df_tensor dout, df_tensor dq, df_tensor dk, df_tensor dv,
                          df_error_t *err);

#endif
