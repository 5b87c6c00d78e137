/* rmsnorm.cuh — RMSNorm on the GPU, twin of kernels/cpu/rmsnorm.h (dk_cpu_rmsnorm), plus the fused
 * residual add the decoder block does around it.
 *
 * Per row r (all arithmetic fp32; inv = 1 / sqrtf(mean(x_r²) + eps), IEEE sqrt and division):
 *   LLAMA:  out_j = w_j · (x_j · inv)
 *   GEMMA:  out_j = (x_j · inv) · (1 + w_j)           (w is the stored offset, passed unchanged)
 * The CPU sums squares in double, here in fp32 (a fixed tree, so results are bitwise repeatable): rows
 * agree to a few ulps.
 *
 * dk_cuda_rmsnorm: out (rows, dim) in `dtype` from the fp32 residual x. With row_index (rows) given, row r of
 *   out is the norm of row row_index[r] of x (the final norm of only the last token of each sequence).
 * dk_cuda_add_rmsnorm: the residual update of a sub-block and the next sub-block's input norm, one pass:
 *   d = post_w ? RMSNorm(delta; post_w) : delta        (Gemma's sandwich norm, before the add)
 *   x += d                                             (x fp32, in place)
 *   h = RMSNorm(x; w)                                  (skipped when h is NULL)
 * delta may be NULL (then only h = RMSNorm(x; w) is computed). The kind (LLAMA/GEMMA) applies to both norms. */
#ifndef DK_CUDA_RMSNORM_CUH
#define DK_CUDA_RMSNORM_CUH

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (rows, dim) dtype; x (n_x_rows, dim) fp32; row_index (rows) int32 or NULL; w (dim) fp32. */
cudaError_t dk_cuda_rmsnorm(void *out, const float *x, const int32_t *row_index, const float *w, int64_t rows,
                            int64_t dim, float eps, bool gemma, dk_cuda_dtype dtype, cudaStream_t stream);
/* x (rows, dim) fp32 in/out; delta (rows, dim) dtype or NULL; post_w (dim) fp32 or NULL; h (rows, dim) dtype
 * or NULL; w (dim) fp32 (needed when h is given). */
cudaError_t dk_cuda_add_rmsnorm(float *x, const void *delta, const float *post_w, void *h, const float *w,
                                int64_t rows, int64_t dim, float eps, bool gemma, dk_cuda_dtype dtype,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
