/* lora.c — see lora.h. Layout: 1. the model's adaptable modules under the names peft gives them; 2. sorting the
 * adapter's tensors (LoRA pairs, saved modules, a vision tower's, anything else); 3. checking the config's
 * selection against the model; 4. loading; 5. the runtime product. */
#include "lora.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"
#include "kernels/cpu/gemm.h"
#include "model/lora_config.h"

/* ---------------------------------------------------------------------------------------------------
 * 1. Targets: one adaptable module of the model, named as transformers names it in the model peft wrapped
 *    ("model.layers.3.self_attn.q_proj", "transformer.h.3.attn.c_attn"), and the (layer, module) slots it
 *    feeds: one, or q, k and v for GPT-2's fused c_attn (rows [j·H, (j+1)·H) of its output). */

enum { MAX_NAME = 224 };

typedef struct target {
    char name[MAX_NAME];
    const char *short_name;          /* "q_proj", "c_attn" (for messages) */
    int64_t layer;
    int n_slots;
    dk_module slots[3];
    int64_t in_features, out_features; /* of the module as peft sees it (c_attn: out = 3H) */
    bool selected;
} target;

static const char *const decoder_prefixes[] = {"model.", "model.language_model.", "language_model.model."};
static const char *const gpt2_prefixes[] = {"transformer."};

static size_t make_targets(const dk_hf_config *cfg, const dk_model_weights *w, const char *prefix, target *out) {
    size_t n = 0;
    for (int64_t l = 0; l < cfg->num_hidden_layers; l++) {
        const dk_layer_weights *lw = &w->layers[l];
        if (cfg->arch == DK_ARCH_GPT2) {
            static const struct {
                const char *path;
                int n_slots;
                dk_module slots[3];
            } gpt2[] = {{"attn.c_attn", 3, {DK_MOD_Q, DK_MOD_K, DK_MOD_V}}, {"attn.c_proj", 1, {DK_MOD_O}},
                        {"mlp.c_fc", 1, {DK_MOD_UP}}, {"mlp.c_proj", 1, {DK_MOD_DOWN}}};
            for (size_t i = 0; i < sizeof gpt2 / sizeof gpt2[0]; i++) {
                target *t = &out[n++];
                memset(t, 0, sizeof *t);
                snprintf(t->name, sizeof t->name, "%sh.%lld.%s", prefix, (long long)l, gpt2[i].path);
                t->short_name = strrchr(gpt2[i].path, '.') + 1;
                t->layer = l;
                t->n_slots = gpt2[i].n_slots;
                memcpy(t->slots, gpt2[i].slots, sizeof t->slots);
                const dk_linear_weight *first = &lw->proj[t->slots[0]];
                t->in_features = first->in_features;
                t->out_features = first->out_features * t->n_slots;
            }
            continue;
        }
        for (int m = 0; m < DK_N_MODULES; m++) {
            target *t = &out[n++];
            memset(t, 0, sizeof *t);
            snprintf(t->name, sizeof t->name, "%slayers.%lld.%s.%s", prefix, (long long)l,
                     m <= DK_MOD_O ? "self_attn" : "mlp", dk_module_name((dk_module)m));
            t->short_name = dk_module_name((dk_module)m);
            t->layer = l;
            t->n_slots = 1;
            t->slots[0] = (dk_module)m;
            t->in_features = lw->proj[m].in_features;
            t->out_features = lw->proj[m].out_features;
        }
    }
    return n;
}

static target *find_target(target *targets, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(targets[i].name, name) == 0) return &targets[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. The adapter's tensors */

typedef enum { T_LORA_A, T_LORA_B, T_SAVED, T_VISION } tensor_kind;

typedef struct sorted_tensor {
    const dk_st_tensor *t;
    tensor_kind kind;
    char module[MAX_NAME];           /* the module name, without "base_model.model." and the suffix */
} sorted_tensor;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A module of a vision tower or projector (Gemma 3, Qwen2.5-VL): text-only input never reaches it. */
static bool is_vision(const char *module) {
    static const char *const parts[] = {"visual", "vision_tower", "vision_model", "multi_modal_projector"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const char *at = strstr(module, parts[i]);
        size_t len = strlen(parts[i]);
        if (at && (at == module || at[-1] == '.') && (at[len] == '.' || at[len] == '\0')) return true;
    }
    return false;
}

/* Whether peft's modules_to_save entry names this module: re.match(rf"(^|.*\.){entry}($|\..*)", module) with a
 * plain name, i.e. a dotted component sequence equal to it. */
static bool saved_entry_matches(const char *entry, const char *module) {
    size_t m = strlen(entry);
    for (const char *p = module; (p = strstr(p, entry)) != NULL; p++)
        if ((p == module || p[-1] == '.') && (p[m] == '\0' || p[m] == '.')) return true;
    return false;
}

static int sort_tensor(const dk_st_tensor *t, const dk_lora_config *c, const char *file, sorted_tensor *out,
                       dk_err *err) {
    static const char head[] = "base_model.model.";
    memset(out, 0, sizeof *out);
    out->t = t;
    if (strncmp(t->name, head, sizeof head - 1) != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor %s does not start with base_model.model. (not a PEFT "
                          "adapter tensor)", file, t->name);
    const char *rest = t->name + sizeof head - 1;
    size_t len = strlen(rest);
    const char *suffix = NULL;
    if (ends_with(rest, ".lora_A.weight")) {
        out->kind = T_LORA_A;
        suffix = ".lora_A.weight";
    } else if (ends_with(rest, ".lora_B.weight")) {
        out->kind = T_LORA_B;
        suffix = ".lora_B.weight";
    } else if (ends_with(rest, ".weight")) {
        out->kind = T_SAVED;
        suffix = ".weight";
    } else {
        suffix = "";
    }
    if (len - strlen(suffix) >= MAX_NAME)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor name %.80s... is too long", file, t->name);
    memcpy(out->module, rest, len - strlen(suffix));
    if (is_vision(out->module)) {
        out->kind = T_VISION;
        return 0;
    }
    if (out->kind == T_SAVED) {
        for (size_t i = 0; i < c->n_modules_to_save; i++)
            if (saved_entry_matches(c->modules_to_save[i], out->module)) return 0;
    }
    if (out->kind == T_LORA_A || out->kind == T_LORA_B) return 0;
    if (strstr(rest, "lora_embedding_"))
        return dk_err_set(err, DK_EXIT_USAGE, "%s: tensor %s is a LoRA on an embedding layer, which diffkit does "
                          "not support", file, t->name);
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor %s is neither a LoRA A/B nor a module named in "
                      "modules_to_save (DoRA magnitude vectors, trained biases and other extras are not supported)",
                      file, t->name);
}

/* ---------------------------------------------------------------------------------------------------
 * 3. The selection */

/* Short names of the model's adaptable modules, for messages. */
static void list_modules(const target *targets, size_t n, dk_strbuf *out) {
    for (size_t i = 0; i < n && targets[i].layer == 0; i++)
        dk_strbuf_printf(out, "%s%s", i ? ", " : "", targets[i].short_name);
}

/* Marks the selected targets; refuses a config that names modules or layers the model lacks, or selects
 * nothing. */
static int select_targets(const dk_lora_config *c, const dk_hf_config *cfg, target *targets, size_t n,
                          const sorted_tensor *tensors, size_t n_tensors, dk_err *err) {
    size_t n_selected = 0;
    for (size_t i = 0; i < n; i++) {
        int s = dk_lora_config_selects(c, targets[i].name, err);
        if (s < 0) return -1;
        targets[i].selected = s == 1;
        n_selected += targets[i].selected;
    }
    dk_strbuf modules = {0};
    list_modules(targets, n, &modules);
    int rc = 0;
    /* each target_modules entry names a module of the model, or one of the adapter's own (a vision tower's) */
    for (size_t e = 0; e < c->n_targets && rc == 0; e++) {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++) known = dk_lora_config_name_matches(c->targets[e], targets[i].name);
        for (size_t i = 0; i < n_tensors && !known; i++)
            known = dk_lora_config_name_matches(c->targets[e], tensors[i].module);
        if (!known)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: target_modules names '%s', which %s (%s) does not have; its "
                            "adaptable modules are %s", c->path, c->targets[e], cfg->path, cfg->architecture,
                            modules.data);
    }
    for (size_t i = 0; i < c->n_layers && rc == 0; i++)
        if (c->layers[i] >= cfg->num_hidden_layers)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: layers_to_transform names layer %lld, but %s has %lld layers "
                            "(0..%lld): the adapter was made for another base model", c->path,
                            (long long)c->layers[i], cfg->path, (long long)cfg->num_hidden_layers,
                            (long long)cfg->num_hidden_layers - 1);
    if (rc == 0 && n_selected == 0 && c->n_modules_to_save == 0) {
        dk_strbuf why = {0};
        if (c->target_regex) dk_strbuf_printf(&why, "target_modules '%s'", c->target_regex);
        else dk_strbuf_append(&why, "target_modules");
        if (c->n_layers) dk_strbuf_append(&why, " with layers_to_transform");
        if (c->n_layers_patterns) dk_strbuf_printf(&why, " and layers_pattern '%s'", c->layers_patterns[0]);
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: %s selects no module of %s (%s, whose adaptable modules are %s, "
                        "e.g. %s)", c->path, why.data, cfg->path, cfg->architecture, modules.data, targets[0].name);
        dk_strbuf_free(&why);
    }
    dk_strbuf_free(&modules);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * 4. Loading */

/* The prefix of the adapter's module names: the candidate under which its first LoRA module is one of the
 * model's targets. NULL when none fits (an adapter for another architecture). */
static const char *adapter_prefix(const dk_hf_config *cfg, const dk_model_weights *w, const sorted_tensor *tensors,
                                  size_t n_tensors, target *scratch) {
    const bool gpt2 = cfg->arch == DK_ARCH_GPT2;
    const char *const *prefixes = gpt2 ? gpt2_prefixes : decoder_prefixes;
    const size_t n_prefixes = gpt2 ? 1 : 3;
    const char *first = NULL;
    for (size_t i = 0; i < n_tensors && !first; i++)
        if (tensors[i].kind == T_LORA_A || tensors[i].kind == T_LORA_B) first = tensors[i].module;
    if (!first) return gpt2 ? gpt2_prefixes[0] : w->prefix; /* saved modules only: the checkpoint's own names */
    for (size_t p = 0; p < n_prefixes; p++) {
        size_t n = make_targets(cfg, w, prefixes[p], scratch);
        if (find_target(scratch, n, first)) return prefixes[p];
    }
    return NULL;
}

static float *load_saved(const sorted_tensor *s, const dk_hf_config *cfg, const char *folder, dk_err *err) {
    int64_t shape[2] = {cfg->vocab_size, cfg->hidden_size};
    if (dk_st_check_shape(s->t, 2, shape, err) != 0 || dk_st_check_readable(s->t, err) != 0) {
        dk_err_prefix(err, "adapter %s does not fit the base model %s (modules_to_save): ", folder, cfg->path);
        return NULL;
    }
    return dk_st_load_f32(s->t, err);
}

/* Which of the adapter's slots a modules_to_save entry fills: the LM head, the token embedding (embed_tokens,
 * GPT-2's wte), or NULL for a module diffkit does not apply whole. */
static float **saved_slot(dk_lora_adapter *a, const char *entry) {
    const char *last = strrchr(entry, '.') ? strrchr(entry, '.') + 1 : entry;
    if (strcmp(last, "lm_head") == 0) return &a->lm_head;
    if (strcmp(last, "embed_tokens") == 0 || strcmp(last, "wte") == 0) return &a->embed;
    return NULL;
}

static int check_saved_entries(const dk_lora_config *c, dk_lora_adapter *a, dk_err *err) {
    for (size_t e = 0; e < c->n_modules_to_save; e++)
        if (!saved_slot(a, c->modules_to_save[e]))
            return dk_err_set(err, DK_EXIT_USAGE, "%s: modules_to_save names '%s' (a module trained in full and "
                              "stored in the adapter); diffkit applies saved lm_head and embed_tokens only", c->path,
                              c->modules_to_save[e]);
    return 0;
}

/* modules_to_save: lm_head and the token embedding, each present in the file. */
static int load_saved_modules(const dk_lora_config *c, const dk_hf_config *cfg, const sorted_tensor *tensors,
                              size_t n_tensors, const char *folder, const char *file, dk_lora_adapter *a,
                              dk_err *err) {
    for (size_t e = 0; e < c->n_modules_to_save; e++) {
        const char *entry = c->modules_to_save[e];
        float **slot = saved_slot(a, entry);
        const sorted_tensor *found = NULL;
        for (size_t i = 0; i < n_tensors && !found; i++)
            if (tensors[i].kind == T_SAVED && saved_entry_matches(entry, tensors[i].module)) found = &tensors[i];
        if (!found)
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s: modules_to_save names '%s', but %s holds no %s weight",
                              c->path, entry, file, entry);
        if (*slot)
            return dk_err_set(err, DK_EXIT_USAGE, "%s: modules_to_save names the %s twice", c->path,
                              slot == &a->lm_head ? "LM head" : "embedding");
        if (!(*slot = load_saved(found, cfg, folder, err))) return -1;
    }
    return 0;
}

/* A (r, in) and B (out, r) of one selected target into its slots (GPT-2's c_attn: three slots, A shared,
 * B split by rows). */
static int load_pair(const target *t, const sorted_tensor *A, const sorted_tensor *B, int64_t r, float scale,
                     const dk_hf_config *cfg, const char *folder, dk_lora_adapter *a, dk_err *err) {
    int64_t a_shape[2] = {r, t->in_features}, b_shape[2] = {t->out_features, r};
    if (dk_st_check_shape(A->t, 2, a_shape, err) != 0 || dk_st_check_shape(B->t, 2, b_shape, err) != 0 ||
        dk_st_check_readable(A->t, err) != 0 || dk_st_check_readable(B->t, err) != 0) {
        dk_err_prefix(err, "adapter %s does not fit the base model %s (%s: r = %lld): ", folder, cfg->path, t->name,
                      (long long)r);
        return -1;
    }
    float *a_f = dk_st_load_f32(A->t, err), *b_f = a_f ? dk_st_load_f32(B->t, err) : NULL;
    if (!b_f) {
        free(a_f);
        return -1;
    }
    const int64_t rows = t->out_features / t->n_slots;
    for (int j = 0; j < t->n_slots; j++) {
        dk_lora_module *mod = dk_lora_at(a, t->layer, t->slots[j]);
        mod->A = dk_malloc((size_t)(r * t->in_features) * sizeof(float));
        memcpy(mod->A, a_f, (size_t)(r * t->in_features) * sizeof(float));
        mod->B = dk_malloc((size_t)(rows * r) * sizeof(float));
        memcpy(mod->B, b_f + j * rows * r, (size_t)(rows * r) * sizeof(float));
        mod->r = r;
        mod->in_features = t->in_features;
        mod->out_features = rows;
        mod->scale = scale;
        a->n_adapted++;
        if (r > a->r) a->r = r;
    }
    free(a_f);
    free(b_f);
    return 0;
}

static int load_pairs(const dk_lora_config *c, const dk_hf_config *cfg, target *targets, size_t n_targets,
                      const sorted_tensor *tensors, size_t n_tensors, const char *folder, const char *file,
                      dk_lora_adapter *a, dk_err *err) {
    int64_t ignored = 0, missing = 0;
    const char *ignored_example = NULL;
    for (size_t ti = 0; ti < n_targets; ti++) {
        target *t = &targets[ti];
        const sorted_tensor *A = NULL, *B = NULL;
        for (size_t i = 0; i < n_tensors; i++) {
            if (strcmp(tensors[i].module, t->name) != 0) continue;
            if (tensors[i].kind == T_LORA_A) A = &tensors[i];
            if (tensors[i].kind == T_LORA_B) B = &tensors[i];
        }
        if (!A && !B) {
            missing += t->selected; /* peft leaves it at its initialisation: B = 0, no change */
            continue;
        }
        if (!A || !B)
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s: %s has lora_%s but not lora_%s", file, t->name,
                              A ? "A" : "B", A ? "B" : "A");
        if (!t->selected) { /* peft creates no LoRA there and ignores the tensors */
            ignored++;
            if (!ignored_example) ignored_example = t->name;
            continue;
        }
        int64_t r;
        double alpha;
        if (dk_lora_config_rank_alpha(c, t->name, &r, &alpha, err) != 0) return -1;
        const float scale = (float)(c->use_rslora ? alpha / sqrt((double)r) : alpha / (double)r);
        if (load_pair(t, A, B, r, scale, cfg, folder, a, err) != 0) return -1;
    }
    /* every LoRA tensor must belong to a module of this model */
    for (size_t i = 0; i < n_tensors; i++)
        if ((tensors[i].kind == T_LORA_A || tensors[i].kind == T_LORA_B) &&
            !find_target(targets, n_targets, tensors[i].module))
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor %s adapts %s, which %s (%s, %lld layers) does not "
                              "have: the adapter was made for another base model", file, tensors[i].t->name,
                              tensors[i].module, cfg->path, cfg->architecture, (long long)cfg->num_hidden_layers);
    if (ignored)
        LOG_WARN("%s: %lld module(s) with LoRA tensors that adapter_config.json does not select (e.g. %s) are ignored, "
                 "as peft ignores them", file, (long long)ignored, ignored_example);
    if (missing && a->n_adapted)
        LOG_WARN("%s: %lld selected module(s) have no LoRA tensors and stay as in the base model", file,
                 (long long)missing);
    if (a->n_adapted == 0 && !a->embed && !a->lm_head)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s holds no LoRA tensors for the modules %s selects", file, c->path);
    return 0;
}

int dk_lora_load(const char *folder, const dk_hf_config *cfg, const dk_model_weights *w, dk_lora_adapter *a,
                 dk_err *err) {
    memset(a, 0, sizeof *a);
    char *config_path = dk_path_join(folder, "adapter_config.json");
    char *tensors_path = dk_path_join(folder, "adapter_model.safetensors");
    dk_st_checkpoint *ck = NULL;
    dk_lora_config c;
    bool have_config = false;
    sorted_tensor *tensors = NULL;
    target *targets = NULL;
    size_t n_vision = 0;
    int rc = -1;
    if (dk_lora_config_read(config_path, &c, err) != 0) goto done;
    have_config = true;
    if (check_saved_entries(&c, a, err) != 0) goto done;
    ck = dk_st_open(tensors_path, err);
    if (!ck) goto done;
    a->path = dk_strdup(folder);
    a->n_layers = cfg->num_hidden_layers;
    a->lora_alpha = c.lora_alpha;
    a->use_rslora = c.use_rslora;
    a->modules = dk_calloc((size_t)(a->n_layers * DK_N_MODULES), sizeof *a->modules);
    a->multiplier = dk_malloc((size_t)(a->n_layers * DK_N_MODULES) * sizeof *a->multiplier);
    dk_lora_set_multiplier(a, 1.0f);

    tensors = dk_calloc(ck->n_tensors + 1, sizeof *tensors);
    for (size_t i = 0; i < ck->n_tensors; i++) {
        if (sort_tensor(&ck->tensors[i], &c, tensors_path, &tensors[i], err) != 0) goto done;
        n_vision += tensors[i].kind == T_VISION;
    }
    targets = dk_calloc((size_t)(cfg->num_hidden_layers * DK_N_MODULES) + 1, sizeof *targets);
    const char *prefix = adapter_prefix(cfg, w, tensors, ck->n_tensors, targets);
    if (!prefix) {
        const char *example = "?";
        for (size_t i = 0; i < ck->n_tensors; i++)
            if (tensors[i].kind == T_LORA_A || tensors[i].kind == T_LORA_B) {
                example = tensors[i].t->name;
                break;
            }
        dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor %s is not a LoRA of a projection of %s (%s): the adapter was "
                   "made for another architecture", tensors_path, example, cfg->path, cfg->architecture);
        goto done;
    }
    size_t n_targets = make_targets(cfg, w, prefix, targets);
    if (select_targets(&c, cfg, targets, n_targets, tensors, ck->n_tensors, err) != 0) goto done;
    if (load_saved_modules(&c, cfg, tensors, ck->n_tensors, folder, tensors_path, a, err) != 0) goto done;
    if (load_pairs(&c, cfg, targets, n_targets, tensors, ck->n_tensors, folder, tensors_path, a, err) != 0) goto done;
    if (n_vision)
        LOG_INFO("%s: %zu LoRA tensor(s) of the vision tower skipped (diffkit runs text only)", tensors_path, n_vision);
    if (a->r == 0) a->r = 1;
    static atomic_uint_fast64_t next_load_id = 1;
    a->load_id = atomic_fetch_add(&next_load_id, 1);
    rc = 0;
done:
    if (ck) dk_st_close(ck);
    if (have_config) dk_lora_config_free(&c);
    free(tensors);
    free(targets);
    free(config_path);
    free(tensors_path);
    if (rc != 0) dk_lora_free(a);
    return rc;
}

void dk_lora_free(dk_lora_adapter *a) {
    if (a->modules)
        for (int64_t k = 0; k < a->n_layers * DK_N_MODULES; k++) {
            free(a->modules[k].A);
            free(a->modules[k].B);
        }
    free(a->modules);
    free(a->multiplier);
    free(a->embed);
    free(a->lm_head);
    free(a->path);
    memset(a, 0, sizeof *a);
}

void dk_lora_set_multiplier(dk_lora_adapter *a, float w) {
    for (int64_t k = 0; k < a->n_layers * DK_N_MODULES; k++) a->multiplier[k] = w;
    a->saved_multiplier = w;
}

/* ---------------------------------------------------------------------------------------------------
 * 5. Runtime product */

void dk_lora_apply(float *y, const float *x, int64_t M, const dk_lora_module *mod, float w, float *tmp) {
    if (w == 0.0f || !mod->A) return;
    dk_cpu_linear(tmp, x, mod->A, NULL, M, mod->r, mod->in_features); /* (M, r) = x Aᵀ */
    /* PEFT computes lora_B(lora_A(x)) * scaling; the multiplier scales the same term. */
    const float s = w * mod->scale;
    for (int64_t i = 0; i < M * mod->r; i++) tmp[i] *= s;
    /* y += tmp Bᵀ: accumulate onto y through a strided GEMM with beta = 1 */
    dk_cpu_linear_accumulate(y, tmp, mod->B, M, mod->out_features, mod->r);
}
