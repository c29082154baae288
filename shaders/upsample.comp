#version 450
// Nearest-neighbour 2x upsampling of planes (NCHW: one plane per (n, c)).
//   forward:  y[p, h, w] = x[p, h / 2, w / 2]           (y is 2H x 2W)
//   backward: dx[p, h, w] = sum of the 2 x 2 dy block at (2h, 2w)
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;
layout(constant_id = 0) const bool BACKWARD = false;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X; // x (forward) or dy (backward)
layout(set = 0, binding = 1) buffer OutBuf { Y_T o[]; };

layout(push_constant) uniform Push {
    uint planes, h, w; // the small side: x's (forward) or dx's (backward) height and width
    uint off_x, off_o;
} p;

float fetch(uint e) { return texelFetch(X, int(e >> 2))[e & 3u]; }

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    uint small = p.h * p.w;
    if (!BACKWARD) {
        if (id >= p.planes * small * 4u)
            return;
        uint plane = id / (small * 4u), rest = id % (small * 4u);
        uint yy = rest / (2u * p.w), xx = rest % (2u * p.w);
        o[p.off_o + id] = Y_T(fetch(p.off_x + plane * small + (yy / 2u) * p.w + xx / 2u));
    } else {
        if (id >= p.planes * small)
            return;
        uint plane = id / small, rest = id % small;
        uint yy = rest / p.w, xx = rest % p.w;
        uint b = p.off_x + plane * small * 4u + (2u * yy) * (2u * p.w) + 2u * xx;
        o[p.off_o + id] = Y_T(fetch(b) + fetch(b + 1u) + fetch(b + 2u * p.w) + fetch(b + 2u * p.w + 1u));
    }
}
