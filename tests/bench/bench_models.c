/*  bench_models.c - SDXL components at generation sizes: time, achieved
 *  throughput and peak device memory, next to OpenBLAS sgemm measured in the
 *  same run (how long the same floating-point work would take on the CPU at
 *  sgemm's speed).
 *
 *    bench_models MODEL [--device N] [--dtype f16|f32|int8] [--only SECTION] [--tokenizer DIR]
 *
 *  SECTION: text, unet512, unet1024, vae1024 (default: all). MODEL is a
 *  diffusers folder or a single file; for measurements, the `sdxl` random
 *  model (`dreamfleet model create-random DIR --config sdxl`). Inputs are
 *  random: the figures depend on shapes only. Not a test: figures go to
 *  docs/performance.md.
 */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "log.h"
#include "philox.h"
#include "prompt.h"
#include "sdxl_model.h"
#include "vae_tiled.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_memory.h"

static df_vk_device_t *g_dev;
static df_vk_transfer_t *g_xfer;
static df_vk_batch_t *g_batch;
static double g_blas_gflops;

static void die(const char *what, const df_error_t *err)
{
    fprintf(stderr, "bench_models: %s: %s\n", what, err->msg);
    exit(1);
}

static df_vk_buffer_t *random_buffer(uint64_t n, uint64_t seed, float scale)
{
    float *v = malloc(n * sizeof *v);
    df_philox_fill_normal(v, n, seed, 0);
    for (uint64_t i = 0; i < n; i++)
        v[i] *= scale;
    df_error_t err;
    df_error_clear(&err);
    df_vk_buffer_t *b = df_vk_buffer_new(g_dev, n * 4, &err);
    if (!b || df_vk_upload(g_xfer, b, 0, v, n * 4, &err) != DF_OK)
        die("input", &err);
    free(v);
    return b;
}

static void report(const char *what, double seconds, double flops, uint64_t weights, uint64_t peak)
{
    printf("%-34s %8.2f s  %7.2f TFLOP  %6.1f GFLOPS  (OpenBLAS: %6.1f s)  weights %5.2f GiB  peak %5.2f GiB\n", what,
           seconds, flops * 1e-12, flops / seconds * 1e-9, flops / (g_blas_gflops * 1e9), weights / 1073741824.0,
           peak / 1073741824.0);
    fflush(stdout);
}

static uint64_t in_use(void)
{
    df_vk_memory_stats st;
    df_vk_memory_stats_get(df_vk_device_memory(g_dev), &st);
    return st.in_use;
}

static void bench_text(df_sdxl_t *m, df_dtype dtype)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t base = in_use();
    df_prompt_encoder_t *pe = df_prompt_encoder_new(m, g_dev, g_xfer, dtype, &err);
    if (!pe)
        die("text encoders", &err);
    uint64_t weights = in_use() - base;
    df_vk_buffer_t *ctx = df_vk_buffer_new(g_dev, 77ull * df_prompt_context_dim(pe) * 4, &err);
    df_vk_buffer_t *pool = df_vk_buffer_new(g_dev, df_prompt_pooled_dim(pe) * 4ull, &err);
    const char *prompt = "a photo of TOK person, portrait, studio lighting, highly detailed";
    uint32_t chunks;
    /* Once to build the pipelines, then timed. */
    for (int pass = 0; pass < 2; pass++) {
        df_vk_batch_memory_peak_reset(g_batch);
        double f0 = df_vk_batch_flops(g_batch), t0 = df_bench_now_s();
        if (df_prompt_encode(pe, g_batch, prompt, df_tensor_at(ctx, 0, DF_F32), df_tensor_at(pool, 0, DF_F32), NULL,
                             NULL, &chunks, &err) != DF_OK ||
            df_vk_batch_submit(g_batch, &err) != DF_OK)
            die("text", &err);
        if (pass)
            report("text encoders (1 prompt)", df_bench_now_s() - t0, df_vk_batch_flops(g_batch) - f0, weights,
                   df_vk_batch_memory_peak(g_batch) - base);
    }
    df_vk_buffer_destroy(&ctx);
    df_vk_buffer_destroy(&pool);
    df_prompt_encoder_destroy(&pe);
}

/*  One evaluation at px (batch 2); timed and reported unless what is NULL. */
static void unet_once(df_unet_t *u, const df_sdxl_config *c, uint32_t px, const char *what, uint64_t weights,
                      uint64_t base)
{
    df_error_t err;
    df_error_clear(&err);
    const uint32_t n = 2, lh = px / 8, lw = px / 8, ctxd = (uint32_t)c->unet.cross_attention_dim;
    const uint32_t pooled = (uint32_t)(c->unet.projection_class_embeddings_input_dim - 6 * c->unet.addition_time_embed_dim);
    uint64_t ns = (uint64_t)n * 4 * lh * lw;
    df_vk_buffer_t *sb = random_buffer(ns, 1, 1), *cb = random_buffer((uint64_t)n * 77 * ctxd, 2, 1),
                   *tb = random_buffer((uint64_t)n * pooled, 3, 1), *ob = df_vk_buffer_new(g_dev, ns * 4, &err);
    float ts[2] = {500, 500}, ids[12];
    for (int i = 0; i < 2; i++) {
        float row[6] = {(float)px, (float)px, 0, 0, (float)px, (float)px};
        memcpy(ids + 6 * i, row, sizeof row);
    }
    df_fmap s = {df_tensor_at(sb, 0, DF_F32), n, 4, lh, lw};
    df_unet_inputs in = {.sample = &s, .timesteps = ts, .context = df_tensor_at(cb, 0, DF_F32), .context_len = 77,
                         .text_embeds = df_tensor_at(tb, 0, DF_F32), .time_ids = ids};
    df_vk_batch_memory_peak_reset(g_batch);
    double f0 = df_vk_batch_flops(g_batch), t0 = df_bench_now_s();
    if (df_unet_forward(u, g_batch, &in, df_tensor_at(ob, 0, DF_F32), &err) != DF_OK)
        die("unet", &err);
    if (what)
        report(what, df_bench_now_s() - t0, df_vk_batch_flops(g_batch) - f0, weights, df_vk_batch_memory_peak(g_batch) - base);
    df_vk_buffer_destroy(&sb), df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&ob);
}

static void bench_unet(df_sdxl_t *m, df_dtype dtype, uint32_t px)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t base = in_use();
    df_unet_t *u = df_sdxl_load_unet(m, g_dev, g_xfer, dtype, &err);
    if (!u)
        die("unet", &err);
    uint64_t weights = in_use() - base;
    /* A small evaluation first builds the pipelines (LLVM compiles each on a
     * CPU driver), so the timed one measures the arithmetic. */
    unet_once(u, df_sdxl_config_of(m), 256, NULL, 0, 0);
    char what[64];
    snprintf(what, sizeof what, "unet %ux%u, batch 2 (CFG)", px, px);
    unet_once(u, df_sdxl_config_of(m), px, what, weights, base);
    df_unet_destroy(&u);
}

static void bench_vae(df_sdxl_t *m, uint32_t px)
{
    df_error_t err;
    df_error_clear(&err);
    uint64_t base = in_use();
    df_vae_t *v = df_sdxl_load_vae(m, g_dev, g_xfer, DF_F32, &err); /* SDXL's VAE stays f32 */
    if (!v)
        die("vae", &err);
    uint64_t weights = in_use() - base;
    uint32_t h = px / 8, w = px / 8;
    float *lat = malloc(4ull * h * w * sizeof *lat), *img = malloc(3ull * px * px * sizeof *img);
    df_philox_fill_normal(lat, 4ull * h * w, 5, 0);
    char what[64];
    snprintf(what, sizeof what, "vae decode %ux%u (2x2 tiles)", px, px);
    if (df_vae_decode_tiled(v, g_batch, g_xfer, NULL, lat, 1, 16, 16, img, &err) != DF_OK) /* pipelines */
        die(what, &err);
    df_vk_batch_memory_peak_reset(g_batch);
    double f0 = df_vk_batch_flops(g_batch), t0 = df_bench_now_s();
    if (df_vae_decode_tiled(v, g_batch, g_xfer, NULL, lat, 1, h, w, img, &err) != DF_OK)
        die(what, &err);
    report(what, df_bench_now_s() - t0, df_vk_batch_flops(g_batch) - f0, weights, df_vk_batch_memory_peak(g_batch) - base);
    free(lat), free(img);
    df_vae_destroy(&v);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"device", required_argument, NULL, 'd'},
                                         {"dtype", required_argument, NULL, 't'},
                                         {"only", required_argument, NULL, 'o'},
                                         {"tokenizer", required_argument, NULL, 'k'},
                                         {NULL, 0, NULL, 0}};
    int device = -1, c;
    df_dtype dtype = DF_F16;
    const char *only = NULL, *tokenizer = NULL;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = atoi(optarg); break;
        case 't': dtype = strcmp(optarg, "f32") == 0 ? DF_F32 : strcmp(optarg, "int8") == 0 ? DF_I8 : DF_F16; break;
        case 'o': only = optarg; break;
        case 'k': tokenizer = optarg; break;
        default: fprintf(stderr, "usage: bench_models MODEL [--device N] [--dtype f16|f32|int8] [--only SECTION]\n"); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: bench_models MODEL [--device N] [--dtype f16|f32|int8] [--only SECTION]\n");
        return 2;
    }
    df_log_set_level(DF_LOG_WARN);
    df_error_t err;
    df_error_clear(&err);
    df_vk_instance_opts iopts = {.validation = DF_VK_VALIDATION_OFF};
    df_vk_instance_t *inst = df_vk_instance_new(&iopts, &err);
    uint32_t index = 0;
    if (!inst || df_vk_instance_choose(inst, device, &index, &err) != DF_OK ||
        !(g_dev = df_vk_device_new(inst, index, NULL, &err)) || !(g_xfer = df_vk_transfer_new(g_dev, NULL, &err)) ||
        !(g_batch = df_vk_batch_new(g_dev, 0, &err)))
        die("device", &err);
    df_sdxl_t *m = df_sdxl_open(argv[optind], tokenizer, &err);
    if (!m)
        die("model", &err);
    g_blas_gflops = df_bench_blas_gflops();
    printf("device: %s; model %s, weights %s; OpenBLAS sgemm 4096x640x640: %.1f GFLOPS (%d threads)\n",
           df_vk_device_info_of(g_dev)->name, argv[optind], df_dtype_name(dtype), g_blas_gflops,
           openblas_get_num_threads());
    if (!only || strcmp(only, "text") == 0)
        bench_text(m, dtype);
    if (!only || strcmp(only, "unet512") == 0)
        bench_unet(m, dtype, 512);
    if (!only || strcmp(only, "unet1024") == 0)
        bench_unet(m, dtype, 1024);
    if (!only || strcmp(only, "vae1024") == 0)
        bench_vae(m, 1024);
    df_sdxl_destroy(&m);
    df_vk_batch_destroy(&g_batch);
    df_vk_transfer_destroy(&g_xfer);
    df_vk_device_destroy(&g_dev);
    df_vk_instance_destroy(&inst);
    return 0;
}
