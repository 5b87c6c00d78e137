/* common.cuh — device helpers every .cu file of kernels/cuda shares: bf16/fp32 loads and stores that widen
 * to fp32 (arithmetic is fp32 unless an op says otherwise), block-wide sums, maximum and prefix sums, order
 * keys for exact top-k selections, and grid sizing.
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

/* A key whose unsigned order is the order "better" of a CPU twin that compares floats: larger floats get larger
 * keys (negative floats have their bits flipped, positive ones the sign bit set); −0 becomes +0 first, since the
 * CPU's == makes them tie; for the smallest entries (largest false) the key is inverted. */
__device__ __forceinline__ uint32_t dk_order_key(float v, bool largest) {
    uint32_t u = __float_as_uint(v);
    if (u == 0x80000000u) u = 0;
    const uint32_t key = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return largest ? key : ~key;
}

/* A candidate as one 64-bit number whose order is (key, then lower index first): sorting these descending
 * gives the CPU's best-first order. 0 is below every candidate (the low half ~index is >= 2^31). */
__device__ __forceinline__ unsigned long long dk_candidate(uint32_t key, int64_t index) {
    return (unsigned long long)key << 32 | (unsigned long long)(~(uint32_t)index);
}

/* Exclusive prefix sum of v in thread order over the block (T an unsigned integer type); *total gets the
 * block's sum. Every thread must call it. shared: 33 T; safe to call repeatedly with the same buffer. */
template <typename T> __device__ __forceinline__ T dk_block_exclusive_scan(T v, T *shared, T *total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    T incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    __syncthreads(); /* the previous call's readers are done with `shared` */
    if (lane == 31) shared[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const T w = lane < n_warps ? shared[lane] : 0;
        T wi = w;
        for (int o = 1; o < 32; o <<= 1) {
            const T y = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o) wi += y;
        }
        if (lane < n_warps) shared[lane] = wi - w;
        if (lane == 31) shared[32] = wi;
    }
    __syncthreads();
    *total = shared[32];
    return shared[warp] + incl - v;
}

/* Exact top-k within one block (dk_cuda_topk, dk_cuda_auxk_select): key_at(i, key) says whether entry i
 * (0 <= i < n) takes part and sets its order key (dk_order_key); 1 <= k <= the number taking part. Every thread
 * of the block calls each step; blockDim.x a multiple of 32, at most 1024.
 *
 * dk_radix_select: 8 bits at a time from the top: among the entries whose key starts with the digits chosen so
 * far, count each next digit, and take the digit where the k-th best key lies. At the end sel[0] is that key K,
 * sel[2] entries have a key above K and the sel[3] lowest-indexed entries equal to K complete the k. (Counts are
 * sums: their order cannot change them.) hist: 256 shared uint32; sel: 4 shared uint32 (prefix, mask, greater,
 * need). */
template <typename KeyAt>
__device__ void dk_radix_select(int64_t n, uint32_t k, const KeyAt &key_at, uint32_t *hist, uint32_t *sel) {
    const int lane = threadIdx.x % 32;
    __syncthreads(); /* the previous readers of sel are done */
    if (threadIdx.x == 0) sel[0] = 0, sel[1] = 0, sel[2] = 0, sel[3] = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        const uint32_t prefix = sel[0], mask = sel[1];
        for (int64_t base = 0; base < n; base += blockDim.x) { /* the same trip count for every thread */
            const int64_t i = base + threadIdx.x;
            int bin = -1;
            uint32_t key = 0;
            if (i < n && key_at(i, key) && (key & mask) == prefix) bin = (int)((key >> shift) & 255u);
            /* one atomic per distinct bin in the warp: logits share their top bits, so bins are crowded */
            const uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (bin >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint32_t above = 0;
            int d = 255;
            for (; d > 0; d--) {
                if (above + hist[d] >= sel[3]) break;
                above += hist[d];
            }
            sel[2] += above;
            sel[3] -= above;
            sel[0] |= (uint32_t)d << shift;
            sel[1] |= 255u << shift;
        }
        __syncthreads();
    }
}

/* After dk_radix_select: cand[0, k) gets the k selected entries as dk_candidate words, in no useful order
 * (every entry above K at its rank among those, then the first sel[3] entries equal to K in index order);
 * the prefix sums carry both counts in one word (each at most blockDim.x < 2^16). scan: 33 shared uint32. */
template <typename KeyAt>
__device__ void dk_collect_candidates(int64_t n, const KeyAt &key_at, const uint32_t *sel, unsigned long long *cand,
                                      uint32_t *scan) {
    const uint32_t K = sel[0], greater = sel[2], need = sel[3];
    uint32_t gt_base = 0, eq_base = 0;
    for (int64_t base = 0; base < n; base += blockDim.x) {
        const int64_t i = base + threadIdx.x;
        uint32_t key = 0, gt = 0, eq = 0;
        if (i < n && key_at(i, key)) {
            gt = key > K;
            eq = key == K;
        }
        uint32_t total;
        const uint32_t before = dk_block_exclusive_scan(gt | eq << 16, scan, &total);
        if (gt) cand[gt_base + (before & 0xffffu)] = dk_candidate(key, i);
        if (eq && eq_base + (before >> 16) < need) cand[greater + eq_base + (before >> 16)] = dk_candidate(key, i);
        gt_base += total & 0xffffu;
        eq_base += total >> 16;
        if (gt_base == greater && eq_base >= need) break; /* the same for every thread */
    }
}

/* Bitonic sort of cand[0, k), descending (best first), padded with 0s to a power of two: cand must have room
 * for that power of two. Ends with a __syncthreads. */
__device__ __forceinline__ void dk_bitonic_sort_desc(unsigned long long *cand, int k) {
    int P = 1;
    while (P < k) P <<= 1;
    for (int i = k + threadIdx.x; i < P; i += blockDim.x) cand[i] = 0;
    __syncthreads();
    for (int size = 2; size <= P; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < P; i += blockDim.x) {
                const int j = i ^ stride;
                if (j <= i) continue;
                const unsigned long long a = cand[i], b = cand[j];
                if ((i & size) == 0 ? a < b : a > b) cand[i] = b, cand[j] = a;
            }
            __syncthreads();
        }
}

static inline unsigned dk_grid_1d(size_t n, unsigned block) {
    size_t blocks = (n + block - 1) / block;
    if (blocks > 65535u * 16u) blocks = 65535u * 16u; /* grid-stride loops cover the rest */
    return (unsigned)(blocks ? blocks : 1);
}

#endif
