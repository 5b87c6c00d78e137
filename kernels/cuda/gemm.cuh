/* gemm.cuh — torch.nn.Linear on the GPU through cuBLASLt, twin of kernels/cpu/gemm.h (dk_cpu_linear):
 *
 *   y (M, N) = alpha · x (M, K) · W (N, K)ᵀ + beta · y                  (row-major, rows of stride ldx / ldy)
 *
 * W is the checkpoint's (out_features, in_features) matrix as stored, so no re-layout is needed (in
 * column-major terms cuBLASLt computes yᵀ = op_T(W)·xᵀ). Modes: BF16 operands with fp32 accumulation
 * (CUBLAS_COMPUTE_32F) and a bf16 or fp32 output; F32 everything with CUBLAS_COMPUTE_32F (true fp32, no TF32)
 * for parity checks. Plans (matmul descriptor, layouts, the heuristic's algorithm) are cached per shape,
 * leading dimensions, types, beta ≠ 0 and pointer alignment, so a forward pass asks the heuristic once per
 * distinct GEMM; the workspace is allocated once at creation. The functions return cuBLAS statuses (check
 * with CUBLAS_CHECK); they are asynchronous on `stream`.
 *
 * dk_cuda_lora: the unmerged LoRA term of host/model/lora.h (dk_lora_apply) as two GEMMs:
 *   tmp (M, r) = x · Aᵀ;   y += alpha · tmp · Bᵀ          (alpha = multiplier · scale; tmp in x's dtype) */
#ifndef DK_CUDA_GEMM_CUH
#define DK_CUDA_GEMM_CUH

#include <cublas_api.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

typedef struct dk_cuda_gemm dk_cuda_gemm;

#ifdef __cplusplus
extern "C" {
#endif

/* A cuBLASLt handle, a plan cache and a workspace of workspace_bytes (32 MB is plenty for Hopper). */
cublasStatus_t dk_cuda_gemm_create(dk_cuda_gemm **g, size_t workspace_bytes);
void dk_cuda_gemm_destroy(dk_cuda_gemm *g);
/* Plans built so far (tests check that repeated shapes reuse theirs). */
int dk_cuda_gemm_n_plans(const dk_cuda_gemm *g);

/* y (M, ldy) of y_dtype; x (M, ldx) and W (N, K) of in_dtype. beta may be 0 (y is then not read). */
cublasStatus_t dk_cuda_linear(dk_cuda_gemm *g, void *y, int64_t ldy, dk_cuda_dtype y_dtype, const void *x, int64_t ldx,
                              const void *w, dk_cuda_dtype in_dtype, int64_t M, int64_t N, int64_t K, float alpha,
                              float beta, cudaStream_t stream);
/* y (M, ldy), x (M, ldx), A (r, K), B (N, r), tmp (M, r): all of dtype. */
cublasStatus_t dk_cuda_lora(dk_cuda_gemm *g, void *y, int64_t ldy, const void *x, int64_t ldx, const void *A,
                            const void *B, void *tmp, int64_t M, int64_t N, int64_t K, int64_t r, float alpha,
                            dk_cuda_dtype dtype, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
