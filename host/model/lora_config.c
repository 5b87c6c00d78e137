/* lora_config.c — see lora_config.h. Layout: 1. the fields of adapter_config.json and what diffkit does with each;
 * 2. reading them; 3. peft's selection rules. */
#include "lora_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/strutil.h"
#include "io/file.h"
#include "model/py_regex.h"

/* ---------------------------------------------------------------------------------------------------
 * 1. Fields. Read: peft_type, r, lora_alpha, use_rslora, target_modules, exclude_modules, layers_to_transform,
 *    layers_pattern, rank_pattern, alpha_pattern, modules_to_save, bias, init_lora_weights, ensure_weight_tying.
 *    fan_in_fan_out only transposes the delta when peft merges it (GPT-2's Conv1D): the unmerged product
 *    B(A x) diffkit computes is the same either way. */

static const char *const ignored_fields[] = {
    /* bookkeeping and training-only settings: no effect on what a saved adapter computes */
    "peft_type", "base_model_name_or_path", "revision", "task_type", "inference_mode", "auto_mapping", "lora_dropout",
    "peft_version", "megatron_core", "qalora_group_size", "fan_in_fan_out", "runtime_config",
    /* configurations of initialisations; the initialisation itself is checked (init_lora_weights) */
    "loftq_config", "eva_config", "corda_config", "lora_ga_config",
    /* read below */
    "r", "lora_alpha", "use_rslora", "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "rank_pattern", "alpha_pattern", "modules_to_save", "bias", "init_lora_weights", "ensure_weight_tying",
};

/* Settings that change the forward pass in ways diffkit does not implement: refused when set. */
static const char *const refused_fields[][2] = {
    {"use_dora", "DoRA (weight-decomposed LoRA)"},
    {"lora_bias", "a trained bias on lora_B"},
    {"layer_replication", "layer replication"},
    {"trainable_token_indices", "trainable token embeddings"},
    {"target_parameters", "LoRA on parameters rather than modules"},
    {"alora_invocation_tokens", "activated LoRA (aLoRA)"},
    {"use_qalora", "QA-LoRA"},
    {"velora_config", "VeLoRA"},
    {"kasa_config", "KaSA"},
    {"monteclora_config", "MonteCLoRA"},
    {"use_bdlora", "BD-LoRA"},
    {"arrow_config", "Arrow routing"},
    {"megatron_config", "Megatron-parallel LoRA layers"},
};

static bool json_is_empty(const cJSON *v) {
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) ||
           (cJSON_IsObject(v) && v->child == NULL) || (cJSON_IsNumber(v) && v->valuedouble == 0) ||
           (cJSON_IsString(v) && v->valuestring[0] == '\0');
}

static int refuse(const char *path, const cJSON *v, const char *field, const char *what, dk_err *err) {
    char *shown = cJSON_PrintUnformatted(v);
    dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\" is set (%.200s): %s, which diffkit cannot apply; use an adapter "
               "without it, or merge it into a full checkpoint", path, field, shown ? shown : "?", what);
    free(shown);
    return -1;
}

static int check_fields(const char *path, const cJSON *root, dk_err *err) {
    for (const cJSON *item = root->child; item; item = item->next) {
        const char *key = item->string;
        bool known = false;
        for (size_t i = 0; i < sizeof ignored_fields / sizeof ignored_fields[0] && !known; i++)
            known = strcmp(key, ignored_fields[i]) == 0;
        for (size_t i = 0; i < sizeof refused_fields / sizeof refused_fields[0] && !known; i++) {
            if (strcmp(key, refused_fields[i][0]) != 0) continue;
            known = true;
            if (!json_is_empty(item)) return refuse(path, item, key, refused_fields[i][1], err);
        }
        if (!known && !json_is_empty(item))
            return refuse(path, item, key, "a setting this version of diffkit does not know", err);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. Reading */

/* A string, or a list of strings, into a list. */
static int string_list(const char *path, const cJSON *v, const char *field, char ***out, size_t *n, dk_err *err) {
    *out = NULL;
    *n = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *out = dk_malloc(sizeof **out);
        (*out)[(*n)++] = dk_strdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\" must be a string or a list of strings", path, field);
    *out = dk_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof **out);
    for (const cJSON *s = v->child; s; s = s->next) {
        if (!cJSON_IsString(s))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\" must be a string or a list of strings", path, field);
        (*out)[(*n)++] = dk_strdup(s->valuestring);
    }
    return 0;
}

/* target_modules / exclude_modules: one string (a regex) or a list of names. */
static int modules_field(const char *path, const cJSON *v, const char *field, char **regex, char ***list, size_t *n,
                         dk_err *err) {
    *regex = NULL;
    if (cJSON_IsString(v)) {
        *regex = dk_strdup(v->valuestring);
        *list = NULL;
        *n = 0;
        return 0;
    }
    return string_list(path, v, field, list, n, err);
}

static int pattern_field(const char *path, const cJSON *v, const char *field, bool integer, char ***keys,
                         int64_t *ivalues_out[], double *dvalues_out[], size_t *n, dk_err *err) {
    *keys = NULL;
    *n = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsObject(v)) return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\" must be an object", path, field);
    size_t count = (size_t)cJSON_GetArraySize(v);
    *keys = dk_calloc(count + 1, sizeof **keys);
    if (integer) *ivalues_out = dk_calloc(count + 1, sizeof **ivalues_out);
    else *dvalues_out = dk_calloc(count + 1, sizeof **dvalues_out);
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || (integer && (e->valuedouble < 1 || e->valuedouble != floor(e->valuedouble))))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: \"%s\".\"%s\" must be %s", path, field, e->string,
                              integer ? "a positive integer (a rank)" : "a number (an alpha)");
        (*keys)[*n] = dk_strdup(e->string);
        if (integer) (*ivalues_out)[*n] = (int64_t)e->valuedouble;
        else (*dvalues_out)[*n] = e->valuedouble;
        (*n)++;
    }
    return 0;
}

static int read_fields(const char *path, const cJSON *root, dk_lora_config *c, dk_err *err) {
    const cJSON *peft_type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(peft_type) || strcmp(peft_type->valuestring, "LORA") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: peft_type is %s; only \"LORA\" adapters are supported", path,
                          cJSON_IsString(peft_type) ? peft_type->valuestring : "missing");
    if (check_fields(path, root, err) != 0) return -1;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble) || !cJSON_IsNumber(alpha))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"r\" (a positive integer) and \"lora_alpha\" (a number) are "
                          "required", path);
    c->r = (int64_t)r->valuedouble;
    c->lora_alpha = alpha->valuedouble;
    c->use_rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora"));

    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"bias\": \"%s\" (trained biases) is not supported; only \"none\"",
                          path, bias->valuestring);
    /* initialisations that rewrite the base weights leave an adapter that only fits the rewritten base */
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(root, "init_lora_weights");
    if (cJSON_IsString(init)) {
        static const char *const plain[] = {"gaussian", "orthogonal", "eva"};
        bool ok = false;
        for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) ok |= strcmp(init->valuestring, plain[i]) == 0;
        if (!ok)
            return refuse(path, init, "init_lora_weights",
                          "an initialisation that changes the base weights (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA): the "
                          "adapter only fits that changed base", err);
    }

    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (!targets || cJSON_IsNull(targets))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: \"target_modules\" is missing: diffkit cannot tell which modules "
                          "the adapter adapts", path);
    if (modules_field(path, targets, "target_modules", &c->target_regex, &c->targets, &c->n_targets, err) != 0)
        return -1;
    if (c->target_regex && strcasecmp(c->target_regex, "all-linear") == 0) {
        free(c->target_regex);
        c->target_regex = NULL;
        c->all_linear = true;
    }
    if (modules_field(path, cJSON_GetObjectItemCaseSensitive(root, "exclude_modules"), "exclude_modules",
                      &c->exclude_regex, &c->excludes, &c->n_excludes, err) != 0)
        return -1;
    if (string_list(path, cJSON_GetObjectItemCaseSensitive(root, "modules_to_save"), "modules_to_save",
                    &c->modules_to_save, &c->n_modules_to_save, err) != 0 ||
        string_list(path, cJSON_GetObjectItemCaseSensitive(root, "layers_pattern"), "layers_pattern",
                    &c->layers_patterns, &c->n_layers_patterns, err) != 0)
        return -1;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ensure_weight_tying")) && c->n_modules_to_save > 0)
        return refuse(path, cJSON_GetObjectItemCaseSensitive(root, "ensure_weight_tying"), "ensure_weight_tying",
                      "saved modules kept tied to each other", err);

    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers_to_transform");
    if (layers && !cJSON_IsNull(layers)) {
        const cJSON *one = cJSON_IsNumber(layers) ? layers : NULL;
        if (!one && !cJSON_IsArray(layers))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: \"layers_to_transform\" must be an integer or a list of "
                              "integers", path);
        c->layers = dk_calloc((size_t)(one ? 1 : cJSON_GetArraySize(layers)) + 1, sizeof *c->layers);
        for (const cJSON *e = one ? one : layers->child; e; e = one ? NULL : e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != floor(e->valuedouble))
                return dk_err_set(err, DK_EXIT_USAGE, "%s: \"layers_to_transform\" holds %s; layer indices are "
                                  "integers >= 0", path, cJSON_IsNumber(e) ? "a negative or fractional number" :
                                  "something other than a number");
            c->layers[c->n_layers++] = (int64_t)e->valuedouble;
        }
    }
    if (pattern_field(path, cJSON_GetObjectItemCaseSensitive(root, "rank_pattern"), "rank_pattern", true,
                      &c->rank_keys, &c->rank_values, NULL, &c->n_rank, err) != 0 ||
        pattern_field(path, cJSON_GetObjectItemCaseSensitive(root, "alpha_pattern"), "alpha_pattern", false,
                      &c->alpha_keys, NULL, &c->alpha_values, &c->n_alpha, err) != 0)
        return -1;
    return 0;
}

int dk_lora_config_read(const char *path, dk_lora_config *c, dk_err *err) {
    memset(c, 0, sizeof *c);
    c->path = dk_strdup(path);
    size_t size;
    char *text = dk_read_file(path, &size, err);
    if (!text) {
        dk_lora_config_free(c);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    int rc = cJSON_IsObject(root) ? read_fields(path, root, c, err)
                                  : dk_err_set(err, DK_EXIT_USAGE, "%s: not a JSON object (a PEFT adapter_config.json "
                                               "was expected)", path);
    cJSON_Delete(root);
    if (rc != 0) dk_lora_config_free(c);
    return rc;
}

void dk_lora_config_free(dk_lora_config *c) {
    free(c->path);
    free(c->target_regex);
    dk_free_strings(c->targets, c->n_targets);
    free(c->exclude_regex);
    dk_free_strings(c->excludes, c->n_excludes);
    free(c->layers);
    dk_free_strings(c->layers_patterns, c->n_layers_patterns);
    dk_free_strings(c->rank_keys, c->n_rank);
    free(c->rank_values);
    dk_free_strings(c->alpha_keys, c->n_alpha);
    free(c->alpha_values);
    dk_free_strings(c->modules_to_save, c->n_modules_to_save);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------------------------------------------
 * 3. peft's rules */

bool dk_lora_config_name_matches(const char *entry, const char *module) {
    size_t n = strlen(module), m = strlen(entry);
    return strcmp(module, entry) == 0 || (n > m && module[n - m - 1] == '.' && strcmp(module + n - m, entry) == 0);
}

static bool in_list(char *const *list, size_t n, const char *module) {
    for (size_t i = 0; i < n; i++)
        if (dk_lora_config_name_matches(list[i], module)) return true;
    return false;
}

/* The layer index peft reads from a module name for layers_to_transform; -1 when none is found. */
static int64_t layer_index(const dk_lora_config *c, const char *module, dk_err *err) {
    char idx[32] = "";
    int found = 0;
    if (c->n_layers_patterns == 0) { /* the first numbered segment */
        found = dk_py_regex_match(".*?\\.[^.]*\\.(?P<idx>\\d+)\\.", module, "idx", idx, sizeof idx, c->path, err);
    } else {
        for (size_t i = 0; i < c->n_layers_patterns && found == 0; i++) {
            char *pattern = dk_sprintf("(?:^|.*?\\.)%s\\.(?P<idx>\\d+)\\.", c->layers_patterns[i]);
            char *what = dk_sprintf("layers_pattern of %s", c->path);
            found = dk_py_regex_match(pattern, module, "idx", idx, sizeof idx, what, err);
            free(pattern);
            free(what);
        }
    }
    if (found < 0) return -2;
    return found && idx[0] ? strtoll(idx, NULL, 10) : -1;
}

int dk_lora_config_selects(const dk_lora_config *c, const char *module, dk_err *err) {
    if (c->exclude_regex) {
        int x = dk_py_regex_fullmatch(c->exclude_regex, module, c->path, err);
        if (x != 0) return x < 0 ? -1 : 0;
    } else if (in_list(c->excludes, c->n_excludes, module)) {
        return 0;
    }
    for (size_t i = 0; i < c->n_modules_to_save; i++) { /* never a LoRA on a module saved whole */
        char *pattern = dk_sprintf("(^|.*\\.)%s($|\\..*)", c->modules_to_save[i]);
        int x = dk_py_regex_match(pattern, module, NULL, NULL, 0, c->path, err);
        free(pattern);
        if (x != 0) return x < 0 ? -1 : 0;
    }
    if (c->all_linear) return 1;
    if (c->target_regex) return dk_py_regex_fullmatch(c->target_regex, module, c->path, err);
    for (size_t i = 0; i < c->n_targets; i++)
        if (strcmp(c->targets[i], module) == 0) return 1; /* named in full: layers_to_transform does not apply */
    if (!in_list(c->targets, c->n_targets, module)) return 0;
    if (c->n_layers == 0) return 1;
    int64_t layer = layer_index(c, module, err);
    if (layer == -2) return -1;
    for (size_t i = 0; i < c->n_layers; i++)
        if (c->layers[i] == layer) return 1;
    return 0;
}

/* get_pattern_key: the first key k (in file order) with re.match("(.*\.)?(k)$", module). */
static int pattern_key(char *const *keys, size_t n, const char *module, const char *path, dk_err *err) {
    for (size_t i = 0; i < n; i++) {
        char *pattern = dk_sprintf("(.*\\.)?(%s)\\Z", keys[i]);
        int x = dk_py_regex_match(pattern, module, NULL, NULL, 0, path, err);
        free(pattern);
        if (x != 0) return x < 0 ? -2 : (int)i;
    }
    return -1;
}

int dk_lora_config_rank_alpha(const dk_lora_config *c, const char *module, int64_t *r, double *alpha, dk_err *err) {
    int kr = pattern_key(c->rank_keys, c->n_rank, module, c->path, err);
    int ka = kr == -2 ? -2 : pattern_key(c->alpha_keys, c->n_alpha, module, c->path, err);
    if (kr == -2 || ka == -2) return -1;
    *r = kr >= 0 ? c->rank_values[kr] : c->r;
    *alpha = ka >= 0 ? c->alpha_values[ka] : c->lora_alpha;
    return 0;
}
