/*  clip_tokenizer.c - see clip_tokenizer.h. */
#include "clip_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "clip_text.h"
#include "strmap.h"
#include "unicode.h"

/* The reference keeps the first 49152 - 256 - 2 lines after the header:
 * 48894 merges, so 512 byte tokens + merges + 2 special tokens = 49408. */
#define CLIP_MAX_MERGES (49152 - 256 - 2)

typedef struct {
    uint64_t key;   /* pair_key(left, right); 0 marks an empty slot */
    int32_t rank;
    int32_t merged; /* id of the joined symbol */
} merge_slot;

struct _df_clip_tokenizer_t {
    df_strmap_t *vocab;      /* token text -> id */
    size_t vocab_size;       /* max id + 1 */
    int32_t byte_id[256];    /* id of a byte's character */
    int32_t byte_end_id[256];/* ... as the last of a word, "</w>" appended */
    int32_t bos, eos;
    merge_slot *merges;      /* open addressing, power-of-two size */
    size_t merge_cap;
};

uint32_t df_clip_byte_char(int b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (uint32_t)b;
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff)))
            n++;
    return 256 + n;
}

void df_clip_byte_order(int order[256])
{
    int k = 0;
    for (int b = 0; b < 256; b++)
        if (df_clip_byte_char(b) < 256)
            order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (df_clip_byte_char(b) >= 256)
            order[k++] = b;
}

/* Keys add 1 to each id so that no real pair hashes to the empty key 0. */
static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static merge_slot *merge_find(const df_clip_tokenizer_t *t, uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 20) & (t->merge_cap - 1);
    while (t->merges[i].key && t->merges[i].key != key)
        i = (i + 1) & (t->merge_cap - 1);
    return &t->merges[i];
}

void df_clip_tokenizer_destroy(df_clip_tokenizer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_clip_tokenizer_t *t = *self_p;
    df_strmap_destroy(&t->vocab);
    free(t->merges);
    free(t);
    *self_p = NULL;
}

static df_clip_tokenizer_t *tok_new(size_t nmerges, df_error_t *err)
{
    df_clip_tokenizer_t *t = calloc(1, sizeof *t);
    if (t && (t->vocab = df_strmap_new())) {
        t->merge_cap = 16;
        while (t->merge_cap < 2 * nmerges + 2)
            t->merge_cap *= 2;
        t->merges = calloc(t->merge_cap, sizeof *t->merges);
    }
    if (!t || !t->vocab || !t->merges) {
        df_clip_tokenizer_destroy(&t);
        df_error_set(err, DF_E_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    return t;
}

static int32_t lookup(const df_clip_tokenizer_t *t, const char *s, size_t n)
{
    int64_t v;
    return df_strmap_get(t->vocab, s, n, &v) ? (int32_t)v : -1;
}

int32_t df_clip_tokenizer_id(const df_clip_tokenizer_t *self, const char *token)
{
    return lookup(self, token, strlen(token));
}

/*  Resolves the byte and special tokens once the vocabulary is in place. */
static int finish(df_clip_tokenizer_t *t, const char *src, df_error_t *err)
{
    for (int b = 0; b < 256; b++) {
        uint8_t u[4 + 4];
        size_t n = df_utf8_encode(df_clip_byte_char(b), u);
        t->byte_id[b] = lookup(t, (char *)u, n);
        memcpy(u + n, "</w>", 4);
        t->byte_end_id[b] = lookup(t, (char *)u, n + 4);
        if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0)
            return df_error_set(err, DF_E_FORMAT, "%s: the vocabulary lacks the token for byte 0x%02x", src, b);
    }
    t->bos = lookup(t, "<|startoftext|>", 15);
    t->eos = lookup(t, "<|endoftext|>", 13);
    if (t->bos < 0 || t->eos < 0)
        return df_error_set(err, DF_E_FORMAT, "%s: the vocabulary lacks <|startoftext|> or <|endoftext|>", src);
    return DF_OK;
}

/*  Adds merge number `rank` from a line "left right". */
static int add_merge(df_clip_tokenizer_t *t, char *line, int32_t rank, const char *src, size_t lineno,
                     df_error_t *err)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))
        return df_error_set(err, DF_E_FORMAT, "%s:%zu: a merge is two tokens separated by one space, not \"%.60s\"",
                            src, lineno, line);
    size_t la = (size_t)(sp - line), lb = n - la - 1;
    int32_t a = lookup(t, line, la), b = lookup(t, sp + 1, lb);
    /* The joined symbol: both halves without the separating space. */
    memmove(sp, sp + 1, lb + 1);
    int32_t m = lookup(t, line, la + lb);
    if (a < 0 || b < 0 || m < 0)
        return df_error_set(err, DF_E_FORMAT, "%s:%zu: merge \"%.60s\" uses a token the vocabulary lacks", src,
                            lineno, line);
    /* The reference builds dict(zip(merges, ranks)), so a pair listed twice
     * takes its last rank; so does this. */
    merge_slot *s = merge_find(t, pair_key(a, b));
    s->key = pair_key(a, b);
    s->rank = rank;
    s->merged = m;
    return DF_OK;
}

static int count_lines(FILE *f, size_t *n)
{
    int c, last = '\n';
    *n = 0;
    while ((c = getc(f)) != EOF) {
        if (c == '\n')
            (*n)++;
        last = c;
    }
    if (last != '\n')
        (*n)++;
    rewind(f);
    return ferror(f) ? -1 : 0;
}

df_clip_tokenizer_t *df_clip_tokenizer_load(const char *vocab_json, const char *merges_txt, df_error_t *err)
{
    FILE *mf = fopen(merges_txt, "r");
    if (!mf) {
        df_error_set(err, DF_E_NOT_FOUND, "%s: cannot open the BPE merges", merges_txt);
        return NULL;
    }
    size_t nlines;
    if (count_lines(mf, &nlines) != 0) {
        fclose(mf);
        df_error_set(err, DF_E_IO, "%s: read error", merges_txt);
        return NULL;
    }
    df_clip_tokenizer_t *t = tok_new(nlines, err);
    json_error_t jerr;
    json_t *vocab = t ? json_load_file(vocab_json, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (t && !vocab) {
        df_error_set(err, DF_E_FORMAT, "%s: %s (line %d)", vocab_json, jerr.text, jerr.line);
        goto fail;
    }
    if (!t)
        goto fail;
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        df_error_set(err, DF_E_FORMAT, "%s: expected a JSON object of token -> id", vocab_json);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 30)) {
            df_error_set(err, DF_E_FORMAT, "%s: token \"%.60s\" has no valid id", vocab_json, key);
            goto fail;
        }
        int32_t id = (int32_t)json_integer_value(v);
        if (df_strmap_put(t->vocab, key, strlen(key), id) != 0) {
            df_error_set(err, DF_E_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        if ((size_t)id + 1 > t->vocab_size)
            t->vocab_size = (size_t)id + 1;
    }
    char line[1024];
    size_t lineno = 0;
    int32_t rank = 0;
    while (fgets(line, sizeof line, mf)) {
        lineno++;
        if (lineno == 1)
            continue; /* "#version: 0.2": the reference skips the first line whatever it says */
        if (rank >= CLIP_MAX_MERGES)
            break;
        if (line[0] == '\n' || line[0] == '\0')
            continue; /* a trailing blank line; the reference strips the text first */
        if (add_merge(t, line, rank++, merges_txt, lineno, err) != DF_OK)
            goto fail;
    }
    if (finish(t, vocab_json, err) != DF_OK)
        goto fail;
    json_decref(vocab);
    fclose(mf);
    return t;
fail:
    json_decref(vocab);
    fclose(mf);
    df_clip_tokenizer_destroy(&t);
    return NULL;
}

df_clip_tokenizer_t *df_clip_tokenizer_load_bpe_gz(const char *path, df_error_t *err)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        df_error_set(err, DF_E_NOT_FOUND, "%s: cannot open the BPE merges", path);
        return NULL;
    }
    df_clip_tokenizer_t *t = tok_new(CLIP_MAX_MERGES, err);
    char (*merges)[128] = malloc(CLIP_MAX_MERGES * sizeof *merges);
    size_t nm = 0, lineno = 0;
    char line[1024];
    if (!t || !merges) {
        df_error_set(err, DF_E_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    while (nm < CLIP_MAX_MERGES && gzgets(gz, line, sizeof line)) {
        if (++lineno == 1)
            continue;
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0)
            continue;
        if (n >= sizeof merges[0]) {
            df_error_set(err, DF_E_FORMAT, "%s:%zu: merge line too long", path, lineno);
            goto fail;
        }
        memcpy(merges[nm++], line, n + 1);
    }
    int gzerr;
    gzerror(gz, &gzerr);
    if (gzerr != Z_OK && gzerr != Z_STREAM_END) {
        df_error_set(err, DF_E_FORMAT, "%s: not a readable gzip file", path);
        goto fail;
    }
    if (nm == 0) {
        df_error_set(err, DF_E_FORMAT, "%s: no merges", path);
        goto fail;
    }
    /* The vocabulary follows from the merges: bytes, bytes ending a word,
     * each merge's joined symbol, then the two special tokens. */
    int order[256];
    df_clip_byte_order(order);
    int32_t id = 0;
    int bad = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 256; i++) {
            uint8_t u[8];
            size_t n = df_utf8_encode(df_clip_byte_char(order[i]), u);
            if (pass) {
                memcpy(u + n, "</w>", 4);
                n += 4;
            }
            bad |= df_strmap_put(t->vocab, (char *)u, n, id++);
        }
    for (size_t i = 0; i < nm; i++) {
        char joined[128];
        size_t w = 0;
        for (const char *c = merges[i]; *c; c++)
            if (*c != ' ')
                joined[w++] = *c;
        /* dict(zip(vocab, ids)) in the reference: a repeat takes the last id */
        bad |= df_strmap_put(t->vocab, joined, w, id++);
    }
    bad |= df_strmap_put(t->vocab, "<|startoftext|>", 15, id++);
    bad |= df_strmap_put(t->vocab, "<|endoftext|>", 13, id++);
    t->vocab_size = (size_t)id;
    if (bad) {
        df_error_set(err, DF_E_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nm; i++)
        if (add_merge(t, merges[i], (int32_t)i, path, i + 2, err) != DF_OK)
            goto fail;
    if (finish(t, path, err) != DF_OK)
        goto fail;
    free(merges);
    gzclose(gz);
    return t;
fail:
    free(merges);
    gzclose(gz);
    df_clip_tokenizer_destroy(&t);
    return NULL;
}

int32_t df_clip_tokenizer_bos(const df_clip_tokenizer_t *self) { return self->bos; }
int32_t df_clip_tokenizer_eos(const df_clip_tokenizer_t *self) { return self->eos; }
size_t df_clip_tokenizer_vocab_size(const df_clip_tokenizer_t *self) { return self->vocab_size; }

/*  Merges the symbols of one word in place; returns the new count. Each round
 *  finds the best-ranked adjacent pair and joins every occurrence of it, left
 *  to right without overlap, exactly as the reference does. */
static size_t bpe_word(const df_clip_tokenizer_t *t, int32_t *sym, size_t n)
{
    while (n > 1) {
        int32_t best_rank = INT32_MAX, left = -1, right = -1, merged = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            const merge_slot *s = merge_find(t, pair_key(sym[i], sym[i + 1]));
            if (s->key && s->rank < best_rank) {
                best_rank = s->rank;
                left = sym[i], right = sym[i + 1], merged = s->merged;
            }
        }
        if (merged < 0)
            break;
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && sym[i] == left && sym[i + 1] == right) {
                sym[w++] = merged;
                i += 2;
            } else {
                sym[w++] = sym[i++];
            }
        }
        n = w;
    }
    return n;
}

int df_clip_tokenizer_encode(const df_clip_tokenizer_t *self, const char *text, int32_t **ids, size_t *count,
                             df_error_t *err)
{
    *ids = NULL;
    *count = 0;
    char *clean = NULL;
    df_clip_piece *pieces = NULL;
    size_t np = 0;
    int rc = df_clip_clean(text, &clean, err);
    if (rc == DF_OK)
        rc = df_clip_pretokenize(clean, &pieces, &np, err);
    /* A piece of n bytes gives at most n tokens; specials give one. */
    int32_t *out = rc == DF_OK ? malloc((strlen(clean) + 1) * sizeof *out) : NULL;
    if (rc == DF_OK && !out)
        rc = df_error_set(err, DF_E_NOMEM, "prompt: out of memory");
    size_t k = 0;
    for (size_t p = 0; rc == DF_OK && p < np; p++) {
        const df_clip_piece *pc = &pieces[p];
        if (pc->special) {
            out[k++] = pc->special == 1 ? self->bos : self->eos;
            continue;
        }
        const uint8_t *b = (const uint8_t *)clean + pc->start;
        for (size_t i = 0; i < pc->len; i++)
            out[k + i] = i + 1 < pc->len ? self->byte_id[b[i]] : self->byte_end_id[b[i]];
        k += bpe_word(self, out + k, pc->len);
    }
    free(pieces);
    free(clean);
    if (rc != DF_OK) {
        free(out);
        return rc;
    }
    *ids = out;
    *count = k;
    return DF_OK;
}

int df_clip_tokenizer_chunks(const df_clip_tokenizer_t *self, const char *text, int32_t pad_id, int32_t **ids,
                             size_t *chunks, df_error_t *err)
{
    *ids = NULL;
    *chunks = 0;
    int32_t *tok;
    size_t n;
    int rc = df_clip_tokenizer_encode(self, text, &tok, &n, err);
    if (rc != DF_OK)
        return rc;
    const size_t per = DF_CLIP_CONTEXT - 2;
    size_t nc = n == 0 ? 1 : (n + per - 1) / per;
    int32_t *out = malloc(nc * DF_CLIP_CONTEXT * sizeof *out);
    if (!out) {
        free(tok);
        return df_error_set(err, DF_E_NOMEM, "prompt: out of memory");
    }
    for (size_t c = 0; c < nc; c++) {
        int32_t *row = out + c * DF_CLIP_CONTEXT;
        size_t first = c * per, take = n - first < per ? n - first : per;
        row[0] = self->bos;
        memcpy(row + 1, tok + first, take * sizeof *tok);
        row[1 + take] = self->eos;
        for (size_t i = 2 + take; i < DF_CLIP_CONTEXT; i++)
            row[i] = pad_id;
    }
    free(tok);
    *ids = out;
    *chunks = nc;
    return DF_OK;
}
