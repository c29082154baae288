#version 450
// GEMM for CPU Vulkan drivers (lavapipe): C = alpha * op(A) op(B) + beta * C.
//
// llvmpipe runs 8 invocations as the lanes of one SIMD register. Loads from
// storage buffers with computed indices are scalarised lane by lane, while
// texel fetches take a vectorised path, and barriers are coroutine switches.
// So: A and B are read through uniform texel buffers (rgba32f or rgba16f
// views; the sampler converts f16 for free), no shared memory, no barriers,
// and each invocation keeps a ROWS x (4 CQ) block of C in registers and reuses
// every fetched value ROWS or 4 CQ times.
//
// Where an operand's contiguous dimension is 4-aligned (VEC_A / VEC_B) one
// texel fetch brings four useful values; otherwise each element is fetched on
// its own (texel e/4, component e%4), which is correct for any layout.
//
// Edges: invocations on the last rows/columns clamp their indices to the last
// valid row/column, compute duplicates and drop them at the store, so the
// inner loops have no bounds checks and every fetch stays in the view.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint ROWS = 8; // rows of C per invocation: 1, 2, 4, 8 or 16
layout(constant_id = 3) const bool TRANS_A = false;
layout(constant_id = 4) const bool TRANS_B = false;
layout(constant_id = 5) const bool VEC_A = false; // A's contiguous dim, lda, offsets: multiples of 4
layout(constant_id = 6) const bool VEC_B = false;
layout(constant_id = 7) const uint CQ = 1; // columns of C per invocation, in groups of 4: 1 or 2
layout(constant_id = 8) const uint BIAS_MODE = 0; // 0 none, 1 per column, 2 per row
layout(constant_id = 9) const uint ACT = 0;       // act_by_code

#ifdef C_F16
#define C_T float16_t
#else
#define C_T float
#endif

layout(set = 0, binding = 0) uniform samplerBuffer A;
layout(set = 0, binding = 1) uniform samplerBuffer B;
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

float fetch_a(uint e) { return texelFetch(A, int(e >> 2))[e & 3u]; }
float fetch_b(uint e) { return texelFetch(B, int(e >> 2))[e & 3u]; }

// Element index of op(A)[row][kk] and op(B)[kk][col].
uint index_a(uint base, uint row, uint kk) { return TRANS_A ? base + kk * p.lda + row : base + row * p.lda + kk; }
uint index_b(uint base, uint kk, uint col) { return TRANS_B ? base + col * p.ldb + kk : base + kk * p.ldb + col; }

void main()
{
    const uint col0 = gl_GlobalInvocationID.x * 4u * CQ;
    const uint row0 = gl_GlobalInvocationID.y * ROWS;
    if (col0 >= p.n || row0 >= p.m)
        return;
    const uint bz = gl_GlobalInvocationID.z;
    const uint abase = p.off_a + bz * p.stride_a;
    const uint bbase = p.off_b + bz * p.stride_b;
    const uint last_row = p.m - 1u, last_col = p.n - 1u;

    vec4 acc[ROWS * CQ];
    for (uint r = 0u; r < ROWS * CQ; r++)
        acc[r] = vec4(0.0);

    const uint k4 = p.k & ~3u;
    for (uint kk = 0u; kk < k4; kk += 4u) {
        // b[i * CQ + q] = op(B)[kk + i][col0 + 4q .. col0 + 4q + 3]
        vec4 b[4u * CQ];
        for (uint q = 0u; q < CQ; q++) {
            uint cq = col0 + 4u * q;
            uvec4 cols = min(uvec4(cq) + uvec4(0u, 1u, 2u, 3u), uvec4(last_col));
            if (!TRANS_B && VEC_B) {
                // cq is a multiple of 4; clamped to the last aligned group, its texel is in the view.
                uint e = bbase + kk * p.ldb + min(cq, last_col & ~3u);
                for (uint i = 0u; i < 4u; i++)
                    b[i * CQ + q] = texelFetch(B, int((e + i * p.ldb) >> 2));
            } else if (TRANS_B && VEC_B) {
                vec4 t0 = texelFetch(B, int((bbase + cols.x * p.ldb + kk) >> 2));
                vec4 t1 = texelFetch(B, int((bbase + cols.y * p.ldb + kk) >> 2));
                vec4 t2 = texelFetch(B, int((bbase + cols.z * p.ldb + kk) >> 2));
                vec4 t3 = texelFetch(B, int((bbase + cols.w * p.ldb + kk) >> 2));
                b[0u * CQ + q] = vec4(t0.x, t1.x, t2.x, t3.x);
                b[1u * CQ + q] = vec4(t0.y, t1.y, t2.y, t3.y);
                b[2u * CQ + q] = vec4(t0.z, t1.z, t2.z, t3.z);
                b[3u * CQ + q] = vec4(t0.w, t1.w, t2.w, t3.w);
            } else {
                for (uint i = 0u; i < 4u; i++)
                    b[i * CQ + q] = vec4(fetch_b(index_b(bbase, kk + i, cols.x)), fetch_b(index_b(bbase, kk + i, cols.y)),
                                         fetch_b(index_b(bbase, kk + i, cols.z)), fetch_b(index_b(bbase, kk + i, cols.w)));
            }
        }
        if (!TRANS_A) {
            // A row-major: four consecutive k of one row per fetch.
            for (uint r = 0u; r < ROWS; r++) {
                uint row = min(row0 + r, last_row);
                vec4 a;
                if (VEC_A)
                    a = texelFetch(A, int((abase + row * p.lda + kk) >> 2));
                else
                    a = vec4(fetch_a(index_a(abase, row, kk)), fetch_a(index_a(abase, row, kk + 1u)),
                             fetch_a(index_a(abase, row, kk + 2u)), fetch_a(index_a(abase, row, kk + 3u)));
                for (uint q = 0u; q < CQ; q++) {
                    vec4 t = fma(vec4(a.x), b[q], acc[r * CQ + q]);
                    t = fma(vec4(a.y), b[CQ + q], t);
                    t = fma(vec4(a.z), b[2u * CQ + q], t);
                    acc[r * CQ + q] = fma(vec4(a.w), b[3u * CQ + q], t);
                }
            }
        } else {
            // A stored K x M: four consecutive rows of one k per fetch.
            for (uint i = 0u; i < 4u; i++) {
                if (VEC_A) {
                    for (uint g = 0u; g < ROWS / 4u; g++) {
                        // Clamped to the last aligned group: rows past M are dropped anyway.
                        uint rg = min(row0 + 4u * g, last_row & ~3u);
                        vec4 a = texelFetch(A, int((abase + (kk + i) * p.lda + rg) >> 2));
                        for (uint q = 0u; q < CQ; q++) {
                            acc[(4u * g + 0u) * CQ + q] += a.x * b[i * CQ + q];
                            acc[(4u * g + 1u) * CQ + q] += a.y * b[i * CQ + q];
                            acc[(4u * g + 2u) * CQ + q] += a.z * b[i * CQ + q];
                            acc[(4u * g + 3u) * CQ + q] += a.w * b[i * CQ + q];
                        }
                    }
                } else {
                    for (uint r = 0u; r < ROWS; r++) {
                        float a = fetch_a(index_a(abase, min(row0 + r, last_row), kk + i));
                        for (uint q = 0u; q < CQ; q++)
                            acc[r * CQ + q] += a * b[i * CQ + q];
                    }
                }
            }
        }
    }
    for (uint kk = k4; kk < p.k; kk++) {
        vec4 b[CQ];
        for (uint q = 0u; q < CQ; q++) {
            uvec4 cols = min(uvec4(col0 + 4u * q) + uvec4(0u, 1u, 2u, 3u), uvec4(last_col));
            b[q] = vec4(fetch_b(index_b(bbase, kk, cols.x)), fetch_b(index_b(bbase, kk, cols.y)),
                        fetch_b(index_b(bbase, kk, cols.z)), fetch_b(index_b(bbase, kk, cols.w)));
        }
        for (uint r = 0u; r < ROWS; r++) {
            float a = fetch_a(index_a(abase, min(row0 + r, last_row), kk));
            for (uint q = 0u; q < CQ; q++)
                acc[r * CQ + q] += a * b[q];
        }
    }

    const uint cbase = p.off_c + bz * p.stride_c;
    for (uint r = 0u; r < ROWS; r++) {
        uint row = row0 + r;
        if (row > last_row)
            break;
        for (uint j = 0u; j < 4u * CQ; j++) {
            uint col = col0 + j;
            if (col > last_col)
                break;
            uint e = cbase + row * p.ldc + col;
            float v = p.alpha * acc[r * CQ + j / 4u][j % 4u];
            // beta == 0 must not read C: it may hold NaN or garbage (BLAS semantics).
            if (p.beta != 0.0)
                v += p.beta * float(c[e]);
            c[e] = C_T(epilogue(v, row, col));
        }
    }
}
