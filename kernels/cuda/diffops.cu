/* diffops.cu — see diffops.cuh. Sections: 1. KL and log-softmax (online log-sum-exp, one block per row);
 * 2. top-k (radix select, ordered collection, bitonic sort; one block per row); 3. pair metrics (double sums,
 * one block per row); 4. sums over samples (one thread per element). */
#include "diffops.cuh"

#include <math.h>

#include "../dtype_convert.h"
#include "common.cuh"

enum { ROW_THREADS = 512, PAIR_THREADS = 256, TOPK_THREADS = 512 };

/* ---------------------------------------------------------------------------------------------------
 * 1. KL and log-softmax */

/* One more value z into a running (max m, Σ exp(z − m) s): when z raises the max, s is rescaled. A −inf entry
 * adds nothing (also before the first finite one, where exp(−inf − (−inf)) would be NaN). */
__device__ __forceinline__ void lse_push(float &m, float &s, float z) {
    if (z > m) {
        s = s * expf(m - z) + 1.0f;
        m = z;
    } else if (z != -INFINITY) {
        s += expf(z - m);
    }
}

/* The block's max M and S = Σ s·exp(m − M) from every thread's running (m, s); log-sum-exp = M + logf(S). */
__device__ __forceinline__ void block_max_sum(float m, float s, float *shared, float &M, float &S) {
    M = dk_block_max(m, shared);
    S = dk_block_sum(s * expf(m - M), shared); /* a thread with no entries: 0 · exp(−inf) = 0 */
}

/* A thread's share of one KL row: running (max, sum) of the finetuned and the base row (the same lse_push for
 * both, so identical rows give identical bits and KL exactly 0), and tf = Σ exp(z_ft − mf)·(z_ft − z_base),
 * rescaled with the finetuned sum. */
struct kl_acc {
    float mf, sf, tf, mb, sb;
};

__device__ __forceinline__ void kl_push(kl_acc &a, float zf, float zb) {
    const float d = zf - zb, mf = a.mf;
    if (zf > mf) a.tf = a.tf * expf(mf - zf) + d;
    else a.tf += expf(zf - mf) * d;
    lse_push(a.mf, a.sf, zf);
    lse_push(a.mb, a.sb, zb);
}

/* One block per row. vec4: V % 4 == 0 and both rows 16-byte aligned, so each thread reads float4s (the same
 * entries in the same order for every run of the same shape and alignment). */
__global__ void __launch_bounds__(ROW_THREADS) k_kl_rows(float *kl, const float *logits_ft, const float *logits_base,
                                                         int64_t V, float inv_t, bool vec4) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    const float *zf = logits_ft + r * V, *zb = logits_base + r * V; /* (V) each */
    kl_acc a = {-INFINITY, 0.0f, 0.0f, -INFINITY, 0.0f};
    if (vec4) {
        const float4 *f4 = (const float4 *)zf, *b4 = (const float4 *)zb;
        for (int64_t i = threadIdx.x; i < V / 4; i += blockDim.x) {
            const float4 f = f4[i], b = b4[i];
            kl_push(a, f.x * inv_t, b.x * inv_t);
            kl_push(a, f.y * inv_t, b.y * inv_t);
            kl_push(a, f.z * inv_t, b.z * inv_t);
            kl_push(a, f.w * inv_t, b.w * inv_t);
        }
    } else {
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) kl_push(a, zf[v] * inv_t, zb[v] * inv_t);
    }
    float Mf, Sf, Mb, Sb;
    block_max_sum(a.mf, a.sf, shared, Mf, Sf);
    block_max_sum(a.mb, a.sb, shared, Mb, Sb);
    const float Tf = dk_block_sum(a.tf * expf(a.mf - Mf), shared);
    /* Σ p_ft·(z_ft − z_base) − (lse_ft − lse_base) = Σ p_ft·(log p_ft − log p_base) */
    if (threadIdx.x == 0) kl[r] = Tf / Sf - ((Mf + logf(Sf)) - (Mb + logf(Sb)));
}

extern "C" cudaError_t dk_cuda_kl_rows(float *kl, const float *logits_ft, const float *logits_base, int64_t rows,
                                       int64_t V, float temperature, cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || V < 1 || !(temperature > 0.0f)) return cudaErrorInvalidValue;
    const bool vec4 = V % 4 == 0 && ((uintptr_t)logits_ft % 16) == 0 && ((uintptr_t)logits_base % 16) == 0;
    const float inv_t = (float)(1.0 / (double)temperature);
    k_kl_rows<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(kl, logits_ft, logits_base, V, inv_t, vec4);
    return cudaGetLastError();
}

__global__ void __launch_bounds__(ROW_THREADS) k_log_softmax_at(const float *x, int64_t n, const int32_t *ids,
                                                                int64_t k, float *out) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    const float *row = x + r * n; /* (n) */
    float m = -INFINITY, s = 0.0f;
    for (int64_t v = threadIdx.x; v < n; v += blockDim.x) lse_push(m, s, row[v]);
    float M, S;
    block_max_sum(m, s, shared, M, S);
    const float lse = M + logf(S);
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
        const int32_t id = ids[r * k + i];
        out[r * k + i] = id >= 0 && id < n ? row[id] - lse : NAN;
    }
}

extern "C" cudaError_t dk_cuda_log_softmax_at(const float *x, int64_t rows, int64_t n, const int32_t *ids, int64_t k,
                                              float *out, cudaStream_t stream) {
    if (rows == 0 || k == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || n < 1 || k < 0) return cudaErrorInvalidValue;
    k_log_softmax_at<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(x, n, ids, k, out);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 2. Top-k */

/* A key whose unsigned order is the order "better" of the CPU twin: larger floats get larger keys (negative
 * floats have their bits flipped, positive ones the sign bit set); −0 becomes +0 first, since the CPU's ==
 * makes them tie; for the smallest entries the key is inverted. */
__device__ __forceinline__ uint32_t order_key(float v, bool largest) {
    uint32_t u = __float_as_uint(v);
    if (u == 0x80000000u) u = 0;
    const uint32_t key = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return largest ? key : ~key;
}

/* A candidate as one 64-bit number whose order is (key, then lower index first): sorting these descending
 * gives the CPU's best-first order. 0 is below every candidate (the low half ~index is >= 2^31). */
__device__ __forceinline__ unsigned long long candidate(uint32_t key, int64_t index) {
    return (unsigned long long)key << 32 | (unsigned long long)(~(uint32_t)index);
}

/* Exclusive prefix sum of v in thread order over the block; *total gets the block's sum. shared: 33 uint32. */
__device__ __forceinline__ uint32_t block_exclusive_scan(uint32_t v, uint32_t *shared, uint32_t *total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    uint32_t incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        const uint32_t y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    __syncthreads(); /* the previous call's readers are done with `shared` */
    if (lane == 31) shared[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const uint32_t w = lane < n_warps ? shared[lane] : 0;
        uint32_t wi = w;
        for (int o = 1; o < 32; o <<= 1) {
            const uint32_t y = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o) wi += y;
        }
        if (lane < n_warps) shared[lane] = wi - w;
        if (lane == 31) shared[32] = wi;
    }
    __syncthreads();
    *total = shared[32];
    return shared[warp] + incl - v;
}

__global__ void __launch_bounds__(TOPK_THREADS) k_topk(const float *x, int64_t n, int k, bool largest, float *values,
                                                       int32_t *ids) {
    __shared__ uint32_t hist[256];
    __shared__ uint32_t scan[33];
    __shared__ unsigned long long cand[DK_CUDA_TOPK_MAX_K];
    __shared__ uint32_t s_prefix, s_mask, s_greater, s_need;
    const int64_t r = blockIdx.x;
    const float *row = x + r * n; /* (n) */
    const int lane = threadIdx.x % 32;
    if (threadIdx.x == 0) s_prefix = 0, s_mask = 0, s_greater = 0, s_need = (uint32_t)k;

    /* radix select, 8 bits at a time from the top: among the entries whose key starts with the digits chosen
     * so far, count each next digit, and take the digit where the k-th best key lies. At the end s_prefix is
     * that key K, s_greater entries have a key above K and the s_need lowest-indexed entries equal to K
     * complete the k. (Counts are sums: their order cannot change them.) */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        const uint32_t prefix = s_prefix, mask = s_mask;
        for (int64_t base = 0; base < n; base += blockDim.x) { /* the same trip count for every thread */
            const int64_t i = base + threadIdx.x;
            int bin = -1;
            if (i < n) {
                const uint32_t key = order_key(row[i], largest);
                if ((key & mask) == prefix) bin = (int)((key >> shift) & 255u);
            }
            /* one atomic per distinct bin in the warp: logits share their top bits, so bins are crowded */
            const uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (bin >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint32_t above = 0;
            int d = 255;
            for (; d > 0; d--) {
                if (above + hist[d] >= s_need) break;
                above += hist[d];
            }
            s_greater += above;
            s_need -= above;
            s_prefix |= (uint32_t)d << shift;
            s_mask |= 255u << shift;
        }
        __syncthreads();
    }

    /* collect, in index order: every entry above K at its rank among those, and the first s_need entries equal
     * to K after them; the prefix sums carry both counts in one word (each at most blockDim.x < 2^16) */
    const uint32_t K = s_prefix, greater = s_greater, need = s_need;
    uint32_t gt_base = 0, eq_base = 0;
    for (int64_t base = 0; base < n; base += blockDim.x) {
        const int64_t i = base + threadIdx.x;
        uint32_t key = 0, gt = 0, eq = 0;
        if (i < n) {
            key = order_key(row[i], largest);
            gt = key > K;
            eq = key == K;
        }
        uint32_t total;
        const uint32_t before = block_exclusive_scan(gt | eq << 16, scan, &total);
        if (gt) cand[gt_base + (before & 0xffffu)] = candidate(key, i);
        if (eq && eq_base + (before >> 16) < need) cand[greater + eq_base + (before >> 16)] = candidate(key, i);
        gt_base += total & 0xffffu;
        eq_base += total >> 16;
        if (gt_base == greater && eq_base >= need) break; /* the same for every thread */
    }

    /* bitonic sort of the k candidates (padded with 0s to a power of two), descending */
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
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const uint32_t id = ~(uint32_t)cand[i];
        ids[r * k + i] = (int32_t)id;
        values[r * k + i] = row[id];
    }
}

extern "C" cudaError_t dk_cuda_topk(const float *x, int64_t rows, int64_t n, int64_t k, bool largest, float *values,
                                    int32_t *ids, cudaStream_t stream) {
    if (rows == 0 || k == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || n < 1 || n > 0x7fffffff || k < 0 || k > n || k > DK_CUDA_TOPK_MAX_K)
        return cudaErrorInvalidValue;
    k_topk<<<(unsigned)rows, TOPK_THREADS, 0, stream>>>(x, n, (int)k, largest, values, ids);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 3. Pair metrics */

__global__ void __launch_bounds__(PAIR_THREADS) k_pair_metrics(const uint16_t *base, const uint16_t *ft, int64_t d,
                                                               float *norm_diff, float *cos_dist, float *cos_sim,
                                                               float *norm_base, float *norm_ft) {
    __shared__ double shared[32];
    const int64_t r = blockIdx.x;
    const uint16_t *br = base + r * d, *fr = ft + r * d; /* (d) each */
    double bb = 0, ff = 0, bf = 0, dd = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        const double b = dk_bf16_to_f32(br[j]), f = dk_bf16_to_f32(fr[j]);
        bb += b * b, ff += f * f, bf += b * f, dd += (f - b) * (f - b);
    }
    bb = dk_block_sum(bb, shared);
    ff = dk_block_sum(ff, shared);
    bf = dk_block_sum(bf, shared);
    dd = dk_block_sum(dd, shared);
    if (threadIdx.x != 0) return;
    const double eps = 1e-8, nb = sqrt(bb), nf = sqrt(ff); /* as the CPU twin: each norm clamped on its own */
    const double cos = bf / ((nb > eps ? nb : eps) * (nf > eps ? nf : eps));
    norm_diff[r] = (float)sqrt(dd);
    norm_base[r] = (float)nb;
    norm_ft[r] = (float)nf;
    cos_dist[r] = (float)(1.0 - cos);
    if (cos_sim) cos_sim[r] = (float)cos;
}

extern "C" cudaError_t dk_cuda_pair_metrics(const uint16_t *base, const uint16_t *ft, int64_t rows, int64_t d,
                                            float *norm_diff, float *cos_dist, float *cos_sim, float *norm_base,
                                            float *norm_ft, cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || d < 0) return cudaErrorInvalidValue;
    k_pair_metrics<<<(unsigned)rows, PAIR_THREADS, 0, stream>>>(base, ft, d, norm_diff, cos_dist, cos_sim, norm_base,
                                                                norm_ft);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 4. Sums over samples: __dadd_rn/__dsub_rn, so no contraction can change the CPU's additions */

__global__ void k_sum_samples(double *acc, const float *x, const float *minus, int64_t n_samples, int64_t n_elems) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
        double a = acc[i];
        for (int64_t s = 0; s < n_samples; s++) {
            const double v = minus ? __dsub_rn((double)x[s * n_elems + i], (double)minus[s * n_elems + i])
                                   : (double)x[s * n_elems + i];
            a = __dadd_rn(a, v);
        }
        acc[i] = a;
    }
}

extern "C" cudaError_t dk_cuda_sum_samples(double *acc, const float *x, const float *minus, int64_t n_samples,
                                           int64_t n_elems, cudaStream_t stream) {
    if (n_samples == 0 || n_elems == 0) return cudaSuccess;
    if (n_samples < 0 || n_elems < 0) return cudaErrorInvalidValue;
    const unsigned block = 256;
    k_sum_samples<<<dk_grid_1d((size_t)n_elems, block), block, 0, stream>>>(acc, x, minus, n_samples, n_elems);
    return cudaGetLastError();
}
