/* diffops.cuh — the diffing methods' reductions on the GPU, twins of kernels/cpu/diffops.h (same semantics,
 * checked against it by tests/gpu/test_diffops_cuda.c). All pointers are device memory; every launcher returns
 * cudaErrorInvalidValue for a shape it does not take, and is bitwise repeatable (no atomics whose order reaches
 * a result, fixed reduction trees).
 *
 *   dk_cuda_kl_rows         KL(ft ‖ base) per row of logits at a temperature. One block per row, ONE pass over
 *                           both rows: each thread keeps a running max and Σ exp(z − max) of either row and
 *                           Σ exp(z_ft − max_ft)·(z_ft − z_base), rescaled when its max grows (online softmax);
 *                           the block combines them with fixed trees; KL = Σp·(z_ft − z_base) − (lse_ft − lse_base).
 *                           fp32 (the CPU twin uses double). Identical rows give exactly 0.
 *                           Accuracy, per row, with unit = 2^-24·(A + ln V + 1), A = max |z|/T over both rows:
 *                             |kl − kl_cpu| ≤ 8 units + 4e-6·kl_cpu
 *                           The fp32 roundings of z/T, z_ft − z_base and the log-sum-exps are each ~1 ulp of the
 *                           logits' magnitude and do not cancel when KL is small, so the error is absolute in
 *                           the logits' scale (about 2e-6 for logits up to 30), plus a relative part from the
 *                           sums. tools/kl_fp32_error_sim.py replays this kernel's fp32 arithmetic in its order
 *                           on LM-like logits (V up to 262144): worst 0.25 of this tolerance. (The seed computes
 *                           log_softmax in the model's dtype, bf16 for most runs: far coarser.)
 *   dk_cuda_topk            the k largest (or smallest) entries per row, best first, ties to the lower index:
 *                           EXACTLY the CPU's ids and values. k ≤ DK_CUDA_TOPK_MAX_K, n < 2^31, no NaN in x.
 *                           One block per row: radix select (four 8-bit digit histograms) of the k-th best
 *                           order-preserving uint32 key (−0 mapped to +0, so they tie as the CPU's == makes
 *                           them); the entries above it and the lowest-indexed ones equal to it, collected with
 *                           block prefix sums in index order; a bitonic sort of the k candidates by
 *                           (key, −index). Reads each row at most five times.
 *   dk_cuda_log_softmax_at  log p(v) = z_v − logsumexp(z) at k chosen entries per row; fp32 online log-sum-exp.
 *                           |out − cpu| ≤ 6 units (unit as above with A = max |z| of the row, T = 1; simulated
 *                           worst 0.28 of it). An id outside [0, n) gives NaN (the CPU reads out of bounds:
 *                           callers check ids).
 *   dk_cuda_pair_metrics    ‖ft − base‖, 1 − cos, ‖base‖, ‖ft‖ per row of bf16 rows, sums in double as on the
 *                           CPU (bf16 products are exact; only the order of the double sums differs): the fp32
 *                           outputs agree within 2 ulp (|Δ| ≤ 2^-22·|cpu| + 1e-12 for cos near 0).
 *   dk_cuda_sum_samples     acc += Σ_s (x_s − minus_s) in double, sample after sample, one thread per element:
 *                           the CPU's additions in the CPU's order, so bit-identical. */
#ifndef DK_CUDA_DIFFOPS_CUH
#define DK_CUDA_DIFFOPS_CUH

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { DK_CUDA_TOPK_MAX_K = 1024 };

/* kl (rows) fp32; logits_ft, logits_base (rows, V) fp32; temperature > 0. */
cudaError_t dk_cuda_kl_rows(float *kl, const float *logits_ft, const float *logits_base, int64_t rows, int64_t V,
                            float temperature, cudaStream_t stream);
/* x (rows, n) fp32; values (rows, k) fp32, ids (rows, k) int32; 0 <= k <= min(n, DK_CUDA_TOPK_MAX_K). */
cudaError_t dk_cuda_topk(const float *x, int64_t rows, int64_t n, int64_t k, bool largest, float *values,
                         int32_t *ids, cudaStream_t stream);
/* x (rows, n) fp32; ids (rows, k) int32; out (rows, k) fp32. */
cudaError_t dk_cuda_log_softmax_at(const float *x, int64_t rows, int64_t n, const int32_t *ids, int64_t k,
                                   float *out, cudaStream_t stream);
/* base, ft (rows, d) bf16 bits; norm_diff, cos_dist, cos_sim (may be NULL), norm_base, norm_ft (rows) fp32; the
 * CPU twin's semantics (torch's cosine_similarity, each norm clamped to 1e-8 on its own). */
cudaError_t dk_cuda_pair_metrics(const uint16_t *base, const uint16_t *ft, int64_t rows, int64_t d, float *norm_diff,
                                 float *cos_dist, float *cos_sim, float *norm_base, float *norm_ft,
                                 cudaStream_t stream);
/* acc (n_elems) fp64 in/out; x, minus (n_samples, n_elems) fp32, minus may be NULL. */
cudaError_t dk_cuda_sum_samples(double *acc, const float *x, const float *minus, int64_t n_samples, int64_t n_elems,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
