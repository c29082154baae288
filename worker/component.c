/*  component.c - see component.h. */
#include "component.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "lora.h"
#include "prompt.h"
#include "safetensors.h"
#include "sdxl_model.h"
#include "vk_instance.h"

typedef struct {
    const char *what, *model, *in, *out, *prompt, *tokenizer, *lora;
    df_dtype dtype;
    int device;
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: dreamfleet-worker component text|unet|unet-lora-grad|vae-encode|vae-decode --model PATH\n"
               "         --out OUT.safetensors [--in IN.safetensors] [--prompt TEXT] [--lora FILE] [--dtype f32|f16]\n"
               "         [--tokenizer DIR] [--device N]\n"
               "  text:       --prompt TEXT -> prompt_embeds, pooled_prompt_embeds, input_ids_1, input_ids_2\n"
               "  unet:       sample, timestep, encoder_hidden_states, text_embeds, time_ids -> noise_pred\n"
               "  unet-lora-grad: --lora FILE; the unet inputs and target -> loss (mean squared error), noise_pred\n"
               "              and the gradient of every LoRA tensor under the file's own names\n"
               "  vae-encode: image (in [-1, 1]) -> mean, logvar\n"
               "  vae-decode: latents (divided by the scaling factor) -> image\n"
               "  --dtype: how weights are stored on the device (default f32; f16 halves the memory)\n"
               "  --tokenizer: for single-file checkpoints, which carry none\n");
}

/*  An input tensor as host floats with its shape, checked against the
 *  expected rank. */
typedef struct {
    float *v;
    int ndim;
    int64_t shape[DF_ST_MAX_DIMS];
    uint64_t n;
} host_tensor;

static int read_input(const df_safetensors_t *st, const char *name, int ndim, host_tensor *out, df_error_t *err)
{
    memset(out, 0, sizeof *out);
    const df_st_tensor *t = df_safetensors_find(st, name);
    if (!t)
        return df_error_set(err, DF_E_NOT_FOUND, "%s: no tensor '%s'", df_safetensors_path(st), name);
    if (t->ndim != ndim)
        return df_error_set(err, DF_E_FORMAT, "%s: '%s' has %d dimensions, expected %d", df_safetensors_path(st), name,
                            t->ndim, ndim);
    out->v = malloc((t->nelem ? t->nelem : 1) * sizeof *out->v);
    if (!out->v)
        return df_error_set(err, DF_E_NOMEM, "out of memory for '%s'", name);
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->n = t->nelem;
    if (t->dtype == DF_I64 || t->dtype == DF_I32) { /* integer timesteps, as schedulers often hand them */
        for (uint64_t i = 0; i < t->nelem; i++) {
            int64_t x = 0;
            if (t->dtype == DF_I64)
                memcpy(&x, (const uint8_t *)t->data + 8 * i, 8);
            else {
                int32_t y;
                memcpy(&y, (const uint8_t *)t->data + 4 * i, 4);
                x = y;
            }
            out->v[i] = (float)x;
        }
        return DF_OK;
    }
    return df_st_tensor_to_f32(t, out->v, err);
}

/*  Device buffers made here, freed together at the end. */
typedef struct {
    df_vk_buffer_t *b[16];
    int n;
} buffers;

static df_tensor upload(buffers *bs, df_vk_device_t *dev, df_vk_transfer_t *xfer, const float *v, uint64_t n,
                        int *rc, df_error_t *err)
{
    df_tensor t = {{NULL, 0}, DF_F32};
    if (*rc != DF_OK)
        return t;
    df_vk_buffer_t *b = df_vk_buffer_new(dev, (n ? n : 1) * 4, err);
    if (!b) {
        *rc = err->code;
        return t;
    }
    bs->b[bs->n++] = b;
    if (v && (*rc = df_vk_upload(xfer, b, 0, v, n * 4, err)) != DF_OK)
        return t;
    t.ref.buf = b;
    return t;
}

/*  Output tensors downloaded from the device, then written in one file. */
typedef struct {
    df_st_writer_t *w;
    void **data; /* host copies the writer points into, freed after the write */
    int n, cap;
} outputs;

/*  Keeps p (malloc'd, may be NULL) until the outputs are written; p itself
 *  when it could be kept, NULL (and p freed) otherwise. */
static void *keep(outputs *o, void *p)
{
    if (p && o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        void **grown = realloc(o->data, (size_t)cap * sizeof *grown);
        if (!grown) {
            free(p);
            return NULL;
        }
        o->data = grown, o->cap = cap;
    }
    if (p)
        o->data[o->n++] = p;
    return p;
}

static int add_output(outputs *o, df_vk_transfer_t *xfer, const char *name, df_tensor t, int ndim, const int64_t *shape,
                      df_error_t *err)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t)shape[i];
    float *v = keep(o, malloc(n * sizeof *v));
    if (!v)
        return df_error_set(err, DF_E_NOMEM, "out of memory for '%s'", name);
    int rc = df_vk_download(xfer, t.ref.buf, t.ref.offset, v, n * 4, err);
    return rc == DF_OK ? df_st_writer_add(o->w, name, DF_F32, ndim, shape, v, err) : rc;
}

static int add_ids(outputs *o, const char *name, const int32_t *ids, uint32_t count, df_error_t *err)
{
    /* diffusers' input ids are int64. */
    int64_t *v = keep(o, malloc(count * sizeof *v)), shape[2] = {1, count};
    if (!v)
        return df_error_set(err, DF_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < count; i++)
        v[i] = ids[i];
    return df_st_writer_add(o->w, name, DF_I64, 2, shape, v, err);
}

/*  unet-lora-grad: the training loss's gradient for every factor of a LoRA
 *  (attached unmerged), written under the file's own tensor names. */
static int lora_grad(const options *opt, df_sdxl_t *model, df_vk_device_t *dev, df_vk_transfer_t *xfer,
                     df_vk_batch_t *batch, const df_safetensors_t *in, outputs *out, df_error_t *err)
{
    const df_sdxl_config *cfg = df_sdxl_config_of(model);
    host_tensor h[6] = {{0}};
    buffers bs = {.n = 0};
    static const char *const names[6] = {"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids",
                                         "target"};
    static const int ranks[6] = {4, 1, 3, 2, 2, 4};
    df_unet_t *unet = df_sdxl_load_unet(model, dev, xfer, opt->dtype, err);
    int rc = unet ? DF_OK : err->code;
    if (rc == DF_OK && !opt->lora)
        rc = df_error_set(err, DF_E_INVALID, "unet-lora-grad needs --lora FILE");
    for (int i = 0; i < 6 && rc == DF_OK; i++)
        rc = read_input(in, names[i], ranks[i], &h[i], err);
    int64_t B = h[0].shape[0];
    if (rc == DF_OK && (h[1].shape[0] != B || h[2].shape[0] != B || h[3].shape[0] != B || h[4].shape[0] != B ||
                        h[4].shape[1] != 6 || h[2].shape[2] != cfg->unet.cross_attention_dim ||
                        memcmp(h[5].shape, h[0].shape, 4 * sizeof h[0].shape[0]) != 0))
        rc = df_error_set(err, DF_E_FORMAT, "%s: batch sizes differ, time_ids is not [B, 6], the context is not %d "
                          "wide, or target is not shaped like sample", opt->in, cfg->unet.cross_attention_dim);
    df_lora_targets t = {unet, NULL, NULL, 1};
    if (rc == DF_OK)
        rc = df_lora_attach(opt->lora, 1.0f, cfg, &t, batch, xfer, NULL, err);
    df_weights_t *ws = unet ? df_unet_weights(unet) : NULL;
    if (rc == DF_OK && df_weights_adapter_count(ws) == 0)
        rc = df_error_set(err, DF_E_FORMAT, "%s: no UNet modules (text-encoder LoRAs have no UNet gradient)", opt->lora);
    if (rc == DF_OK)
        rc = df_weights_adapter_grads(ws, batch, err);
    df_tensor sample = upload(&bs, dev, xfer, h[0].v, h[0].n, &rc, err);
    df_tensor context = upload(&bs, dev, xfer, h[2].v, h[2].n, &rc, err);
    df_tensor text = upload(&bs, dev, xfer, h[3].v, h[3].n, &rc, err);
    df_tensor target = upload(&bs, dev, xfer, h[5].v, h[5].n, &rc, err);
    df_tensor pred = upload(&bs, dev, xfer, NULL, h[0].n, &rc, err);
    df_tensor losses = upload(&bs, dev, xfer, NULL, 1 + (uint64_t)B, &rc, err);
    if (rc == DF_OK) {
        df_fmap s = {sample, (uint32_t)B, (uint32_t)h[0].shape[1], (uint32_t)h[0].shape[2], (uint32_t)h[0].shape[3]};
        df_unet_inputs ui = {.sample = &s, .timesteps = h[1].v, .context = context,
                             .context_len = (uint32_t)h[2].shape[1], .text_embeds = text, .time_ids = h[4].v};
        df_tensor none = {{NULL, 0}, DF_F32};
        rc = df_unet_lora_grad(unet, batch, &ui, target, none, 1.0f, pred, losses, err);
    }
    /* Outputs: loss [1], noise_pred, then a gradient per factor, shaped as
     * the file has it. */
    size_t nad = ws ? df_weights_adapter_count(ws) : 0;
    df_safetensors_t *lf = rc == DF_OK ? df_safetensors_open(opt->lora, err) : NULL;
    if (rc == DF_OK && !lf)
        rc = err->code;
    int64_t one = 1;
    if (rc == DF_OK)
        rc = add_output(out, xfer, "loss", losses, 1, &one, err);
    if (rc == DF_OK)
        rc = add_output(out, xfer, "noise_pred", pred, 4, h[0].shape, err);
    for (size_t i = 0; rc == DF_OK && i < nad; i++) {
        const df_weight_adapter *a = df_weights_adapter_at(ws, i, NULL);
        for (int f = 0; rc == DF_OK && f < 2; f++) {
            const df_st_tensor *ft = df_safetensors_find(lf, f ? a->up_key : a->down_key);
            if (!ft)
                rc = df_error_set(err, DF_E_STATE, "%s: a factor went missing", opt->lora);
            else
                rc = add_output(out, xfer, ft->name, f ? a->grad_up : a->grad_down, ft->ndim, ft->shape, err);
        }
    }
    df_safetensors_destroy(&lf);
    for (int i = 0; i < 6; i++)
        free(h[i].v);
    for (int i = 0; i < bs.n; i++)
        df_vk_buffer_destroy(&bs.b[i]);
    df_unet_destroy(&unet);
    return rc;
}

static int run(const options *opt, df_vk_device_t *dev, df_vk_transfer_t *xfer, df_vk_batch_t *batch,
               df_error_t *err)
{
    df_sdxl_t *model = df_sdxl_open(opt->model, opt->tokenizer, err);
    if (!model)
        return err->code;
    const df_sdxl_config *cfg = df_sdxl_config_of(model);
    df_safetensors_t *in = NULL;
    if (strcmp(opt->what, "text") != 0) {
        if (!opt->in) {
            df_sdxl_destroy(&model);
            return df_error_set(err, DF_E_INVALID, "component %s needs --in FILE.safetensors", opt->what);
        }
        if (!(in = df_safetensors_open(opt->in, err))) {
            df_sdxl_destroy(&model);
            return err->code;
        }
    }
    buffers bs = {.n = 0};
    outputs out = {.w = df_st_writer_new(), .n = 0};
    host_tensor h[5];
    memset(h, 0, sizeof h);
    int rc = out.w ? DF_OK : df_error_set(err, DF_E_NOMEM, "out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == DF_OK && strcmp(opt->what, "text") == 0) {
        if (!opt->prompt)
            rc = df_error_set(err, DF_E_INVALID, "component text needs --prompt TEXT");
        df_prompt_encoder_t *pe = rc == DF_OK ? df_prompt_encoder_new(model, dev, xfer, opt->dtype, err) : NULL;
        uint32_t chunks = 0;
        if (rc == DF_OK && !pe)
            rc = err->code;
        if (rc == DF_OK)
            rc = df_prompt_tokens(pe, opt->prompt, &chunks, err);
        uint32_t D = pe ? df_prompt_context_dim(pe) : 0, P = pe ? df_prompt_pooled_dim(pe) : 0;
        df_tensor ctx = upload(&bs, dev, xfer, NULL, (uint64_t)chunks * 77 * D, &rc, err);
        df_tensor pooled = upload(&bs, dev, xfer, NULL, P, &rc, err);
        int32_t *ids1 = NULL, *ids2 = NULL;
        if (rc == DF_OK)
            rc = df_prompt_encode(pe, batch, opt->prompt, ctx, pooled, &ids1, &ids2, &chunks, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
        int64_t cs[3] = {1, (int64_t)chunks * 77, D}, ps[2] = {1, P};
        if (rc == DF_OK)
            rc = add_output(&out, xfer, "prompt_embeds", ctx, 3, cs, err);
        if (rc == DF_OK)
            rc = add_output(&out, xfer, "pooled_prompt_embeds", pooled, 2, ps, err);
        if (rc == DF_OK)
            rc = add_ids(&out, "input_ids_1", ids1, chunks * 77, err);
        if (rc == DF_OK)
            rc = add_ids(&out, "input_ids_2", ids2, chunks * 77, err);
        free(ids1);
        free(ids2);
        df_prompt_encoder_destroy(&pe);
    } else if (rc == DF_OK && strcmp(opt->what, "unet") == 0) {
        df_unet_t *unet = df_sdxl_load_unet(model, dev, xfer, opt->dtype, err);
        if (!unet)
            rc = err->code;
        static const char *const names[5] = {"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"};
        static const int ranks[5] = {4, 1, 3, 2, 2};
        for (int i = 0; i < 5 && rc == DF_OK; i++)
            rc = read_input(in, names[i], ranks[i], &h[i], err);
        int64_t B = h[0].shape[0];
        if (rc == DF_OK && (h[1].shape[0] != B || h[2].shape[0] != B || h[3].shape[0] != B || h[4].shape[0] != B ||
                            h[4].shape[1] != 6 || h[2].shape[2] != cfg->unet.cross_attention_dim))
            rc = df_error_set(err, DF_E_FORMAT,
                              "%s: batch sizes differ, time_ids is not [B, 6], or the context is not %d wide", opt->in,
                              cfg->unet.cross_attention_dim);
        df_tensor sample = upload(&bs, dev, xfer, h[0].v, h[0].n, &rc, err);
        df_tensor context = upload(&bs, dev, xfer, h[2].v, h[2].n, &rc, err);
        df_tensor text = upload(&bs, dev, xfer, h[3].v, h[3].n, &rc, err);
        df_tensor noise = upload(&bs, dev, xfer, NULL, h[0].n, &rc, err);
        if (rc == DF_OK) {
            df_fmap s = {sample, (uint32_t)B, (uint32_t)h[0].shape[1], (uint32_t)h[0].shape[2], (uint32_t)h[0].shape[3]};
            df_unet_inputs ui = {.sample = &s, .timesteps = h[1].v, .context = context,
                                 .context_len = (uint32_t)h[2].shape[1], .text_embeds = text, .time_ids = h[4].v};
            rc = df_unet_forward(unet, batch, &ui, noise, err);
        }
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
        if (rc == DF_OK)
            rc = add_output(&out, xfer, "noise_pred", noise, 4, h[0].shape, err);
        df_unet_destroy(&unet);
    } else if (rc == DF_OK && strcmp(opt->what, "unet-lora-grad") == 0) {
        rc = lora_grad(opt, model, dev, xfer, batch, in, &out, err);
    } else if (rc == DF_OK && (strcmp(opt->what, "vae-encode") == 0 || strcmp(opt->what, "vae-decode") == 0)) {
        int enc = opt->what[4] == 'e';
        df_vae_t *vae = df_sdxl_load_vae(model, dev, xfer, opt->dtype, err);
        if (!vae)
            rc = err->code;
        if (rc == DF_OK)
            rc = read_input(in, enc ? "image" : "latents", 4, &h[0], err);
        uint32_t f = vae ? df_vae_factor(vae) : 1, z = (uint32_t)cfg->vae.latent_channels;
        int64_t os[4] = {h[0].shape[0], enc ? (int64_t)z : (int64_t)cfg->vae.out_channels, enc ? h[0].shape[2] / f : h[0].shape[2] * f,
                         enc ? h[0].shape[3] / f : h[0].shape[3] * f};
        uint64_t on = (uint64_t)os[0] * os[1] * os[2] * os[3];
        df_tensor x = upload(&bs, dev, xfer, h[0].v, h[0].n, &rc, err);
        df_tensor y1 = upload(&bs, dev, xfer, NULL, on, &rc, err);
        df_tensor y2 = enc ? upload(&bs, dev, xfer, NULL, on, &rc, err) : y1;
        df_fmap m = {x, (uint32_t)h[0].shape[0], (uint32_t)h[0].shape[1], (uint32_t)h[0].shape[2],
                     (uint32_t)h[0].shape[3]};
        if (rc == DF_OK)
            rc = enc ? df_vae_encode(vae, batch, &m, y1, y2, err) : df_vae_decode(vae, batch, &m, y1, err);
        if (rc == DF_OK)
            rc = df_vk_batch_submit(batch, err);
        if (rc == DF_OK)
            rc = add_output(&out, xfer, enc ? "mean" : "image", y1, 4, os, err);
        if (rc == DF_OK && enc)
            rc = add_output(&out, xfer, "logvar", y2, 4, os, err);
        df_vae_destroy(&vae);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == DF_OK) {
        df_st_writer_set_metadata(out.w, "dreamfleet.component", opt->what, err);
        rc = df_st_writer_write(out.w, opt->out, err);
    }
    if (rc == DF_OK)
        fprintf(stderr, "%s: %s in %.2f s -> %s\n", opt->model, opt->what,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9, opt->out);
    for (int i = 0; i < 5; i++)
        free(h[i].v);
    for (int i = 0; i < out.n; i++)
        free(out.data[i]);
    free(out.data);
    df_st_writer_destroy(&out.w);
    for (int i = 0; i < bs.n; i++)
        df_vk_buffer_destroy(&bs.b[i]);
    df_safetensors_destroy(&in);
    df_sdxl_destroy(&model);
    return rc;
}

int df_component_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"in", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},   {"prompt", required_argument, NULL, 'p'},
        {"dtype", required_argument, NULL, 't'}, {"tokenizer", required_argument, NULL, 'k'},
        {"device", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
        {"lora", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    options opt = {.dtype = DF_F32, .device = -1};
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    opt.what = argv[1];
    if (strcmp(opt.what, "text") && strcmp(opt.what, "unet") && strcmp(opt.what, "unet-lora-grad") &&
        strcmp(opt.what, "vae-encode") && strcmp(opt.what, "vae-decode")) {
        fprintf(stderr, "dreamfleet-worker: unknown component '%s' (text, unet, unet-lora-grad, vae-encode, "
                        "vae-decode)\n", opt.what);
        return 2;
    }
    optind = 0;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': opt.model = optarg; break;
        case 'i': opt.in = optarg; break;
        case 'o': opt.out = optarg; break;
        case 'p': opt.prompt = optarg; break;
        case 'k': opt.tokenizer = optarg; break;
        case 't':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16")) {
                fprintf(stderr, "dreamfleet-worker: --dtype wants f32 or f16\n");
                return 2;
            }
            opt.dtype = optarg[1] == '3' ? DF_F32 : DF_F16;
            break;
        case 'd': opt.device = atoi(optarg); break;
        case 'l': opt.lora = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!opt.model || !opt.out || optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    df_error_t err;
    df_error_clear(&err);
    df_vk_instance_opts iopts = {.validation = DF_VK_VALIDATION_OFF};
    df_vk_instance_t *inst = df_vk_instance_new(&iopts, &err);
    uint32_t index = 0;
    df_vk_device_t *dev = NULL;
    df_vk_transfer_t *xfer = NULL;
    df_vk_batch_t *batch = NULL;
    if (inst && df_vk_instance_choose(inst, opt.device, &index, &err) == DF_OK &&
        (dev = df_vk_device_new(inst, index, NULL, &err)) && (xfer = df_vk_transfer_new(dev, NULL, &err)))
        batch = df_vk_batch_new(dev, 0, &err);
    int rc = batch ? run(&opt, dev, xfer, batch, &err) : err.code ? err.code : DF_E_VULKAN;
    if (rc != DF_OK)
        fprintf(stderr, "dreamfleet-worker component %s: %s\n", opt.what, err.msg);
    df_vk_batch_destroy(&batch);
    df_vk_transfer_destroy(&xfer);
    df_vk_device_destroy(&dev);
    df_vk_instance_destroy(&inst);
    return rc == DF_OK ? 0 : rc == DF_E_INVALID ? 2 : 1;
}
