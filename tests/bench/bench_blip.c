/*  bench_blip.c - a BLIP caption at the model's own sizes: the image
 *  encoder, one decoder step, and a whole greedy caption, next to OpenBLAS
 *  sgemm measured in the same run (how long the same floating-point work
 *  would take on the CPU at sgemm's speed).
 *
 *    bench_blip MODEL_DIR [--device N] [--dtype f16|f32] [--tokens N]
 *
 *  MODEL_DIR is a BLIP folder (config.json, model.safetensors, vocab.txt):
 *  for measurements, one of the base model's sizes with random weights
 *  (tests/golden/make_blip_golden.py --base writes one). The photo is
 *  random: the figures depend on shapes only. Not a test: figures go to
 *  docs/performance.md.
 */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "blip.h"
#include "log.h"
#include "vk_device.h"
#include "vk_instance.h"

static void die(const char *what, const df_error_t *err)
{
    fprintf(stderr, "bench_blip: %s: %s\n", what, err->msg);
    exit(1);
}

/*  The floating-point operations of the image encoder (matrix products and
 *  attention) and of one decoder pass over n tokens (the image's cross keys
 *  and values aside: computed once a caption). */
static double vision_flops(const df_blip_config *c)
{
    const double D = c->vision.hidden, inter = c->vision.intermediate, ps = c->vision.patch_size,
                 G = c->vision.image_size / c->vision.patch_size, R = G * G + 1;
    return 2 * (G * G) * (3 * ps * ps) * D + c->vision.layers * (2 * R * D * (3 * D + D + 2 * inter) + 4 * R * R * D);
}

static double decoder_flops(const df_blip_config *c, double n)
{
    const double D = c->text.hidden, inter = c->text.intermediate, G = c->vision.image_size / c->vision.patch_size,
                 R = G * G + 1;
    return c->text.layers * (2 * n * D * (4 * D + 2 * D + 2 * inter) + 4 * n * n * D + 4 * n * R * D) +
           2 * D * D + 2 * D * c->text.vocab;
}

int main(int argc, char **argv)
{
    static const struct option o[] = {{"device", required_argument, NULL, 'd'}, {"dtype", required_argument, NULL, 't'},
                                      {"tokens", required_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
    int device = -1, c;
    uint32_t tokens = 20;
    df_dtype dtype = DF_F16;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        switch (c) {
        case 'd': device = atoi(optarg); break;
        case 't': dtype = strcmp(optarg, "f32") == 0 ? DF_F32 : DF_F16; break;
        case 'n': tokens = (uint32_t)atoi(optarg); break;
        default: fprintf(stderr, "usage: bench_blip MODEL_DIR [--device N] [--dtype f16|f32] [--tokens N]\n"); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: bench_blip MODEL_DIR [--device N] [--dtype f16|f32] [--tokens N]\n");
        return 2;
    }
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
    double t0 = df_bench_now_s();
    df_blip_t *m = df_blip_open(argv[optind], dev, xfer, dtype, &err);
    if (!m)
        die("model", &err);
    const double load = df_bench_now_s() - t0;
    const df_blip_config *cfg = df_blip_config_of(m);
    const double blas = df_bench_blas_gflops();
    printf("device: %s; BLIP %s (ViT %dx%d at %d px, decoder %dx%d), weights %s, loaded in %.1f s; OpenBLAS sgemm "
           "4096x640x640: %.1f GFLOPS (%d threads)\n",
           df_vk_device_info_of(dev)->name, argv[optind], cfg->vision.layers, cfg->vision.hidden,
           cfg->vision.image_size, cfg->text.layers, cfg->text.hidden, df_dtype_name(dtype), load, blas,
           openblas_get_num_threads());
    /* A random photo of a phone's shape. */
    df_image photo = {.width = 1024, .height = 768};
    photo.rgb = malloc((size_t)photo.width * photo.height * 3);
    for (size_t k = 0; photo.rgb && k < (size_t)photo.width * photo.height * 3; k++)
        photo.rgb[k] = (uint8_t)((k * 2654435761u) >> 24);
    const uint32_t G = (uint32_t)(cfg->vision.image_size / cfg->vision.patch_size);
    float *pixels = NULL, *embeds = malloc((size_t)(G * G + 1) * cfg->vision.hidden * sizeof *embeds);
    float *logits = malloc((size_t)tokens * cfg->text.vocab * sizeof *logits);
    if (!photo.rgb || !embeds || !logits)
        return 1;
    t0 = df_bench_now_s();
    if (df_blip_pixels(m, &photo, &pixels, &err) != DF_OK)
        die("pixels", &err);
    const double prep = df_bench_now_s() - t0;
    double best_enc = 1e30, best_dec = 1e30;
    for (int r = 0; r < 2; r++) { /* the first run builds pipelines */
        t0 = df_bench_now_s();
        if (df_blip_encode_image(m, batch, pixels, embeds, &err) != DF_OK)
            die("image encoder", &err);
        const double enc = df_bench_now_s() - t0;
        best_enc = enc < best_enc ? enc : best_enc;
        int32_t ids[512];
        for (uint32_t i = 0; i < tokens && i < 512; i++)
            ids[i] = i ? (int32_t)(1000 + i) : cfg->text.bos;
        t0 = df_bench_now_s();
        if (df_blip_decoder_logits(m, batch, embeds, ids, tokens, logits, &err) != DF_OK)
            die("decoder", &err);
        const double dec = df_bench_now_s() - t0;
        best_dec = dec < best_dec ? dec : best_dec;
    }
    t0 = df_bench_now_s();
    char *text = NULL;
    uint32_t n = 0;
    const df_blip_caption_opts co = {.max_length = tokens};
    if (df_blip_caption(m, batch, &photo, &co, &text, NULL, &n, &err) != DF_OK)
        die("caption", &err);
    const double caption = df_bench_now_s() - t0;
    const double vf = vision_flops(cfg), df = decoder_flops(cfg, tokens);
    printf("  %-34s %8.3f s\n", "preprocessing (PIL bicubic)", prep);
    printf("  %-34s %8.3f s  %6.1f GFLOPS   (OpenBLAS at its speed: %.3f s)\n", "image encoder", best_enc,
           vf / best_enc * 1e-9, vf / (blas * 1e9));
    printf("  %-34s %8.3f s  %6.1f GFLOPS   (OpenBLAS at its speed: %.3f s)\n", "decoder pass, all tokens", best_dec,
           df / best_dec * 1e-9, df / (blas * 1e9));
    printf("  %-34s %8.3f s  (%u tokens, greedy, one pass a token)\n", "whole caption (photo to text)", caption, n);
    free(text), free(pixels), free(embeds), free(logits), free(photo.rgb);
    df_blip_destroy(&m);
    df_vk_batch_destroy(&batch);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    df_vk_instance_destroy(&inst);
    return 0;
}
