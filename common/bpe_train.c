/*  bpe_train.c - see bpe_train.h. Plain quadratic counting: the corpora are
 *  a few thousand bytes and the runs a few hundred merges. */
#include "bpe_train.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "unicode.h"

typedef struct {
    char **sym; /* symbols, each a UTF-8 string in CLIP's byte spelling */
    size_t n;
    int count;  /* occurrences of the word in the corpus */
} word;

static void free_words(word *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < w[i].n; j++)
            free(w[i].sym[j]);
        free(w[i].sym);
    }
    free(w);
}

/*  The corpus as distinct words with counts, each spelled as byte symbols
 *  with the last one marked "</w>". */
static int split_corpus(const char *corpus, word **out, size_t *nout, df_error_t *err)
{
    char *clean;
    df_clip_piece *p;
    size_t np;
    int rc = df_clip_clean(corpus, &clean, err);
    if (rc != DF_OK)
        return rc;
    if ((rc = df_clip_pretokenize(clean, &p, &np, err)) != DF_OK) {
        free(clean);
        return rc;
    }
    word *w = calloc(np ? np : 1, sizeof *w);
    size_t nw = 0;
    for (size_t i = 0; w && i < np; i++) {
        if (p[i].special)
            continue;
        size_t k;
        /* Spell the piece. */
        char **sym = malloc(p[i].len * sizeof *sym);
        for (size_t j = 0; sym && j < p[i].len; j++) {
            uint8_t u[8];
            size_t l = df_utf8_encode(df_clip_byte_char((uint8_t)clean[p[i].start + j]), u);
            if (j + 1 == p[i].len) {
                memcpy(u + l, "</w>", 4);
                l += 4;
            }
            sym[j] = malloc(l + 1);
            memcpy(sym[j], u, l);
            sym[j][l] = '\0';
        }
        /* Merge with an identical word seen before. */
        for (k = 0; k < nw; k++) {
            if (w[k].n != p[i].len)
                continue;
            size_t j = 0;
            while (j < w[k].n && strcmp(w[k].sym[j], sym[j]) == 0)
                j++;
            if (j == w[k].n)
                break;
        }
        if (k < nw) {
            w[k].count++;
            for (size_t j = 0; j < p[i].len; j++)
                free(sym[j]);
            free(sym);
        } else {
            w[nw].sym = sym;
            w[nw].n = p[i].len;
            w[nw].count = 1;
            nw++;
        }
    }
    free(p);
    free(clean);
    if (!w)
        return df_error_set(err, DF_E_NOMEM, "bpe: out of memory");
    *out = w;
    *nout = nw;
    return DF_OK;
}

/*  The most frequent adjacent pair over all words (count >= 2), ties to the
 *  pair that sorts first; 0 when none is left. */
static int best_pair(const word *w, size_t nw, const char **a, const char **b)
{
    int best = 1;
    *a = *b = NULL;
    for (size_t i = 0; i < nw; i++)
        for (size_t j = 0; j + 1 < w[i].n; j++) {
            const char *x = w[i].sym[j], *y = w[i].sym[j + 1];
            if (*a && strcmp(x, *a) == 0 && strcmp(y, *b) == 0)
                continue; /* already counted as the current best */
            int c = 0;
            for (size_t i2 = 0; i2 < nw; i2++)
                for (size_t j2 = 0; j2 + 1 < w[i2].n; j2++)
                    if (strcmp(w[i2].sym[j2], x) == 0 && strcmp(w[i2].sym[j2 + 1], y) == 0) {
                        c += w[i2].count;
                        j2++; /* occurrences do not overlap */
                    }
            int better = c > best;
            if (c == best && *a) {
                int o = strcmp(x, *a);
                better = o < 0 || (o == 0 && strcmp(y, *b) < 0);
            }
            if (better) {
                best = c;
                *a = x;
                *b = y;
            }
        }
    return *a != NULL;
}

static void apply_merge(word *w, size_t nw, const char *a, const char *b, const char *joined)
{
    for (size_t i = 0; i < nw; i++) {
        size_t out = 0;
        for (size_t j = 0; j < w[i].n;) {
            if (j + 1 < w[i].n && strcmp(w[i].sym[j], a) == 0 && strcmp(w[i].sym[j + 1], b) == 0) {
                free(w[i].sym[j]);
                free(w[i].sym[j + 1]);
                w[i].sym[out++] = strdup(joined);
                j += 2;
            } else {
                w[i].sym[out++] = w[i].sym[j++];
            }
        }
        w[i].n = out;
    }
}

int df_bpe_train_write(const char *corpus, int max_merges, const char *dir, int *vocab_size, df_error_t *err)
{
    word *w = NULL;
    size_t nw = 0;
    int rc = split_corpus(corpus, &w, &nw, err);
    if (rc != DF_OK)
        return rc;
    char path[4096];
    FILE *mf = NULL;
    gzFile gz = NULL;
    json_t *vocab = json_object();
    if (dir) {
        snprintf(path, sizeof path, "%s/merges.txt", dir);
        mf = fopen(path, "w");
        snprintf(path, sizeof path, "%s/bpe_merges.txt.gz", dir);
        gz = gzopen(path, "wb9");
    }
    if ((dir && (!mf || !gz)) || !vocab) {
        rc = df_error_set(err, DF_E_IO, "%s: cannot write the tokenizer files", dir ? dir : "bpe");
        goto out;
    }
    if (dir) {
        fputs("#version: 0.2\n", mf);
        /* OpenAI's reader splits on '\n' and would take a trailing empty line
         * for an empty merge, so lines are joined, not terminated. */
        gzputs(gz, "\"bpe_simple_vocab\" generated by dreamfleet");
    }
    int order[256];
    df_clip_byte_order(order);
    int id = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 256; i++) {
            char s[16];
            uint8_t u[4];
            size_t l = df_utf8_encode(df_clip_byte_char(order[i]), u);
            memcpy(s, u, l);
            strcpy(s + l, pass ? "</w>" : "");
            json_object_set_new(vocab, s, json_integer(id++));
        }
    int merges = 0;
    const char *a, *b;
    while (merges < max_merges && best_pair(w, nw, &a, &b)) {
        /* Copies: a and b point at symbols the merge frees. */
        char left[128], right[128], joined[256], line[512];
        snprintf(left, sizeof left, "%s", a);
        snprintf(right, sizeof right, "%s", b);
        snprintf(joined, sizeof joined, "%s%s", left, right);
        snprintf(line, sizeof line, "\n%s %s", left, right);
        if (dir) {
            fputs(line + 1, mf);
            fputc('\n', mf);
            gzputs(gz, line);
        }
        json_object_set_new(vocab, joined, json_integer(id++));
        apply_merge(w, nw, left, right, joined);
        merges++;
    }
    json_object_set_new(vocab, "<|startoftext|>", json_integer(id++));
    json_object_set_new(vocab, "<|endoftext|>", json_integer(id++));
    if (dir) {
        snprintf(path, sizeof path, "%s/vocab.json", dir);
        if (json_dump_file(vocab, path, JSON_ENSURE_ASCII) != 0)
            rc = df_error_set(err, DF_E_IO, "%s: cannot write", path);
    }
    *vocab_size = id;
out:
    if (mf && fclose(mf) != 0 && rc == DF_OK)
        rc = df_error_set(err, DF_E_IO, "%s/merges.txt: write failed", dir);
    if (gz && gzclose(gz) != Z_OK && rc == DF_OK)
        rc = df_error_set(err, DF_E_IO, "%s/bpe_merges.txt.gz: write failed", dir);
    json_decref(vocab);
    free_words(w, nw);
    return rc;
}

const char *df_bpe_default_corpus(void)
{
    /* Words of the prompts people write for personalised images, with the
     * usual punctuation; repeated words weigh more, as in real prompts. */
    return "a photo of TOK person, a photo of a person, a photo of a dog, a photo of a cat, "
           "portrait of TOK person wearing a red jacket, standing in the city at night, "
           "a close-up photograph of a man, a woman smiling, a child playing in the park, "
           "highly detailed, sharp focus, 8k, studio lighting, soft light, natural light, golden hour, "
           "cinematic, masterpiece, best quality, professional photography, bokeh, film grain, "
           "oil painting, watercolor, digital art, illustration, anime style, pencil sketch, "
           "in the style of an impressionist painting, on the beach, in the forest, in the mountains, "
           "on the moon as an astronaut, in a spacesuit, in a suit and tie, with sunglasses, "
           "wearing a hat, with a red scarf, holding a cup of coffee, reading a book, riding a bicycle, "
           "blurry, low quality, bad hands, deformed, ugly, watermark, text, cropped, worst quality, "
           "the quick brown fox jumps over the lazy dog. it's a sunny day; isn't it? "
           "blue sky, white clouds, green trees, yellow flowers, black and white, red, orange, purple, "
           "happy, sad, serious, looking at the camera, from the side, full body, head and shoulders, "
           "product shot of a bottle on a table, a shoe, a watch, a toy, a car, a house, a garden";
}
