/* forward_cuda.h — the decoder forward pass on one NVIDIA GPU, with the API and the semantics of
 * dk_forward (forward.h): packed variable-length batches, the same hook plan (capture after block l,
 * steering, patching, logits none/last/all, stop after the deepest block a hook needs), the same LoRA
 * adapters applied unmerged with per-(layer, module) multipliers, the same input checks and messages.
 *
 * Why this exists: the CPU forward is the reference; diffing real models needs the GPU. Everything the
 * forward does is a kernels/cuda op whose header states the CPU twin it matches, plus cuBLASLt GEMMs.
 *
 * Memory (c_cuda_anchors.md §5): at open, one device allocation holds every weight (bf16 in mode BF16,
 * fp32 in mode F32; q‖k‖v and gate‖up concatenated so each is one GEMM; norms, biases and RoPE inverse
 * frequencies fp32). A second allocation, the activation arena, is sized for the largest batch seen (or
 * reserved up front with dk_cuda_forward_reserve): batches that fit run with no cudaMalloc. The adapter's
 * A and B are uploaded on first use and kept while the same adapter is passed (multipliers are read at
 * every call). One compute stream; captures are snapshotted on the device (one D2D copy) and copied to pinned host
 * memory on a second stream while later blocks run; they land in the caller's buffers when the call
 * returns (directly when those buffers are pinned, e.g. from dk_cuda_host_alloc).
 *
 * Numerics: mode BF16 (the fast path): bf16 weights and activations between kernels, fp32 accumulation
 * in every GEMM and kernel, fp32 residual stream, fp32 captures and logits. Mode F32: fp32 throughout and
 * fp32 GEMMs (no TF32), for parity with the CPU reference (tests/gpu/test_forward_cuda.c).
 *
 * Attention: kernels/cuda/attention.cu (FFMA, both modes) by default; DIFFKIT_CUDA_ATTN=mma (read at open)
 * selects the tensor-core variant attention_mma.cu in mode BF16 when head_dim % 16 == 0.
 *
 * KV cache (generation, dk_cuda_forward_run_cached): keys and values per layer, sequence and position in the
 * mode's dtype (bf16 in BF16, fp32 in F32, as the q‖k‖v output they are copied from: the cache holds what a
 * full forward's attention would read), one device allocation each, filled by a packed prefill and extended by
 * decode steps (each sequence at its own offset: RoPE and the causal and sliding-window masks use absolute
 * positions). Attention then reads the cache (dk_cuda_attention_cached; the FFMA kernel, also with
 * DIFFKIT_CUDA_ATTN=mma). Generation on the GPU goes through dk_generate_backend (generate.h).
 *
 * STATUS: compiles for sm_80/sm_90; untested on hardware until a GPU session runs `make gpu-check`
 * (the KV cache and generation: tests/gpu/test_generate_cuda.c).
 */
#ifndef DK_MODEL_FORWARD_CUDA_H
#define DK_MODEL_FORWARD_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/dtype.h"
#include "model/forward.h"

typedef struct dk_cuda_forward dk_cuda_forward;

/* Whether a usable CUDA device is present (cudaGetDeviceCount > 0). */
bool dk_cuda_available(void);
/* How many CUDA devices are visible (0 when none or the runtime fails). */
int dk_cuda_device_count(void);
/* The current device's name ("NVIDIA H100 80GB HBM3"), into buf; "unknown GPU" if it cannot be read. */
void dk_cuda_device_name(char *buf, size_t cap);
/* Makes GPU `index` the calling thread's device (one rank per GPU: index = the node-local MPI rank, from
 * MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), modulo the device count). Call before dk_cuda_forward_open and
 * use the forward from the same thread. 0, or -1 with err set. */
int dk_cuda_select_device(int index, dk_err *err);

/* Uploads m's weights to the current device. m must stay open while the returned object is used.
 * 0, or -1 with err set (no GPU, out of device memory, head_dim > 256). */
int dk_cuda_forward_open(const dk_model *m, dk_cuda_dtype mode, dk_cuda_forward **out, dk_err *err);
void dk_cuda_forward_close(dk_cuda_forward *f);

/* Sizes the activation arena for batches of up to max_tokens tokens, max_seqs sequences, n_capture
 * captures, logits for max_logit_rows rows and an adapter of rank up to max_rank. */
int dk_cuda_forward_reserve(dk_cuda_forward *f, int64_t max_tokens, int64_t max_seqs, int64_t n_capture,
                            int64_t max_logit_rows, int64_t max_rank, dk_err *err);

/* dk_forward on the GPU without a KV cache. Synchronous: on return the captures and logits are in the plan's
 * host buffers. 0, or -1 with err set (the same input errors as dk_forward). */
int dk_cuda_forward_run(dk_cuda_forward *f, const dk_lora_adapter *adapter, const dk_batch *batch,
                        const dk_hook_plan *plan, dk_err *err);

/* KL(ft ‖ base) of the next-token distributions at every token of the batch (dk_cuda_kl_rows, accuracy in
 * kernels/cuda/diffops.cuh), without the logits leaving the device: the base forward (f_base, base_adapter),
 * then the finetuned one (f_ft, ft_adapter), both with logits for all tokens, then the KL kernel; only kl
 * (n_tokens, host) comes back. f_ft may be f_base (an adapter on the shared base weights): the base logits are
 * then copied aside on the device first (a second (n_tokens, V) fp32 buffer, kept for later calls). Both
 * objects on the current device. Synchronous. 0, or -1 with err (input errors as dk_forward; out of memory). */
int dk_cuda_forward_kl(dk_cuda_forward *f_base, const dk_lora_adapter *base_adapter, dk_cuda_forward *f_ft,
                       const dk_lora_adapter *ft_adapter, const dk_batch *batch, float temperature, float *kl,
                       dk_err *err);

/* Keys and values of past positions on the device, for generation: the twin of dk_kv_cache (forward.h). */
typedef struct dk_cuda_kv_cache {
    int64_t n_layers, n_seqs, capacity, kv_dim; /* kv_dim = n_kv_heads · D */
    dk_cuda_dtype dtype;       /* the forward's mode */
    void *k, *v;               /* device (n_layers, n_seqs, capacity, kv_dim) in dtype */
    int64_t *length;           /* host (n_seqs) positions already cached */
} dk_cuda_kv_cache;

/* A cache for f's model and mode, n_seqs sequences of `capacity` positions, empty. 0, or -1 with err (out of
 * device memory, n_seqs · capacity >= 2^31). */
int dk_cuda_kv_cache_open(const dk_cuda_forward *f, int64_t n_seqs, int64_t capacity, dk_cuda_kv_cache *c,
                          dk_err *err);
/* Grows the cache (keeping its rows) to at least `capacity` positions, at least doubling (as dk_kv_cache_reserve).
 * 0, or -1 with err (code 1) naming what the growth needs. */
int dk_cuda_kv_cache_reserve(dk_cuda_kv_cache *c, int64_t capacity, dk_err *err);
void dk_cuda_kv_cache_free(dk_cuda_kv_cache *c);

/* dk_forward with a KV cache on the GPU: sequence s of the batch continues cache sequence s (positions start at
 * cache->length[s], which then grows); every block runs (a skipped block would leave its cache rows unfilled).
 * cache NULL is dk_cuda_forward_run. The same input errors as dk_forward (cache overflow, sequence count). */
int dk_cuda_forward_run_cached(dk_cuda_forward *f, const dk_lora_adapter *adapter, const dk_batch *batch,
                               const dk_hook_plan *plan, dk_cuda_kv_cache *cache, dk_err *err);

/* Pinned host memory for capture buffers (copied into without a staging step). NULL on failure. */
void *dk_cuda_host_alloc(size_t bytes);
void dk_cuda_host_free(void *p);

/* Bytes of device memory held (weights, activation arena, adapter, KL buffers; not KV caches). */
size_t dk_cuda_forward_device_bytes(const dk_cuda_forward *f);

#endif
