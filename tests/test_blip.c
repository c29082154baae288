/*  test_blip.c - BLIP captioning on the engine against transformers' own
 *  BLIP (tests/golden/make_blip_golden.py): the tiny model in
 *  tests/data/blip_tiny, its goldens in tests/data/golden/tiny_blip.safetensors.
 *
 *    test_blip MODEL_DIR GOLDEN_DIR [filter]
 *
 *  The WordPiece tokenizer's ids and decoded text against BertTokenizer's;
 *  the preprocessing (PIL's bicubic, CLIP's normalisation) against
 *  BlipImageProcessor's pixels; the image encoder's output and the text
 *  decoder's logits against the reference's, in f32 and f16 weights; greedy
 *  captions, with and without a prompt, token for token and word for word;
 *  and the refusals: missing files, a config that is not BLIP's, a
 *  checkpoint whose tensors do not fit its config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "blip.h"
#include "image_decode.h"
#include "log.h"
#include "safetensors.h"
#include "test.h"
#include "test_support.h"
#include "vk_device.h"
#include "wordpiece.h"

static const char *g_model_dir, *g_golden_dir;
static df_vk_device_t *g_dev;
static df_vk_transfer_t *g_xfer;
static df_vk_batch_t *g_batch;
static df_safetensors_t *g_golden;

static const char *meta(const char *key) { return g_golden ? df_safetensors_metadata(g_golden, key) : NULL; }

/*  The golden tensor name as floats (malloc'd), *n its size. */
static float *golden(const char *name, uint64_t *n)
{
    const df_st_tensor *t = g_golden ? df_safetensors_find(g_golden, name) : NULL;
    float *v = t ? malloc(t->nelem * sizeof *v) : NULL;
    if (v && df_st_tensor_to_f32(t, v, NULL) != DF_OK) {
        free(v);
        v = NULL;
    }
    *n = t ? t->nelem : 0;
    return v;
}

/*  The largest difference over the largest reference value. */
static double apart(const float *got, const float *want, uint64_t n)
{
    double d = 0, scale = 1e-30;
    for (uint64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return d / scale;
}

/*  A JSON list of integers as ids (at most cap); returns how many. */
static size_t json_ids(const json_t *list, int32_t *ids, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(list) && n < cap; i++)
        ids[n++] = (int32_t)json_integer_value(json_array_get(list, i));
    return n;
}

static void test_wordpiece(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.txt", g_model_dir);
    df_error_t err;
    df_error_clear(&err);
    df_wordpiece_t *t = df_wordpiece_load(path, &err);
    CHECK(t != NULL);
    const char *cases = meta("tokenizer_cases"), *decodes = meta("decode_cases");
    json_t *c = cases ? json_loads(cases, 0, NULL) : NULL, *d = decodes ? json_loads(decodes, 0, NULL) : NULL;
    CHECK(c && json_array_size(c) >= 6 && d && json_array_size(d) >= 3);
    for (size_t i = 0; t && c && i < json_array_size(c); i++) {
        const char *text = json_string_value(json_array_get(json_array_get(c, i), 0));
        int32_t want[64], got[64];
        const size_t nw = json_ids(json_array_get(json_array_get(c, i), 1), want, 64);
        size_t ng = 0;
        CHECK_OK(df_wordpiece_encode(t, text, got, 64, &ng, &err), &err);
        const int same = ng == nw && memcmp(got, want, nw * sizeof *got) == 0;
        CHECK(same);
        if (!same)
            fprintf(stderr, "  '%s': %zu ids, the reference's %zu\n", text, ng, nw);
    }
    for (size_t i = 0; t && d && i < json_array_size(d); i++) {
        int32_t ids[64];
        const size_t n = json_ids(json_array_get(json_array_get(d, i), 0), ids, 64);
        const char *want = json_string_value(json_array_get(json_array_get(d, i), 1));
        char *got = NULL;
        CHECK_OK(df_wordpiece_decode(t, ids, n, &got, &err), &err);
        CHECK(got && want && strcmp(got, want) == 0);
        if (got && want && strcmp(got, want))
            fprintf(stderr, "  decoded '%s', the reference '%s'\n", got, want);
        free(got);
    }
    /* The ids past what fits are counted, not written. */
    int32_t two[2] = {-7, -7};
    size_t n = 0;
    if (t) {
        CHECK_OK(df_wordpiece_encode(t, "a man in a red suit", two, 1, &n, &err), &err);
        CHECK(n == 6 && two[1] == -7);
        const int32_t bad[1] = {-3};
        char *text = NULL;
        CHECK_FAILS(df_wordpiece_decode(t, bad, 1, &text, &err), &err, DF_E_RANGE, "outside the vocabulary");
    }
    json_decref(c), json_decref(d);
    df_wordpiece_destroy(&t);
    /* Files that are not vocabularies. */
    CHECK(df_wordpiece_load("/nonexistent/vocab.txt", &err) == NULL && err.code == DF_E_NOT_FOUND);
    char bad[128];
    snprintf(bad, sizeof bad, "/tmp/df_blip_vocab_XXXXXX");
    int fd = mkstemp(bad);
    if (fd >= 0) {
        CHECK(write(fd, "hello\nworld\n", 12) == 12);
        close(fd);
        df_error_clear(&err);
        CHECK(df_wordpiece_load(bad, &err) == NULL && strstr(err.msg, "no [UNK] token"));
        unlink(bad);
    }
}

static void test_preprocessing(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/photo.png", g_model_dir);
    df_error_t err;
    df_error_clear(&err);
    df_blip_t *m = df_blip_open(g_model_dir, g_dev, g_xfer, DF_F32, &err);
    CHECK_OK(m ? DF_OK : err.code, &err);
    df_image photo = {0};
    CHECK_OK(df_image_load(path, &photo, &err), &err);
    uint64_t n = 0;
    float *want = golden("pixel_values", &n), *got = NULL;
    if (m && photo.rgb)
        CHECK_OK(df_blip_pixels(m, &photo, &got, &err), &err);
    CHECK(want && got && n == 3ull * 32 * 32);
    if (want && got) {
        const double d = apart(got, want, n);
        fprintf(stderr, "  pixels %.2e of scale from BlipImageProcessor's\n", d);
        CHECK(d < 1e-5); /* PIL's arithmetic, to the bit */
    }
    free(want), free(got);
    df_image_free(&photo);
    df_blip_destroy(&m);
}

static void check_towers(df_dtype store, double tol)
{
    df_error_t err;
    df_error_clear(&err);
    df_blip_t *m = df_blip_open(g_model_dir, g_dev, g_xfer, store, &err);
    CHECK_OK(m ? DF_OK : err.code, &err);
    uint64_t np = 0, ne = 0, nl = 0;
    float *pixels = golden("pixel_values", &np), *want = golden("image_embeds", &ne);
    float *want_logits = golden("decoder_logits", &nl);
    float *embeds = ne ? malloc(ne * sizeof *embeds) : NULL, *logits = nl ? malloc(nl * sizeof *logits) : NULL;
    if (m && pixels && embeds)
        CHECK_OK(df_blip_encode_image(m, g_batch, pixels, embeds, &err), &err);
    if (m && embeds && want) {
        const double d = apart(embeds, want, ne);
        fprintf(stderr, "  %s: image encoder %.2e of scale from transformers'\n", df_dtype_name(store), d);
        CHECK(d < tol);
    }
    const char *ids_json = meta("decoder_ids");
    json_t *j = ids_json ? json_loads(ids_json, 0, NULL) : NULL;
    int32_t ids[64];
    const size_t n = j ? json_ids(j, ids, 64) : 0;
    CHECK(n > 2 && nl == n * (uint64_t)(m ? df_blip_config_of(m)->text.vocab : 0));
    if (m && want && logits && n)
        CHECK_OK(df_blip_decoder_logits(m, g_batch, want, ids, (uint32_t)n, logits, &err), &err);
    if (m && logits && want_logits && n) {
        const double d = apart(logits, want_logits, nl);
        fprintf(stderr, "  %s: decoder logits %.2e of scale from transformers'\n", df_dtype_name(store), d);
        CHECK(d < tol);
    }
    json_decref(j);
    free(pixels), free(want), free(want_logits), free(embeds), free(logits);
    df_blip_destroy(&m);
}

static void test_towers_f32(void) { check_towers(DF_F32, 1e-5); }
static void test_towers_f16(void) { check_towers(DF_F16, 3e-3); }

static void test_captions(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/photo.png", g_model_dir);
    df_error_t err;
    df_error_clear(&err);
    df_blip_t *m = df_blip_open(g_model_dir, g_dev, g_xfer, DF_F32, &err);
    CHECK_OK(m ? DF_OK : err.code, &err);
    df_image photo = {0};
    CHECK_OK(df_image_load(path, &photo, &err), &err);
    /* Greedy and beam search (3 beams, at least 5 tokens), each with and
     * without a prompt, as transformers' generate makes them. */
    const char *keys[4] = {"caption", "prompted", "beam", "beam_prompted"};
    for (int k = 0; m && photo.rgb && k < 4; k++) {
        const df_blip_caption_opts co = {.prompt = k % 2 ? "a picture of" : NULL, .max_length = 12,
                                         .min_length = k >= 2 ? 5 : 0, .num_beams = k >= 2 ? 3 : 1};
        char key[64];
        snprintf(key, sizeof key, "%s_ids", keys[k]);
        json_t *j = meta(key) ? json_loads(meta(key), 0, NULL) : NULL;
        int32_t want[64], got[64];
        const size_t nw = j ? json_ids(j, want, 64) : 0;
        json_decref(j);
        snprintf(key, sizeof key, "%s_text", keys[k]);
        const char *want_text = meta(key);
        char *text = NULL;
        uint32_t ng = 0;
        CHECK_OK(df_blip_caption(m, g_batch, &photo, &co, &text, got, &ng, &err), &err);
        const int same = nw > 0 && ng == nw && memcmp(got, want, nw * sizeof *got) == 0;
        CHECK(same && text && want_text && strcmp(text, want_text) == 0);
        fprintf(stderr, "  %s: '%s' (%u tokens; the reference: '%s', %zu)\n", keys[k], text ? text : "", ng,
                want_text ? want_text : "", nw);
        free(text);
    }
    /* Refused: lengths the decoder cannot take, a prompt that fills them. */
    char *text = NULL;
    if (m) {
        df_blip_caption_opts co = {.max_length = 1};
        CHECK_FAILS(df_blip_caption(m, g_batch, &photo, &co, &text, NULL, NULL, &err), &err, DF_E_RANGE,
                    "captions of 1 tokens");
        co.max_length = 1000;
        CHECK_FAILS(df_blip_caption(m, g_batch, &photo, &co, &text, NULL, NULL, &err), &err, DF_E_RANGE,
                    "from 2 to the decoder's 40");
        co = (df_blip_caption_opts){.prompt = "a man in a red suit", .max_length = 4};
        CHECK_FAILS(df_blip_caption(m, g_batch, &photo, &co, &text, NULL, NULL, &err), &err, DF_E_RANGE,
                    "leave no room");
        co = (df_blip_caption_opts){.max_length = 10, .num_beams = 65};
        CHECK_FAILS(df_blip_caption(m, g_batch, &photo, &co, &text, NULL, NULL, &err), &err, DF_E_RANGE,
                    "65 beams (at most 64)");
    }
    df_image_free(&photo);
    df_blip_destroy(&m);
}

/*  Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f)
        fputs(text, f), fclose(f);
}

static void test_refusals(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(df_blip_open("/nonexistent/blip", g_dev, g_xfer, DF_F32, &err) == NULL && err.code == DF_E_NOT_FOUND &&
          strstr(err.msg, "/nonexistent/blip/config.json"));
    char dir[] = "/tmp/df_blip_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cp '%s/vocab.txt' '%s/model.safetensors' '%s/'", g_model_dir, g_model_dir, dir);
    CHECK(system(cmd) == 0);
    /* Configs: not BLIP's, an activation the engine lacks, heads it cannot run, widths that disagree. */
    struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"model_type\": \"clip\"}", "not a BLIP model's config"},
        {"{\"model_type\": \"blip\", \"vision_config\": {}}", "no vision_config and text_config"},
        {"{\"model_type\": \"blip\", \"vision_config\": {\"hidden_act\": \"relu\"}, \"text_config\": {}}",
         "only \"gelu\" is supported"},
        {"{\"model_type\": \"blip\", \"vision_config\": {\"hidden_size\": 30, \"num_attention_heads\": 3}, "
         "\"text_config\": {}}", "3 heads of a 30-wide state"},
        {"{\"model_type\": \"blip\", \"vision_config\": {\"hidden_size\": 32, \"num_attention_heads\": 4, "
         "\"image_size\": 30, \"patch_size\": 8}, \"text_config\": {}}", "not a whole number of 8 px patches"},
        {"{\"model_type\": \"blip\", \"vision_config\": {}, \"text_config\": {\"num_hidden_layers\": \"two\"}}",
         "text_config.num_hidden_layers wants an integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(dir, "config.json", bad[i].json);
        df_error_clear(&err);
        df_blip_t *m = df_blip_open(dir, g_dev, g_xfer, DF_F32, &err);
        CHECK(m == NULL && strstr(err.msg, bad[i].needle) != NULL);
        if (!strstr(err.msg, bad[i].needle))
            fprintf(stderr, "  config %zu: %s\n", i, err.msg);
        df_blip_destroy(&m);
    }
    /* The tiny model's config with a third text layer the checkpoint lacks. */
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", g_model_dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    CHECK(cfg != NULL);
    if (cfg) {
        json_object_set_new(json_object_get(cfg, "text_config"), "num_hidden_layers", json_integer(3));
        snprintf(path, sizeof path, "%s/config.json", dir);
        json_dump_file(cfg, path, 0);
        json_decref(cfg);
        df_error_clear(&err);
        df_blip_t *m = df_blip_open(dir, g_dev, g_xfer, DF_F32, &err);
        CHECK(m == NULL && strstr(err.msg, "model.safetensors") && strstr(err.msg, "layer.2"));
        if (m == NULL && !strstr(err.msg, "layer.2"))
            fprintf(stderr, "  %s\n", err.msg);
        df_blip_destroy(&m);
    }
    /* No vocabulary. */
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/' && rm '%s/vocab.txt'", g_model_dir, dir, dir);
    CHECK(system(cmd) == 0);
    df_error_clear(&err);
    CHECK(df_blip_open(dir, g_dev, g_xfer, DF_F32, &err) == NULL && strstr(err.msg, "vocab.txt"));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_blip MODEL_DIR GOLDEN_DIR [filter]\n");
        return 2;
    }
    g_model_dir = argv[1], g_golden_dir = argv[2];
    test_filter_ = argc > 3 ? argv[3] : NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny_blip.safetensors", g_golden_dir);
    df_error_t err;
    df_error_clear(&err);
    if (!(g_golden = df_safetensors_open(path, &err))) {
        fprintf(stderr, "goldens: %s\n", err.msg);
        return 1;
    }
    uint32_t index;
    df_vk_instance_t *inst = test_open_instance(&index);
    if (!inst)
        return 1;
    g_dev = df_vk_device_new(inst, index, NULL, &err);
    g_xfer = g_dev ? df_vk_transfer_new(g_dev, NULL, &err) : NULL;
    g_batch = g_xfer ? df_vk_batch_new(g_dev, 0, &err) : NULL;
    if (!g_batch) {
        fprintf(stderr, "device: %s\n", err.msg);
        return 1;
    }
    RUN(test_wordpiece);
    RUN(test_preprocessing);
    RUN(test_towers_f32);
    RUN(test_towers_f16);
    RUN(test_captions);
    RUN(test_refusals);
    df_vk_batch_destroy(&g_batch);
    df_vk_transfer_destroy(&g_xfer);
    df_vk_device_destroy(&g_dev);
    df_vk_instance_destroy(&inst);
    df_safetensors_destroy(&g_golden);
    return test_summary();
}
