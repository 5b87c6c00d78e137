/* lora.h — a PEFT LoRA adapter, applied unmerged on top of shared base weights (models_formats.md §5).
 *
 * Why unmerged: model diffing runs the base model and its finetuned "organism" side by side, and amplifies
 * the finetune (w > 1) or turns it off (w = 0) per layer and module. Merging would need a second copy of
 * every targeted weight; applying y += w · scale · B(A x) at run time needs only A and B (a few MB), so a
 * base and any number of adapters share one mapping of the base checkpoint. The multiplier w lives here,
 * one per (layer, module): w = 0 is exactly the base model (the term is skipped), w = 1 the finetune.
 *
 * Loading follows peft (lora_config.h has the rules): only the modules adapter_config.json selects are adapted,
 * each with its own rank and alpha (rank_pattern, alpha_pattern), scale = alpha / r, or alpha / sqrt(r) with
 * use_rslora; tensors for modules the config does not select are ignored with a warning, as peft ignores them;
 * a config that selects nothing, or names modules or layers the model does not have, is an error. GPT-2's fused
 * c_attn LoRA feeds q, k and v: each gets the shared A and its third of B's rows. Whole modules the adapter saved
 * (modules_to_save: lm_head, embed_tokens) replace the base's at multiplier 1 (base + w·(saved − base) at w).
 * LoRA tensors of a vision tower (Gemma 3, Qwen2.5-VL) are skipped: text-only input never reaches it. An adapter
 * whose tensor names or shapes do not fit the base (made for another base model) is an error.
 */
#ifndef DK_MODEL_LORA_H
#define DK_MODEL_LORA_H

#include <stdint.h>

#include "model/hf_config.h"
#include "model/weights.h"

typedef struct dk_lora_module {
    float *A;      /* (r, in_features) widened at load; NULL when this (layer, module) is not adapted */
    float *B;      /* (out_features, r) */
    int64_t r, in_features, out_features;
    float scale;   /* lora_alpha / r, or / sqrt(r) */
} dk_lora_module;

typedef struct dk_lora_adapter {
    char *path;
    int64_t n_layers;
    int64_t r;                /* the largest rank of any adapted module (scratch sizes) */
    double lora_alpha;
    bool use_rslora;
    dk_lora_module *modules;  /* (n_layers, DK_N_MODULES) */
    float *multiplier;        /* (n_layers, DK_N_MODULES), 1 after loading */
    int64_t n_adapted;        /* pairs with an A and a B */
    uint64_t load_id;         /* unique to this load in the process (never reused, unlike the struct's address):
                                 what a device backend keys its uploaded copy of A and B by */
    float *embed;             /* (V, H) embed_tokens saved whole in the adapter (modules_to_save), or NULL */
    float *lm_head;           /* (V, H) lm_head saved whole in the adapter, or NULL */
    float saved_multiplier;   /* w of the saved modules: base + w·(saved − base); 1 after loading */
} dk_lora_adapter;

/* Loads <folder>/adapter_config.json and adapter_model.safetensors for the base model described by cfg and
 * w. 0, or -1 with err set (code 2 for an unsupported configuration, 1 for a file or base mismatch). */
int dk_lora_load(const char *folder, const dk_hf_config *cfg, const dk_model_weights *w, dk_lora_adapter *a,
                 dk_err *err);
void dk_lora_free(dk_lora_adapter *a);

/* Sets every (layer, module) multiplier, and the saved modules' one, to w. */
void dk_lora_set_multiplier(dk_lora_adapter *a, float w);
static inline dk_lora_module *dk_lora_at(const dk_lora_adapter *a, int64_t layer, dk_module m) {
    return &a->modules[layer * DK_N_MODULES + m];
}

/* y (M, out) += w · scale · (x (M, in) · Aᵀ) · Bᵀ, with tmp (M, r) scratch. No-op when w == 0 or the module
 * is not adapted. */
void dk_lora_apply(float *y, const float *x, int64_t M, const dk_lora_module *mod, float w, float *tmp);

#endif
