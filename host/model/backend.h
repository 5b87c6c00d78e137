/* backend.h — where the forward pass runs: the switch device=auto|cpu|cuda, at the level dk_forward is called.
 *
 * Why this exists: jobs (diffkit forward, diff_preprocess) should not care which engine computes the
 * hidden states. A dk_backend wraps an open dk_model and runs dk_backend_forward with dk_forward's exact
 * API and semantics, either on the CPU (the reference) or on the GPU (forward_cuda.h).
 *   auto  the GPU when this build has CUDA and a device is present, else the CPU
 *   cpu   always the CPU reference
 *   cuda  the GPU; an error when this build has no CUDA or no device is present
 * Precision on the GPU: bf16 (default) or fp32 (dk_backend_options.cuda_fp32, for parity checks; the
 * environment variable DIFFKIT_CUDA_FP32=1 sets it too).
 * KV caches (generation): a dk_backend_cache lives where the backend runs (host memory on the CPU, device memory
 * on the GPU) and dk_backend_forward_cached runs a prefill or decode step through it; dk_generate_backend
 * (generate.h) generates on a backend. dk_backend_forward with a host dk_kv_cache runs on the CPU whatever
 * the device (the host cache cannot feed the GPU).
 *
 *     dk_backend be;
 *     if (dk_backend_open(&be, &model, &(dk_backend_options){.device = DK_DEVICE_AUTO}, &err) != 0) dk_die(&err);
 *     dk_backend_forward(&be, NULL, &batch, &plan, NULL, &err);   // as dk_forward
 *     dk_backend_close(&be);
 */
#ifndef DK_MODEL_BACKEND_H
#define DK_MODEL_BACKEND_H

#include <stdbool.h>

#include "model/forward.h"

typedef enum { DK_DEVICE_AUTO, DK_DEVICE_CPU, DK_DEVICE_CUDA } dk_device;

typedef struct dk_backend_options {
    dk_device device;
    bool cuda_fp32;            /* fp32 GPU mode instead of bf16 */
    int cuda_device;           /* GPU index (one rank per GPU: the node-local MPI rank); 0 by default */
} dk_backend_options;

typedef struct dk_backend {
    dk_device device;          /* resolved: DK_DEVICE_CPU or DK_DEVICE_CUDA */
    const dk_model *model;
    void *cuda;                /* dk_cuda_forward * when device is CUDA */
    bool cuda_fp32;            /* resolved GPU mode (fp32 instead of bf16) */
} dk_backend;

/* "auto", "cpu", "cuda" -> *out. 0, or -1 with err set (usage) naming the valid values. */
int dk_device_parse(const char *text, dk_device *out, dk_err *err);
const char *dk_device_name(dk_device d);
/* Whether this build has the CUDA backend (DIFFKIT_HAVE_CUDA) and a device is present. */
bool dk_backend_cuda_usable(void);

/* m must stay open while the backend is used. 0, or -1 with err set. */
int dk_backend_open(dk_backend *be, const dk_model *m, const dk_backend_options *opt, dk_err *err);
void dk_backend_close(dk_backend *be);
/* dk_forward's contract on the chosen device. */
int dk_backend_forward(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *batch,
                       const dk_hook_plan *plan, dk_kv_cache *cache, dk_err *err);

/* A KV cache where `be` runs (see the header). */
typedef struct dk_backend_cache {
    dk_device device;          /* the backend's: DK_DEVICE_CPU or DK_DEVICE_CUDA */
    dk_kv_cache host;          /* on the CPU */
    void *cuda;                /* dk_cuda_kv_cache * on the GPU */
} dk_backend_cache;

/* An empty cache of n_seqs sequences x capacity positions for be's model. 0, or -1 with err (out of memory). */
int dk_backend_cache_open(const dk_backend *be, int64_t n_seqs, int64_t capacity, dk_backend_cache *c, dk_err *err);
/* Grows the cache to hold at least `capacity` positions per sequence (at least doubling; rows kept). 0 or -1 + err. */
int dk_backend_cache_reserve(dk_backend_cache *c, int64_t capacity, dk_err *err);
int64_t dk_backend_cache_capacity(const dk_backend_cache *c);
/* (n_seqs) positions cached per sequence, on the host. */
const int64_t *dk_backend_cache_length(const dk_backend_cache *c);
void dk_backend_cache_free(dk_backend_cache *c);
/* dk_forward's contract with a KV cache (forward.h) on the chosen device; the cache must come from the same
 * backend (dk_backend_cache_open). */
int dk_backend_forward_cached(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *batch,
                              const dk_hook_plan *plan, dk_backend_cache *cache, dk_err *err);

/* Whether dk_backend_kl_rows runs: both backends on the GPU. */
bool dk_backend_kl_on_device(const dk_backend *base, const dk_backend *ft);
/* KL(ft ‖ base) of the next-token distributions at every token of `batch`, both forwards and the KL on the GPU
 * (dk_cuda_forward_kl: fp32, accuracy in kernels/cuda/diffops.cuh), only kl (n_tokens, host) coming back.
 * base and ft may be the same backend (an adapter on shared weights). Only when dk_backend_kl_on_device: on the
 * CPU, run the forwards with host logits and dk_cpu_kl_rows. 0, or -1 with err set. */
int dk_backend_kl_rows(dk_backend *base, const dk_lora_adapter *base_adapter, dk_backend *ft,
                       const dk_lora_adapter *ft_adapter, const dk_batch *batch, float temperature, float *kl,
                       dk_err *err);

/* What computes the activations, as stores record it: "cpu-fp32" (the reference), "cuda-bf16" or "cuda-fp32". */
const char *dk_backend_compute_name(const dk_backend *be);
/* The name dk_backend_compute_name would give a backend opened on `device` (auto resolved as dk_backend_open
 * does, DIFFKIT_CUDA_FP32 read), without opening one: for reuse checks that must not load weights. 0, or -1 with
 * err (device cuda in a build without CUDA). */
int dk_backend_compute_planned(dk_device device, const char **out, dk_err *err);
/* How many GPUs this build can use (0 without CUDA or without a device). */
int dk_backend_cuda_device_count(void);
/* On the GPU: sizes the activation arena up front for batches of up to max_tokens tokens and max_seqs
 * sequences with n_capture captures, no logits, and `adapter` (may be NULL); no-op on the CPU. 0 or -1 + err. */
int dk_backend_reserve(dk_backend *be, int64_t max_tokens, int64_t max_seqs, int64_t n_capture,
                       const dk_lora_adapter *adapter, dk_err *err);
/* Host buffers for captures: pinned (cudaMallocHost) on the GPU, so captures land without a staging copy;
 * plain malloc on the CPU. Aborts when memory runs out (as dk_malloc). Free with dk_backend_host_free. */
void *dk_backend_host_alloc(const dk_backend *be, size_t bytes);
void dk_backend_host_free(const dk_backend *be, void *p);

#endif
