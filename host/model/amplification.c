/* amplification.c — see amplification.h. The YAML goes through the config system's libyaml reader (config/yaml_io.h),
 * so every value keeps its file:line:col for messages; the tree is walked once into dk_amp_entry records. */
#include "amplification.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/job_args.h"
#include "config/yaml_io.h"
#include "core/strutil.h"
#include "io/file.h"

#define PRESET_FOLDER "diffing/method/amplification_presets"

/* "file:line:col: key: " for a message about node at key path `key`. */
static int bad(const dk_cfg_node *node, const char *key, dk_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(const dk_cfg_node *node, const char *key, dk_err *err, const char *fmt, ...) {
    char where[PATH_MAX + 32], what[1024];
    dk_cfg_node_where(node, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return dk_err_set(err, DK_EXIT_USAGE, "%s: amplification config key %s: %s", where, key, what);
}

/* Every key of map must be one of `allowed` (NULL-terminated). */
static int check_keys(const dk_cfg_node *map, const char *key, const char *const *allowed, dk_err *err) {
    size_t n_allowed = 0;
    while (allowed[n_allowed]) n_allowed++;
    for (size_t i = 0; i < map->n; i++) {
        bool known = false;
        for (size_t k = 0; k < n_allowed; k++) known = known || strcmp(map->keys[i], allowed[k]) == 0;
        if (known) continue;
        dk_strbuf list = {0};
        for (size_t k = 0; k < n_allowed; k++) dk_strbuf_printf(&list, "%s%s", k ? ", " : "", allowed[k]);
        int near = dk_nearest_string(map->keys[i], allowed, n_allowed);
        char hint[128] = "";
        if (near >= 0) snprintf(hint, sizeof hint, " (did you mean %s?)", allowed[near]);
        bad(map->items[i], key, err, "unknown key '%s'%s; expected one of: %s", map->keys[i], hint, list.data);
        dk_strbuf_free(&list);
        return -1;
    }
    return 0;
}

static int need_map(const dk_cfg_node *node, const char *key, dk_err *err) {
    if (node && node->kind == DK_CFG_MAP) return 0;
    return bad(node, key, err, "expected a mapping, got %s", dk_cfg_type_name(dk_cfg_node_type(node)));
}

static int need_list(const dk_cfg_node *node, const char *key, dk_err *err) {
    if (node && node->kind == DK_CFG_SEQ) return 0;
    return bad(node, key, err, "expected a list, got %s", dk_cfg_type_name(dk_cfg_node_type(node)));
}

/* A required key of map; NULL with err when absent. */
static const dk_cfg_node *required(const dk_cfg_node *map, const char *name, const char *key, dk_err *err) {
    const dk_cfg_node *v = dk_cfg_map_get(map, name);
    if (!v) bad(map, key, err, "the required key '%s' is missing", name);
    return v;
}

static int number(const dk_cfg_node *node, const char *key, double *out, dk_err *err) {
    dk_cfg_type t = dk_cfg_node_type(node);
    int64_t i;
    if (t == DK_CFG_TYPE_INT && dk_cfg_parse_int(node->text, &i)) *out = (double)i;
    else if (t != DK_CFG_TYPE_FLOAT || !dk_cfg_parse_float(node->text, out) || !isfinite(*out))
        return bad(node, key, err, "expected a finite number, got %s",
                   node->kind == DK_CFG_SCALAR ? node->text : dk_cfg_type_name(t));
    if (fabs(*out) > FLT_MAX) /* the multipliers are floats */
        return bad(node, key, err, "%s is out of range (at most %g in magnitude)", node->text, (double)FLT_MAX);
    return 0;
}

/* A layer value: a fraction in [0, 1] when relative, else a non-negative integer (the seed asserts an int). */
static int layer_value(const dk_cfg_node *node, const char *key, bool relative, double *out, dk_err *err) {
    if (number(node, key, out, err) != 0) return -1;
    if (relative && (*out < 0 || *out > 1))
        return bad(node, key, err, "relative layer %s is not in [0, 1] (is_relative: true; use a fraction of the "
                   "depth, or is_relative: false for a layer index)", node->text);
    if (!relative && (dk_cfg_node_type(node) != DK_CFG_TYPE_INT || *out < 0))
        return bad(node, key, err, "layer %s is not a layer index (a non-negative integer; with is_relative: true "
                   "layers are fractions in [0, 1])", node->text);
    return 0;
}

static int parse_layers(const dk_cfg_node *node, const char *key, dk_amp_entry *e, dk_err *err) {
    char sub[320];
    if (node->kind == DK_CFG_SCALAR && !node->quoted && strcmp(node->text, "all") == 0) {
        e->kind = DK_AMP_LAYERS_ALL;
        return 0;
    }
    if (node->kind == DK_CFG_SCALAR && dk_cfg_node_type(node) != DK_CFG_TYPE_STRING) {
        e->kind = DK_AMP_LAYERS_LIST;
        e->values = dk_malloc(sizeof *e->values);
        e->n_values = 1;
        return layer_value(node, key, e->is_relative, &e->values[0], err);
    }
    if (node->kind == DK_CFG_SEQ) {
        if (node->n == 0) return bad(node, key, err, "the list of layers is empty");
        e->kind = DK_AMP_LAYERS_LIST;
        e->values = dk_malloc(node->n * sizeof *e->values);
        e->n_values = node->n;
        for (size_t i = 0; i < node->n; i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", key, i);
            if (layer_value(node->items[i], sub, e->is_relative, &e->values[i], err) != 0) return -1;
        }
        return 0;
    }
    if (node->kind == DK_CFG_MAP) {
        static const char *const keys[] = {"type", "start", "end", NULL};
        if (check_keys(node, key, keys, err) != 0) return -1;
        snprintf(sub, sizeof sub, "%s.type", key);
        const dk_cfg_node *type = required(node, "type", key, err);
        if (!type) return -1;
        if (type->kind != DK_CFG_SCALAR || strcmp(type->text, "range") != 0)
            return bad(type, sub, err, "expected 'range' (the only mapping form of layers: {type: range, start, end})");
        e->kind = DK_AMP_LAYERS_RANGE;
        e->values = dk_malloc(2 * sizeof *e->values);
        e->n_values = 2;
        const char *names[2] = {"start", "end"};
        for (int i = 0; i < 2; i++) {
            snprintf(sub, sizeof sub, "%s.%s", key, names[i]);
            const dk_cfg_node *v = required(node, names[i], key, err);
            if (!v || layer_value(v, sub, e->is_relative, &e->values[i], err) != 0) return -1;
        }
        if (e->values[1] < e->values[0])
            return bad(node, key, err, "the range ends (%g) before it starts (%g); ranges are inclusive, start <= end",
                       e->values[1], e->values[0]);
        return 0;
    }
    return bad(node, key, err, "expected all, a layer, a list of layers or {type: range, start: A, end: B}, got '%s'",
               node->kind == DK_CFG_SCALAR ? node->text : dk_cfg_type_name(dk_cfg_node_type(node)));
}

static int parse_modules(const dk_cfg_node *list, const char *key, dk_amp_entry *e, dk_err *err) {
    if (need_list(list, key, err) != 0) return -1;
    for (int g = 0; g < DK_AMP_N_GROUPS; g++) e->weight[g] = 1.0; /* unlisted groups keep the finetune */
    char sub[320];
    for (size_t i = 0; i < list->n; i++) {
        const dk_cfg_node *m = list->items[i];
        snprintf(sub, sizeof sub, "%s[%zu]", key, i);
        static const char *const keys[] = {"modules", "weight", NULL};
        if (need_map(m, sub, err) != 0 || check_keys(m, sub, keys, err) != 0) return -1;
        const dk_cfg_node *modules = required(m, "modules", sub, err), *weight = required(m, "weight", sub, err);
        if (!modules || !weight) return -1;
        char sub2[384];
        snprintf(sub2, sizeof sub2, "%s.weight", sub);
        double w;
        if (number(weight, sub2, &w, err) != 0) return -1;
        snprintf(sub2, sizeof sub2, "%s.modules", sub);
        const char *name = modules->kind == DK_CFG_SCALAR ? modules->text : "";
        if (strcmp(name, "attention") == 0) e->weight[DK_AMP_ATTENTION] = w;
        else if (strcmp(name, "mlp") == 0) e->weight[DK_AMP_MLP] = w;
        else if (strcmp(name, "all") == 0) e->weight[DK_AMP_ATTENTION] = e->weight[DK_AMP_MLP] = w;
        else return bad(modules, sub2, err, "expected attention, mlp or all, got '%s'", name);
    }
    return 0;
}

static int parse_entry(const dk_cfg_node *node, const char *key, const char *organism, dk_amp_entry *e, dk_err *err) {
    static const char *const keys[] = {"layers", "is_relative", "module_amplifications", NULL};
    if (need_map(node, key, err) != 0 || check_keys(node, key, keys, err) != 0) return -1;
    e->organism_name = organism ? dk_strdup(organism) : NULL;
    char sub[256];
    const dk_cfg_node *rel = dk_cfg_map_get(node, "is_relative");
    if (rel && dk_cfg_node_type(rel) != DK_CFG_TYPE_NULL) {
        snprintf(sub, sizeof sub, "%s.is_relative", key);
        if (dk_cfg_node_type(rel) != DK_CFG_TYPE_BOOL || !dk_cfg_parse_bool(rel->text, &e->is_relative))
            return bad(rel, sub, err, "expected true or false, got '%s'", rel->kind == DK_CFG_SCALAR ? rel->text : "?");
    }
    const dk_cfg_node *layers = required(node, "layers", key, err);
    if (!layers) return -1;
    char where[PATH_MAX + 32];
    dk_cfg_node_where(layers, where, sizeof where);
    snprintf(sub, sizeof sub, "%s.layers", key);
    e->where = dk_sprintf("%s: amplification config key %s", where, sub);
    if (parse_layers(layers, sub, e, err) != 0) return -1;
    const dk_cfg_node *modules = required(node, "module_amplifications", key, err);
    snprintf(sub, sizeof sub, "%s.module_amplifications", key);
    return modules ? parse_modules(modules, sub, e, err) : -1;
}

static char *optional_string(const dk_cfg_node *map, const char *name, const char *key, dk_err *err, int *rc) {
    const dk_cfg_node *v = dk_cfg_map_get(map, name);
    if (!v || dk_cfg_node_type(v) == DK_CFG_TYPE_NULL) return NULL;
    if (v->kind != DK_CFG_SCALAR) {
        *rc = bad(v, key, err, "expected a string, got %s", dk_cfg_type_name(dk_cfg_node_type(v)));
        return NULL;
    }
    return dk_strdup(v->text);
}

static int parse_tree(const dk_cfg_node *root, dk_amp_config *out, dk_err *err) {
    static const char *const keys[] = {"name", "description", "adapters", NULL};
    if (need_map(root, "(top level)", err) != 0 || check_keys(root, "(top level)", keys, err) != 0) return -1;
    int rc = 0;
    const dk_cfg_node *name = required(root, "name", "(top level)", err);
    if (!name) return -1;
    if (name->kind != DK_CFG_SCALAR || dk_cfg_node_type(name) == DK_CFG_TYPE_NULL || !name->text[0])
        return bad(name, "name", err, "expected the config's name (a string)");
    out->name = dk_strdup(name->text);
    out->description = optional_string(root, "description", "description", err, &rc);
    if (rc != 0) return -1;
    const dk_cfg_node *adapters = dk_cfg_map_get(root, "adapters");
    if (!adapters || dk_cfg_node_type(adapters) == DK_CFG_TYPE_NULL) return 0;
    if (need_list(adapters, "adapters", err) != 0) return -1;
    size_t cap = 0;
    for (size_t i = 0; i < adapters->n; i++) {
        const dk_cfg_node *a = adapters->items[i];
        char key[64], sub[128];
        snprintf(key, sizeof key, "adapters[%zu]", i);
        static const char *const akeys[] = {"organism_name", "variant", "layer_amplifications", NULL};
        if (need_map(a, key, err) != 0 || check_keys(a, key, akeys, err) != 0) return -1;
        snprintf(sub, sizeof sub, "%s.organism_name", key);
        char *organism = optional_string(a, "organism_name", sub, err, &rc);
        if (rc != 0) return -1;
        if (organism && (strcmp(organism, "custom") == 0 || !organism[0])) {
            free(organism);
            organism = NULL;
        }
        snprintf(sub, sizeof sub, "%s.variant", key);
        free(optional_string(a, "variant", sub, err, &rc)); /* checked, not used: see amplification.h */
        const dk_cfg_node *list = rc == 0 ? required(a, "layer_amplifications", key, err) : NULL;
        snprintf(sub, sizeof sub, "%s.layer_amplifications", key);
        if (!list || need_list(list, sub, err) != 0) {
            free(organism);
            return -1;
        }
        for (size_t j = 0; j < list->n && rc == 0; j++) {
            if (out->n_entries == cap)
                out->entries = dk_realloc(out->entries, (cap = cap ? 2 * cap : 4) * sizeof *out->entries);
            dk_amp_entry *e = &out->entries[out->n_entries++];
            memset(e, 0, sizeof *e);
            char ekey[192];
            snprintf(ekey, sizeof ekey, "%s[%zu]", sub, j);
            rc = parse_entry(list->items[j], ekey, organism, e, err);
        }
        free(organism);
        if (rc != 0) return -1;
    }
    return 0;
}

int dk_amp_parse(const char *text, size_t len, const char *source, dk_amp_config *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->source = dk_strdup(source);
    dk_cfg_node *root = dk_cfg_parse_yaml(text, len, out->source, err);
    int rc = root ? parse_tree(root, out, err) : -1;
    dk_cfg_node_free(root);
    if (rc != 0) dk_amp_free(out);
    return rc;
}

/* The preset folder of config_dir (or the default configs folder). */
static char *preset_dir(const char *config_dir) {
    return dk_path_join(config_dir ? config_dir : dk_default_config_dir(), PRESET_FOLDER);
}

int dk_amp_load(const char *file_or_preset, const char *config_dir, dk_amp_config *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    char *path = NULL;
    if (dk_is_file(file_or_preset)) {
        path = dk_strdup(file_or_preset);
    } else if (!strchr(file_or_preset, '/')) {
        char *dir = preset_dir(config_dir);
        char *file = dk_str_ends_with(file_or_preset, ".yaml") ? dk_strdup(file_or_preset)
                                                                : dk_sprintf("%s.yaml", file_or_preset);
        path = dk_path_join(dir, file);
        free(file);
        if (!dk_is_file(path)) {
            size_t n = 0;
            char **names = dk_list_dir(dir, ".yaml", true, &n);
            dk_strbuf list = {0};
            for (size_t i = 0; i < n; i++) dk_strbuf_printf(&list, "%s%s", i ? ", " : "", names[i]);
            dk_err_set(err, DK_EXIT_USAGE, "amplification '%s' is neither a file nor a preset of %s (presets: %s)",
                       file_or_preset, dir, n ? list.data : "none");
            dk_strbuf_free(&list);
            dk_free_strings(names, n);
            free(dir);
            free(path);
            return -1;
        }
        free(dir);
    } else {
        return dk_err_set(err, DK_EXIT_USAGE, "amplification config %s: no such file", file_or_preset);
    }
    size_t size;
    char *text = dk_read_file(path, &size, err);
    int rc = text ? dk_amp_parse(text, size, path, out, err) : -1;
    if (!text) err->code = DK_EXIT_USAGE;
    free(text);
    free(path);
    return rc;
}

void dk_amp_free(dk_amp_config *c) {
    for (size_t i = 0; i < c->n_entries; i++) {
        free(c->entries[i].organism_name);
        free(c->entries[i].values);
        free(c->entries[i].where);
    }
    free(c->entries);
    free(c->name);
    free(c->description);
    free(c->source);
    memset(c, 0, sizeof *c);
}

/* Layer index of a value: round(f · (L − 1)) with Python's round (halves to even: nearbyint in the default
 * rounding mode) when relative, else the value (n_layers for any value past the last layer). */
static int64_t layer_index(double v, bool relative, int64_t n_layers) {
    if (relative) return (int64_t)nearbyint(v * (double)(n_layers - 1));
    return v >= (double)n_layers ? n_layers : (int64_t)v; /* past the end (set_layer says so), never cast out of range */
}

static int set_layer(const dk_amp_entry *e, int64_t layer, double asked, int64_t n_layers, float *weights,
                     dk_err *err) {
    if (layer >= n_layers)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: layer %g is past the model's last layer (it has %lld layers: "
                          "0..%lld)", e->where, asked, (long long)n_layers, (long long)(n_layers - 1));
    for (int g = 0; g < DK_AMP_N_GROUPS; g++) weights[layer * DK_AMP_N_GROUPS + g] = (float)e->weight[g];
    return 0;
}

int dk_amp_resolve(const dk_amp_config *c, const char *organism, int64_t n_layers, float *weights, dk_err *err) {
    for (int64_t k = 0; k < n_layers * DK_AMP_N_GROUPS; k++) weights[k] = 1.0f;
    for (size_t i = 0; i < c->n_entries; i++) {
        const dk_amp_entry *e = &c->entries[i];
        if (e->organism_name && organism && strcmp(e->organism_name, organism) != 0)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: the entry is for organism '%s', but '%s' is being run "
                              "(one adapter is amplified at a time; use organism_name: custom for the running one)",
                              e->where, e->organism_name, organism);
        if (e->kind == DK_AMP_LAYERS_ALL) {
            for (int64_t l = 0; l < n_layers; l++) set_layer(e, l, (double)l, n_layers, weights, err);
        } else if (e->kind == DK_AMP_LAYERS_LIST) {
            for (size_t j = 0; j < e->n_values; j++)
                if (set_layer(e, layer_index(e->values[j], e->is_relative, n_layers), e->values[j], n_layers, weights,
                              err) != 0)
                    return -1;
        } else {
            int64_t first = layer_index(e->values[0], e->is_relative, n_layers);
            int64_t last = layer_index(e->values[1], e->is_relative, n_layers);
            for (int64_t l = first; l <= last; l++)
                if (set_layer(e, l, e->is_relative ? e->values[1] : (double)l, n_layers, weights, err) != 0) return -1;
        }
    }
    return 0;
}

dk_amp_group dk_amp_group_of(dk_module m) {
    return m == DK_MOD_GATE || m == DK_MOD_UP || m == DK_MOD_DOWN ? DK_AMP_MLP : DK_AMP_ATTENTION;
}

int64_t dk_amp_apply(const float *weights, dk_lora_adapter *a) {
    int64_t unadapted = 0;
    for (int64_t l = 0; l < a->n_layers; l++) {
        bool adapted[DK_AMP_N_GROUPS] = {false, false};
        for (int m = 0; m < DK_N_MODULES; m++) {
            dk_amp_group g = dk_amp_group_of((dk_module)m);
            a->multiplier[l * DK_N_MODULES + m] = weights[l * DK_AMP_N_GROUPS + g];
            adapted[g] = adapted[g] || dk_lora_at(a, l, (dk_module)m)->A != NULL;
        }
        for (int g = 0; g < DK_AMP_N_GROUPS; g++) unadapted += !adapted[g] && weights[l * DK_AMP_N_GROUPS + g] != 1.0f;
    }
    a->saved_multiplier = 1.0f;
    return unadapted;
}

int dk_amp_apply_config(const dk_amp_config *c, const char *organism, dk_lora_adapter *a, int64_t *n_unadapted,
                        dk_err *err) {
    float *weights = dk_malloc((size_t)(a->n_layers * DK_AMP_N_GROUPS) * sizeof *weights);
    int rc = dk_amp_resolve(c, organism, a->n_layers, weights, err);
    if (rc == 0) {
        int64_t n = dk_amp_apply(weights, a);
        if (n_unadapted) *n_unadapted = n;
    }
    free(weights);
    return rc;
}
