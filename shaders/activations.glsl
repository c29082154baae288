// Activation functions and their derivatives, written so every input gives a
// finite answer: tanh and sigmoid through exp(-|x|) (the textbook forms give
// inf/inf for large |x|), erf through a Chebyshev fit of erfc with fractional
// error below 1.2e-7 everywhere.

const float SQRT_2_OVER_PI = 0.7978845608028654;
const float GELU_TANH_C = 0.044715;
const float INV_SQRT2 = 0.7071067811865476;
const float INV_SQRT_2PI = 0.3989422804014327;
const float QUICK_GELU_K = 1.702;

float act_sigmoid(float x)
{
    float e = exp(-abs(x));
    return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

float act_tanh(float x)
{
    float e = exp(-2.0 * abs(x));
    float t = (1.0 - e) / (1.0 + e);
    return x >= 0.0 ? t : -t;
}

// erfc(z) for z >= 0 (Numerical Recipes' erfcc coefficients).
float act_erfc_pos(float z)
{
    float t = 1.0 / (1.0 + 0.5 * z);
    float p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
              t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

float act_erf(float x)
{
    float r = 1.0 - act_erfc_pos(abs(x));
    return x >= 0.0 ? r : -r;
}

float act_silu(float x) { return x * act_sigmoid(x); }
float act_quick_gelu(float x) { return x * act_sigmoid(QUICK_GELU_K * x); }
float act_gelu_erf(float x) { return 0.5 * x * (1.0 + act_erf(x * INV_SQRT2)); }
float act_gelu_tanh(float x)
{
    return 0.5 * x * (1.0 + act_tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x)));
}

// d/dx of each.
float act_silu_grad(float x)
{
    float s = act_sigmoid(x);
    return s + x * s * (1.0 - s);
}

float act_quick_gelu_grad(float x)
{
    float s = act_sigmoid(QUICK_GELU_K * x);
    return s + QUICK_GELU_K * x * s * (1.0 - s);
}

float act_gelu_erf_grad(float x)
{
    return 0.5 * (1.0 + act_erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

float act_gelu_tanh_grad(float x)
{
    float u = SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x);
    float t = act_tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x);
}

// An activation by its df_elt_op code (worker/ops/eltwise.h), for kernels
// that apply one in their epilogue: 0 (copy) is the identity.
const uint ACT_NONE = 0u, ACT_SILU = 4u, ACT_GELU_TANH = 5u, ACT_GELU_ERF = 6u, ACT_QUICK_GELU = 7u;

float act_by_code(uint code, float x)
{
    switch (code) {
    case ACT_SILU: return act_silu(x);
    case ACT_GELU_TANH: return act_gelu_tanh(x);
    case ACT_GELU_ERF: return act_gelu_erf(x);
    case ACT_QUICK_GELU: return act_quick_gelu(x);
    }
    return x;
}
