/* weights.h — a decoder checkpoint's tensors, found by name and checked against config.json, left in place.
 *
 * Why this exists: a bf16 8B model is 16 GB on disk and would be 32 GB widened to fp32; it must run in
 * 24 GB. So nothing is copied at load: every tensor stays a pointer into the read-only mmap of the
 * safetensors files (host/io/safetensors.h), and the forward pass widens what it needs when it needs it:
 * norms and biases per use (a few KB), weight matrices a tile of rows at a time into one fp32 scratch
 * buffer (dk_weights_linear; a few rows of x, as in decoding, read the weight in place instead), the
 * embedding one gathered row per token, the LM head in tiles. Peak memory is then the file size (page
 * cache, shared with every process mapping it) plus the scratch and the activations. F32 checkpoints
 * whose data is 4-byte aligned are used directly, with no copy at all.
 *
 * Names (models_formats.md §3.8): `model.` for the causal LMs; the language model of
 * Gemma3ForConditionalGeneration is `model.language_model.` (transformers >= 4.52) or
 * `language_model.model.` (Hub originals), its head `lm_head.` or `language_model.lm_head.`; vision tensors
 * are ignored. Qwen2.5-VL's language model is `model.` (what transformers saves) or `model.language_model.`.
 * GPT-2 (`transformer.` or, in the Hub's original file, no prefix) stores its projections as Conv1D: an
 * (in, out) matrix, q, k and v fused in one c_attn. They are transposed once at load into (out, in) tensors
 * owned here (`derived`), q/k/v split apart, so that everything downstream (the tiled linear, LoRA shapes,
 * the CUDA upload) sees the layout of every other model; GPT-2 checkpoints are small (124M to 1.5B).
 * A missing tensor or a wrong shape is an error naming the tensor, expected vs found.
 */
#ifndef DK_MODEL_WEIGHTS_H
#define DK_MODEL_WEIGHTS_H

#include <stdint.h>

#include "io/safetensors.h"
#include "model/hf_config.h"

/* The seven projections of a decoder layer (the LoRA target names). */
typedef enum { DK_MOD_Q, DK_MOD_K, DK_MOD_V, DK_MOD_O, DK_MOD_GATE, DK_MOD_UP, DK_MOD_DOWN, DK_N_MODULES } dk_module;
const char *dk_module_name(dk_module m); /* "q_proj", ..., "down_proj" */

typedef struct dk_linear_weight {
    const dk_st_tensor *weight; /* (out_features, in_features), BF16/F16/F32, in the mapping */
    const dk_st_tensor *bias;   /* (out_features) or NULL */
    int64_t out_features, in_features;
} dk_linear_weight;

typedef struct dk_layer_weights {
    const dk_st_tensor *input_norm;     /* (H) */
    const dk_st_tensor *post_attn_norm; /* (H) */
    const dk_st_tensor *input_norm_bias;     /* (H) LayerNorm bias (GPT-2's ln_1), else NULL */
    const dk_st_tensor *post_attn_norm_bias; /* (H) GPT-2's ln_2, else NULL */
    const dk_st_tensor *pre_ff_norm;    /* (H) Gemma only, else NULL */
    const dk_st_tensor *post_ff_norm;   /* (H) Gemma only, else NULL */
    const dk_st_tensor *q_norm;         /* (D) Qwen3 / Gemma 3 only, else NULL */
    const dk_st_tensor *k_norm;         /* (D) */
    dk_linear_weight proj[DK_N_MODULES]; /* GPT-2: q/k/v from c_attn, o = attn.c_proj, up = c_fc,
                                          * down = mlp.c_proj, no gate (weight NULL) */
} dk_layer_weights;

typedef struct dk_model_weights {
    dk_st_checkpoint *ck;
    char prefix[64];                    /* "model.", "model.language_model.", "language_model.model." */
    const dk_st_tensor *embed;          /* (V, H) */
    const dk_st_tensor *final_norm;     /* (H) */
    const dk_st_tensor *final_norm_bias;/* (H) GPT-2's ln_f bias, else NULL */
    const dk_st_tensor *pos_embed;      /* (max_position_embeddings, H) GPT-2's wpe, else NULL */
    const dk_st_tensor *lm_head;        /* (V, H); the embedding when tied */
    int64_t n_layers;
    dk_layer_weights *layers;           /* (n_layers) */
    size_t file_bytes;                  /* sum of the mapped files' sizes */
    dk_st_tensor *derived;              /* (n_derived) tensors made at load (GPT-2), owned; data in derived_data
                                         * or a view into the mapping */
    size_t n_derived;
    void **derived_data;                /* (n_derived) the buffer each derived tensor owns, or NULL */
} dk_model_weights;

/* Opens the checkpoint in `folder` and binds every tensor the config's architecture needs. 0, or -1 with
 * err set (code 1: missing/corrupt file, missing tensor, wrong shape or dtype). */
int dk_model_weights_open(const dk_hf_config *cfg, const char *folder, dk_model_weights *w, dk_err *err);
void dk_model_weights_close(dk_model_weights *w);

/* 0 when `other` (a fully finetuned organism) has exactly the tensor shapes of `base`, so the two can be
 * compared layer by layer; else -1 with err naming the first tensor that differs, both shapes and both
 * checkpoints. */
int dk_model_weights_check_same_shapes(const dk_model_weights *base, const dk_model_weights *other, dk_err *err);

/* Rows [row0, row0 + n_rows) of a 2-D (or 1-D: one row) tensor widened into dst (n_rows * row_len floats). */
void dk_weights_rows_f32(const dk_st_tensor *t, int64_t row0, int64_t n_rows, float *dst);
/* The whole tensor as fp32: a pointer into the mapping when it is F32 and aligned, else widened into
 * scratch (which holds t->numel floats). For small tensors (norms, biases). */
const float *dk_weights_f32(const dk_st_tensor *t, float *scratch);

/* The default of dk_model.fused_max_m: up to this many rows of x, the linear reads the weight in place
 * through the fused kernel (kernels/cpu/linear_fused.h: one pass over the bf16/f16/f32 bytes, n_threads
 * threads over output rows); above it, the tiled sgemm. Decoding (one token per sequence) is below, prefill
 * above. The crossover was measured on a 1B-shaped bf16 model (docs/perf.md, "Generation (CPU)"). */
enum { DK_WEIGHTS_FUSED_MAX_M = 64 };

/* y (M, N) = x (M, K) · Wᵀ + b for a weight in the mapping. M <= fused_max_m: the fused kernel on n_threads
 * threads (in groups of DK_CPU_FUSED_MAX_M rows of x, each reading W once). Otherwise W is widened a tile of rows at a
 * time into scratch (scratch_floats floats, at least K) for OpenBLAS (its own threads). N = out_features,
 * K = in_features. bias_scratch holds N floats. */
void dk_weights_linear(float *y, const float *x, int64_t M, const dk_linear_weight *lin, float *scratch,
                       int64_t scratch_floats, float *bias_scratch, int n_threads, int64_t fused_max_m);
/* Same for a bare (N, K) weight tensor with no bias (the LM head). */
void dk_weights_matmul(float *y, const float *x, int64_t M, const dk_st_tensor *w, float *scratch,
                       int64_t scratch_floats, int n_threads, int64_t fused_max_m);

#endif
