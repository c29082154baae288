/*  test_tokenizer.c - CLIP's tokenizer: clean-up, pre-tokenisation, BPE on a
 *  small hand-made vocabulary whose answers can be worked out on paper, the
 *  real vocabulary against the reference tokenizer's ids (from ../shared),
 *  chunking, and every way the vocabulary files can be wrong.
 *
 *  Usage: test_tokenizer [filter] [SHARED_DIR|-]. "-" leaves the golden test
 *  out; a SHARED_DIR without the data makes it report itself skipped (exit
 *  77), so CTest shows the gap instead of a pass. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "strmap.h"
#include "test.h"
#include "unicode.h"

static char g_dir[64];
static const char *g_shared = "../shared";
static int g_skipped;

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void check_clean(const char *in, const char *want, int line)
{
    char *out = NULL;
    df_error_t err;
    df_error_clear(&err);
    int rc = df_clip_clean(in, &out, &err);
    test_checks_++;
    if (rc != DF_OK || strcmp(out, want) != 0) {
        fprintf(stderr, "%s:%d: clean(\"%s\") = \"%s\" (%s), want \"%s\"\n", __FILE__, line, in, out ? out : "",
                err.msg, want);
        test_failures_++;
    }
    free(out);
}
#define CLEAN(in, want) check_clean(in, want, __LINE__)

static void test_clean(void)
{
    CLEAN("  A  Photo\tof\n\nTOK  ", "a photo of tok");
    CLEAN("", "");
    CLEAN("   ", "");
    CLEAN("R&amp;D &lt;b&gt;", "r&d <b>");
    CLEAN("&amp;amp; twice", "& twice");        /* unescaped twice, as the reference */
    CLEAN("&amp;amp;amp;", "&amp;");            /* ... but not three times */
    CLEAN("&#65;&#x42;&#X43", "abc");           /* numeric, with and without ';' */
    CLEAN("&#150; &#0; &#1;x", "\xe2\x80\x93 \xef\xbf\xbd x"); /* cp1252, U+FFFD, dropped */
    CLEAN("&copy 2024 &nosuch; &#;", "\xc2\xa9 2024 &nosuch; &#;");
    CLEAN("a&nbsp;b", "a b");                   /* no-break space is whitespace to \s */
    CLEAN("\xc3\x9c" "BER Stra\xc3\x9f" "e \xce\xa3\xce\x9f\xce\xa6", "\xc3\xbc" "ber stra\xc3\x9f" "e \xcf\x83\xce\xbf\xcf\x86");
    CLEAN("a\xe2\x80\x83\xe3\x80\x80" "b", "a b"); /* em space, ideographic space */

    char *out = (char *)"x";
    df_error_t err;
    df_error_clear(&err);
    CHECK_FAILS(df_clip_clean("ok \xff bad", &out, &err), &err, DF_E_FORMAT, "byte 3");
    CHECK(out == NULL);
    CHECK_FAILS(df_clip_clean("\xc0\x80", &out, &err), &err, DF_E_FORMAT, "UTF-8"); /* overlong NUL */
    CHECK_FAILS(df_clip_clean("\xed\xa0\x80", &out, &err), &err, DF_E_FORMAT, "UTF-8"); /* surrogate */
    CHECK_FAILS(df_clip_clean("\xe2\x82", &out, &err), &err, DF_E_FORMAT, "UTF-8");     /* truncated */
    char *big = malloc(DF_CLIP_MAX_TEXT + 2);
    memset(big, 'a', DF_CLIP_MAX_TEXT + 1);
    big[DF_CLIP_MAX_TEXT + 1] = '\0';
    CHECK_FAILS(df_clip_clean(big, &out, &err), &err, DF_E_RANGE, "limit");
    free(big);
}

/*  Pieces of clean text, joined with '|'. */
static void check_pieces(const char *clean, const char *want, int line)
{
    df_clip_piece *p = NULL;
    size_t n = 0;
    char got[512] = "";
    df_error_t err;
    df_error_clear(&err);
    int rc = df_clip_pretokenize(clean, &p, &n, &err);
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        if (i)
            strcat(got, "|");
        strncat(got, clean + p[i].start, p[i].len);
    }
    test_checks_++;
    if (rc != DF_OK || strcmp(got, want) != 0) {
        fprintf(stderr, "%s:%d: pieces(\"%s\") = \"%s\", want \"%s\"\n", __FILE__, line, clean, got, want);
        test_failures_++;
    }
    free(p);
}
#define PIECES(in, want) check_pieces(in, want, __LINE__)

static void test_pretokenize(void)
{
    PIECES("a photo of tok", "a|photo|of|tok");
    PIECES("dog's it'll we'd", "dog|'s|it|'ll|we|'d");
    PIECES("3.5cm 2024", "3|.|5|cm|2|0|2|4");                 /* digits one at a time */
    PIECES("(masterpiece:1.2), ?!", "(|masterpiece|:|1|.|2|),|?!");
    PIECES("''s x'y", "''|s|x|'|y");                          /* a contraction only where one starts */
    PIECES("<|endoftext|>a<|startoftext|>", "<|endoftext|>|a|<|startoftext|>");
    PIECES("caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xc2\xbd", "caf\xc3\xa9|\xe4\xb8\xad\xe6\x96\x87|\xc2\xbd");
    PIECES("", "");
    df_clip_piece *p;
    size_t n;
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(df_clip_pretokenize("<|endoftext|>", &p, &n, &err), &err);
    CHECK(n == 1 && p[0].special == 2);
    free(p);
}

/*  A vocabulary small enough to reason about: the 512 byte tokens, in CLIP's
 *  order, plus merges "l o", "lo w</w>", "l l", "ll o", the specials. */
static void make_small_vocab(char *vocab_path, char *merges_path, size_t cap)
{
    json_t *v = json_object();
    int32_t id = 0;
    /* Byte characters as CLIP spells them: printable bytes stand for
     * themselves, the rest map to 256 + n. */
    uint32_t chars[256];
    int n = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))
            chars[b] = (uint32_t)b;
        else
            chars[b] = 256 + (uint32_t)n++;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            char s[16];
            uint8_t u[4];
            size_t l = df_utf8_encode(chars[b], u);
            memcpy(s, u, l);
            strcpy(s + l, pass ? "</w>" : "");
            json_object_set_new(v, s, json_integer(id++));
        }
    const char *merged[] = {"lo", "low</w>", "ll", "llo", "llo</w>"};
    for (size_t i = 0; i < 5; i++)
        json_object_set_new(v, merged[i], json_integer(id++));
    json_object_set_new(v, "<|startoftext|>", json_integer(id++));
    json_object_set_new(v, "<|endoftext|>", json_integer(id++));
    snprintf(vocab_path, cap, "%s/vocab.json", g_dir);
    json_dump_file(v, vocab_path, 0);
    json_decref(v);
    write_file("merges.txt", "#version: 0.2\nl o\nlo w</w>\nl l\nll o\nll o</w>\n", merges_path, cap);
}

static void check_ids(const df_clip_tokenizer_t *t, const char *text, const char *const *want, size_t nwant,
                      int line)
{
    int32_t *ids = NULL;
    size_t n = 0;
    df_error_t err;
    df_error_clear(&err);
    int rc = df_clip_tokenizer_encode(t, text, &ids, &n, &err);
    int ok = rc == DF_OK && n == nwant;
    for (size_t i = 0; ok && i < n; i++)
        ok = ids[i] == df_clip_tokenizer_id(t, want[i]);
    test_checks_++;
    if (!ok) {
        fprintf(stderr, "%s:%d: encode(\"%s\"): %s, %zu ids:", __FILE__, line, text, err.msg, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        test_failures_++;
    }
    free(ids);
}
#define IDS(t, text, ...)                                                                        \
    do {                                                                                         \
        const char *const want_[] = {__VA_ARGS__};                                               \
        check_ids(t, text, want_, sizeof want_ / sizeof want_[0], __LINE__);                     \
    } while (0)

static void test_bpe_small(void)
{
    char vp[128], mp[128];
    make_small_vocab(vp, mp, sizeof vp);
    df_error_t err;
    df_error_clear(&err);
    df_clip_tokenizer_t *t = df_clip_tokenizer_load(vp, mp, &err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ(df_clip_tokenizer_vocab_size(t), 512 + 5 + 2);
    CHECK_EQ(df_clip_tokenizer_bos(t), 517);
    CHECK_EQ(df_clip_tokenizer_eos(t), 518);
    CHECK_EQ(df_clip_tokenizer_id(t, "nope"), -1);
    /* "low": l,o,w</w> -> (l o, rank 0) lo,w</w> -> (lo w</w>, rank 1) low</w>. */
    IDS(t, "low", "low</w>");
    /* "lllo": l,l,l,o</w>: "l l" (rank 2) joins left to right without
     * overlap: ll,l,o</w>; then nothing ranks (l o</w> is not listed). */
    IDS(t, "lllo", "ll", "l", "o</w>");
    /* "llo": l,l,o</w> -> ll,o</w> -> "ll o</w>" (rank 4) -> llo</w>. */
    IDS(t, "LLO", "llo</w>");
    /* "lol": l,o,l</w> -> lo,l</w>. */
    IDS(t, "lol", "lo", "l</w>");
    IDS(t, "x", "x</w>");
    IDS(t, "<|endoftext|> low", "<|endoftext|>", "low</w>");

    /* Chunks: start + tokens + end + padding; 75 tokens per chunk. */
    int32_t *ids;
    size_t chunks;
    CHECK_OK(df_clip_tokenizer_chunks(t, "", 0, &ids, &chunks, &err), &err);
    CHECK(chunks == 1 && ids[0] == 517 && ids[1] == 518 && ids[2] == 0 && ids[76] == 0);
    free(ids);
    char text[400] = "";
    for (int i = 0; i < 76; i++)
        strcat(text, "low ");
    CHECK_OK(df_clip_tokenizer_chunks(t, text, 518, &ids, &chunks, &err), &err);
    CHECK_EQ(chunks, 2);
    int32_t low = df_clip_tokenizer_id(t, "low</w>");
    if (chunks == 2) {
        CHECK(ids[0] == 517 && ids[1] == low && ids[75] == low && ids[76] == 518);
        CHECK(ids[77] == 517 && ids[78] == low && ids[79] == 518 && ids[80] == 518 && ids[153] == 518);
    }
    free(ids);
    CHECK_FAILS(df_clip_tokenizer_chunks(t, "\xff", 0, &ids, &chunks, &err), &err, DF_E_FORMAT, "UTF-8");
    CHECK(ids == NULL && chunks == 0);
    df_clip_tokenizer_destroy(&t);
    CHECK(t == NULL);
    unlink(vp);
    unlink(mp);
}

static void test_bad_vocab_files(void)
{
    char vp[128], mp[128], bad[128];
    make_small_vocab(vp, mp, sizeof vp);
    df_error_t err;
    df_error_clear(&err);
#define LOAD_FAILS(v, m, want, needle) \
    CHECK_FAILS(df_clip_tokenizer_load(v, m, &err) ? DF_OK : err.code, &err, want, needle)
    LOAD_FAILS(vp, "/nonexistent/merges.txt", DF_E_NOT_FOUND, "merges.txt");
    LOAD_FAILS("/nonexistent/vocab.json", mp, DF_E_FORMAT, "vocab.json");
    write_file("v_bad.json", "{\"a\": 1,", bad, sizeof bad);
    LOAD_FAILS(bad, mp, DF_E_FORMAT, "v_bad.json");
    write_file("v_bad.json", "[1,2]", bad, sizeof bad);
    LOAD_FAILS(bad, mp, DF_E_FORMAT, "token -> id");
    write_file("v_bad.json", "{\"a\": \"x\"}", bad, sizeof bad);
    LOAD_FAILS(bad, mp, DF_E_FORMAT, "\"a\" has no valid id");
    write_file("v_bad.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}", bad, sizeof bad);
    write_file("m_empty.txt", "#version: 0.2\n", mp, sizeof mp);
    LOAD_FAILS(bad, mp, DF_E_FORMAT, "lacks the token for byte");
    make_small_vocab(vp, mp, sizeof vp);
    write_file("m_bad.txt", "#version: 0.2\nl o\nlow\n", bad, sizeof bad);
    LOAD_FAILS(vp, bad, DF_E_FORMAT, "m_bad.txt:3");
    write_file("m_bad.txt", "#version: 0.2\nl o\nq z\n", bad, sizeof bad);
    LOAD_FAILS(vp, bad, DF_E_FORMAT, "lacks");
    write_file("m_bad.txt", "#version: 0.2\na b c\n", bad, sizeof bad);
    LOAD_FAILS(vp, bad, DF_E_FORMAT, "one space");
    CHECK_FAILS(df_clip_tokenizer_load_bpe_gz("/nonexistent.gz", &err) ? DF_OK : err.code, &err, DF_E_NOT_FOUND,
                "nonexistent");
    /* A gzip file with only its header line, and one that is not gzip at all
     * (zlib reads plain text through; its merges then fail by name). */
    snprintf(bad, sizeof bad, "%s/empty.gz", g_dir);
    gzFile gz = gzopen(bad, "wb");
    gzputs(gz, "header only\n");
    gzclose(gz);
    CHECK_FAILS(df_clip_tokenizer_load_bpe_gz(bad, &err) ? DF_OK : err.code, &err, DF_E_FORMAT, "no merges");
    write_file("plain.gz", "header\nnot a merge at all\n", bad, sizeof bad);
    CHECK_FAILS(df_clip_tokenizer_load_bpe_gz(bad, &err) ? DF_OK : err.code, &err, DF_E_FORMAT, "plain.gz:2");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.json %s/*.txt %s/*.gz", g_dir, g_dir, g_dir);
    CHECK(system(cmd) == 0);
}

/*  The real CLIP vocabulary against the reference tokenizer's ids. */
static void test_golden_tokens(void)
{
    char gz[512], golden[512];
    snprintf(gz, sizeof gz, "%s/data/clip/bpe_simple_vocab_16e6.txt.gz", g_shared);
    snprintf(golden, sizeof golden, "%s/data/clip/golden_tokens.json", g_shared);
    if (access(gz, R_OK) != 0 || access(golden, R_OK) != 0) {
        fprintf(stderr, "test_golden_tokens: SKIPPED, no %s\n", golden);
        g_skipped = 1;
        return;
    }
    df_error_t err;
    df_error_clear(&err);
    df_clip_tokenizer_t *t = df_clip_tokenizer_load_bpe_gz(gz, &err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    json_error_t jerr;
    json_t *g = json_load_file(golden, 0, &jerr);
    CHECK(g != NULL);
    CHECK_EQ(df_clip_tokenizer_vocab_size(t), json_integer_value(json_object_get(g, "vocab_size")));
    CHECK_EQ(df_clip_tokenizer_bos(t), json_integer_value(json_object_get(g, "bos")));
    CHECK_EQ(df_clip_tokenizer_eos(t), json_integer_value(json_object_get(g, "eos")));
    size_t i;
    json_t *c;
    int cases = 0;
    json_array_foreach(json_object_get(g, "cases"), i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        json_t *want = json_object_get(c, "ids_without_bos_eos");
        int32_t *ids;
        size_t n;
        CHECK_OK(df_clip_tokenizer_encode(t, prompt, &ids, &n, &err), &err);
        int ok = n == json_array_size(want);
        for (size_t k = 0; ok && k < n; k++)
            ok = ids[k] == json_integer_value(json_array_get(want, k));
        test_checks_++;
        if (!ok) {
            fprintf(stderr, "golden case %zu \"%s\": got %zu ids, want %zu:", i, prompt, n, json_array_size(want));
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
            test_failures_++;
        }
        free(ids);
        cases++;
    }
    CHECK(cases >= 10);
    json_decref(g);
    df_clip_tokenizer_destroy(&t);
}

static void test_strmap(void)
{
    df_strmap_t *m = df_strmap_new();
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        CHECK(df_strmap_put(m, key, (size_t)n, i) == 0);
    }
    CHECK(df_strmap_put(m, "k7", 2, -7) == 0); /* replace */
    CHECK_EQ(df_strmap_size(m), 5000);
    int64_t v = 0;
    int all = 1;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        all &= df_strmap_get(m, key, (size_t)n, &v) && v == (i == 7 ? -7 : i);
    }
    CHECK(all);
    CHECK(!df_strmap_get(m, "k5000", 5, &v));
    CHECK(df_strmap_get(m, "k12", 2, &v) && v == 1); /* a prefix is its own key */
    df_strmap_destroy(&m);
    CHECK(m == NULL);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 && argv[1][0] ? argv[1] : NULL;
    if (argc > 2)
        g_shared = argv[2];
    snprintf(g_dir, sizeof g_dir, "/tmp/df_tok_XXXXXX");
    if (!mkdtemp(g_dir))
        return 2;
    RUN(test_strmap);
    RUN(test_clean);
    RUN(test_pretokenize);
    RUN(test_bpe_small);
    RUN(test_bad_vocab_files);
    if (strcmp(g_shared, "-") != 0)
        RUN(test_golden_tokens);
    rmdir(g_dir);
    int rc = test_summary();
    return rc == 0 && g_skipped ? 77 : rc;
}
