/* dtype.h — the activation element type of the CUDA kernels, shared by the C host and the .cu files.
 *
 * Why this exists: the CUDA forward runs in one of two modes. BF16 is the fast path (bf16 activations
 * between kernels and bf16 GEMM operands, fp32 accumulation everywhere, fp32 residual stream). F32 keeps
 * every activation and weight in fp32 with fp32 GEMMs (no TF32): it exists for parity checks against the
 * CPU reference (kernels/cpu), where differences must be a few ulps, not bf16 noise. Kernels take the mode
 * as a run-time argument and dispatch to one of two template instantiations (float, __nv_bfloat16). */
#ifndef DK_CUDA_DTYPE_H
#define DK_CUDA_DTYPE_H

typedef enum { DK_CUDA_F32 = 0, DK_CUDA_BF16 = 1 } dk_cuda_dtype;

static inline unsigned long dk_cuda_dtype_size(dk_cuda_dtype t) { return t == DK_CUDA_F32 ? 4ul : 2ul; }

#endif
