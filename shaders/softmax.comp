#version 450
// Softmax over rows: y = softmax(scale * x) along the last dimension, and
// its backward pass dx = y * (dy - sum(dy * y)). One invocation per row:
// max, then the sum of exponentials, then the write (no barriers).
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const bool BACKWARD = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X;  // x (fwd) or y (bwd)
layout(set = 0, binding = 1) uniform samplerBuffer DY;
layout(set = 0, binding = 2) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint rows, cols, off_x, off_dy, off_o;
    float scale;
} p;

float fetch(samplerBuffer t, uint e) { return texelFetch(t, int(e >> 2))[e & 3u]; }

void main()
{
    uint r = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (r >= p.rows)
        return;
    uint xb = p.off_x + r * p.cols, ob = p.off_o + r * p.cols;
    if (!BACKWARD) {
        float m = -1.0e30;
        for (uint j = 0u; j < p.cols; j++)
            m = max(m, p.scale * fetch(X, xb + j));
        float l = 0.0;
        for (uint j = 0u; j < p.cols; j++)
            l += exp(p.scale * fetch(X, xb + j) - m);
        float inv = 1.0 / l;
        for (uint j = 0u; j < p.cols; j++)
            o[ob + j] = Y_T(exp(p.scale * fetch(X, xb + j) - m) * inv);
    } else {
        uint db = p.off_dy + r * p.cols;
        float s = 0.0;
        for (uint j = 0u; j < p.cols; j++)
            s += fetch(DY, db + j) * fetch(X, xb + j);
        for (uint j = 0u; j < p.cols; j++)
            o[ob + j] = Y_T(fetch(X, xb + j) * (fetch(DY, db + j) - s));
    }
}
