/*  vae_tiled.c - see vae_tiled.h. */
#include "vae_tiled.h"

#include <stdlib.h>
#include <string.h>

/*  Tile starts along one axis of `size` input pixels: as few tiles as
 *  overlap by at least `overlap`, spread evenly so every overlap is about the
 *  same (and the last tile ends flush with the far edge). */
static uint32_t tile_starts(uint32_t size, uint32_t tile, uint32_t overlap, uint32_t *starts, uint32_t cap)
{
    if (size <= tile) {
        starts[0] = 0;
        return 1;
    }
    uint32_t step = tile - overlap, n = (size - overlap + step - 1) / step;
    if (n > cap)
        n = cap;
    for (uint32_t i = 0; i < n; i++)
        starts[i] = (uint32_t)((uint64_t)i * (size - tile) / (n - 1));
    return n;
}

/*  Weight of output pixel u of a tile of length len along an axis: 1 inside,
 *  a linear ramp over `ramp` pixels at each side that meets a neighbour. */
static float ramp_weight(uint32_t u, uint32_t len, uint32_t ramp, int left_neighbour, int right_neighbour)
{
    float w = 1.0f, x = (float)u + 0.5f;
    if (left_neighbour && x < (float)ramp)
        w = x / (float)ramp;
    if (right_neighbour && (float)len - x < (float)ramp) {
        float r = ((float)len - x) / (float)ramp;
        w = r < w ? r : w;
    }
    return w;
}

typedef int (*tile_run)(void *ctx, const df_fmap *in, df_tensor *outs, df_error_t *err);

/*  Runs `run` over tiles of the input (n x cin x H x W, host) and blends its
 *  nout outputs (n x cout x H*num/den x W*num/den each, host). */
static int tiled(df_vk_batch_t *batch, df_vk_transfer_t *xfer, tile_run run, void *ctx, const float *in, uint32_t n,
                 uint32_t cin, uint32_t H, uint32_t W, uint32_t tile, uint32_t overlap, uint32_t num, uint32_t den,
                 uint32_t cout, int nout, float **outs, df_error_t *err)
{
    uint32_t ys[256], xs[256];
    uint32_t ny = tile_starts(H, tile, overlap, ys, 256), nx = tile_starts(W, tile, overlap, xs, 256);
    uint32_t th = H < tile ? H : tile, tw = W < tile ? W : tile;
    uint32_t OH = H * num / den, OW = W * num / den, oth = th * num / den, otw = tw * num / den;
    uint32_t ramp = overlap * num / den;
    uint64_t in_tile = (uint64_t)n * cin * th * tw, out_tile = (uint64_t)n * cout * oth * otw;
    float *tin = malloc(in_tile * sizeof *tin), *tout = malloc(out_tile * sizeof *tout);
    float *wsum = calloc((uint64_t)OH * OW, sizeof *wsum), *wt = malloc((uint64_t)oth * otw * sizeof *wt);
    df_vk_buffer_t *bin = df_vk_buffer_new(df_vk_batch_device(batch), in_tile * 4, err), *bout[2] = {NULL, NULL};
    int rc = tin && tout && wsum && wt ? DF_OK : df_error_set(err, DF_E_NOMEM, "vae tiles: out of host memory");
    if (rc == DF_OK && !bin)
        rc = err->code;
    for (int o = 0; o < nout && rc == DF_OK; o++) {
        memset(outs[o], 0, (uint64_t)n * cout * OH * OW * sizeof *outs[o]);
        if (!(bout[o] = df_vk_buffer_new(df_vk_batch_device(batch), out_tile * 4, err)))
            rc = err->code;
    }
    for (uint32_t ty = 0; ty < ny && rc == DF_OK; ty++)
        for (uint32_t tx = 0; tx < nx && rc == DF_OK; tx++) {
            uint32_t y0 = ys[ty], x0 = xs[tx];
            for (uint64_t pl = 0; pl < (uint64_t)n * cin; pl++)
                for (uint32_t y = 0; y < th; y++)
                    memcpy(tin + (pl * th + y) * tw, in + (pl * H + y0 + y) * W + x0, tw * sizeof *tin);
            rc = df_vk_upload(xfer, bin, 0, tin, in_tile * 4, err);
            df_fmap m = {df_tensor_at(bin, 0, DF_F32), n, cin, th, tw};
            df_tensor o[2] = {df_tensor_at(bout[0], 0, DF_F32), df_tensor_at(nout > 1 ? bout[1] : bout[0], 0, DF_F32)};
            if (rc == DF_OK)
                rc = run(ctx, &m, o, err);
            for (uint32_t y = 0; y < oth; y++)
                for (uint32_t x = 0; x < otw; x++)
                    wt[y * otw + x] = ramp_weight(y, oth, ramp, ty > 0, ty + 1 < ny) *
                                      ramp_weight(x, otw, ramp, tx > 0, tx + 1 < nx);
            uint32_t oy0 = y0 * num / den, ox0 = x0 * num / den;
            for (uint32_t y = 0; y < oth && rc == DF_OK; y++)
                for (uint32_t x = 0; x < otw; x++)
                    wsum[(uint64_t)(oy0 + y) * OW + ox0 + x] += wt[y * otw + x];
            for (int k = 0; k < nout && rc == DF_OK; k++) {
                rc = df_vk_download(xfer, bout[k], 0, tout, out_tile * 4, err);
                for (uint64_t pl = 0; rc == DF_OK && pl < (uint64_t)n * cout; pl++)
                    for (uint32_t y = 0; y < oth; y++)
                        for (uint32_t x = 0; x < otw; x++)
                            outs[k][(pl * OH + oy0 + y) * OW + ox0 + x] +=
                                wt[y * otw + x] * tout[(pl * oth + y) * otw + x];
            }
        }
    for (int k = 0; k < nout && rc == DF_OK; k++)
        for (uint64_t pl = 0; pl < (uint64_t)n * cout; pl++)
            for (uint64_t i = 0; i < (uint64_t)OH * OW; i++)
                outs[k][pl * OH * OW + i] /= wsum[i];
    free(tin), free(tout), free(wsum), free(wt);
    df_vk_buffer_destroy(&bin);
    df_vk_buffer_destroy(&bout[0]);
    df_vk_buffer_destroy(&bout[1]);
    return rc;
}

typedef struct {
    df_vae_t *vae;
    df_vk_batch_t *batch;
} vae_ctx;

static int run_decode_b(void *vctx, const df_fmap *in, df_tensor *outs, df_error_t *err)
{
    vae_ctx *c = vctx;
    return df_vae_decode(c->vae, c->batch, in, outs[0], err);
}

static int run_encode_b(void *vctx, const df_fmap *in, df_tensor *outs, df_error_t *err)
{
    vae_ctx *c = vctx;
    return df_vae_encode(c->vae, c->batch, in, outs[0], outs[1], err);
}

static void tiling_defaults(const df_vae_tiling *t, uint32_t *tile, uint32_t *overlap)
{
    *tile = t && t->tile ? t->tile : 72;
    *overlap = t && t->overlap ? t->overlap : 16;
    if (*overlap >= *tile)
        *overlap = *tile / 4;
}

int df_vae_decode_tiled(df_vae_t *vae, df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_vae_tiling *tiling,
                        const float *latents, uint32_t n, uint32_t h, uint32_t w, float *image, df_error_t *err)
{
    const df_vae_config *c = df_vae_config_of(vae);
    uint32_t tile, overlap, f = df_vae_factor(vae);
    tiling_defaults(tiling, &tile, &overlap);
    vae_ctx ctx = {vae, batch};
    return tiled(batch, xfer, run_decode_b, &ctx, latents, n, (uint32_t)c->latent_channels, h, w, tile, overlap, f, 1,
                 (uint32_t)c->out_channels, 1, &image, err);
}

int df_vae_encode_tiled(df_vae_t *vae, df_vk_batch_t *batch, df_vk_transfer_t *xfer, const df_vae_tiling *tiling,
                        const float *image, uint32_t n, uint32_t H, uint32_t W, float *mean, float *logvar,
                        df_error_t *err)
{
    const df_vae_config *c = df_vae_config_of(vae);
    uint32_t tile, overlap, f = df_vae_factor(vae);
    tiling_defaults(tiling, &tile, &overlap);
    if (H % f || W % f)
        return df_error_set(err, DF_E_INVALID, "vae encode: %ux%u is not a multiple of %u", W, H, f);
    vae_ctx ctx = {vae, batch};
    float *outs[2] = {mean, logvar};
    /* Tiles are laid out in image pixels: the latent tile times the factor. */
    return tiled(batch, xfer, run_encode_b, &ctx, image, n, (uint32_t)c->in_channels, H, W, tile * f, overlap * f, 1, f,
                 (uint32_t)c->latent_channels, 2, outs, err);
}
