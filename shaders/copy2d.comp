#version 450
// Strided 2-D copy with dtype conversion: y[r * ld_y + j] = x[r * ld_x + j]
// for r < rows, j < width. Concatenation and slicing along channels (NCHW:
// rows = N, width = C_part * H * W; [T, C]: rows = T, width = C_part) and
// their backward passes are all this copy. With transpose set the
// destination is transposed: y[j * ld_y + r] (conv2d weight packing).
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x = 64) in;

#ifdef Y_F16
#define Y_T float16_t
#else
#define Y_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer X;
layout(set = 0, binding = 1) buffer OutBuf { Y_T y[]; };

layout(push_constant) uniform Push {
    uint rows, width, ld_x, ld_y, off_x, off_y;
    uint transpose;
} p;

void main()
{
    uint id = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (id >= p.rows * p.width)
        return;
    uint r = id / p.width, j = id % p.width;
    uint e = p.off_x + r * p.ld_x + j;
    uint o = p.transpose != 0u ? j * p.ld_y + r : r * p.ld_y + j;
    y[p.off_y + o] = Y_T(texelFetch(X, int(e >> 2))[e & 3u]);
}
