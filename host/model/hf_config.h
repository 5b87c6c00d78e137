/* hf_config.h — a Hugging Face config.json, read into the numbers the forward pass needs.
 *
 * Why this exists: every architecture-specific choice of the engine (head_dim, GQA, RoPE base and scaling,
 * which layers use a sliding window, Gemma's softcaps and attention scale, tied embeddings, biases) comes
 * from config.json, and transformers fills whatever the file leaves out with per-class defaults
 * (gemma-3-4b's text_config holds 6 keys; Gemma's tie_word_embeddings is usually absent and means true).
 * Reading the file exactly as transformers does is what makes our logits match. This module:
 *   - accepts the architectures in scope: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
 *     Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, GPT2LMHeadModel (its own key names: n_embd,
 *     n_layer, ...), and the language models of Gemma3ForConditionalGeneration and
 *     Qwen2_5_VLForConditionalGeneration (nested "text_config", or Qwen2.5-VL's older flat file);
 *   - applies the defaults of each transformers config class (LlamaConfig, ..., Gemma3TextConfig) for
 *     keys that are absent or null;
 *   - reads both spellings of RoPE: transformers 4.x `rope_theta` + `rope_scaling` (legacy key `type`)
 *     and transformers 5 `rope_parameters` (one dict, or one per layer type for Gemma 3), and both
 *     `torch_dtype` and `dtype`;
 *   - resolves per-layer attention kinds (layer_types, sliding_window_pattern, Gemma 2 alternation,
 *     Mistral's all-sliding window, Qwen's use_sliding_window/max_window_layers) into one array;
 *   - fails with a message naming the file and the key for a missing required key, a wrong type or an
 *     inconsistent value, and lists the supported architectures for an unknown one.
 * Reference: models_formats.md §2 (fields), §3.3 (RoPE variants); tests compare with transformers'
 * own reading of config files it wrote (tests/engine/test_hf_config.c).
 */
#ifndef DK_HF_CONFIG_H
#define DK_HF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

typedef enum {
    DK_ARCH_LLAMA,    /* LlamaForCausalLM (Llama 3.x) */
    DK_ARCH_MISTRAL,  /* MistralForCausalLM: Llama's forward with a sliding window on every layer */
    DK_ARCH_QWEN2,    /* Qwen2ForCausalLM (Qwen2.5): q/k/v biases */
    DK_ARCH_QWEN3,    /* Qwen3ForCausalLM: per-head q/k RMSNorm */
    DK_ARCH_GEMMA2,   /* Gemma2ForCausalLM: (1+w) norms, sandwich norms, softcaps, alternating windows */
    DK_ARCH_GEMMA3,   /* Gemma3ForCausalLM / Gemma3ForConditionalGeneration's language model */
    DK_ARCH_GPT2,     /* GPT2LMHeadModel: learned positions, LayerNorm, GELU MLP without a gate, Conv1D weights */
    DK_ARCH_QWEN2_5_VL, /* Qwen2_5_VLForConditionalGeneration's language model: Qwen2's block, M-RoPE */
} dk_arch;

typedef enum { DK_ROPE_DEFAULT, DK_ROPE_LINEAR, DK_ROPE_LLAMA3, DK_ROPE_YARN } dk_rope_type;

/* One RoPE setting, with every default resolved (transformers 5 semantics). */
typedef struct dk_rope_params {
    dk_rope_type type;
    double theta;                 /* base */
    double factor;                /* linear, llama3, yarn; 1 for default */
    double low_freq_factor;       /* llama3 */
    double high_freq_factor;      /* llama3 */
    int64_t original_max_position_embeddings; /* llama3, yarn (default: max_position_embeddings) */
    double beta_fast, beta_slow;  /* yarn (32, 1) */
    double attention_factor;      /* yarn: multiplies cos/sin; given, or derived from factor/mscale; 1 otherwise */
    double mscale, mscale_all_dim; /* yarn, 0 when absent */
    bool truncate;                /* yarn: floor/ceil the correction range (default true) */
} dk_rope_params;

typedef enum { DK_LAYER_FULL_ATTENTION, DK_LAYER_SLIDING_ATTENTION } dk_layer_kind;

typedef enum { DK_ACT_SILU, DK_ACT_GELU_TANH, DK_ACT_GELU } dk_activation;

enum { DK_HF_MAX_EOS = 16 };

typedef struct dk_hf_config {
    char *path;                   /* the config.json read (for messages) */
    dk_arch arch;
    char architecture[64];        /* as written: "Qwen3ForCausalLM" */
    char model_type[32];          /* of the language model: "llama", "qwen3", "gemma3_text", ... */
    bool nested_text_config;      /* fields came from "text_config" (Gemma3ForConditionalGeneration) */

    int64_t vocab_size;           /* V */
    int64_t hidden_size;          /* H */
    int64_t intermediate_size;    /* I */
    int64_t num_hidden_layers;    /* L */
    int64_t num_attention_heads;  /* nh */
    int64_t num_key_value_heads;  /* nkv (divides nh) */
    int64_t head_dim;             /* D (Qwen3, Gemma: nh*D may differ from H) */
    int64_t max_position_embeddings; /* GPT-2: n_positions, the size of its position table */
    double rms_norm_eps;          /* the norms' epsilon (GPT-2: layer_norm_epsilon) */

    dk_rope_params rope;          /* full-attention layers */
    dk_rope_params rope_sliding;  /* sliding-window layers (Gemma 3: rope_local_base_freq, default type) */
    dk_layer_kind *layer_types;   /* (num_hidden_layers) */
    int64_t sliding_window;       /* window W of sliding layers; 0 when no layer slides */

    bool tie_word_embeddings;     /* LM head = embed_tokens (per-class default when absent) */
    bool attention_bias;          /* the config key (Llama, Qwen3, Gemma: q/k/v/o biases) */
    bool qkv_bias;                /* q/k/v projections have a bias (attention_bias, or always for Qwen2) */
    bool o_bias;                  /* o_proj has a bias */
    bool mlp_bias;                /* gate/up/down biases (Llama's mlp_bias) */
    bool qk_norm;                 /* per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3) */
    bool gemma_norms;             /* (1+w) RMSNorm, sqrt(H) embedding scale, pre/post-feedforward norms */
    bool layer_norm;              /* LayerNorm with weight and bias instead of RMSNorm (GPT-2) */
    bool learned_positions;       /* a position-embedding table added to the token embedding, no RoPE (GPT-2) */
    bool gated_mlp;               /* down(act(gate) ⊙ up); false: down(act(up)) (GPT-2's c_fc, c_proj) */
    int64_t mrope_section[3];     /* Qwen2.5-VL: how many of the D/2 RoPE frequencies take the temporal, height
                                   * and width position (sum D/2). Text-only input gives all three the token's
                                   * position, which is ordinary RoPE: the engine runs text only. 0s otherwise. */

    double query_pre_attn_scalar; /* Gemma: attention scale = query_pre_attn_scalar^-0.5; 0 for others */
    double attention_scale;       /* the score scale actually used: D^-0.5 or query_pre_attn_scalar^-0.5 */
    double attn_logit_softcapping;  /* 0 = none (Gemma 2: 50) */
    double final_logit_softcapping; /* 0 = none (Gemma 2: 30) */

    dk_activation activation;     /* MLP gate activation */
    char hidden_act[32];          /* as written (hidden_act / hidden_activation) */
    dk_dtype dtype;               /* torch_dtype / dtype; DK_DTYPE_INVALID when absent or unknown */
    char dtype_name[32];          /* as written, "" when absent */

    int64_t bos_token_id;         /* -1 when absent/null */
    int64_t pad_token_id;         /* -1 when absent/null */
    int n_eos_token_ids;          /* 0 when absent/null */
    int64_t eos_token_ids[DK_HF_MAX_EOS];
} dk_hf_config;

/* Reads a config.json, or <folder>/config.json when path is a folder. 0, or -1 with err set: code 2 for
 * an unsupported architecture or an invalid/missing key, 1 when the file cannot be read. */
int dk_hf_config_load(const char *path, dk_hf_config *cfg, dk_err *err);
/* Same from a JSON text; `path` is used in messages. */
int dk_hf_config_parse(const char *json_text, size_t len, const char *path, dk_hf_config *cfg, dk_err *err);
void dk_hf_config_free(dk_hf_config *cfg);

const char *dk_arch_name(dk_arch arch);          /* "llama", "qwen3", ... */
/* 0 when `architecture` (a config.json "architectures" entry, e.g. a model config's `architecture:`) is one the
 * engine runs; else -1 with err (code 2) naming it and listing the supported ones. `where` names the setting in
 * the message ("model.architecture (configs/model/x.yaml)"). */
int dk_hf_architecture_check(const char *architecture, const char *where, dk_err *err);
const char *dk_rope_type_name(dk_rope_type type); /* "default", "linear", "llama3", "yarn" */
/* Whether layer l uses sliding-window attention. */
static inline bool dk_hf_layer_is_sliding(const dk_hf_config *cfg, int64_t l) {
    return cfg->layer_types[l] == DK_LAYER_SLIDING_ATTENTION;
}
/* The RoPE setting of layer l. */
static inline const dk_rope_params *dk_hf_layer_rope(const dk_hf_config *cfg, int64_t l) {
    return dk_hf_layer_is_sliding(cfg, l) ? &cfg->rope_sliding : &cfg->rope;
}

#endif
