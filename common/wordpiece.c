/*  wordpiece.c - see wordpiece.h. */
#include "wordpiece.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "unicode.h"

#define MAX_WORD_CHARS 100 /* longer words are [UNK] whole */

struct _df_wordpiece_t {
    char **tokens;           /* by id */
    size_t count;
    df_strmap_t *ids;
    int32_t unk;
    int32_t special[5];      /* [PAD] [UNK] [CLS] [SEP] [MASK]; -1 when absent */
};

void df_wordpiece_destroy(df_wordpiece_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_wordpiece_t *t = *self_p;
    for (size_t i = 0; i < t->count; i++)
        free(t->tokens[i]);
    free(t->tokens);
    df_strmap_destroy(&t->ids);
    free(t);
    *self_p = NULL;
}

df_wordpiece_t *df_wordpiece_load(const char *path, df_error_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        df_error_set(err, DF_E_NOT_FOUND, "wordpiece: cannot open %s", path);
        return NULL;
    }
    df_wordpiece_t *t = calloc(1, sizeof *t);
    int rc = t && (t->ids = df_strmap_new()) ? DF_OK : df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while (rc == DF_OK && (len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (t->count == cap) {
            char **g = realloc(t->tokens, (cap = cap ? 2 * cap : 1024) * sizeof *g);
            if (!g) {
                rc = df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
                break;
            }
            t->tokens = g;
        }
        if (!(t->tokens[t->count] = strdup(line))) {
            rc = df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
            break;
        }
        if (df_strmap_put(t->ids, line, (size_t)len, (int64_t)t->count) != 0)
            rc = df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
        t->count++;
        if (t->count > 10000000)
            rc = df_error_set(err, DF_E_FORMAT, "wordpiece: %s has more than 10 million lines", path);
    }
    free(line);
    fclose(f);
    if (rc == DF_OK) {
        static const char *names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        for (int i = 0; i < 5; i++)
            t->special[i] = df_wordpiece_id(t, names[i]);
        t->unk = t->special[1];
        if (t->count == 0 || t->unk < 0)
            rc = df_error_set(err, DF_E_FORMAT, "wordpiece: %s is not a WordPiece vocabulary (%s)", path,
                              t->count ? "no [UNK] token" : "empty");
    }
    if (rc != DF_OK)
        df_wordpiece_destroy(&t);
    return t;
}

size_t df_wordpiece_size(const df_wordpiece_t *self) { return self->count; }

int32_t df_wordpiece_id(const df_wordpiece_t *self, const char *token)
{
    int64_t v;
    return df_strmap_get(self->ids, token, strlen(token), &v) ? (int32_t)v : -1;
}

/* ---- encoding ---------------------------------------------------------- */

/*  BERT's punctuation: ASCII's non-alphanumeric printables, and \p{P}. */
static int is_punct(uint32_t cp)
{
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return 1;
    return cp > 127 && df_unicode_is_punct(cp);
}

static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

typedef struct {
    const df_wordpiece_t *t;
    int32_t *ids;
    size_t cap, n;
} sink;

static void emit(sink *s, int32_t id)
{
    if (s->n < s->cap)
        s->ids[s->n] = id;
    s->n++;
}

/*  One word (UTF-8, len bytes, chars code points) as its pieces. */
static int word_pieces(sink *s, const char *w, size_t len, size_t chars, df_error_t *err)
{
    if (chars > MAX_WORD_CHARS) {
        emit(s, s->t->unk);
        return DF_OK;
    }
    char *buf = malloc(len + 3);
    int32_t *found = malloc((len + 1) * sizeof *found);
    if (!buf || !found) {
        free(buf), free(found);
        return df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
    }
    size_t start = 0, nf = 0;
    int bad = 0;
    while (start < len && !bad) {
        /* The longest prefix of what is left that is a token (ends on a
         * character boundary: the next byte is not a continuation byte). */
        size_t end = len;
        int32_t id = -1;
        for (; end > start; end--) {
            if (end < len && ((unsigned char)w[end] & 0xC0) == 0x80)
                continue;
            size_t k = 0;
            if (start > 0)
                buf[k++] = '#', buf[k++] = '#';
            memcpy(buf + k, w + start, end - start);
            int64_t v;
            if (df_strmap_get(s->t->ids, buf, k + end - start, &v)) {
                id = (int32_t)v;
                break;
            }
        }
        if (id < 0)
            bad = 1;
        else
            found[nf++] = id, start = end;
    }
    if (bad)
        emit(s, s->t->unk);
    else
        for (size_t i = 0; i < nf; i++)
            emit(s, found[i]);
    free(buf), free(found);
    return DF_OK;
}

int df_wordpiece_encode(const df_wordpiece_t *self, const char *text, int32_t *ids, size_t cap, size_t *n,
                        df_error_t *err)
{
    sink s = {self, ids, cap, 0};
    const size_t tl = strlen(text);
    /* Each code point may become a space, itself and a space: 3 + 4 bytes. */
    char *word = malloc(tl * 8 + 8);
    if (!word)
        return df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
    size_t wl = 0, wc = 0;
    int rc = DF_OK;
    for (size_t i = 0; rc == DF_OK && i <= tl;) {
        uint32_t cp = 0;
        size_t k = i < tl ? df_utf8_decode((const uint8_t *)text + i, tl - i, &cp) : 1;
        if (i < tl && k == 0) /* a stray byte: dropped, as a control would be */
            k = 1, cp = 0;
        const int end = i == tl;
        i += k;
        /* Dropped: NUL, U+FFFD and \p{C} but tab, newline and return. */
        if (!end && (cp == 0 || cp == 0xFFFD ||
                     (cp != '\t' && cp != '\n' && cp != '\r' && (cp < 32 || df_unicode_is_control(cp)))))
            continue;
        /* Words end at whitespace as Python's str.split() sees it (controls
         * among it were dropped above). */
        const int space = end || df_unicode_is_space(cp);
        const int alone = !space && (is_punct(cp) || is_cjk(cp)); /* a token by itself */
        if ((space || alone) && wl) {
            rc = word_pieces(&s, word, wl, wc, err);
            wl = wc = 0;
        }
        if (space)
            continue;
        /* Lower case, accents removed: NFD, then the nonspacing marks go. */
        cp = df_unicode_accent_base(df_unicode_lower(cp));
        if (df_unicode_is_nonspacing_mark(cp))
            continue;
        uint8_t enc[4];
        size_t el = df_utf8_encode(cp, enc);
        memcpy(word + wl, enc, el);
        wl += el, wc++;
        if (alone && rc == DF_OK) {
            rc = word_pieces(&s, word, wl, wc, err);
            wl = wc = 0;
        }
    }
    free(word);
    *n = s.n;
    return rc;
}

/* ---- decoding ---------------------------------------------------------- */

static int is_special(const df_wordpiece_t *self, int32_t id)
{
    if (id < 0 || (size_t)id >= self->count)
        return 1;
    for (int i = 0; i < 5; i++)
        if (self->special[i] == id)
            return 1;
    return 0;
}

int df_wordpiece_decode(const df_wordpiece_t *self, const int32_t *ids, size_t n, char **text, df_error_t *err)
{
    *text = NULL;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0)
            return df_error_set(err, DF_E_RANGE, "wordpiece: id %d is outside the vocabulary", ids[i]);
        if (!is_special(self, ids[i]))
            total += strlen(self->tokens[ids[i]]) + 1;
    }
    char *joined = malloc(total), *out = malloc(total);
    if (!joined || !out) {
        free(joined), free(out);
        return df_error_set(err, DF_E_NOMEM, "wordpiece: out of memory");
    }
    /* Tokens joined by spaces, then " ##" removed: pieces rejoin their words. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_special(self, ids[i]))
            continue;
        const char *tok = self->tokens[ids[i]];
        if (k && strncmp(tok, "##", 2) == 0)
            tok += 2;
        else if (k)
            joined[k++] = ' ';
        const size_t l = strlen(tok);
        memcpy(joined + k, tok, l);
        k += l;
    }
    joined[k] = '\0';
    /* The clean-up: no space before . ? ! , or the English contractions. */
    static const char *const glue[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                          {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"},
                                          {" 're", "'re"}};
    for (size_t g = 0; g < sizeof glue / sizeof glue[0]; g++) {
        const size_t fl = strlen(glue[g][0]), tl2 = strlen(glue[g][1]);
        size_t o = 0;
        for (size_t i = 0; joined[i];) {
            if (strncmp(joined + i, glue[g][0], fl) == 0) {
                memcpy(out + o, glue[g][1], tl2);
                o += tl2, i += fl;
            } else {
                out[o++] = joined[i++];
            }
        }
        out[o] = '\0';
        char *swap = joined;
        joined = out, out = swap;
    }
    free(out);
    /* Leading and trailing spaces go (strip). */
    size_t a = 0, b = strlen(joined);
    while (joined[a] == ' ')
        a++;
    while (b > a && joined[b - 1] == ' ')
        b--;
    memmove(joined, joined + a, b - a);
    joined[b - a] = '\0';
    *text = joined;
    return DF_OK;
}
