/* forward.c — see forward.h. Layout: 1. opening a model; 2. the KV cache; 3. checking a batch and a plan;
 * 4. one decoder block; 5. dk_forward (embedding, blocks with hooks, head). The block follows transformers'
 * modeling_{llama,qwen2,qwen3,gemma2,gemma3,gpt2,qwen2_5_vl}.py line by line; the per-family switches are
 * config flags (qkv_bias, qk_norm, gemma_norms, softcaps, layer_norm, learned_positions, gated_mlp) rather than
 * separate code paths. Qwen2.5-VL's M-RoPE is ordinary RoPE for text (hf_config.h: mrope_section). */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "model/rope_freq.h"

/* fp32 tile a bf16 weight matrix is widened into: 16M floats (64 MB) keeps sgemm efficient and bounds the
 * extra memory of a multi-GB model. */
enum { WEIGHT_TILE_FLOATS = 16 << 20 };

/* ---------------------------------------------------------------------------------------------------
 * 1. Opening a model */

int dk_model_open(const char *folder, dk_model *m, dk_err *err) {
    memset(m, 0, sizeof *m);
    if (dk_hf_config_load(folder, &m->cfg, err) != 0) return -1;
    if (dk_model_weights_open(&m->cfg, folder, &m->w, err) != 0) {
        dk_hf_config_free(&m->cfg);
        return -1;
    }
    const dk_hf_config *c = &m->cfg;
    const int64_t half = c->head_dim / 2;
    m->inv_freq_full = dk_malloc((size_t)half * sizeof(float));
    m->inv_freq_sliding = dk_malloc((size_t)half * sizeof(float));
    dk_rope_inv_freq(&c->rope, c->head_dim, m->inv_freq_full, &m->rope_scaling_full);
    dk_rope_inv_freq(&c->rope_sliding, c->head_dim, m->inv_freq_sliding, &m->rope_scaling_sliding);
    /* Gemma: Gemma3TextScaledWordEmbedding / Gemma2's normalizer, a float32 tensor of hidden_size**0.5 */
    m->embed_scale = c->gemma_norms ? (float)sqrt((double)c->hidden_size) : 1.0f;
    int64_t largest = m->w.lm_head->numel;
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < DK_N_MODULES; k++)
            if (m->w.layers[l].proj[k].weight && m->w.layers[l].proj[k].weight->numel > largest)
                largest = m->w.layers[l].proj[k].weight->numel;
    m->weight_tile_floats = largest < WEIGHT_TILE_FLOATS ? largest : WEIGHT_TILE_FLOATS;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    m->n_threads = cpus > 0 ? (int)cpus : 1;
    m->fused_max_m = DK_WEIGHTS_FUSED_MAX_M;
    return 0;
}

void dk_model_close(dk_model *m) {
    dk_model_weights_close(&m->w);
    dk_hf_config_free(&m->cfg);
    free(m->inv_freq_full);
    free(m->inv_freq_sliding);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------------------
 * 2. KV cache */

void dk_kv_cache_init(dk_kv_cache *c, const dk_model *m, int64_t n_seqs, int64_t capacity) {
    c->n_layers = m->cfg.num_hidden_layers;
    c->n_seqs = n_seqs;
    c->capacity = capacity;
    c->kv_dim = m->cfg.num_key_value_heads * m->cfg.head_dim;
    size_t n = (size_t)(c->n_layers * n_seqs * capacity * c->kv_dim);
    c->k = dk_malloc((n ? n : 1) * sizeof(float));
    c->v = dk_malloc((n ? n : 1) * sizeof(float));
    c->length = dk_calloc((size_t)(n_seqs ? n_seqs : 1), sizeof *c->length);
}

uint64_t dk_kv_cache_bytes(const dk_model *m, int64_t n_seqs, int64_t capacity) {
    double floats = (double)m->cfg.num_hidden_layers * (double)n_seqs * (double)capacity *
                    (double)(m->cfg.num_key_value_heads * m->cfg.head_dim);
    double bytes = 2.0 * 4.0 * floats; /* keys and values, fp32 */
    return bytes >= 1.8e19 ? UINT64_MAX : (uint64_t)bytes;
}

int dk_kv_cache_reserve(dk_kv_cache *c, int64_t capacity, dk_err *err) {
    if (capacity <= c->capacity) return 0;
    int64_t grown = c->capacity * 2 > capacity ? c->capacity * 2 : capacity;
    size_t rows = (size_t)(c->n_layers * c->n_seqs), n = rows * (size_t)grown * (size_t)c->kv_dim;
    float *k = malloc((n ? n : 1) * sizeof(float)), *v = k ? malloc((n ? n : 1) * sizeof(float)) : NULL;
    if (!k || !v) {
        free(k);
        return dk_err_set(err, DK_EXIT_RUNTIME, "out of host memory growing the KV cache from %lld to %lld positions "
                          "(%zu MiB): generate fewer tokens", (long long)c->capacity, (long long)grown,
                          2 * n * sizeof(float) >> 20);
    }
    for (size_t r = 0; r < rows; r++) { /* each (layer, sequence) block keeps its rows at the new stride */
        memcpy(k + r * (size_t)grown * (size_t)c->kv_dim, c->k + r * (size_t)c->capacity * (size_t)c->kv_dim,
               (size_t)(c->capacity * c->kv_dim) * sizeof(float));
        memcpy(v + r * (size_t)grown * (size_t)c->kv_dim, c->v + r * (size_t)c->capacity * (size_t)c->kv_dim,
               (size_t)(c->capacity * c->kv_dim) * sizeof(float));
    }
    free(c->k);
    free(c->v);
    c->k = k;
    c->v = v;
    c->capacity = grown;
    return 0;
}

void dk_kv_cache_free(dk_kv_cache *c) {
    free(c->k);
    free(c->v);
    free(c->length);
    memset(c, 0, sizeof *c);
}

/* (capacity, kv_dim) rows of one layer and sequence */
static float *cache_rows(const dk_kv_cache *c, float *base, int64_t layer, int64_t seq) {
    return base + ((layer * c->n_seqs + seq) * c->capacity) * c->kv_dim;
}

/* ---------------------------------------------------------------------------------------------------
 * 3. Checking the input */

static int check_layer(const dk_model *m, int64_t layer, const char *what, dk_err *err) {
    const int64_t L = m->cfg.num_hidden_layers;
    if (layer < 0 || layer >= L)
        return dk_err_set(err, DK_EXIT_USAGE, "%s at layer %lld: %s has %lld layers (valid: 0..%lld)", what,
                          (long long)layer, m->cfg.path, (long long)L, (long long)L - 1);
    return 0;
}

int dk_forward_check_input(const dk_model *m, const dk_batch *b, const dk_hook_plan *plan, const dk_kv_cache *cache,
                           dk_err *err) {
    const int64_t V = m->cfg.vocab_size;
    if (b->n_seqs < 1 || b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->n_tokens)
        return dk_err_set(err, DK_EXIT_USAGE, "batch: %lld sequences whose offsets do not cover the %lld tokens",
                          (long long)b->n_seqs, (long long)b->n_tokens);
    for (int64_t s = 0; s < b->n_seqs; s++) {
        if (b->seq_start[s + 1] <= b->seq_start[s])
            return dk_err_set(err, DK_EXIT_USAGE, "batch: sequence %lld is empty", (long long)s);
        for (int64_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++)
            if (b->ids[t] < 0 || b->ids[t] >= V)
                return dk_err_set(err, DK_EXIT_USAGE,
                                  "sequence %lld, position %lld: token id %lld is outside the vocabulary of %s "
                                  "(vocab_size %lld: ids 0..%lld)",
                                  (long long)s, (long long)(t - b->seq_start[s]), (long long)b->ids[t], m->cfg.path,
                                  (long long)V, (long long)V - 1);
        const int64_t past = cache ? cache->length[s] : 0, end = past + b->seq_start[s + 1] - b->seq_start[s];
        if (m->cfg.learned_positions && end > m->cfg.max_position_embeddings)
            return dk_err_set(err, DK_EXIT_USAGE, "sequence %lld reaches position %lld, but %s has position embeddings "
                              "for %lld positions only (n_positions): shorten it (preprocessing.context_len)",
                              (long long)s, (long long)end - 1, m->cfg.path, (long long)m->cfg.max_position_embeddings);
        if (cache && cache->length[s] + (b->seq_start[s + 1] - b->seq_start[s]) > cache->capacity)
            return dk_err_set(err, DK_EXIT_USAGE, "sequence %lld: %lld cached + %lld new positions exceed the KV "
                              "cache capacity %lld", (long long)s, (long long)cache->length[s],
                              (long long)(b->seq_start[s + 1] - b->seq_start[s]), (long long)cache->capacity);
    }
    if (cache && cache->n_seqs != b->n_seqs)
        return dk_err_set(err, DK_EXIT_USAGE, "batch of %lld sequences with a KV cache of %lld", (long long)b->n_seqs,
                          (long long)cache->n_seqs);
    for (int64_t i = 0; i < plan->n_capture; i++)
        if (check_layer(m, plan->capture_layers[i], "capture", err) != 0) return -1;
    for (int64_t i = 0; i < plan->n_steer; i++)
        if (check_layer(m, plan->steers[i].layer, "steering", err) != 0) return -1;
    for (int64_t i = 0; i < plan->n_patch; i++) {
        if (check_layer(m, plan->patches[i].layer, "patch", err) != 0) return -1;
        if (plan->patches[i].token < 0 || plan->patches[i].token >= b->n_tokens)
            return dk_err_set(err, DK_EXIT_USAGE, "patch %lld: token %lld is outside the batch of %lld tokens",
                              (long long)i, (long long)plan->patches[i].token, (long long)b->n_tokens);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 4. One decoder block */

/* Activations of one forward call: (T, width) buffers sized for the widest projection. */
typedef struct scratch {
    float *h;        /* (T, H) normed input of a sub-block */
    float *q;        /* (T, nh·D) */
    float *k, *v;    /* (T, nkv·D) */
    float *attn;     /* (T, nh·D) */
    float *gate;     /* (T, I) */
    float *up;       /* (T, I) */
    float *out;      /* (T, H) output of a sub-block before the residual add */
    float *lora_tmp; /* (T, r) */
    float *cos_full, *sin_full;       /* (T, D) */
    float *cos_sliding, *sin_sliding; /* (T, D) */
    float *weight_tile;   /* (weight_tile_floats) */
    float *small;         /* (max(H, I, nh·D)) widened norm weight or bias */
    float *small2;        /* (H) widened LayerNorm bias */
    dk_attn_segment *segments; /* (n_seqs) */
} scratch;

static dk_rmsnorm_kind norm_kind(const dk_model *m) { return m->cfg.gemma_norms ? DK_RMSNORM_GEMMA : DK_RMSNORM_LLAMA; }

/* RMSNorm, or LayerNorm when the model has one (bias: its bias tensor; NULL for RMSNorm). */
static void norm(const dk_model *m, float *out, const float *x, const dk_st_tensor *weight, const dk_st_tensor *bias,
                 int64_t rows, int64_t dim, scratch *s) {
    const float *w = dk_weights_f32(weight, s->small);
    if (m->cfg.layer_norm)
        dk_cpu_layernorm(out, x, w, dk_weights_f32(bias, s->small2), rows, dim, (float)m->cfg.rms_norm_eps);
    else
        dk_cpu_rmsnorm(out, x, w, rows, dim, (float)m->cfg.rms_norm_eps, norm_kind(m));
}

/* y (T, out) = x Wᵀ + b, plus the adapter's term for this (layer, module). */
static void project(const dk_model *m, const dk_lora_adapter *adapter, int64_t layer, dk_module mod, float *y,
                    const float *x, int64_t T, scratch *s) {
    const dk_linear_weight *lin = &m->w.layers[layer].proj[mod];
    dk_weights_linear(y, x, T, lin, s->weight_tile, m->weight_tile_floats, s->small, m->n_threads, m->fused_max_m);
    if (adapter)
        dk_lora_apply(y, x, T, dk_lora_at(adapter, layer, mod), adapter->multiplier[layer * DK_N_MODULES + mod],
                      s->lora_tmp);
}

static dk_cpu_act cpu_act(dk_activation a) {
    return a == DK_ACT_SILU ? DK_CPU_ACT_SILU : a == DK_ACT_GELU_TANH ? DK_CPU_ACT_GELU_TANH : DK_CPU_ACT_GELU_ERF;
}

static void block(const dk_model *m, const dk_lora_adapter *adapter, int64_t l, float *x, const dk_batch *b,
                  dk_kv_cache *cache, scratch *s) {
    const dk_hf_config *c = &m->cfg;
    const dk_layer_weights *lw = &m->w.layers[l];
    const int64_t T = b->n_tokens, H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    const int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads, kv_dim = nkv * D;
    const bool sliding = dk_hf_layer_is_sliding(c, l);

    /* attention: h = norm(x); q, k, v; q/k norms; RoPE (not with learned positions) */
    norm(m, s->h, x, lw->input_norm, lw->input_norm_bias, T, H, s);
    project(m, adapter, l, DK_MOD_Q, s->q, s->h, T, s); /* (T, nh, D) */
    project(m, adapter, l, DK_MOD_K, s->k, s->h, T, s); /* (T, nkv, D) */
    project(m, adapter, l, DK_MOD_V, s->v, s->h, T, s); /* (T, nkv, D) */
    if (c->qk_norm) {
        norm(m, s->q, s->q, lw->q_norm, NULL, T * nh, D, s);
        norm(m, s->k, s->k, lw->k_norm, NULL, T * nkv, D, s);
    }
    if (!c->learned_positions) {
        const float *cos = sliding ? s->cos_sliding : s->cos_full, *sin = sliding ? s->sin_sliding : s->sin_full;
        dk_cpu_rope_apply(s->q, cos, sin, T, nh, D);
        dk_cpu_rope_apply(s->k, cos, sin, T, nkv, D);
    }

    /* each sequence attends to its own keys: the batch's rows, or its cache rows after appending them */
    for (int64_t q = 0; q < b->n_seqs; q++) {
        const int64_t start = b->seq_start[q], n = b->seq_start[q + 1] - start;
        dk_attn_segment *seg = &s->segments[q];
        seg->q = s->q + start * nh * D;
        seg->out = s->attn + start * nh * D;
        seg->n_q = n;
        if (cache) {
            float *kc = cache_rows(cache, cache->k, l, q), *vc = cache_rows(cache, cache->v, l, q);
            const int64_t past = cache->length[q];
            memcpy(kc + past * kv_dim, s->k + start * kv_dim, (size_t)(n * kv_dim) * sizeof(float));
            memcpy(vc + past * kv_dim, s->v + start * kv_dim, (size_t)(n * kv_dim) * sizeof(float));
            seg->k = kc;
            seg->v = vc;
            seg->n_k = past + n;
        } else {
            seg->k = s->k + start * kv_dim;
            seg->v = s->v + start * kv_dim;
            seg->n_k = n;
        }
    }
    dk_attn_params ap = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = D, .scale = (float)c->attention_scale,
                         .softcap = (float)c->attn_logit_softcapping, .window = sliding ? c->sliding_window : 0,
                         .n_threads = m->n_threads};
    dk_cpu_attention(s->segments, b->n_seqs, &ap);
    project(m, adapter, l, DK_MOD_O, s->out, s->attn, T, s); /* (T, H) */
    if (c->gemma_norms) norm(m, s->out, s->out, lw->post_attn_norm, NULL, T, H, s); /* sandwich: before the add */
    for (int64_t i = 0; i < T * H; i++) x[i] += s->out[i];

    /* MLP: h = norm(x); act(gate) ⊙ up, or act(up) without a gate (GPT-2); down */
    if (c->gemma_norms)
        norm(m, s->h, x, lw->pre_ff_norm, NULL, T, H, s);
    else
        norm(m, s->h, x, lw->post_attn_norm, lw->post_attn_norm_bias, T, H, s);
    project(m, adapter, l, DK_MOD_UP, s->up, s->h, T, s); /* (T, I) */
    if (c->gated_mlp) {
        project(m, adapter, l, DK_MOD_GATE, s->gate, s->h, T, s); /* (T, I) */
        dk_cpu_gated_act(s->gate, s->gate, s->up, (size_t)(T * I), cpu_act(c->activation));
    } else {
        dk_cpu_plain_act(s->gate, s->up, (size_t)(T * I), cpu_act(c->activation));
    }
    project(m, adapter, l, DK_MOD_DOWN, s->out, s->gate, T, s); /* (T, H) */
    if (c->gemma_norms) norm(m, s->out, s->out, lw->post_ff_norm, NULL, T, H, s);
    for (int64_t i = 0; i < T * H; i++) x[i] += s->out[i];
}

/* ---------------------------------------------------------------------------------------------------
 * 5. dk_forward */

/* x (T, H) = the token embeddings (Gemma: × sqrt(H)), plus the position embeddings (GPT-2). An adapter that
 * saved its own embed_tokens (modules_to_save) replaces the row at w = 1, base + w·(saved − base) otherwise. */
static void embed(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *batch, const int64_t *positions,
                  float *x, scratch *s) {
    const int64_t T = batch->n_tokens, H = m->cfg.hidden_size;
    const float w = adapter && adapter->embed ? adapter->saved_multiplier : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        float *row = x + t * H;
        dk_weights_rows_f32(m->w.embed, batch->ids[t], 1, row);
        if (w != 0.0f) {
            const float *saved = adapter->embed + batch->ids[t] * H;
            for (int64_t j = 0; j < H; j++) row[j] = w == 1.0f ? saved[j] : row[j] + w * (saved[j] - row[j]);
        }
        if (m->embed_scale != 1.0f)
            for (int64_t j = 0; j < H; j++) row[j] *= m->embed_scale;
        if (m->w.pos_embed) {
            dk_weights_rows_f32(m->w.pos_embed, positions[t], 1, s->small2);
            for (int64_t j = 0; j < H; j++) row[j] += s->small2[j];
        }
    }
}

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

/* Steering, patching and capture after block l, in that order. */
static void after_block(const dk_model *m, int64_t l, float *x, const dk_batch *b, const dk_hook_plan *plan) {
    const int64_t H = m->cfg.hidden_size, T = b->n_tokens;
    for (int64_t i = 0; i < plan->n_steer; i++) {
        const dk_steer *st = &plan->steers[i];
        if (st->layer != l || (st->prompt_only && !b->is_prompt)) continue;
        for (int64_t q = 0; q < b->n_seqs; q++) {
            const float strength = st->strength * (st->seq_strength ? st->seq_strength[q] : 1.0f);
            for (int64_t t = b->seq_start[q]; t < b->seq_start[q + 1]; t++)
                for (int64_t j = 0; j < H; j++) x[t * H + j] += strength * st->vector[j];
        }
    }
    for (int64_t i = 0; i < plan->n_patch; i++)
        if (plan->patches[i].layer == l)
            memcpy(x + plan->patches[i].token * H, plan->patches[i].vector, (size_t)H * sizeof(float));
    for (int64_t i = 0; i < plan->n_capture; i++)
        if (plan->capture_layers[i] == l) memcpy(plan->captures[i], x, (size_t)(T * H) * sizeof(float));
}

/* logits (rows, V) = h (rows, H) · LM headᵀ; with an adapter that saved its own lm_head (modules_to_save):
 * that head at w = 1, base + w·(saved − base) otherwise (w = 0: the base head alone). */
static void lm_head(const dk_model *m, const dk_lora_adapter *adapter, float *logits, const float *h, int64_t rows,
                    scratch *s) {
    const int64_t V = m->cfg.vocab_size, H = m->cfg.hidden_size;
    const float w = adapter && adapter->lm_head ? adapter->saved_multiplier : 0.0f;
    if (w == 1.0f) {
        dk_cpu_linear(logits, h, adapter->lm_head, NULL, rows, V, H);
        return;
    }
    dk_weights_matmul(logits, h, rows, m->w.lm_head, s->weight_tile, m->weight_tile_floats, m->n_threads,
                      m->fused_max_m);
    if (w == 0.0f) return;
    float *saved = dk_malloc((size_t)(rows * V) * sizeof(float)); /* (rows, V) */
    dk_cpu_linear(saved, h, adapter->lm_head, NULL, rows, V, H);
    for (int64_t i = 0; i < rows * V; i++) logits[i] += w * (saved[i] - logits[i]);
    free(saved);
}

void dk_model_norm_unembed(const dk_model *m, const dk_lora_adapter *adapter, const float *x, int64_t rows,
                           float *normed, float *logits, float *weight_tile, float *small, float *small2) {
    scratch s = {.weight_tile = weight_tile, .small = small, .small2 = small2};
    norm(m, normed, x, m->w.final_norm, m->w.final_norm_bias, rows, m->cfg.hidden_size, &s); /* (rows, H) */
    lm_head(m, adapter, logits, normed, rows, &s);                                         /* (rows, V) */
}

void dk_model_unembed(const dk_model *m, const dk_lora_adapter *adapter, const float *x, int64_t rows, float *logits) {
    const int64_t H = m->cfg.hidden_size;
    float *normed = dk_malloc((size_t)(rows * H) * sizeof(float));           /* (rows, H) */
    float *weight_tile = dk_malloc((size_t)m->weight_tile_floats * sizeof(float));
    float *small = dk_malloc((size_t)H * sizeof(float)), *small2 = dk_malloc((size_t)H * sizeof(float));
    dk_model_norm_unembed(m, adapter, x, rows, normed, logits, weight_tile, small, small2);
    free(normed);
    free(weight_tile);
    free(small);
    free(small2);
}

static void head(const dk_model *m, const dk_lora_adapter *adapter, const float *x, const dk_batch *b,
                 const dk_hook_plan *plan, scratch *s) {
    const dk_hf_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    int64_t rows = b->n_tokens;
    const float *src = x;
    if (plan->logits == DK_LOGITS_LAST) { /* the last position of each sequence, gathered into s->out */
        rows = b->n_seqs;
        for (int64_t q = 0; q < b->n_seqs; q++)
            memcpy(s->out + q * H, x + (b->seq_start[q + 1] - 1) * H, (size_t)H * sizeof(float));
        src = s->out;
    }
    dk_model_norm_unembed(m, adapter, src, rows, s->h, plan->logits_out, s->weight_tile, s->small, s->small2);
    const float cap = (float)c->final_logit_softcapping;
    if (cap > 0.0f)
        for (int64_t i = 0; i < rows * V; i++) plan->logits_out[i] = tanhf(plan->logits_out[i] / cap) * cap;
}

static void scratch_alloc(scratch *s, const dk_model *m, const dk_batch *b, const dk_lora_adapter *adapter) {
    const dk_hf_config *c = &m->cfg;
    const size_t T = (size_t)b->n_tokens, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t D = (size_t)c->head_dim, q_dim = (size_t)c->num_attention_heads * D;
    const size_t kv_dim = (size_t)c->num_key_value_heads * D, r = adapter ? (size_t)adapter->r : 1;
    size_t widest = H > I ? H : I;
    if (q_dim > widest) widest = q_dim;
    s->h = dk_malloc(T * H * sizeof(float));
    s->q = dk_malloc(T * q_dim * sizeof(float));
    s->k = dk_malloc(T * kv_dim * sizeof(float));
    s->v = dk_malloc(T * kv_dim * sizeof(float));
    s->attn = dk_malloc(T * q_dim * sizeof(float));
    s->gate = dk_malloc(T * I * sizeof(float));
    s->up = dk_malloc(T * I * sizeof(float));
    s->out = dk_malloc(T * H * sizeof(float));
    s->lora_tmp = dk_malloc(T * r * sizeof(float));
    s->cos_full = dk_malloc(T * D * sizeof(float));
    s->sin_full = dk_malloc(T * D * sizeof(float));
    s->cos_sliding = dk_malloc(T * D * sizeof(float));
    s->sin_sliding = dk_malloc(T * D * sizeof(float));
    s->weight_tile = dk_malloc((size_t)m->weight_tile_floats * sizeof(float));
    s->small = dk_malloc(widest * sizeof(float));
    s->small2 = dk_malloc(H * sizeof(float));
    s->segments = dk_malloc((size_t)b->n_seqs * sizeof *s->segments);
}

uint64_t dk_forward_host_bytes(const dk_model *m, int64_t n_tokens, int64_t n_seqs, const dk_lora_adapter *adapter) {
    const dk_hf_config *c = &m->cfg;
    const double H = (double)c->hidden_size, I = (double)c->intermediate_size, D = (double)c->head_dim;
    const double q_dim = (double)c->num_attention_heads * D, kv_dim = (double)c->num_key_value_heads * D;
    const double r = adapter ? (double)adapter->r : 1;
    /* per token, as scratch_alloc: h, out, x (H each), q, attn (q_dim), k, v (kv_dim), gate, up (I), lora_tmp,
     * four RoPE tables (D); then the positions (8 bytes) */
    double per_token = 4.0 * (3 * H + 2 * q_dim + 2 * kv_dim + 2 * I + r + 4 * D) + 8.0;
    double bytes = per_token * (double)n_tokens + 4.0 * (double)m->weight_tile_floats + 64.0 * (double)n_seqs;
    return bytes >= 1.8e19 ? UINT64_MAX : (uint64_t)bytes;
}

static void scratch_free(scratch *s) {
    float *bufs[] = {s->h, s->q, s->k, s->v, s->attn, s->gate, s->up, s->out, s->lora_tmp, s->cos_full,
                     s->sin_full, s->cos_sliding, s->sin_sliding, s->weight_tile, s->small, s->small2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->segments);
}

int dk_forward(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *batch, const dk_hook_plan *plan,
               dk_kv_cache *cache, dk_err *err) {
    if (dk_forward_check_input(m, batch, plan, cache, err) != 0) return -1;
    const dk_hf_config *c = &m->cfg;
    const int64_t T = batch->n_tokens, H = c->hidden_size, D = c->head_dim;
    scratch s;
    scratch_alloc(&s, m, batch, adapter);

    /* positions: 0.. within each sequence, continuing the cache */
    int64_t *positions = dk_malloc((size_t)T * sizeof *positions); /* (T) */
    for (int64_t q = 0; q < batch->n_seqs; q++)
        for (int64_t t = batch->seq_start[q]; t < batch->seq_start[q + 1]; t++)
            positions[t] = (cache ? cache->length[q] : 0) + (t - batch->seq_start[q]);
    dk_cpu_rope_tables(s.cos_full, s.sin_full, m->inv_freq_full, positions, T, D, m->rope_scaling_full);
    dk_cpu_rope_tables(s.cos_sliding, s.sin_sliding, m->inv_freq_sliding, positions, T, D, m->rope_scaling_sliding);

    float *x = dk_malloc((size_t)(T * H) * sizeof(float)); /* (T, H) the residual stream */
    embed(m, adapter, batch, positions, x, &s);
    free(positions);

    /* with a cache every block runs: a skipped block would leave its cache rows unfilled for later steps */
    const int64_t last = cache ? c->num_hidden_layers - 1 : deepest_layer(m, plan);
    for (int64_t l = 0; l <= last; l++) {
        block(m, adapter, l, x, batch, cache, &s);
        after_block(m, l, x, batch, plan);
    }
    if (plan->logits != DK_LOGITS_NONE) head(m, adapter, x, batch, plan, &s);
    if (cache)
        for (int64_t q = 0; q < batch->n_seqs; q++) cache->length[q] += batch->seq_start[q + 1] - batch->seq_start[q];
    free(x);
    scratch_free(&s);
    return 0;
}
