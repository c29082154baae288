/*  bench_generate.c - whole text-to-image generations: where the time goes
 *  (text encoders, denoising steps, VAE), the time a 30-step image takes,
 *  and the device memory the run needed, next to OpenBLAS sgemm measured in
 *  the same run (how long the same work would take on the CPU at sgemm's
 *  speed).
 *
 *    bench_generate MODEL [--size WxH]... [--steps N] [--cfg X] [--dtype f16|f32]
 *                   [--keep-text] [--warm-up] [--device N] [--tokenizer DIR]
 *
 *  Each size runs one image of N Euler steps (default 2); --warm-up first
 *  runs one at the smallest size the model takes, to build the pipelines
 *  outside the timings (worth it on a GPU, where that dominates). The
 *  30-step figure is text + 30 x (the measured time per step) + VAE: on a
 *  CPU driver a 30-step 1024 px image takes hours, and the steps do the
 *  same work every time.
 *
 *  Memory: the highest VkDeviceMemory held at any point of the run (what a
 *  GPU must have, spare blocks and fragmentation included) and the highest
 *  bytes of live tensors. By default the text encoders are released after
 *  the prompts are encoded, as workers below 16 GiB do; --keep-text keeps
 *  them, as larger ones do, which adds their weights (printed) to every
 *  phase after the first. Not a test: figures go to docs/performance.md.
 */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "bench_util.h"
#include "log.h"
#include "philox.h"
#include "vk_device.h"
#include "vk_instance.h"
#include "vk_memory.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static void die(const char *what, const df_error_t *err)
{
    fprintf(stderr, "bench_generate: %s: %s\n", what, err->msg);
    exit(1);
}

static df_vk_memory_stats mem_stats(df_vk_device_t *dev)
{
    df_vk_memory_stats st;
    df_vk_memory_stats_get(df_vk_device_memory(dev), &st);
    return st;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_generate MODEL [--size WxH]... [--steps N] [--cfg X] [--dtype f16|f32] "
                    "[--keep-text] [--warm-up] [--device N] [--tokenizer DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"size", required_argument, NULL, 's'},
                                         {"steps", required_argument, NULL, 'n'},
                                         {"cfg", required_argument, NULL, 'c'},
                                         {"dtype", required_argument, NULL, 't'},
                                         {"keep-text", no_argument, NULL, 'K'},
                                         {"warm-up", no_argument, NULL, 'W'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"tokenizer", required_argument, NULL, 'k'},
                                         {NULL, 0, NULL, 0}};
    uint32_t sizes[8][2];
    int nsizes = 0, steps = 2, keep_text = 0, warm_up = 0, device = -1, c;
    float cfg = 5.0f;
    df_dtype dtype = DF_F16;
    const char *tokenizer = NULL;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (nsizes == 8 || sscanf(optarg, "%ux%u", &sizes[nsizes][0], &sizes[nsizes][1]) != 2)
                usage();
            nsizes++;
            break;
        case 'n': steps = atoi(optarg); break;
        case 'c': cfg = (float)atof(optarg); break;
        case 't': dtype = strcmp(optarg, "f32") == 0 ? DF_F32 : DF_F16; break;
        case 'K': keep_text = 1; break;
        case 'W': warm_up = 1; break;
        case 'd': device = atoi(optarg); break;
        case 'k': tokenizer = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || steps < 1)
        usage();
    if (nsizes == 0)
        sizes[0][0] = sizes[0][1] = 1024, nsizes = 1;
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
    df_sdxl_t *m = df_sdxl_open(argv[optind], tokenizer, &err);
    if (!m)
        die("model", &err);
    double blas = df_bench_blas_gflops();
    printf("device: %s; model %s, weights %s, cfg %g, %s text encoders; OpenBLAS sgemm: %.1f GFLOPS (%d threads)\n",
           df_vk_device_info_of(dev)->name, argv[optind], df_dtype_name(dtype), cfg,
           keep_text ? "resident" : "released", blas, openblas_get_num_threads());

    double t0 = df_bench_now_s();
    df_generator_t *gen = df_generator_new(m, dev, xfer, dtype, &err);
    if (!gen)
        die("load", &err);
    df_vk_memory_stats st = mem_stats(dev);
    uint64_t all_weights = st.in_use;
    int text_told = keep_text;
    printf("load: %.1f s, all weights %.2f GiB\n", df_bench_now_s() - t0, all_weights / GIB);
    df_generator_keep_text(gen, keep_text);

    /* Warm-up at the smallest size the model takes builds every pipeline,
     * so that a GPU's timings leave out shader compilation (on a CPU driver
     * it costs minutes of UNet and VAE for seconds of compiling). */
    const df_sdxl_config *mc = df_sdxl_config_of(m);
    uint32_t warm = mc->unet.sample_size >= 128 ? 512 : 64;
    df_gen_params p = {.prompt = "a photo of TOK person, portrait, studio lighting, highly detailed",
                       .width = warm, .height = warm, .steps = 1, .guidance = cfg, .sampler = DF_SAMPLER_EULER,
                       .seed = 1, .count = 1};
    if (warm_up) {
        float *lat = malloc(4ull * (warm / 8) * (warm / 8) * 4);
        uint8_t *rgb = malloc(3ull * warm * warm);
        t0 = df_bench_now_s();
        if (!lat || !rgb || df_generate(gen, batch, &p, lat, rgb, NULL, NULL, &err) != DF_OK)
            die("warm-up", &err);
        printf("warm-up %ux%u, 1 step: %.1f s\n", warm, warm, df_bench_now_s() - t0);
        free(lat), free(rgb);
    }

    for (int s = 0; s < nsizes; s++) {
        p.width = sizes[s][0], p.height = sizes[s][1], p.steps = steps, p.seed = 2;
        if (df_generate_check(gen, &p, &err) != DF_OK)
            die("size", &err);
        uint64_t n = 4ull * (p.width / 8) * (p.height / 8);
        float *lat = malloc(n * 4);
        uint8_t *rgb = malloc(3ull * p.width * p.height);
        df_vk_memory_reset_peak_reserved(df_vk_device_memory(dev));
        df_vk_batch_memory_peak_reset(batch);
        double f0 = df_vk_batch_flops(batch);
        t0 = df_bench_now_s();
        if (!lat || !rgb || df_generate(gen, batch, &p, lat, rgb, NULL, NULL, &err) != DF_OK)
            die("generate", &err);
        double total = df_bench_now_s() - t0, flops = df_vk_batch_flops(batch) - f0;
        df_gen_timing t = df_generator_last_timing(gen);
        st = mem_stats(dev);
        if (!text_told && all_weights > st.in_use)
            printf("text encoders: %.2f GiB, loaded for each task's prompts and released after\n",
                   (all_weights - st.in_use) / GIB);
        text_told = 1;
        double per_step = t.denoise / t.steps;
        printf("%ux%u, %d Euler steps: %.3f s = text %.3f + %d x %.3f s/step + VAE %.3f; %.2f TFLOP at %.1f GFLOPS "
               "(OpenBLAS: %.1f s)\n",
               p.width, p.height, steps, total, t.text, t.steps, per_step, t.decode, flops * 1e-12,
               flops / total * 1e-9, flops / (blas * 1e9));
        printf("%ux%u, 30 steps (from the above): %.2f s per image; peak device memory %.2f GiB held, %.2f GiB in "
               "tensors%s\n",
               p.width, p.height, t.text + 30 * per_step + t.decode, st.peak_reserved / GIB,
               df_vk_batch_memory_peak(batch) / GIB, keep_text ? "" : " (text encoders released)");
        fflush(stdout);
        free(lat), free(rgb);
    }
    df_generator_destroy(&gen);
    df_sdxl_destroy(&m);
    df_vk_batch_destroy(&batch);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    df_vk_instance_destroy(&inst);
    return 0;
}
