/* diffops.cu — see diffops.cuh. Sections: 1. KL and log-softmax (online log-sum-exp, one block per row);
 * 2. top-k (radix select, ordered collection, bitonic sort; one block per row; the order keys and the block scan
 * are in common.cuh, shared with dict_step.cu); 3. pair metrics (double sums,
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

__global__ void __launch_bounds__(TOPK_THREADS) k_topk(const float *x, int64_t n, int k, bool largest, float *values,
                                                       int32_t *ids) {
    __shared__ uint32_t hist[256];
    __shared__ uint32_t scan[33];
    __shared__ uint32_t sel[4];
    __shared__ unsigned long long cand[DK_CUDA_TOPK_MAX_K];
    const int64_t r = blockIdx.x;
    const float *row = x + r * n; /* (n) */
    const auto key_at = [&](int64_t i, uint32_t &key) {
        key = dk_order_key(row[i], largest);
        return true;
    };
    dk_radix_select(n, (uint32_t)k, key_at, hist, sel);
    dk_collect_candidates(n, key_at, sel, cand, scan);
    dk_bitonic_sort_desc(cand, k);
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
