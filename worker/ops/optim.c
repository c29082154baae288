/*  optim.c - see optim.h. */
#include "optim.h"

#include <math.h>
#include <stdio.h>

#include "bind.h"

typedef struct {
    uint32_t n, off_g, off_p, off_m, off_v;
    float lr, b1, b2, eps, wd, c1, c2, grad_scale;
} optim_push;

#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_optim = {"optim", 4, {DF_VK_BIND_TEXEL, S, S, S}, sizeof(optim_push)};
#undef S

static int run(df_vk_batch_t *batch, int adamw, uint64_t n, optim_push base, df_tensor param, df_tensor grad,
               df_tensor m, df_tensor v, df_error_t *err)
{
    const char *name = adamw ? "adamw" : "sgd";
    if (!n)
        return df_error_set(err, DF_E_INVALID, "%s: no parameters", name);
    if (param.dtype != DF_F32 || (adamw && (m.dtype != DF_F32 || v.dtype != DF_F32)))
        return df_error_set(err, DF_E_UNSUPPORTED, "%s: parameters and optimiser state must be f32", name);
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rg, rs;
    int rc;
    if ((rc = df_bind_rules_texel(dev, grad.dtype, &rg, err)) || (rc = df_bind_rules_storage(dev, DF_F32, &rs, err)))
        return df_error_prefix(err, "%s", name);
    if ((rc = df_bind_check(name, "param", param.ref, n, 4, err)) ||
        (rc = df_bind_check(name, "grad", grad.ref, n, rg.es, err)) ||
        (adamw && (rc = df_bind_check(name, "m", m.ref, n, 4, err))) ||
        (adamw && (rc = df_bind_check(name, "v", v.ref, n, 4, err))))
        return rc;
    uint64_t chunk = df_bind_max_elems(&rg) < df_bind_max_elems(&rs) ? df_bind_max_elems(&rg) : df_bind_max_elems(&rs);
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t k = n - first < chunk ? n - first : chunk;
        optim_push pc = base;
        pc.n = (uint32_t)k;
        df_vk_binding b[4];
        b[0] = df_bind_span(grad.ref, &rg, first, k, 0, &pc.off_g);
        b[1] = df_bind_span(param.ref, &rs, first, k, 1, &pc.off_p);
        b[2] = adamw ? df_bind_span(m.ref, &rs, first, k, 1, &pc.off_m) : b[1];
        b[3] = adamw ? df_bind_span(v.ref, &rs, first, k, 1, &pc.off_v) : b[1];
        uint32_t spec = (uint32_t)adamw;
        char label[48];
        snprintf(label, sizeof label, "%s %llu", name, (unsigned long long)k);
        if ((rc = df_dispatch_1d(batch, &k_optim, &spec, 1, b, 4, &pc, k, 64, label, err)))
            return rc;
    }
    return DF_OK;
}

int df_adamw_step(df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param, df_tensor grad, df_tensor m,
                  df_tensor v, df_error_t *err)
{
    if (d->step == 0)
        return df_error_set(err, DF_E_INVALID, "adamw: steps count from 1");
    if (!(d->beta1 >= 0 && d->beta1 < 1 && d->beta2 >= 0 && d->beta2 < 1 && d->eps > 0 && d->lr >= 0))
        return df_error_set(err, DF_E_INVALID, "adamw: need 0 <= beta < 1, eps > 0, lr >= 0");
    optim_push pc = {.lr = d->lr, .b1 = d->beta1, .b2 = d->beta2, .eps = d->eps, .wd = d->weight_decay,
                     .c1 = (float)(1.0 - pow(d->beta1, (double)d->step)),
                     .c2 = (float)(1.0 - pow(d->beta2, (double)d->step)), .grad_scale = d->grad_scale};
    return run(batch, 1, d->n, pc, param, grad, m, v, err);
}

int df_sgd_step(df_vk_batch_t *batch, uint64_t n, float lr, float weight_decay, float grad_scale, df_tensor param,
                df_tensor grad, df_error_t *err)
{
    optim_push pc = {.lr = lr, .wd = weight_decay, .grad_scale = grad_scale};
    return run(batch, 0, n, pc, param, grad, param, param, err);
}
