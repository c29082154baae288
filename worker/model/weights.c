/*  weights.c - see weights.h. */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "strmap.h"

struct _df_weights_t {
    df_weight *items;
    df_vk_buffer_t **bufs;
    char **names;
    size_t count;
    df_strmap_t *index; /* name -> position */
    uint64_t bytes;
};

void df_weights_destroy(df_weights_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_weights_t *w = *self_p;
    for (size_t i = 0; i < w->count; i++) {
        df_vk_buffer_destroy(&w->bufs[i]);
        free(w->names[i]);
    }
    free(w->items);
    free(w->bufs);
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

/*  Converts one tensor's elements to the storage type and uploads them. */
static int upload(df_vk_transfer_t *xfer, df_vk_buffer_t *buf, const df_st_tensor *t, df_dtype store,
                  const char *path, df_error_t *err)
{
    if (t->dtype == store)
        return df_vk_upload(xfer, buf, 0, t->data, t->nbytes, err);
    float *f = malloc(t->nelem * sizeof *f);
    if (!f)
        return df_error_set(err, DF_E_NOMEM, "%s: no host memory to convert '%s'", path, t->name);
    int rc = df_st_tensor_to_f32(t, f, err);
    if (rc == DF_OK)
        rc = df_vk_upload_f32(xfer, buf, 0, f, t->nelem, store, err);
    free(f);
    return rc;
}

df_weights_t *df_weights_load(df_vk_device_t *dev, df_vk_transfer_t *xfer, const df_arch_list *arch,
                              const df_safetensors_t *st, df_weight_name_fn map, void *map_ctx, df_dtype store,
                              df_error_t *err)
{
    const char *path = df_safetensors_path(st);
    if (store != DF_F32 && store != DF_F16) {
        df_error_set(err, DF_E_INVALID, "%s: weights are stored as f32 or f16", path);
        return NULL;
    }
    df_weights_t *w = calloc(1, sizeof *w);
    df_strmap_t *want = df_strmap_new();
    const df_st_tensor **found = calloc(arch->count ? arch->count : 1, sizeof *found);
    if (w) {
        w->items = calloc(arch->count ? arch->count : 1, sizeof *w->items);
        w->bufs = calloc(arch->count ? arch->count : 1, sizeof *w->bufs);
        w->names = calloc(arch->count ? arch->count : 1, sizeof *w->names);
        w->index = df_strmap_new();
    }
    if (!w || !want || !found || !w->items || !w->bufs || !w->names || !w->index) {
        df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < arch->count; i++)
        if (df_strmap_put(want, arch->items[i].name, strlen(arch->items[i].name), (int64_t)i) != 0) {
            df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }

    /* Match the file against the list: every tensor once, with its shape. */
    char extra[600] = "", shaped[600] = "", missing[600] = "";
    int n_extra = 0, s_extra = 0, n_shaped = 0, s_shaped = 0, n_missing = 0, s_missing = 0, n_bad = 0;
    for (size_t i = 0; i < df_safetensors_count(st); i++) {
        const df_st_tensor *t = df_safetensors_at(st, i);
        char name[256];
        int mine = 1;
        if (map)
            mine = map(map_ctx, t->name, name, sizeof name);
        else
            snprintf(name, sizeof name, "%s", t->name);
        if (mine <= 0)
            continue;
        int64_t at;
        if (!df_strmap_get(want, name, strlen(name), &at)) {
            list_add(extra, sizeof extra, &s_extra, &n_extra, t->name);
            continue;
        }
        const df_arch_tensor *a = &arch->items[at];
        int same = t->ndim == a->ndim;
        for (int d = 0; same && d < a->ndim; d++)
            same = t->shape[d] == a->shape[d];
        if (t->dtype != DF_F32 && t->dtype != DF_F16 && t->dtype != DF_BF16) {
            char what[300];
            snprintf(what, sizeof what, "%s (dtype %s)", t->name, df_dtype_name(t->dtype));
            list_add(shaped, sizeof shaped, &s_shaped, &n_shaped, what);
            found[at] = t; /* reported once, as mis-shaped, not missing too */
        } else if (!same) {
            char what[300], got[64], exp[64];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(exp, sizeof exp, a->ndim, a->shape);
            snprintf(what, sizeof what, "%s %s, expected %s", t->name, got, exp);
            list_add(shaped, sizeof shaped, &s_shaped, &n_shaped, what);
            found[at] = t;
        } else if (found[at]) {
            list_add(extra, sizeof extra, &s_extra, &n_extra, t->name); /* two file names for one tensor */
        } else {
            found[at] = t;
        }
    }
    for (size_t i = 0; i < arch->count; i++)
        if (!found[i])
            list_add(missing, sizeof missing, &s_missing, &n_missing, arch->items[i].name);
    n_bad = n_extra + n_shaped + n_missing;
    if (n_bad) {
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

    for (size_t i = 0; i < arch->count; i++) {
        const df_arch_tensor *a = &arch->items[i];
        const df_st_tensor *t = found[i];
        df_weight *it = &w->items[i];
        w->names[i] = strdup(a->name);
        w->bufs[i] = w->names[i] ? df_vk_buffer_new(dev, t->nelem * df_dtype_size(store), err) : NULL;
        if (!w->bufs[i]) {
            df_error_prefix(err, "%s: tensor '%s'", path, t->name);
            w->count = i + 1;
            goto fail;
        }
        w->count = i + 1;
        it->name = w->names[i];
        it->t = df_tensor_at(w->bufs[i], 0, store);
        it->ndim = a->ndim;
        memcpy(it->shape, a->shape, sizeof it->shape);
        it->nelem = t->nelem;
        w->bytes += w->bufs[i]->padded;
        if (upload(xfer, w->bufs[i], t, store, path, err) != DF_OK ||
            df_strmap_put(w->index, a->name, strlen(a->name), (int64_t)i) != 0) {
            df_error_set(err, DF_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    df_strmap_destroy(&want);
    free(found);
    return w;
fail:
    df_strmap_destroy(&want);
    free(found);
    df_weights_destroy(&w);
    return NULL;
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
