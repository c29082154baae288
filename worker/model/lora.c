/*  lora.c - see lora.h. */
#include "lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "safetensors.h"
#include "sdxl_arch.h"
#include "sgm_names.h"
#include "strmap.h"

enum { C_UNET, C_TE1, C_TE2, C_COUNT };

/*  Every module a LoRA can adapt: a 2-D or 4-D weight of a component. */
typedef struct {
    int component;
    char weight[128];      /* internal name of the weight */
    const df_st_tensor *down, *up, *alpha;
} module;

typedef struct {
    module *mods;
    size_t n, cap;
    df_strmap_t *by_key; /* every accepted spelling of a module -> index */
} index_t;

static void underscore(char *dst, size_t cap, const char *prefix, const char *name)
{
    size_t n = (size_t)snprintf(dst, cap, "%s%s", prefix, name);
    for (size_t i = strlen(prefix); i < n && i < cap; i++)
        if (dst[i] == '.')
            dst[i] = '_';
}

static int put_key(index_t *ix, const char *key, size_t at)
{
    return df_strmap_put(ix->by_key, key, strlen(key), (int64_t)at);
}

/*  Registers the component's weights under the kohya, PEFT and diffusers
 *  spellings of their module names. */
static int add_component(index_t *ix, const df_arch_list *arch, int comp, const df_unet_config *ucfg)
{
    static const char *const kohya[C_COUNT] = {"lora_unet_", "lora_te1_", "lora_te2_"};
    static const char *const peft[C_COUNT] = {"unet.", "text_encoder.", "text_encoder_2."};
    for (size_t i = 0; i < arch->count; i++) {
        const df_arch_tensor *a = &arch->items[i];
        size_t len = strlen(a->name);
        if (a->role != DF_ARCH_WEIGHT || (a->ndim != 2 && a->ndim != 4) || len < 8 ||
            strcmp(a->name + len - 7, ".weight") != 0)
            continue;
        if (ix->n == ix->cap) {
            size_t cap = ix->cap ? 2 * ix->cap : 1024;
            module *m = realloc(ix->mods, cap * sizeof *m);
            if (!m)
                return -1;
            ix->mods = m;
            ix->cap = cap;
        }
        module *m = &ix->mods[ix->n];
        memset(m, 0, sizeof *m);
        m->component = comp;
        snprintf(m->weight, sizeof m->weight, "%s", a->name);
        char base[128], key[256];
        snprintf(base, sizeof base, "%.*s", (int)(len - 7), a->name);
        underscore(key, sizeof key, kohya[comp], base);
        if (put_key(ix, key, ix->n))
            return -1;
        snprintf(key, sizeof key, "%s%s", peft[comp], base);
        if (put_key(ix, key, ix->n))
            return -1;
        df_sgm_ref ref;
        if (comp == C_UNET && df_sgm_unet(ucfg, a->name, &ref) == 0) { /* kohya with the original block names */
            const char *sgm = ref.name + strlen(DF_SGM_UNET);
            snprintf(base, sizeof base, "%.*s", (int)(strlen(sgm) - 7), sgm);
            underscore(key, sizeof key, kohya[comp], base);
            if (put_key(ix, key, ix->n))
                return -1;
        }
        ix->n++;
    }
    return 0;
}

/*  The part of a LoRA key after its module: which tensor of the pair it is. */
static const struct {
    const char *suffix;
    int role; /* 0 down, 1 up, 2 alpha */
} k_suffixes[] = {
    {".lora_down.weight", 0}, {".lora_up.weight", 1}, {".alpha", 2},        {".lora_A.weight", 0},
    {".lora_B.weight", 1},    {".lora.down.weight", 0}, {".lora.up.weight", 1},
};

static void list_add(char *list, size_t cap, int *count, const char *name)
{
    if (*count < 8) {
        size_t len = strlen(list);
        snprintf(list + len, cap - len, "%s%s", *count ? ", " : "", name);
    }
    (*count)++;
}

static float scalar_of(const df_st_tensor *t)
{
    float v = 0;
    if (t && t->nelem == 1 && df_st_tensor_to_f32(t, &v, NULL) == DF_OK)
        return v;
    return 0;
}

/*  W += s * up @ down on the device; up is [out, r(, 1, 1)], down
 *  [r, in(, kh, kw)]. */
static int merge_one(df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_weight *w, const module *m, float s,
                     df_error_t *err)
{
    uint64_t out = (uint64_t)w->shape[0], cols = w->nelem / out, r = (uint64_t)m->down->shape[0];
    if (w->t.dtype == DF_I8)
        return df_error_set(err, DF_E_UNSUPPORTED, "lora: %s is stored as 8-bit; a LoRA applies beside it "
                            "(unmerged), it cannot be merged into it", w->name);
    float *up = malloc(m->up->nelem * sizeof *up), *down = malloc(m->down->nelem * sizeof *down);
    df_vk_buffer_t *ub = NULL, *db = NULL;
    int rc = up && down ? DF_OK : df_error_set(err, DF_E_NOMEM, "lora: out of memory");
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(m->up, up, err);
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(m->down, down, err);
    if (rc == DF_OK && (!(ub = df_vk_buffer_new(df_vk_batch_device(batch), out * r * 4, err)) ||
                        !(db = df_vk_buffer_new(df_vk_batch_device(batch), r * cols * 4, err))))
        rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, ub, 0, up, out * r * 4, err);
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, db, 0, down, r * cols * 4, err);
    if (rc == DF_OK) {
        df_gemm_desc d = df_gemm_desc_packed(0, 0, (uint32_t)out, (uint32_t)cols, (uint32_t)r, 1);
        d.alpha = s;
        d.beta = 1;
        d.type_c = w->t.dtype;
        rc = df_gemm(batch, &d, df_ref(ub, 0), df_ref(db, 0), w->t.ref, DF_GEMM_AUTO, NULL, err);
    }
    /* The factors go with the batch's next submit. */
    if (ub)
        df_vk_batch_hold(batch, &ub, NULL);
    if (db)
        df_vk_batch_hold(batch, &db, NULL);
    free(up);
    free(down);
    return rc;
}

/*  Uploads the module's factors as an adapter of w, applied with scale s. */
static int attach_one(df_weights_t *ws, df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_weight *w,
                      const module *m, float s, df_error_t *err)
{
    uint64_t nu = m->up->nelem, nd = m->down->nelem;
    float *up = malloc(nu * sizeof *up), *down = malloc(nd * sizeof *down);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_vk_buffer_t *ub = NULL, *db = NULL;
    int rc = up && down ? DF_OK : df_error_set(err, DF_E_NOMEM, "lora: out of memory");
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(m->up, up, err);
    if (rc == DF_OK)
        rc = df_st_tensor_to_f32(m->down, down, err);
    if (rc == DF_OK && (!(ub = df_vk_buffer_new(dev, nu * 4, err)) || !(db = df_vk_buffer_new(dev, nd * 4, err))))
        rc = err && err->code ? err->code : DF_E_DEVICE_MEMORY;
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, ub, 0, up, nu * 4, err);
    if (rc == DF_OK)
        rc = df_vk_upload(xfer, db, 0, down, nd * 4, err);
    if (rc == DF_OK)
        rc = df_weights_attach(ws, w->name, &db, &ub, (uint32_t)m->down->shape[0], s, m->down->name, m->up->name, err);
    df_vk_buffer_destroy(&ub);
    df_vk_buffer_destroy(&db);
    free(up);
    free(down);
    return rc;
}

static int apply(const char *path, float scale, const df_sdxl_config *cfg, const df_lora_targets *t, int attach,
                 df_vk_batch_t *batch, df_vk_transfer_t *xfer, df_lora_stats *stats, df_error_t *err)
{
    df_safetensors_t *st = df_safetensors_open(path, err);
    if (!st)
        return err && err->code ? err->code : DF_E_IO;
    index_t ix = {.by_key = df_strmap_new()};
    df_arch_list lists[C_COUNT] = {{0}};
    int rc = ix.by_key ? DF_OK : df_error_set(err, DF_E_NOMEM, "lora: out of memory");
    if (rc == DF_OK)
        rc = df_arch_unet(&cfg->unet, &lists[C_UNET], err);
    if (rc == DF_OK)
        rc = df_arch_clip_text(&cfg->te1, &lists[C_TE1], err);
    if (rc == DF_OK)
        rc = df_arch_clip_text(&cfg->te2, &lists[C_TE2], err);
    for (int c = 0; c < C_COUNT && rc == DF_OK; c++)
        if (add_component(&ix, &lists[c], c, &cfg->unet) != 0)
            rc = df_error_set(err, DF_E_NOMEM, "lora: out of memory");

    /* Sort the file's tensors onto modules; anything else is reported. */
    char unknown[700] = "", broken[700] = "";
    int nunknown = 0, nbroken = 0;
    for (size_t i = 0; rc == DF_OK && i < df_safetensors_count(st); i++) {
        const df_st_tensor *x = df_safetensors_at(st, i);
        size_t len = strlen(x->name);
        int role = -1;
        size_t base = len;
        for (size_t k = 0; k < sizeof k_suffixes / sizeof k_suffixes[0] && role < 0; k++) {
            size_t sl = strlen(k_suffixes[k].suffix);
            if (len > sl && strcmp(x->name + len - sl, k_suffixes[k].suffix) == 0)
                role = k_suffixes[k].role, base = len - sl;
        }
        int64_t at;
        if (role < 0 || !df_strmap_get(ix.by_key, x->name, base, &at)) {
            list_add(unknown, sizeof unknown, &nunknown, x->name);
            continue;
        }
        module *m = &ix.mods[at];
        const df_st_tensor **slot = role == 0 ? &m->down : role == 1 ? &m->up : &m->alpha;
        *slot = x;
    }

    /* Check each module's pair against its weight, then merge. */
    df_weights_t *ws[C_COUNT] = {t->unet ? df_unet_weights(t->unet) : NULL,
                                 t->te1 ? df_clip_text_weights(t->te1) : NULL,
                                 t->te2 ? df_clip_text_weights(t->te2) : NULL};
    df_lora_stats s = {{0, 0, 0}, 0};
    for (int pass = 0; pass < 2 && rc == DF_OK && !nunknown; pass++) {
        for (size_t i = 0; i < ix.n && rc == DF_OK; i++) {
            module *m = &ix.mods[i];
            if (!m->down && !m->up && !m->alpha)
                continue;
            char what[300];
            snprintf(what, sizeof what, "%s (%s)", m->weight,
                     m->component == C_UNET ? "unet" : m->component == C_TE1 ? "text_encoder" : "text_encoder_2");
            if (!ws[m->component] && t->only_given)
                continue;
            const df_weight *w = ws[m->component] ? df_weights_find(ws[m->component], m->weight) : NULL;
            if (pass == 0) {
                int ok = m->down && m->up && w;
                if (ok) {
                    uint64_t r = (uint64_t)m->down->shape[0];
                    uint64_t in = m->down->nelem / (r ? r : 1), out = (uint64_t)w->shape[0];
                    ok = m->down->ndim >= 2 && m->up->ndim >= 2 && r > 0 && (uint64_t)m->up->shape[0] == out &&
                         m->up->nelem == out * r && in == w->nelem / out && m->down->ndim == w->ndim;
                    if (ok && w->ndim == 4) /* a convolution: kernel sizes agree */
                        ok = m->down->shape[2] == w->shape[2] && m->down->shape[3] == w->shape[3];
                }
                if (!ok)
                    list_add(broken, sizeof broken, &nbroken, what);
                continue;
            }
            if (nbroken)
                break;
            uint64_t r = (uint64_t)m->down->shape[0];
            float alpha = m->alpha ? scalar_of(m->alpha) : (float)r;
            rc = attach ? attach_one(ws[m->component], batch, xfer, w, m, scale * alpha / (float)r, err)
                        : merge_one(batch, xfer, w, m, scale * alpha / (float)r, err);
            s.modules[m->component]++;
            if (r > s.rank)
                s.rank = (uint32_t)r;
        }
        if (pass == 0 && nbroken)
            rc = df_error_set(err, DF_E_FORMAT,
                              "%s: %d module%s without both factors, with shapes that do not fit, or for a component "
                              "not loaded: %s%s",
                              path, nbroken, nbroken == 1 ? "" : "s", broken, nbroken > 8 ? ", ..." : "");
    }
    if (rc == DF_OK && nunknown)
        rc = df_error_set(err, DF_E_FORMAT, "%s: %d key%s name no module of this model (a LoRA for another "
                          "architecture?): %s%s",
                          path, nunknown, nunknown == 1 ? "" : "s", unknown, nunknown > 8 ? ", ..." : "");
    if (rc == DF_OK && s.modules[0] + s.modules[1] + s.modules[2] == 0 && !t->only_given)
        rc = df_error_set(err, DF_E_FORMAT, "%s: no LoRA modules in the file", path);
    if (rc == DF_OK)
        rc = df_vk_batch_submit(batch, err);
    if (stats)
        *stats = s;
    for (int c = 0; c < C_COUNT; c++)
        df_arch_list_free(&lists[c]);
    free(ix.mods);
    df_strmap_destroy(&ix.by_key);
    df_safetensors_destroy(&st);
    return rc;
}

int df_lora_merge(const char *path, float scale, const df_sdxl_config *cfg, const df_lora_targets *t,
                  df_vk_batch_t *batch, df_vk_transfer_t *xfer, df_lora_stats *stats, df_error_t *err)
{
    return apply(path, scale, cfg, t, 0, batch, xfer, stats, err);
}

int df_lora_attach(const char *path, float scale, const df_sdxl_config *cfg, const df_lora_targets *t,
                   df_vk_batch_t *batch, df_vk_transfer_t *xfer, df_lora_stats *stats, df_error_t *err)
{
    return apply(path, scale, cfg, t, 1, batch, xfer, stats, err);
}
