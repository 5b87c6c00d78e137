/* lora_config.h — a PEFT LoRA adapter_config.json: which modules it adapts, with which rank and alpha, and
 * which whole modules it saved, read the way peft reads it (peft 0.21: tuners_utils.check_target_module_exists,
 * utils.other.get_pattern_key, LoraModel._create_and_replace).
 *
 * Why this exists: an adapter file's tensors are not the whole truth. peft creates a LoRA pair only for modules
 * the config selects (target_modules as a list of name suffixes or as one regular expression, minus
 * exclude_modules and modules_to_save, restricted to layers_to_transform found with layers_pattern), gives each
 * its rank and alpha (rank_pattern / alpha_pattern override r / lora_alpha for the first matching key), and
 * ignores tensors for anything else. lora.c applies exactly that selection.
 *
 * What changes the forward pass in ways diffkit does not implement is refused here by name: DoRA (use_dora),
 * trained biases (bias, lora_bias), layer replication, trainable tokens, target_parameters, activated LoRA,
 * QA-LoRA, the LoRA variants of peft (VeLoRA, KaSA, MonteCLoRA, BD-LoRA, Arrow), initialisations that rewrite
 * the base weights (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA, EVA), and any other field diffkit does not know that
 * is set. Fields that only matter for training (dropout, task type, ...) are ignored. */
#ifndef DK_LORA_CONFIG_H
#define DK_LORA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dk_lora_config {
    char *path;                  /* adapter_config.json (for messages) */
    int64_t r;
    double lora_alpha;
    bool use_rslora;
    char *target_regex;          /* target_modules as one string (re.fullmatch), or NULL */
    char **targets;              /* target_modules as a list of names (exact, or a ".NAME" suffix) */
    size_t n_targets;
    bool all_linear;             /* target_modules "all-linear": every projection of the decoder */
    char *exclude_regex;         /* exclude_modules as one string, or NULL */
    char **excludes;             /* exclude_modules as a list */
    size_t n_excludes;
    int64_t *layers;             /* layers_to_transform (an int becomes a list of one) */
    size_t n_layers;
    char **layers_patterns;      /* layers_pattern (a string becomes a list of one) */
    size_t n_layers_patterns;
    char **rank_keys;            /* rank_pattern, in file order */
    int64_t *rank_values;
    size_t n_rank;
    char **alpha_keys;           /* alpha_pattern, in file order */
    double *alpha_values;
    size_t n_alpha;
    char **modules_to_save;      /* whole modules trained and stored in the adapter ("lm_head", "embed_tokens") */
    size_t n_modules_to_save;
} dk_lora_config;

/* 0, or -1 with err (code 2 for an unsupported or malformed setting, naming the field; 1 when unreadable). */
int dk_lora_config_read(const char *path, dk_lora_config *c, dk_err *err);
void dk_lora_config_free(dk_lora_config *c);

/* peft's decision for one module name (as transformers names it in the model peft wrapped,
 * "model.layers.3.self_attn.q_proj"): 1 = adapted, 0 = not, -1 = err (a pattern is not a valid regex). */
int dk_lora_config_selects(const dk_lora_config *c, const char *module, dk_err *err);

/* The module's rank and alpha: r / lora_alpha unless a rank_pattern / alpha_pattern key matches the end of its
 * name (the first such key in file order). 0 or -1 with err (a bad pattern). */
int dk_lora_config_rank_alpha(const dk_lora_config *c, const char *module, int64_t *r, double *alpha, dk_err *err);

/* Whether a target_modules list entry names this module (equal, or its ".NAME" suffix). */
bool dk_lora_config_name_matches(const char *entry, const char *module);

#endif
