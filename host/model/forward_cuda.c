/* forward_cuda.c — see forward_cuda.h. Layout: 1. device memory (a bump allocator over one allocation);
 * 2. uploading the weights; 3. the activation arena; 4. the adapter; 5. checking the input (the same checks
 * and messages as forward.c); 6. one decoder block; 7. dk_cuda_forward_run; 8. KL of two forwards, the logits
 * staying on the device; 9. the KV cache. The block is forward.c's block() op for op; the comments name the CPU
 * step each launch replaces. */
#include "forward_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/check_cuda.h"
#include "kernels/cpu/convert.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/diffops.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/hooks.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"

enum { ALIGN = 256, STAGE_FLOATS = 4 << 20, GEMM_WORKSPACE = 32 << 20 };

/* ---------------------------------------------------------------------------------------------------
 * 1. Device memory: sizes are counted in a first pass (base NULL), then one cudaMalloc, then the same
 *    sequence of takes hands out pointers. */

typedef struct bump {
    char *base;
    size_t used, size;
} bump;

static void *take(bump *b, size_t bytes) {
    size_t at = b->used;
    b->used += (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (!b->base) return NULL;
    if (b->used > b->size) dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "device arena overflow (a bug)");
    return b->base + at;
}

typedef struct layer_dev {
    float *input_norm, *post_attn_norm, *pre_ff_norm, *post_ff_norm; /* (H) */
    float *input_norm_bias, *post_attn_norm_bias;                    /* (H) LayerNorm biases (GPT-2) or NULL */
    float *q_norm, *k_norm;                                          /* (D) or NULL */
    void *qkv;       /* (qd + 2·kvd, H): rows of q_proj, then k_proj, then v_proj */
    float *qkv_bias; /* (qd + 2·kvd) or NULL */
    void *o;         /* (H, qd) */
    float *o_bias;   /* (H) or NULL */
    void *gate_up;   /* (2I, H): rows of gate_proj, then up_proj; without a gate (GPT-2): (I, H) of up_proj */
    float *gate_up_bias; /* (2I), (I) or NULL */
    void *down;      /* (H, I) */
    float *down_bias;    /* (H) or NULL */
} layer_dev;

/* LoRA factors are stored with the rank padded to r_pad = a multiple of 8 (zero rows of A, zero columns of
 * B): every LoRA GEMM then has 16-byte aligned rows, and the padding adds exact zeros to the products. */
typedef struct lora_dev {
    void *A, *B;     /* (r_pad, in), (out, r_pad) in the mode's dtype; NULL when not adapted */
    int64_t r_pad;
} lora_dev;

struct dk_cuda_forward {
    const dk_model *m;
    dk_cuda_dtype mode;
    size_t esize;                 /* bytes of one activation/weight element */
    int64_t qd, kvd, qkv_w;       /* nh·D, nkv·D, qd + 2·kvd */
    int64_t gu_w;                 /* width of the MLP's first projection: 2I (gate‖up), or I (up alone) */
    bool attn_mma;                /* tensor-core attention (DIFFKIT_CUDA_ATTN=mma, bf16, D % 16 == 0) */
    cudaStream_t stream, copy_stream;
    cudaEvent_t snapshot_done;
    dk_cuda_gemm *gemm;

    bump weights;
    void *embed, *lm_head;        /* (V, H) */
    void *pos_embed;              /* (n_positions, H) GPT-2's learned positions, or NULL */
    float *final_norm;            /* (H) */
    float *final_norm_bias;       /* (H) LayerNorm bias (GPT-2), or NULL */
    float *inv_freq_full, *inv_freq_sliding; /* (D/2) */
    layer_dev *layers;            /* (L) */

    /* activation arena, sized for cap_* */
    bump act;
    int64_t cap_tokens, cap_seqs, cap_capture, cap_logit_rows, cap_rank;
    float *x;                     /* (T, H) fp32 residual */
    void *h;                      /* (T, H) normed input of a sub-block */
    void *qkv;                    /* (T, qkv_w) */
    void *attn;                   /* (T, qd) */
    void *out;                    /* (T, H) sub-block output before the add */
    void *gu;                     /* (T, gu_w) */
    void *mlp;                    /* (T, I) act(gate) ⊙ up */
    void *lora_tmp;               /* (T, r_pad) */
    float *cos_full, *sin_full, *cos_sliding, *sin_sliding; /* (T, D) */
    int32_t *ids, *positions;     /* (T) */
    int32_t *tiles;               /* (T, 4) attention tiles (n_tiles <= T) */
    int32_t *last_rows;           /* (n_seqs) */
    int32_t *kv_rows;             /* (T) with a KV cache: cache row of each token within a layer */
    int32_t *kv_past;             /* (n_seqs) with a KV cache: positions cached before the call */
    float *hook_vectors;          /* (cap_hook_vectors, H) steering and patch vectors of the call */
    int64_t cap_hook_vectors;
    float *captures_dev;          /* (n_capture, T, H) snapshots */
    float *logits;                /* (logit rows, V) fp32 */
    /* pinned host memory */
    char *stage;                  /* per-call uploads: ids, positions, tiles, last rows, hook vectors */
    size_t stage_bytes;
    float *captures_host;         /* (n_capture, T, H) */

    /* dk_cuda_forward_kl's device memory (one allocation, grown as needed): the base model's logits kept
     * while this object runs the finetuned forward too (an adapter on shared weights), and the KL per row */
    float *kl_mem;                /* the allocation (kl_bytes): kl_keep, then kl_rows */
    size_t kl_bytes;
    float *kl_keep;               /* (kl_cap_rows, V) or NULL */
    float *kl_rows;               /* (kl_cap_rows) */
    int64_t kl_cap_rows;
    bool kl_has_keep;

    /* the adapter uploaded last, by its load_id (0: none); never by address, which a reload can reuse */
    uint64_t adapter_id;
    bump lora;
    lora_dev *lora_mods;          /* (L, DK_N_MODULES) */
    void *saved_embed, *saved_head; /* (V, H) the adapter's modules_to_save at saved_w (base + w·(saved − base)),
                                     * or NULL: the base's */
    float saved_w;
};

bool dk_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

int dk_cuda_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void dk_cuda_device_name(char *buf, size_t cap) {
    int dev = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        snprintf(buf, cap, "%s", prop.name);
    else
        snprintf(buf, cap, "unknown GPU");
}

int dk_cuda_select_device(int index, dk_err *err) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: no CUDA device is available");
    if (index < 0 || index >= n)
        return dk_err_set(err, DK_EXIT_USAGE, "device cuda: GPU %d does not exist (%d visible: 0..%d)", index, n, n - 1);
    cudaError_t st = cudaSetDevice(index);
    if (st != cudaSuccess)
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot use GPU %d (%s)", index, cudaGetErrorString(st));
    return 0;
}

void *dk_cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    return cudaMallocHost(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

void dk_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

size_t dk_cuda_forward_device_bytes(const dk_cuda_forward *f) {
    return f->weights.size + f->act.size + f->lora.size + f->kl_bytes;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. Weights: each tensor widened to fp32 on the host a chunk at a time (weights.h), narrowed to bf16 in
 *    mode BF16 (exact for bf16 checkpoints), copied up. Runs once per open. */

static void upload_floats(dk_cuda_forward *f, void *dst, const float *src, size_t n, bool as_mode) {
    if (as_mode && f->mode == DK_CUDA_BF16) {
        uint16_t *narrow = (uint16_t *)(f->stage + (size_t)STAGE_FLOATS * sizeof(float));
        for (size_t i = 0; i < n; i += STAGE_FLOATS) {
            size_t k = n - i < STAGE_FLOATS ? n - i : STAGE_FLOATS;
            dk_cpu_f32_to_bf16(narrow, src + i, k);
            CUDA_CHECK(cudaMemcpy((char *)dst + i * 2, narrow, k * 2, cudaMemcpyHostToDevice));
        }
    } else {
        CUDA_CHECK(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
    }
}

/* A 2-D weight (rows, cols) into dst in the mode's dtype; NULL dst (counting pass) does nothing. */
static void put_matrix(dk_cuda_forward *f, void *dst, const dk_st_tensor *t) {
    if (!dst) return;
    if ((t->dtype == DK_DTYPE_BF16 && f->mode == DK_CUDA_BF16) || (t->dtype == DK_DTYPE_F32 && f->mode == DK_CUDA_F32)) {
        /* already in the mode's dtype: copy the mapped bytes as they are (widening then narrowing a bf16
         * value is the identity) */
        CUDA_CHECK(cudaMemcpy(dst, t->data, (size_t)t->numel * f->esize, cudaMemcpyHostToDevice));
        return;
    }
    const int64_t rows = t->ndim >= 2 ? t->shape[0] : 1, cols = t->numel / rows;
    CHECK(cols <= STAGE_FLOATS, "%s: rows of %lld values exceed the upload stage", t->name, (long long)cols);
    const int64_t chunk = STAGE_FLOATS / cols;
    float *wide = (float *)f->stage;
    for (int64_t r = 0; r < rows; r += chunk) {
        int64_t n = rows - r < chunk ? rows - r : chunk;
        dk_weights_rows_f32(t, r, n, wide);
        upload_floats(f, (char *)dst + (size_t)(r * cols) * f->esize, wide, (size_t)(n * cols), true);
    }
}

/* A small tensor (norm, bias) as fp32. */
static void put_vector(dk_cuda_forward *f, float *dst, const dk_st_tensor *t) {
    if (!dst || !t) return;
    float *wide = (float *)f->stage;
    dk_weights_rows_f32(t, 0, t->ndim >= 2 ? t->shape[0] : 1, wide);
    upload_floats(f, dst, wide, (size_t)t->numel, false);
}

static void put_bias(dk_cuda_forward *f, float *dst, const dk_linear_weight *lin, int64_t n) {
    if (!dst) return;
    if (lin->bias) {
        put_vector(f, dst, lin->bias);
    } else { /* one of q/k/v without a bias next to others with one: zeros */
        CUDA_CHECK(cudaMemset(dst, 0, (size_t)n * sizeof(float)));
    }
}

/* The whole weight layout, counted (base NULL) or uploaded. */
static void layout_weights(dk_cuda_forward *f) {
    const dk_model *m = f->m;
    const dk_hf_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, D = c->head_dim;
    bump *b = &f->weights;
    f->embed = take(b, (size_t)(V * H) * f->esize);
    put_matrix(f, f->embed, m->w.embed);
    if (m->w.lm_head == m->w.embed) {
        f->lm_head = f->embed;
    } else {
        f->lm_head = take(b, (size_t)(V * H) * f->esize);
        put_matrix(f, f->lm_head, m->w.lm_head);
    }
    f->pos_embed = m->w.pos_embed ? take(b, (size_t)(m->w.pos_embed->numel) * f->esize) : NULL;
    if (m->w.pos_embed) put_matrix(f, f->pos_embed, m->w.pos_embed);
    f->final_norm = take(b, (size_t)H * 4);
    put_vector(f, f->final_norm, m->w.final_norm);
    f->final_norm_bias = m->w.final_norm_bias ? take(b, (size_t)H * 4) : NULL;
    put_vector(f, f->final_norm_bias, m->w.final_norm_bias);
    f->inv_freq_full = take(b, (size_t)(D / 2) * 4);
    f->inv_freq_sliding = take(b, (size_t)(D / 2) * 4);
    if (b->base) {
        upload_floats(f, f->inv_freq_full, m->inv_freq_full, (size_t)(D / 2), false);
        upload_floats(f, f->inv_freq_sliding, m->inv_freq_sliding, (size_t)(D / 2), false);
    }
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const dk_layer_weights *lw = &m->w.layers[l];
        layer_dev *d = &f->layers[l];
        d->input_norm = take(b, (size_t)H * 4);
        put_vector(f, d->input_norm, lw->input_norm);
        d->post_attn_norm = take(b, (size_t)H * 4);
        put_vector(f, d->post_attn_norm, lw->post_attn_norm);
        d->input_norm_bias = lw->input_norm_bias ? take(b, (size_t)H * 4) : NULL;
        put_vector(f, d->input_norm_bias, lw->input_norm_bias);
        d->post_attn_norm_bias = lw->post_attn_norm_bias ? take(b, (size_t)H * 4) : NULL;
        put_vector(f, d->post_attn_norm_bias, lw->post_attn_norm_bias);
        d->pre_ff_norm = lw->pre_ff_norm ? take(b, (size_t)H * 4) : NULL;
        put_vector(f, d->pre_ff_norm, lw->pre_ff_norm);
        d->post_ff_norm = lw->post_ff_norm ? take(b, (size_t)H * 4) : NULL;
        put_vector(f, d->post_ff_norm, lw->post_ff_norm);
        d->q_norm = lw->q_norm ? take(b, (size_t)D * 4) : NULL;
        put_vector(f, d->q_norm, lw->q_norm);
        d->k_norm = lw->k_norm ? take(b, (size_t)D * 4) : NULL;
        put_vector(f, d->k_norm, lw->k_norm);

        d->qkv = take(b, (size_t)(f->qkv_w * H) * f->esize);
        put_matrix(f, d->qkv, lw->proj[DK_MOD_Q].weight);
        put_matrix(f, d->qkv ? (char *)d->qkv + (size_t)(f->qd * H) * f->esize : NULL, lw->proj[DK_MOD_K].weight);
        put_matrix(f, d->qkv ? (char *)d->qkv + (size_t)((f->qd + f->kvd) * H) * f->esize : NULL,
                   lw->proj[DK_MOD_V].weight);
        const bool qkv_bias = lw->proj[DK_MOD_Q].bias || lw->proj[DK_MOD_K].bias || lw->proj[DK_MOD_V].bias;
        d->qkv_bias = qkv_bias ? take(b, (size_t)f->qkv_w * 4) : NULL;
        put_bias(f, d->qkv_bias, &lw->proj[DK_MOD_Q], f->qd);
        put_bias(f, d->qkv_bias ? d->qkv_bias + f->qd : NULL, &lw->proj[DK_MOD_K], f->kvd);
        put_bias(f, d->qkv_bias ? d->qkv_bias + f->qd + f->kvd : NULL, &lw->proj[DK_MOD_V], f->kvd);

        d->o = take(b, (size_t)(H * f->qd) * f->esize);
        put_matrix(f, d->o, lw->proj[DK_MOD_O].weight);
        d->o_bias = lw->proj[DK_MOD_O].bias ? take(b, (size_t)H * 4) : NULL;
        put_bias(f, d->o_bias, &lw->proj[DK_MOD_O], H);

        d->gate_up = take(b, (size_t)(f->gu_w * H) * f->esize);
        const bool gu_bias = lw->proj[DK_MOD_GATE].bias || lw->proj[DK_MOD_UP].bias;
        d->gate_up_bias = gu_bias ? take(b, (size_t)f->gu_w * 4) : NULL;
        if (c->gated_mlp) {
            put_matrix(f, d->gate_up, lw->proj[DK_MOD_GATE].weight);
            put_matrix(f, d->gate_up ? (char *)d->gate_up + (size_t)(I * H) * f->esize : NULL,
                       lw->proj[DK_MOD_UP].weight);
            put_bias(f, d->gate_up_bias, &lw->proj[DK_MOD_GATE], I);
            put_bias(f, d->gate_up_bias ? d->gate_up_bias + I : NULL, &lw->proj[DK_MOD_UP], I);
        } else { /* GPT-2: up (c_fc) alone */
            put_matrix(f, d->gate_up, lw->proj[DK_MOD_UP].weight);
            put_bias(f, d->gate_up_bias, &lw->proj[DK_MOD_UP], I);
        }

        d->down = take(b, (size_t)(H * I) * f->esize);
        put_matrix(f, d->down, lw->proj[DK_MOD_DOWN].weight);
        d->down_bias = lw->proj[DK_MOD_DOWN].bias ? take(b, (size_t)H * 4) : NULL;
        put_bias(f, d->down_bias, &lw->proj[DK_MOD_DOWN], H);
    }
}

int dk_cuda_forward_open(const dk_model *m, dk_cuda_dtype mode, dk_cuda_forward **out, dk_err *err) {
    const dk_hf_config *c = &m->cfg;
    if (!dk_cuda_available()) return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: no CUDA device is available");
    if (c->head_dim > DK_CUDA_ATTN_MAX_D || c->head_dim % 2 != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: head_dim %lld of %s is not supported (even, at most %d)",
                          (long long)c->head_dim, c->path, DK_CUDA_ATTN_MAX_D);
    dk_cuda_forward *f = dk_calloc(1, sizeof *f);
    f->m = m;
    f->mode = mode;
    f->esize = dk_cuda_dtype_size(mode);
    f->qd = c->num_attention_heads * c->head_dim;
    f->kvd = c->num_key_value_heads * c->head_dim;
    f->qkv_w = f->qd + 2 * f->kvd;
    f->gu_w = c->gated_mlp ? 2 * c->intermediate_size : c->intermediate_size;
    const char *attn = getenv("DIFFKIT_CUDA_ATTN");
    f->attn_mma = attn && strcmp(attn, "mma") == 0 && mode == DK_CUDA_BF16 && c->head_dim % 16 == 0 && f->qkv_w % 8 == 0;
    f->layers = dk_calloc((size_t)c->num_hidden_layers, sizeof *f->layers);
    f->lora_mods = dk_calloc((size_t)(c->num_hidden_layers * DK_N_MODULES), sizeof *f->lora_mods);
    CUDA_CHECK(cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&f->copy_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&f->snapshot_done, cudaEventDisableTiming));
    CUBLAS_CHECK(dk_cuda_gemm_create(&f->gemm, GEMM_WORKSPACE));
    f->stage_bytes = (size_t)STAGE_FLOATS * (sizeof(float) + 2);
    CUDA_CHECK(cudaMallocHost((void **)&f->stage, f->stage_bytes));

    layout_weights(f); /* counting pass */
    f->weights.size = f->weights.used;
    f->weights.used = 0;
    cudaError_t st = cudaMalloc((void **)&f->weights.base, f->weights.size);
    if (st != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the failed allocation's error: launchers report cudaGetLastError() */
        size_t need = f->weights.size;
        dk_cuda_forward_close(f);
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot allocate %.2f GB for the weights of %s (%s)",
                          (double)need / 1e9, c->path, cudaGetErrorString(st));
    }
    layout_weights(f); /* upload pass */
    CUDA_CHECK(cudaDeviceSynchronize());
    *out = f;
    return 0;
}

static void free_arena(bump *b) {
    if (b->base) CUDA_CHECK(cudaFree(b->base));
    memset(b, 0, sizeof *b);
}

void dk_cuda_forward_close(dk_cuda_forward *f) {
    if (!f) return;
    if (f->stream) CUDA_CHECK(cudaStreamSynchronize(f->stream));
    if (f->copy_stream) CUDA_CHECK(cudaStreamSynchronize(f->copy_stream));
    free_arena(&f->weights);
    free_arena(&f->act);
    free_arena(&f->lora);
    if (f->kl_mem) CUDA_CHECK(cudaFree(f->kl_mem));
    if (f->gemm) dk_cuda_gemm_destroy(f->gemm);
    if (f->snapshot_done) CUDA_CHECK(cudaEventDestroy(f->snapshot_done));
    if (f->stream) CUDA_CHECK(cudaStreamDestroy(f->stream));
    if (f->copy_stream) CUDA_CHECK(cudaStreamDestroy(f->copy_stream));
    if (f->stage) CUDA_CHECK(cudaFreeHost(f->stage));
    if (f->captures_host) CUDA_CHECK(cudaFreeHost(f->captures_host));
    free(f->layers);
    free(f->lora_mods);
    free(f);
}

/* ---------------------------------------------------------------------------------------------------
 * 3. Activation arena */

static void layout_activations(dk_cuda_forward *f) {
    const dk_hf_config *c = &f->m->cfg;
    const size_t T = (size_t)f->cap_tokens, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t D = (size_t)c->head_dim, V = (size_t)c->vocab_size, e = f->esize;
    bump *b = &f->act;
    f->x = take(b, T * H * 4);
    f->h = take(b, T * H * e);
    f->qkv = take(b, T * (size_t)f->qkv_w * e);
    f->attn = take(b, T * (size_t)f->qd * e);
    f->out = take(b, T * H * e);
    f->gu = take(b, T * (size_t)f->gu_w * e);
    f->mlp = take(b, T * I * e);
    f->lora_tmp = take(b, T * (size_t)(f->cap_rank > 0 ? f->cap_rank : 1) * e);
    f->cos_full = take(b, T * D * 4);
    f->sin_full = take(b, T * D * 4);
    f->cos_sliding = take(b, T * D * 4);
    f->sin_sliding = take(b, T * D * 4);
    f->ids = take(b, T * 4);
    f->positions = take(b, T * 4);
    f->tiles = take(b, T * 4 * 4);
    f->last_rows = take(b, (size_t)f->cap_seqs * 4);
    f->kv_rows = take(b, T * 4);
    f->kv_past = take(b, (size_t)f->cap_seqs * 4);
    f->hook_vectors = take(b, (size_t)f->cap_hook_vectors * H * 4);
    f->captures_dev = take(b, (size_t)f->cap_capture * T * H * 4);
    f->logits = take(b, (size_t)f->cap_logit_rows * V * 4);
}

static int grow(dk_cuda_forward *f, int64_t tokens, int64_t seqs, int64_t n_capture, int64_t logit_rows, int64_t rank,
                int64_t hook_vectors, dk_err *err) {
    if (tokens <= f->cap_tokens && seqs <= f->cap_seqs && n_capture <= f->cap_capture &&
        logit_rows <= f->cap_logit_rows && rank <= f->cap_rank && hook_vectors <= f->cap_hook_vectors)
        return 0;
    CUDA_CHECK(cudaStreamSynchronize(f->stream));
    CUDA_CHECK(cudaStreamSynchronize(f->copy_stream));
    free_arena(&f->act);
#define MAX_INTO(field, v) f->field = (v) > f->field ? (v) : f->field
    MAX_INTO(cap_tokens, tokens);
    MAX_INTO(cap_seqs, seqs);
    MAX_INTO(cap_capture, n_capture);
    MAX_INTO(cap_logit_rows, logit_rows);
    MAX_INTO(cap_rank, rank);
    MAX_INTO(cap_hook_vectors, hook_vectors);
#undef MAX_INTO
    layout_activations(f);
    f->act.size = f->act.used;
    f->act.used = 0;
    cudaError_t st = cudaMalloc((void **)&f->act.base, f->act.size);
    if (st != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the failed allocation's error: launchers report cudaGetLastError() */
        const double need = (double)f->act.size / 1e9;
        /* no arena now: forget the capacities, so that the next call lays one out again instead of taking
         * the NULL pointers of the counting pass as a fitting arena */
        f->cap_tokens = f->cap_seqs = f->cap_capture = f->cap_logit_rows = f->cap_rank = f->cap_hook_vectors = 0;
        memset(&f->act, 0, sizeof f->act);
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot allocate %.2f GB of activations for %lld tokens "
                          "(%s); use smaller batches", need, (long long)tokens, cudaGetErrorString(st));
    }
    layout_activations(f);
    /* pinned host memory: per-call uploads and capture landing space */
    const size_t H = (size_t)f->m->cfg.hidden_size;
    size_t stage = (size_t)f->cap_tokens * (4 + 4 + 16 + 4) + (size_t)f->cap_seqs * (4 + 4) +
                   (size_t)f->cap_hook_vectors * H * 4;
    if (stage > f->stage_bytes) {
        CUDA_CHECK(cudaFreeHost(f->stage));
        CUDA_CHECK(cudaMallocHost((void **)&f->stage, stage));
        f->stage_bytes = stage;
    }
    if (f->captures_host) CUDA_CHECK(cudaFreeHost(f->captures_host));
    f->captures_host = NULL;
    if (f->cap_capture > 0)
        CUDA_CHECK(cudaMallocHost((void **)&f->captures_host, (size_t)f->cap_capture * (size_t)f->cap_tokens * H * 4));
    return 0;
}

int dk_cuda_forward_reserve(dk_cuda_forward *f, int64_t max_tokens, int64_t max_seqs, int64_t n_capture,
                            int64_t max_logit_rows, int64_t max_rank, dk_err *err) {
    return grow(f, max_tokens, max_seqs, n_capture, max_logit_rows, max_rank, 8, err);
}

/* ---------------------------------------------------------------------------------------------------
 * 4. The adapter: A and B of every adapted (layer, module), narrowed to the mode's dtype, one allocation. */

static void layout_lora(dk_cuda_forward *f, const dk_lora_adapter *a) {
    for (int64_t l = 0; l < a->n_layers; l++)
        for (int k = 0; k < DK_N_MODULES; k++) {
            const dk_lora_module *mod = dk_lora_at(a, l, (dk_module)k);
            lora_dev *d = &f->lora_mods[l * DK_N_MODULES + k];
            d->A = d->B = NULL;
            if (!mod->A || !mod->B) continue;
            const int64_t r = mod->r, rp = (r + 7) / 8 * 8, in = mod->in_features, out = mod->out_features;
            d->r_pad = rp;
            d->A = take(&f->lora, (size_t)(rp * in) * f->esize);
            d->B = take(&f->lora, (size_t)(out * rp) * f->esize);
            if (!d->A) continue; /* counting pass */
            CUDA_CHECK(cudaMemset(d->A, 0, (size_t)(rp * in) * f->esize));
            upload_floats(f, d->A, mod->A, (size_t)(r * in), true); /* rows 0..r-1; the rest stay zero */
            float *b_pad = dk_calloc((size_t)(out * rp), sizeof(float)); /* (out, r_pad) */
            for (int64_t o = 0; o < out; o++) memcpy(b_pad + o * rp, mod->B + o * r, (size_t)r * sizeof(float));
            upload_floats(f, d->B, b_pad, (size_t)(out * rp), true);
            free(b_pad);
        }
}

/* A module the adapter saved whole (V, H fp32), mixed with the base's as base + w·(saved − base) (exactly the
 * saved one at w = 1), into dst in the mode's dtype; NULL dst (counting pass) does nothing. */
static void put_saved(dk_cuda_forward *f, void *dst, const dk_st_tensor *base, const float *saved, float w) {
    if (!dst) return;
    const int64_t rows = base->shape[0], cols = base->shape[1];
    const int64_t chunk = STAGE_FLOATS / cols;
    float *wide = (float *)f->stage;
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t n = rows - r < chunk ? rows - r : chunk;
        dk_weights_rows_f32(base, r, n, wide);
        const float *s = saved + r * cols;
        for (int64_t i = 0; i < n * cols; i++) wide[i] = w == 1.0f ? s[i] : wide[i] + w * (s[i] - wide[i]);
        upload_floats(f, (char *)dst + (size_t)(r * cols) * f->esize, wide, (size_t)(n * cols), true);
    }
}

/* The saved modules of adapter a at its current multiplier (none at w = 0: the base's are used). */
static void layout_saved(dk_cuda_forward *f, const dk_lora_adapter *a) {
    const dk_model *m = f->m;
    const size_t table = (size_t)(m->cfg.vocab_size * m->cfg.hidden_size) * f->esize;
    const float w = a->saved_multiplier;
    f->saved_embed = a->embed && w != 0.0f ? take(&f->lora, table) : NULL;
    put_saved(f, f->saved_embed, m->w.embed, a->embed, w);
    f->saved_head = a->lm_head && w != 0.0f ? take(&f->lora, table) : NULL;
    put_saved(f, f->saved_head, m->w.lm_head, a->lm_head, w);
    f->saved_w = w;
}

static int use_adapter(dk_cuda_forward *f, const dk_lora_adapter *a, dk_err *err) {
    if (a && a->load_id == 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: adapter %s was not loaded by dk_lora_load (no load id)",
                          a->path ? a->path : "(unnamed)");
    /* no adapter: the uploaded one stays (unused by this call), so that two models stepping together (logit
     * amplification: organism and base) do not upload the organism again at every step */
    if (!a) return 0;
    const bool saved = a->embed || a->lm_head;
    if (a->load_id == f->adapter_id && !(saved && a->saved_multiplier != f->saved_w)) return 0;
    CUDA_CHECK(cudaStreamSynchronize(f->stream));
    free_arena(&f->lora);
    f->adapter_id = 0;
    f->saved_embed = f->saved_head = NULL;
    memset(f->lora_mods, 0, (size_t)(f->m->cfg.num_hidden_layers * DK_N_MODULES) * sizeof *f->lora_mods);
    layout_lora(f, a);
    layout_saved(f, a);
    f->lora.size = f->lora.used;
    f->lora.used = 0;
    cudaError_t st = cudaMalloc((void **)&f->lora.base, f->lora.size ? f->lora.size : ALIGN);
    if (st != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the failed allocation's error: launchers report cudaGetLastError() */
        memset(&f->lora, 0, sizeof f->lora);
        memset(f->lora_mods, 0, (size_t)(f->m->cfg.num_hidden_layers * DK_N_MODULES) * sizeof *f->lora_mods);
        f->saved_embed = f->saved_head = NULL;
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot allocate the adapter %s (%s)", a->path,
                          cudaGetErrorString(st));
    }
    layout_lora(f, a);
    layout_saved(f, a);
    /* the uploads ran on the legacy default stream, which f->stream (cudaStreamNonBlocking) does not wait for,
     * and a cudaMemcpy from pageable memory (mode F32) may return before its DMA has landed */
    CUDA_CHECK(cudaDeviceSynchronize());
    f->adapter_id = a->load_id;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 5. Checking the input: the CPU forward's checks (dk_forward_check_input, same messages), plus the CUDA
 *    forward's own size limit. */

static int check_input(const dk_model *m, const dk_batch *b, const dk_hook_plan *plan, const dk_cuda_kv_cache *cache,
                       dk_err *err) {
    /* the CPU check reads the cache's shape and lengths only */
    const dk_kv_cache shape = cache ? (dk_kv_cache){.n_layers = cache->n_layers, .n_seqs = cache->n_seqs,
                                                    .capacity = cache->capacity, .kv_dim = cache->kv_dim,
                                                    .length = cache->length}
                                    : (dk_kv_cache){0};
    if (dk_forward_check_input(m, b, plan, cache ? &shape : NULL, err) != 0) return -1;
    if (b->n_tokens > 0x3fffffff)
        return dk_err_set(err, DK_EXIT_USAGE, "batch: %lld tokens; the CUDA forward takes at most 2^30 per call",
                          (long long)b->n_tokens);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 6. One decoder block */

/* y (T, ldy) [column offset already applied] = x (T, K) · Wᵀ for output columns [0, N), then the adapter's
 * term of (layer, mod) on those columns. */
static void project(dk_cuda_forward *f, const dk_lora_adapter *adapter, int64_t l, dk_module mod, void *y,
                    int64_t ldy, const void *x, int64_t T, const void *w, int64_t N, int64_t K) {
    if (w) CUBLAS_CHECK(dk_cuda_linear(f->gemm, y, ldy, f->mode, x, K, w, f->mode, T, N, K, 1.0f, 0.0f, f->stream));
    if (!adapter) return;
    const dk_lora_module *lm = dk_lora_at(adapter, l, mod);
    const lora_dev *d = &f->lora_mods[l * DK_N_MODULES + mod];
    const float mult = adapter->multiplier[l * DK_N_MODULES + mod];
    if (mult == 0.0f || !d->A) return; /* as dk_lora_apply: w == 0 is exactly the base model */
    CUBLAS_CHECK(dk_cuda_lora(f->gemm, y, ldy, x, K, d->A, d->B, f->lora_tmp, T, N, K, d->r_pad, mult * lm->scale,
                              f->mode, f->stream));
}

static dk_cuda_act cuda_act(dk_activation a) {
    return a == DK_ACT_SILU ? DK_CUDA_ACT_SILU : a == DK_ACT_GELU_TANH ? DK_CUDA_ACT_GELU_TANH : DK_CUDA_ACT_GELU_ERF;
}

/* out (rows, H) = the model's norm (RMSNorm, or LayerNorm with bias b) of rows of x (all, or row_index). */
static void norm_rows(dk_cuda_forward *f, void *out, const int32_t *row_index, const float *w, const float *b,
                      int64_t rows) {
    const dk_hf_config *c = &f->m->cfg;
    if (c->layer_norm)
        CUDA_CHECK(dk_cuda_layernorm(out, f->x, row_index, w, b, rows, c->hidden_size, (float)c->rms_norm_eps, f->mode,
                                     f->stream));
    else
        CUDA_CHECK(dk_cuda_rmsnorm(out, f->x, row_index, w, rows, c->hidden_size, (float)c->rms_norm_eps,
                                   c->gemma_norms, f->mode, f->stream));
}

/* x += delta (Gemma: post_w-normed first); h = the model's norm of x with (w, b) when h is given. */
static void add_norm(dk_cuda_forward *f, const void *delta, const float *post_w, void *h, const float *w,
                     const float *b, int64_t T) {
    const dk_hf_config *c = &f->m->cfg;
    if (c->layer_norm)
        CUDA_CHECK(dk_cuda_add_layernorm(f->x, delta, h, w, b, T, c->hidden_size, (float)c->rms_norm_eps, f->mode,
                                         f->stream));
    else
        CUDA_CHECK(dk_cuda_add_rmsnorm(f->x, delta, post_w, h, w, T, c->hidden_size, (float)c->rms_norm_eps,
                                       c->gemma_norms, f->mode, f->stream));
}

/* Block l. On entry f->h holds input_norm(x) when h_ready; on exit x is updated and, when next_norm is given,
 * f->h holds next_norm(x) (the next block's input norm, with next_bias for LayerNorm, fused into the last
 * residual add). */
static void block(dk_cuda_forward *f, const dk_lora_adapter *adapter, int64_t l, const dk_batch *b, bool h_ready,
                  const float *next_norm, const float *next_bias, int64_t n_tiles, dk_cuda_kv_cache *cache) {
    const dk_hf_config *c = &f->m->cfg;
    const layer_dev *d = &f->layers[l];
    const int64_t T = b->n_tokens, H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    const int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    const float eps = (float)c->rms_norm_eps;
    const bool gemma = c->gemma_norms, sliding = dk_hf_layer_is_sliding(c, l);
    const int64_t gu_w = f->gu_w;
    const size_t e = f->esize;
    char *qkv = f->qkv;

    /* attention: h = norm(x); q‖k‖v = h·Wqkvᵀ (+ bias, + LoRA per block of columns) */
    if (!h_ready) norm_rows(f, f->h, NULL, d->input_norm, d->input_norm_bias, T);
    project(f, NULL, l, DK_MOD_Q, qkv, f->qkv_w, f->h, T, d->qkv, f->qkv_w, H);
    if (d->qkv_bias) CUDA_CHECK(dk_cuda_add_bias(qkv, f->qkv_w, d->qkv_bias, T, f->qkv_w, f->mode, f->stream));
    if (adapter) {
        project(f, adapter, l, DK_MOD_Q, qkv, f->qkv_w, f->h, T, NULL, f->qd, H);
        project(f, adapter, l, DK_MOD_K, qkv + (size_t)f->qd * e, f->qkv_w, f->h, T, NULL, f->kvd, H);
        project(f, adapter, l, DK_MOD_V, qkv + (size_t)(f->qd + f->kvd) * e, f->qkv_w, f->h, T, NULL, f->kvd, H);
    }
    /* q/k norms and RoPE, fused (GPT-2: neither, its positions were added to the embedding) */
    if (!c->learned_positions) {
        const float *cos = sliding ? f->cos_sliding : f->cos_full, *sin = sliding ? f->sin_sliding : f->sin_full;
        CUDA_CHECK(dk_cuda_qk_norm_rope(qkv, f->qkv_w, T, nh, D, c->qk_norm ? d->q_norm : NULL, eps, gemma, cos, sin,
                                        f->mode, f->stream));
        CUDA_CHECK(dk_cuda_qk_norm_rope(qkv + (size_t)f->qd * e, f->qkv_w, T, nkv, D, c->qk_norm ? d->k_norm : NULL,
                                        eps, gemma, cos, sin, f->mode, f->stream));
    }
    if (cache) {
        /* append this call's keys and values to layer l's cache rows, then attend over the cache (forward.c's
         * memcpy into cache_rows, then dk_cpu_attention over them) */
        const size_t layer_off = (size_t)(l * cache->n_seqs * cache->capacity * cache->kv_dim) * e;
        char *kc = (char *)cache->k + layer_off, *vc = (char *)cache->v + layer_off;
        CUDA_CHECK(dk_cuda_kv_append(kc, vc, qkv + (size_t)f->qd * e, f->qkv_w, qkv + (size_t)(f->qd + f->kvd) * e,
                                     f->qkv_w, f->kv_rows, T, f->kvd, f->mode, f->stream));
        CUDA_CHECK(dk_cuda_attention_cached(f->attn, f->qd, qkv, f->qkv_w, kc, vc, f->kvd, cache->capacity, f->kv_past,
                                            f->tiles, n_tiles, nh, nkv, D, (float)c->attention_scale,
                                            (float)c->attn_logit_softcapping, sliding ? c->sliding_window : 0, f->mode,
                                            f->stream));
    } else if (f->attn_mma)
        CUDA_CHECK(dk_cuda_attention_mma(f->attn, f->qd, qkv, f->qkv_w, qkv + (size_t)f->qd * e, f->qkv_w,
                                         qkv + (size_t)(f->qd + f->kvd) * e, f->qkv_w, f->tiles, n_tiles, nh, nkv, D,
                                         (float)c->attention_scale, (float)c->attn_logit_softcapping,
                                         sliding ? c->sliding_window : 0, f->stream));
    else
        CUDA_CHECK(dk_cuda_attention(f->attn, f->qd, qkv, f->qkv_w, qkv + (size_t)f->qd * e, f->qkv_w,
                                     qkv + (size_t)(f->qd + f->kvd) * e, f->qkv_w, f->tiles, n_tiles, nh, nkv, D,
                                     (float)c->attention_scale, (float)c->attn_logit_softcapping,
                                     sliding ? c->sliding_window : 0, f->mode, f->stream));
    project(f, adapter, l, DK_MOD_O, f->out, H, f->attn, T, d->o, H, f->qd);
    if (d->o_bias) CUDA_CHECK(dk_cuda_add_bias(f->out, H, d->o_bias, T, H, f->mode, f->stream));
    /* x += (Gemma: post_attn_norm(out)) out; h = pre-MLP norm(x) */
    add_norm(f, f->out, gemma ? d->post_attn_norm : NULL, f->h, gemma ? d->pre_ff_norm : d->post_attn_norm,
             d->post_attn_norm_bias, T);

    /* MLP: gate‖up = h·Wguᵀ; act(gate) ⊙ up (GPT-2: up = h·Wupᵀ; act(up)); down */
    char *gu = f->gu;
    project(f, NULL, l, c->gated_mlp ? DK_MOD_GATE : DK_MOD_UP, gu, gu_w, f->h, T, d->gate_up, gu_w, H);
    if (d->gate_up_bias) CUDA_CHECK(dk_cuda_add_bias(gu, gu_w, d->gate_up_bias, T, gu_w, f->mode, f->stream));
    if (adapter && c->gated_mlp) {
        project(f, adapter, l, DK_MOD_GATE, gu, gu_w, f->h, T, NULL, I, H);
        project(f, adapter, l, DK_MOD_UP, gu + (size_t)I * e, gu_w, f->h, T, NULL, I, H);
    } else if (adapter) {
        project(f, adapter, l, DK_MOD_UP, gu, gu_w, f->h, T, NULL, I, H);
    }
    if (c->gated_mlp)
        CUDA_CHECK(dk_cuda_gated_act(f->mlp, gu, T, I, cuda_act(c->activation), f->mode, f->stream));
    else
        CUDA_CHECK(dk_cuda_plain_act(f->mlp, gu, T, I, cuda_act(c->activation), f->mode, f->stream));
    project(f, adapter, l, DK_MOD_DOWN, f->out, H, f->mlp, T, d->down, H, I);
    if (d->down_bias) CUDA_CHECK(dk_cuda_add_bias(f->out, H, d->down_bias, T, H, f->mode, f->stream));
    add_norm(f, f->out, gemma ? d->post_ff_norm : NULL, next_norm ? f->h : NULL, next_norm, next_bias, T);
}

/* ---------------------------------------------------------------------------------------------------
 * 7. The forward pass */

static int64_t deepest_layer(const dk_model *m, const dk_hook_plan *plan) {
    if (plan->logits != DK_LOGITS_NONE) return m->cfg.num_hidden_layers - 1;
    int64_t deepest = -1;
    for (int64_t i = 0; i < plan->n_capture; i++)
        if (plan->capture_layers[i] > deepest) deepest = plan->capture_layers[i];
    for (int64_t i = 0; i < plan->n_steer; i++)
        if (plan->steers[i].layer > deepest) deepest = plan->steers[i].layer;
    for (int64_t i = 0; i < plan->n_patch; i++)
        if (plan->patches[i].layer > deepest) deepest = plan->patches[i].layer;
    return deepest;
}

/* Whether a steer or patch writes the residual after block l (then the next input norm cannot be fused). */
static bool writes_after(const dk_hook_plan *plan, const dk_batch *b, int64_t l) {
    for (int64_t i = 0; i < plan->n_steer; i++)
        if (plan->steers[i].layer == l && !(plan->steers[i].prompt_only && !b->is_prompt)) return true;
    for (int64_t i = 0; i < plan->n_patch; i++)
        if (plan->patches[i].layer == l) return true;
    return false;
}

static bool is_pinned(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the (non-sticky) error of an unknown pointer */
        return false;
    }
    return a.type == cudaMemoryTypeHost;
}

/* dk_cuda_forward_run; with logits_to_host false the logits stay in f->logits (plan->logits_out unused). */
static int run(dk_cuda_forward *f, const dk_lora_adapter *adapter, const dk_batch *b, const dk_hook_plan *plan,
               dk_cuda_kv_cache *cache, bool logits_to_host, dk_err *err) {
    const dk_model *m = f->m;
    const dk_hf_config *c = &m->cfg;
    if (check_input(m, b, plan, cache, err) != 0) return -1;
    if (cache && (cache->dtype != f->mode || cache->n_layers != c->num_hidden_layers || cache->kv_dim != f->kvd))
        return dk_err_set(err, DK_EXIT_USAGE, "device cuda: the KV cache was opened for another model or mode (%lld "
                          "layers, kv_dim %lld) than %s", (long long)cache->n_layers, (long long)cache->kv_dim, c->path);
    const int64_t T = b->n_tokens, H = c->hidden_size, D = c->head_dim, V = c->vocab_size;
    const int64_t logit_rows = plan->logits == DK_LOGITS_ALL ? T : plan->logits == DK_LOGITS_LAST ? b->n_seqs : 0;
    const int64_t rank = adapter ? (adapter->r + 7) / 8 * 8 : 0, n_vectors = plan->n_steer + plan->n_patch;
    if (grow(f, T, b->n_seqs, plan->n_capture, logit_rows, rank, n_vectors, err) != 0) return -1;
    if (use_adapter(f, adapter, err) != 0) return -1;

    /* per-call uploads through the pinned stage: ids, positions, attention tiles, last rows, cache rows and
     * lengths, hook vectors */
    int32_t *ids = (int32_t *)f->stage, *pos = ids + T, *tiles = pos + T, *last = tiles + 4 * T;
    int32_t *kv_rows = last + b->n_seqs, *kv_past = kv_rows + T;
    float *vectors = (float *)(kv_past + b->n_seqs);
    for (int64_t s = 0; s < b->n_seqs; s++) {
        const int64_t past = cache ? cache->length[s] : 0; /* positions continue the cache */
        for (int64_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
            ids[t] = (int32_t)b->ids[t];
            pos[t] = (int32_t)(past + t - b->seq_start[s]);
            kv_rows[t] = (int32_t)(s * (cache ? cache->capacity : 0) + pos[t]);
        }
        last[s] = (int32_t)(b->seq_start[s + 1] - 1);
        kv_past[s] = (int32_t)past;
    }
    const bool mma = f->attn_mma && !cache; /* the tensor-core variant has no cache path */
    const int64_t n_tiles = dk_cuda_attention_tiles_bq(b->seq_start, b->n_seqs,
                                                       mma ? DK_CUDA_ATTN_MMA_BQ : DK_CUDA_ATTN_BQ, tiles);
    for (int64_t i = 0; i < plan->n_steer; i++) memcpy(vectors + i * H, plan->steers[i].vector, (size_t)H * 4);
    for (int64_t i = 0; i < plan->n_patch; i++)
        memcpy(vectors + (plan->n_steer + i) * H, plan->patches[i].vector, (size_t)H * 4);
    CUDA_CHECK(cudaMemcpyAsync(f->ids, ids, (size_t)T * 4, cudaMemcpyHostToDevice, f->stream));
    CUDA_CHECK(cudaMemcpyAsync(f->positions, pos, (size_t)T * 4, cudaMemcpyHostToDevice, f->stream));
    CUDA_CHECK(cudaMemcpyAsync(f->tiles, tiles, (size_t)n_tiles * 16, cudaMemcpyHostToDevice, f->stream));
    CUDA_CHECK(cudaMemcpyAsync(f->last_rows, last, (size_t)b->n_seqs * 4, cudaMemcpyHostToDevice, f->stream));
    if (cache) {
        CUDA_CHECK(cudaMemcpyAsync(f->kv_rows, kv_rows, (size_t)T * 4, cudaMemcpyHostToDevice, f->stream));
        CUDA_CHECK(cudaMemcpyAsync(f->kv_past, kv_past, (size_t)b->n_seqs * 4, cudaMemcpyHostToDevice, f->stream));
    }
    if (n_vectors)
        CUDA_CHECK(cudaMemcpyAsync(f->hook_vectors, vectors, (size_t)(n_vectors * H) * 4, cudaMemcpyHostToDevice,
                                   f->stream));

    CUDA_CHECK(dk_cuda_rope_tables(f->cos_full, f->sin_full, f->inv_freq_full, f->positions, T, D,
                                   m->rope_scaling_full, f->stream));
    CUDA_CHECK(dk_cuda_rope_tables(f->cos_sliding, f->sin_sliding, f->inv_freq_sliding, f->positions, T, D,
                                   m->rope_scaling_sliding, f->stream));
    const void *embed = adapter && f->saved_embed ? f->saved_embed : f->embed; /* an unused upload stays put */
    const void *lm_head = adapter && f->saved_head ? f->saved_head : f->lm_head;
    CUDA_CHECK(dk_cuda_embedding(f->x, f->ids, embed, f->mode, T, H,
                                 m->embed_scale, f->stream));
    if (f->pos_embed)
        CUDA_CHECK(dk_cuda_add_position_embedding(f->x, f->positions, f->pos_embed, f->mode, T, H, f->stream));

    /* with a cache every block runs: a skipped block would leave its cache rows unfilled for later steps */
    const int64_t last_layer = cache ? c->num_hidden_layers - 1 : deepest_layer(m, plan);
    bool h_ready = false;
    for (int64_t l = 0; l <= last_layer; l++) {
        const bool fuse_next = l < last_layer && !writes_after(plan, b, l);
        block(f, adapter, l, b, h_ready, fuse_next ? f->layers[l + 1].input_norm : NULL,
              fuse_next ? f->layers[l + 1].input_norm_bias : NULL, n_tiles, cache);
        h_ready = fuse_next;
        /* hooks after block l: steering, patching, capture (forward.c's after_block order) */
        for (int64_t i = 0; i < plan->n_steer; i++) {
            const dk_steer *st = &plan->steers[i];
            if (st->layer != l || (st->prompt_only && !b->is_prompt)) continue;
            if (!st->seq_strength) {
                CUDA_CHECK(dk_cuda_steer(f->x, f->hook_vectors + i * H, st->strength, T, H, f->stream));
                continue;
            }
            for (int64_t q = 0; q < b->n_seqs; q++) /* per-sequence strength: one launch per sequence's rows */
                CUDA_CHECK(dk_cuda_steer(f->x + b->seq_start[q] * H, f->hook_vectors + i * H,
                                         st->strength * st->seq_strength[q], b->seq_start[q + 1] - b->seq_start[q],
                                         H, f->stream));
        }
        for (int64_t i = 0; i < plan->n_patch; i++)
            if (plan->patches[i].layer == l)
                CUDA_CHECK(dk_cuda_patch(f->x, f->hook_vectors + (plan->n_steer + i) * H, plan->patches[i].token, H,
                                         f->stream));
        for (int64_t i = 0; i < plan->n_capture; i++) {
            if (plan->capture_layers[i] != l) continue;
            float *snap = f->captures_dev + (size_t)i * (size_t)(T * H);
            float *host = is_pinned(plan->captures[i]) ? plan->captures[i] : f->captures_host + (size_t)i * (size_t)(T * H);
            CUDA_CHECK(cudaMemcpyAsync(snap, f->x, (size_t)(T * H) * 4, cudaMemcpyDeviceToDevice, f->stream));
            CUDA_CHECK(cudaEventRecord(f->snapshot_done, f->stream));
            CUDA_CHECK(cudaStreamWaitEvent(f->copy_stream, f->snapshot_done, 0));
            CUDA_CHECK(cudaMemcpyAsync(host, snap, (size_t)(T * H) * 4, cudaMemcpyDeviceToHost, f->copy_stream));
        }
    }

    if (plan->logits != DK_LOGITS_NONE) {
        /* final norm (of every row, or the last row of each sequence), LM head in fp32 out, softcap */
        norm_rows(f, f->h, plan->logits == DK_LOGITS_LAST ? f->last_rows : NULL, f->final_norm, f->final_norm_bias,
                  logit_rows);
        CUBLAS_CHECK(dk_cuda_linear(f->gemm, f->logits, V, DK_CUDA_F32, f->h, H,
                                    lm_head, f->mode, logit_rows, V, H, 1.0f, 0.0f,
                                    f->stream));
        if (c->final_logit_softcapping > 0)
            CUDA_CHECK(dk_cuda_softcap(f->logits, logit_rows * V, (float)c->final_logit_softcapping, f->stream));
        if (logits_to_host)
            CUDA_CHECK(cudaMemcpyAsync(plan->logits_out, f->logits, (size_t)(logit_rows * V) * 4,
                                       cudaMemcpyDeviceToHost, f->stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(f->stream));
    CUDA_CHECK(cudaStreamSynchronize(f->copy_stream));
    for (int64_t i = 0; i < plan->n_capture; i++)
        if (plan->capture_layers[i] <= last_layer && !is_pinned(plan->captures[i]))
            memcpy(plan->captures[i], f->captures_host + (size_t)i * (size_t)(T * H), (size_t)(T * H) * 4);
    if (cache)
        for (int64_t s = 0; s < b->n_seqs; s++) cache->length[s] += b->seq_start[s + 1] - b->seq_start[s];
    return 0;
}

int dk_cuda_forward_run(dk_cuda_forward *f, const dk_lora_adapter *adapter, const dk_batch *b,
                        const dk_hook_plan *plan, dk_err *err) {
    return run(f, adapter, b, plan, NULL, true, err);
}

int dk_cuda_forward_run_cached(dk_cuda_forward *f, const dk_lora_adapter *adapter, const dk_batch *b,
                               const dk_hook_plan *plan, dk_cuda_kv_cache *cache, dk_err *err) {
    return run(f, adapter, b, plan, cache, true, err);
}

/* ---------------------------------------------------------------------------------------------------
 * 8. KL of two forwards on the device */

/* f's KL memory for `rows` rows, with room to keep a (rows, V) copy of logits when `keep`. */
static int kl_space(dk_cuda_forward *f, int64_t rows, bool keep, dk_err *err) {
    if (rows <= f->kl_cap_rows && (!keep || f->kl_has_keep)) return 0;
    CUDA_CHECK(cudaStreamSynchronize(f->stream));
    if (f->kl_mem) CUDA_CHECK(cudaFree(f->kl_mem));
    f->kl_mem = f->kl_keep = f->kl_rows = NULL;
    f->kl_bytes = 0;
    const int64_t cap = rows > f->kl_cap_rows ? rows : f->kl_cap_rows;
    keep = keep || f->kl_has_keep;
    f->kl_cap_rows = 0, f->kl_has_keep = false;
    const size_t keep_floats = keep ? (size_t)cap * (size_t)f->m->cfg.vocab_size : 0;
    const size_t bytes = (keep_floats + (size_t)cap) * sizeof(float);
    const cudaError_t st = cudaMalloc((void **)&f->kl_mem, bytes);
    if (st != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the failed allocation's error: launchers report cudaGetLastError() */
        f->kl_mem = NULL;
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot allocate %.2f GB for the KL of %lld tokens%s "
                          "(%s); use smaller batches", (double)bytes / 1e9, (long long)rows,
                          keep ? ", with a copy of the base model's logits" : "", cudaGetErrorString(st));
    }
    f->kl_keep = keep ? f->kl_mem : NULL; /* at the allocation's start: aligned like f->logits */
    f->kl_rows = f->kl_mem + keep_floats;
    f->kl_cap_rows = cap, f->kl_has_keep = keep, f->kl_bytes = bytes;
    /* all bits set: NaN as f32, so a row the KL kernel failed to write comes back non-finite (diff_kl's
     * non-finite check and test_kl_cuda see it) instead of as stale or zeroed memory */
    CUDA_CHECK(cudaMemsetAsync(f->kl_rows, 0xFF, (size_t)cap * sizeof(float), f->stream));
    return 0;
}

int dk_cuda_forward_kl(dk_cuda_forward *f_base, const dk_lora_adapter *base_adapter, dk_cuda_forward *f_ft,
                       const dk_lora_adapter *ft_adapter, const dk_batch *b, float temperature, float *kl,
                       dk_err *err) {
    const int64_t T = b->n_tokens, V = f_base->m->cfg.vocab_size;
    if (f_ft->m->cfg.vocab_size != V)
        return dk_err_set(err, DK_EXIT_USAGE, "KL: the base model has %lld tokens in its vocabulary, the finetuned "
                          "model %lld: the distributions cannot be compared", (long long)V,
                          (long long)f_ft->m->cfg.vocab_size);
    if (!(temperature > 0))
        return dk_err_set(err, DK_EXIT_USAGE, "KL: temperature %g: must be > 0", temperature);
    const dk_hook_plan plan = {.logits = DK_LOGITS_ALL}; /* the logits stay in f->logits */
    if (run(f_base, base_adapter, b, &plan, NULL, false, err) != 0) return -1;
    const bool same = f_base == f_ft;
    if (kl_space(f_ft, T, same, err) != 0) return -1;
    const float *base_logits = f_base->logits; /* f_base's stream is synchronized: they are complete */
    if (same) {
        CUDA_CHECK(cudaMemcpyAsync(f_ft->kl_keep, f_base->logits, (size_t)(T * V) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, f_ft->stream));
        base_logits = f_ft->kl_keep;
    }
    if (run(f_ft, ft_adapter, b, &plan, NULL, false, err) != 0) return -1;
    CUDA_CHECK(dk_cuda_kl_rows(f_ft->kl_rows, f_ft->logits, base_logits, T, V, temperature, f_ft->stream));
    CUDA_CHECK(cudaMemcpyAsync(kl, f_ft->kl_rows, (size_t)T * sizeof(float), cudaMemcpyDeviceToHost, f_ft->stream));
    CUDA_CHECK(cudaStreamSynchronize(f_ft->stream));
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 9. The KV cache: two device allocations (keys, values), (n_layers, n_seqs, capacity, kv_dim) each. */

static int kv_alloc(dk_cuda_kv_cache *c, int64_t capacity, void **k, void **v, dk_err *err) {
    const size_t bytes = (size_t)(c->n_layers * c->n_seqs * capacity * c->kv_dim) * dk_cuda_dtype_size(c->dtype);
    if (c->n_seqs * capacity >= 0x7fffffff)
        return dk_err_set(err, DK_EXIT_USAGE, "device cuda: a KV cache of %lld sequences x %lld positions: the CUDA "
                          "forward indexes at most 2^31 rows per layer; generate for fewer prompts at once",
                          (long long)c->n_seqs, (long long)capacity);
    *k = *v = NULL;
    cudaError_t st = cudaMalloc(k, bytes ? bytes : ALIGN);
    if (st == cudaSuccess) st = cudaMalloc(v, bytes ? bytes : ALIGN);
    if (st != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the failed allocation's error: launchers report cudaGetLastError() */
        if (*k) CUDA_CHECK(cudaFree(*k));
        *k = *v = NULL;
        return dk_err_set(err, DK_EXIT_RUNTIME, "device cuda: cannot allocate %.2f GB for a KV cache of %lld "
                          "sequences x %lld positions (%s); lower --max-new-tokens or generate for fewer prompts at "
                          "once", 2.0 * (double)bytes / 1e9, (long long)c->n_seqs, (long long)capacity,
                          cudaGetErrorString(st));
    }
    return 0;
}

int dk_cuda_kv_cache_open(const dk_cuda_forward *f, int64_t n_seqs, int64_t capacity, dk_cuda_kv_cache *c,
                          dk_err *err) {
    memset(c, 0, sizeof *c);
    c->n_layers = f->m->cfg.num_hidden_layers;
    c->n_seqs = n_seqs;
    c->kv_dim = f->kvd;
    c->dtype = f->mode;
    if (kv_alloc(c, capacity, &c->k, &c->v, err) != 0) return -1;
    c->capacity = capacity;
    c->length = dk_calloc((size_t)(n_seqs > 0 ? n_seqs : 1), sizeof *c->length);
    return 0;
}

int dk_cuda_kv_cache_reserve(dk_cuda_kv_cache *c, int64_t capacity, dk_err *err) {
    if (capacity <= c->capacity) return 0;
    const int64_t grown = c->capacity * 2 > capacity ? c->capacity * 2 : capacity;
    void *k, *v;
    if (kv_alloc(c, grown, &k, &v, err) != 0) return -1;
    /* each (layer, sequence) block keeps its rows at the new stride; forwards synchronize their stream before
     * returning, so no kernel is still writing the old cache */
    const size_t e = dk_cuda_dtype_size(c->dtype), old_pitch = (size_t)(c->capacity * c->kv_dim) * e;
    const size_t new_pitch = (size_t)(grown * c->kv_dim) * e, blocks = (size_t)(c->n_layers * c->n_seqs);
    if (old_pitch > 0 && blocks > 0) {
        CUDA_CHECK(cudaMemcpy2D(k, new_pitch, c->k, old_pitch, old_pitch, blocks, cudaMemcpyDeviceToDevice));
        CUDA_CHECK(cudaMemcpy2D(v, new_pitch, c->v, old_pitch, old_pitch, blocks, cudaMemcpyDeviceToDevice));
    }
    CUDA_CHECK(cudaDeviceSynchronize()); /* the copies ran on the legacy stream, which the forward's does not wait for */
    CUDA_CHECK(cudaFree(c->k));
    CUDA_CHECK(cudaFree(c->v));
    c->k = k;
    c->v = v;
    c->capacity = grown;
    return 0;
}

void dk_cuda_kv_cache_free(dk_cuda_kv_cache *c) {
    if (c->k) CUDA_CHECK(cudaFree(c->k));
    if (c->v) CUDA_CHECK(cudaFree(c->v));
    free(c->length);
    memset(c, 0, sizeof *c);
}
