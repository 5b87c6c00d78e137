/* dict_step.cuh — one BatchTopK SAE / crosscoder training step on the GPU: the CUDA twins of
 * kernels/cpu/dict_step.h (same parameter layout, same CSR codes, same selection rule; read that header first),
 * checked against it by tests/gpu/test_dict_step_cuda.c. All array pointers are device memory unless a
 * parameter says "host"; every launcher runs on `stream`, returns cudaErrorInvalidValue for a shape it does not
 * take, and is bitwise repeatable (integer atomics only, fixed reduction trees, a stable sort).
 *
 * What each twin does and how close it is to the CPU (fp32; "exact" = the CPU's bits when the CPU build does
 * not contract a·b + c into FMAs, as on x86-64 without -march; the GPU side uses __fmul_rn/__fadd_rn so nvcc
 * never contracts):
 *   dk_cuda_dict_encode       u = x − b_dec (exact), pre rows = b_enc, then pre += u·W_encᵀ with dk_cuda_linear
 *                             (cuBLASLt, true fp32, no TF32): the GEMM's reassociation only (test: ≤ 1e-5 rel).
 *   dk_cuda_dict_code_weights w_j = Σ_l (float)sqrt(Σ_i W_dec[j, l·d + i]² in fp64): fp64 sums in another order.
 *   dk_cuda_dict_scores       pre ← relu(pre) IN PLACE (dict_train.c relus pre right after the selection; every
 *                             selected entry has pre > 0, so nothing later needs the negative values), scores =
 *                             relu(pre)·w (exact), and, fused in the same pass, the high-half histogram of the
 *                             positive finite scores ("fused encoder with batch top-k selection": the B×F scores
 *                             are read once for scores and histogram). One block per SM with a 32768-bin shared
 *                             histogram (positive floats have a high half < 0x7F80), flushed with one 64-bit
 *                             atomic per non-empty bin; plain global atomics where a block cannot have 128 KiB of
 *                             shared memory (before sm_80). Counts are exact.
 *   dk_cuda_hist_hi/_lo       dk_cpu_hist_hi/_lo: exact counts, added to hist (65536 uint64 bins each).
 *   dk_cuda_select            dk_cpu_select: EXACTLY the CPU's CSR. One block per row counts the entries above t
 *                             and equal to t; one block scans the rows (ties go to the lowest row-major positions:
 *                             row r keeps clamp(ties − equal entries in rows before r, 0, its own)), giving
 *                             row_ptr; one block per row writes its entries in index order with block prefix sums.
 *   dk_cuda_auxk_select       dk_cpu_auxk_select: EXACTLY the CPU's CSR, including its order within a row (best
 *                             first, ties to the lower index, when k_aux < the number of dead latents; index order
 *                             when every dead latent is taken). One block per row: a radix select (four 8-bit
 *                             digits) of the k-th best score among the dead latents, the candidates collected and
 *                             bitonic-sorted in shared memory, the non-positive values dropped; run once to count
 *                             and once to write.
 *   dk_cuda_dict_decode       one block per row, the CPU's additions in the CPU's order: exact.
 *   dk_cuda_dict_backward     latent-major, no float atomics: the code's entries are sorted by latent with CUB's
 *                             stable radix sort (so each latent's entries stay in row order), δ = W_dec[j]·g_b is
 *                             one warp per entry (a fixed shuffle tree: reassociation against the CPU's sequential
 *                             sum), then one block per latent adds f·g_b, δ·u_b and δ into dW_dec[j], dW_enc[j],
 *                             db_enc[j] in row order as the CPU does (dW_dec exact; dW_enc and db_enc carry δ's
 *                             reassociation: test ≤ 1e-5 rel).
 *   dk_cuda_dict_bdec_through_encoder  db_dec −= W_encᵀ·db_enc: 32 columns per block, fixed order (≤ 1e-5 rel).
 *   dk_cuda_dict_remove_parallel, dk_cuda_dict_unit_norm   one block per latent; the norm in fp64 as the CPU, the
 *                             SAE projection's dot product by a float tree (reassociation, ≤ 1e-5 rel).
 *   dk_cuda_sumsq             Σ x² in fp64: fixed per-block partials summed on the host in block order (the sum
 *                             of the same fp64 terms in another order: relative 1e-15).
 *   dk_cuda_adam              dk_cpu_adam in one pass over p, g, m, v (28 bytes moved per parameter: read g, p,
 *                             m, v, write p, m, v), the constants computed on the host exactly as the CPU: exact.
 *   dk_cuda_adam_bf16         the same with m and v stored as bf16 (20 bytes per parameter): the moments are read,
 *                             updated in fp32, the fp32 values update p, and are stored rounded to nearest even.
 *                             Its effect, see "bf16 moments" below.
 *
 * bf16 moments. A bf16 has 8 significant bits, so a stored value changes only when the update moves it by more
 * than half an ulp, 2^-9 ≈ 0.2% relative. Adam's second moment moves by (1−β2) = 0.1% of itself per step towards
 * g², so v = β2·v + (1−β2)·g² rounds back to the old v unless g² > ~3·v: over long runs v only ratchets up and
 * does not decay (m, with 1−β1 = 10%, tracks g with 0.4% noise), so the effective step lr·m/sqrt(v) shrinks after
 * large gradients. Measured on the goldens (tools/adam_bf16_effect.py: the reference trainers of
 * tests/fixtures/methods/dict, same pool, seeds and settings, Adam state rounded to bf16 after every step, which
 * is this kernel's arithmetic): step 1 is identical (lr = 0 at warm-up step 0); after 50 steps the weights differ
 * from the fp32 run by, as a fraction of their own movement, SAE W_dec 1.4%, W_enc 0.92%, b_enc 0.49%, b_dec
 * 0.011% (losses up to 1.4% apart); crosscoder W_dec 0.28%, W_enc 0.29%, b_enc 0.35%, b_dec 0.003% (losses up to
 * 0.03%). That is far outside an fp32 golden tolerance: the goldens hold for fp32 moments only, which stay the
 * default; bf16 moments save 8 of 28 bytes per parameter where memory or bandwidth matters more than agreement
 * with the reference.
 *
 * Host wiring (host/methods/dict_train_cuda.c): dk_cuda_dict_create once per trainer (rows = the rank's rows per
 * step, sel_cap ≥ the capacity of the main code and of the AuxK code, rows·k_aux); per step encode, scores (with
 * hist_hi), copy hist_hi to the host and sum over ranks, hist_lo for the chosen bin, the same, then select;
 * fired; decode; residual; auxk_select, decode (b_dec NULL), col_sums, auxk_residual, auxk_grad; backward for
 * each code; bdec_grad; bdec_through_encoder (SAE); the gradient all-reduce (NCCL); remove_parallel (SAE); sumsq;
 * adam with the clipping coefficient; unit_norm (SAE). */
#ifndef DK_CUDA_DICT_STEP_CUH
#define DK_CUDA_DICT_STEP_CUH

#include <cublas_api.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "../cpu/dict_step.h"
#include "gemm.cuh"

#ifdef __cplusplus
extern "C" {
#endif

enum { DK_DICT_HIST_BINS = 65536 };

/* Scratch for one shape and batch size: per-row counts, the latent-sorted copy of a code for the backward
 * (CUB's temporary storage sized for sel_cap entries), the sumsq partials. rows >= 1, 1 <= sel_cap < 2^31. */
typedef struct dk_cuda_dict dk_cuda_dict;
cudaError_t dk_cuda_dict_create(dk_cuda_dict **ctx, const dk_dict_shape *s, int64_t rows, int64_t sel_cap);
void dk_cuda_dict_destroy(dk_cuda_dict *ctx);

/* pre (n, F) = u·W_encᵀ + b_enc with u (n, D) = x − b_dec when b_dec is given (SAE), else u = x (copied when u
 * is given and is not x). A cuBLAS status (CUBLAS_CHECK it): a failed launch of the subtraction is
 * CUBLAS_STATUS_EXECUTION_FAILED; a shape it does not take, CUBLAS_STATUS_INVALID_VALUE. */
cublasStatus_t dk_cuda_dict_encode(dk_cuda_gemm *g, const dk_dict_shape *s, const float *x, int64_t n,
                                   const float *W_enc, const float *b_enc, const float *b_dec, float *u, float *pre,
                                   cudaStream_t stream);

/* w (F) = Σ_l ‖W_dec[j, l·d : (l+1)·d]‖₂. */
cudaError_t dk_cuda_dict_code_weights(const dk_dict_shape *s, const float *W_dec, float *w, cudaStream_t stream);

/* pre (n, F) becomes relu(pre); scores (n, F) = relu(pre)·w_j (w NULL: relu(pre); scores may then be pre itself);
 * hist_hi (65536, may be NULL) += the high-half histogram of the positive finite scores. */
cudaError_t dk_cuda_dict_scores(float *pre, int64_t n, int64_t F, const float *w, float *scores, uint64_t *hist_hi,
                                cudaStream_t stream);

/* hist (65536) += histograms of the positive finite entries of s (n values), as dk_cpu_hist_hi / dk_cpu_hist_lo. */
cudaError_t dk_cuda_hist_hi(const float *s, int64_t n, uint64_t *hist, cudaStream_t stream);
cudaError_t dk_cuda_hist_lo(const float *s, int64_t n, uint32_t hi_bin, uint64_t *hist, cudaStream_t stream);

/* dk_cpu_select: scores, val (rows, F); row_ptr (rows + 1), idx and fval (cap). *n_selected (host) gets the number
 * selected (the call waits for the stream). More than cap: cudaErrorInvalidValue, nothing past cap written. */
cudaError_t dk_cuda_select(dk_cuda_dict *ctx, const float *scores, const float *val, int64_t rows, int64_t F, float t,
                           int64_t ties, int64_t *row_ptr, int32_t *idx, float *fval, int64_t cap,
                           int64_t *n_selected, cudaStream_t stream);

/* dk_cpu_auxk_select: dead (F) uint8; row_ptr (rows + 1), idx and fval (rows·min(k_aux, F)); *n_selected (host)
 * as above. No NaN scores (the CPU's qsort has no order for them). */
cudaError_t dk_cuda_auxk_select(dk_cuda_dict *ctx, const float *scores, const float *val, int64_t rows, int64_t F,
                                const uint8_t *dead, int64_t k_aux, int64_t *row_ptr, int32_t *idx, float *fval,
                                int64_t *n_selected, cudaStream_t stream);

/* out (rows, D) = Σ_j f_j W_dec[j] (+ b_dec when given). */
cudaError_t dk_cuda_dict_decode(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                                const float *fval, const float *W_dec, const float *b_dec, float *out,
                                cudaStream_t stream);

/* dk_cpu_dict_backward for a code of nnz entries (= row_ptr[rows], as the selection returned it; nnz <= the
 * context's sel_cap): accumulates into dW_enc, db_enc, dW_dec. g, u (rows, D). */
cudaError_t dk_cuda_dict_backward(dk_cuda_dict *ctx, const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr,
                                  const int32_t *idx, const float *fval, int64_t nnz, const float *g, const float *u,
                                  const float *W_dec, float *dW_enc, float *db_enc, float *dW_dec,
                                  cudaStream_t stream);

/* SAE: db_dec (D) −= W_encᵀ·db_enc. */
cudaError_t dk_cuda_dict_bdec_through_encoder(const dk_dict_shape *s, const float *W_enc, const float *db_enc,
                                              float *db_dec, cudaStream_t stream);
/* SAE: dW_dec[j] −= (dW_dec[j]·ŵ_j) ŵ_j, ŵ_j = W_dec[j] / (‖W_dec[j]‖ + 1e-6). */
cudaError_t dk_cuda_dict_remove_parallel(const dk_dict_shape *s, const float *W_dec, float *dW_dec,
                                         cudaStream_t stream);
/* SAE: W_dec[j] /= ‖W_dec[j]‖ + FLT_EPSILON. */
cudaError_t dk_cuda_dict_unit_norm(const dk_dict_shape *s, float *W_dec, cudaStream_t stream);

/* *out (host) = Σ x² over n values in fp64 (the call waits for the stream). */
cudaError_t dk_cuda_sumsq(dk_cuda_dict *ctx, const float *x, int64_t n, double *out, cudaStream_t stream);

/* dk_cpu_adam on n values (p, g, m, v fp32), one pass. */
cudaError_t dk_cuda_adam(float *p, const float *g, float *m, float *v, int64_t n, float grad_scale, double lr,
                         double beta1, double beta2, double eps, int64_t t, cudaStream_t stream);
/* The same with m, v (n) stored as bf16 bits (see "bf16 moments" above). */
cudaError_t dk_cuda_adam_bf16(float *p, const float *g, uint16_t *m, uint16_t *v, int64_t n, float grad_scale,
                              double lr, double beta1, double beta2, double eps, int64_t t, cudaStream_t stream);

/* The step's residual passes (kernels/cpu/dict_step.h's twins of the same names; element-wise arithmetic exact,
 * each row's fp64 sums a fixed tree where the CPU adds in sequence, rows added on the host in the CPU's order):
 * dk_cpu_dict_residual: e (n, D) x̂ in, x − x̂ out; g (n, D); sums (host) as the CPU's (the call waits). */
cudaError_t dk_cuda_dict_residual(dk_cuda_dict *ctx, const dk_dict_shape *s, const float *x, int64_t n, int64_t B,
                                  bool sae, float *e, float *g, double sums[2], cudaStream_t stream);
/* dk_cpu_dict_fired: fired (F, device) and *min_sel (host; the call waits). Exact. */
cudaError_t dk_cuda_dict_fired(dk_cuda_dict *ctx, int64_t nnz, const int32_t *idx, const float *fval, const float *w,
                               int64_t F, uint8_t *fired, float *min_sel, cudaStream_t stream);
/* dk_cpu_dict_col_sums: out (D, device fp64) = Σ_r x[r], one thread per column adding the rows in order: exact. */
cudaError_t dk_cuda_dict_col_sums(const float *x, int64_t n, int64_t D, double *out, cudaStream_t stream);
/* dk_cpu_dict_bdec_grad: db_dec (D) += Σ_r g[r] in fp32, the rows in order: exact. */
cudaError_t dk_cuda_dict_bdec_grad(const float *g, int64_t n, int64_t D, float *db_dec, cudaStream_t stream);
/* dk_cpu_dict_auxk_residual: nd (host) = {Σ‖e − ê‖², Σ‖e − ē‖²}, mean_e (D, device fp64); the call waits. */
cudaError_t dk_cuda_dict_auxk_residual(dk_cuda_dict *ctx, const float *e, const float *ehat, const double *mean_e,
                                       int64_t n, int64_t D, double nd[2], cudaStream_t stream);
/* dk_cpu_dict_auxk_grad: ehat ← coef·(e − ehat) over count values. Exact. */
cudaError_t dk_cuda_dict_auxk_grad(const float *e, float *ehat, int64_t count, float coef, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
