#version 450
// GEMM for GPUs: C = alpha * op(A) op(B) + beta * C, the portable path for any
// device without cooperative matrices.
//
// Each 16 x 16 workgroup computes a 64 x 64 tile of C. Per step of 16 along K
// it stages a 64 x 16 slab of op(A) and a 16 x 64 slab of op(B) in shared
// memory (loads coalesced along whichever dimension is contiguous in memory,
// converted to f32 once), then every invocation accumulates a 4 x 4 block
// strided by 16 so neighbouring invocations read neighbouring shared words.
// Rows of the slabs are padded by one word against bank conflicts. Values
// outside the matrices are loaded as zeros, so any M, N, K works.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;
layout(constant_id = 0) const bool TRANS_A = false;
layout(constant_id = 1) const bool TRANS_B = false;
layout(constant_id = 2) const uint BIAS_MODE = 0; // 0 none, 1 per column, 2 per row
layout(constant_id = 3) const uint ACT = 0;       // act_by_code

#ifdef A_F16
#define A_T float16_t
#else
#define A_T float
#endif
#ifdef B_F16
#define B_T float16_t
#else
#define B_T float
#endif
#ifdef C_F16
#define C_T float16_t
#else
#define C_T float
#endif

layout(set = 0, binding = 0) readonly buffer ABuf { A_T a[]; };
layout(set = 0, binding = 1) readonly buffer BBuf { B_T b[]; };
layout(set = 0, binding = 2) buffer CBuf { C_T c[]; };
layout(set = 0, binding = 3) uniform samplerBuffer BIAS;

#include "gemm_push.glsl"
#include "activations.glsl"

// Epilogue: v = alpha * acc + beta * C, then + bias (per column of C, or per
// row), then an activation (act_by_code). The host asks for it on the last
// split of K only.
float epilogue(float v, uint row, uint col)
{
    if (BIAS_MODE == 1u)
        v += texelFetch(BIAS, int((p.off_bias + col) >> 2))[(p.off_bias + col) & 3u];
    else if (BIAS_MODE == 2u)
        v += texelFetch(BIAS, int((p.off_bias + row) >> 2))[(p.off_bias + row) & 3u];
    return act_by_code(ACT, v);
}

const uint BM = 64u, BN = 64u, BK = 16u;
shared float As[BK][BM + 1u];
shared float Bs[BK][BN + 1u];

void main()
{
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    const uint tid = ty * 16u + tx;
    const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN, bz = gl_WorkGroupID.z;
    const uint abase = p.off_a + bz * p.stride_a;
    const uint bbase = p.off_b + bz * p.stride_b;

    float acc[4][4];
    for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < 4u; j++)
            acc[i][j] = 0.0;

    for (uint k0 = 0u; k0 < p.k; k0 += BK) {
        for (uint l = 0u; l < 4u; l++) {
            uint e = tid + 256u * l;
            // op(A) slab: 64 rows x 16 k.
            uint mm = TRANS_A ? e % BM : e / BK;
            uint ka = TRANS_A ? e / BM : e % BK;
            uint gm = m0 + mm, gk = k0 + ka;
            float va = 0.0;
            if (gm < p.m && gk < p.k)
                va = float(a[abase + (TRANS_A ? gk * p.lda + gm : gm * p.lda + gk)]);
            As[ka][mm] = va;
            // op(B) slab: 16 k x 64 columns.
            uint nn = TRANS_B ? e / BK : e % BN;
            uint kb = TRANS_B ? e % BK : e / BN;
            uint gn = n0 + nn;
            gk = k0 + kb;
            float vb = 0.0;
            if (gn < p.n && gk < p.k)
                vb = float(b[bbase + (TRANS_B ? gn * p.ldb + gk : gk * p.ldb + gn)]);
            Bs[kb][nn] = vb;
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float av[4], bv[4];
            for (uint i = 0u; i < 4u; i++)
                av[i] = As[kk][ty + 16u * i];
            for (uint j = 0u; j < 4u; j++)
                bv[j] = Bs[kk][tx + 16u * j];
            for (uint i = 0u; i < 4u; i++)
                for (uint j = 0u; j < 4u; j++)
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier();
    }

    const uint cbase = p.off_c + bz * p.stride_c;
    for (uint i = 0u; i < 4u; i++) {
        uint row = m0 + ty + 16u * i;
        if (row >= p.m)
            break;
        for (uint j = 0u; j < 4u; j++) {
            uint col = n0 + tx + 16u * j;
            if (col >= p.n)
                break;
            uint e = cbase + row * p.ldc + col;
            float v = p.alpha * acc[i][j];
            if (p.beta != 0.0)
                v += p.beta * float(c[e]);
            c[e] = C_T(epilogue(v, row, col));
        }
    }
}
