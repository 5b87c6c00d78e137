/* forward.h — the decoder forward pass on the CPU, for every architecture in hf_config.h, with hooks.
 *
 * Why this exists: every diffing method reads hidden states of a base model and its finetune, and those
 * must be the numbers transformers computes (fp32, eager attention; models_formats.md §3 and §7). One
 * function runs one packed batch: token ids of several sequences back to back (no padding) with their
 * offsets, causal attention within each sequence. A hook plan says what to read and what to change:
 *   - capture the residual stream after block l (transformers' hidden_states[l+1]; for the last block the
 *     raw residual, before the final norm that transformers applies to hidden_states[-1]);
 *   - steer: add strength · v after block l, at every position (or only during the prompt, which matters
 *     for generation), optionally times a per-sequence factor (many strengths in one batch);
 *   - patch: replace the residual after block l at one token (patchscope);
 *   - logits for all positions, the last position of each sequence, or none;
 * and the pass stops after the deepest block a hook needs when no logits are asked for (and no KV cache is
 * being filled). Captures are taken
 * after the block's steering and patching, i.e. they are what block l+1 reads.
 *
 * Numerics: fp32 activations, weights widened from bf16/f16 per tile (weights.h), fp32 GEMM accumulation
 * (OpenBLAS), attention and softmax in fp32. A LoRA adapter (lora.h) is passed per call, so one dk_model
 * (one mapping of the base weights) serves the base model (adapter NULL, or multiplier 0) and any number of
 * adapted organisms. With a KV cache (dk_kv_cache) the same function runs prompts and decode steps.
 *
 *     dk_model m;  dk_model_open("models/llama", &m, &err);
 *     int64_t starts[] = {0, 5, 12};                              // two sequences: tokens 0..4 and 5..11
 *     dk_batch b = {ids, 12, starts, 2};
 *     float *resid = malloc(12 * H * 4);                         // (T, H)
 *     dk_hook_plan plan = {.n_capture = 1, .capture_layers = (int64_t[]){3}, .captures = &resid};
 *     dk_forward(&m, NULL, &b, &plan, NULL, &err);
 */
#ifndef DK_MODEL_FORWARD_H
#define DK_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "model/hf_config.h"
#include "model/lora.h"
#include "model/weights.h"

typedef struct dk_model {
    dk_hf_config cfg;
    dk_model_weights w;
    float *inv_freq_full;      /* (D/2) RoPE of full-attention layers */
    float *inv_freq_sliding;   /* (D/2) RoPE of sliding layers */
    float rope_scaling_full, rope_scaling_sliding; /* attention_scaling (yarn), else 1 */
    float embed_scale;         /* Gemma: (float)sqrt(H); 1 otherwise */
    int64_t weight_tile_floats; /* size of the fp32 tile a bf16 matrix is widened into */
    int n_threads;             /* attention and fused-linear threads (OpenBLAS has its own) */
    int64_t fused_max_m;       /* linears with at most this many rows read bf16/f16/f32 weights in place
                                * (DK_WEIGHTS_FUSED_MAX_M; 0: always the tiled sgemm) */
} dk_model;

/* Reads <folder>/config.json and maps the checkpoint. 0, or -1 with err set. */
int dk_model_open(const char *folder, dk_model *m, dk_err *err);
void dk_model_close(dk_model *m);

typedef struct dk_batch {
    const int64_t *ids;        /* (n_tokens) packed */
    int64_t n_tokens;
    const int64_t *seq_start;  /* (n_seqs + 1): sequence s is tokens [seq_start[s], seq_start[s+1]) */
    int64_t n_seqs;
    bool is_prompt;            /* false for decode steps (prompt-only steering is then off) */
} dk_batch;

typedef enum { DK_LOGITS_NONE, DK_LOGITS_LAST, DK_LOGITS_ALL } dk_logits_mode;

typedef struct dk_steer {
    int64_t layer;             /* after block `layer` */
    float strength;
    const float *vector;       /* (H) */
    bool prompt_only;
    const float *seq_strength; /* (n_seqs) per-sequence multiplier of strength: sequence s of the packed batch
                                  gets strength · seq_strength[s] · vector (NULL = 1 for all), so one batch
                                  carries many steering strengths */
    int64_t linear_decay_steps; /* 0 = off; N > 0: the seed's linear_decay mode, for dk_generate (generate.h),
                                   which scales strength per generation step; dk_forward ignores the field */
} dk_steer;

typedef struct dk_patch {
    int64_t layer;             /* after block `layer` */
    int64_t token;             /* index into the packed batch */
    const float *vector;       /* (H): the new residual */
} dk_patch;

typedef struct dk_hook_plan {
    int64_t n_capture;
    const int64_t *capture_layers; /* (n_capture) */
    float **captures;              /* (n_capture) buffers of (n_tokens, H) */
    int64_t n_steer;
    const dk_steer *steers;
    int64_t n_patch;
    const dk_patch *patches;
    dk_logits_mode logits;
    float *logits_out;             /* ALL: (n_tokens, V); LAST: (n_seqs, V) */
} dk_hook_plan;

/* Keys and values of past positions, per layer and sequence, for generation. */
typedef struct dk_kv_cache {
    int64_t n_layers, n_seqs, capacity, kv_dim; /* kv_dim = n_kv_heads · D */
    float *k, *v;              /* (n_layers, n_seqs, capacity, kv_dim) */
    int64_t *length;           /* (n_seqs) positions already cached */
} dk_kv_cache;

void dk_kv_cache_init(dk_kv_cache *c, const dk_model *m, int64_t n_seqs, int64_t capacity);
/* Grows the cache (keeping its rows) to hold at least `capacity` positions per sequence: at least doubling, so
 * a long generation grows it log(n) times, as transformers' DynamicCache grows without a preset size. 0, or -1
 * with err (code 1) when the memory is not there: what the cache holds and what the growth needs. */
int dk_kv_cache_reserve(dk_kv_cache *c, int64_t capacity, dk_err *err);
/* Bytes of a cache of n_seqs x capacity positions. */
uint64_t dk_kv_cache_bytes(const dk_model *m, int64_t n_seqs, int64_t capacity);
void dk_kv_cache_free(dk_kv_cache *c);

/* Host bytes dk_forward allocates for a batch of n_tokens (its scratch and residual stream; not the caller's
 * capture and logits buffers), for a memory check before a large request. */
uint64_t dk_forward_host_bytes(const dk_model *m, int64_t n_tokens, int64_t n_seqs, const dk_lora_adapter *adapter);

/* Runs the batch through the model (adapter may be NULL). With a cache, sequence s of the batch continues
 * cache sequence s (positions start at cache->length[s], which then grows). 0, or -1 with err set for bad
 * input: a token id outside [0, V), a hook layer outside [0, L), a patch token outside the batch, an empty
 * sequence, a cache overflow. */
int dk_forward(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *batch, const dk_hook_plan *plan,
               dk_kv_cache *cache, dk_err *err);

/* The model's head applied to arbitrary residual-stream vectors, for logit lenses: logits (rows, V) =
 * lm_head(final_norm(x)) for x (rows, H), fp32 on the CPU, exactly as the last step of dk_forward computes them
 * (the same code: RMSNorm or LayerNorm, the adapter's saved lm_head mixed in when it has one; adapter may be
 * NULL) but WITHOUT the final logit soft-capping (Gemma 2), because the seed's logit lens calls ln_final and
 * lm_head directly (seed_spec §5.3). Works whatever backend runs the forwards: it reads the mapped weights.
 * dk_model_norm_unembed also returns normed (rows, H) and uses the caller's buffers: weight_tile
 * (m->weight_tile_floats floats), small and small2 (H floats each). */
void dk_model_unembed(const dk_model *m, const dk_lora_adapter *adapter, const float *x, int64_t rows, float *logits);
void dk_model_norm_unembed(const dk_model *m, const dk_lora_adapter *adapter, const float *x, int64_t rows,
                           float *normed, float *logits, float *weight_tile, float *small, float *small2);

/* The input checks dk_forward makes (token ids in range, offsets covering the batch, hook layers and patch
 * tokens in range, cache capacity; cache may be NULL), shared with the CUDA forward so that both backends
 * refuse the same input with the same message. 0, or -1 with err (code 2). */
int dk_forward_check_input(const dk_model *m, const dk_batch *b, const dk_hook_plan *plan, const dk_kv_cache *cache,
                           dk_err *err);

#endif
