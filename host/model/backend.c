/* backend.c — see backend.h. Without DIFFKIT_HAVE_CUDA every path leads to dk_forward. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#ifdef DIFFKIT_HAVE_CUDA
#include "model/forward_cuda.h"
#endif

int dk_device_parse(const char *text, dk_device *out, dk_err *err) {
    if (strcmp(text, "auto") == 0) *out = DK_DEVICE_AUTO;
    else if (strcmp(text, "cpu") == 0) *out = DK_DEVICE_CPU;
    else if (strcmp(text, "cuda") == 0) *out = DK_DEVICE_CUDA;
    else return dk_err_set(err, DK_EXIT_USAGE, "device \"%s\": expected auto, cpu or cuda", text);
    return 0;
}

const char *dk_device_name(dk_device d) {
    return d == DK_DEVICE_CPU ? "cpu" : d == DK_DEVICE_CUDA ? "cuda" : "auto";
}

bool dk_backend_cuda_usable(void) {
#ifdef DIFFKIT_HAVE_CUDA
    return dk_cuda_available();
#else
    return false;
#endif
}

#ifdef DIFFKIT_HAVE_CUDA
/* The GPU precision asked for: the option, or DIFFKIT_CUDA_FP32=1. */
static bool want_cuda_fp32(const dk_backend_options *opt) {
    const char *env = getenv("DIFFKIT_CUDA_FP32");
    return (opt && opt->cuda_fp32) || (env && strcmp(env, "1") == 0);
}
#endif

static dk_device resolve_device(dk_device want) {
    return want == DK_DEVICE_AUTO ? (dk_backend_cuda_usable() ? DK_DEVICE_CUDA : DK_DEVICE_CPU) : want;
}

int dk_backend_compute_planned(dk_device device, const char **out, dk_err *err) {
    const dk_device d = resolve_device(device);
    if (d == DK_DEVICE_CPU) {
        *out = "cpu-fp32";
        return 0;
    }
#ifdef DIFFKIT_HAVE_CUDA
    *out = want_cuda_fp32(NULL) ? "cuda-fp32" : "cuda-bf16";
    return 0;
#else
    *out = NULL;
    return dk_err_set(err, DK_EXIT_USAGE, "device cuda: this diffkit was built without CUDA (rebuild with nvcc "
                      "installed, or DIFFKIT_CUDA=ON); use device=cpu or auto");
#endif
}

int dk_backend_open(dk_backend *be, const dk_model *m, const dk_backend_options *opt, dk_err *err) {
    memset(be, 0, sizeof *be);
    be->model = m;
    const dk_device want = resolve_device(opt ? opt->device : DK_DEVICE_AUTO);
    if (want == DK_DEVICE_CPU) {
        be->device = DK_DEVICE_CPU;
        return 0;
    }
#ifdef DIFFKIT_HAVE_CUDA
    const bool fp32 = want_cuda_fp32(opt);
    dk_cuda_forward *f = NULL;
    if (dk_cuda_select_device(opt ? opt->cuda_device : 0, err) != 0) return -1;
    if (dk_cuda_forward_open(m, fp32 ? DK_CUDA_F32 : DK_CUDA_BF16, &f, err) != 0) return -1;
    be->cuda = f;
    be->cuda_fp32 = fp32;
    be->device = DK_DEVICE_CUDA;
    return 0;
#else
    return dk_err_set(err, DK_EXIT_USAGE, "device cuda: this diffkit was built without CUDA (rebuild with nvcc "
                      "installed, or DIFFKIT_CUDA=ON); use device=cpu or auto");
#endif
}

void dk_backend_close(dk_backend *be) {
#ifdef DIFFKIT_HAVE_CUDA
    if (be->cuda) dk_cuda_forward_close(be->cuda);
#endif
    memset(be, 0, sizeof *be);
}

int dk_backend_forward(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *batch,
                       const dk_hook_plan *plan, dk_kv_cache *cache, dk_err *err) {
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA && !cache) return dk_cuda_forward_run(be->cuda, adapter, batch, plan, err);
#endif
    return dk_forward(be->model, adapter, batch, plan, cache, err);
}

int dk_backend_cache_open(const dk_backend *be, int64_t n_seqs, int64_t capacity, dk_backend_cache *c, dk_err *err) {
    memset(c, 0, sizeof *c);
    c->device = be->device;
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA) {
        dk_cuda_kv_cache *dc = dk_calloc(1, sizeof *dc);
        if (dk_cuda_kv_cache_open(be->cuda, n_seqs, capacity, dc, err) != 0) {
            free(dc);
            return -1;
        }
        c->cuda = dc;
        return 0;
    }
#endif
    (void)err;
    dk_kv_cache_init(&c->host, be->model, n_seqs, capacity);
    return 0;
}

int dk_backend_cache_reserve(dk_backend_cache *c, int64_t capacity, dk_err *err) {
#ifdef DIFFKIT_HAVE_CUDA
    if (c->cuda) return dk_cuda_kv_cache_reserve(c->cuda, capacity, err);
#endif
    return dk_kv_cache_reserve(&c->host, capacity, err);
}

int64_t dk_backend_cache_capacity(const dk_backend_cache *c) {
#ifdef DIFFKIT_HAVE_CUDA
    if (c->cuda) return ((const dk_cuda_kv_cache *)c->cuda)->capacity;
#endif
    return c->host.capacity;
}

const int64_t *dk_backend_cache_length(const dk_backend_cache *c) {
#ifdef DIFFKIT_HAVE_CUDA
    if (c->cuda) return ((const dk_cuda_kv_cache *)c->cuda)->length;
#endif
    return c->host.length;
}

void dk_backend_cache_free(dk_backend_cache *c) {
#ifdef DIFFKIT_HAVE_CUDA
    if (c->cuda) {
        dk_cuda_kv_cache_free(c->cuda);
        free(c->cuda);
    }
#endif
    dk_kv_cache_free(&c->host);
    memset(c, 0, sizeof *c);
}

int dk_backend_forward_cached(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *batch,
                              const dk_hook_plan *plan, dk_backend_cache *cache, dk_err *err) {
    if (cache->device != be->device)
        return dk_err_set(err, DK_EXIT_RUNTIME, "KV cache on %s used with a backend on %s (a bug: open the cache "
                          "with dk_backend_cache_open on the same backend)", dk_device_name(cache->device),
                          dk_device_name(be->device));
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA) return dk_cuda_forward_run_cached(be->cuda, adapter, batch, plan, cache->cuda, err);
#endif
    return dk_forward(be->model, adapter, batch, plan, &cache->host, err);
}

bool dk_backend_kl_on_device(const dk_backend *base, const dk_backend *ft) {
    return base->device == DK_DEVICE_CUDA && ft->device == DK_DEVICE_CUDA;
}

int dk_backend_kl_rows(dk_backend *base, const dk_lora_adapter *base_adapter, dk_backend *ft,
                       const dk_lora_adapter *ft_adapter, const dk_batch *batch, float temperature, float *kl,
                       dk_err *err) {
#ifdef DIFFKIT_HAVE_CUDA
    if (dk_backend_kl_on_device(base, ft))
        return dk_cuda_forward_kl(base->cuda, base_adapter, ft->cuda, ft_adapter, batch, temperature, kl, err);
#endif
    (void)base_adapter, (void)ft_adapter, (void)batch, (void)temperature, (void)kl;
    return dk_err_set(err, DK_EXIT_RUNTIME, "KL on the device: the backends run on %s and %s, not both on cuda (a "
                      "bug: callers check dk_backend_kl_on_device)", dk_device_name(base->device),
                      dk_device_name(ft->device));
}

const char *dk_backend_compute_name(const dk_backend *be) {
    if (be->device != DK_DEVICE_CUDA) return "cpu-fp32";
    return be->cuda_fp32 ? "cuda-fp32" : "cuda-bf16";
}

int dk_backend_cuda_device_count(void) {
#ifdef DIFFKIT_HAVE_CUDA
    return dk_cuda_device_count();
#else
    return 0;
#endif
}

int dk_backend_reserve(dk_backend *be, int64_t max_tokens, int64_t max_seqs, int64_t n_capture,
                       const dk_lora_adapter *adapter, dk_err *err) {
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA) {
        int64_t rank = adapter ? (adapter->r + 7) / 8 * 8 : 0; /* the padded rank the forward lays out */
        return dk_cuda_forward_reserve(be->cuda, max_tokens, max_seqs, n_capture, 0, rank, err);
    }
#endif
    (void)be, (void)max_tokens, (void)max_seqs, (void)n_capture, (void)adapter, (void)err;
    return 0;
}

void *dk_backend_host_alloc(const dk_backend *be, size_t bytes) {
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA) {
        void *p = dk_cuda_host_alloc(bytes);
        CHECK(p != NULL, "cannot allocate %zu bytes of pinned host memory", bytes);
        return p;
    }
#endif
    (void)be;
    return dk_malloc(bytes ? bytes : 1);
}

void dk_backend_host_free(const dk_backend *be, void *p) {
#ifdef DIFFKIT_HAVE_CUDA
    if (be->device == DK_DEVICE_CUDA) {
        dk_cuda_host_free(p);
        return;
    }
#endif
    (void)be;
    free(p);
}
