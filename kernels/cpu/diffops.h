/* diffops.h — the diffing methods' reductions on the CPU, the reference for their CUDA twins
 * (kernels/cuda/diffops.cuh, same semantics, checked against these by tests/gpu/test_diffops_cuda.c).
 *
 *   dk_cpu_kl_rows          KL(ft ‖ base) of the next-token distributions of each row of logits, at a
 *                           temperature: z ← z / T; KL = Σ_v p_ft(v) (log p_ft(v) − log p_base(v)) (seed_spec §7),
 *                           log-sum-exp and sums in double, so a row's KL is exact to fp32 rounding.
 *   dk_cpu_topk             the k largest (or smallest) entries of each row, best first; ties go to the lower
 *                           index, so the order is fully determined (torch.topk leaves ties unspecified).
 *   dk_cpu_log_softmax_at   log p(v) of chosen entries of a row: z_v − logsumexp(z) (logit lens probabilities).
 *   dk_cpu_pair_metrics     per token of two activation rows (base, finetuned): ‖ft − base‖₂, 1 − cos(base, ft),
 *                           cos(base, ft), ‖base‖₂, ‖ft‖₂ (seed_spec §11), in double, from bf16 rows as the stores
 *                           hold them. cos is torch.nn.functional.cosine_similarity's (what the seed calls):
 *                           b·f / (max(‖b‖, 1e-8) · max(‖f‖, 1e-8)), each norm clamped on its own, so a zero row
 *                           gives cos 0 (distance 1) and rows of norm under 1e-8 are not scaled up to unit length.
 *   dk_cpu_sum_samples      acc += Σ over samples of (x_s − minus_s) in double, sample after sample (ADL's mean
 *                           activations at the first n positions: seed_spec §5); the CUDA twin adds in the same
 *                           order, so both give the same bits. */
#ifndef DK_CPU_DIFFOPS_H
#define DK_CPU_DIFFOPS_H

#include <stdbool.h>
#include <stdint.h>

/* kl (rows) = KL(ft ‖ base) per row; logits (rows, V) fp32; temperature > 0. */
void dk_cpu_kl_rows(float *kl, const float *logits_ft, const float *logits_base, int64_t rows, int64_t V,
                    float temperature);

/* For each row of x (rows, n): the k largest entries (largest = true) or the k smallest, best first, into
 * values (rows, k) and ids (rows, k); ties by lower index (−0 and +0 compare equal, so they tie too). k <= n.
 * x must hold no NaN (they compare unequal to everything: the order would be undefined). */
void dk_cpu_topk(const float *x, int64_t rows, int64_t n, int64_t k, bool largest, float *values, int32_t *ids);

/* out (rows, k) = log_softmax(x row)[ids row] for x (rows, n) and ids (rows, k). */
void dk_cpu_log_softmax_at(const float *x, int64_t rows, int64_t n, const int32_t *ids, int64_t k, float *out);

/* base, ft (rows, d) bf16 bits; outputs (rows) each, fp32 (cos_sim may be NULL). cos_dist = 1 − cos is rounded
 * from double, so it keeps its relative precision near 0 (the seed's float32 1 − cos_sim does not). */
void dk_cpu_pair_metrics(const uint16_t *base, const uint16_t *ft, int64_t rows, int64_t d, float *norm_diff,
                         float *cos_dist, float *cos_sim, float *norm_base, float *norm_ft);

/* acc (n_elems) fp64 += Σ_s (x[s] − minus[s]) for x, minus (n_samples, n_elems) fp32; minus may be NULL (then
 * Σ_s x[s]). Each acc[i] gets ((acc[i] + v_0) + v_1) + ... in sample order, v_s = (double)x − (double)minus. */
void dk_cpu_sum_samples(double *acc, const float *x, const float *minus, int64_t n_samples, int64_t n_elems);

#endif
