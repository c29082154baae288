/*  test_models.c - SDXL model files and components against the reference.
 *
 *  The tiny random model is regenerated here and must be bit-identical to the
 *  one the goldens were made from (tests/data/golden/tiny_manifest.json);
 *  then its configs, tensor lists, tokenizers and components are checked
 *  against diffusers' outputs in the goldens (tests/golden/make_goldens.py):
 *  fp32 within 1e-4 of the output's scale, fp16 weights within 1e-2.
 *
 *  Usage: test_models GOLDEN_DIR [filter]
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "component.h"
#include "full_trainer.h"
#include "generate.h"
#include "png_write.h"
#include "lora.h"
#include "lora_trainer.h"
#include "lr_schedule.h"
#include "train_lora.h"
#include "train_sample.h"
#include "train_noise.h"
#include "sgm_names.h"
#include "random_model.h"
#include "philox.h"
#include "prompt.h"
#include "safetensors.h"
#include "sdxl_model.h"
#include "sdxl_arch.h"
#include "sdxl_config.h"
#include "sha256.h"
#include "unet.h"
#include "vae.h"
#include "vae_tiled.h"
#include "quant8.h"
#include "test.h"
#include "test_support.h"
#include "vk_batch.h"
#include "vk_device.h"
#include "vk_transfer.h"
#include "weights.h"

static const char *g_golden;
static char g_dir[64];   /* scratch */
static char g_model[96]; /* the regenerated tiny model (f32) */
static char g_model16[96];
static char g_single[96]; /* the same model as one SGM single file */
static df_vk_device_t *g_dev;
static df_vk_transfer_t *g_xfer;
static df_vk_batch_t *g_batch;

static void path_of(char *buf, size_t cap, const char *a, const char *b)
{
    snprintf(buf, cap, "%s/%s", a, b);
}

static int file_sha(const char *path, char hex[DF_SHA256_HEX])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(buf, got, d);
    df_sha256_hex(d, hex);
    free(buf);
    return got == (size_t)n ? 0 : -1;
}

/*  max |got - ref| <= tol * max |ref| (the output's scale). */
static void check_close(const char *what, const float *got, const float *ref, uint64_t n, double tol)
{
    double scale = 0, worst = 0;
    uint64_t at = 0;
    for (uint64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (uint64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= worst)) { /* NaN lands here too */
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    test_checks_++;
    int ok = n > 0 && worst <= tol * scale;
    fprintf(stderr, "  %-44s max err %.3g (%.2g of scale %.3g, limit %.0e) %s\n", what, worst,
            scale > 0 ? worst / scale : 0, scale, tol, ok ? "ok" : "FAILED");
    if (!ok) {
        fprintf(stderr, "    worst at %llu: got %.8g, want %.8g\n", (unsigned long long)at, got[at], ref[at]);
        test_failures_++;
    }
}

/*  A golden tensor as floats (malloc'd), with its element count. */
static float *golden_f32(const df_safetensors_t *st, const char *name, uint64_t *n)
{
    const df_st_tensor *t = df_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "golden tensor %s missing\n", name);
        return NULL;
    }
    float *f = malloc(t->nelem * sizeof *f);
    df_error_t err;
    df_error_clear(&err);
    if (df_st_tensor_to_f32(t, f, &err) != DF_OK) {
        free(f);
        return NULL;
    }
    *n = t->nelem;
    return f;
}

static df_safetensors_t *open_golden(const char *name)
{
    char path[512];
    path_of(path, sizeof path, g_golden, name);
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *st = df_safetensors_open(path, &err);
    if (!st)
        fprintf(stderr, "%s\n", err.msg);
    return st;
}

/* ------------------------------------------------------------------ tests */

static void test_random_model_reproducible(void)
{
    char path[512], hex[DF_SHA256_HEX];
    path_of(path, sizeof path, g_golden, "tiny_manifest.json");
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    CHECK(m != NULL);
    json_t *files = json_object_get(m, "files");
    const char *key;
    json_t *v;
    int n = 0;
    json_object_foreach(files, key, v) {
        path_of(path, sizeof path, g_model, key);
        int ok = file_sha(path, hex) == 0 && strcmp(hex, json_string_value(v)) == 0;
        test_checks_++;
        if (!ok) {
            fprintf(stderr, "%s differs from the file the goldens were made from\n", path);
            test_failures_++;
        }
        n++;
    }
    CHECK(n >= 16);
    json_decref(m);

    /* The same seed twice gives the same bytes; another seed does not. */
    df_error_t err;
    df_error_clear(&err);
    char other[128];
    snprintf(other, sizeof other, "%s/seed7", g_dir);
    CHECK_OK(df_random_model_create(other, DF_SDXL_PRESET_TINY, 7, DF_F32, &err), &err);
    char a[DF_SHA256_HEX], b[DF_SHA256_HEX];
    path_of(path, sizeof path, other, "vae/diffusion_pytorch_model.safetensors");
    file_sha(path, a);
    path_of(path, sizeof path, g_model, "vae/diffusion_pytorch_model.safetensors");
    file_sha(path, b);
    CHECK(strcmp(a, b) != 0);
    /* Refuses to write over a model. */
    CHECK_FAILS(df_random_model_create(other, DF_SDXL_PRESET_TINY, 7, DF_F32, &err), &err, DF_E_INVALID,
                "not empty");
    CHECK_FAILS(df_random_model_create(path, DF_SDXL_PRESET_TINY, 7, DF_BF16, &err), &err, DF_E_INVALID, "f32 or f16");
}

static void test_configs(void)
{
    df_error_t err;
    df_error_clear(&err);
    char path[512];
    df_sdxl_config cfg;
    path_of(path, sizeof path, g_model, "unet/config.json");
    CHECK_OK(df_unet_config_load(path, &cfg.unet, &err), &err);
    path_of(path, sizeof path, g_model, "vae/config.json");
    CHECK_OK(df_vae_config_load(path, &cfg.vae, &err), &err);
    path_of(path, sizeof path, g_model, "text_encoder/config.json");
    CHECK_OK(df_clip_text_config_load(path, &cfg.te1, &err), &err);
    path_of(path, sizeof path, g_model, "text_encoder_2/config.json");
    CHECK_OK(df_clip_text_config_load(path, &cfg.te2, &err), &err);
    CHECK_OK(df_sdxl_config_check(&cfg, &err), &err);
    df_sdxl_config want;
    df_sdxl_config_preset(DF_SDXL_PRESET_TINY, cfg.te1.vocab_size, &want);
    CHECK(memcmp(&cfg.unet, &want.unet, sizeof want.unet) == 0);
    CHECK(memcmp(&cfg.vae, &want.vae, sizeof want.vae) == 0);
    CHECK(memcmp(&cfg.te1, &want.te1, sizeof want.te1) == 0);
    CHECK(memcmp(&cfg.te2, &want.te2, sizeof want.te2) == 0);
    CHECK(cfg.te1.quick_gelu && !cfg.te2.quick_gelu && cfg.te2.with_projection && !cfg.te1.with_projection);

    /* SDXL's own numbers, round-tripped through config.json. */
    df_sdxl_config_preset(DF_SDXL_PRESET_SDXL, 0, &want);
    CHECK_OK(df_sdxl_config_check(&want, &err), &err);
    CHECK_EQ(want.unet.cross_attention_dim, 2048);
    CHECK_EQ(want.unet.projection_class_embeddings_input_dim, 2816);
    path_of(path, sizeof path, g_dir, "unet.json");
    CHECK_OK(df_unet_config_save(&want.unet, path, &err), &err);
    CHECK_OK(df_unet_config_load(path, &cfg.unet, &err), &err);
    CHECK(memcmp(&cfg.unet, &want.unet, sizeof want.unet) == 0);

    /* Each way a config can be wrong, named. */
    struct {
        const char *json, *needle;
        int code;
    } bad[] = {
        {"{\"in_channels\": 4", "config.json", DF_E_FORMAT},
        {"[1]", "not a JSON object", DF_E_FORMAT},
        {"{\"addition_embed_type\": null}", "text_time", DF_E_UNSUPPORTED},
        {"{\"addition_embed_type\": \"text_time\", \"class_embed_type\": \"timestep\"}", "class_embed_type",
         DF_E_UNSUPPORTED},
        {"{\"addition_embed_type\": \"text_time\", \"act_fn\": \"gelu\"}", "act_fn", DF_E_UNSUPPORTED},
        {"{\"addition_embed_type\": \"text_time\", \"in_channels\": \"4\"}", "\"in_channels\" must be an integer",
         DF_E_FORMAT},
        {"{\"addition_embed_type\": \"text_time\", \"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": "
         "[32, 64], \"down_block_types\": [\"DownBlock2D\"]}",
         "down_block_types", DF_E_FORMAT},
        {"{\"addition_embed_type\": \"text_time\", \"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": "
         "[32], \"down_block_types\": [\"SimpleCrossAttnDownBlock2D\"]}",
         "SimpleCrossAttnDownBlock2D", DF_E_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path_of(path, sizeof path, g_dir, "config.json");
        FILE *f = fopen(path, "w");
        fputs(bad[i].json, f);
        fclose(f);
        CHECK_FAILS(df_unet_config_load(path, &cfg.unet, &err), &err, bad[i].code, bad[i].needle);
    }
    CHECK_FAILS(df_unet_config_load("/nonexistent/config.json", &cfg.unet, &err), &err, DF_E_NOT_FOUND,
                "/nonexistent/config.json");
    /* A te2 without projection, and mismatched widths, fail the cross-check. */
    df_sdxl_config_preset(DF_SDXL_PRESET_TINY, 100, &want);
    want.unet.cross_attention_dim = 65;
    CHECK_FAILS(df_sdxl_config_check(&want, &err), &err, DF_E_FORMAT, "cross_attention_dim");
    unlink(path);
    path_of(path, sizeof path, g_dir, "unet.json");
    unlink(path);
}

/*  Every weight file holds exactly the tensors its config implies. */
static void test_arch_matches_files(void)
{
    static const char *const comps[4] = {"unet", "vae", "text_encoder", "text_encoder_2"};
    static const char *const files[4] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors",
                                         "model.safetensors", "model.safetensors"};
    df_sdxl_config cfg;
    df_sdxl_config_preset(DF_SDXL_PRESET_TINY, 626, &cfg);
    for (int c = 0; c < 4; c++) {
        df_error_t err;
        df_error_clear(&err);
        df_arch_list l = {0};
        if (c == 0)
            CHECK_OK(df_arch_unet(&cfg.unet, &l, &err), &err);
        else if (c == 1)
            CHECK_OK(df_arch_vae(&cfg.vae, &l, &err), &err);
        else
            CHECK_OK(df_arch_clip_text(c == 2 ? &cfg.te1 : &cfg.te2, &l, &err), &err);
        char path[512], sub[256];
        snprintf(sub, sizeof sub, "%s/%s", comps[c], files[c]);
        path_of(path, sizeof path, g_model, sub);
        df_safetensors_t *st = df_safetensors_open(path, &err);
        CHECK(st != NULL);
        if (st) {
            CHECK_EQ(df_safetensors_count(st), l.count);
            for (size_t i = 0; i < l.count; i++)
                CHECK(df_safetensors_find(st, l.items[i].name) != NULL);
        }
        df_safetensors_destroy(&st);
        df_arch_list_free(&l);
    }
    /* SDXL 1.0's well-known parameter counts. */
    df_sdxl_config_preset(DF_SDXL_PRESET_SDXL, 0, &cfg);
    df_arch_list l = {0};
    df_error_t err;
    df_error_clear(&err);
    uint64_t n = 0;
    CHECK_OK(df_arch_unet(&cfg.unet, &l, &err), &err);
    for (size_t i = 0; i < l.count; i++)
        n += df_arch_numel(&l.items[i]);
    CHECK_EQ(n, 2567463684ull);
    CHECK_EQ(l.count, 1680);
    df_arch_list_free(&l);
    n = 0;
    CHECK_OK(df_arch_vae(&cfg.vae, &l, &err), &err);
    for (size_t i = 0; i < l.count; i++)
        n += df_arch_numel(&l.items[i]);
    CHECK_EQ(n, 83653863ull);
    df_arch_list_free(&l);
}

/*  Our tokenizer on the tiny model's vocab.json/merges.txt against OpenAI's
 *  reference tokenizer reading the gzipped merges. */
static void test_tiny_tokenizer(void)
{
    df_safetensors_t *st = open_golden("tiny_text.safetensors");
    if (!st) {
        CHECK(0);
        return;
    }
    json_t *prompts = json_loads(df_safetensors_metadata(st, "prompts"), 0, NULL);
    CHECK(json_array_size(prompts) == 4);
    for (int e = 0; e < 2; e++) {
        char v[512], m[512];
        path_of(v, sizeof v, g_model, e ? "tokenizer_2/vocab.json" : "tokenizer/vocab.json");
        path_of(m, sizeof m, g_model, e ? "tokenizer_2/merges.txt" : "tokenizer/merges.txt");
        df_error_t err;
        df_error_clear(&err);
        df_clip_tokenizer_t *tok = df_clip_tokenizer_load(v, m, &err);
        CHECK(tok != NULL);
        const df_st_tensor *want = df_safetensors_find(st, e ? "input_ids_2" : "input_ids_1");
        for (size_t p = 0; tok && want && p < json_array_size(prompts); p++) {
            int32_t *ids;
            size_t chunks;
            int32_t pad = e ? 0 : df_clip_tokenizer_eos(tok);
            CHECK_OK(df_clip_tokenizer_chunks(tok, json_string_value(json_array_get(prompts, p)), pad, &ids,
                                              &chunks, &err),
                     &err);
            CHECK_EQ(chunks, 1);
            CHECK(memcmp(ids, (const int32_t *)want->data + p * 77, 77 * sizeof *ids) == 0);
            free(ids);
        }
        df_clip_tokenizer_destroy(&tok);
    }
    json_decref(prompts);
    df_safetensors_destroy(&st);
}

/*  Both text encoders against the reference: penultimate states, pooled. */
static void run_text_encoders(const char *model, df_dtype store, double tol)
{
    df_safetensors_t *st = open_golden("tiny_text.safetensors");
    if (!st) {
        CHECK(0);
        return;
    }
    const df_st_tensor *ids_t[2] = {df_safetensors_find(st, "input_ids_1"), df_safetensors_find(st, "input_ids_2")};
    const uint32_t nseq = (uint32_t)ids_t[0]->shape[0];
    for (int e = 0; e < 2; e++) {
        df_error_t err;
        df_error_clear(&err);
        df_sdxl_t *m = df_sdxl_open(model, NULL, &err);
        df_clip_text_t *te = m ? df_sdxl_load_text_encoder(m, e + 1, g_dev, g_xfer, store, &err) : NULL;
        df_sdxl_destroy(&m);
        CHECK(te != NULL);
        if (!te) {
            fprintf(stderr, "%s\n", err.msg);
            continue;
        }
        const df_clip_text_config *c = df_clip_text_config_of(te);
        uint64_t nh = (uint64_t)nseq * 77 * c->hidden, np = (uint64_t)nseq * c->projection_dim;
        df_vk_buffer_t *hb = df_vk_buffer_new(g_dev, nh * 4, &err);
        df_vk_buffer_t *pb = e ? df_vk_buffer_new(g_dev, np * 4, &err) : NULL;
        df_tensor hidden = df_tensor_at(hb, 0, DF_F32), pooled = df_tensor_at(pb, 0, DF_F32);
        CHECK_OK(df_clip_text_forward(te, g_batch, ids_t[e]->data, nseq, hidden, pooled, &err), &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        float *got = malloc(nh * sizeof *got);
        uint64_t n;
        float *ref = golden_f32(st, e ? "te2_penultimate" : "te1_penultimate", &n);
        CHECK(ref && n == nh);
        CHECK_OK(df_vk_download_f32(g_xfer, hb, 0, got, nh, DF_F32, &err), &err);
        char what[96];
        snprintf(what, sizeof what, "text_encoder%s penultimate (%s weights)", e ? "_2" : "", df_dtype_name(store));
        if (ref && n == nh)
            check_close(what, got, ref, nh, tol);
        free(ref);
        if (e) {
            ref = golden_f32(st, "pooled_prompt_embeds", &n);
            CHECK(ref && n == np);
            CHECK_OK(df_vk_download_f32(g_xfer, pb, 0, got, np, DF_F32, &err), &err);
            snprintf(what, sizeof what, "text_encoder_2 pooled (%s weights)", df_dtype_name(store));
            if (ref && n == np)
                check_close(what, got, ref, np, tol);
            free(ref);
        }
        /* Bad input: an id outside the vocabulary is refused before any work. */
        int32_t bad[77];
        memcpy(bad, ids_t[e]->data, sizeof bad);
        bad[5] = c->vocab_size;
        CHECK_FAILS(df_clip_text_forward(te, g_batch, bad, 1, hidden, pooled, &err), &err, DF_E_RANGE, "vocabulary");
        if (!e)
            CHECK_FAILS(df_clip_text_forward(te, g_batch, ids_t[e]->data, 1, hidden, df_tensor_at(hb, 0, DF_F32), &err),
                        &err, DF_E_INVALID, "projection");
        free(got);
        df_vk_buffer_destroy(&hb);
        df_vk_buffer_destroy(&pb);
        df_clip_text_destroy(&te);
    }
    df_safetensors_destroy(&st);
}

static void test_text_encoders_f32(void) { run_text_encoders(g_model, DF_F32, 1e-4); }
static void test_text_encoders_f16(void) { run_text_encoders(g_model, DF_F16, 1e-2); }

/*  fp16 files load too (into f32 or f16 storage) and give the same answers
 *  within fp16 tolerance. */
static void test_text_encoders_f16_files(void) { run_text_encoders(g_model16, DF_F32, 1e-2); }

/*  Uploads a golden tensor into a new device buffer as f32. */
static df_vk_buffer_t *upload_golden(const df_safetensors_t *st, const char *name, uint64_t *n)
{
    float *f = golden_f32(st, name, n);
    df_error_t err;
    df_error_clear(&err);
    df_vk_buffer_t *b = f ? df_vk_buffer_new(g_dev, *n * 4, &err) : NULL;
    if (b && df_vk_upload(g_xfer, b, 0, f, *n * 4, &err) != DF_OK)
        df_vk_buffer_destroy(&b);
    free(f);
    return b;
}

/*  Downloads n floats and compares them with the golden tensor `name`. */
static void check_golden(const df_safetensors_t *st, const char *name, const df_vk_buffer_t *b, uint64_t n,
                         const char *what, double tol)
{
    uint64_t nr = 0;
    float *ref = golden_f32(st, name, &nr), *got = malloc(n * sizeof *got);
    df_error_t err;
    df_error_clear(&err);
    CHECK(ref && nr == n);
    CHECK_OK(df_vk_download_f32(g_xfer, b, 0, got, n, DF_F32, &err), &err);
    if (ref && nr == n)
        check_close(what, got, ref, n, tol);
    free(ref);
    free(got);
}

static void run_vae(const char *model, df_dtype store, double tol)
{
    df_safetensors_t *st = open_golden("tiny_vae.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(model, NULL, &err);
    df_vae_t *vae = st && m ? df_sdxl_load_vae(m, g_dev, g_xfer, store, &err) : NULL;
    df_sdxl_destroy(&m);
    CHECK(vae != NULL);
    if (!vae) {
        fprintf(stderr, "%s\n", err.msg);
        df_safetensors_destroy(&st);
        return;
    }
    const df_st_tensor *img = df_safetensors_find(st, "image"), *lat = df_safetensors_find(st, "latents");
    uint64_t ni, nl, nm = lat->nelem;
    df_vk_buffer_t *ib = upload_golden(st, "image", &ni), *lb = upload_golden(st, "latents", &nl);
    df_vk_buffer_t *mb = df_vk_buffer_new(g_dev, nm * 4, &err), *vb = df_vk_buffer_new(g_dev, nm * 4, &err);
    df_vk_buffer_t *ob = df_vk_buffer_new(g_dev, ni * 4, &err);
    df_fmap image = {df_tensor_at(ib, 0, DF_F32), (uint32_t)img->shape[0], (uint32_t)img->shape[1],
                     (uint32_t)img->shape[2], (uint32_t)img->shape[3]};
    df_fmap latents = {df_tensor_at(lb, 0, DF_F32), (uint32_t)lat->shape[0], (uint32_t)lat->shape[1],
                       (uint32_t)lat->shape[2], (uint32_t)lat->shape[3]};
    CHECK_EQ(df_vae_factor(vae), 8);
    CHECK_OK(df_vae_encode(vae, g_batch, &image, df_tensor_at(mb, 0, DF_F32), df_tensor_at(vb, 0, DF_F32), &err),
             &err);
    CHECK_OK(df_vae_decode(vae, g_batch, &latents, df_tensor_at(ob, 0, DF_F32), &err), &err);
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    char what[96];
    snprintf(what, sizeof what, "vae encode mean (%s weights)", df_dtype_name(store));
    check_golden(st, "mean", mb, nm, what, tol);
    snprintf(what, sizeof what, "vae encode logvar (%s weights)", df_dtype_name(store));
    check_golden(st, "logvar", vb, nm, what, tol);
    snprintf(what, sizeof what, "vae decode (%s weights)", df_dtype_name(store));
    check_golden(st, "decoded", ob, ni, what, tol);
    /* Sizes the model cannot take are refused with the reason. */
    df_fmap odd = image;
    odd.h = 60;
    CHECK_FAILS(df_vae_encode(vae, g_batch, &odd, df_tensor_at(mb, 0, DF_F32), df_tensor_at(vb, 0, DF_F32), &err),
                &err, DF_E_INVALID, "multiples of 8");
    odd = latents;
    odd.c = 3;
    CHECK_FAILS(df_vae_decode(vae, g_batch, &odd, df_tensor_at(ob, 0, DF_F32), &err), &err, DF_E_INVALID,
                "4 channels");
    df_vk_buffer_destroy(&ib), df_vk_buffer_destroy(&lb), df_vk_buffer_destroy(&mb);
    df_vk_buffer_destroy(&vb), df_vk_buffer_destroy(&ob);
    df_vae_destroy(&vae);
    df_safetensors_destroy(&st);
}

static void test_vae_f32(void) { run_vae(g_model, DF_F32, 1e-4); }
static void test_vae_f16(void) { run_vae(g_model16, DF_F16, 1e-2); }

static void run_unet(const char *model, df_dtype store, double tol)
{
    df_safetensors_t *st = open_golden("tiny_unet.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(model, NULL, &err);
    df_unet_t *unet = st && m ? df_sdxl_load_unet(m, g_dev, g_xfer, store, &err) : NULL;
    df_sdxl_destroy(&m);
    CHECK(unet != NULL);
    if (!unet) {
        fprintf(stderr, "%s\n", err.msg);
        df_safetensors_destroy(&st);
        return;
    }
    const df_st_tensor *smp = df_safetensors_find(st, "sample"), *ctx = df_safetensors_find(st, "encoder_hidden_states");
    uint64_t ns, nc, nt, n1, n2;
    df_vk_buffer_t *sb = upload_golden(st, "sample", &ns), *cb = upload_golden(st, "encoder_hidden_states", &nc);
    df_vk_buffer_t *tb = upload_golden(st, "text_embeds", &nt), *ob = df_vk_buffer_new(g_dev, ns * 4, &err);
    float *timesteps = golden_f32(st, "timestep", &n1), *time_ids = golden_f32(st, "time_ids", &n2);
    df_fmap sample = {df_tensor_at(sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                      (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
    df_unet_inputs in = {.sample = &sample, .timesteps = timesteps, .context = df_tensor_at(cb, 0, DF_F32),
                         .context_len = (uint32_t)ctx->shape[1], .text_embeds = df_tensor_at(tb, 0, DF_F32),
                         .time_ids = time_ids};
    CHECK_OK(df_unet_forward(unet, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err);
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    char what[96];
    snprintf(what, sizeof what, "unet noise_pred (%s weights)", df_dtype_name(store));
    check_golden(st, "noise_pred", ob, ns, what, tol);
    /* Bad shapes and missing conditioning are refused by name. */
    df_fmap odd = sample;
    odd.w = 6;
    in.sample = &odd;
    CHECK_FAILS(df_unet_forward(unet, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err, DF_E_INVALID,
                "multiples of 4");
    in.sample = &sample;
    in.time_ids = NULL;
    CHECK_FAILS(df_unet_forward(unet, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err, DF_E_INVALID,
                "time_ids");
    free(timesteps), free(time_ids);
    df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&ob);
    df_unet_destroy(&unet);
    df_safetensors_destroy(&st);
}

static void test_unet_f32(void) { run_unet(g_model, DF_F32, 1e-4); }
static void test_unet_f16(void) { run_unet(g_model16, DF_F16, 1e-2); }

/*  The single-file form of the tiny model: the file is bit-identical to the
 *  one diffusers' converters checked (tiny_manifest.json), and every
 *  component read from it meets the same goldens. */
static void test_single_file(void)
{
    char path[512], hex[DF_SHA256_HEX];
    path_of(path, sizeof path, g_golden, "tiny_manifest.json");
    json_t *m = json_load_file(path, 0, NULL);
    const char *want = json_string_value(json_object_get(json_object_get(m, "single_file"), "sha256"));
    CHECK(want && file_sha(g_single, hex) == 0 && strcmp(hex, want) == 0);
    json_decref(m);
    run_text_encoders(g_single, DF_F32, 1e-4);
    run_vae(g_single, DF_F32, 1e-4);
    run_unet(g_single, DF_F32, 1e-4);
    run_unet(g_single, DF_F16, 1e-2);
}

/*  The prompt encoder (both tokenizers and encoders, side by side) against
 *  the goldens' prompt_embeds and pooled_prompt_embeds. */
static void test_prompt_encoder(void)
{
    df_safetensors_t *st = open_golden("tiny_text.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_prompt_encoder_t *pe = m ? df_prompt_encoder_new(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(st && pe);
    if (!st || !pe) {
        fprintf(stderr, "%s\n", err.msg);
        df_safetensors_destroy(&st);
        df_sdxl_destroy(&m);
        return;
    }
    const uint32_t D = df_prompt_context_dim(pe), P = df_prompt_pooled_dim(pe);
    CHECK_EQ(D, 64);
    CHECK_EQ(P, 32);
    json_t *prompts = json_loads(df_safetensors_metadata(st, "prompts"), 0, NULL);
    uint64_t n;
    float *ctx_ref = golden_f32(st, "prompt_embeds", &n), *pool_ref = golden_f32(st, "pooled_prompt_embeds", &n);
    df_vk_buffer_t *cb = df_vk_buffer_new(g_dev, 3 * 77 * D * 4, &err), *pb = df_vk_buffer_new(g_dev, P * 4, &err);
    float *got = malloc(3 * 77 * D * sizeof *got);
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        uint32_t chunks = 0;
        int32_t *ids1 = NULL;
        CHECK_OK(df_prompt_encode(pe, g_batch, json_string_value(json_array_get(prompts, i)), df_tensor_at(cb, 0, DF_F32),
                                  df_tensor_at(pb, 0, DF_F32), &ids1, NULL, &chunks, &err),
                 &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        CHECK_EQ(chunks, 1);
        CHECK(ids1 && memcmp(ids1, (const int32_t *)df_safetensors_find(st, "input_ids_1")->data + i * 77, 77 * 4) == 0);
        free(ids1);
        char what[96];
        CHECK_OK(df_vk_download_f32(g_xfer, cb, 0, got, 77 * D, DF_F32, &err), &err);
        snprintf(what, sizeof what, "prompt %zu: prompt_embeds", i);
        check_close(what, got, ctx_ref + i * 77 * D, 77 * D, 1e-4);
        CHECK_OK(df_vk_download_f32(g_xfer, pb, 0, got, P, DF_F32, &err), &err);
        snprintf(what, sizeof what, "prompt %zu: pooled_prompt_embeds", i);
        check_close(what, got, pool_ref + i * P, P, 1e-4);
    }
    /* A prompt of 80 tokens is two chunks; the first encodes like the first
     * 75 tokens alone, and the pooled output comes from the first chunk. */
    char longp[1024] = "", first[1024] = "";
    for (int i = 0; i < 80; i++)
        strcat(longp, i % 2 ? "dog " : "cat ");
    for (int i = 0; i < 75; i++)
        strcat(first, i % 2 ? "dog " : "cat ");
    uint32_t chunks = 0;
    CHECK_OK(df_prompt_tokens(pe, longp, &chunks, &err), &err);
    CHECK_EQ(chunks, 2);
    CHECK_OK(df_prompt_encode(pe, g_batch, longp, df_tensor_at(cb, 0, DF_F32), df_tensor_at(pb, 0, DF_F32), NULL, NULL,
                              &chunks, &err),
             &err);
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    float *two = malloc(2 * 77 * D * sizeof *two), pool2[64];
    CHECK_OK(df_vk_download_f32(g_xfer, cb, 0, two, 2 * 77 * D, DF_F32, &err), &err);
    CHECK_OK(df_vk_download_f32(g_xfer, pb, 0, pool2, P, DF_F32, &err), &err);
    CHECK_OK(df_prompt_encode(pe, g_batch, first, df_tensor_at(cb, 0, DF_F32), df_tensor_at(pb, 0, DF_F32), NULL, NULL,
                              &chunks, &err),
             &err);
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    CHECK_OK(df_vk_download_f32(g_xfer, cb, 0, got, 77 * D, DF_F32, &err), &err);
    check_close("80-token prompt, chunk 1 = first 75 tokens", two, got, 77 * D, 1e-6);
    CHECK_OK(df_vk_download_f32(g_xfer, pb, 0, got, P, DF_F32, &err), &err);
    check_close("80-token prompt, pooled from chunk 1", pool2, got, P, 1e-6);
    free(two), free(got), free(ctx_ref), free(pool_ref);
    json_decref(prompts);
    df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&pb);
    df_prompt_encoder_destroy(&pe);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Opening models: what each wrong path says. */
static void test_sdxl_open_errors(void)
{
    df_error_t err;
    df_error_clear(&err);
    CHECK(df_sdxl_open("/nonexistent/model", NULL, &err) == NULL && err.code == DF_E_NOT_FOUND &&
          strstr(err.msg, "no such model"));
    char path[512];
    path_of(path, sizeof path, g_model, "unet"); /* a folder, but not a model's */
    df_error_clear(&err);
    CHECK(df_sdxl_open(path, NULL, &err) == NULL && strstr(err.msg, "model_index.json"));
    path_of(path, sizeof path, g_model, "tokenizer/vocab.json"); /* a file, but not safetensors */
    df_error_clear(&err);
    CHECK(df_sdxl_open(path, NULL, &err) == NULL && err.code == DF_E_FORMAT && strstr(err.msg, "vocab.json"));
    /* A single file without a tokenizer: the components load, the tokenizer
     * is asked for by name. */
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_single, NULL, &err);
    CHECK(m && df_sdxl_layout_of(m) == DF_SDXL_SINGLE_FILE);
    int32_t pad;
    df_error_clear(&err);
    CHECK(m && !df_sdxl_load_tokenizer(m, 1, &pad, &err) && strstr(err.msg, "--tokenizer"));
    df_sdxl_destroy(&m);
    path_of(path, sizeof path, g_model, "tokenizer");
    df_error_clear(&err);
    m = df_sdxl_open(g_single, path, &err);
    df_clip_tokenizer_t *t = m ? df_sdxl_load_tokenizer(m, 2, &pad, &err) : NULL;
    CHECK(t && pad == 0);
    df_clip_tokenizer_destroy(&t);
    t = m ? df_sdxl_load_tokenizer(m, 1, &pad, &err) : NULL;
    CHECK(t && pad == df_clip_tokenizer_eos(t));
    df_clip_tokenizer_destroy(&t);
    df_sdxl_destroy(&m);

    /* A single file missing a tensor: the error names the file's own name. */
    df_safetensors_t *st = df_safetensors_open(g_single, &err);
    df_st_writer_t *w = df_st_writer_new();
    for (size_t i = 0; st && i < df_safetensors_count(st); i++) {
        const df_st_tensor *x = df_safetensors_at(st, i);
        if (strcmp(x->name, "model.diffusion_model.output_blocks.2.2.conv.weight") != 0)
            df_st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data, &err);
    }
    static const char *const keys[4] = {DF_SGM_META_UNET, DF_SGM_META_VAE, DF_SGM_META_TE1, DF_SGM_META_TE2};
    for (int k = 0; st && k < 4; k++)
        df_st_writer_set_metadata(w, keys[k], df_safetensors_metadata(st, keys[k]), &err);
    path_of(path, sizeof path, g_dir, "broken.safetensors");
    CHECK_OK(df_st_writer_write(w, path, &err), &err);
    df_st_writer_destroy(&w);
    df_safetensors_destroy(&st);
    m = df_sdxl_open(path, NULL, &err);
    df_error_clear(&err);
    df_unet_t *u = m ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(!u && strstr(err.msg, "1 missing (model.diffusion_model.output_blocks.2.2.conv.weight)"));
    df_error_clear(&err);
    df_vae_t *v = m ? df_sdxl_load_vae(m, g_dev, g_xfer, DF_F32, &err) : NULL; /* the rest is intact */
    CHECK(v != NULL);
    df_vae_destroy(&v);
    df_sdxl_destroy(&m);
    unlink(path);
}

/*  SGM names of SDXL 1.0 that single-file tools agree on. */
static void test_sgm_names(void)
{
    df_sdxl_config c;
    df_sdxl_config_preset(DF_SDXL_PRESET_SDXL, 0, &c);
    static const char *const unet[][2] = {
        {"conv_in.weight", "input_blocks.0.0.weight"},
        {"time_embedding.linear_2.bias", "time_embed.2.bias"},
        {"add_embedding.linear_1.weight", "label_emb.0.0.weight"},
        {"down_blocks.0.resnets.1.conv2.weight", "input_blocks.2.0.out_layers.3.weight"},
        {"down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight"},
        {"down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"},
        {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
         "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"},
        {"down_blocks.2.attentions.1.proj_out.bias", "input_blocks.8.1.proj_out.bias"},
        {"mid_block.attentions.0.transformer_blocks.9.ff.net.2.weight",
         "middle_block.1.transformer_blocks.9.ff.net.2.weight"},
        {"mid_block.resnets.1.time_emb_proj.weight", "middle_block.2.emb_layers.1.weight"},
        {"up_blocks.0.resnets.2.norm1.weight", "output_blocks.2.0.in_layers.0.weight"},
        {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.2.conv.weight"},
        {"up_blocks.1.attentions.2.norm.weight", "output_blocks.5.1.norm.weight"},
        {"up_blocks.2.resnets.2.conv2.weight", "output_blocks.8.0.out_layers.3.weight"},
        {"conv_norm_out.weight", "out.0.weight"},
        {"conv_out.bias", "out.2.bias"},
    };
    df_sgm_ref r;
    for (size_t i = 0; i < sizeof unet / sizeof unet[0]; i++) {
        char want[192];
        snprintf(want, sizeof want, "model.diffusion_model.%s", unet[i][1]);
        int ok = df_sgm_unet(&c.unet, unet[i][0], &r) == 0 && strcmp(r.name, want) == 0 && r.part < 0;
        test_checks_++;
        if (!ok) {
            fprintf(stderr, "sgm %s -> %s, want %s\n", unet[i][0], r.name, want);
            test_failures_++;
        }
    }
    static const char *const vae[][2] = {
        {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down.1.block.0.nin_shortcut.weight"},
        {"encoder.down_blocks.0.downsamplers.0.conv.bias", "encoder.down.0.downsample.conv.bias"},
        {"decoder.up_blocks.0.resnets.0.conv1.weight", "decoder.up.3.block.0.conv1.weight"},
        {"decoder.up_blocks.3.resnets.2.norm2.bias", "decoder.up.0.block.2.norm2.bias"},
        {"decoder.up_blocks.1.upsamplers.0.conv.weight", "decoder.up.2.upsample.conv.weight"},
        {"decoder.mid_block.attentions.0.to_out.0.weight", "decoder.mid.attn_1.proj_out.weight"},
        {"encoder.mid_block.attentions.0.group_norm.bias", "encoder.mid.attn_1.norm.bias"},
        {"encoder.conv_norm_out.weight", "encoder.norm_out.weight"},
        {"post_quant_conv.weight", "post_quant_conv.weight"},
    };
    for (size_t i = 0; i < sizeof vae / sizeof vae[0]; i++) {
        char want[192];
        snprintf(want, sizeof want, "first_stage_model.%s", vae[i][1]);
        int ok = df_sgm_vae(&c.vae, vae[i][0], &r) == 0 && strcmp(r.name, want) == 0;
        test_checks_++;
        if (!ok) {
            fprintf(stderr, "sgm %s -> %s, want %s\n", vae[i][0], r.name, want);
            test_failures_++;
        }
    }
    CHECK(df_sgm_te2("text_model.encoder.layers.31.self_attn.v_proj.bias", &r) == 0 && r.part == 2 &&
          strcmp(r.name, "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_bias") == 0);
    CHECK(df_sgm_te2("text_projection.weight", &r) == 0 && r.transpose &&
          strcmp(r.name, "conditioner.embedders.1.model.text_projection") == 0);
    CHECK(df_sgm_te2("text_model.encoder.layers.0.mlp.fc2.weight", &r) == 0 &&
          strcmp(r.name, "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_proj.weight") == 0);
    CHECK(df_sgm_te1("text_model.final_layer_norm.weight", &r) == 0 &&
          strcmp(r.name, "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight") == 0);
    /* Names a component does not have. */
    CHECK(df_sgm_unet(&c.unet, "down_blocks.0.attentions.0.norm.weight", &r) == -1); /* level 0 has no attention */
    CHECK(df_sgm_unet(&c.unet, "down_blocks.2.downsamplers.0.conv.weight", &r) == -1);
    CHECK(df_sgm_unet(&c.unet, "up_blocks.9.resnets.0.conv1.weight", &r) == -1);
    CHECK(df_sgm_vae(&c.vae, "encoder.down_blocks.0.resnets.2.conv1.weight", &r) == -1);
    CHECK(df_sgm_te2("nonsense", &r) == -1);
    CHECK(df_sgm_te1("nonsense", &r) == -1);
}

/*  The component runner end to end on files, as a user would run it. */
static void test_component_runner(void)
{
    char out[256], golden[512];
    snprintf(out, sizeof out, "%s/unet_out.safetensors", g_dir);
    path_of(golden, sizeof golden, g_golden, "tiny_unet.safetensors");
    char *argv[] = {"component", "unet", "--model", g_model, "--in", golden, "--out", out, NULL};
    CHECK_EQ(df_component_main(8, argv), 0);
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *got = df_safetensors_open(out, &err), *want = open_golden("tiny_unet.safetensors");
    CHECK(got && want);
    uint64_t n1 = 0, n2 = 0;
    float *a = got ? golden_f32(got, "noise_pred", &n1) : NULL, *b = want ? golden_f32(want, "noise_pred", &n2) : NULL;
    CHECK(a && b && n1 == n2);
    if (a && b && n1 == n2)
        check_close("component unet: noise_pred", a, b, n1, 1e-4);
    free(a), free(b);
    df_safetensors_destroy(&got);
    df_safetensors_destroy(&want);
    /* Misuse: a missing input tensor, no prompt, an unknown component. */
    char *bad1[] = {"component", "vae-decode", "--model", g_model, "--in", golden, "--out", out, NULL};
    CHECK_EQ(df_component_main(8, bad1), 1);
    char *bad2[] = {"component", "text", "--model", g_model, "--out", out, NULL};
    CHECK_EQ(df_component_main(6, bad2), 2);
    char *bad3[] = {"component", "clip", "--model", g_model, "--out", out, NULL};
    CHECK_EQ(df_component_main(6, bad3), 2);

    /* The gradient runner: loss and every factor's gradient under the LoRA
     * file's names, as autograd computed them. */
    char lora[512], grads[512];
    path_of(lora, sizeof lora, g_golden, "tiny_lora.safetensors");
    path_of(grads, sizeof grads, g_golden, "tiny_lora_grad.safetensors");
    char *gargv[] = {"component", "unet-lora-grad", "--model", g_model, "--lora", lora, "--in", grads, "--out", out, NULL};
    CHECK_EQ(df_component_main(10, gargv), 0);
    got = df_safetensors_open(out, &err);
    want = open_golden("tiny_lora_grad.safetensors");
    CHECK(got && want);
    int compared = 0;
    for (size_t i = 0; got && want && i < df_safetensors_count(got); i++) {
        const char *name = df_safetensors_at(got, i)->name;
        float *x = golden_f32(got, name, &n1), *y = golden_f32(want, name, &n2);
        CHECK(x && y && n1 == n2);
        if (x && y && n1 == n2 && (strcmp(name, "loss") == 0 || strstr(name, "mid_block_attentions_0_proj_out") ||
                                   strstr(name, "resnets_0_conv1"))) {
            char what[200];
            snprintf(what, sizeof what, "component unet-lora-grad: %.40s", name);
            check_close(what, x, y, n1, 1e-3);
            compared++;
        }
        free(x), free(y);
    }
    /* The golden holds the 6 inputs and the factors after an AdamW step besides. */
    size_t adamw = 0;
    for (size_t i = 0; want && i < df_safetensors_count(want); i++)
        adamw += strncmp(df_safetensors_at(want, i)->name, "adamw.", 6) == 0;
    CHECK(compared == 5 && got && df_safetensors_count(got) == df_safetensors_count(want) - 6 - adamw);
    df_safetensors_destroy(&got);
    df_safetensors_destroy(&want);
    /* No LoRA; inputs without a target. */
    char *gbad1[] = {"component", "unet-lora-grad", "--model", g_model, "--in", grads, "--out", out, NULL};
    CHECK_EQ(df_component_main(8, gbad1), 2);
    char *gbad2[] = {"component", "unet-lora-grad", "--model", g_model, "--lora", lora, "--in", golden, "--out", out,
                     NULL};
    CHECK_EQ(df_component_main(10, gbad2), 1);
    unlink(out);
}

/*  Tiled VAE: one tile equals the untiled result (the goldens); several
 *  tiles stay close to it (the decoder's group norms and attention see the
 *  whole image, so tiles can only approximate it) and have no seams. */
static void test_vae_tiled(void)
{
    df_safetensors_t *st = open_golden("tiny_vae.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_vae_t *vae = m && st ? df_sdxl_load_vae(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(vae != NULL);
    if (!vae) {
        df_sdxl_destroy(&m);
        df_safetensors_destroy(&st);
        return;
    }
    uint64_t nl, ni, nd, nm;
    float *lat = golden_f32(st, "latents", &nl), *img = golden_f32(st, "image", &ni);
    float *dec_ref = golden_f32(st, "decoded", &nd), *mean_ref = golden_f32(st, "mean", &nm);
    float *dec = malloc(nd * sizeof *dec), *mean = malloc(nm * sizeof *mean), *lv = malloc(nm * sizeof *lv);
    CHECK_OK(df_vae_decode_tiled(vae, g_batch, g_xfer, NULL, lat, 1, 8, 6, dec, &err), &err);
    check_close("tiled decode, one tile", dec, dec_ref, nd, 1e-4);
    CHECK_OK(df_vae_encode_tiled(vae, g_batch, g_xfer, NULL, img, 1, 64, 48, mean, lv, &err), &err);
    check_close("tiled encode, one tile", mean, mean_ref, nm, 1e-4);

    /* 24 x 20 latents in tiles of 16 overlapping by 8: 2 x 2 tiles. */
    const uint32_t h = 24, w = 20, f = 8;
    uint64_t n = 4ull * h * w, no = 3ull * h * f * w * f;
    float *big = malloc(n * sizeof *big), *full = malloc(no * sizeof *full), *tl = malloc(no * sizeof *tl);
    for (uint64_t i = 0; i < n; i++)
        big[i] = (float)sin(0.05 * (double)i) + 0.3f * (float)cos(0.7 * (double)i);
    df_vae_tiling t = {.tile = 16, .overlap = 8};
    df_vk_buffer_t *lb = df_vk_buffer_new(g_dev, n * 4, &err), *ob = df_vk_buffer_new(g_dev, no * 4, &err);
    CHECK_OK(df_vk_upload(g_xfer, lb, 0, big, n * 4, &err), &err);
    df_fmap lm = {df_tensor_at(lb, 0, DF_F32), 1, 4, h, w};
    CHECK_OK(df_vae_decode(vae, g_batch, &lm, df_tensor_at(ob, 0, DF_F32), &err), &err);
    CHECK_OK(df_vk_download(g_xfer, ob, 0, full, no * 4, &err), &err);
    CHECK_OK(df_vae_decode_tiled(vae, g_batch, g_xfer, &t, big, 1, h, w, tl, &err), &err);
    double sum = 0, scale = 0, worst_jump = 0, typical_jump = 0;
    int finite = 1;
    for (uint64_t i = 0; i < no; i++) {
        finite &= isfinite(tl[i]);
        sum += fabs(tl[i] - full[i]);
        scale += fabs(full[i]);
    }
    /* Seams: the step between neighbouring columns where a tile begins or
     * ends is no larger than the steps elsewhere. */
    const uint32_t W = w * f, H = h * f;
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 1; x < W; x++) {
            double d = fabs(tl[y * W + x] - tl[y * W + x - 1]);
            if (x == 4 * f || x == 16 * f) /* where a tile begins or ends */
                worst_jump = fmax(worst_jump, d);
            else
                typical_jump = fmax(typical_jump, d);
        }
    CHECK(finite);
    fprintf(stderr, "  tiled decode, 2x2 tiles: mean |tiled - whole| = %.3g of mean |whole| %.3g; "
                    "largest step at tile edges %.3g, elsewhere %.3g\n",
            sum / (double)no, scale / (double)no, worst_jump, typical_jump);
    CHECK(sum < 0.25 * scale);
    CHECK(worst_jump <= typical_jump);
    df_error_clear(&err);
    CHECK_FAILS(df_vae_encode_tiled(vae, g_batch, g_xfer, NULL, img, 1, 60, 48, mean, lv, &err), &err, DF_E_INVALID,
                "multiple of 8");
    free(big), free(full), free(tl), free(lat), free(img), free(dec_ref), free(mean_ref), free(dec), free(mean), free(lv);
    df_vk_buffer_destroy(&lb), df_vk_buffer_destroy(&ob);
    df_vae_destroy(&vae);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  The whole pipeline (prompt -> text encoders -> sampling loop with
 *  guidance -> final latents) against diffusers' UNet and schedulers driven
 *  the way SDXL's pipeline drives them, for every sampler, from the same
 *  initial (and ancestral) noise. */
static void test_pipeline_parity(void)
{
    df_safetensors_t *st = open_golden("tiny_pipeline.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_generator_t *gen = m && st ? df_generator_new(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(gen != NULL);
    if (!gen) {
        fprintf(stderr, "%s\n", err.msg);
        df_sdxl_destroy(&m);
        df_safetensors_destroy(&st);
        return;
    }
    int side = atoi(df_safetensors_metadata(st, "size"));
    df_gen_params p = {.prompt = df_safetensors_metadata(st, "prompt"), .width = (uint32_t)side,
                       .height = (uint32_t)side, .steps = atoi(df_safetensors_metadata(st, "steps")),
                       .guidance = (float)atof(df_safetensors_metadata(st, "guidance")), .count = 1};
    for (int s = 0; s < DF_SAMPLER_COUNT; s++) {
        char name[64];
        uint64_t n0, n1, n2;
        snprintf(name, sizeof name, "%s.init", df_sampler_name((df_sampler)s));
        float *init = golden_f32(st, name, &n0);
        snprintf(name, sizeof name, "%s.noise", df_sampler_name((df_sampler)s));
        float *noise = golden_f32(st, name, &n1);
        snprintf(name, sizeof name, "%s.final", df_sampler_name((df_sampler)s));
        float *want = golden_f32(st, name, &n2);
        float *got = malloc(n0 * sizeof *got);
        p.sampler = (df_sampler)s;
        p.init_noise = init;
        p.ancestral_noise = noise;
        CHECK_OK(df_generate(gen, g_batch, &p, got, NULL, NULL, NULL, &err), &err);
        snprintf(name, sizeof name, "pipeline %s: final latents", df_sampler_name((df_sampler)s));
        check_close(name, got, want, n0, 1e-3);
        free(init), free(noise), free(want), free(got);
    }
    df_generator_destroy(&gen);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Records what the progress callback sees: calls, and the last image's
 *  final denoised estimate. */
typedef struct {
    int calls;
    uint32_t last_image;
    int last_step;
    float denoised[4 * 8 * 12];
} progress_log;

static int log_progress(void *ctx, uint32_t image, int step, int steps, const float *latents)
{
    progress_log *l = ctx;
    l->calls++;
    l->last_image = image, l->last_step = step;
    if (step == steps)
        memcpy(l->denoised, latents, sizeof l->denoised);
    return 0;
}

/*  Seeds: the same request twice gives the same latents and pixels; image
 *  i of a batch equals a single image at seed + i; a negative prompt
 *  changes the result; bad requests are refused by name. */
static void test_generate_determinism(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_generator_t *gen = m ? df_generator_new(m, g_dev, g_xfer, DF_F16, &err) : NULL;
    CHECK(gen != NULL);
    if (!gen) {
        df_sdxl_destroy(&m);
        return;
    }
    df_gen_params p = {.prompt = "a photo of TOK person", .width = 64, .height = 96, .steps = 4, .guidance = 4,
                       .sampler = DF_SAMPLER_EULER_A, .seed = 7, .count = 2};
    const uint64_t n = 4 * 8 * 12, px = 3 * 64 * 96;
    float *a = malloc(2 * n * 4), *b = malloc(2 * n * 4), *one = malloc(n * 4);
    uint8_t *ra = malloc(2 * px), *rb = malloc(2 * px), *r1 = malloc(px);
    CHECK_OK(df_generate(gen, g_batch, &p, a, ra, NULL, NULL, &err), &err);
    static progress_log plog;
    CHECK_OK(df_generate(gen, g_batch, &p, b, rb, log_progress, &plog, &err), &err);
    CHECK(memcmp(a, b, 2 * n * 4) == 0 && memcmp(ra, rb, 2 * px) == 0);
    /* A callback per step per image; at the last step (sigma 0 next) the
     * denoised estimate is where the sampler lands. */
    CHECK(plog.calls == 8 && plog.last_image == 1 && plog.last_step == 4);
    check_close("denoised estimate at the last step = final latents", plog.denoised, b + n, n, 1e-5);
    p.seed = 8, p.count = 1;
    CHECK_OK(df_generate(gen, g_batch, &p, one, r1, NULL, NULL, &err), &err);
    CHECK(memcmp(one, a + n, n * 4) == 0 && memcmp(r1, ra + px, px) == 0);
    CHECK(memcmp(a, a + n, n * 4) != 0); /* different seeds differ */
    p.negative_prompt = "";
    CHECK_OK(df_generate(gen, g_batch, &p, one, NULL, NULL, NULL, &err), &err);
    CHECK(memcmp(one, a + n, n * 4) != 0); /* an empty negative prompt is encoded, not zeros */
    p.negative_prompt = NULL;
    df_gen_params bad = p;
    bad.width = 60;
    CHECK_FAILS(df_generate(gen, g_batch, &bad, one, NULL, NULL, NULL, &err), &err, DF_E_INVALID, "multiples of 32");
    bad = p, bad.steps = 0;
    CHECK_FAILS(df_generate(gen, g_batch, &bad, one, NULL, NULL, NULL, &err), &err, DF_E_INVALID, "steps 0");
    bad = p, bad.sampler = DF_SAMPLER_COUNT;
    CHECK_FAILS(df_generate(gen, g_batch, &bad, one, NULL, NULL, NULL, &err), &err, DF_E_INVALID, "sampler");
    bad = p, bad.count = 0;
    CHECK_FAILS(df_generate(gen, g_batch, &bad, one, NULL, NULL, NULL, &err), &err, DF_E_INVALID, "images");
    bad = p, bad.prompt = "\xff";
    CHECK_FAILS(df_generate(gen, g_batch, &bad, one, NULL, NULL, NULL, &err), &err, DF_E_FORMAT, "UTF-8");
    free(a), free(b), free(one), free(ra), free(rb), free(r1);
    df_generator_destroy(&gen);
    df_sdxl_destroy(&m);
}

/*  A small LoRA on six modules (an attention projection, a convolution and
 *  both transformer projections of the UNet, one projection in each text
 *  encoder), written in three formats. */
typedef struct {
    const char *weight;     /* internal name */
    int component;          /* 0 unet, 1 te1, 2 te2 */
    const char *kohya, *kohya_sgm, *peft;
} lora_mod;

static const lora_mod k_mods[] = {
    {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", 0,
     "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
     "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
     "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"},
    {"down_blocks.0.resnets.0.conv1.weight", 0, "lora_unet_down_blocks_0_resnets_0_conv1",
     "lora_unet_input_blocks_1_0_in_layers_2", "unet.down_blocks.0.resnets.0.conv1"},
    {"down_blocks.1.attentions.0.proj_in.weight", 0, "lora_unet_down_blocks_1_attentions_0_proj_in",
     "lora_unet_input_blocks_4_1_proj_in", "unet.down_blocks.1.attentions.0.proj_in"},
    {"mid_block.attentions.0.proj_out.weight", 0, "lora_unet_mid_block_attentions_0_proj_out",
     "lora_unet_middle_block_1_proj_out", "unet.mid_block.attentions.0.proj_out"},
    {"text_model.encoder.layers.0.self_attn.q_proj.weight", 1, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
     "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"},
    {"text_model.encoder.layers.1.mlp.fc1.weight", 2, "lora_te2_text_model_encoder_layers_1_mlp_fc1",
     "lora_te2_text_model_encoder_layers_1_mlp_fc1", "text_encoder_2.text_model.encoder.layers.1.mlp.fc1"},
};

/*  format 0 kohya (diffusers names), 1 kohya (SGM names), 2 PEFT. Rank 4,
 *  alpha 2: PEFT has no alpha, so its B carries the alpha / rank factor. */
static void write_lora(const char *path, int format, const df_sdxl_config *cfg, float **keep)
{
    df_arch_list lists[3] = {{0}};
    df_error_t err;
    df_error_clear(&err);
    df_arch_unet(&cfg->unet, &lists[0], &err);
    df_arch_clip_text(&cfg->te1, &lists[1], &err);
    df_arch_clip_text(&cfg->te2, &lists[2], &err);
    df_st_writer_t *w = df_st_writer_new();
    static float alpha = 2;
    const int r = 4;
    for (size_t i = 0; i < sizeof k_mods / sizeof k_mods[0]; i++) {
        const df_arch_tensor *a = df_arch_find(&lists[k_mods[i].component], k_mods[i].weight);
        int64_t out = a->shape[0], in = a->shape[1], kh = a->ndim == 4 ? a->shape[2] : 1;
        uint64_t nd = (uint64_t)r * in * kh * kh, nu = (uint64_t)out * r;
        float *down = keep[2 * i] = malloc(nd * 4), *up = keep[2 * i + 1] = malloc(nu * 4);
        df_philox_fill_normal(down, nd, 100 + i, 0);
        df_philox_fill_normal(up, nu, 200 + i, 0);
        for (uint64_t k = 0; k < nu; k++)
            up[k] *= format == 2 ? 0.1f * alpha / r : 0.1f;
        int64_t sd[4] = {r, in, kh, kh}, su[4] = {out, r, 1, 1};
        const char *mod = format == 0 ? k_mods[i].kohya : format == 1 ? k_mods[i].kohya_sgm : k_mods[i].peft;
        char name[256];
        snprintf(name, sizeof name, "%s%s", mod, format == 2 ? ".lora_A.weight" : ".lora_down.weight");
        df_st_writer_add(w, name, DF_F32, a->ndim, sd, down, &err);
        snprintf(name, sizeof name, "%s%s", mod, format == 2 ? ".lora_B.weight" : ".lora_up.weight");
        df_st_writer_add(w, name, DF_F32, a->ndim, su, up, &err);
        if (format != 2) {
            snprintf(name, sizeof name, "%s.alpha", mod);
            df_st_writer_add(w, name, DF_F32, 0, NULL, &alpha, &err);
        }
    }
    CHECK_OK(df_st_writer_write(w, path, &err), &err);
    df_st_writer_destroy(&w);
    for (int c = 0; c < 3; c++)
        df_arch_list_free(&lists[c]);
}

/*  Loads the tiny model, merges lora (NULL: none) and runs the UNet golden
 *  inputs and both text encoders on a prompt; out gets the noise prediction
 *  followed by the context and pooled embeddings. */
static int run_with_lora(const char *lora, float scale, int unmerged, float *out, uint64_t *n, df_error_t *err)
{
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, err);
    df_unet_t *u = m ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, err) : NULL;
    df_clip_text_t *te1 = u ? df_sdxl_load_text_encoder(m, 1, g_dev, g_xfer, DF_F32, err) : NULL;
    df_clip_text_t *te2 = te1 ? df_sdxl_load_text_encoder(m, 2, g_dev, g_xfer, DF_F32, err) : NULL;
    int rc = te2 ? DF_OK : err->code;
    if (rc == DF_OK && lora) {
        df_lora_targets t = {u, te1, te2};
        df_lora_stats stats;
        rc = (unmerged ? df_lora_attach : df_lora_merge)(lora, scale, df_sdxl_config_of(m), &t, g_batch, g_xfer,
                                                          &stats, err);
        if (rc == DF_OK && unmerged && df_weights_adapter_count(df_unet_weights(u)) != 4)
            rc = df_error_set(err, DF_E_MISMATCH, "%zu adapters on the UNet",
                              df_weights_adapter_count(df_unet_weights(u)));
        if (rc == DF_OK && (stats.modules[0] != 4 || stats.modules[1] != 1 || stats.modules[2] != 1 || stats.rank != 4))
            rc = df_error_set(err, DF_E_MISMATCH, "lora merged %u/%u/%u modules of rank %u", stats.modules[0],
                              stats.modules[1], stats.modules[2], stats.rank);
    }
    df_safetensors_t *st = open_golden("tiny_unet.safetensors");
    uint64_t ns = 0, nc, nt, n1, n2;
    if (rc == DF_OK) {
        const df_st_tensor *smp = df_safetensors_find(st, "sample"), *ctx = df_safetensors_find(st, "encoder_hidden_states");
        df_vk_buffer_t *sb = upload_golden(st, "sample", &ns), *cb = upload_golden(st, "encoder_hidden_states", &nc);
        df_vk_buffer_t *tb = upload_golden(st, "text_embeds", &nt), *ob = df_vk_buffer_new(g_dev, ns * 4, err);
        float *ts = golden_f32(st, "timestep", &n1), *ids = golden_f32(st, "time_ids", &n2);
        df_fmap s = {df_tensor_at(sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                     (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
        df_unet_inputs in = {.sample = &s, .timesteps = ts, .context = df_tensor_at(cb, 0, DF_F32),
                             .context_len = (uint32_t)ctx->shape[1], .text_embeds = df_tensor_at(tb, 0, DF_F32),
                             .time_ids = ids};
        rc = df_unet_forward(u, g_batch, &in, df_tensor_at(ob, 0, DF_F32), err);
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, ob, 0, out, ns * 4, err);
        /* The text encoders through the same weights the merge wrote. */
        int32_t ids77[77];
        for (int i = 0; i < 77; i++)
            ids77[i] = i < 6 ? 49 + i * 7 : 0;
        ids77[6] = 625;
        df_vk_buffer_t *h1 = df_vk_buffer_new(g_dev, 77 * 32 * 4, err), *h2 = df_vk_buffer_new(g_dev, 77 * 32 * 4, err);
        if (rc == DF_OK)
            rc = df_clip_text_forward(te1, g_batch, ids77, 1, df_tensor_at(h1, 0, DF_F32), (df_tensor){{NULL, 0}, DF_F32},
                                      err);
        if (rc == DF_OK)
            rc = df_clip_text_forward(te2, g_batch, ids77, 1, df_tensor_at(h2, 0, DF_F32), (df_tensor){{NULL, 0}, DF_F32},
                                      err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(g_batch, err);
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, h1, 0, out + ns, 77 * 32 * 4, err);
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, h2, 0, out + ns + 77 * 32, 77 * 32 * 4, err);
        *n = ns + 2 * 77 * 32;
        free(ts), free(ids);
        df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&ob);
        df_vk_buffer_destroy(&h1), df_vk_buffer_destroy(&h2);
    }
    df_safetensors_destroy(&st);
    df_unet_destroy(&u);
    df_clip_text_destroy(&te1);
    df_clip_text_destroy(&te2);
    df_sdxl_destroy(&m);
    return rc;
}

/*  LoRAs attached unmerged give the merged images (to rounding), and come
 *  out again: after clearing, the generator draws what the bare model does,
 *  bit for bit. Merged LoRAs cannot be cleared. */
static void check_lora_modes(const char *lora)
{
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_gen_params p = {.prompt = "a photo of TOK person", .width = 64, .height = 64, .steps = 2, .guidance = 3,
                       .sampler = DF_SAMPLER_EULER, .seed = 4, .count = 1};
    enum { N = 4 * 8 * 8 };
    static float bare[N], merged[N], attached[N], cleared[N];
    df_generator_t *g1 = m ? df_generator_new(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_generator_t *g2 = m ? df_generator_new(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(g1 && g2);
    if (g1 && g2) {
        CHECK_OK(df_generate(g1, g_batch, &p, bare, NULL, NULL, NULL, &err), &err);
        CHECK_OK(df_generator_add_lora(g1, g_batch, lora, 0.8f, &err), &err);
        CHECK_OK(df_generate(g1, g_batch, &p, merged, NULL, NULL, NULL, &err), &err);
        CHECK_FAILS(df_generator_clear_loras(g1, &err), &err, DF_E_STATE, "merged");
        CHECK_FAILS(df_generator_set_lora_mode(g1, 1, &err), &err, DF_E_STATE, "already");
        CHECK_OK(df_generator_set_lora_mode(g2, 1, &err), &err);
        CHECK_OK(df_generator_add_lora(g2, g_batch, lora, 0.8f, &err), &err);
        CHECK_OK(df_generate(g2, g_batch, &p, attached, NULL, NULL, NULL, &err), &err);
        check_close("unmerged LoRA = merged LoRA (final latents)", attached, merged, N, 1e-5);
        CHECK(memcmp(merged, bare, sizeof bare) != 0);
        CHECK_OK(df_generator_clear_loras(g2, &err), &err);
        CHECK_OK(df_generate(g2, g_batch, &p, cleared, NULL, NULL, NULL, &err), &err);
        CHECK(memcmp(cleared, bare, sizeof bare) == 0);
    }
    df_generator_destroy(&g1);
    df_generator_destroy(&g2);
    df_sdxl_destroy(&m);
}

/*  A generator that releases its text encoders after each conditioning
 *  loads them again, with the LoRA merged again, and draws the very same
 *  images as one that keeps them. */
static void check_text_release(const char *lora)
{
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_gen_params p = {.prompt = "a photo of TOK person", .width = 64, .height = 64, .steps = 2, .guidance = 3,
                       .sampler = DF_SAMPLER_EULER, .seed = 3, .count = 1};
    const uint64_t n = 4 * 8 * 8;
    float lat[3][4 * 8 * 8];
    for (int keep = 1; keep >= 0 && m; keep--) {
        df_generator_t *gen = df_generator_new(m, g_dev, g_xfer, DF_F32, &err);
        CHECK(gen != NULL);
        if (!gen)
            break;
        df_generator_keep_text(gen, keep);
        CHECK_OK(df_generator_add_lora(gen, g_batch, lora, 0.8f, &err), &err);
        CHECK(df_generator_text_loaded(gen));
        for (int run = 0; run < (keep ? 1 : 2); run++) {
            CHECK_OK(df_generate(gen, g_batch, &p, lat[keep ? 0 : 1 + run], NULL, NULL, NULL, &err), &err);
            CHECK(df_generator_text_loaded(gen) == keep);
        }
        /* A LoRA that fails to merge leaves the generator as it was. */
        CHECK_FAILS(df_generator_add_lora(gen, g_batch, "/nonexistent/l.safetensors", 1.0f, &err), &err,
                    DF_E_NOT_FOUND, "l.safetensors");
        df_generator_destroy(&gen);
    }
    CHECK(memcmp(lat[0], lat[1], n * 4) == 0 && memcmp(lat[0], lat[2], n * 4) == 0);
    df_sdxl_destroy(&m);
}

static void test_lora_formats(void)
{
    df_sdxl_config cfg;
    df_sdxl_config_preset(DF_SDXL_PRESET_TINY, 626, &cfg);
    char paths[3][256];
    float *factors[3][12];
    for (int f = 0; f < 3; f++) {
        snprintf(paths[f], sizeof paths[f], "%s/lora%d.safetensors", g_dir, f);
        write_lora(paths[f], f, &cfg, factors[f]);
    }
    df_error_t err;
    df_error_clear(&err);
    static float base[40000], with[3][40000];
    uint64_t n = 0;
    static float unmerged[40000];
    CHECK_OK(run_with_lora(NULL, 0, 0, base, &n, &err), &err);
    for (int f = 0; f < 3; f++) {
        df_error_clear(&err);
        CHECK_OK(run_with_lora(paths[f], 0.8f, 0, with[f], &n, &err), &err);
    }
    /* Unmerged: the same outputs from pristine weights plus adapters (an
     * attention projection, a 3x3 convolution, a projection before GELU). */
    CHECK_OK(run_with_lora(paths[0], 0.8f, 1, unmerged, &n, &err), &err);
    double dun = 0;
    for (uint64_t i = 0; i < n; i++)
        dun = fmax(dun, fabs(unmerged[i] - with[0][i]));
    CHECK(n > 0 && n < 40000);
    double diff = 0, scale = 0, d01 = 0, d02 = 0;
    for (uint64_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs(with[0][i] - base[i]));
        scale = fmax(scale, fabs(base[i]));
        d01 = fmax(d01, fabs(with[0][i] - with[1][i]));
        d02 = fmax(d02, fabs(with[0][i] - with[2][i]));
    }
    fprintf(stderr, "  lora changes the outputs by %.3g (scale %.3g); formats differ by %.2g (SGM names), %.2g (PEFT); "
            "unmerged by %.2g\n", diff, scale, d01, d02, dun);
    CHECK(dun <= 1e-5 * scale);
    CHECK(diff > 1e-3 * scale);              /* it did something */
    CHECK(d01 <= 1e-6 * scale && d02 <= 1e-5 * scale); /* the same adapter in each format */

    /* The merged weight is W + scale * alpha / rank * up @ down. */
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_clip_text_t *te1 = m ? df_sdxl_load_text_encoder(m, 1, g_dev, g_xfer, DF_F32, &err) : NULL;
    const df_weight *w = te1 ? df_weights_find(df_clip_text_weights(te1), k_mods[4].weight) : NULL;
    float *before = malloc(32 * 32 * 4), *after = malloc(32 * 32 * 4), *want = malloc(32 * 32 * 4);
    CHECK(w != NULL);
    if (w) {
        df_vk_download(g_xfer, w->t.ref.buf, w->t.ref.offset, before, 32 * 32 * 4, &err);
        df_lora_targets t = {NULL, te1, NULL};
        /* A file for all three components cannot merge into one of them. */
        CHECK_FAILS(df_lora_merge(paths[0], 1.0f, &cfg, &t, g_batch, g_xfer, NULL, &err), &err, DF_E_FORMAT,
                    "not loaded");
        /* Only TE1's module: write it alone. */
        char one[256];
        snprintf(one, sizeof one, "%s/lora_te1.safetensors", g_dir);
        df_st_writer_t *wr = df_st_writer_new();
        int64_t sd[2] = {4, 32}, su[2] = {32, 4};
        static float alpha = 2;
        df_st_writer_add(wr, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", DF_F32, 2, sd,
                         factors[0][8], &err);
        df_st_writer_add(wr, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", DF_F32, 2, su,
                         factors[0][9], &err);
        df_st_writer_add(wr, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha", DF_F32, 0, NULL, &alpha,
                         &err);
        df_st_writer_write(wr, one, &err);
        df_st_writer_destroy(&wr);
        CHECK_OK(df_lora_merge(one, 1.5f, &cfg, &t, g_batch, g_xfer, NULL, &err), &err);
        df_vk_download(g_xfer, w->t.ref.buf, w->t.ref.offset, after, 32 * 32 * 4, &err);
        for (int o = 0; o < 32; o++)
            for (int i = 0; i < 32; i++) {
                double acc = 0;
                for (int k = 0; k < 4; k++)
                    acc += (double)factors[0][9][o * 4 + k] * factors[0][8][k * 32 + i];
                want[o * 32 + i] = (float)(before[o * 32 + i] + 1.5 * 2.0 / 4.0 * acc);
            }
        check_close("merged weight = W + s (alpha/r) up @ down", after, want, 32 * 32, 1e-6);

        /* Bad files: an unknown module, a shape for another model, half a pair. */
        const char *bad_names[3] = {"lora_unet_mid_block_attentions_7_proj_in.lora_down.weight",
                                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"};
        const char *needles[3] = {"name no module", "do not fit", "without both"};
        for (int b = 0; b < 3; b++) {
            wr = df_st_writer_new();
            int64_t wrong[2] = {4, b == 1 ? 48 : 32};
            df_st_writer_add(wr, bad_names[b], DF_F32, 2, b == 1 ? wrong : sd, factors[0][8], &err);
            if (b < 2)
                df_st_writer_add(wr, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", DF_F32, 2,
                                 su, factors[0][9], &err);
            static float big[4 * 48];
            if (b == 1) { /* the down factor for a 48-wide input: a LoRA for another model */
                df_st_writer_destroy(&wr);
                wr = df_st_writer_new();
                df_st_writer_add(wr, bad_names[b], DF_F32, 2, wrong, big, &err);
                df_st_writer_add(wr, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", DF_F32, 2,
                                 su, factors[0][9], &err);
            }
            df_st_writer_write(wr, one, &err);
            df_st_writer_destroy(&wr);
            df_error_clear(&err);
            CHECK_FAILS(df_lora_merge(one, 1.0f, &cfg, &t, g_batch, g_xfer, NULL, &err), &err, DF_E_FORMAT, needles[b]);
        }
        CHECK_FAILS(df_lora_merge("/nonexistent/lora.safetensors", 1.0f, &cfg, &t, g_batch, g_xfer, NULL, &err), &err,
                    DF_E_NOT_FOUND, "lora.safetensors");
        unlink(one);
    }
    free(before), free(after), free(want);
    df_clip_text_destroy(&te1);
    df_sdxl_destroy(&m);
    check_text_release(paths[0]);
    check_lora_modes(paths[0]);
    for (int f = 0; f < 3; f++) {
        for (int k = 0; k < 12; k++)
            free(factors[f][k]);
        unlink(paths[f]);
    }
}

/*  A LoRA through diffusers' own LoRA layers (every attention projection,
 *  two transformer projections, a 3x3 ResNet convolution): our merged and
 *  unmerged forms give diffusers' noise prediction. */
static void test_lora_matches_diffusers(void)
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    for (int unmerged = 0; unmerged < 2 && st && m; unmerged++) {
        df_unet_t *unet = df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err);
        CHECK(unet != NULL);
        if (!unet)
            break;
        df_lora_targets t = {unet, NULL, NULL, 0};
        df_lora_stats stats;
        CHECK_OK((unmerged ? df_lora_attach : df_lora_merge)(lora, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer,
                                                              &stats, &err),
                 &err);
        const df_st_tensor *smp = df_safetensors_find(st, "sample");
        const df_st_tensor *ctx = df_safetensors_find(st, "encoder_hidden_states");
        uint64_t ns, nc, nt, n1, n2;
        df_vk_buffer_t *sb = upload_golden(st, "sample", &ns), *cb = upload_golden(st, "encoder_hidden_states", &nc);
        df_vk_buffer_t *tb = upload_golden(st, "text_embeds", &nt), *ob = df_vk_buffer_new(g_dev, ns * 4, &err);
        float *timesteps = golden_f32(st, "timestep", &n1), *time_ids = golden_f32(st, "time_ids", &n2);
        df_fmap sample = {df_tensor_at(sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                          (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
        df_unet_inputs in = {.sample = &sample, .timesteps = timesteps, .context = df_tensor_at(cb, 0, DF_F32),
                             .context_len = (uint32_t)ctx->shape[1], .text_embeds = df_tensor_at(tb, 0, DF_F32),
                             .time_ids = time_ids};
        CHECK_OK(df_unet_forward(unet, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err);
        check_golden(st, "noise_pred", ob, ns, unmerged ? "diffusers LoRA layers, unmerged" : "diffusers LoRA layers, merged",
                     1e-4);
        free(timesteps), free(time_ids);
        df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&ob);
        df_unet_destroy(&unet);
    }
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Training's backward pass against autograd: the loss, the prediction and
 *  the gradient of every LoRA factor (attention projections, transformer
 *  projections, a 3x3 convolution) through diffusers' UNet with its own LoRA
 *  layers, all within 1e-3 of scale. */
/*  A gradient against autograd's: the largest error over the largest
 *  magnitude, printed with the name when over tol; zero_ok lets an all-zero
 *  reference pass (a factor that feeds nothing SDXL reads). */
static double grad_error(const char *name, const float *got, const float *want, uint64_t n, double tol, int zero_ok)
{
    double scale = 0, e = 0;
    for (uint64_t k = 0; k < n; k++) {
        scale = fmax(scale, fabs(want[k]));
        e = fmax(e, fabs((double)got[k] - want[k]));
    }
    double rel = scale > 0 ? e / scale : e;
    if (rel > tol)
        fprintf(stderr, "  %s: max err %.3g of scale %.3g\n", name, e, scale);
    CHECK(rel <= tol && (scale > 0 || zero_ok));
    return rel;
}

static void run_lora_grad(const char *model, df_dtype store, double tol)
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, store, &err) : NULL;
    CHECK(unet != NULL);
    if (!unet) {
        df_sdxl_destroy(&m);
        df_safetensors_destroy(&st);
        return;
    }
    df_lora_targets t = {unet, NULL, NULL, 0};
    CHECK_OK(df_lora_attach(lora, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer, NULL, &err), &err);
    df_weights_t *w = df_unet_weights(unet);
    CHECK_OK(df_weights_adapter_grads(w, g_batch, &err), &err);
    const df_st_tensor *smp = df_safetensors_find(st, "sample"), *ctx = df_safetensors_find(st, "encoder_hidden_states");
    uint64_t ns, nc, nt, ng, n1, n2;
    df_vk_buffer_t *sb = upload_golden(st, "sample", &ns), *cb = upload_golden(st, "encoder_hidden_states", &nc);
    df_vk_buffer_t *tb = upload_golden(st, "text_embeds", &nt), *gb = upload_golden(st, "target", &ng);
    df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, ns * 4, &err), *lb = df_vk_buffer_new(g_dev, 3 * 4, &err);
    float *timesteps = golden_f32(st, "timestep", &n1), *time_ids = golden_f32(st, "time_ids", &n2);
    df_fmap sample = {df_tensor_at(sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                      (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
    df_unet_inputs in = {.sample = &sample, .timesteps = timesteps, .context = df_tensor_at(cb, 0, DF_F32),
                         .context_len = (uint32_t)ctx->shape[1], .text_embeds = df_tensor_at(tb, 0, DF_F32),
                         .time_ids = time_ids};
    df_tensor none = {{NULL, 0}, DF_F32};
    CHECK_OK(df_unet_lora_grad(unet, g_batch, &in, df_tensor_at(gb, 0, DF_F32), none, 1.0f, df_tensor_at(pb, 0, DF_F32),
                               df_tensor_at(lb, 0, DF_F32), &err),
             &err);
    check_golden(st, "noise_pred", pb, ns, "lora training: noise_pred", tol / 10);
    /* No target, or a sample the UNet cannot take: refused by name. */
    CHECK_FAILS(df_unet_lora_grad(unet, g_batch, &in, none, none, 1.0f, none, df_tensor_at(lb, 0, DF_F32), &err), &err,
                DF_E_INVALID, "target");
    df_fmap odd = sample;
    odd.w = 6;
    in.sample = &odd;
    CHECK_FAILS(df_unet_lora_grad(unet, g_batch, &in, df_tensor_at(gb, 0, DF_F32), none, 1.0f, none,
                                  df_tensor_at(lb, 0, DF_F32), &err),
                &err, DF_E_INVALID, "multiples of 4");
    in.sample = &sample;
    float losses[3] = {0}, *want_loss = golden_f32(st, "loss", &n1);
    df_vk_download(g_xfer, lb, 0, losses, sizeof losses, &err);
    fprintf(stderr, "  loss %.7g, autograd %.7g (%s weights)\n", losses[0], want_loss[0], df_dtype_name(store));
    CHECK(fabs(losses[0] - want_loss[0]) <= tol / 100 * fabs(want_loss[0]));
    free(want_loss);
    /* Every factor's gradient, by the LoRA file's own names. */
    size_t nad = df_weights_adapter_count(w), checked = 0;
    double worst = 0;
    char worst_name[200] = "";
    for (size_t i = 0; i < nad; i++) {
        const df_weight_adapter *a = df_weights_adapter_at(w, i, NULL);
        for (int f = 0; f < 2; f++) {
            const char *gname = f ? a->up_key : a->down_key;
            uint64_t n;
            float *want = golden_f32(st, gname, &n), *got = malloc(n * 4);
            CHECK(want != NULL);
            if (!want) {
                free(got);
                continue;
            }
            df_tensor g = f ? a->grad_up : a->grad_down;
            df_vk_download(g_xfer, g.ref.buf, g.ref.offset, got, n * 4, &err);
            double rel = grad_error(gname, got, want, n, tol, 0);
            if (rel > worst) {
                worst = rel;
                snprintf(worst_name, sizeof worst_name, "%s", gname);
            }
            checked++;
            free(want), free(got);
        }
    }
    fprintf(stderr, "  %zu LoRA gradients match autograd (%s weights); worst %.2g of scale (%s)\n", checked,
            df_dtype_name(store), worst, worst_name);
    CHECK(checked == 2 * nad && nad > 10);
    free(timesteps), free(time_ids);
    df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&gb);
    df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&lb);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

static void test_lora_grad_matches_autograd(void) { run_lora_grad(g_model, DF_F32, 1e-3); }
/*  f16 base weights, as training stores SDXL: within f16's rounding. */
static void test_lora_grad_f16_weights(void) { run_lora_grad(g_model16, DF_F16, 2e-2); }

/*  Uploads a golden's inputs for the UNet (sample, conditioning, target). */
typedef struct {
    df_vk_buffer_t *sb, *cb, *tb, *gb;
    float *timesteps, *time_ids;
    df_fmap sample;
    df_unet_inputs in;
} unet_case;

static void unet_case_load(unet_case *u, const df_safetensors_t *st)
{
    uint64_t ns, nc, nt, ng, n1, n2;
    const df_st_tensor *smp = df_safetensors_find(st, "sample"), *ctx = df_safetensors_find(st, "encoder_hidden_states");
    u->sb = upload_golden(st, "sample", &ns), u->cb = upload_golden(st, "encoder_hidden_states", &nc);
    u->tb = upload_golden(st, "text_embeds", &nt), u->gb = upload_golden(st, "target", &ng);
    u->timesteps = golden_f32(st, "timestep", &n1), u->time_ids = golden_f32(st, "time_ids", &n2);
    u->sample = (df_fmap){df_tensor_at(u->sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                          (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
    u->in = (df_unet_inputs){.sample = &u->sample, .timesteps = u->timesteps, .context = df_tensor_at(u->cb, 0, DF_F32),
                             .context_len = (uint32_t)ctx->shape[1], .text_embeds = df_tensor_at(u->tb, 0, DF_F32),
                             .time_ids = u->time_ids};
}

static void unet_case_free(unet_case *u)
{
    free(u->timesteps), free(u->time_ids);
    df_vk_buffer_destroy(&u->sb), df_vk_buffer_destroy(&u->cb), df_vk_buffer_destroy(&u->tb);
    df_vk_buffer_destroy(&u->gb);
}

/*  8-bit UNet weights (--dtype int8).
 *
 *  A copy of the tiny model whose UNet matrices hold exactly what the 8-bit
 *  load makes of them (quantized and dequantized on the host by
 *  common/quant8.c) must, loaded as f16, compute what the 8-bit UNet
 *  computes: forward, loss and every LoRA gradient, since the device
 *  dequantizes to f16 right before each op. That pins the 8-bit path to the
 *  f16 path's tested numbers; a second check bounds the quantization error
 *  itself against diffusers' autograd goldens. */
static int make_dequantized_model(const char *src, const char *dst, int poison, df_error_t *err)
{
    char cmd[512], in[512], out[512];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dst);
    if (system(cmd) != 0)
        return df_error_set(err, DF_E_IO, "could not copy %s", src);
    snprintf(in, sizeof in, "%s/unet/diffusion_pytorch_model.safetensors", src);
    snprintf(out, sizeof out, "%s/unet/diffusion_pytorch_model.safetensors", dst);
    df_safetensors_t *st = df_safetensors_open(in, err);
    if (!st)
        return err->code;
    size_t n = df_safetensors_count(st);
    float **vals = calloc(n, sizeof *vals);
    df_st_writer_t *w = df_st_writer_new();
    int rc = vals && w ? DF_OK : df_error_set(err, DF_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        const df_st_tensor *t = df_safetensors_at(st, i);
        if (!(vals[i] = malloc(t->nelem * sizeof(float)))) {
            rc = df_error_set(err, DF_E_NOMEM, "out of memory");
            break;
        }
        rc = df_st_tensor_to_f32(t, vals[i], err);
        size_t len = strlen(t->name);
        if (rc == DF_OK && t->ndim >= 2 && len > 7 && strcmp(t->name + len - 7, ".weight") == 0) {
            uint64_t rows = (uint64_t)t->shape[0], cols = t->nelem / rows;
            int8_t *q = malloc(t->nelem);
            float *scale = malloc(rows * df_quant8_blocks(cols, DF_WEIGHT_I8_BLOCK) * sizeof *scale);
            if (q && scale) {
                df_quant8_rows(vals[i], rows, cols, DF_WEIGHT_I8_BLOCK, q, scale);
                df_dequant8_rows(q, scale, rows, cols, DF_WEIGHT_I8_BLOCK, vals[i]);
                if (poison && strcmp(t->name, "conv_in.weight") == 0)
                    vals[i][5] = NAN;
            } else {
                rc = df_error_set(err, DF_E_NOMEM, "out of memory");
            }
            free(q), free(scale);
        }
        if (rc == DF_OK)
            rc = df_st_writer_add(w, t->name, DF_F32, t->ndim, t->shape, vals[i], err);
    }
    if (rc == DF_OK)
        rc = df_st_writer_write(w, out, err);
    for (size_t i = 0; vals && i < n; i++)
        free(vals[i]);
    free(vals);
    df_st_writer_destroy(&w);
    df_safetensors_destroy(&st);
    return rc;
}

/*  noise_pred, loss and every LoRA gradient (concatenated in adapter order)
 *  of the tiny golden case for model loaded as store; NULL on failure. */
static float *lora_grad_outputs(const char *model, df_dtype store, uint64_t *count)
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, store, &err) : NULL;
    df_lora_targets t = {unet, NULL, NULL, 0};
    int rc = unet ? df_lora_attach(lora, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer, NULL, &err) : DF_E_INVALID;
    df_weights_t *w = unet ? df_unet_weights(unet) : NULL;
    if (rc == DF_OK)
        rc = df_weights_adapter_grads(w, g_batch, &err);
    float *all = NULL;
    if (rc == DF_OK) {
        unet_case u;
        unet_case_load(&u, st);
        uint64_t ns = (uint64_t)u.sample.n * u.sample.c * u.sample.h * u.sample.w, total = ns + 1;
        for (size_t i = 0; i < df_weights_adapter_count(w); i++) {
            const df_weight_adapter *a = df_weights_adapter_at(w, i, NULL);
            total += a->down.ref.buf->size / 4 + a->up.ref.buf->size / 4;
        }
        df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, ns * 4, &err), *lb = df_vk_buffer_new(g_dev, 3 * 4, &err);
        df_tensor none = {{NULL, 0}, DF_F32};
        all = malloc(total * sizeof *all);
        rc = pb && lb && all ? df_unet_lora_grad(unet, g_batch, &u.in, df_tensor_at(u.gb, 0, DF_F32), none, 1.0f,
                                                 df_tensor_at(pb, 0, DF_F32), df_tensor_at(lb, 0, DF_F32), &err)
                             : DF_E_NOMEM;
        uint64_t at = 0;
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, pb, 0, all, ns * 4, &err);
        at += ns;
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, lb, 0, all + at, 4, &err);
        at += 1;
        for (size_t i = 0; rc == DF_OK && i < df_weights_adapter_count(w); i++) {
            const df_weight_adapter *a = df_weights_adapter_at(w, i, NULL);
            uint64_t nd = a->down.ref.buf->size / 4, nu = a->up.ref.buf->size / 4;
            rc = df_vk_download(g_xfer, a->grad_down.ref.buf, a->grad_down.ref.offset, all + at, nd * 4, &err);
            at += nd;
            if (rc == DF_OK)
                rc = df_vk_download(g_xfer, a->grad_up.ref.buf, a->grad_up.ref.offset, all + at, nu * 4, &err);
            at += nu;
        }
        *count = at;
        df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&lb);
        unet_case_free(&u);
    }
    if (rc != DF_OK) {
        fprintf(stderr, "  %s (%s weights): %s\n", model, df_dtype_name(store), err.msg);
        free(all);
        all = NULL;
    }
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
    return all;
}

static void test_unet_int8(void)
{
    char dq[128];
    snprintf(dq, sizeof dq, "%s/tiny_dequantized", g_dir);
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(make_dequantized_model(g_model, dq, 0, &err), &err);
    uint64_t n8 = 0, n16 = 0;
    float *q8 = lora_grad_outputs(g_model, DF_I8, &n8), *f16 = lora_grad_outputs(dq, DF_F16, &n16);
    CHECK(q8 && f16 && n8 == n16 && n8 > 1000);
    if (q8 && f16 && n8 == n16) {
        double worst = 0, scale = 0;
        for (uint64_t i = 0; i < n8; i++) {
            worst = fmax(worst, fabs((double)q8[i] - f16[i]));
            scale = fmax(scale, fabs((double)f16[i]));
        }
        fprintf(stderr, "  8-bit UNet vs its dequantized f16 copy: %llu values, worst difference %.3g (of %.3g)\n",
                (unsigned long long)n8, worst, scale);
        /* Equal where the driver converts to f16 by rounding to nearest, as
         * the host does; a driver that truncates moves some weights by an
         * f16 ulp. */
        CHECK(worst <= 1e-4 * scale);
    }
    /* The quantization error itself, against the f32 UNet (which meets
     * diffusers' autograd goldens to 1e-3), beside the f16 UNet's for
     * scale. Measured: the prediction 2 % of its scale, the loss 0.1 %, the
     * gradient 6 % of its norm (f16: 0.1 %). The error is spread evenly
     * over the layers (keeping any one family in f16 changes it by a
     * tenth), so it is the 8 bits, not a layer that needs more. */
    uint64_t n32 = 0, nh = 0;
    float *f32 = lora_grad_outputs(g_model, DF_F32, &n32), *h16 = lora_grad_outputs(g_model16, DF_F16, &nh);
    CHECK(f32 && h16 && n32 == n8 && nh == n8);
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    const df_st_tensor *smp = st ? df_safetensors_find(st, "sample") : NULL;
    if (q8 && f32 && h16 && n32 == n8 && nh == n8 && smp) {
        uint64_t ns = smp->nelem;
        double err8[3], err16[3];
        for (int k = 0; k < 2; k++) {
            const float *x = k ? h16 : q8;
            double *e = k ? err16 : err8, pe = 0, ps = 0, ge = 0, gs = 0;
            for (uint64_t i = 0; i < ns; i++) {
                pe = fmax(pe, fabs((double)x[i] - f32[i]));
                ps = fmax(ps, fabs((double)f32[i]));
            }
            for (uint64_t i = ns + 1; i < n8; i++) {
                ge += ((double)x[i] - f32[i]) * ((double)x[i] - f32[i]);
                gs += (double)f32[i] * f32[i];
            }
            e[0] = pe / ps, e[1] = fabs((double)x[ns] - f32[ns]) / fabs((double)f32[ns]), e[2] = sqrt(ge / gs);
        }
        fprintf(stderr, "  against the f32 UNet: noise_pred %.3g of scale (f16 %.3g), loss %.3g (f16 %.3g), "
                "gradient %.3g of its norm (f16 %.3g)\n", err8[0], err16[0], err8[1], err16[1], err8[2], err16[2]);
        CHECK(err8[0] <= 5e-2);
        CHECK(err8[1] <= 3e-3);
        CHECK(err8[2] <= 1e-1);
    }
    df_safetensors_destroy(&st);
    free(h16);
    /* A weight that is not finite cannot be quantized: refused, named. */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/tiny_nan", g_dir);
    CHECK_OK(make_dequantized_model(g_model, bad, 1, &err), &err);
    df_sdxl_t *mb = df_sdxl_open(bad, NULL, &err);
    CHECK(mb != NULL);
    if (mb)
        CHECK(df_sdxl_load_unet(mb, g_dev, g_xfer, DF_I8, &err) == NULL && err.code == DF_E_FORMAT &&
              strstr(err.msg, "conv_in.weight") && strstr(err.msg, "non-finite value at element 5"));
    df_sdxl_destroy(&mb);
    free(q8), free(f16), free(f32);
}

/*  One AdamW step of the trainer against torch.optim.AdamW from the same
 *  gradients: the updates agree. */
static void test_lora_adamw_matches_torch(void)
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_lora_targets t = {unet, NULL, NULL, 0};
    CHECK(unet != NULL);
    if (unet)
        CHECK_OK(df_lora_attach(lora, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer, NULL, &err), &err);
    df_lora_train_opts o = {.weight_decay = 1e-2f};
    df_lora_trainer_t *tr = unet ? df_lora_trainer_new(unet, g_batch, g_xfer, &o, &err) : NULL;
    CHECK(tr != NULL);
    if (tr) {
        unet_case u;
        unet_case_load(&u, st);
        df_vk_buffer_t *lb = df_vk_buffer_new(g_dev, 3 * 4, &err);
        df_tensor none = {{NULL, 0}, DF_F32};
        CHECK_OK(df_lora_trainer_accumulate(tr, g_batch, &u.in, df_tensor_at(u.gb, 0, DF_F32), none, 1.0f,
                                            df_tensor_at(lb, 0, DF_F32), &err),
                 &err);
        CHECK_OK(df_lora_trainer_step(tr, g_batch, 1e-3f, &err), &err);
        CHECK(df_lora_trainer_steps(tr) == 1);
        df_weights_t *w = df_unet_weights(unet);
        double worst = 0;
        uint64_t total = 0, off = 0;
        for (size_t i = 0; i < df_weights_adapter_count(w); i++) {
            const df_weight_adapter *a = df_weights_adapter_at(w, i, NULL);
            for (int f = 0; f < 2; f++) {
                char gname[260];
                snprintf(gname, sizeof gname, "adamw.%s", f ? a->up_key : a->down_key);
                uint64_t n, n0;
                float *want = golden_f32(st, gname, &n), *got = malloc(n * 4);
                df_safetensors_t *lf = df_safetensors_open(lora, &err);
                float *before = golden_f32(lf, f ? a->up_key : a->down_key, &n0);
                df_tensor p = f ? a->up : a->down;
                df_vk_download(g_xfer, p.ref.buf, p.ref.offset, got, n * 4, &err);
                /* The updates, in units of the learning rate: Adam moves each
                 * value by about lr; where a gradient is ~0 its direction is
                 * noise in both implementations. */
                for (uint64_t k = 0; want && before && k < n; k++) {
                    double e = fabs((double)got[k] - want[k]) / 1e-3;
                    worst = fmax(worst, e);
                    off += e > 1e-2;
                    total++;
                }
                free(want), free(got), free(before);
                df_safetensors_destroy(&lf);
            }
        }
        fprintf(stderr, "  adamw: %llu values; %llu differ from torch by more than 1%% of lr; worst %.3g lr\n",
                (unsigned long long)total, (unsigned long long)off, worst);
        CHECK(total > 1000 && off * 1000 <= total && worst < 1.0);
        df_vk_buffer_destroy(&lb);
        unet_case_free(&u);
    }
    df_lora_trainer_destroy(&tr);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Training drives the loss down: a fresh LoRA (down random, up zero, so
 *  the first loss is the base model's) on one image's latents, the same
 *  timestep and noise every step, learns to predict that noise. The saved
 *  file, in either format, gives the trained adapters' output. */
static void test_lora_training_learns(void)
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_lora_train_opts o = {.rank = 8, .alpha = 8, .targets = DF_LORA_ATTN | DF_LORA_PROJ | DF_LORA_CONV, .seed = 3};
    df_lora_train_opts no_rank = {.rank = 0};
    if (unet) {
        CHECK(df_lora_trainer_new(unet, g_batch, g_xfer, &no_rank, &err) == NULL);
        CHECK(err.code == DF_E_INVALID && strstr(err.msg, "rank 0"));
        df_error_clear(&err);
    }
    df_lora_trainer_t *tr = unet ? df_lora_trainer_new(unet, g_batch, g_xfer, &o, &err) : NULL;
    CHECK(tr != NULL);
    if (!tr) {
        df_unet_destroy(&unet), df_sdxl_destroy(&m), df_safetensors_destroy(&st);
        return;
    }
    unet_case u;
    unet_case_load(&u, st);
    /* Sample 0 alone, noised by the forward process at a fixed step. */
    const uint32_t C = u.sample.c, hw = u.sample.h * u.sample.w;
    float *x0 = malloc(C * hw * 4), *xt = malloc(C * hw * 4), *eps = malloc(C * hw * 4), ts, wt;
    df_vk_download(g_xfer, u.sb, 0, x0, C * hw * 4, &err);
    df_train_noise_opts no = {.seed = 9, .min_snr_gamma = 5};
    df_train_noise_batch(&no, 0, 0, 1, C, hw, x0, xt, eps, &ts, &wt);
    df_vk_buffer_t *xb = df_vk_buffer_new(g_dev, C * hw * 4, &err), *eb = df_vk_buffer_new(g_dev, C * hw * 4, &err);
    df_vk_buffer_t *lb = df_vk_buffer_new(g_dev, 2 * 4, &err);
    df_vk_upload(g_xfer, xb, 0, xt, C * hw * 4, &err);
    df_vk_upload(g_xfer, eb, 0, eps, C * hw * 4, &err);
    df_fmap one = {df_tensor_at(xb, 0, DF_F32), 1, C, u.sample.h, u.sample.w};
    df_unet_inputs in = u.in;
    in.sample = &one;
    in.timesteps = &ts;
    df_tensor none = {{NULL, 0}, DF_F32};
    float first = 0, last = 0;
    const int steps = 20;
    for (int i = 0; i < steps; i++) {
        float loss[2];
        CHECK_OK(df_lora_trainer_accumulate(tr, g_batch, &in, df_tensor_at(eb, 0, DF_F32), none, 1.0f,
                                            df_tensor_at(lb, 0, DF_F32), &err),
                 &err);
        CHECK_OK(df_lora_trainer_step(tr, g_batch, 1e-2f, &err), &err);
        df_vk_download(g_xfer, lb, 0, loss, sizeof loss, &err);
        if (i == 0)
            first = loss[0];
        last = loss[0];
    }
    fprintf(stderr, "  %llu LoRA values; loss %.4f -> %.4f in %d steps\n",
            (unsigned long long)df_lora_trainer_params(tr), first, last, steps);
    CHECK(last < 0.35f * first);
    /* The file: the trained prediction from a fresh UNet with it merged. */
    df_vk_buffer_t *p1 = df_vk_buffer_new(g_dev, C * hw * 4, &err), *p2 = df_vk_buffer_new(g_dev, C * hw * 4, &err);
    float *a = malloc(C * hw * 4), *b = malloc(C * hw * 4);
    CHECK_OK(df_unet_forward(unet, g_batch, &in, df_tensor_at(p1, 0, DF_F32), &err), &err);
    df_vk_download(g_xfer, p1, 0, a, C * hw * 4, &err);
    for (int f = 0; f < 2; f++) {
        char path[256];
        snprintf(path, sizeof path, "%s/trained_%d.safetensors", g_dir, f);
        const char *meta[] = {"dreamfleet.token", "TOK", NULL};
        CHECK_OK(df_lora_trainer_save(tr, path, f ? DF_LORA_PEFT : DF_LORA_KOHYA, 0, meta, &err), &err);
        df_unet_t *fresh = df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err);
        df_lora_targets t = {fresh, NULL, NULL, 0};
        CHECK_OK(df_lora_merge(path, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer, NULL, &err), &err);
        CHECK_OK(df_unet_forward(fresh, g_batch, &in, df_tensor_at(p2, 0, DF_F32), &err), &err);
        df_vk_download(g_xfer, p2, 0, b, C * hw * 4, &err);
        check_close(f ? "trained LoRA saved as PEFT, merged" : "trained LoRA saved as kohya, merged", b, a, C * hw,
                    1e-4);
        df_safetensors_t *sf = df_safetensors_open(path, &err);
        const char *tok = sf ? df_safetensors_metadata(sf, "dreamfleet.token") : NULL;
        const char *stp = sf ? df_safetensors_metadata(sf, "dreamfleet.steps") : NULL;
        CHECK(tok && strcmp(tok, "TOK") == 0 && stp && atoi(stp) == steps);
        df_safetensors_destroy(&sf);
        df_unet_destroy(&fresh);
        unlink(path);
    }
    free(x0), free(xt), free(eps), free(a), free(b);
    df_vk_buffer_destroy(&xb), df_vk_buffer_destroy(&eb), df_vk_buffer_destroy(&lb);
    df_vk_buffer_destroy(&p1), df_vk_buffer_destroy(&p2);
    unet_case_free(&u);
    df_lora_trainer_destroy(&tr);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Runs steps [from, to) of a small training run (noise and timesteps drawn
 *  per step from the seed), recording each step's loss. */
static int train_steps(df_lora_trainer_t *tr, unet_case *u, df_vk_buffer_t *lb, int from, int to, float *losses,
                       df_error_t *err)
{
    const uint32_t n = u->sample.n, C = u->sample.c, hw = u->sample.h * u->sample.w;
    float *x0 = malloc((size_t)n * C * hw * 4), *xt = malloc((size_t)n * C * hw * 4);
    float *eps = malloc((size_t)n * C * hw * 4), ts[8], wt[8];
    int rc = df_vk_download(g_xfer, u->sb, 0, x0, (uint64_t)n * C * hw * 4, err);
    df_vk_buffer_t *xb = df_vk_buffer_new(g_dev, (uint64_t)n * C * hw * 4, err);
    df_vk_buffer_t *eb = df_vk_buffer_new(g_dev, (uint64_t)n * C * hw * 4, err);
    df_vk_buffer_t *wb = df_vk_buffer_new(g_dev, n * 4, err);
    df_lr_desc lr = {DF_LR_COSINE, 1e-2f, 2, (uint64_t)to};
    df_train_noise_opts no = {.seed = 5, .noise_offset = 0.03f, .min_snr_gamma = 5};
    for (int step = from; rc == DF_OK && step < to; step++) {
        df_train_noise_batch(&no, (uint64_t)step, 0, n, C, hw, x0, xt, eps, ts, wt);
        rc = df_vk_upload(g_xfer, xb, 0, xt, (uint64_t)n * C * hw * 4, err);
        if (rc == DF_OK) rc = df_vk_upload(g_xfer, eb, 0, eps, (uint64_t)n * C * hw * 4, err);
        if (rc == DF_OK) rc = df_vk_upload(g_xfer, wb, 0, wt, n * 4, err);
        df_fmap s = {df_tensor_at(xb, 0, DF_F32), n, C, u->sample.h, u->sample.w};
        df_unet_inputs in = u->in;
        in.sample = &s;
        in.timesteps = ts;
        if (rc == DF_OK)
            rc = df_lora_trainer_accumulate(tr, g_batch, &in, df_tensor_at(eb, 0, DF_F32), df_tensor_at(wb, 0, DF_F32),
                                            1.0f, df_tensor_at(lb, 0, DF_F32), err);
        if (rc == DF_OK)
            rc = df_lora_trainer_step(tr, g_batch, df_lr_at(&lr, df_lora_trainer_steps(tr)), err);
        if (rc == DF_OK)
            rc = df_vk_download(g_xfer, lb, 0, &losses[step], 4, err);
    }
    free(x0), free(xt), free(eps);
    df_vk_buffer_destroy(&xb), df_vk_buffer_destroy(&eb), df_vk_buffer_destroy(&wb);
    return rc;
}

/*  A run stopped at a checkpoint and resumed on a fresh UNet draws the
 *  identical loss curve; checkpoints that do not fit are refused by name. */
/*  Six steps straight through, and three then a checkpoint resumed for
 *  three more: the same losses to the bit. With 8-bit moments too (the
 *  checkpoint holds them as f32, which quantize back to the same codes).
 *  losses gets the straight run's six. */
static void run_training_resume(int state8, float losses[6])
{
    df_safetensors_t *st = open_golden("tiny_lora_grad.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *u1 = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_unet_t *u2 = u1 ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_lora_train_opts o = {.rank = 4, .alpha = 2, .seed = 11, .weight_decay = 1e-2f, .state8 = state8};
    df_lora_trainer_t *a = u2 ? df_lora_trainer_new(u1, g_batch, g_xfer, &o, &err) : NULL, *b = NULL;
    CHECK(a != NULL);
    if (a) {
        unet_case u;
        unet_case_load(&u, st);
        df_vk_buffer_t *lb = df_vk_buffer_new(g_dev, 3 * 4, &err);
        float whole[6] = {0}, resumed[6] = {0};
        char ck[256];
        snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", g_dir);
        CHECK_OK(train_steps(a, &u, lb, 0, 3, whole, &err), &err);
        CHECK_OK(df_lora_trainer_checkpoint(a, ck, NULL, &err), &err);
        CHECK_OK(train_steps(a, &u, lb, 3, 6, whole, &err), &err);
        b = df_lora_trainer_resume(u2, g_batch, g_xfer, ck, &err);
        CHECK(b != NULL && df_lora_trainer_steps(b) == 3);
        if (b)
            CHECK_OK(train_steps(b, &u, lb, 3, 6, resumed, &err), &err);
        fprintf(stderr, "  losses %.5f %.5f %.5f | %.5f %.5f %.5f; resumed %.5f %.5f %.5f\n", whole[0], whole[1],
                whole[2], whole[3], whole[4], whole[5], resumed[3], resumed[4], resumed[5]);
        CHECK(memcmp(whole + 3, resumed + 3, 3 * sizeof *whole) == 0);
        memcpy(losses, whole, sizeof whole);
        /* Into a UNet that already has adapters; a file that is no checkpoint. */
        CHECK(df_lora_trainer_resume(u2, g_batch, g_xfer, ck, &err) == NULL);
        CHECK(err.code == DF_E_STATE && strstr(err.msg, "already"));
        df_error_clear(&err);
        char lora[600];
        snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
        df_unet_t *u3 = df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err);
        CHECK(df_lora_trainer_resume(u3, g_batch, g_xfer, lora, &err) == NULL);
        CHECK(err.code == DF_E_FORMAT && strstr(err.msg, "not a dreamfleet training checkpoint"));
        df_error_clear(&err);
        df_unet_destroy(&u3);
        unlink(ck);
        df_vk_buffer_destroy(&lb);
        unet_case_free(&u);
    }
    df_lora_trainer_destroy(&a);
    df_lora_trainer_destroy(&b);
    df_unet_destroy(&u1);
    df_unet_destroy(&u2);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  The gradients the UNet hands back to the text encoders: with respect to
 *  the context (every cross-attention's keys and values) and to the pooled
 *  embedding (through the added embedding and every ResNet's time
 *  projection), against autograd through diffusers' UNet. */
static void test_unet_text_grads(void)
{
    df_safetensors_t *st = open_golden("tiny_text_lora_grad.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(unet != NULL);
    if (unet) {
        const df_st_tensor *smp = df_safetensors_find(st, "sample");
        uint64_t ns, nc, np, ng, n1, n2;
        df_vk_buffer_t *sb = upload_golden(st, "sample", &ns), *cb = upload_golden(st, "prompt_embeds", &nc);
        df_vk_buffer_t *tb = upload_golden(st, "pooled_prompt_embeds", &np), *gb = upload_golden(st, "target", &ng);
        df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, ns * 4, &err), *lb = df_vk_buffer_new(g_dev, 2 * 4, &err);
        df_vk_buffer_t *dcb = df_vk_buffer_new(g_dev, nc * 4, &err), *dtb = df_vk_buffer_new(g_dev, np * 4, &err);
        float *timesteps = golden_f32(st, "timestep", &n1), *time_ids = golden_f32(st, "time_ids", &n2);
        df_fmap sample = {df_tensor_at(sb, 0, DF_F32), (uint32_t)smp->shape[0], (uint32_t)smp->shape[1],
                          (uint32_t)smp->shape[2], (uint32_t)smp->shape[3]};
        df_unet_inputs in = {.sample = &sample, .timesteps = timesteps, .context = df_tensor_at(cb, 0, DF_F32),
                             .context_len = 77, .text_embeds = df_tensor_at(tb, 0, DF_F32), .time_ids = time_ids};
        df_unet_text_grads tg = {df_tensor_at(dcb, 0, DF_F32), df_tensor_at(dtb, 0, DF_F32)};
        df_tensor none = {{NULL, 0}, DF_F32};
        CHECK_OK(df_unet_lora_grad_text(unet, g_batch, &in, df_tensor_at(gb, 0, DF_F32), none, 1.0f,
                                        df_tensor_at(pb, 0, DF_F32), df_tensor_at(lb, 0, DF_F32), &tg, &err),
                 &err);
        check_golden(st, "noise_pred", pb, ns, "text grads: noise_pred", 1e-4);
        check_golden(st, "grad.prompt_embeds", dcb, nc, "gradient of the context", 1e-3);
        check_golden(st, "grad.pooled_prompt_embeds", dtb, np, "gradient of the pooled embedding", 1e-3);
        free(timesteps), free(time_ids);
        df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&gb);
        df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&lb), df_vk_buffer_destroy(&dcb), df_vk_buffer_destroy(&dtb);
    }
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Text-encoder LoRA gradients: both towers with adapters on every
 *  attention projection, fed the golden's token ids; the forward outputs
 *  (with the adapters) against open_clip's, then the backward pass from the
 *  gradients autograd found at the UNet's text inputs, every factor's
 *  gradient against autograd's by the LoRA file's own names. */
static void test_text_lora_grad(void)
{
    df_safetensors_t *st = open_golden("tiny_text_lora_grad.safetensors");
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_text_lora.safetensors", g_golden);
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_clip_text_t *te[2] = {NULL, NULL};
    for (int e = 0; m && st && e < 2; e++)
        te[e] = df_sdxl_load_text_encoder(m, e + 1, g_dev, g_xfer, DF_F32, &err);
    CHECK(te[0] && te[1]);
    df_lora_targets t = {NULL, te[0], te[1], 0};
    df_lora_stats stats = {{0}};
    if (te[0] && te[1]) {
        CHECK_OK(df_lora_attach(lora, 1.0f, df_sdxl_config_of(m), &t, g_batch, g_xfer, &stats, &err), &err);
        CHECK(stats.modules[1] > 0 && stats.modules[2] > 0 && stats.modules[0] == 0);
    }
    uint64_t nc = 0, np = 0;
    float *dctx = st ? golden_f32(st, "grad.prompt_embeds", &nc) : NULL;
    float *ctx = st ? golden_f32(st, "prompt_embeds", &nc) : NULL;
    float *dpool = st ? golden_f32(st, "grad.pooled_prompt_embeds", &np) : NULL;
    const uint32_t D1 = te[0] ? (uint32_t)df_clip_text_config_of(te[0])->hidden : 0;
    const uint32_t D2 = te[1] ? (uint32_t)df_clip_text_config_of(te[1])->hidden : 0;
    for (int e = 0; te[0] && te[1] && ctx && dctx && dpool && e < 2; e++) {
        df_weights_t *w = df_clip_text_weights(te[e]);
        CHECK_OK(df_weights_adapter_grads(w, g_batch, &err), &err);
        const int32_t *ids = (const int32_t *)df_safetensors_find(st, e ? "input_ids_2" : "input_ids_1")->data;
        const uint32_t D = e ? D2 : D1, off = e ? D1 : 0;
        /* This encoder's columns of the context and of its gradient. */
        float *mine = malloc(77 * D * sizeof *mine), *dmine = malloc(77 * D * sizeof *dmine), *got = malloc(77 * D * 4);
        for (uint32_t r = 0; r < 77; r++)
            for (uint32_t c = 0; c < D; c++) {
                mine[r * D + c] = ctx[r * (D1 + D2) + off + c];
                dmine[r * D + c] = dctx[r * (D1 + D2) + off + c];
            }
        df_vk_buffer_t *hb = df_vk_buffer_new(g_dev, 77 * D * 4, &err), *db = df_vk_buffer_new(g_dev, 77 * D * 4, &err);
        df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, np * 4, &err);
        df_tensor none = {{NULL, 0}, DF_F32};
        CHECK_OK(df_clip_text_forward(te[e], g_batch, ids, 1, df_tensor_at(hb, 0, DF_F32), none, &err), &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        CHECK_OK(df_vk_download(g_xfer, hb, 0, got, 77 * D * 4, &err), &err);
        char what[96];
        snprintf(what, sizeof what, "encoder %d with LoRA: penultimate", e + 1);
        check_close(what, got, mine, 77 * D, 1e-4);
        CHECK_OK(df_vk_upload(g_xfer, db, 0, dmine, 77 * D * 4, &err), &err);
        CHECK_OK(df_vk_upload(g_xfer, pb, 0, dpool, np * 4, &err), &err);
        CHECK_OK(df_clip_text_backward(te[e], g_batch, ids, 1, df_tensor_at(db, 0, DF_F32),
                                       e ? df_tensor_at(pb, 0, DF_F32) : none, &err),
                 &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        double worst = 0;
        size_t checked = 0;
        for (size_t i = 0; i < df_weights_adapter_count(w); i++) {
            const df_weight_adapter *a = df_weights_adapter_at(w, i, NULL);
            for (int f = 0; f < 2; f++) {
                uint64_t n;
                float *want = golden_f32(st, f ? a->up_key : a->down_key, &n), *g = malloc(n * 4);
                df_tensor gt = f ? a->grad_up : a->grad_down;
                CHECK(want != NULL);
                if (want && df_vk_download(g_xfer, gt.ref.buf, gt.ref.offset, g, n * 4, &err) == DF_OK) {
                    /* Encoder 1's last layer feeds nothing: zero, exactly. */
                    worst = fmax(worst, grad_error(f ? a->up_key : a->down_key, g, want, n, 1e-3, 1));
                    checked++;
                }
                free(want), free(g);
            }
        }
        fprintf(stderr, "  encoder %d: %zu LoRA gradients match autograd; worst %.2g of scale\n", e + 1, checked, worst);
        CHECK(checked == 2 * df_weights_adapter_count(w) && checked > 0);
        free(mine), free(dmine), free(got);
        df_vk_buffer_destroy(&hb), df_vk_buffer_destroy(&db), df_vk_buffer_destroy(&pb);
    }
    /* A pooled gradient for the encoder without a projection is refused. */
    if (te[0]) {
        df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, 64, &err);
        df_tensor none = {{NULL, 0}, DF_F32};
        const int32_t *ids = st ? (const int32_t *)df_safetensors_find(st, "input_ids_1")->data : NULL;
        CHECK_FAILS(df_clip_text_backward(te[0], g_batch, ids, 1, none, df_tensor_at(pb, 0, DF_F32), &err), &err,
                    DF_E_INVALID, "no projection");
        df_vk_buffer_destroy(&pb);
    }
    free(dctx), free(ctx), free(dpool);
    df_clip_text_destroy(&te[0]);
    df_clip_text_destroy(&te[1]);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Full fine-tuning's gradients: every weight gets a gradient buffer, and
 *  each kind of layer's weight and bias gradients (convolutions with and
 *  without stride, the shortcut, group and layer norms, every linear of a
 *  transformer layer, the projections, the embeddings' MLPs, the head)
 *  match autograd through diffusers' UNet. */
static void test_unet_full_grads(void)
{
    df_safetensors_t *st = open_golden("tiny_unet_grad.safetensors");
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *unet = m && st ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(unet != NULL);
    if (unet) {
        df_weights_t *w = df_unet_weights(unet);
        CHECK_OK(df_weights_grads(w, g_batch, &err), &err);
        unet_case u;
        unet_case_load(&u, st);
        uint64_t ns = (uint64_t)u.sample.n * u.sample.c * u.sample.h * u.sample.w;
        df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, ns * 4, &err), *lb = df_vk_buffer_new(g_dev, 3 * 4, &err);
        df_tensor none = {{NULL, 0}, DF_F32};
        CHECK_OK(df_unet_lora_grad(unet, g_batch, &u.in, df_tensor_at(u.gb, 0, DF_F32), none, 1.0f,
                                   df_tensor_at(pb, 0, DF_F32), df_tensor_at(lb, 0, DF_F32), &err),
                 &err);
        check_golden(st, "noise_pred", pb, ns, "full grads: noise_pred", 1e-4);
        size_t checked = 0;
        double worst = 0;
        char worst_name[200] = "";
        for (size_t i = 0; i < df_safetensors_count(st); i++) {
            const df_st_tensor *t = df_safetensors_at(st, i);
            if (strncmp(t->name, "grad.", 5) != 0)
                continue;
            const df_weight *wt = df_weights_find(w, t->name + 5);
            CHECK(wt != NULL && wt->grad.ref.buf && wt->nelem == t->nelem);
            if (!wt || wt->nelem != t->nelem)
                continue;
            uint64_t nw;
            float *want = golden_f32(st, t->name, &nw), *got = malloc(t->nelem * 4);
            CHECK_OK(df_vk_download(g_xfer, wt->grad.ref.buf, wt->grad.ref.offset, got, t->nelem * 4, &err), &err);
            double rel = grad_error(t->name + 5, got, want, t->nelem, 1e-3, 0);
            if (rel > worst) {
                worst = rel;
                snprintf(worst_name, sizeof worst_name, "%s", t->name + 5);
            }
            checked++;
            free(want), free(got);
        }
        fprintf(stderr, "  %zu weight gradients match autograd; worst %.2g of scale (%s)\n", checked, worst, worst_name);
        CHECK(checked >= 60);
        df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&lb);
        unet_case_free(&u);
    }
    /* f16 weights cannot be stepped in place: refused by name. */
    df_unet_t *u16 = m ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F16, &err) : NULL;
    if (u16)
        CHECK_FAILS(df_weights_grads(df_unet_weights(u16), g_batch, &err), &err, DF_E_UNSUPPORTED, "needs f32 weights");
    df_unet_destroy(&u16);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_safetensors_destroy(&st);
}

/*  Full fine-tuning end to end on the tiny model: every weight steps, the
 *  loss of a fixed batch (timesteps and noise fixed too) falls by more than
 *  half in 20 steps, and the saved UNet, loaded as a model's own, predicts
 *  what the trained one does, to the bit. (The issue's memorisation check,
 *  sampling back the training latents, is test_full_finetune_memorises.) */
static void test_full_finetune(void)
{
    enum { N = 4, C = 4, SIDE = 8, HW = SIDE * SIDE, STEPS = 20 };
    df_error_t err;
    df_error_clear(&err);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    df_unet_t *unet = m ? df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_prompt_encoder_t *pe = unet ? df_prompt_encoder_new(m, g_dev, g_xfer, DF_F32, &err) : NULL;
    df_full_train_opts fo = {.weight_decay = 1e-2f};
    df_full_trainer_t *tr = pe ? df_full_trainer_new(unet, g_batch, g_xfer, &fo, &err) : NULL;
    CHECK(tr != NULL);
    if (!tr) {
        fprintf(stderr, "  %s\n", err.msg);
        df_prompt_encoder_destroy(&pe), df_unet_destroy(&unet), df_sdxl_destroy(&m);
        return;
    }
    static const char *const captions[N] = {"a photo of TOK red", "a photo of TOK blue", "a photo of TOK green",
                                            "a photo of TOK gold"};
    const uint32_t D = df_prompt_context_dim(pe), P = df_prompt_pooled_dim(pe);
    df_vk_buffer_t *cb = df_vk_buffer_new(g_dev, (uint64_t)N * 77 * D * 4, &err);
    df_vk_buffer_t *pb = df_vk_buffer_new(g_dev, (uint64_t)N * P * 4, &err);
    df_vk_buffer_t *xb = df_vk_buffer_new(g_dev, N * C * HW * 4, &err), *eb = df_vk_buffer_new(g_dev, N * C * HW * 4, &err);
    df_vk_buffer_t *lb = df_vk_buffer_new(g_dev, (1 + N) * 4, &err), *ob = df_vk_buffer_new(g_dev, N * C * HW * 4, &err);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t chunks;
        CHECK_OK(df_prompt_encode(pe, g_batch, captions[i], df_tensor_at(cb, (uint64_t)i * 77 * D * 4, DF_F32),
                                  df_tensor_at(pb, (uint64_t)i * P * 4, DF_F32), NULL, NULL, &chunks, &err),
                 &err);
    }
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    static float x0[N * C * HW], xt[N * C * HW], eps[N * C * HW], a[N * C * HW], b[N * C * HW];
    float ts[N], wt[N], ids[N * 6];
    df_philox_fill_normal(x0, N * C * HW, 99, 0);
    for (int i = 0; i < N; i++) {
        const float t6[6] = {64, 64, 0, 0, 64, 64};
        memcpy(ids + 6 * i, t6, sizeof t6);
    }
    df_train_noise_opts no = {.seed = 5};
    df_train_noise_batch(&no, 0, 0, N, C, HW, x0, xt, eps, ts, wt);
    CHECK_OK(df_vk_upload(g_xfer, xb, 0, xt, sizeof xt, &err), &err);
    CHECK_OK(df_vk_upload(g_xfer, eb, 0, eps, sizeof eps, &err), &err);
    df_fmap sample = {df_tensor_at(xb, 0, DF_F32), N, C, SIDE, SIDE};
    df_unet_inputs in = {.sample = &sample, .timesteps = ts, .context = df_tensor_at(cb, 0, DF_F32), .context_len = 77,
                         .text_embeds = df_tensor_at(pb, 0, DF_F32), .time_ids = ids};
    df_tensor none = {{NULL, 0}, DF_F32};
    float losses[STEPS] = {0};
    int rc = DF_OK;
    for (int s = 0; rc == DF_OK && s < STEPS; s++) {
        rc = df_full_trainer_accumulate(tr, g_batch, &in, df_tensor_at(eb, 0, DF_F32), none, 1.0f,
                                        df_tensor_at(lb, 0, DF_F32), &err);
        if (rc == DF_OK) rc = df_vk_download(g_xfer, lb, 0, &losses[s], 4, &err);
        if (rc == DF_OK) rc = df_full_trainer_step(tr, g_batch, 1e-3f, &err);
    }
    CHECK_OK(rc, &err);
    fprintf(stderr, "  full fine-tune of %llu weights: loss %.4f, then %.4f after %d steps\n",
            (unsigned long long)df_full_trainer_params(tr), losses[0], losses[STEPS - 1], STEPS);
    CHECK(losses[STEPS - 1] < 0.5f * losses[0]);
    /* Saved as a model's UNet: it predicts what the trained one does. */
    char copy[128], unet_file[200];
    snprintf(copy, sizeof copy, "%s/tiny_full", g_dir);
    snprintf(unet_file, sizeof unet_file, "%s/unet/diffusion_pytorch_model.safetensors", copy);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", g_model, copy);
    CHECK(system(cmd) == 0);
    CHECK_OK(df_full_trainer_save(tr, unet_file, NULL, &err), &err);
    df_sdxl_t *m2 = df_sdxl_open(copy, NULL, &err);
    df_unet_t *saved = m2 ? df_sdxl_load_unet(m2, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(saved != NULL);
    if (saved) {
        CHECK_OK(df_unet_forward(unet, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        CHECK_OK(df_vk_download(g_xfer, ob, 0, a, sizeof a, &err), &err);
        CHECK_OK(df_unet_forward(saved, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err), &err);
        CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
        CHECK_OK(df_vk_download(g_xfer, ob, 0, b, sizeof b, &err), &err);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    /* A UNet carrying adapters is refused: full fine-tuning trains the weights themselves. */
    char lora[600];
    snprintf(lora, sizeof lora, "%s/tiny_lora.safetensors", g_golden);
    df_lora_targets t = {saved, NULL, NULL, 0};
    if (saved && df_lora_attach(lora, 1.0f, df_sdxl_config_of(m2), &t, g_batch, g_xfer, NULL, &err) == DF_OK)
        CHECK(df_full_trainer_new(saved, g_batch, g_xfer, &fo, &err) == NULL && strstr(err.msg, "adapters"));
    df_unet_destroy(&saved);
    df_sdxl_destroy(&m2);
    df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&pb), df_vk_buffer_destroy(&xb), df_vk_buffer_destroy(&eb);
    df_vk_buffer_destroy(&lb), df_vk_buffer_destroy(&ob);
    df_full_trainer_destroy(&tr);
    df_prompt_encoder_destroy(&pe);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
}

static float g_resume_losses[6];
static void test_lora_training_resume(void) { run_training_resume(0, g_resume_losses); }

/*  8-bit AdamW state: resumes exactly, and its losses follow f32 state's
 *  (the same batches; measured within 3e-5 relative over six steps). */
static void test_lora_training_adam8(void)
{
    float l8[6] = {0};
    if (g_resume_losses[0] == 0)
        run_training_resume(0, g_resume_losses);
    run_training_resume(1, l8);
    double worst = 0;
    for (int i = 0; i < 6; i++)
        worst = fmax(worst, fabs((double)l8[i] - g_resume_losses[i]) / g_resume_losses[i]);
    fprintf(stderr, "  8-bit moments: losses within %.3g of f32 moments' over six steps\n", worst);
    CHECK(worst <= 1e-3);
    CHECK(l8[1] != g_resume_losses[1] || l8[5] != g_resume_losses[5]); /* the 8-bit path really ran */
}

/*  DreamBooth LoRA training end to end on the tiny model: photos and
 *  captions in, a LoRA out that generation loads; the same seed gives the
 *  same file; bad photos and settings are refused by name. */
/*  The largest difference between two LoRA files' factors, in learning
 *  rates; -1 when either cannot be read or they hold other tensors. */
static double lora_files_apart(const char *a_path, const char *b_path, double lr)
{
    df_error_t err;
    df_safetensors_t *fa = df_safetensors_open(a_path, &err), *fb = df_safetensors_open(b_path, &err);
    double worst = fa && fb ? 0 : -1;
    for (size_t i = 0; worst >= 0 && i < df_safetensors_count(fa); i++) {
        const char *name = df_safetensors_at(fa, i)->name;
        uint64_t na = 0, nb = 0;
        float *x = golden_f32(fa, name, &na), *y = df_safetensors_find(fb, name) ? golden_f32(fb, name, &nb) : NULL;
        if (!x || !y || na != nb)
            worst = -1;
        for (uint64_t k = 0; worst >= 0 && k < na; k++)
            worst = fmax(worst, fabs(x[k] - y[k]) / lr);
        free(x), free(y);
    }
    df_safetensors_destroy(&fa), df_safetensors_destroy(&fb);
    return worst;
}

/*  Writes count w x 64 test photos photo<tag><i>.png into g_dir. */
static void write_photos(const char *tag, int count, int shade, char paths[][256], const char **out)
{
    df_error_t err;
    df_error_clear(&err);
    for (int i = 0; i < count; i++) {
        const uint32_t w = 80 + 16 * i, h = 64;
        uint8_t *rgb = malloc(w * h * 3);
        for (uint32_t k = 0; k < w * h; k++)
            rgb[3 * k] = (uint8_t)(k % w * 3 + 40 * i), rgb[3 * k + 1] = (uint8_t)(k / w * 4), rgb[3 * k + 2] =
                (uint8_t)shade;
        snprintf(paths[i], 256, "%s/photo%s%d.png", g_dir, tag, i);
        CHECK_OK(df_png_write(paths[i], rgb, w, h, NULL, 0, &err), &err);
        out[i] = paths[i];
        free(rgb);
    }
}

/*  Three subject photos and two class photos written (write_photos), with
 *  their captions, and the tiny model opened (NULL, checked, when it fails). */
static const char *const k_subject_captions[3] = {"a photo of TOK person", "TOK person smiling",
                                                  "a portrait of TOK person"};
static const char *const k_class_captions[2] = {"a photo of a person", "a person"};

static df_sdxl_t *open_with_photos(char paths[3][256], const char *images[3], char cpaths[2][256],
                                   const char *classes[2], df_error_t *err)
{
    write_photos("", 3, 90, paths, images);
    write_photos("class", 2, 200, cpaths, classes);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, err);
    CHECK(m != NULL);
    return m;
}

/*  Prior preservation: a class photo beside each sample, its loss weighted.
 *  At a vanishing weight the run is the plain run (the class half weighs
 *  nothing and the scaling keeps the subject's mean exact); at weight 1 the
 *  reported loss carries the class term too, and the LoRA differs. */
static void test_train_lora_prior(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[3][256], cpaths[2][256], out[3][256];
    const char *images[3], *classes[2];
    const char *const *captions = k_subject_captions, *const *class_captions = k_class_captions;
    df_sdxl_t *m = open_with_photos(paths, images, cpaths, classes, &err);
    if (!m)
        return;
    df_train_params p = {.images = images, .captions = captions, .count = 3, .resolution = 64, .steps = 3, .batch = 2,
                         .lora = {.rank = 4, .alpha = 4, .seed = 7}, .lr = {DF_LR_CONSTANT, 1e-2f, 0, 3},
                         .noise = {.seed = 7, .min_snr_gamma = 5}, .weights = DF_F32};
    float plain[3], faint[3], full[3];
    for (int i = 0; i < 3; i++)
        snprintf(out[i], sizeof out[i], "%s/prior%d.safetensors", g_dir, i);
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, out[0], NULL, plain, &err), &err);
    df_train_params q = p;
    q.class_images = classes, q.class_captions = class_captions, q.class_count = 2, q.prior_weight = 1e-7f;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[1], NULL, faint, &err), &err);
    q.prior_weight = 1.0f;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[2], NULL, full, &err), &err);
    for (int i = 0; i < 3; i++)
        CHECK(fabsf(plain[i] - faint[i]) <= 1e-4f * plain[i]);
    double worst = lora_files_apart(out[0], out[1], p.lr.lr), apart = lora_files_apart(out[0], out[2], p.lr.lr);
    fprintf(stderr, "  losses plain %.4f %.4f %.4f, prior weight 1: %.4f %.4f %.4f; weight 1e-7 within %.2g lr of plain, "
            "weight 1 %.2g lr away\n", plain[0], plain[1], plain[2], full[0], full[1], full[2], worst, apart);
    CHECK(worst >= 0 && worst < 2e-2 && apart > 0.5); /* Adam: rounding-level gradients, see above */
    CHECK(full[0] > 1.3f * plain[0]); /* the class term adds a loss of the same size */
    for (int i = 0; i < 3; i++) {
        unlink(out[i]);
    }
    df_sdxl_destroy(&m);
}

/*  Aspect-ratio buckets: photos of other shapes train at their own latent
 *  sizes. A batch of two mixing buckets goes through the UNet as two runs,
 *  and must train what two micro-batches of one do. */
static void test_train_lora_buckets(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[3][256], out[2][256];
    const char *images[3], *captions[3] = {"a photo of TOK person", "TOK person smiling", "a portrait of TOK person"};
    write_photos("", 3, 90, paths, images); /* 80x64, 96x64, 112x64 */
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    df_train_params p = {.images = images, .captions = captions, .count = 3, .resolution = 64, .steps = 3, .batch = 2,
                         .buckets = 1, .lora = {.rank = 4, .alpha = 4, .seed = 7},
                         .lr = {DF_LR_CONSTANT, 1e-2f, 0, 3}, .noise = {.seed = 7, .min_snr_gamma = 5},
                         .weights = DF_F32};
    float batch2[3], micro[3], square[3];
    for (int i = 0; i < 2; i++)
        snprintf(out[i], sizeof out[i], "%s/buckets%d.safetensors", g_dir, i);
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, out[0], NULL, batch2, &err), &err);
    df_train_params q = p;
    q.batch = 1, q.accumulate = 2;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[1], NULL, micro, &err), &err);
    q = p;
    q.buckets = 0;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, square, &err), &err);
    for (int i = 0; i < 3; i++)
        CHECK(isfinite(batch2[i]) && fabsf(batch2[i] - micro[i]) <= 1e-5f * batch2[i]);
    CHECK(memcmp(batch2, square, sizeof batch2) != 0); /* the wide photos did train at another size */
    double worst = lora_files_apart(out[0], out[1], p.lr.lr);
    fprintf(stderr, "  buckets: losses %.4f %.4f %.4f (square crops: %.4f %.4f %.4f); a mixed batch of 2 vs 2 of 1: "
            "factors within %.2g lr\n", batch2[0], batch2[1], batch2[2], square[0], square[1], square[2], worst);
    CHECK(worst >= 0 && worst < 2e-2);
    unlink(out[0]), unlink(out[1]);
    df_sdxl_destroy(&m);
}

/*  The bytes of a file (NULL when it cannot be read). */
static uint8_t *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && (fseek(f, 0, SEEK_SET) != 0 || fread(b, 1, (size_t)n, f) != (size_t)n))
        free(b), b = NULL;
    if (f)
        fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

/*  Sample caches (the `encode` job's files) in place of encoding in the
 *  run: the same losses and the same LoRA file to the byte, with buckets,
 *  flips and class images. A cache that does not fit the run is refused
 *  by name, as is anything that is not a sample cache. */
static void test_train_lora_caches(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[3][256], cpaths[2][256], caches[5][256], out[2][256], other[256], odd[256];
    const char *images[3], *classes[2], *cache_of[3], *class_cache_of[2];
    const char *const *captions = k_subject_captions, *const *class_captions = k_class_captions;
    df_sdxl_t *m = open_with_photos(paths, images, cpaths, classes, &err);
    if (!m)
        return;
    const df_sdxl_config *c = df_sdxl_config_of(m);
    const uint32_t step = 8u << (c->unet.levels - 1);
    df_train_sample_opts o = {.resolution = 64, .bucket_step = step, .flip = 1, .captions = 1};
    df_train_sample_encoder_t *enc = df_train_sample_encoder_new(m, g_dev, g_xfer, DF_F32, 1, &err);
    CHECK(enc != NULL);
    for (int i = 0; enc && i < 5; i++) {
        const char *img = i < 3 ? images[i] : classes[i - 3], *cap = i < 3 ? captions[i] : class_captions[i - 3];
        df_train_sample s;
        snprintf(caches[i], sizeof caches[i], "%s/sample%d.safetensors", g_dir, i);
        CHECK_OK(df_train_sample_encode(enc, g_batch, img, cap, &o, NULL, &s, &err), &err);
        CHECK_OK(df_train_sample_save(&s, &o, cap, "model-identity", img, caches[i], &err), &err);
        df_train_sample_free(&s);
        (i < 3 ? cache_of : class_cache_of)[i < 3 ? i : i - 3] = caches[i];
    }
    /* The same photo at another resolution, and without its mirror image. */
    df_train_sample_opts o2 = {.resolution = 128, .bucket_step = step, .flip = 1, .captions = 1}, o3 = o;
    o3.flip = 0;
    df_train_sample s2, s3;
    snprintf(other, sizeof other, "%s/sample-128.safetensors", g_dir);
    snprintf(odd, sizeof odd, "%s/sample-noflip.safetensors", g_dir);
    if (enc) {
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o2, NULL, &s2, &err), &err);
        CHECK_OK(df_train_sample_save(&s2, &o2, captions[0], NULL, images[0], other, &err), &err);
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o3, NULL, &s3, &err), &err);
        CHECK_OK(df_train_sample_save(&s3, &o3, captions[0], NULL, images[0], odd, &err), &err);
        CHECK(s3.flipped == NULL && s2.lat_h == 2 * s3.lat_h);
        df_train_sample_free(&s2);
        /* What prep cut the photo from sets its size conditioning, and
         * nothing else: the latents are the same. */
        const df_photo_geometry geo = {.orig_w = 4000, .orig_h = 3000, .crop_left = 12, .crop_top = 0};
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o3, &geo, &s2, &err), &err);
        /* The photo is cropped again to this run's bucket: its own crop adds
         * to prep's, scaled as the image is. */
        const double sc = fmax(s3.time_ids[5] / s3.time_ids[1], s3.time_ids[4] / s3.time_ids[0]);
        CHECK(s2.time_ids[0] == 3000 && s2.time_ids[1] == 4000 && s2.time_ids[2] == s3.time_ids[2] &&
              s2.time_ids[3] == (float)lrint(12 * sc + (s3.time_ids[1] * sc - s3.time_ids[5]) / 2) &&
              s2.time_ids[4] == s3.time_ids[4] && s2.time_ids[5] == s3.time_ids[5]);
        fprintf(stderr, "  time ids from prep's geometry: %g %g %g %g %g %g (the image's own: %g %g %g %g)\n",
                s2.time_ids[0], s2.time_ids[1], s2.time_ids[2], s2.time_ids[3], s2.time_ids[4], s2.time_ids[5],
                s3.time_ids[0], s3.time_ids[1], s3.time_ids[2], s3.time_ids[3]);
        CHECK(s3.time_ids[0] != 3000 && s2.latents && s3.latents &&
              memcmp(s2.latents, s3.latents, (size_t)s3.lat_c * s3.lat_h * s3.lat_w * 4) == 0);
        df_train_sample_free(&s2), df_train_sample_free(&s3);
        /* A photo that is not there. */
        CHECK_FAILS(df_train_sample_encode(enc, g_batch, "/nonexistent/photo.png", "x", &o, NULL, &s2, &err), &err,
                    DF_E_NOT_FOUND, "/nonexistent/photo.png");
    }
    df_train_sample_encoder_destroy(&enc);
    df_train_params p = {.images = images, .captions = captions, .count = 3, .resolution = 64, .steps = 3, .batch = 2,
                         .buckets = 1, .flip = 1, .class_images = classes, .class_captions = class_captions,
                         .class_count = 2, .prior_weight = 1, .lora = {.rank = 4, .alpha = 4, .seed = 7},
                         .lr = {DF_LR_CONSTANT, 1e-2f, 0, 3}, .noise = {.seed = 7, .min_snr_gamma = 5},
                         .weights = DF_F32, .base_model_identity = "model-identity"};
    float fresh[3], cached[3];
    for (int i = 0; i < 2; i++)
        snprintf(out[i], sizeof out[i], "%s/cached%d.safetensors", g_dir, i);
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, out[0], NULL, fresh, &err), &err);
    df_train_params q = p;
    q.caches = cache_of, q.class_caches = class_cache_of;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[1], NULL, cached, &err), &err);
    size_t la, lb;
    uint8_t *a = file_bytes(out[0], &la), *b = file_bytes(out[1], &lb);
    CHECK(memcmp(fresh, cached, sizeof fresh) == 0);
    CHECK(a && b && la == lb && memcmp(a, b, la) == 0);
    fprintf(stderr, "  losses encoding in the run %.5f %.5f %.5f, from sample caches %.5f %.5f %.5f; LoRA files %s\n",
            fresh[0], fresh[1], fresh[2], cached[0], cached[1], cached[2],
            a && b && la == lb && memcmp(a, b, la) == 0 ? "identical" : "DIFFER");
    free(a), free(b);
    /* Caches that do not fit this run. */
    const char *wrong[3] = {other, caches[1], caches[2]};
    q.caches = wrong;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "was made at 128 px with buckets, this run trains at 64 px");
    wrong[0] = odd;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "has no mirrored latents");
    q.caches = cache_of;
    const char *recaptioned[3] = {"a photo of TOK dog", captions[1], captions[2]};
    q.captions = recaptioned;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "was made from caption \"a photo of TOK person\"");
    q.captions = captions;
    q.base_model_identity = "another-model";
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "was made with another model");
    q.base_model_identity = p.base_model_identity;
    q.class_caches = NULL;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "not for the class images");
    q.class_caches = class_cache_of;
    /* A cache whose pooled text is narrower than the model's, and one whose
     * metadata says 64 px over 128 px latents. */
    char narrow[300], big[300];
    snprintf(narrow, sizeof narrow, "%s/sample-narrow.safetensors", g_dir);
    snprintf(big, sizeof big, "%s/sample-big.safetensors", g_dir);
    enc = df_train_sample_encoder_new(m, g_dev, g_xfer, DF_F32, 1, &err);
    if (enc) {
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o, NULL, &s2, &err), &err);
        s2.P--;
        CHECK_OK(df_train_sample_save(&s2, &o, captions[0], NULL, images[0], narrow, &err), &err);
        df_train_sample_free(&s2);
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o2, NULL, &s2, &err), &err);
        CHECK_OK(df_train_sample_save(&s2, &o, captions[0], NULL, images[0], big, &err), &err);
        df_train_sample_free(&s2);
        /* A value that is not finite is refused when the cache is read. */
        char nan_path[300];
        snprintf(nan_path, sizeof nan_path, "%s/sample-nan.safetensors", g_dir);
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[0], captions[0], &o, NULL, &s2, &err), &err);
        if (s2.latents)
            s2.latents[3] = NAN;
        CHECK_OK(df_train_sample_save(&s2, &o, captions[0], NULL, images[0], nan_path, &err), &err);
        df_train_sample_free(&s2);
        df_train_sample_meta meta;
        CHECK_FAILS(df_train_sample_load(nan_path, &s2, &meta, &err), &err, DF_E_FORMAT,
                    "tensor 'latents' holds a value that is not finite");
        unlink(nan_path);
        /* Caches written by something else: a context that is not whole
         * 77-token chunks, and one without its pooled embedding. */
        for (int k = 0; k < 2; k++) {
            static float zeros[77 * 8 + 4 * 8 * 8];
            const int64_t lat[3] = {4, 8, 8}, six = 6, ctx[2] = {k == 0 ? 76 : 77, 8}, pooled = 16;
            df_st_writer_t *w = df_st_writer_new();
            CHECK_OK(df_st_writer_add(w, "latents", DF_F32, 3, lat, zeros, &err), &err);
            CHECK_OK(df_st_writer_add(w, "time_ids", DF_F32, 1, &six, zeros, &err), &err);
            CHECK_OK(df_st_writer_add(w, "context", DF_F32, 2, ctx, zeros, &err), &err);
            if (k == 0)
                CHECK_OK(df_st_writer_add(w, "pooled", DF_F32, 1, &pooled, zeros, &err), &err);
            const char *kv[][2] = {{"format", DF_TRAIN_SAMPLE_FORMAT}, {"resolution", "64"}, {"bucket_step", "0"},
                                   {"caption", "x"}, {"model_identity", ""}, {"image", "x.png"}};
            for (int i = 0; i < 6; i++)
                CHECK_OK(df_st_writer_set_metadata(w, kv[i][0], kv[i][1], &err), &err);
            CHECK_OK(df_st_writer_write(w, nan_path, &err), &err);
            df_st_writer_destroy(&w);
            CHECK_FAILS(df_train_sample_load(nan_path, &s2, &meta, &err), &err, DF_E_FORMAT,
                        k == 0 ? "the context is not chunks of 77 tokens" : "the context comes without a pooled "
                                                                             "embedding");
            unlink(nan_path);
        }
    }
    df_train_sample_encoder_destroy(&enc);
    const char *bad_cache[3] = {narrow, caches[1], caches[2]};
    q.caches = bad_cache;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "pooled text; this model takes");
    bad_cache[0] = big;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "latents, which a 64 px run with buckets cannot have");
    unlink(narrow), unlink(big);
    /* Files that are not sample caches: a LoRA, a photo, a truncated cache. */
    q.class_caches = class_cache_of;
    wrong[0] = out[0];
    q.caches = wrong;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_FORMAT,
                "not a sample cache");
    wrong[0] = images[0];
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_FORMAT,
                images[0]);
    size_t n;
    uint8_t *whole = file_bytes(caches[0], &n);
    FILE *f = fopen(odd, "wb");
    if (f && whole)
        fwrite(whole, 1, n - 100, f);
    if (f)
        fclose(f);
    free(whole);
    wrong[0] = odd;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_FORMAT,
                odd);
    for (int i = 0; i < 5; i++)
        unlink(caches[i]);
    unlink(out[0]), unlink(out[1]), unlink(other), unlink(odd);
    df_sdxl_destroy(&m);
}

/*  The issue's memorisation check: the tiny model's UNet fully fine-tuned
 *  on four photos, each with its own caption, by the product's training
 *  loop, then sampled from noise with each caption by the product's
 *  generator. Each sample must land near its own photo's latents and far
 *  from the other three: only a correct backward pass through every weight,
 *  at every timestep, teaches a random network that. */
static void test_full_finetune_memorises(void)
{
    /* 600 steps at 1e-3: on an H100 samples land within 0.26-0.38 of their
     * own latents and 1.23-1.32 of the others' (450: 0.32-0.58; 300: caption
     * 1 still nearer another's). About 10 minutes on lavapipe, 90 s on an
     * H100 (bound by submissions at this size), so it runs as a test of its
     * own (test_models_memorise). */
    enum { N = 4, SIDE = 64, LAT = 4 * 8 * 8, STEPS = 600 };
    df_error_t err;
    df_error_clear(&err);
    static const char *const captions[N] = {"a photo of TOK red", "a photo of TOK blue", "a photo of TOK green",
                                            "a photo of TOK gold"};
    char paths[N][256], copy[256], unet_file[400], cmd[1200];
    const char *images[N];
    for (int i = 0; i < N; i++) { /* four different patterns of colour */
        static uint8_t rgb[SIDE * SIDE * 3];
        for (uint32_t k = 0; k < SIDE * SIDE; k++) {
            const uint32_t x = k % SIDE, y = k / SIDE;
            rgb[3 * k] = (uint8_t)(i == 0 || i == 3 ? 230 - y : 20 + x);
            rgb[3 * k + 1] = (uint8_t)(i == 2 || i == 3 ? 200 + (x ^ y) % 40 : 30);
            rgb[3 * k + 2] = (uint8_t)(i == 1 ? 240 - x - y : ((x / 16 + y / 16) % 2) * 120);
        }
        snprintf(paths[i], sizeof paths[i], "%s/memorise%d.png", g_dir, i);
        CHECK_OK(df_png_write(paths[i], rgb, SIDE, SIDE, NULL, 0, &err), &err);
        images[i] = paths[i];
    }
    snprintf(copy, sizeof copy, "%s/tiny_memorised", g_dir);
    snprintf(unet_file, sizeof unet_file, "%s/unet/diffusion_pytorch_model.safetensors", copy);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", copy, g_model, copy);
    CHECK(system(cmd) == 0);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    /* The photos' encodings, their latents replaced by unit-scale random
     * ones: a random VAE maps photos to latents of about 1e-2, all alike,
     * where SDXL's scaled latents have about unit scale. */
    static float own[N][LAT], drawn[N][LAT];
    char caches[N][300];
    const char *cache_of[N];
    df_train_sample_opts o = {.resolution = SIDE, .captions = 1};
    df_train_sample_encoder_t *enc = df_train_sample_encoder_new(m, g_dev, g_xfer, DF_F32, 1, &err);
    CHECK(enc != NULL);
    df_philox_fill_normal(own[0], N * LAT, 99, 0);
    for (int i = 0; enc && i < N; i++) {
        df_train_sample s;
        snprintf(caches[i], sizeof caches[i], "%s/memorise%d.safetensors", g_dir, i);
        CHECK_OK(df_train_sample_encode(enc, g_batch, images[i], captions[i], &o, NULL, &s, &err), &err);
        if (s.latents && s.lat_c * s.lat_h * s.lat_w == LAT)
            memcpy(s.latents, own[i], sizeof own[i]);
        CHECK_OK(df_train_sample_save(&s, &o, captions[i], NULL, images[i], caches[i], &err), &err);
        df_train_sample_free(&s);
        cache_of[i] = caches[i];
    }
    df_train_sample_encoder_destroy(&enc);
    /* Every step a batch of all four, fresh timesteps and noise. */
    static float losses[STEPS];
    df_train_params p = {.images = images, .captions = (const char *const *)captions, .count = N, .resolution = SIDE,
                         .caches = cache_of, .steps = STEPS, .batch = N, .full = 1,
                         .lora = {.seed = 3, .weight_decay = 0},
                         .lr = {DF_LR_CONSTANT, 1e-3f, 0, STEPS}, .noise = {.seed = 3, .min_snr_gamma = 5},
                         .weights = DF_F32};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, unet_file, NULL, losses, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double train_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    /* Sampling with each caption through the trained UNet, loaded from its file. */
    df_sdxl_t *m2 = df_sdxl_open(copy, NULL, &err);
    df_generator_t *gen = m2 ? df_generator_new(m2, g_dev, g_xfer, DF_F32, &err) : NULL;
    CHECK(gen != NULL);
    for (int i = 0; gen && i < N; i++) {
        df_gen_params gp = {.prompt = captions[i], .width = SIDE, .height = SIDE, .steps = 30, .guidance = 1,
                            .sampler = DF_SAMPLER_EULER, .seed = 100 + (uint64_t)i, .count = 1};
        CHECK_OK(df_generate(gen, g_batch, &gp, drawn[i], NULL, NULL, NULL, &err), &err);
    }
    double first = 0, last = 0;
    for (int k = 0; k < 20 && k < STEPS; k++)
        first += losses[k] / 20, last += losses[STEPS - 1 - k] / 20;
    fprintf(stderr, "  %d full fine-tuning steps of %d samples in %.1f s: mean loss %.3f over the first 20, %.3f over "
            "the last 20\n", STEPS, N, train_s, first, last);
    for (int i = 0; i < N; i++) { /* each sample's distance to every photo's latents, relative to that photo's norm */
        double d[N], norm[N];
        for (int j = 0; j < N; j++) {
            double e = 0, n2 = 0;
            for (int k = 0; k < LAT; k++)
                e += (drawn[i][k] - own[j][k]) * (double)(drawn[i][k] - own[j][k]), n2 += own[j][k] * (double)own[j][k];
            d[j] = sqrt(e), norm[j] = sqrt(n2);
            d[j] /= norm[j] > 0 ? norm[j] : 1;
        }
        double nearest_other = 1e30;
        for (int j = 0; j < N; j++)
            if (j != i && d[j] < nearest_other)
                nearest_other = d[j];
        fprintf(stderr, "  caption %d: sample within %.3f of its photo's latents, %.3f of the nearest other\n", i, d[i],
                nearest_other);
        CHECK(d[i] < 0.5 && d[i] < 0.5 * nearest_other);
    }
    df_generator_destroy(&gen);
    df_sdxl_destroy(&m2);
    df_sdxl_destroy(&m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", copy);
    CHECK(system(cmd) == 0);
    for (int i = 0; i < N; i++)
        unlink(paths[i]), unlink(caches[i]);
}

/*  Validation images come from the UNet being trained: after the last step
 *  they are what generation with the saved LoRA draws from the same seed. */
static uint8_t g_valid_rgb[64 * 64 * 3];
static int g_valid_calls;

static int keep_validation(void *ctx, uint64_t step, uint32_t prompt, const uint8_t *rgb, uint32_t w, uint32_t h,
                           df_error_t *err)
{
    (void)ctx, (void)prompt, (void)err;
    g_valid_calls++;
    if (step == 3 && w == 64 && h == 64)
        memcpy(g_valid_rgb, rgb, sizeof g_valid_rgb);
    return DF_OK;
}

static void test_train_lora_validation(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[3][256], out[256];
    const char *images[3], *captions[3] = {"a photo of TOK person", "TOK person smiling", "a portrait of TOK person"};
    const char *prompts[2] = {"a photo of TOK person", "TOK person on a beach"};
    write_photos("", 3, 90, paths, images);
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    snprintf(out, sizeof out, "%s/validated.safetensors", g_dir);
    df_train_params p = {.images = images, .captions = captions, .count = 3, .resolution = 64, .steps = 3, .batch = 1,
                         .lora = {.rank = 4, .alpha = 4, .seed = 7}, .lr = {DF_LR_CONSTANT, 1e-2f, 0, 3},
                         .noise = {.seed = 7}, .weights = DF_F32, .validation_prompts = prompts, .n_validation = 2,
                         .validate_every = 2, .validation_steps = 3, .on_validation = keep_validation};
    g_valid_calls = 0;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, out, NULL, NULL, &err), &err);
    CHECK_EQ(g_valid_calls, 4); /* after steps 2 and 3, two prompts each */
    df_generator_t *gen = df_generator_new(m, g_dev, g_xfer, DF_F32, &err);
    CHECK(gen != NULL);
    if (gen) {
        CHECK_OK(df_generator_set_lora_mode(gen, 1, &err), &err);
        CHECK_OK(df_generator_add_lora(gen, g_batch, out, 1.0f, &err), &err);
        df_gen_params gp = {.prompt = prompts[1], .width = 64, .height = 64, .steps = 3, .guidance = 5,
                            .sampler = DF_SAMPLER_EULER, .seed = 7 + 1000 + 1, .count = 1};
        static float lat[4 * 64 * 64];
        static uint8_t rgb[64 * 64 * 3];
        CHECK_OK(df_generate(gen, g_batch, &gp, lat, rgb, NULL, NULL, &err), &err);
        int worst = 0;
        for (size_t i = 0; i < sizeof rgb; i++)
            worst = abs((int)rgb[i] - (int)g_valid_rgb[i]) > worst ? abs((int)rgb[i] - (int)g_valid_rgb[i]) : worst;
        fprintf(stderr, "  validation image vs generation with the saved LoRA: worst %d levels\n", worst);
        CHECK(worst <= 1);
        /* A borrowing generator takes no LoRAs of its own. */
        df_unet_t *unet = df_sdxl_load_unet(m, g_dev, g_xfer, DF_F32, &err);
        df_generator_t *b = unet ? df_generator_borrowing(m, g_dev, g_xfer, DF_F32, unet, &err) : NULL;
        CHECK(b != NULL);
        if (b)
            CHECK_FAILS(df_generator_add_lora(b, g_batch, out, 1.0f, &err), &err, DF_E_STATE, "takes no LoRAs");
        df_generator_destroy(&b);
        df_unet_destroy(&unet); /* still the caller's after the generator went */
    }
    df_generator_destroy(&gen);
    unlink(out);
    df_sdxl_destroy(&m);
}

/*  on_checkpoint for the text-encoder test: keeps a copy of the checkpoint
 *  written after ctx's step. */
typedef struct {
    uint64_t step;
    char copy[256];
} keep_checkpoint;

static int keep_checkpoint_at(void *ctx, const char *path, uint64_t step, df_error_t *err)
{
    keep_checkpoint *k = ctx;
    if (step != k->step)
        return DF_OK;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, k->copy);
    return system(cmd) == 0 ? DF_OK : df_error_set(err, DF_E_IO, "could not copy %s", path);
}

/*  Whether the LoRA file holds keys starting with prefix, and whether any of
 *  them (up factors: "lora_up" or "lora_B") is nonzero. */
static int lora_has(const char *path, const char *prefix, int *nonzero_up)
{
    df_safetensors_t *st = df_safetensors_open(path, NULL);
    int n = 0;
    *nonzero_up = 0;
    for (size_t i = 0; st && i < df_safetensors_count(st); i++) {
        const df_st_tensor *t = df_safetensors_at(st, i);
        if (strncmp(t->name, prefix, strlen(prefix)) != 0)
            continue;
        n++;
        if ((strstr(t->name, "lora_up") || strstr(t->name, "lora_B")) && t->dtype == DF_F32)
            for (uint64_t k = 0; k < t->nelem; k++)
                *nonzero_up |= ((const float *)t->data)[k] != 0;
    }
    df_safetensors_destroy(&st);
    return n;
}

/*  Training the text encoders too: both towers' adapters learn (their up
 *  factors leave zero), the files carry them under kohya's and PEFT's keys
 *  and load into generation, a checkpoint resumes to the same file, and a
 *  caption too long for one chunk is refused by name. */
static void test_train_lora_text(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[2][256];
    const char *images[2], *captions[2] = {"a photo of TOK person", "TOK person smiling"};
    for (int i = 0; i < 2; i++) {
        uint8_t rgb[64 * 64 * 3];
        for (uint32_t k = 0; k < 64 * 64; k++)
            rgb[3 * k] = (uint8_t)(k % 64 * 3 + 50 * i), rgb[3 * k + 1] = (uint8_t)(k / 64 * 4), rgb[3 * k + 2] = 70;
        snprintf(paths[i], sizeof paths[i], "%s/te_photo%d.png", g_dir, i);
        CHECK_OK(df_png_write(paths[i], rgb, 64, 64, NULL, 0, &err), &err);
        images[i] = paths[i];
    }
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    char kohya[256], peft[256], ckpt[256], again[256];
    snprintf(kohya, sizeof kohya, "%s/te_lora.safetensors", g_dir);
    snprintf(peft, sizeof peft, "%s/te_lora_peft.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/te_checkpoint.safetensors", g_dir);
    snprintf(again, sizeof again, "%s/te_lora_resumed.safetensors", g_dir);
    keep_checkpoint kc = {.step = 2};
    snprintf(kc.copy, sizeof kc.copy, "%s/te_checkpoint_2.safetensors", g_dir);
    df_train_params p = {.images = images, .captions = captions, .count = 2, .resolution = 64, .steps = 4, .batch = 2,
                         .lora = {.rank = 4, .alpha = 4, .seed = 3}, .lr = {DF_LR_CONSTANT, 1e-2f, 0, 4},
                         .noise = {.seed = 3}, .weights = DF_F32, .train_text = 1, .checkpoint = ckpt,
                         .checkpoint_every = 2, .on_checkpoint = keep_checkpoint_at, .checkpoint_ctx = &kc};
    float lt[4], lu[4], lr4[4];
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, kohya, peft, lt, &err), &err);
    int nz1 = 0, nz2 = 0, nzu = 0, nzp = 0;
    CHECK(lora_has(kohya, "lora_te1_", &nz1) == 4 * 3 * 3); /* down, up, alpha of q, k, v, out in 3 layers */
    CHECK(lora_has(kohya, "lora_te2_", &nz2) > 0);
    CHECK(lora_has(kohya, "lora_unet_", &nzu) > 0);
    CHECK(nz1 && nz2 && nzu);
    CHECK(lora_has(peft, "text_encoder.", &nzp) > 0 && nzp);
    CHECK(lora_has(peft, "text_encoder_2.", &nzp) > 0 && nzp);
    /* The same run without the text encoders: the first step's loss is the
     * same (every up factor starts at zero), later ones are not. */
    char uckpt[256];
    snprintf(uckpt, sizeof uckpt, "%s/te_unet_only.safetensors", g_dir);
    df_train_params u = p;
    u.train_text = 0, u.checkpoint = uckpt, u.checkpoint_every = 0, u.on_checkpoint = NULL;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &u, NULL, NULL, NULL, NULL, lu, &err), &err);
    /* A UNet-only checkpoint resumed with the text encoders training, and
     * the other way round: refused, saying why. */
    df_train_params mix = p;
    mix.resume = uckpt, mix.checkpoint = NULL, mix.on_checkpoint = NULL;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &mix, NULL, NULL, NULL, NULL, NULL, &err), &err,
                DF_E_FORMAT, "did not train the text encoders");
    mix.resume = kc.copy, mix.train_text = 0;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &mix, NULL, NULL, NULL, NULL, NULL, &err), &err,
                DF_E_FORMAT, "resume it with the text encoders");
    unlink(uckpt);
    fprintf(stderr, "  losses with the text encoders %.5f %.5f %.5f %.5f, without %.5f %.5f %.5f %.5f\n", lt[0], lt[1],
            lt[2], lt[3], lu[0], lu[1], lu[2], lu[3]);
    CHECK(lt[0] == lu[0] && memcmp(lt + 1, lu + 1, 3 * sizeof *lt) != 0);
    /* Resumed from the checkpoint after step 2: the same file. */
    df_train_params r = p;
    r.resume = kc.copy, r.checkpoint = NULL, r.on_checkpoint = NULL;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &r, NULL, NULL, again, NULL, lr4, &err), &err);
    CHECK(lora_files_apart(kohya, again, 1e-2) == 0);
    CHECK(memcmp(lt, lr4, sizeof lt) == 0);
    /* The text encoders at a learning rate of their own: at a ten-thousandth
     * of the UNet's their up factors barely leave zero, while the UNet's
     * factors train as before (the same first two losses: the encoders
     * cannot move the first step, and barely the second). */
    char slow[256];
    snprintf(slow, sizeof slow, "%s/te_slow.safetensors", g_dir);
    df_train_params sl = p;
    sl.checkpoint = NULL, sl.on_checkpoint = NULL, sl.lora.text_lr_ratio = 1e-4f, sl.steps = 2, sl.lr.total = 2;
    float ls[2];
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &sl, NULL, NULL, slow, NULL, ls, &err), &err);
    double te_max[2] = {0, 0};
    const char *files[2] = {kohya, slow};
    for (int f = 0; f < 2; f++) {
        df_safetensors_t *st = df_safetensors_open(files[f], &err);
        for (size_t i = 0; st && i < df_safetensors_count(st); i++) {
            const df_st_tensor *t = df_safetensors_at(st, i);
            if (strncmp(t->name, "lora_te", 7) || !strstr(t->name, "lora_up"))
                continue;
            for (uint64_t k = 0; k < t->nelem; k++)
                te_max[f] = fmax(te_max[f], fabs(((const float *)t->data)[k]));
        }
        df_safetensors_destroy(&st);
    }
    fprintf(stderr, "  text encoders' largest up value: %.3g at the UNet's rate, %.3g at 1e-4 of it\n", te_max[0],
            te_max[1]);
    CHECK(te_max[1] > 0 && te_max[1] < 1e-3 * te_max[0]);
    CHECK(ls[0] == lt[0]);
    unlink(slow);
    /* Generation takes the text encoders' part. */
    df_generator_t *gen = df_generator_new(m, g_dev, g_xfer, DF_F32, &err);
    CHECK(gen != NULL);
    if (gen)
        CHECK_OK(df_generator_add_lora(gen, g_batch, kohya, 1.0f, &err), &err);
    df_generator_destroy(&gen);
    /* A caption of two chunks. */
    char longc[800] = "";
    for (int i = 0; i < 80; i++)
        strcat(longc, "word ");
    const char *long_captions[2] = {captions[0], longc};
    df_train_params q = p;
    q.captions = long_captions, q.checkpoint = NULL, q.on_checkpoint = NULL;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, NULL, NULL, NULL, &err), &err, DF_E_INVALID,
                "caption 2 is longer than 75 tokens");
    unlink(kohya), unlink(peft), unlink(ckpt), unlink(again), unlink(kc.copy);
    unlink(paths[0]), unlink(paths[1]);
    df_sdxl_destroy(&m);
}

static void test_train_lora_run(void)
{
    df_error_t err;
    df_error_clear(&err);
    char paths[3][256];
    const char *images[3], *captions[3] = {"a photo of TOK person", "TOK person smiling", "a portrait of TOK person"};
    for (int i = 0; i < 3; i++) {
        const uint32_t w = 80 + 16 * i, h = 64;
        uint8_t *rgb = malloc(w * h * 3);
        for (uint32_t k = 0; k < w * h; k++)
            rgb[3 * k] = (uint8_t)(k % w * 3 + 40 * i), rgb[3 * k + 1] = (uint8_t)(k / w * 4), rgb[3 * k + 2] = 90;
        snprintf(paths[i], sizeof paths[i], "%s/photo%d.png", g_dir, i);
        CHECK_OK(df_png_write(paths[i], rgb, w, h, NULL, 0, &err), &err);
        images[i] = paths[i];
        free(rgb);
    }
    df_sdxl_t *m = df_sdxl_open(g_model, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    df_train_params p = {.images = images, .captions = captions, .count = 3, .resolution = 64, .steps = 6, .batch = 2,
                         .lora = {.rank = 4, .alpha = 4, .seed = 7}, .lr = {DF_LR_CONSTANT_WARMUP, 1e-2f, 2, 6},
                         .noise = {.seed = 7, .noise_offset = 0.03f, .min_snr_gamma = 5}, .weights = DF_F32};
    char out[2][256];
    float losses[2][6];
    for (int run = 0; run < 2; run++) {
        snprintf(out[run], sizeof out[run], "%s/trained%d.safetensors", g_dir, run);
        CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &p, NULL, NULL, out[run], NULL, losses[run], &err), &err);
    }
    fprintf(stderr, "  losses %.4f %.4f %.4f %.4f %.4f %.4f\n", losses[0][0], losses[0][1], losses[0][2], losses[0][3],
            losses[0][4], losses[0][5]);
    CHECK(memcmp(losses[0], losses[1], sizeof losses[0]) == 0);
    uint8_t d0[32], d1[32];
    uint64_t s0, s1;
    CHECK(df_sha256_file(out[0], d0, &s0, &err) == DF_OK && df_sha256_file(out[1], d1, &s1, &err) == DF_OK &&
          memcmp(d0, d1, 32) == 0);
    /* Random flips: a different run, itself reproducible. */
    df_train_params qf = p;
    qf.flip = 1, qf.steps = 2, qf.lr.total = 2;
    float lf[2][2];
    for (int run = 0; run < 2; run++)
        CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &qf, NULL, NULL, NULL, NULL, lf[run], &err), &err);
    CHECK(memcmp(lf[0], lf[1], sizeof lf[0]) == 0 && memcmp(lf[0], losses[0], sizeof lf[0]) != 0);
    /* Two micro-batches of one accumulate to what one batch of two does. */
    char acc[256];
    snprintf(acc, sizeof acc, "%s/accumulated.safetensors", g_dir);
    df_train_params q2 = p;
    q2.batch = 1, q2.accumulate = 2, q2.steps = 3, q2.lr.total = 3;
    float lacc[3], lone[3];
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q2, NULL, NULL, acc, NULL, lacc, &err), &err);
    q2.batch = 2, q2.accumulate = 1;
    CHECK_OK(df_train_lora(m, g_dev, g_xfer, g_batch, &q2, NULL, NULL, out[1], NULL, lone, &err), &err);
    for (int i = 0; i < 3; i++)
        CHECK(fabsf(lacc[i] - lone[i]) <= 1e-5f * fabsf(lone[i]));
    double worst = lora_files_apart(acc, out[1], q2.lr.lr);
    /* Adam turns rounding-level gradient differences into up to a step's
     * worth where a gradient is ~0: measured in learning rates. */
    fprintf(stderr, "  2 micro-batches of 1 vs a batch of 2: same losses; factors within %.2g of the learning rate\n",
            worst);
    CHECK(worst >= 0 && worst < 1e-2);
    unlink(acc);
    /* The LoRA in generation: it changes the image. */
    df_generator_t *gen = df_generator_new(m, g_dev, g_xfer, DF_F32, &err), *bare = df_generator_new(m, g_dev, g_xfer,
                                                                                                     DF_F32, &err);
    CHECK(gen && bare);
    if (gen && bare) {
        CHECK_OK(df_generator_add_lora(gen, g_batch, out[0], 1.0f, &err), &err);
        df_gen_params gp = {.prompt = "a photo of TOK person", .width = 64, .height = 64, .steps = 2, .guidance = 3,
                            .sampler = DF_SAMPLER_EULER, .seed = 1, .count = 1};
        static float a[4 * 8 * 8], b[4 * 8 * 8];
        CHECK_OK(df_generate(gen, g_batch, &gp, a, NULL, NULL, NULL, &err), &err);
        CHECK_OK(df_generate(bare, g_batch, &gp, b, NULL, NULL, NULL, &err), &err);
        CHECK(memcmp(a, b, sizeof a) != 0);
    }
    df_generator_destroy(&gen);
    df_generator_destroy(&bare);
    /* Refusals: a photo that is not one, a resolution the model cannot take, no steps. */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/notes.png", g_dir);
    FILE *f = fopen(bad, "w");
    if (f) {
        fputs("not an image", f);
        fclose(f);
    }
    const char *bad_images[3] = {paths[0], bad, paths[2]};
    df_train_params q = p;
    q.images = bad_images;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[0], NULL, NULL, &err), &err, DF_E_FORMAT,
                "notes.png");
    q = p, q.resolution = 60;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[0], NULL, NULL, &err), &err, DF_E_INVALID,
                "resolution 60");
    q = p, q.steps = 0;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[0], NULL, NULL, &err), &err, DF_E_INVALID,
                "steps 0");
    q = p, q.full = 1, q.weights = DF_F16;
    CHECK_FAILS(df_train_lora(m, g_dev, g_xfer, g_batch, &q, NULL, NULL, out[0], NULL, NULL, &err), &err, DF_E_INVALID,
                "full fine-tuning takes f32 weights");
    unlink(bad);
    for (int i = 0; i < 3; i++)
        unlink(paths[i]);
    unlink(out[0]), unlink(out[1]);
    df_sdxl_destroy(&m);
}

/*  The chunked attention path (head dims over 128, the VAE's 512 in SDXL)
 *  against a double-precision reference. */
static void test_attention_any(void)
{
    df_error_t err;
    df_error_clear(&err);
    const uint32_t B = 2, N = 50;
    /* A head dim the fused kernel refuses, so the chunked path runs. */
    const uint32_t wide = 160;
    uint64_t nw = (uint64_t)B * N * wide;
    df_vk_buffer_t *w3 = df_vk_buffer_new(g_dev, nw * 3 * 4, &err), *ow = df_vk_buffer_new(g_dev, nw * 4, &err);
    float *hw = malloc(nw * 3 * sizeof *hw);
    for (uint64_t i = 0; i < nw * 3; i++)
        hw[i] = (float)sin(0.11 * (double)i);
    CHECK_OK(df_vk_upload(g_xfer, w3, 0, hw, nw * 3 * 4, &err), &err);
    df_attn_desc dw = {.batch = B, .heads = 1, .nq = N, .nk = N, .dim = wide};
    CHECK_OK(df_attention_any(g_batch, &dw, df_tensor_at(w3, 0, DF_F32), df_tensor_at(w3, nw * 4, DF_F32),
                              df_tensor_at(w3, nw * 8, DF_F32), df_tensor_at(ow, 0, DF_F32), &err),
             &err);
    CHECK_OK(df_vk_batch_submit(g_batch, &err), &err);
    float *got = malloc(nw * sizeof *got);
    CHECK_OK(df_vk_download_f32(g_xfer, ow, 0, got, nw, DF_F32, &err), &err);
    /* Reference in double on the host. */
    float *ref = malloc(nw * sizeof *ref);
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t i = 0; i < N; i++) {
            const float *qi = hw + ((uint64_t)b * N + i) * wide;
            double s[64], mx = -1e300, sum = 0;
            for (uint32_t j = 0; j < N; j++) {
                const float *kj = hw + nw + ((uint64_t)b * N + j) * wide;
                double dot = 0;
                for (uint32_t c = 0; c < wide; c++)
                    dot += (double)qi[c] * kj[c];
                s[j] = dot / sqrt((double)wide);
                mx = fmax(mx, s[j]);
            }
            for (uint32_t j = 0; j < N; j++)
                sum += s[j] = exp(s[j] - mx);
            for (uint32_t c = 0; c < wide; c++) {
                double acc = 0;
                for (uint32_t j = 0; j < N; j++)
                    acc += s[j] / sum * hw[2 * nw + ((uint64_t)b * N + j) * wide + c];
                ref[((uint64_t)b * N + i) * wide + c] = (float)acc;
            }
        }
    check_close("attention, head dim 160 (chunked)", got, ref, nw, 1e-5);
    dw.causal = 1;
    CHECK_FAILS(df_attention_any(g_batch, &dw, df_tensor_at(w3, 0, DF_F32), df_tensor_at(w3, nw * 4, DF_F32),
                                 df_tensor_at(w3, nw * 8, DF_F32), df_tensor_at(ow, 0, DF_F32), &err),
                &err, DF_E_UNSUPPORTED, "causal");
    free(hw), free(got), free(ref);
    df_vk_buffer_destroy(&w3), df_vk_buffer_destroy(&ow);
}

/*  A checkpoint that does not match its config: one error lists it all. */
static void test_weights_mismatch(void)
{
    df_sdxl_config cfg;
    df_sdxl_config_preset(DF_SDXL_PRESET_TINY, 626, &cfg);
    df_arch_list l = {0};
    df_error_t err;
    df_error_clear(&err);
    CHECK_OK(df_arch_clip_text(&cfg.te1, &l, &err), &err);
    /* Write a file from the list with one tensor dropped, one reshaped, one
     * added and one of a non-float type. */
    df_st_writer_t *w = df_st_writer_new();
    static float zeros[1 << 16];
    for (size_t i = 0; i < l.count; i++) {
        df_arch_tensor t = l.items[i];
        if (strcmp(t.name, "text_model.encoder.layers.1.mlp.fc1.bias") == 0)
            continue;
        if (strcmp(t.name, "text_model.encoder.layers.0.self_attn.q_proj.weight") == 0)
            t.shape[1] = 16;
        CHECK(df_arch_numel(&t) <= sizeof zeros / 4);
        CHECK_OK(df_st_writer_add(w, t.name, DF_F32, t.ndim, t.shape, zeros, &err), &err);
    }
    int64_t one = 1;
    CHECK_OK(df_st_writer_add(w, "text_model.encoder.layers.9.mlp.fc1.bias", DF_F32, 1, &one, zeros, &err), &err);
    char path[256];
    path_of(path, sizeof path, g_dir, "bad.safetensors");
    CHECK_OK(df_st_writer_write(w, path, &err), &err);
    df_st_writer_destroy(&w);
    df_safetensors_t *st = df_safetensors_open(path, &err);
    CHECK(st != NULL);
    df_weights_t *ws = df_weights_load(g_dev, g_xfer, &l, st, NULL, DF_F32, &err);
    CHECK(ws == NULL);
    CHECK(strstr(err.msg, "bad.safetensors does not match"));
    CHECK(strstr(err.msg, "1 missing (text_model.encoder.layers.1.mlp.fc1.bias)"));
    CHECK(strstr(err.msg, "1 mis-shaped (text_model.encoder.layers.0.self_attn.q_proj.weight [32,16], expected [32,32])"));
    CHECK(strstr(err.msg, "1 unexpected (text_model.encoder.layers.9.mlp.fc1.bias)"));
    df_error_clear(&err);
    CHECK(df_weights_load(g_dev, g_xfer, &l, st, NULL, DF_BF16, &err) == NULL && strstr(err.msg, "f32, f16 or i8"));
    df_safetensors_destroy(&st);
    unlink(path);
    /* A model folder without a component's config names the file it looked for. */
    path_of(path, sizeof path, g_dir, "half-model");
    CHECK(mkdir(path, 0755) == 0);
    char idx[512];
    path_of(idx, sizeof idx, path, "model_index.json");
    FILE *f = fopen(idx, "w");
    fputs("{}", f);
    fclose(f);
    df_error_clear(&err);
    CHECK(df_sdxl_open(path, NULL, &err) == NULL && err.code == DF_E_NOT_FOUND && strstr(err.msg, "unet/config.json"));
    unlink(idx);
    rmdir(path);
    df_arch_list_free(&l);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_models GOLDEN_DIR [filter]\n");
        return 2;
    }
    g_golden = argv[1];
    test_filter_ = argc > 2 ? argv[2] : NULL;
    snprintf(g_dir, sizeof g_dir, "/tmp/df_models_XXXXXX");
    if (!mkdtemp(g_dir))
        return 2;
    snprintf(g_model, sizeof g_model, "%s/tiny", g_dir);
    snprintf(g_model16, sizeof g_model16, "%s/tiny16", g_dir);
    snprintf(g_single, sizeof g_single, "%s/tiny.safetensors", g_dir);
    df_error_t err;
    df_error_clear(&err);
    if (df_random_model_create(g_model, DF_SDXL_PRESET_TINY, 0, DF_F32, &err) != DF_OK ||
        df_random_model_create(g_model16, DF_SDXL_PRESET_TINY, 0, DF_F16, &err) != DF_OK ||
        df_random_model_create_single(g_single, DF_SDXL_PRESET_TINY, 0, DF_F32, &err) != DF_OK) {
        fprintf(stderr, "tiny model: %s\n", err.msg);
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
    RUN(test_random_model_reproducible);
    RUN(test_configs);
    RUN(test_arch_matches_files);
    RUN(test_tiny_tokenizer);
    RUN(test_weights_mismatch);
    RUN(test_text_encoders_f32);
    RUN(test_text_encoders_f16);
    RUN(test_text_encoders_f16_files);
    RUN(test_attention_any);
    RUN(test_vae_f32);
    RUN(test_vae_f16);
    RUN(test_vae_tiled);
    RUN(test_unet_f32);
    RUN(test_unet_f16);
    RUN(test_single_file);
    RUN(test_prompt_encoder);
    RUN(test_sdxl_open_errors);
    RUN(test_sgm_names);
    RUN(test_component_runner);
    RUN(test_pipeline_parity);
    RUN(test_generate_determinism);
    RUN(test_lora_formats);
    RUN(test_lora_matches_diffusers);
    RUN(test_lora_grad_matches_autograd);
    RUN(test_lora_grad_f16_weights);
    RUN(test_unet_int8);
    RUN(test_unet_text_grads);
    RUN(test_text_lora_grad);
    RUN(test_unet_full_grads);
    RUN(test_full_finetune);
    /* Minutes long: run only when named (ctest's test_models_memorise). */
    if (test_filter_ && strstr("test_full_finetune_memorises", test_filter_))
        RUN(test_full_finetune_memorises);
    RUN(test_lora_adamw_matches_torch);
    RUN(test_lora_training_learns);
    RUN(test_lora_training_resume);
    RUN(test_lora_training_adam8);
    RUN(test_train_lora_run);
    RUN(test_train_lora_text);
    RUN(test_train_lora_prior);
    RUN(test_train_lora_buckets);
    RUN(test_train_lora_caches);
    RUN(test_train_lora_validation);
    uint32_t verr = df_vk_instance_validation_errors(inst);
    df_vk_batch_destroy(&g_batch);
    df_vk_transfer_destroy(&g_xfer);
    df_vk_device_destroy(&g_dev);
    df_vk_instance_destroy(&inst);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    fprintf(stderr, "%u validation errors\n", verr);
    int rc = test_summary();
    return rc || verr ? 1 : 0;
}
