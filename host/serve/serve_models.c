/* serve_models.c — the models `diffkit serve` offers (serve.h): the base model mapped once, each organism's LoRA
 * adapter loaded once, and every offered name as a variant of one of them. A variant is the organism's loaded
 * adapter with its own multiplier array (A and B shared), so ORGANISM@2.5 or an amplification preset costs one
 * float per (layer, module), and ORGANISM~ALPHA is the organism stepped together with the base in dk_generate.
 *
 * Organisms are found as every job finds them (pipeline/model_ids.h): the configured one from cfg, any other by
 * composing the configuration again with organism=NAME (and the same model), so organism configs, variants,
 * adapter ids and the tokenizer check mean what they mean everywhere else. */
#include "serve/serve_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/node.h"
#include "core/log.h"
#include "core/strutil.h"
#include "model/amplification.h"
#include "pipeline/model_ids.h"

/* The adapter folder of organism `name` for the configured model: cfg's own organism, or cfg composed again. */
static int organism_dir(const dk_cfg *cfg, const char *base_dir, const char *name, const char *config_dir,
                        const char *const *overrides, size_t n_overrides, char **dir, dk_err *err) {
    const char *configured = dk_cfg_has(cfg, "organism.name") ? dk_cfg_str(cfg, "organism.name") : NULL;
    dk_cfg *own = NULL;
    if (!configured || strcmp(configured, name) != 0) {
        const char **args = dk_malloc((n_overrides + 2) * sizeof *args);
        for (size_t i = 0; i < n_overrides; i++) args[i] = overrides[i];
        char *organism_arg = dk_sprintf("organism=%s", name);
        char *model_arg = dk_sprintf("model=%s", dk_cfg_str(cfg, "model.name"));
        args[n_overrides] = organism_arg;
        args[n_overrides + 1] = model_arg;
        dk_cfg_options o = {.config_dir = config_dir, .overrides = args, .n_overrides = n_overrides + 2};
        own = dk_cfg_compose(&o, err);
        free(args);
        free(organism_arg);
        free(model_arg);
        if (!own) {
            dk_err_prefix(err, "serve.models: organism %s: ", name);
            return -1;
        }
    }
    dk_model_ids ids;
    int rc = dk_model_ids_resolve(&ids, own ? own : cfg, err);
    if (rc == 0 && ids.base_only)
        rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: %s is not an organism with an adapter (organism=None is the "
                        "base model alone: offer the base under its model name)", name);
    else if (rc == 0 && strcmp(ids.base_dir, base_dir) != 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: organism %s runs on %s, not on the served base model %s",
                        name, ids.base_dir, base_dir);
    else if (rc == 0 && !ids.ft_is_adapter)
        rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: organism %s is a full finetune (%s): diffkit serve offers "
                        "LoRA organisms, which share the base weights; serve it as a base model (model.model_id=%s)",
                        name, ids.ft_dir, ids.ft_dir);
    if (rc == 0) *dir = dk_strdup(ids.ft_dir);
    else if (!dk_str_starts_with(err->msg, "serve.models")) dk_err_prefix(err, "serve.models: organism %s: ", name);
    dk_model_ids_free(&ids);
    dk_cfg_free(own);
    return rc;
}

/* The index of organism `name`, loading it on first use. */
static int organism_index(serve_registry *r, const dk_cfg *cfg, const char *name, const char *config_dir,
                          const char *const *overrides, size_t n_overrides, dk_err *err) {
    for (int i = 0; i < r->n_organisms; i++)
        if (strcmp(r->organisms[i].name, name) == 0) return i;
    char *dir = NULL;
    if (organism_dir(cfg, r->base_dir, name, config_dir, overrides, n_overrides, &dir, err) != 0) return -1;
    r->organisms = dk_realloc(r->organisms, (size_t)(r->n_organisms + 1) * sizeof *r->organisms);
    serve_organism *o = &r->organisms[r->n_organisms];
    memset(o, 0, sizeof *o);
    if (dk_lora_load(dir, &r->base.cfg, &r->base.w, &o->adapter, err) != 0) {
        dk_err_prefix(err, "serve.models: organism %s: ", name);
        free(dir);
        return -1;
    }
    o->name = dk_strdup(name);
    o->dir = dir;
    LOG_INFO("serve: organism %s: LoRA adapter %s", name, dir);
    return r->n_organisms++;
}

/* A number as the config files write one. */
static bool parse_number(const char *text, double *out) {
    int64_t integer;
    if (dk_cfg_parse_float(text, out)) return true;
    if (!dk_cfg_parse_int(text, &integer)) return false;
    *out = (double)integer;
    return true;
}

/* Model `name` of serve.models: base | ORGANISM | ORGANISM@W | ORGANISM@PRESET_OR_FILE | ORGANISM~ALPHA. */
static int add_model(serve_registry *r, const dk_cfg *cfg, const char *name, const char *config_dir,
                     const char *const *overrides, size_t n_overrides, dk_err *err) {
    if (serve_registry_find(r, name) >= 0)
        return dk_err_set(err, DK_EXIT_USAGE, "serve.models names %s twice", name);
    const char *tilde = strrchr(name, '~'), *at = strrchr(name, '@');
    const char *cut = tilde && (!at || tilde > at) ? tilde : at;
    char *organism = cut ? dk_sprintf("%.*s", (int)(cut - name), name) : dk_strdup(name);
    const char *suffix = cut ? cut + 1 : NULL;
    serve_model m = {.id = dk_strdup(name), .organism = -1};
    int rc = 0;
    double value = 0;
    if (strcmp(organism, r->base_name) == 0) {
        if (suffix)
            rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: %s: %s is the base model, which has no adapter to "
                            "amplify; amplify an organism (ORGANISM@W, ORGANISM~ALPHA)", name, r->base_name);
        else
            m.description = dk_strdup("the base model");
    } else if (!organism[0] || (suffix && !suffix[0])) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: '%s' is not a model name: write %s (the base), ORGANISM, "
                        "ORGANISM@W, ORGANISM@PRESET or ORGANISM~ALPHA", name, r->base_name);
    } else if ((m.organism = organism_index(r, cfg, organism, config_dir, overrides, n_overrides, err)) < 0) {
        rc = -1;
    } else {
        const dk_lora_adapter *loaded = &r->organisms[m.organism].adapter;
        m.variant = *loaded; /* shares A, B and the saved modules; owns its multipliers */
        size_t n_mult = (size_t)(loaded->n_layers * DK_N_MODULES);
        m.variant.multiplier = dk_malloc(n_mult * sizeof(float));
        memcpy(m.variant.multiplier, loaded->multiplier, n_mult * sizeof(float));
        if (cut == tilde && suffix) {
            if (!parse_number(suffix, &value))
                rc = dk_err_set(err, DK_EXIT_USAGE, "serve.models: %s: after '~' comes the logit amplification alpha, "
                                "a number (%s~2.0), not '%s'", name, organism, suffix);
            m.logit_amp = true;
            m.logit_amp_alpha = (float)value;
            m.description = dk_sprintf("organism %s, tokens drawn from logits_ft + %g·(logits_ft − logits_base)",
                                       organism, value);
        } else if (suffix && parse_number(suffix, &value)) {
            dk_lora_set_multiplier(&m.variant, (float)value);
            m.description = dk_sprintf("organism %s with its LoRA at multiplier %g", organism, value);
        } else if (suffix) {
            dk_amp_config amp;
            int64_t unadapted = 0;
            rc = dk_amp_load(suffix, config_dir, &amp, err);
            if (rc == 0) {
                rc = dk_amp_apply_config(&amp, organism, &m.variant, &unadapted, err);
                m.description = dk_sprintf("organism %s amplified by %s", organism, amp.name);
                if (rc == 0 && unadapted > 0)
                    LOG_WARN("serve: %s: amplification %s sets a weight on %lld (layer, attention|mlp) pairs the "
                             "adapter does not adapt: nothing changes there", name, amp.name, (long long)unadapted);
                dk_amp_free(&amp);
            }
            if (rc != 0 && !dk_str_starts_with(err->msg, "serve.models")) dk_err_prefix(err, "serve.models: %s: ", name);
        } else {
            m.description = dk_sprintf("organism %s (its LoRA adapter)", organism);
        }
    }
    free(organism);
    if (rc != 0) {
        free(m.id);
        free(m.description);
        if (m.organism >= 0) free(m.variant.multiplier);
        return -1;
    }
    r->models = dk_realloc(r->models, (size_t)(r->n_models + 1) * sizeof *r->models);
    r->models[r->n_models++] = m;
    LOG_INFO("serve: model %s: %s", m.id, m.description);
    return 0;
}

int serve_registry_open(serve_registry *r, const dk_cfg *cfg, const dk_serve_config *sc, const char *config_dir,
                        const char *const *overrides, size_t n_overrides, int threads, dk_err *err) {
    memset(r, 0, sizeof *r);
    dk_model_ids ids;
    if (dk_model_ids_resolve(&ids, cfg, err) != 0) {
        dk_model_ids_free(&ids);
        return -1;
    }
    r->base_name = dk_strdup(dk_cfg_str(cfg, "model.name"));
    r->base_dir = dk_strdup(ids.base_dir);
    char *tokenizer_path = dk_strdup(ids.tokenizer_path);
    char *configured = ids.base_only ? NULL : dk_strdup(dk_cfg_str(cfg, "organism.name"));
    dk_model_ids_free(&ids);
    int rc = dk_model_open(r->base_dir, &r->base, err);
    if (rc == 0) {
        r->base_open = true;
        if (threads > 0) r->base.n_threads = threads;
        r->context = r->base.cfg.max_position_embeddings;
        r->tok = dk_tokenizer_load(tokenizer_path, err);
        rc = r->tok ? 0 : -1;
    }
    if (rc == 0) {
        dk_err chat_err = {0};
        const char *family = dk_cfg_str_or_null(cfg, "model.chat_template");
        r->has_chat = dk_chat_format_open(r->tok, r->base_dir, family, -1, &r->chat, &chat_err) == 0;
        if (!r->has_chat)
            snprintf(r->chat_problem, sizeof r->chat_problem, "model %.200s has no chat template (%.700s); use /v1/completions",
                     r->base_name, chat_err.msg);
        else if (r->chat.warning[0])
            LOG_WARN("serve: chat template %s: %s", dk_chat_family_name(r->chat.family), r->chat.warning);
        char warning[2048];
        r->n_stop = dk_model_stop_ids(&r->base, r->base_dir, r->tok, r->stop_ids, warning, sizeof warning);
        if (warning[0]) LOG_WARN("serve: %s", warning);
    }
    if (rc == 0 && sc->n_models == 0) { /* the configured base and organism */
        rc = add_model(r, cfg, r->base_name, config_dir, overrides, n_overrides, err);
        if (rc == 0 && configured) rc = add_model(r, cfg, configured, config_dir, overrides, n_overrides, err);
    }
    for (size_t i = 0; rc == 0 && i < sc->n_models; i++)
        rc = add_model(r, cfg, sc->models[i], config_dir, overrides, n_overrides, err);
    free(tokenizer_path);
    free(configured);
    return rc;
}

void serve_registry_close(serve_registry *r) {
    for (int i = 0; i < r->n_models; i++) {
        free(r->models[i].id);
        free(r->models[i].description);
        if (r->models[i].organism >= 0) free(r->models[i].variant.multiplier);
    }
    free(r->models);
    for (int i = 0; i < r->n_organisms; i++) {
        dk_lora_free(&r->organisms[i].adapter);
        free(r->organisms[i].name);
        free(r->organisms[i].dir);
    }
    free(r->organisms);
    if (r->tok) dk_tokenizer_free(r->tok);
    if (r->has_chat) dk_chat_format_free(&r->chat);
    if (r->base_open) dk_model_close(&r->base);
    free(r->base_name);
    free(r->base_dir);
    memset(r, 0, sizeof *r);
}

int serve_registry_find(const serve_registry *r, const char *id) {
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].id, id) == 0) return i;
    return -1;
}
