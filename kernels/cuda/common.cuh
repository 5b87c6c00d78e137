/* common.cuh — device helpers every .cu file of kernels/cuda shares: bf16/fp32 loads and stores that widen
 * to fp32 (arithmetic is fp32 unless an op says otherwise), block-wide sums and maximum, and grid sizing.
 * Not a public header: the host sees only the launchers declared in each op's .cuh. */
#ifndef DK_CUDA_COMMON_CUH
#define DK_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

__device__ __forceinline__ float dk_ld(const float *p) { return *p; }
__device__ __forceinline__ float dk_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void dk_st(float *p, float v) { *p = v; }
/* round to nearest even, as torch's .to(bfloat16) and kernels/dtype_convert.h */
__device__ __forceinline__ void dk_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* op(v) over the block (blockDim.x a multiple of 32, at most 1024) by a fixed tree (xor shuffles in each warp,
 * then across the warps' results), so the result is bitwise repeatable. Every thread gets it. `shared` holds
 * 32 T; two __syncthreads: safe to call repeatedly with the same buffer. `identity` fills the missing warps. */
template <typename T, typename Op> __device__ __forceinline__ T dk_block_reduce(T v, T *shared, T identity, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads(); /* the previous call's readers are done with `shared` */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < n_warps ? shared[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

struct dk_op_add {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct dk_op_max { /* fmaxf: a NaN loses to a number */
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* Sum over the block, T = float or double. */
template <typename T> __device__ __forceinline__ T dk_block_sum(T v, T *shared) {
    return dk_block_reduce(v, shared, (T)0, dk_op_add());
}
/* Maximum over the block. */
__device__ __forceinline__ float dk_block_max(float v, float *shared) {
    return dk_block_reduce(v, shared, -INFINITY, dk_op_max());
}

static inline unsigned dk_grid_1d(size_t n, unsigned block) {
    size_t blocks = (n + block - 1) / block;
    if (blocks > 65535u * 16u) blocks = 65535u * 16u; /* grid-stride loops cover the rest */
    return (unsigned)(blocks ? blocks : 1);
}

#endif
