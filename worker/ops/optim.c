/*  optim.c - see optim.h. */
#include "optim.h"

#include <math.h>
#include <stdio.h>

#include "adam8.h"
#include "bind.h"

typedef struct {
    uint32_t n, off_g, off_p, off_m, off_v;
    float lr, b1, b2, eps, wd, c1, c2, grad_scale;
} optim_push;

typedef struct {
    uint32_t n, off_g, off_p, off_mq, off_sq, off_ms, off_ss;
    float lr, b1, b2, eps, wd, c1, c2, grad_scale;
} adamw8_push;

#define S DF_VK_BIND_STORAGE
static const df_vk_kernel k_optim = {"optim", 4, {DF_VK_BIND_TEXEL, S, S, S}, sizeof(optim_push)};
static const df_vk_kernel k_adamw8 = {"adamw8", 6, {DF_VK_BIND_TEXEL, S, S, S, S, S}, sizeof(adamw8_push)};
#undef S

static int check_adamw(const df_adamw_desc *d, df_error_t *err)
{
    if (d->step == 0)
        return df_error_set(err, DF_E_INVALID, "adamw: steps count from 1");
    if (!(d->beta1 >= 0 && d->beta1 < 1 && d->beta2 >= 0 && d->beta2 < 1 && d->eps > 0 && d->lr >= 0))
        return df_error_set(err, DF_E_INVALID, "adamw: need 0 <= beta < 1, eps > 0, lr >= 0");
    return DF_OK;
}

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
    int rc = check_adamw(d, err);
    if (rc != DF_OK)
        return rc;
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

int df_adamw8_step(df_vk_batch_t *batch, const df_adamw_desc *d, df_tensor param, df_tensor grad, df_tensor m_codes,
                   df_tensor s_codes, df_tensor m_scale, df_tensor s_scale, df_error_t *err)
{
    int rc = check_adamw(d, err);
    if (rc != DF_OK)
        return rc;
    uint64_t n = d->n, nb = df_adam8_blocks(n);
    if (!n)
        return df_error_set(err, DF_E_INVALID, "adamw8: no parameters");
    if (param.dtype != DF_F32 || m_codes.dtype != DF_U8 || s_codes.dtype != DF_U8 || m_scale.dtype != DF_F32 ||
        s_scale.dtype != DF_F32)
        return df_error_set(err, DF_E_UNSUPPORTED, "adamw8: parameters f32, moments u8 codes with f32 scales");
    if (m_codes.ref.offset % 4 || s_codes.ref.offset % 4)
        return df_error_set(err, DF_E_INVALID, "adamw8: codes must start on a 4-byte boundary");
    df_vk_device_t *dev = df_vk_batch_device(batch);
    df_bind_rules rg, rs, rq;
    if ((rc = df_bind_rules_texel(dev, grad.dtype, &rg, err)) || (rc = df_bind_rules_storage(dev, DF_F32, &rs, err)) ||
        (rc = df_bind_rules_storage(dev, DF_U8, &rq, err)))
        return df_error_prefix(err, "adamw8");
    if ((rc = df_bind_check("adamw8", "param", param.ref, n, 4, err)) ||
        (rc = df_bind_check("adamw8", "grad", grad.ref, n, rg.es, err)) ||
        (rc = df_bind_check("adamw8", "m codes", m_codes.ref, (n + 3) & ~3ull, 1, err)) ||
        (rc = df_bind_check("adamw8", "v codes", s_codes.ref, (n + 3) & ~3ull, 1, err)) ||
        (rc = df_bind_check("adamw8", "m scales", m_scale.ref, nb, 4, err)) ||
        (rc = df_bind_check("adamw8", "v scales", s_scale.ref, nb, 4, err)))
        return rc;
    /* Whole blocks per dispatch, as many as every binding allows. */
    uint64_t chunk = df_bind_max_elems(&rg) < df_bind_max_elems(&rs) ? df_bind_max_elems(&rg) : df_bind_max_elems(&rs);
    chunk = chunk / DF_ADAM8_BLOCK * DF_ADAM8_BLOCK;
    if (!chunk)
        return df_error_set(err, DF_E_RANGE, "adamw8: a block of %d values does not fit a binding", DF_ADAM8_BLOCK);
    adamw8_push base = {.lr = d->lr, .b1 = d->beta1, .b2 = d->beta2, .eps = d->eps, .wd = d->weight_decay,
                        .c1 = (float)(1.0 - pow(d->beta1, (double)d->step)),
                        .c2 = (float)(1.0 - pow(d->beta2, (double)d->step)), .grad_scale = d->grad_scale};
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t k = n - first < chunk ? n - first : chunk, kb = df_adam8_blocks(k);
        adamw8_push pc = base;
        pc.n = (uint32_t)k;
        df_vk_binding b[6] = {
            df_bind_span(grad.ref, &rg, first, k, 0, &pc.off_g),
            df_bind_span(param.ref, &rs, first, k, 1, &pc.off_p),
            df_bind_span(m_codes.ref, &rq, first, (k + 3) & ~3ull, 1, &pc.off_mq),
            df_bind_span(s_codes.ref, &rq, first, (k + 3) & ~3ull, 1, &pc.off_sq),
            df_bind_span(m_scale.ref, &rs, first / DF_ADAM8_BLOCK, kb, 1, &pc.off_ms),
            df_bind_span(s_scale.ref, &rs, first / DF_ADAM8_BLOCK, kb, 1, &pc.off_ss),
        };
        char label[48];
        snprintf(label, sizeof label, "adamw8 %llu", (unsigned long long)k);
        if ((rc = df_dispatch_1d(batch, &k_adamw8, NULL, 0, b, 6, &pc, kb, 64, label, err)))
            return rc;
    }
    return DF_OK;
}
