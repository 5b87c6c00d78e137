/* attention.cuh — causal GQA attention on the GPU for packed variable-length batches, twin of
 * kernels/cpu/attention.h (dk_cpu_attention) for prompts (no KV cache: every sequence's queries are its keys).
 *
 * Semantics, per sequence s (tokens [start_s, start_s + n_s) of the packed batch), query head h, query at
 * position p (0-based within s), KV head kvh = h / (n_heads / n_kv_heads):
 *   keys j with j <= p and, when window W > 0, j > p − W                (transformers' sliding window)
 *   s_j = (q · k_j) · scale;  softcap c > 0: s_j = c · tanh(s_j / c)
 *   out = Σ_j softmax(s)_j · v_j
 * Implementation: flash-style. A block owns DK_CUDA_ATTN_BQ queries of one sequence and one head, walks the
 * visible keys in tiles of 32 through shared memory, and keeps a running max, running sum and fp32
 * accumulator per query (online softmax: acc ← acc·e^(m_old − m_new) + Σ e^(s_j − m_new)·v_j). Inputs and
 * output are bf16 (mode BF16) or fp32 (mode F32); every score, exponent and sum is fp32. The result
 * differs from the CPU's two-pass softmax by rounding only. Plain FFMA (no tensor cores): simple and
 * obviously right first; a wgmma/mma version is future work (docs/perf.md).
 * Limits: head_dim <= 256 (every model in scope: 64, 128, 256); work is split by a tile list built on the
 * host (dk_cuda_attention_tiles), so sequences of any length mix in one launch.
 * q, k, v, out are rows of a token with strides ldq, ldk, ldv, ldo (elements), head h at columns
 * [h·D, (h+1)·D), so q, k and v can be column blocks of one fused q‖k‖v projection output. */
#ifndef DK_CUDA_ATTENTION_CUH
#define DK_CUDA_ATTENTION_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define DK_CUDA_ATTN_BQ 16      /* queries per block */
#define DK_CUDA_ATTN_MAX_D 256  /* largest head_dim */
#define DK_CUDA_ATTN_MMA_BQ 64  /* queries per block of the tensor-core variant (attention_mma.cu) */

#ifdef __cplusplus
extern "C" {
#endif

/* With a KV cache (generation; the CPU twin is the same dk_cpu_attention over cache rows, forward.c's block()):
 * the keys and values of layer l are k_cache, v_cache (n_seqs, capacity, ld_kv) in the cache's layout
 * (forward_cuda.h), already holding this call's new rows (dk_cuda_kv_append); sequence s has kv_past[s]
 * (device, int32) positions cached BEFORE this call, so the tile's query r sits at position
 * kv_past[s] + q0 + r and sees cache positions j <= that (and, with a window W, j > position − W).
 * q and out are the batch's rows as above. The tiles' 4th field must be the sequence index (as
 * dk_cuda_attention_tiles_bq writes it). One decode query per sequence fills 1 of the block's 16 query slots:
 * correct, not yet fast (a split-KV decode kernel is future work, docs/perf.md). */
cudaError_t dk_cuda_attention_cached(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k_cache,
                                     const void *v_cache, int64_t ld_kv, int64_t capacity, const int32_t *kv_past,
                                     const int32_t *tiles, int64_t n_tiles, int64_t n_heads, int64_t n_kv_heads,
                                     int64_t head_dim, float scale, float softcap, int64_t window, dk_cuda_dtype dtype,
                                     cudaStream_t stream);

/* Number of query tiles of a packed batch: Σ_s ceil(n_s / DK_CUDA_ATTN_BQ). */
int64_t dk_cuda_attention_n_tiles(const int64_t *seq_start, int64_t n_seqs);
/* Writes tiles (n_tiles, 4) int32 {sequence start row, first query (within the sequence), queries in the
 * tile, sequence index} on the host; returns n_tiles. seq_start (n_seqs + 1) as dk_batch. */
int64_t dk_cuda_attention_tiles(const int64_t *seq_start, int64_t n_seqs, int32_t *tiles);

/* Same with bq queries per tile (DK_CUDA_ATTN_MMA_BQ for dk_cuda_attention_mma). */
int64_t dk_cuda_attention_tiles_bq(const int64_t *seq_start, int64_t n_seqs, int64_t bq, int32_t *tiles);

/* out (T, ldo) dtype; q (T, ldq), k (T, ldk), v (T, ldv) dtype; tiles (n_tiles, 4) int32 on the device. */
cudaError_t dk_cuda_attention(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k, int64_t ldk,
                              const void *v, int64_t ldv, const int32_t *tiles, int64_t n_tiles, int64_t n_heads,
                              int64_t n_kv_heads, int64_t head_dim, float scale, float softcap, int64_t window,
                              dk_cuda_dtype dtype, cudaStream_t stream);

/* The tensor-core variant (attention_mma.cu; opt-in, see there): same semantics and arguments, bf16 only,
 * head_dim a multiple of 16, ldq/ldk/ldv multiples of 8, tiles built with bq = DK_CUDA_ATTN_MMA_BQ.
 * cudaErrorInvalidValue for anything else (callers then use dk_cuda_attention). */
cudaError_t dk_cuda_attention_mma(void *out, int64_t ldo, const void *q, int64_t ldq, const void *k, int64_t ldk,
                                  const void *v, int64_t ldv, const int32_t *tiles, int64_t n_tiles, int64_t n_heads,
                                  int64_t n_kv_heads, int64_t head_dim, float scale, float softcap, int64_t window,
                                  cudaStream_t stream);
/* Dynamic shared memory of one block of the tensor-core variant (140 KB at head_dim 256). */
size_t dk_cuda_attention_mma_smem(int64_t head_dim);

#ifdef __cplusplus
}
#endif

#endif
