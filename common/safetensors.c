/*  safetensors.c - see safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"

struct _df_safetensors_t {
    char *path;
    const uint8_t *map;     /* the whole file */
    size_t map_size;
    int owns_map;           /* munmap on destroy */
    const uint8_t *data;    /* data section */
    uint64_t data_size;
    df_st_tensor *tensors;
    size_t count;
    char **names;           /* owned storage behind tensors[i].name */
    char **meta_keys, **meta_values;
    size_t meta_count;
};

/* ---------------------------------------------------------------- reading */

static int fail(df_error_t *err, const df_safetensors_t *st, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*  Sets "path: tensor 'name': reason" (or "path: reason"). */
static int fail(df_error_t *err, const df_safetensors_t *st, const char *tensor, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (tensor)
        return df_error_set(err, DF_E_FORMAT, "%s: tensor '%.120s': %s", st->path, tensor, why);
    return df_error_set(err, DF_E_FORMAT, "%s: %s", st->path, why);
}

/*  JSON integer in [0, 2^63): safetensors' numbers are all non-negative. */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_tensor(df_safetensors_t *st, const char *name, const json_t *desc, df_st_tensor *t,
                        df_error_t *err)
{
    if (!json_is_object(desc))
        return fail(err, st, name, "entry is not a JSON object");
    const json_t *jd = json_object_get(desc, "dtype");
    const json_t *js = json_object_get(desc, "shape");
    const json_t *jo = json_object_get(desc, "data_offsets");
    if (!json_is_string(jd))
        return fail(err, st, name, "missing or non-string \"dtype\"");
    if (!json_is_array(js))
        return fail(err, st, name, "missing or non-array \"shape\"");
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return fail(err, st, name, "\"data_offsets\" must be [begin, end]");
    if (json_object_size(desc) != 3)
        return fail(err, st, name, "unexpected keys besides dtype, shape, data_offsets");

    int dt = df_dtype_parse(json_string_value(jd));
    if (dt < 0)
        return fail(err, st, name, "unsupported dtype \"%.32s\" (F32, F16, BF16, I32, I64, U8, BOOL)",
                    json_string_value(jd));
    t->name = name;
    t->dtype = (df_dtype)dt;

    size_t nd = json_array_size(js);
    if (nd > DF_ST_MAX_DIMS)
        return fail(err, st, name, "%zu dimensions (at most %d)", nd, DF_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t nelem = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(js, i), &d) != 0)
            return fail(err, st, name, "shape[%zu] is not a non-negative integer", i);
        /* Multiply with an overflow check: a hostile shape must not wrap to a
         * size that happens to match the offsets. */
        if (d != 0 && nelem > UINT64_MAX / d)
            return fail(err, st, name, "shape overflows 64 bits");
        nelem *= d;
        t->shape[i] = (int64_t)d;
    }
    t->nelem = nelem;
    uint64_t esize = df_dtype_size(t->dtype);
    if (nelem > UINT64_MAX / esize)
        return fail(err, st, name, "shape overflows 64 bits");

    uint64_t begin, end;
    if (get_u64(json_array_get(jo, 0), &begin) != 0 || get_u64(json_array_get(jo, 1), &end) != 0)
        return fail(err, st, name, "data_offsets are not non-negative integers");
    if (begin > end)
        return fail(err, st, name, "data_offsets [%llu, %llu] run backwards", (unsigned long long)begin,
                    (unsigned long long)end);
    if (end > st->data_size)
        return fail(err, st, name, "data_offsets [%llu, %llu] pass the end of the data (%llu bytes)",
                    (unsigned long long)begin, (unsigned long long)end,
                    (unsigned long long)st->data_size);
    if (end - begin != nelem * esize)
        return fail(err, st, name, "%llu bytes for %llu %s elements (needs %llu)",
                    (unsigned long long)(end - begin), (unsigned long long)nelem,
                    df_dtype_name(t->dtype), (unsigned long long)(nelem * esize));
    t->offset = begin;
    t->nbytes = end - begin;
    t->data = st->data + begin;
    return DF_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const df_st_tensor *x = *(df_st_tensor *const *)a, *y = *(df_st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/*  No two tensors share a byte. Empty tensors occupy nothing and never clash. */
static int check_overlap(df_safetensors_t *st, df_error_t *err)
{
    if (st->count < 2)
        return DF_OK;
    df_st_tensor **by_off = malloc(st->count * sizeof *by_off);
    if (!by_off)
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->count; i++)
        by_off[i] = &st->tensors[i];
    qsort(by_off, st->count, sizeof *by_off, cmp_by_offset);
    int rc = DF_OK;
    const df_st_tensor *last = NULL; /* the non-empty tensor reaching furthest so far */
    for (size_t i = 0; i < st->count && rc == DF_OK; i++) {
        const df_st_tensor *t = by_off[i];
        if (t->nbytes == 0)
            continue;
        if (last && t->offset < last->offset + last->nbytes)
            rc = fail(err, st, t->name, "bytes [%llu, %llu) overlap tensor '%.120s'",
                      (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                      last->name);
        if (!last || t->offset + t->nbytes > last->offset + last->nbytes)
            last = t;
    }
    free(by_off);
    return rc;
}

static int parse_metadata(df_safetensors_t *st, const json_t *meta, df_error_t *err)
{
    if (!json_is_object(meta))
        return fail(err, st, NULL, "\"__metadata__\" is not a JSON object");
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", st->path);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)meta, key, v) {
        if (!json_is_string(v))
            return fail(err, st, NULL, "metadata \"%.120s\" is not a string", key);
        st->meta_keys[st->meta_count] = strdup(key);
        st->meta_values[st->meta_count] = strdup(json_string_value(v));
        st->meta_count++;
        if (!st->meta_keys[st->meta_count - 1] || !st->meta_values[st->meta_count - 1])
            return df_error_set(err, DF_E_NOMEM, "%s: out of memory", st->path);
    }
    return DF_OK;
}

static int parse(df_safetensors_t *st, df_error_t *err)
{
    if (st->map_size < 8)
        return fail(err, st, NULL, "%zu bytes: too short for a safetensors file", st->map_size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | st->map[i];
    if (hlen > DF_ST_MAX_HEADER)
        return fail(err, st, NULL, "header length %llu is over the %u-byte limit (not a safetensors file?)",
                    (unsigned long long)hlen, DF_ST_MAX_HEADER);
    if (hlen > st->map_size - 8)
        return fail(err, st, NULL, "header length %llu passes the end of the file (%zu bytes): truncated?",
                    (unsigned long long)hlen, st->map_size);
    if (hlen < 2 || st->map[8] != '{')
        return fail(err, st, NULL, "header does not start with a JSON object (not a safetensors file?)");
    st->data = st->map + 8 + hlen;
    st->data_size = st->map_size - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)st->map + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, st, NULL, "header JSON: %s at byte %d", jerr.text, jerr.position);
    int rc = DF_OK;
    if (!json_is_object(root)) {
        rc = fail(err, st, NULL, "header is not a JSON object");
        goto out;
    }
    size_t n = json_object_size(root);
    const json_t *meta = json_object_get(root, "__metadata__");
    if (meta)
        n--;
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->names = calloc(n ? n : 1, sizeof *st->names);
    if (!st->tensors || !st->names) {
        rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", st->path);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        if (key[0] == '\0') {
            rc = fail(err, st, NULL, "a tensor has an empty name");
            goto out;
        }
        st->names[st->count] = strdup(key);
        if (!st->names[st->count]) {
            rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", st->path);
            goto out;
        }
        rc = parse_tensor(st, st->names[st->count], v, &st->tensors[st->count], err);
        st->count++;
        if (rc != DF_OK)
            goto out;
    }
    if (meta && (rc = parse_metadata(st, meta, err)) != DF_OK)
        goto out;
    rc = check_overlap(st, err);
out:
    json_decref(root);
    return rc;
}

static df_safetensors_t *alloc_reader(const char *label, df_error_t *err)
{
    df_safetensors_t *st = calloc(1, sizeof *st);
    if (st)
        st->path = strdup(label ? label : "(memory)");
    if (!st || !st->path) {
        free(st);
        df_error_set(err, DF_E_NOMEM, "safetensors: out of memory");
        return NULL;
    }
    return st;
}

df_safetensors_t *df_safetensors_from_memory(const void *buf, size_t size, const char *label,
                                             df_error_t *err)
{
    df_safetensors_t *st = alloc_reader(label, err);
    if (!st)
        return NULL;
    st->map = buf;
    st->map_size = size;
    if (parse(st, err) != DF_OK)
        df_safetensors_destroy(&st);
    return st;
}

df_safetensors_t *df_safetensors_open(const char *path, df_error_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        df_error_set(err, errno == ENOENT ? DF_E_NOT_FOUND : DF_E_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        df_error_set(err, DF_E_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    df_safetensors_t *st = alloc_reader(path, err);
    if (!st) {
        close(fd);
        return NULL;
    }
    st->map_size = (size_t)sb.st_size;
    if (st->map_size > 0) {
        void *m = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            df_error_set(err, DF_E_IO, "%s: mmap: %s", path, strerror(errno));
            close(fd);
            df_safetensors_destroy(&st);
            return NULL;
        }
        st->map = m;
        st->owns_map = 1;
    } else {
        st->map = (const uint8_t *)"";
    }
    close(fd); /* the mapping keeps the file */
    if (parse(st, err) != DF_OK)
        df_safetensors_destroy(&st);
    return st;
}

void df_safetensors_destroy(df_safetensors_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_safetensors_t *st = *self_p;
    if (st->owns_map)
        munmap((void *)st->map, st->map_size);
    for (size_t i = 0; i < st->count; i++)
        free(st->names[i]);
    for (size_t i = 0; i < st->meta_count; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->names);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    free(st);
    *self_p = NULL;
}

const char *df_safetensors_path(const df_safetensors_t *self) { return self->path; }
size_t df_safetensors_count(const df_safetensors_t *self) { return self->count; }

const df_st_tensor *df_safetensors_at(const df_safetensors_t *self, size_t i)
{
    return i < self->count ? &self->tensors[i] : NULL;
}

const df_st_tensor *df_safetensors_find(const df_safetensors_t *self, const char *name)
{
    /* Linear: a checkpoint has ~2.5k tensors and model loading looks each up
     * once; the loader builds its own index where it needs one. */
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->tensors[i].name, name) == 0)
            return &self->tensors[i];
    return NULL;
}

const char *df_safetensors_metadata(const df_safetensors_t *self, const char *key)
{
    for (size_t i = 0; i < self->meta_count; i++)
        if (strcmp(self->meta_keys[i], key) == 0)
            return self->meta_values[i];
    return NULL;
}

int df_st_tensor_to_f32(const df_st_tensor *t, float *dst, df_error_t *err)
{
    /* The mapping has no alignment promise beyond the file's own layout, so
     * read element by element through memcpy. */
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DF_F32:
        memcpy(dst, p, t->nelem * 4);
        return DF_OK;
    case DF_F16:
    case DF_BF16:
        for (uint64_t i = 0; i < t->nelem; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t->dtype == DF_F16 ? df_half_to_float(h) : df_bf16_to_float(h);
        }
        return DF_OK;
    default:
        return df_error_set(err, DF_E_FORMAT, "tensor '%s': dtype %s is not a float type", t->name,
                            df_dtype_name(t->dtype));
    }
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    char *name;
    df_dtype dtype;
    int ndim;
    int64_t shape[DF_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    df_st_fill_fn fill; /* or bytes from fill(fill_ctx) at write time */
    void *fill_ctx;
} writer_entry;

struct _df_st_writer_t {
    writer_entry *entries;
    size_t count, cap;
    json_t *meta;
};

df_st_writer_t *df_st_writer_new(void)
{
    df_st_writer_t *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        w = NULL;
    }
    return w;
}

void df_st_writer_destroy(df_st_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_st_writer_t *w = *self_p;
    for (size_t i = 0; i < w->count; i++)
        free(w->entries[i].name);
    free(w->entries);
    json_decref(w->meta);
    free(w);
    *self_p = NULL;
}

static int add_entry(df_st_writer_t *self, const char *name, df_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, df_st_fill_fn fill, void *ctx, df_error_t *err)
{
    if (!name || !name[0] || strcmp(name, "__metadata__") == 0)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: bad tensor name");
    if (df_dtype_size(dtype) == 0)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: '%s': unknown dtype", name);
    if (ndim < 0 || ndim > DF_ST_MAX_DIMS)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: '%s': %d dimensions", name, ndim);
    uint64_t n = df_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > UINT64_MAX / (uint64_t)shape[i]))
            return df_error_set(err, DF_E_INVALID, "safetensors writer: '%s': bad shape", name);
        n *= (uint64_t)shape[i];
    }
    if (n > 0 && !data && !fill)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: '%s': no data", name);
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->entries[i].name, name) == 0)
            return df_error_set(err, DF_E_INVALID, "safetensors writer: tensor '%s' added twice", name);
    if (self->count == self->cap) {
        size_t cap = self->cap ? 2 * self->cap : 64;
        writer_entry *e = realloc(self->entries, cap * sizeof *e);
        if (!e)
            return df_error_set(err, DF_E_NOMEM, "safetensors writer: out of memory");
        self->entries = e;
        self->cap = cap;
    }
    writer_entry *e = &self->entries[self->count];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name)))
        return df_error_set(err, DF_E_NOMEM, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->nbytes = n;
    e->data = data;
    e->fill = fill;
    e->fill_ctx = ctx;
    self->count++;
    return DF_OK;
}

int df_st_writer_add(df_st_writer_t *self, const char *name, df_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, df_error_t *err)
{
    return add_entry(self, name, dtype, ndim, shape, data, NULL, NULL, err);
}

int df_st_writer_add_fill(df_st_writer_t *self, const char *name, df_dtype dtype, int ndim, const int64_t *shape,
                          df_st_fill_fn fill, void *ctx, df_error_t *err)
{
    if (!fill)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: '%s': no fill function", name ? name : "?");
    return add_entry(self, name, dtype, ndim, shape, NULL, fill, ctx, err);
}

int df_st_writer_set_metadata(df_st_writer_t *self, const char *key, const char *value, df_error_t *err)
{
    if (!key || !value || json_object_set_new(self->meta, key, json_string(value)) != 0)
        return df_error_set(err, DF_E_INVALID, "safetensors writer: bad metadata entry");
    return DF_OK;
}

static const char *st_dtype_name(df_dtype t)
{
    switch (t) {
    case DF_F32: return "F32";
    case DF_F16: return "F16";
    case DF_BF16: return "BF16";
    case DF_I32: return "I32";
    case DF_I64: return "I64";
    case DF_U8: return "U8";
    case DF_I8: return "I8";
    case DF_BOOL: return "BOOL";
    default: return "?";
    }
}

/*  The header JSON, padded with spaces to a multiple of 8 so the data section
 *  (and every tensor whose offset is a multiple of its element size) stays
 *  aligned in a mapping, as the reference writer does. */
static char *build_header(df_st_writer_t *self, size_t *len, df_error_t *err)
{
    json_t *root = json_object();
    if (!root)
        goto nomem;
    if (json_object_size(self->meta) > 0 && json_object_set(root, "__metadata__", self->meta) != 0)
        goto nomem;
    uint64_t off = 0;
    for (size_t i = 0; i < self->count; i++) {
        const writer_entry *e = &self->entries[i];
        json_t *shape = json_array();
        json_t *desc = shape ? json_object() : NULL;
        if (!desc) {
            json_decref(shape);
            goto nomem;
        }
        for (int d = 0; d < e->ndim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(desc, "dtype", json_string(st_dtype_name(e->dtype)));
        json_object_set_new(desc, "shape", shape);
        json_object_set_new(desc, "data_offsets",
                            json_pack("[I,I]", (json_int_t)off, (json_int_t)(off + e->nbytes)));
        if (json_object_set_new(root, e->name, desc) != 0)
            goto nomem;
        off += e->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        goto nomem;
    size_t n = strlen(s);
    size_t padded = (n + 7) & ~(size_t)7;
    char *out = realloc(s, padded + 1);
    if (!out) {
        free(s);
        goto nomem;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
nomem:
    json_decref(root);
    df_error_set(err, DF_E_NOMEM, "safetensors writer: out of memory");
    return NULL;
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1;
}

int df_st_writer_write(df_st_writer_t *self, const char *path, df_error_t *err)
{
    size_t hlen;
    char *header = build_header(self, &hlen, err);
    if (!header)
        return err ? err->code : DF_E_NOMEM;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        free(header);
        return df_error_set(err, DF_E_INVALID, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(header);
        return df_error_set(err, DF_E_IO, "%s: %s", tmp, strerror(e));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int bad = write_all(f, len8, 8) || write_all(f, header, hlen);
    int e = errno, rc = DF_OK;
    for (size_t i = 0; i < self->count && !bad; i++) {
        const writer_entry *en = &self->entries[i];
        if (!en->fill) {
            bad = write_all(f, en->data, en->nbytes);
            e = errno;
            continue;
        }
        void *buf = malloc(en->nbytes ? en->nbytes : 1);
        if (!buf)
            rc = df_error_set(err, DF_E_NOMEM, "%s: no memory for tensor '%s'", path, en->name);
        else
            rc = en->fill(en->fill_ctx, en->name, buf, en->nbytes, err);
        bad = rc != DF_OK || write_all(f, buf, en->nbytes);
        e = errno;
        free(buf);
    }
    free(header);
    if (!bad) {
        bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
        e = errno;
    }
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        if (!bad)
            e = errno;
        unlink(tmp);
        if (rc != DF_OK)
            return rc; /* the fill function's own error */
        return df_error_set(err, DF_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return DF_OK;
}
