/*  latent_preview.c - see latent_preview.h. */
#include "latent_preview.h"

#include <math.h>
#include <stdlib.h>

#include "png_write.h"

/*  Per latent channel, its contribution to R, G and B in [-1, 1]. */
static const float k_factors[4][3] = {
    {0.3920f, 0.4054f, 0.4549f},
    {-0.2634f, -0.0196f, 0.0653f},
    {0.0568f, 0.1687f, -0.0755f},
    {-0.3112f, -0.2359f, -0.2076f},
};

void df_latent_preview_rgb(const float *latents, uint32_t h, uint32_t w, uint8_t *rgb)
{
    const uint64_t plane = (uint64_t)h * w;
    for (uint64_t k = 0; k < plane; k++)
        for (int c = 0; c < 3; c++) {
            float v = 0;
            for (int l = 0; l < 4; l++)
                v += latents[l * plane + k] * k_factors[l][c];
            v = (v + 1) * 0.5f; /* [-1, 1] to [0, 1] */
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            rgb[k * 3 + c] = (uint8_t)lrintf(v * 255);
        }
}

int df_latent_preview_png(const float *latents, uint32_t h, uint32_t w, uint8_t **out, size_t *len, df_error_t *err)
{
    uint8_t *rgb = malloc((size_t)h * w * 3);
    if (!rgb)
        return df_error_set(err, DF_E_NOMEM, "preview: out of memory");
    df_latent_preview_rgb(latents, h, w, rgb);
    int rc = df_png_encode(rgb, w, h, NULL, 0, out, len, err);
    free(rgb);
    return rc;
}
