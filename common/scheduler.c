/*  scheduler.c - see scheduler.h. The formulas follow diffusers v0.25's
 *  schedulers with SDXL's scheduler config; tests/golden checks them against
 *  the schedulers themselves. */
#include "scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[DF_SAMPLER_COUNT] = {"euler", "euler_karras", "euler_a", "dpmpp_2m", "dpmpp_2m_karras",
                                                      "ddim"};

const char *df_sampler_name(df_sampler s) { return (unsigned)s < DF_SAMPLER_COUNT ? k_names[s] : "?"; }

int df_sampler_parse(const char *name)
{
    for (int i = 0; name && i < DF_SAMPLER_COUNT; i++)
        if (strcmp(name, k_names[i]) == 0)
            return i;
    return -1;
}

struct _df_scheduler_t {
    df_sampler kind;
    int steps;
    uint64_t n;
    double timesteps[DF_SCHED_MAX_STEPS];
    double sigmas[DF_SCHED_MAX_STEPS + 1];
    double init_sigma;
    float *prev_x0; /* DPM++ 2M: the previous step's data prediction */
    int taken;      /* steps taken so far */
    double acp[DF_SCHED_TRAIN_STEPS];       /* alphas_cumprod */
    double sig[DF_SCHED_TRAIN_STEPS];       /* sqrt((1 - acp) / acp), rounded to f32 as the reference's table is */
    double log_sig[DF_SCHED_TRAIN_STEPS];
};

/*  alphas_cumprod of the scaled-linear schedule: betas are the squares of a
 *  linear ramp between sqrt(0.00085) and sqrt(0.012). */
static void acp_fill(double *acp)
{
    double lo = sqrt(0.00085), hi = sqrt(0.012), prod = 1;
    for (int t = 0; t < DF_SCHED_TRAIN_STEPS; t++) {
        double b = lo + (hi - lo) * t / (DF_SCHED_TRAIN_STEPS - 1);
        prod *= 1 - b * b;
        acp[t] = prod;
    }
}

double df_scheduler_alpha_cumprod(int t)
{
    double acp[DF_SCHED_TRAIN_STEPS];
    acp_fill(acp);
    return t < 0 ? 1.0 : acp[t < DF_SCHED_TRAIN_STEPS ? t : DF_SCHED_TRAIN_STEPS - 1];
}

/*  The sigma table interpolated at a fractional timestep (numpy's interp). */
static double sigma_interp(const df_scheduler_t *s, double t)
{
    if (t <= 0)
        return s->sig[0];
    if (t >= DF_SCHED_TRAIN_STEPS - 1)
        return s->sig[DF_SCHED_TRAIN_STEPS - 1];
    int lo = (int)floor(t);
    double w = t - lo;
    return s->sig[lo] * (1 - w) + s->sig[lo + 1] * w;
}

/*  The fractional timestep whose log-sigma is log(sigma), by linear
 *  interpolation in log-sigma between table entries. */
static double sigma_to_t(const df_scheduler_t *s, double sigma)
{
    double ls = log(fmax(sigma, 1e-10));
    int low = 0;
    for (int t = 0; t < DF_SCHED_TRAIN_STEPS; t++)
        if (ls - s->log_sig[t] >= 0)
            low = t;
    if (low > DF_SCHED_TRAIN_STEPS - 2)
        low = DF_SCHED_TRAIN_STEPS - 2;
    double lv = s->log_sig[low], hv = s->log_sig[low + 1];
    double w = (lv - ls) / (lv - hv);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * low + w * (low + 1);
}

/*  Karras et al.'s schedule between sigma_max and sigma_min, rho 7. */
static void karras(double smax, double smin, int n, double *out)
{
    double a = pow(smax, 1 / 7.0), b = pow(smin, 1 / 7.0);
    for (int i = 0; i < n; i++) {
        double ramp = n > 1 ? (double)i / (n - 1) : 0;
        out[i] = pow(a + ramp * (b - a), 7.0);
    }
}

df_scheduler_t *df_scheduler_new(df_sampler kind, int steps, uint64_t n, df_error_t *err)
{
    if ((unsigned)kind >= DF_SAMPLER_COUNT) {
        df_error_set(err, DF_E_INVALID, "sampler %d is unknown", (int)kind);
        return NULL;
    }
    if (steps < 1 || steps > DF_SCHED_MAX_STEPS) {
        df_error_set(err, DF_E_RANGE, "steps %d: between 1 and %d", steps, DF_SCHED_MAX_STEPS);
        return NULL;
    }
    df_scheduler_t *s = calloc(1, sizeof *s);
    if (!s) {
        df_error_set(err, DF_E_NOMEM, "scheduler: out of memory");
        return NULL;
    }
    s->kind = kind;
    s->steps = steps;
    s->n = n;
    const int T = DF_SCHED_TRAIN_STEPS;
    acp_fill(s->acp);
    for (int t = 0; t < T; t++) {
        s->sig[t] = (float)sqrt((1 - s->acp[t]) / s->acp[t]);
        s->log_sig[t] = log(s->sig[t]);
    }
    switch (kind) {
    case DF_SAMPLER_EULER:
    case DF_SAMPLER_EULER_A:
    case DF_SAMPLER_EULER_KARRAS: {
        int ratio = T / steps;
        for (int i = 0; i < steps; i++) {
            s->timesteps[i] = (double)((steps - 1 - i) * ratio + 1);
            s->sigmas[i] = sigma_interp(s, s->timesteps[i]);
        }
        if (kind == DF_SAMPLER_EULER_KARRAS) {
            double smax = s->sigmas[0], smin = s->sigmas[steps - 1];
            karras(smax, smin, steps, s->sigmas);
            for (int i = 0; i < steps; i++)
                s->timesteps[i] = sigma_to_t(s, s->sigmas[i]);
        }
        for (int i = 0; i < steps; i++)
            s->sigmas[i] = (float)s->sigmas[i];
        s->sigmas[steps] = 0;
        s->init_sigma = sqrt(s->sigmas[0] * s->sigmas[0] + 1); /* "leading" spacing */
        break;
    }
    case DF_SAMPLER_DPMPP_2M:
    case DF_SAMPLER_DPMPP_2M_KARRAS: {
        if (kind == DF_SAMPLER_DPMPP_2M_KARRAS) {
            karras(s->sig[T - 1], s->sig[0], steps, s->sigmas);
            for (int i = 0; i < steps; i++)
                s->timesteps[i] = round(sigma_to_t(s, s->sigmas[i]));
            s->sigmas[steps] = s->sigmas[steps - 1];
        } else {
            /* This solver spaces n + 1 points and drops the last. */
            int ratio = T / (steps + 1);
            for (int i = 0; i < steps; i++) {
                s->timesteps[i] = (double)((steps - i) * ratio + 1);
                s->sigmas[i] = sigma_interp(s, s->timesteps[i]);
            }
            s->sigmas[steps] = s->sig[0];
        }
        for (int i = 0; i <= steps; i++)
            s->sigmas[i] = (float)s->sigmas[i];
        s->init_sigma = 1;
        s->prev_x0 = malloc((n ? n : 1) * sizeof *s->prev_x0);
        if (!s->prev_x0) {
            free(s);
            df_error_set(err, DF_E_NOMEM, "scheduler: out of memory");
            return NULL;
        }
        break;
    }
    case DF_SAMPLER_DDIM: {
        int ratio = T / steps;
        for (int i = 0; i < steps; i++) {
            int t = (steps - 1 - i) * ratio + 1;
            s->timesteps[i] = t;
            s->sigmas[i] = s->sig[t];
        }
        s->sigmas[steps] = 0;
        s->init_sigma = 1;
        break;
    }
    default: break;
    }
    return s;
}

void df_scheduler_destroy(df_scheduler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->prev_x0);
    free(*self_p);
    *self_p = NULL;
}

int df_scheduler_steps(const df_scheduler_t *self) { return self->steps; }
float df_scheduler_init_noise_sigma(const df_scheduler_t *self) { return (float)self->init_sigma; }
float df_scheduler_timestep(const df_scheduler_t *self, int i) { return (float)self->timesteps[i]; }
float df_scheduler_sigma(const df_scheduler_t *self, int i) { return (float)self->sigmas[i]; }
int df_scheduler_needs_noise(const df_scheduler_t *self) { return self->kind == DF_SAMPLER_EULER_A; }

float df_scheduler_input_scale(const df_scheduler_t *self, int i)
{
    switch (self->kind) {
    case DF_SAMPLER_EULER:
    case DF_SAMPLER_EULER_KARRAS:
    case DF_SAMPLER_EULER_A: return (float)(1 / sqrt(self->sigmas[i] * self->sigmas[i] + 1));
    default: return 1; /* DPM-Solver and DDIM work on the unscaled sample */
    }
}

/*  DPM-Solver's view of a sigma: alpha_t, sigma_t and lambda = log(alpha / sigma). */
static void vp(double sigma, double *alpha, double *sig, double *lambda)
{
    *alpha = 1 / sqrt(sigma * sigma + 1);
    *sig = sigma * *alpha;
    *lambda = log(*alpha) - log(*sig);
}

int df_scheduler_step(df_scheduler_t *self, int i, const float *eps, float *x, const float *noise, df_error_t *err)
{
    if (i != self->taken || i >= self->steps)
        return df_error_set(err, DF_E_STATE, "scheduler: step %d out of order (next is %d of %d)", i, self->taken,
                            self->steps);
    const uint64_t n = self->n;
    const double s = self->sigmas[i], s_next = self->sigmas[i + 1];
    switch (self->kind) {
    case DF_SAMPLER_EULER:
    case DF_SAMPLER_EULER_KARRAS:
        /* x0 = x - sigma eps, so the ODE's derivative is eps. */
        for (uint64_t k = 0; k < n; k++)
            x[k] = (float)(x[k] + eps[k] * (s_next - s));
        break;
    case DF_SAMPLER_EULER_A: {
        if (!noise)
            return df_error_set(err, DF_E_INVALID, "scheduler: euler_a needs noise for each step");
        double up = sqrt(s_next * s_next * (s * s - s_next * s_next) / (s * s));
        double down = sqrt(s_next * s_next - up * up);
        for (uint64_t k = 0; k < n; k++)
            x[k] = (float)(x[k] + eps[k] * (down - s) + noise[k] * up);
        break;
    }
    case DF_SAMPLER_DPMPP_2M:
    case DF_SAMPLER_DPMPP_2M_KARRAS: {
        double a_t, s_t, l_t, a_0, s_0, l_0;
        vp(s_next, &a_t, &s_t, &l_t);
        vp(s, &a_0, &s_0, &l_0);
        double h = l_t - l_0, em = exp(-h) - 1;
        /* First order on the first step and, for short schedules, the last. */
        int first = i == 0 || (i == self->steps - 1 && self->steps < 15);
        double r0 = 1;
        if (!first) {
            double a_1, s_1, l_1;
            vp(self->sigmas[i - 1], &a_1, &s_1, &l_1);
            r0 = (l_0 - l_1) / h;
        }
        for (uint64_t k = 0; k < n; k++) {
            double x0 = (x[k] - s_0 * eps[k]) / a_0;
            double v = s_t / s_0 * x[k] - a_t * em * x0;
            if (!first)
                v -= 0.5 * a_t * em * (x0 - self->prev_x0[k]) / r0;
            self->prev_x0[k] = (float)x0;
            x[k] = (float)v;
        }
        break;
    }
    case DF_SAMPLER_DDIM: {
        int t = (int)self->timesteps[i], prev = t - DF_SCHED_TRAIN_STEPS / self->steps;
        /* Past the start the reference uses alphas_cumprod[0] (set_alpha_to_one false). */
        double a = self->acp[t], ap = self->acp[prev >= 0 ? prev : 0];
        for (uint64_t k = 0; k < n; k++) {
            double x0 = (x[k] - sqrt(1 - a) * eps[k]) / sqrt(a);
            x[k] = (float)(sqrt(ap) * x0 + sqrt(1 - ap) * eps[k]);
        }
        break;
    }
    default: return df_error_set(err, DF_E_INVALID, "scheduler: unknown sampler");
    }
    self->taken++;
    return DF_OK;
}

void df_scheduler_denoised(const df_scheduler_t *self, int i, const float *x, const float *eps, float *out)
{
    const uint64_t n = self->n;
    const double s = self->sigmas[i];
    double a = 1, sig = s;
    switch (self->kind) {
    case DF_SAMPLER_DPMPP_2M:
    case DF_SAMPLER_DPMPP_2M_KARRAS: { /* the unscaled (variance-preserving) sample */
        double lambda;
        vp(s, &a, &sig, &lambda);
        break;
    }
    case DF_SAMPLER_DDIM: {
        double acp = self->acp[(int)self->timesteps[i]];
        a = sqrt(acp), sig = sqrt(1 - acp);
        break;
    }
    default: break; /* Euler's sample is x0 + sigma * noise */
    }
    for (uint64_t k = 0; k < n; k++)
        out[k] = (float)((x[k] - sig * eps[k]) / a);
}
