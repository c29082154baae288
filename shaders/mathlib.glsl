// Accurate sin, cos and log(1 - x) in f32. Vulkan only promises 2^-11
// absolute error for sin/cos on [-pi, pi] (nothing outside), and 2^-21
// absolute for log near 1, too coarse for timestep embeddings of t up to
// 1000 and for Gaussian noise meant to match across devices. These use
// Cody-Waite reduction by pi/2 and minimax-style Taylor polynomials on
// [-pi/4, pi/4] (error below 1e-7), and an atanh series for log1p.

const float ML_2_OVER_PI = 0.63661977236758134;
// pi/2 in three parts; the first has 8 significant bits, so k * ML_PIO2_1 is
// exact for |k| < 2^16 (|x| up to ~1e5).
const float ML_PIO2_1 = 1.5703125;
const float ML_PIO2_2 = 4.837512969970703125e-4;
const float ML_PIO2_3 = 7.54978995489188216e-8;

float ml_sin_poly(float x)
{
    float x2 = x * x;
    return x + x * x2 * (-1.6666667163e-1 + x2 * (8.3333337680e-3 + x2 * (-1.9841270114e-4 + x2 * 2.7557314297e-6)));
}

float ml_cos_poly(float x)
{
    float x2 = x * x;
    return 1.0 + x2 * (-0.5 + x2 * (4.1666667908e-2 + x2 * (-1.3888889225e-3 + x2 * (2.4801587642e-5 + x2 * -2.7557314297e-7))));
}

// sin and cos of x (|x| up to ~1e5 keeps the reduction exact enough).
vec2 ml_sincos(float x)
{
    float k = floor(x * ML_2_OVER_PI + 0.5);
    float r = ((x - k * ML_PIO2_1) - k * ML_PIO2_2) - k * ML_PIO2_3;
    float s = ml_sin_poly(r), c = ml_cos_poly(r);
    int q = int(k) & 3;
    if (q == 0)
        return vec2(s, c);
    if (q == 1)
        return vec2(c, -s);
    if (q == 2)
        return vec2(-s, -c);
    return vec2(-c, s);
}

// log(1 - x) for x in [0, 1): an atanh series where x is small, log() elsewhere.
float ml_log1m(float x)
{
    if (x > 0.25)
        return log(1.0 - x);
    float z = x / (2.0 - x); // log(1 - x) = -2 atanh(z), z <= 1/7
    float z2 = z * z;
    return -2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (1.0 / 5.0 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 * (1.0 / 11.0))))));
}
