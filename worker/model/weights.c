/*  weights.c - see weights.h. */
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "half.h"
#include "quant8.h"
#include "strmap.h"

struct _df_weights_t {
    df_weight *items;
    df_vk_buffer_t **bufs;
    df_vk_buffer_t **scale_bufs; /* 8-bit weights' row scales */
    df_vk_buffer_t **grad_bufs;  /* full fine-tuning's gradients (NULL until asked for) */
    df_vk_buffer_t *unpack;      /* where 8-bit weights are dequantized for use */
    char **names;
    size_t count;
    df_strmap_t *index; /* name -> position */
    uint64_t bytes;
    /* Adapters, each with the two buffers it owns, newest first. */
    struct owned_adapter {
        df_weight_adapter a;
        df_vk_buffer_t *down, *up, *grad_down, *grad_up;
        const char *weight; /* the adapted weight's name */
        char *down_key, *up_key;
        struct owned_adapter *next_owned;
    } *adapters;
    size_t nadapters;
};

void df_weights_destroy(df_weights_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_weights_t *w = *self_p;
    for (size_t i = 0; i < w->count; i++) {
        df_vk_buffer_destroy(&w->bufs[i]);
        df_vk_buffer_destroy(&w->scale_bufs[i]);
        if (w->grad_bufs)
            df_vk_buffer_destroy(&w->grad_bufs[i]);
        free(w->names[i]);
    }
    free(w->grad_bufs);
    df_vk_buffer_destroy(&w->unpack);
    df_weights_detach_all(w);
    free(w->items);
    free(w->bufs);
    free(w->scale_bufs);
    free(w->names);
    df_strmap_destroy(&w->index);
    free(w);
    *self_p = NULL;
}

/*  Appends "name" to a comma-separated list kept under cap bytes, counting
 *  what did not fit. */
static void list_add(char *list, size_t cap, int *shown, int *total, const char *name)
{
    (*total)++;
    if (*shown >= 12)
        return;
    size_t len = strlen(list);
    if (len + strlen(name) + 3 >= cap)
        return;
    snprintf(list + len, cap - len, "%s%s", *shown ? ", " : "", name);
    (*shown)++;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/*  Where one internal tensor's bytes are in the file. */
typedef struct {
    const df_st_tensor *t;
    df_sgm_ref ref;
} source;

/*  The source's elements as host floats (transposed or cut out of a fused
 *  tensor as the layout says); *owner is what to free. */
static int host_values(const source *s, uint64_t nelem, float **owner, const float **vals, const char *path,
                       df_error_t *err)
{
    const df_st_tensor *t = s->t;
    uint64_t first = s->ref.part >= 0 ? (uint64_t)s->ref.part * nelem : 0;
    float *f = malloc(t->nelem * sizeof *f);
    float *tr = s->ref.transpose ? malloc(t->nelem * sizeof *tr) : NULL;
    *owner = NULL;
    if (!f || (s->ref.transpose && !tr)) {
        free(f), free(tr);
        return df_error_set(err, DF_E_NOMEM, "%s: no host memory to convert '%s'", path, t->name);
    }
    int rc = df_st_tensor_to_f32(t, f, err);
    *vals = f + first;
    *owner = f;
    if (rc == DF_OK && tr) {
        uint64_t rows = (uint64_t)t->shape[0], cols = (uint64_t)t->shape[1];
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++)
                tr[c * rows + r] = f[r * cols + c];
        free(f);
        *vals = *owner = tr;
    } else {
        free(tr);
    }
    return rc;
}

/*  Uploads the source's elements as the storage type: directly from the
 *  mapping when the types agree and nothing is rearranged, else through one
 *  tensor's worth of host floats. */
static int upload(df_vk_transfer_t *xfer, df_vk_buffer_t *buf, const source *s, uint64_t nelem, df_dtype store,
                  const char *path, df_error_t *err)
{
    const df_st_tensor *t = s->t;
    uint64_t esz = df_dtype_size(t->dtype), first = s->ref.part >= 0 ? (uint64_t)s->ref.part * nelem : 0;
    if (t->dtype == store && !s->ref.transpose)
        return df_vk_upload(xfer, buf, 0, (const uint8_t *)t->data + first * esz, nelem * esz, err);
    float *owner;
    const float *vals;
    int rc = host_values(s, nelem, &owner, &vals, path, err);
    if (rc == DF_OK)
        rc = df_vk_upload_f32(xfer, buf, 0, vals, nelem, store, err);
    free(owner);
    return rc;
}

/*  Uploads a matrix of rows x (nelem / rows) as bytes into buf and its row
 *  scales into scale_buf (common/quant8.h). */
static int upload_quant8(df_vk_transfer_t *xfer, df_vk_buffer_t *buf, df_vk_buffer_t *scale_buf, const source *s,
                         uint64_t nelem, uint64_t rows, const char *path, df_error_t *err)
{
    uint64_t nscale = rows * df_quant8_blocks(nelem / rows, DF_WEIGHT_I8_BLOCK);
    float *owner;
    const float *vals;
    int rc = host_values(s, nelem, &owner, &vals, path, err);
    int8_t *q = rc == DF_OK ? malloc(nelem) : NULL;
    float *scale = rc == DF_OK ? malloc(nscale * sizeof *scale) : NULL;
    if (rc == DF_OK && (!q || !scale))
        rc = df_error_set(err, DF_E_NOMEM, "%s: no host memory to quantize '%s'", path, s->t->name);
    for (uint64_t i = 0; rc == DF_OK && i < nelem; i++)
        if (!isfinite(vals[i]))
            rc = df_error_set(err, DF_E_FORMAT, "%s: '%s' holds a non-finite value at element %llu, which 8-bit "
                              "weights cannot represent", path, s->t->name, (unsigned long long)i);
    if (rc == DF_OK) {
        df_quant8_rows(vals, rows, nelem / rows, DF_WEIGHT_I8_BLOCK, q, scale);
        rc = df_vk_upload(xfer, buf, 0, q, nelem, err);
    }
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, scale_buf, 0, scale, nscale * sizeof *scale, err);
    free(owner), free(q), free(scale);
    return rc;
}

/*  Whether an I8 load stores this tensor as bytes: the matrices. */
static int quantized(const df_arch_tensor *a)
{
    size_t len = strlen(a->name);
    return a->ndim >= 2 && len > 7 && strcmp(a->name + len - 7, ".weight") == 0;
}

/*  Shapes without their trailing 1s agree (a linear weight [o, i] and a 1x1
 *  convolution's [o, i, 1, 1] hold the same bytes). */
static int same_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
    while (na > 1 && a[na - 1] == 1)
        na--;
    while (nb > 1 && b[nb - 1] == 1)
        nb--;
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/*  Whether the source can supply the expected tensor; why not in why. */
static int fits(const source *s, const df_arch_tensor *a, char *why, size_t cap)
{
    const df_st_tensor *t = s->t;
    char got[64], exp[64];
    shape_str(got, sizeof got, t->ndim, t->shape);
    shape_str(exp, sizeof exp, a->ndim, a->shape);
    if (t->dtype != DF_F32 && t->dtype != DF_F16 && t->dtype != DF_BF16) {
        snprintf(why, cap, "%s (dtype %s)", t->name, df_dtype_name(t->dtype));
        return 0;
    }
    int ok;
    if (s->ref.part >= 0) {
        int64_t third[DF_ST_MAX_DIMS];
        for (int i = 0; i < t->ndim; i++)
            third[i] = t->shape[i];
        ok = t->ndim >= 1 && t->shape[0] % 3 == 0;
        if (ok)
            third[0] /= 3;
        ok = ok && same_shape(t->ndim, third, a->ndim, a->shape);
    } else if (s->ref.transpose) {
        ok = t->ndim == 2 && a->ndim == 2 && t->shape[0] == a->shape[1] && t->shape[1] == a->shape[0];
    } else {
        ok = same_shape(t->ndim, t->shape, a->ndim, a->shape);
    }
    if (!ok)
        snprintf(why, cap, "%s %s, expected %s%s", t->name, got, s->ref.part >= 0 ? "3 x " : "", exp);
    return ok;
}

static int locate_identity(void *ctx, const char *internal, df_sgm_ref *ref)
{
    (void)ctx;
    ref->part = -1;
    ref->transpose = 0;
    return (size_t)snprintf(ref->name, sizeof ref->name, "%s", internal) < sizeof ref->name ? 0 : -1;
}

static int owns_all(void *ctx, const char *file_name)
{
    (void)ctx, (void)file_name;
    return 1;
}

df_weights_t *df_weights_load(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_arch_list *arch,
                              const df_safetensors_t *st, const df_weight_layout *layout, df_dtype store,
                              df_error_t *err)
{
    static const df_weight_layout identity = {locate_identity, owns_all, NULL};
    const char *path = df_safetensors_path(st);
    if (!layout)
        layout = &identity;
    if (store != DF_F32 && store != DF_F16 && store != DF_I8) {
        df_error_set(err, DF_E_INVALID, "%s: weights are stored as f32, f16 or i8", path);
        return NULL;
    }
    size_t nfile = df_safetensors_count(st);
    df_weights_t *w = calloc(1, sizeof *w);
    source *src = calloc(arch->count ? arch->count : 1, sizeof *src);
    uint8_t *used = calloc(nfile ? nfile : 1, 1);
    if (w) {
        w->items = calloc(arch->count ? arch->count : 1, sizeof *w->items);
        w->bufs = calloc(arch->count ? arch->count : 1, sizeof *w->bufs);
        w->scale_bufs = calloc(arch->count ? arch->count : 1, sizeof *w->scale_bufs);
        w->names = calloc(arch->count ? arch->count : 1, sizeof *w->names);
        w->index = df_strmap_new();
    }
    if (!w || !src || !used || !w->items || !w->bufs || !w->scale_bufs || !w->names || !w->index) {
        df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }

    /* Find every expected tensor, then see what the file has left over. */
    char extra[600] = "", shaped[600] = "", missing[600] = "";
    int n_extra = 0, s_extra = 0, n_shaped = 0, s_shaped = 0, n_missing = 0, s_missing = 0;
    for (size_t i = 0; i < arch->count; i++) {
        const df_arch_tensor *a = &arch->items[i];
        if (layout->locate(layout->ctx, a->name, &src[i].ref) != 0 ||
            !(src[i].t = df_safetensors_find(st, src[i].ref.name))) {
            list_add(missing, sizeof missing, &s_missing, &n_missing, layout == &identity ? a->name : src[i].ref.name);
            continue;
        }
        used[src[i].t - df_safetensors_at(st, 0)] = 1;
        char why[320];
        if (!fits(&src[i], a, why, sizeof why))
            list_add(shaped, sizeof shaped, &s_shaped, &n_shaped, why);
    }
    for (size_t i = 0; i < nfile; i++) {
        const df_st_tensor *t = df_safetensors_at(st, i);
        if (!used[i] && layout->owns(layout->ctx, t->name) > 0)
            list_add(extra, sizeof extra, &s_extra, &n_extra, t->name);
    }
    if (n_extra + n_shaped + n_missing) {
        char msg[2000];
        size_t len = 0;
        if (n_missing)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " %d missing (%s%s);", n_missing, missing,
                                    n_missing > s_missing ? ", ..." : "");
        if (n_shaped && len < sizeof msg)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " %d mis-shaped (%s%s);", n_shaped, shaped,
                                    n_shaped > s_shaped ? ", ..." : "");
        if (n_extra && len < sizeof msg)
            snprintf(msg + len, sizeof msg - len, " %d unexpected (%s%s);", n_extra, extra,
                     n_extra > s_extra ? ", ..." : "");
        df_error_set(err, DF_E_FORMAT, "%s does not match the model's config:%s", path, msg);
        goto fail;
    }

    uint64_t unpack_elems = 0;
    int rc;
    for (size_t i = 0; i < arch->count; i++) {
        const df_arch_tensor *a = &arch->items[i];
        uint64_t nelem = df_arch_numel(a);
        df_weight *it = &w->items[i];
        int q8 = store == DF_I8 && quantized(a);
        df_dtype as = q8 ? DF_I8 : store == DF_I8 ? DF_F16 : store;
        uint64_t rows = (uint64_t)a->shape[0];
        w->names[i] = strdup(a->name);
        w->bufs[i] = w->names[i] ? df_vk_buffer_new(dev, nelem * df_dtype_size(as), err) : NULL;
        if (w->bufs[i] && q8)
            w->scale_bufs[i] = df_vk_buffer_new(dev, rows * df_quant8_blocks(nelem / rows, DF_WEIGHT_I8_BLOCK) * 4, err);
        w->count = i + 1;
        if (!w->bufs[i] || (q8 && !w->scale_bufs[i])) {
            df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
            df_error_prefix(err, "%s: tensor '%s'", path, src[i].t->name);
            goto fail;
        }
        it->name = w->names[i];
        it->t = df_tensor_at(w->bufs[i], 0, as);
        it->ndim = a->ndim;
        memcpy(it->shape, a->shape, sizeof it->shape);
        it->nelem = nelem;
        w->bytes += w->bufs[i]->padded;
        if (q8) {
            it->scale = df_tensor_at(w->scale_bufs[i], 0, DF_F32);
            w->bytes += w->scale_bufs[i]->padded;
            if (nelem > unpack_elems)
                unpack_elems = nelem;
            rc = upload_quant8(xfer, w->bufs[i], w->scale_bufs[i], &src[i], nelem, rows, path, err);
        } else {
            rc = upload(xfer, w->bufs[i], &src[i], nelem, as, path, err);
        }
        if (rc != DF_OK)
            goto fail;
        if (df_strmap_put(w->index, a->name, strlen(a->name), (int64_t)i) != 0) {
            df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    if (unpack_elems) {
        if (!(w->unpack = df_vk_buffer_new(dev, unpack_elems * 2, err))) {
            df_error_prefix(err, "%s: the buffer 8-bit weights are dequantized into", path);
            goto fail;
        }
        w->bytes += w->unpack->padded;
        for (size_t i = 0; i < w->count; i++)
            if (w->items[i].t.dtype == DF_I8)
                w->items[i].unpacked = df_tensor_at(w->unpack, 0, DF_F16);
    }
    free(src);
    free(used);
    return w;
fail:
    free(src);
    free(used);
    df_weights_destroy(&w);
    return NULL;
}

int df_weight_values(df_vk_batch_t *batch, const df_weight *w, df_tensor *out, df_error_t *err)
{
    if (w->t.dtype != DF_I8) {
        *out = w->t;
        return DF_OK;
    }
    *out = w->unpacked;
    uint32_t rows = (uint32_t)w->shape[0];
    int rc = df_dequant_rows(batch, rows, (uint32_t)(w->nelem / rows), DF_WEIGHT_I8_BLOCK, w->t, w->scale,
                             w->unpacked, err);
    return rc == DF_OK ? rc : df_error_prefix(err, "%s", w->name);
}

const df_weight *df_weights_find(const df_weights_t *self, const char *name)
{
    int64_t at;
    return df_strmap_get(self->index, name, strlen(name), &at) ? &self->items[at] : NULL;
}

int df_weights_get(const df_weights_t *self, const char *name, const df_weight **out, df_error_t *err)
{
    *out = df_weights_find(self, name);
    return *out ? DF_OK : df_error_set(err, DF_E_NOT_FOUND, "weights: no tensor '%s'", name);
}

uint64_t df_weights_bytes(const df_weights_t *self) { return self->bytes; }
size_t df_weights_count(const df_weights_t *self) { return self->count; }
const df_weight *df_weights_at(const df_weights_t *self, size_t i) { return i < self->count ? &self->items[i] : NULL; }

int df_weights_attach(df_weights_t *self, const char *name, df_vk_buffer_t **down_buf, df_vk_buffer_t **up_buf,
                      uint32_t rank, float scale, const char *down_key, const char *up_key, df_error_t *err)
{
    int64_t at;
    struct owned_adapter *o = NULL;
    int rc = DF_OK;
    if (!df_strmap_get(self->index, name, strlen(name), &at))
        rc = df_error_set(err, DF_E_NOT_FOUND, "weights: no tensor '%s' to adapt", name);
    else if (!(o = calloc(1, sizeof *o)))
        rc = df_error_set(err, DF_E_NOMEM, "weights: out of memory");
    if (rc != DF_OK) {
        df_vk_buffer_destroy(down_buf);
        df_vk_buffer_destroy(up_buf);
        return rc;
    }
    df_weight *w = &self->items[at];
    o->down = *down_buf, o->up = *up_buf;
    *down_buf = *up_buf = NULL;
    o->a.down = df_tensor_at(o->down, 0, DF_F32);
    o->a.up = df_tensor_at(o->up, 0, DF_F32);
    o->a.rank = rank;
    o->a.scale = scale;
    o->weight = w->name;
    o->down_key = down_key ? strdup(down_key) : NULL;
    o->up_key = up_key ? strdup(up_key) : NULL;
    o->a.down_key = o->down_key;
    o->a.up_key = o->up_key;
    /* Appended to the weight's chain, so adapters apply in order. */
    df_weight_adapter **tail = (df_weight_adapter **)&w->adapters;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &o->a;
    /* Kept in attach order, so that adapter i is the i-th attached. */
    struct owned_adapter **end = &self->adapters;
    while (*end)
        end = &(*end)->next_owned;
    *end = o;
    self->nadapters++;
    return DF_OK;
}

int df_weights_grads(df_weights_t *self, df_vk_batch_t *batch, df_error_t *err)
{
    if (!self->grad_bufs && !(self->grad_bufs = calloc(self->count ? self->count : 1, sizeof *self->grad_bufs)))
        return df_error_set(err, DF_E_NOMEM, "weights: out of memory");
    for (size_t i = 0; i < self->count; i++) {
        df_weight *w = &self->items[i];
        if (self->grad_bufs[i])
            continue;
        if (w->t.dtype != DF_F32)
            return df_error_set(err, DF_E_UNSUPPORTED, "weights: full fine-tuning needs f32 weights; '%s' is %s",
                                w->name, df_dtype_name(w->t.dtype));
        if (!(self->grad_bufs[i] = df_vk_buffer_new(df_vk_batch_device(batch), w->nelem * 4, err)))
            return err && err->code ? err->code : DF_E_DEVICE_MEMORY;
        w->grad = df_tensor_at(self->grad_bufs[i], 0, DF_F32);
        int rc = df_vk_batch_fill(batch, self->grad_bufs[i], 0, w->nelem * 4, 0, err);
        if (rc != DF_OK)
            return rc;
    }
    return DF_OK;
}

void df_weights_drop_grads(df_weights_t *self)
{
    for (size_t i = 0; self->grad_bufs && i < self->count; i++) {
        df_vk_buffer_destroy(&self->grad_bufs[i]);
        self->items[i].grad = (df_tensor){{NULL, 0}, DF_F32};
    }
}

int df_weights_adapter_grads(df_weights_t *self, df_vk_batch_t *batch, df_error_t *err)
{
    df_vk_device_t *dev = df_vk_batch_device(batch);
    for (struct owned_adapter *o = self->adapters; o; o = o->next_owned) {
        if (o->grad_down)
            continue;
        uint64_t nd = o->down->size, nu = o->up->size;
        if (!(o->grad_down = df_vk_buffer_new(dev, nd, err)) || !(o->grad_up = df_vk_buffer_new(dev, nu, err))) {
            df_vk_buffer_destroy(&o->grad_down);
            return err && err->code ? err->code : DF_E_DEVICE_MEMORY;
        }
        int rc = df_vk_batch_fill(batch, o->grad_down, 0, nd, 0, err);
        if (rc == DF_OK)
            rc = df_vk_batch_fill(batch, o->grad_up, 0, nu, 0, err);
        if (rc != DF_OK)
            return rc;
        o->a.grad_down = df_tensor_at(o->grad_down, 0, DF_F32);
        o->a.grad_up = df_tensor_at(o->grad_up, 0, DF_F32);
    }
    return DF_OK;
}

const df_weight_adapter *df_weights_adapter_at(const df_weights_t *self, size_t i, const char **weight_name)
{
    for (struct owned_adapter *o = self->adapters; o; o = o->next_owned, i--)
        if (i == 0) {
            if (weight_name)
                *weight_name = o->weight;
            return &o->a;
        }
    return NULL;
}

void df_weights_detach_all(df_weights_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        self->items[i].adapters = NULL;
    while (self->adapters) {
        struct owned_adapter *o = self->adapters;
        self->adapters = o->next_owned;
        df_vk_buffer_destroy(&o->down);
        df_vk_buffer_destroy(&o->up);
        df_vk_buffer_destroy(&o->grad_down);
        df_vk_buffer_destroy(&o->grad_up);
        free(o->down_key);
        free(o->up_key);
        free(o);
    }
    self->nadapters = 0;
}

size_t df_weights_adapter_count(const df_weights_t *self) { return self->nadapters; }
