#version 450
// 8-bit weights to floats: y[r * cols + c] = q[r * cols + c] *
// scale[r * blocks + c / block] (common/quant8.h). The bytes are read as 32-bit words, four to a word, so
// no 8-bit storage feature is needed; bitfieldExtract on an int sign-extends.
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) readonly buffer QBuf { int q[]; };
layout(set = 0, binding = 1) uniform samplerBuffer SCALE;
layout(set = 0, binding = 2) buffer OutBuf { Y_T y[]; };

layout(push_constant) uniform Push {
    uint rows, cols, block, blocks, off_q, off_scale, off_y;
} p;

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (id >= p.rows * p.cols)
        return;
    uint r = id / p.cols, c = id % p.cols;
    uint e = p.off_q + id;
    float v = float(bitfieldExtract(q[e >> 2], int(8u * (e & 3u)), 8));
    uint s = p.off_scale + r * p.blocks + c / p.block;
    y[p.off_y + id] = Y_T(v * texelFetch(SCALE, int(s >> 2))[s & 3u]);
}
