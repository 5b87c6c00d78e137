/* embedding.cuh — token embedding gather on the GPU, twin of the embedding loop of host/model/forward.c.
 *
 *   x[t, j] = (float)table[ids[t], j] · scale          t < T, j < H
 *
 * scale is Gemma's sqrt(H) (a float32 multiply, as the CPU forward; 1 for the other families). The residual
 * stream x is fp32 in both modes; the table is bf16 (mode BF16) or fp32 (mode F32). ids are int32 and must
 * lie in [0, V): the host checks them before the launch (check_input in forward.c / forward_cuda.c).
 *
 * dk_cuda_add_position_embedding: x[t, j] += (float)table[positions[t], j], GPT-2's learned positions (added
 * after the token embedding, as the CPU forward does); positions lie in [0, n_positions), checked by the host. */
#ifndef DK_CUDA_EMBEDDING_CUH
#define DK_CUDA_EMBEDDING_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x (T, H) fp32; ids (T) int32; table (V, H) of table_dtype. */
cudaError_t dk_cuda_embedding(float *x, const int32_t *ids, const void *table, dk_cuda_dtype table_dtype, int64_t T,
                              int64_t H, float scale, cudaStream_t stream);
/* x (T, H) fp32 in/out; positions (T) int32; table (n_positions, H) of table_dtype. */
cudaError_t dk_cuda_add_position_embedding(float *x, const int32_t *positions, const void *table,
                                           dk_cuda_dtype table_dtype, int64_t T, int64_t H, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
