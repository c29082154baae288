#version 450
// Peak arithmetic: each invocation runs ITERS rounds of 16 independent fma
// chains in registers and writes one value (so nothing is optimised away).
// 2 * 16 * ITERS flops per invocation. For the benchmark's "fraction of peak".
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint ITERS = 1024;

layout(set = 0, binding = 0) buffer OutBuf { float o[]; };

layout(push_constant) uniform Push {
    float a, b;
} p;

void main()
{
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = float(gl_GlobalInvocationID.x + uint(i));
    for (uint it = 0u; it < ITERS; it++)
        for (int i = 0; i < 16; i++)
            x[i] = fma(x[i], p.a, p.b);
    float s = 0.0;
    for (int i = 0; i < 16; i++)
        s += x[i];
    o[gl_GlobalInvocationID.x] = s;
}
