/* layernorm.cuh — LayerNorm on the GPU (GPT-2), twin of kernels/cpu/layernorm.h (dk_cpu_layernorm), plus the
 * fused residual add of the decoder block, as rmsnorm.cuh has it for RMSNorm.
 *
 * Per row r, all arithmetic fp32: mean = sum(x) / dim; var = sum((x - mean)²) / dim (two passes over the row);
 *   out_j = (x_j - mean) · (1 / sqrtf(var + eps)) · w_j + b_j
 * The CPU accumulates the moments in double, here in fp32 (a fixed tree, bitwise repeatable): rows agree to
 * a few ulps.
 *
 * dk_cuda_layernorm: out (rows, dim) in `dtype` from the fp32 residual x; with row_index (rows) given, row r of
 *   out is the norm of row row_index[r] of x (the final norm of the last token of each sequence).
 * dk_cuda_add_layernorm: x += delta (when delta is given; x fp32 in place), then h = LayerNorm(x; w, b) (when h is
 *   given): the residual update of a sub-block and the next sub-block's input norm, one pass. */
#ifndef DK_CUDA_LAYERNORM_CUH
#define DK_CUDA_LAYERNORM_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (rows, dim) dtype; x (n_x_rows, dim) fp32; row_index (rows) int32 or NULL; w, b (dim) fp32. */
cudaError_t dk_cuda_layernorm(void *out, const float *x, const int32_t *row_index, const float *w, const float *b,
                              int64_t rows, int64_t dim, float eps, dk_cuda_dtype dtype, cudaStream_t stream);
/* x (rows, dim) fp32 in/out; delta (rows, dim) dtype or NULL; h (rows, dim) dtype or NULL; w, b (dim) fp32
 * (needed when h is given). */
cudaError_t dk_cuda_add_layernorm(float *x, const void *delta, void *h, const float *w, const float *b, int64_t rows,
                                  int64_t dim, float eps, dk_cuda_dtype dtype, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
