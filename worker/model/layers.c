/*  layers.c - see layers.h. */
#include "layers.h"

#include <stdio.h>

#include "eltwise.h"
#include "gemm.h"
#include "norm.h"

int df_scratch(df_vk_batch_t *batch, uint64_t elems, df_dtype dtype, df_tensor *out, df_error_t *err)
{
    out->ref.buf = NULL;
    out->ref.offset = 0;
    out->dtype = dtype;
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), elems * df_dtype_size(dtype), err);
    if (!b)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    const df_vk_buffer_t *keep = b;
    int rc = df_vk_batch_hold(batch, &b, err);
    if (rc == DF_OK)
        out->ref.buf = keep;
    return rc;
}

int df_scratch_from_host(df_vk_batch_t *batch, df_vk_transfer_t *xfer, const float *src, uint64_t n, df_tensor *out,
                         df_error_t *err)
{
    out->ref.buf = NULL;
    out->ref.offset = 0;
    out->dtype = DF_F32;
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), n * 4, err);
    if (!b)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    /* Filled before the batch owns it: nothing recorded reads it yet. */
    int rc = df_vk_upload(xfer, b, 0, src, n * 4, err);
    if (rc != DF_OK) {
        df_vk_buffer_destroy(&b);
        return rc;
    }
    const df_vk_buffer_t *keep = b;
    rc = df_vk_batch_hold(batch, &b, err);
    if (rc == DF_OK)
        out->ref.buf = keep;
    return rc;
}

int df_keep_tensor(df_vk_batch_t *batch, df_keep *keep, df_tensor *t, uint64_t elems, df_error_t *err)
{
    if (keep->n == DF_KEEP_MAX)
        return df_error_set(err, DF_E_RANGE, "more than %d tensors kept across steps", DF_KEEP_MAX);
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), elems * df_dtype_size(t->dtype), err);
    if (!b)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    keep->bufs[keep->n++] = b;
    int rc = df_vk_batch_copy(batch, t->ref.buf, t->ref.offset, b, 0, elems * df_dtype_size(t->dtype), err);
    if (rc == DF_OK) {
        t->ref.buf = b;
        t->ref.offset = 0;
    }
    return rc;
}

int df_keep_new(df_vk_batch_t *batch, df_keep *keep, uint64_t elems, df_dtype dtype, df_tensor *out,
                df_error_t *err)
{
    if (keep->n == DF_KEEP_MAX)
        return df_error_set(err, DF_E_RANGE, "more than %d tensors kept across steps", DF_KEEP_MAX);
    df_vk_buffer_t *b = df_vk_buffer_new(df_vk_batch_device(batch), elems * df_dtype_size(dtype), err);
    if (!b)
        return err ? err->code : DF_E_DEVICE_MEMORY;
    keep->bufs[keep->n++] = b;
    *out = df_tensor_at(b, 0, dtype);
    return DF_OK;
}

void df_keep_release(df_keep *keep, df_vk_batch_t *batch)
{
    for (int i = 0; i < keep->n; i++)
        if (!batch || df_vk_batch_hold(batch, &keep->bufs[i], NULL) != DF_OK)
            df_vk_buffer_destroy(&keep->bufs[i]);
    keep->n = 0;
}

int df_step_end(df_vk_batch_t *batch, df_keep *cur, df_tensor *x, uint64_t elems, df_error_t *err)
{
    int before = cur->n;
    int rc = df_keep_tensor(batch, cur, x, elems, err);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (rc != DF_OK)
        return rc;
    for (int i = 0; i < before; i++)
        df_vk_buffer_destroy(&cur->bufs[i]);
    cur->bufs[0] = cur->bufs[before];
    cur->n = 1;
    return DF_OK;
}

int df_weight_at(const df_weights_t *w, const char *prefix, const char *suffix, const df_weight **out,
                 df_error_t *err)
{
    char name[256];
    if ((size_t)snprintf(name, sizeof name, "%s.%s", prefix, suffix) >= sizeof name)
        return df_error_set(err, DF_E_INVALID, "weight name too long: %s.%s", prefix, suffix);
    return df_weights_get(w, name, out, err);
}

int df_weight_pair(const df_weights_t *w, const char *prefix, const df_weight **weight, const df_weight **bias,
                   df_error_t *err)
{
    int rc = df_weight_at(w, prefix, "weight", weight, err);
    return rc == DF_OK ? df_weight_at(w, prefix, "bias", bias, err) : rc;
}

/*  y[rows, out] += scale up (down x) for each adapter of w: two thin GEMMs
 *  through a [rows, rank] scratch. */
static int linear_adapters(df_vk_batch_t *batch, df_tensor x, uint32_t rows, const df_weight *w, df_tensor y,
                           df_error_t *err)
{
    uint32_t out = (uint32_t)w->shape[0], in = (uint32_t)(w->nelem / w->shape[0]);
    int rc = DF_OK;
    for (const df_weight_adapter *a = w->adapters; a && rc == DF_OK; a = a->next) {
        df_tensor t;
        rc = df_scratch(batch, (uint64_t)rows * a->rank, DF_F32, &t, err);
        df_gemm_desc d1 = df_gemm_desc_packed(0, 1, rows, a->rank, in, 1);
        d1.type_a = x.dtype;
        if (rc == DF_OK)
            rc = df_gemm(batch, &d1, x.ref, a->down.ref, t.ref, DF_GEMM_AUTO, NULL, err);
        df_gemm_desc d2 = df_gemm_desc_packed(0, 1, rows, out, a->rank, 1);
        d2.alpha = a->scale;
        d2.beta = 1;
        d2.type_c = y.dtype;
        if (rc == DF_OK)
            rc = df_gemm(batch, &d2, t.ref, a->up.ref, y.ref, DF_GEMM_AUTO, NULL, err);
    }
    return rc;
}

int df_linear(df_vk_batch_t *batch, df_tensor x, uint32_t rows, const df_weight *w, const df_weight *bias,
              df_tensor y, float beta, df_elt_op act, df_error_t *err)
{
    uint32_t out = (uint32_t)w->shape[0], in = (uint32_t)w->shape[1];
    df_tensor wv;
    int rc = df_weight_values(batch, w, &wv, err);
    if (rc != DF_OK)
        return rc;
    df_gemm_desc d = df_gemm_desc_packed(0, 1, rows, out, in, 1);
    d.beta = beta;
    d.type_a = x.dtype;
    d.type_b = wv.dtype;
    d.type_c = y.dtype;
    /* With adapters the activation waits until their terms are added. */
    int adapted = w->adapters != NULL, late_act = adapted && act != DF_ELT_COPY;
    if (late_act && beta != 0)
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: an adapted layer cannot add into its output before "
                            "its activation", w->name);
    df_gemm_epilogue ep = {.bias = bias ? bias->t : (df_tensor){{NULL, 0}, DF_F32},
                           .act = late_act ? DF_ELT_COPY : act};
    rc = df_gemm_ex(batch, &d, x.ref, wv.ref, y.ref, &ep, DF_GEMM_AUTO, NULL, err);
    if (rc == DF_OK && adapted)
        rc = linear_adapters(batch, x, rows, w, y, err);
    if (rc == DF_OK && late_act) {
        df_elt_desc e = {.op = act, .n = (uint64_t)rows * out, .alpha = 1};
        rc = df_eltwise(batch, &e, y, y, y, err);
    }
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", w->name);
}

int df_layer_norm(df_vk_batch_t *batch, const df_weights_t *w, const char *prefix, df_tensor x, uint32_t rows,
                  float eps, df_tensor y, df_error_t *err)
{
    const df_weight *g, *b;
    int rc = df_weight_pair(w, prefix, &g, &b, err);
    if (rc != DF_OK)
        return rc;
    df_norm_desc d = df_norm_layer(rows, (uint32_t)g->shape[0], eps);
    df_tensor stats;
    if ((rc = df_scratch(batch, df_norm_stats_elems(&d), DF_F32, &stats, err)) != DF_OK)
        return rc;
    rc = df_norm_forward(batch, &d, x, g->t, b->t, y, stats, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", prefix);
}
