/* amplification.h — weight amplification of a LoRA organism (seed_spec.md §12): the seed's amplification config
 * (YAML), resolved for a model into one weight per (layer, attention | mlp), and set as the adapter's
 * per-(layer, module) multipliers (lora.h), which scale the LoRA term w · scale · B A exactly as the seed's
 * patch_lora_weights scales lora_B.weight.
 *
 * Schema (the seed's amplification_config.py):
 *   name: NAME                      required
 *   description: TEXT               optional
 *   adapters:                       optional; none = no amplification (every weight 1)
 *     - organism_name: custom | ORGANISM     (default custom)
 *       variant: ADAPTER_ID | null           (the seed overwrites it with the running adapter; not read here)
 *       layer_amplifications:                required (may be empty)
 *         - layers: all | N | [N, ...] | {type: range, start: A, end: B}     (ranges inclusive)
 *           is_relative: false | true        (default false; relative values f in [0, 1] mean layer
 *                                             round(f · (L − 1)), Python's round: halves to even)
 *           module_amplifications:           required
 *             - modules: attention | mlp | all
 *               weight: W
 * Resolution, as the seed: each layer_amplifications entry gives both module groups a weight (1 for a group it
 * does not list; a later listing of a group in the same entry wins) and sets it on every layer it names; later
 * entries overwrite earlier ones; layers no entry names keep weight 1. All adapters entries apply, in order, to the
 * one adapter being run (the seed's run() points every entry at the organism's adapter and patches one adapter
 * only); an entry naming another organism than the one being run is an error.
 * attention = q, k, v, o_proj (GPT-2: c_attn, attn.c_proj); mlp = gate, up, down_proj (c_fc, mlp.c_proj). Whole
 * modules an adapter saved (modules_to_save) are not LoRA B weights and are not scaled, as in the seed.
 *
 * Stricter than the seed, with a message instead of a silent surprise: unknown keys, a non-integer absolute
 * layer, a negative layer (Python would count it from the end), a layer past the model's last one, and a range
 * whose end comes before its start are errors naming the file, line and key.
 */
#ifndef DK_MODEL_AMPLIFICATION_H
#define DK_MODEL_AMPLIFICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/lora.h"

typedef enum { DK_AMP_ATTENTION, DK_AMP_MLP, DK_AMP_N_GROUPS } dk_amp_group;

typedef enum { DK_AMP_LAYERS_ALL, DK_AMP_LAYERS_LIST, DK_AMP_LAYERS_RANGE } dk_amp_layers_kind;

/* One layer_amplifications entry, checked but not yet tied to a model. */
typedef struct dk_amp_entry {
    char *organism_name;              /* of its adapters entry; NULL for custom */
    dk_amp_layers_kind kind;
    bool is_relative;
    double *values;                   /* LIST: [n_values] layers (fractions when relative); RANGE: [2] start, end */
    size_t n_values;
    double weight[DK_AMP_N_GROUPS];   /* attention, mlp */
    char *where;                      /* "file:line:col" of its layers key, for resolve-time errors */
} dk_amp_entry;

typedef struct dk_amp_config {
    char *name;
    char *description;
    char *source;                     /* the file it was read from */
    dk_amp_entry *entries;            /* [n_entries] in file order, adapters flattened */
    size_t n_entries;
} dk_amp_config;

/* Parses a config from YAML text; source names it in messages. 0, or -1 with err (code 2). */
int dk_amp_parse(const char *text, size_t len, const char *source, dk_amp_config *out, dk_err *err);
/* Reads a file, or a preset by name (NAME or NAME.yaml in <configs>/diffing/method/amplification_presets/ of
 * config_dir, or of the default configs folder when config_dir is NULL). An unknown preset lists the presets. */
int dk_amp_load(const char *file_or_preset, const char *config_dir, dk_amp_config *out, dk_err *err);
void dk_amp_free(dk_amp_config *c);

/* Weights (n_layers, DK_AMP_N_GROUPS) for a model of n_layers layers, when running `organism` (NULL: unknown, every
 * entry applies). 0, or -1 with err (code 2) naming the entry. */
int dk_amp_resolve(const dk_amp_config *c, const char *organism, int64_t n_layers, float *weights, dk_err *err);

/* The group a module belongs to. */
dk_amp_group dk_amp_group_of(dk_module m);

/* Sets a's per-(layer, module) multipliers from resolved weights (n_layers, DK_AMP_N_GROUPS); the saved modules'
 * multiplier stays 1. Returns how many (layer, group) pairs with a weight other than 1 have no adapted module
 * (the weight does nothing there: the caller may warn). */
int64_t dk_amp_apply(const float *weights, dk_lora_adapter *a);

/* dk_amp_resolve + dk_amp_apply for adapter a (n_layers from a). */
int dk_amp_apply_config(const dk_amp_config *c, const char *organism, dk_lora_adapter *a, int64_t *n_unadapted,
                        dk_err *err);

#endif
