/*  bench_train.c - SDXL LoRA training steps: time per step, achieved
 *  throughput and the device memory a step needs, next to OpenBLAS sgemm
 *  measured in the same run (how long the same work would take on the CPU
 *  at sgemm's speed).
 *
 *    bench_train MODEL [--size PX]... [--rank R] [--steps N] [--dtype f16|f32|int8] [--adam8] [--warm-up] [--device N]
 *
 *  Each size runs N optimiser steps (default 1) of batch 1 on random latents
 *  and conditioning (the work depends on shapes only): the UNet forward
 *  keeping block inputs, the backward pass recomputing a block at a time,
 *  AdamW on the LoRA (rank R, default 16, on every attention projection, as
 *  the reference trains SDXL). Memory is the highest VkDeviceMemory held
 *  during the steps, weights included. Not a test: figures go to
 *  docs/performance.md. --warm-up first runs one untimed step at the first
 *  size, so that building the pipelines (which dominates on a GPU) stays out
 *  of the timings.
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
#include "lora_trainer.h"
#include "philox.h"
#include "sdxl_model.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_memory.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static void die(const char *what, const df_error_t *err)
{
    fprintf(stderr, "bench_train: %s: %s\n", what, err->msg);
    exit(1);
}

static df_vk_buffer_t *random_buffer(df_vk_device_t *dev, df_vk_transfer_t *xfer, uint64_t n, uint64_t seed)
{
    float *v = malloc(n * sizeof *v);
    df_philox_fill_normal(v, n, seed, 0);
    df_error_t err;
    df_error_clear(&err);
    df_vk_buffer_t *b = df_vk_buffer_new(dev, n * 4, &err);
    if (!b || df_vk_upload(xfer, b, 0, v, n * 4, &err) != DF_OK)
        die("input", &err);
    free(v);
    return b;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_train MODEL [--size PX]... [--rank R] [--steps N] [--dtype f16|f32|int8] [--adam8] [--warm-up] [--device N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"size", required_argument, NULL, 's'},
                                         {"rank", required_argument, NULL, 'r'},
                                         {"steps", required_argument, NULL, 'n'},
                                         {"dtype", required_argument, NULL, 't'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"warm-up", no_argument, NULL, 'W'},
                                         {"adam8", no_argument, NULL, '8'},
                                         {NULL, 0, NULL, 0}};
    uint32_t sizes[8];
    int nsizes = 0, steps = 1, device = -1, warm_up = 0, adam8 = 0, c;
    uint32_t rank = 16;
    df_dtype dtype = DF_F16;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (nsizes == 8)
                usage();
            sizes[nsizes++] = (uint32_t)atoi(optarg);
            break;
        case 'r': rank = (uint32_t)atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case '8': adam8 = 1; break;
        case 't': dtype = strcmp(optarg, "f32") == 0 ? DF_F32 : strcmp(optarg, "int8") == 0 ? DF_I8 : DF_F16; break;
        case 'd': device = atoi(optarg); break;
        case 'W': warm_up = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || steps < 1)
        usage();
    if (nsizes == 0)
        sizes[nsizes++] = 512;
    df_log_set_level(DF_LOG_WARN);
    df_error_t err;
    df_error_clear(&err);
    df_vk_instance_opts iopts = {.validation = DF_VK_VALIDATION_OFF};
    df_vk_instance_t *inst = df_vk_instance_new(&iopts, &err);
    uint32_t index = 0;
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    df_vk_batch_t *batch = NULL;
    if (!inst || df_vk_instance_choose(inst, device, &index, &err) != DF_OK ||
        !(dev = df_vk_device_new(inst, index, NULL, &err)) || !(xfer = df_vk_transfer_new(dev, NULL, &err)) ||
        !(batch = df_vk_batch_new(dev, 0, &err)))
        die("device", &err);
    df_sdxl_t *m = df_sdxl_open(argv[optind], NULL, &err);
    if (!m)
        die("model", &err);
    double blas = df_bench_blas_gflops();
    printf("device: %s; model %s, base weights %s, LoRA rank %u on the attention projections; OpenBLAS sgemm: "
           "%.1f GFLOPS; AdamW moments %s\n", df_vk_device_info_of(dev)->name, argv[optind], df_dtype_name(dtype), rank, blas,
           adam8 ? "8-bit" : "f32");
    fflush(stdout);
    const df_sdxl_config *cfg = df_sdxl_config_of(m);
    double t0 = df_bench_now_s();
    df_unet_t *unet = df_sdxl_load_unet(m, dev, xfer, dtype, &err);
    if (!unet)
        die("unet", &err);
    df_lora_train_opts o = {.rank = rank, .alpha = (float)rank, .seed = 1, .weight_decay = 1e-2f, .state8 = adam8};
    df_lora_trainer_t *tr = df_lora_trainer_new(unet, batch, xfer, &o, &err);
    if (!tr)
        die("trainer", &err);
    df_vk_memory_stats st;
    df_vk_memory_stats_get(df_vk_device_memory(dev), &st);
    printf("load: %.1f s; UNet weights and LoRA state %.2f GiB; %llu LoRA values\n", df_bench_now_s() - t0, st.in_use / GIB,
           (unsigned long long)df_lora_trainer_params(tr));
    fflush(stdout);
    const uint32_t ctx = (uint32_t)cfg->unet.cross_attention_dim;
    const uint32_t pooled = (uint32_t)(cfg->unet.projection_class_embeddings_input_dim -
                                       6 * cfg->unet.addition_time_embed_dim);
    df_vk_buffer_t *cb = random_buffer(dev, xfer, 77ull * ctx, 2), *tb = random_buffer(dev, xfer, pooled, 3);
    df_vk_buffer_t *lb = df_vk_buffer_new(dev, 8, &err);
    /* s == -1 is the untimed warm-up step at the first size. */
    for (int s = warm_up ? -1 : 0; s < nsizes; s++) {
        const int timed = s >= 0, px = (int)sizes[timed ? s : 0], runs = timed ? steps : 1;
        uint32_t lat = (uint32_t)px / 8;
        uint64_t n = 4ull * lat * lat;
        df_vk_buffer_t *xb = random_buffer(dev, xfer, n, 4), *eb = random_buffer(dev, xfer, n, 5);
        df_fmap sample = {df_tensor_at(xb, 0, DF_F32), 1, 4, lat, lat};
        float ts = 500, ids[6] = {(float)px, (float)px, 0, 0, (float)px, (float)px};
        df_unet_inputs in = {.sample = &sample, .timesteps = &ts, .context = df_tensor_at(cb, 0, DF_F32),
                             .context_len = 77, .text_embeds = df_tensor_at(tb, 0, DF_F32), .time_ids = ids};
        df_tensor none = {{NULL, 0}, DF_F32};
        df_vk_memory_reset_peak_reserved(df_vk_device_memory(dev));
        df_vk_batch_memory_peak_reset(batch);
        double f0 = df_vk_batch_flops(batch);
        t0 = df_bench_now_s();
        float loss = 0;
        for (int i = 0; i < runs; i++) {
            if (df_lora_trainer_accumulate(tr, batch, &in, df_tensor_at(eb, 0, DF_F32), none, 1.0f,
                                           df_tensor_at(lb, 0, DF_F32), &err) != DF_OK ||
                df_lora_trainer_step(tr, batch, 1e-4f, &err) != DF_OK ||
                df_vk_download(xfer, lb, 0, &loss, 4, &err) != DF_OK)
                die("step", &err);
        }
        double secs = (df_bench_now_s() - t0) / runs, flops = (df_vk_batch_flops(batch) - f0) / runs;
        df_vk_memory_stats_get(df_vk_device_memory(dev), &st);
        if (!timed)
            printf("warm-up %dx%d, 1 step: %.2f s\n", px, px, secs);
        else
            printf("%ux%u, batch 1, rank %u: %.3f s per step (%.2f TFLOP at %.1f GFLOPS; OpenBLAS: %.1f s); peak "
                   "device memory %.2f GiB held, %.2f GiB in tensors; loss %.4f\n",
                   (unsigned)px, (unsigned)px, rank, secs, flops * 1e-12, flops / secs * 1e-9, flops / (blas * 1e9),
                   st.peak_reserved / GIB, df_vk_batch_memory_peak(batch) / GIB, loss);
        fflush(stdout);
        df_vk_buffer_destroy(&xb);
        df_vk_buffer_destroy(&eb);
    }
    df_vk_buffer_destroy(&cb), df_vk_buffer_destroy(&tb), df_vk_buffer_destroy(&lb);
    df_lora_trainer_destroy(&tr);
    df_unet_destroy(&unet);
    df_sdxl_destroy(&m);
    df_vk_batch_destroy(&batch);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    df_vk_instance_destroy(&inst);
    return 0;
}
