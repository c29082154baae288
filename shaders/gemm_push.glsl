// Push constants shared by every GEMM kernel. Offsets and strides are in
// elements, relative to the bound windows (the host splits large tensors into
// windows that each fit a binding), so 32 bits suffice.
layout(push_constant) uniform GemmPush {
    uint m, n, k;
    uint lda, ldb, ldc;
    uint off_a, off_b, off_c;
    uint stride_a, stride_b, stride_c; // batch strides (gl_WorkGroupID.z)
    float alpha, beta;
    uint off_bias;
} p;
