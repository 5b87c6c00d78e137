/* rope.cu — see rope.cuh. Tables: one thread per (position, i < D/2). Rotation: one warp per (token, head);
 * lane l owns the pairs (i, i + D/2) with i ≡ l (mod 32), so the in-place update has no races. */
#include "rope.cuh"

#include "common.cuh"

__global__ void k_rope_tables(float *cos_out, float *sin_out, const float *inv_freq, const int32_t *positions,
                              int64_t n, int64_t D, float scaling) {
    const int64_t half = D / 2, total = n * half;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / half, k = i % half;
        const float angle = __fmul_rn((float)positions[p], inv_freq[k]);
        const float c = __fmul_rn(cosf(angle), scaling), s = __fmul_rn(sinf(angle), scaling);
        cos_out[p * D + k] = cos_out[p * D + k + half] = c;
        sin_out[p * D + k] = sin_out[p * D + k + half] = s;
    }
}

enum { ROPE_WARPS = 4 };

template <typename T>
__global__ void k_qk_norm_rope(T *x, int64_t ld, int64_t n_tokens, int64_t n_heads, int64_t D, const float *norm_w,
                               float eps, bool gemma, const float *cos, const float *sin) {
    const int64_t item = (int64_t)blockIdx.x * ROPE_WARPS + threadIdx.x / 32; /* token * n_heads + head */
    const int lane = threadIdx.x % 32;
    if (item >= n_tokens * n_heads) return; /* whole warps leave together: the shuffles below stay full */
    const int64_t t = item / n_heads, h = item % n_heads, half = D / 2;
    T *v = x + t * ld + h * D;              /* (D) */
    const float *c = cos + t * D, *s = sin + t * D; /* (D) */
    float inv = 1.0f;
    if (norm_w) {
        float ss = 0.0f;
        for (int64_t j = lane; j < D; j += 32) {
            const float a = dk_ld(v + j);
            ss += a * a;
        }
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        inv = 1.0f / sqrtf(ss / (float)D + eps);
    }
    for (int64_t i = lane; i < half; i += 32) {
        float a = dk_ld(v + i), b = dk_ld(v + i + half);
        if (norm_w) {
            a = gemma ? (a * inv) * (1.0f + norm_w[i]) : norm_w[i] * (a * inv);
            b = gemma ? (b * inv) * (1.0f + norm_w[i + half]) : norm_w[i + half] * (b * inv);
        }
        /* __fmul_rn: each product rounded, no FMA, as kernels/cpu/rope.c */
        dk_st(v + i, __fmul_rn(a, c[i]) - __fmul_rn(b, s[i]));
        dk_st(v + i + half, __fmul_rn(b, c[i + half]) + __fmul_rn(a, s[i + half]));
    }
}

extern "C" cudaError_t dk_cuda_rope_tables(float *cos, float *sin, const float *inv_freq, const int32_t *positions,
                                           int64_t n, int64_t D, float scaling, cudaStream_t stream) {
    if (n * (D / 2) == 0) return cudaSuccess;
    const unsigned block = 256;
    k_rope_tables<<<dk_grid_1d((size_t)(n * (D / 2)), block), block, 0, stream>>>(cos, sin, inv_freq, positions, n, D,
                                                                                   scaling);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_qk_norm_rope(void *x, int64_t ld, int64_t T, int64_t n_heads, int64_t D,
                                            const float *norm_w, float eps, bool gemma, const float *cos,
                                            const float *sin, dk_cuda_dtype dtype, cudaStream_t stream) {
    const int64_t items = T * n_heads;
    if (items == 0) return cudaSuccess;
    const int64_t blocks = (items + ROPE_WARPS - 1) / ROPE_WARPS;
    if (blocks > 0x7fffffff || D % 2 != 0) return cudaErrorInvalidValue;
    if (dtype == DK_CUDA_BF16)
        k_qk_norm_rope<<<(unsigned)blocks, ROPE_WARPS * 32, 0, stream>>>((__nv_bfloat16 *)x, ld, T, n_heads, D, norm_w,
                                                                         eps, gemma, cos, sin);
    else
        k_qk_norm_rope<<<(unsigned)blocks, ROPE_WARPS * 32, 0, stream>>>((float *)x, ld, T, n_heads, D, norm_w, eps,
                                                                         gemma, cos, sin);
    return cudaGetLastError();
}
