/* adl_steps.c — settings, tasks and graders of the ADL's generating steps, and their run order (adl_steps.h).
 *
 * Graders: each step's `grader:` section is the seed's (model_id, base_url, api_key_path, max_tokens) plus our
 * `mode`: llm (ask the endpoint; no key where one is configured is an error), offline (the documented heuristics
 * of host/llm/graders.h, results marked grader "offline"), or auto (the default: llm when the endpoint's key is
 * there, else offline with a line saying why). Cluster nodes without internet therefore run the whole ADL. */
#include "methods/adl_steps.h"
#include "methods/chat_generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"

const char *const ADL_VARIANT_GROUP[ADL_N_VARIANTS] = {"mean_diff", "base_mean", "ft_mean"};
const char *const ADL_VARIANT_PREFIX[ADL_N_VARIANTS] = {"", "base_", "ft_"};
const char *const ADL_VARIANT_FOLDER[ADL_N_VARIANTS] = {"difference", "base", "ft"};

int64_t adl_layer_index(const adl_state *st, int64_t layer) {
    for (int64_t i = 0; i < st->n_layers; i++)
        if (st->layers[i] == layer) return i;
    return -1;
}

int64_t adl_position_index(const adl_dataset *ds, int64_t label) {
    for (int64_t p = 0; p < ds->in.n_pos; p++)
        if (ds->in.labels[p] == label) return p;
    return -1;
}

const float *adl_mean_vector(const adl_means *m, int v, int64_t layer_index, int64_t pos_index) {
    const float *base = v == 0 ? m->mean_diff : v == 1 ? m->base_mean : m->ft_mean;
    return base + (layer_index * m->n_pos + pos_index) * m->d;
}

bool adl_vector_is_zero(const float *v, int64_t H) {
    for (int64_t h = 0; h < H; h++)
        if (v[h] != 0.0f) return false;
    return true;
}

char *adl_token_text(const dk_tokenizer *tok, int32_t id) {
    dk_err err = {0};
    char *text = dk_tokenizer_decode(tok, &id, 1, false, NULL, &err);
    return text ? text : dk_strdup("");
}

const adl_aps_found *adl_aps_lookup(const adl_steps *steps, int dataset, int64_t layer, int variant, int64_t label) {
    for (int i = 0; i < steps->n_aps_found; i++) {
        const adl_aps_record *r = &steps->aps_found[i];
        if (r->dataset == dataset && r->layer == layer && r->variant == variant && r->label == label)
            return &r->found;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * Settings */

static int read_int(const dk_cfg *cfg, const char *step, const char *key, int64_t min, int64_t *out, dk_err *err) {
    char *path = dk_sprintf("diffing.method.%s.%s", step, key);
    int rc = dk_cfg_try_int(cfg, path, out, err);
    if (rc == 0 && *out < min)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s = %lld: must be at least %lld", path, (long long)*out, (long long)min);
    free(path);
    return rc;
}

static int read_float(const dk_cfg *cfg, const char *step, const char *key, double min, double *out, dk_err *err) {
    char *path = dk_sprintf("diffing.method.%s.%s", step, key);
    int rc = dk_cfg_try_float(cfg, path, out, err);
    if (rc == 0 && !(*out >= min))
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s = %g: must be at least %g", path, *out, min);
    free(path);
    return rc;
}

static int read_bool(const dk_cfg *cfg, const char *step, const char *key, bool *out, dk_err *err) {
    char *path = dk_sprintf("diffing.method.%s.%s", step, key);
    int rc = dk_cfg_try_bool(cfg, path, out, err);
    free(path);
    return rc;
}

/* diffing.method.<step>.tasks: [{<dataset_field>, layer, positions[, source]}] matched to the run's datasets and
 * layers (dataset_field: "dataset", or the causal effect's "diff_source_dataset"). */
static int read_tasks(dk_method_job *job, const adl_state *st, const char *step, const char *dataset_field,
                      bool with_source, adl_task **out, int *n_out, dk_err *err) {
    char *key = dk_sprintf("diffing.method.%s.tasks", step);
    const dk_cfg_node *list = dk_cfg_get(job->cfg, key);
    int rc = 0;
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s must be a non-empty list of {%s, layer, positions%s}", key,
                        dataset_field, with_source ? ", source" : "");
    *out = rc == 0 ? dk_calloc(list->n, sizeof **out) : NULL;
    *n_out = 0;
    for (size_t i = 0; rc == 0 && i < list->n; i++) {
        adl_task *t = &(*out)[i];
        char *base = dk_sprintf("%s.%zu", key, i);
        char *ds_key = dk_sprintf("%s.%s", base, dataset_field), *pos_key = dk_sprintf("%s.positions", base);
        const char *ds_id = NULL;
        rc = dk_cfg_try_str(job->cfg, ds_key, false, &ds_id, err);
        t->dataset = -1;
        for (int d = 0; rc == 0 && d < st->n_datasets; d++)
            if (strcmp(st->ds[d].id, ds_id) == 0 || strcmp(st->ds[d].name, ds_id) == 0) t->dataset = d;
        if (rc == 0 && t->dataset < 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s = %s is not one of diffing.method.datasets (give a dataset's id, "
                            "e.g. %s, or its short name %s)", ds_key, ds_id, st->ds[0].id, st->ds[0].name);
        if (rc == 0) {
            const dk_cfg_node *layer = dk_cfg_map_get(list->items[i], "layer");
            char *layer_key = dk_sprintf("%s.layer", base);
            rc = layer ? dk_method_layer(layer, job->pair.n_layers, layer_key, &t->layer, err)
                       : dk_err_set(err, DK_EXIT_USAGE, "%s is missing (a fraction of depth or a layer index)", layer_key);
            if (rc == 0 && adl_layer_index(st, t->layer) < 0)
                rc = dk_err_set(err, DK_EXIT_USAGE, "%s gives layer %lld, which is not among diffing.method.layers: add "
                                "it there (the means of that layer are needed)", layer_key, (long long)t->layer);
            free(layer_key);
        }
        size_t np = 0;
        if (rc == 0) rc = dk_cfg_try_int_list(job->cfg, pos_key, &t->positions, &np, err);
        t->n_positions = (int64_t)np;
        if (rc == 0 && np == 0) rc = dk_err_set(err, DK_EXIT_USAGE, "%s is empty: list position labels", pos_key);
        for (size_t p = 0; rc == 0 && p < np; p++)
            if (adl_position_index(&st->ds[t->dataset], t->positions[p]) < 0)
                rc = dk_err_set(err, DK_EXIT_USAGE, "%s: position %lld is not among the dataset's positions (0..n-1 = "
                                "0..%lld; chat datasets also -pre_assistant_k..-1)", pos_key, (long long)t->positions[p],
                                (long long)st->n - 1);
        if (rc == 0 && with_source) {
            char *src_key = dk_sprintf("%s.source", base);
            const char *src = NULL;
            rc = dk_cfg_try_str(job->cfg, src_key, false, &src, err);
            if (rc == 0 && strcmp(src, "logitlens") == 0) t->source = ADL_SOURCE_LOGITLENS;
            else if (rc == 0 && strcmp(src, "patchscope") == 0) t->source = ADL_SOURCE_PATCHSCOPE;
            else if (rc == 0) rc = dk_err_set(err, DK_EXIT_USAGE, "%s = %s: expected logitlens or patchscope", src_key, src);
            free(src_key);
        }
        if (rc == 0) {
            (*n_out)++;
            dk_method_input(job, step, "task %zu: dataset %s, layer %lld, %lld positions%s", i,
                            st->ds[t->dataset].name, (long long)t->layer, (long long)t->n_positions,
                            !with_source ? "" : t->source == ADL_SOURCE_LOGITLENS ? ", logitlens" : ", patchscope");
        } else {
            free(t->positions);
            t->positions = NULL;
        }
        free(base), free(ds_key), free(pos_key);
    }
    free(key);
    return rc;
}

/* A step's grader: mode llm | offline | auto (see the top of this file). */
static int open_grader(dk_method_job *job, const char *step, adl_grader *out, dk_err *err) {
    char *section = dk_sprintf("diffing.method.%s.grader", step);
    char *mode_key = dk_sprintf("%s.mode", section), *tokens_key = dk_sprintf("%s.max_tokens", section);
    const char *mode = "auto";
    int rc = 0;
    if (dk_cfg_has(job->cfg, mode_key)) rc = dk_cfg_try_str(job->cfg, mode_key, false, &mode, err);
    if (rc == 0 && strcmp(mode, "auto") != 0 && strcmp(mode, "llm") != 0 && strcmp(mode, "offline") != 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s = %s: expected auto (the endpoint when its key is available, else the "
                        "offline heuristics), llm or offline", mode_key, mode);
    if (rc == 0 && strcmp(mode, "offline") == 0) {
        out->g = dk_grader_offline();
        out->why = dk_sprintf("offline (%s = offline)", mode_key);
    } else if (rc == 0) {
        dk_llm_config lc;
        rc = dk_llm_config_read(job->cfg, section, &lc, err);
        dk_err open_err = {0};
        if (rc == 0) out->client = dk_llm_client_open(&lc, &open_err);
        if (rc == 0 && out->client) {
            out->g = dk_grader_llm(out->client, lc.model_id);
            out->g.model_id = NULL; /* the client's model id */
            int64_t max_tokens = 0;
            if (dk_cfg_has(job->cfg, tokens_key) && dk_cfg_try_int(job->cfg, tokens_key, &max_tokens, err) != 0) rc = -1;
            out->g.max_tokens = (int)max_tokens;
            out->why = dk_sprintf("%s at %s (%s = %s)", lc.model_id, lc.base_url, mode_key, mode);
        } else if (rc == 0 && strcmp(mode, "auto") == 0 && open_err.code == DK_EXIT_USAGE) {
            out->g = dk_grader_offline();
            out->why = dk_sprintf("offline: %s (%s = auto; set it to llm to make this an error)", open_err.msg, mode_key);
        } else if (rc == 0) {
            rc = dk_err_set(err, open_err.code ? open_err.code : DK_EXIT_USAGE, "%s: %s", section, open_err.msg);
        }
        dk_llm_config_free(&lc);
    }
    if (rc == 0) {
        dk_grader_id(&out->g, out->id, sizeof out->id);
        dk_method_input(job, step, "grader %s", out->id);
        if (job->d.rank == 0) LOG_INFO("diff_adl %s grader: %s", step, out->why);
    }
    free(section), free(mode_key), free(tokens_key);
    return rc;
}

static void close_grader(adl_grader *g) {
    if (g->client) dk_llm_client_close(g->client);
    free(g->why);
    memset(g, 0, sizeof *g);
}

static int read_aps(dk_method_job *job, const adl_state *st, adl_aps_settings *a, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    if (read_bool(cfg, "auto_patch_scope", "enabled", &a->enabled, err) != 0) return -1;
    if (!a->enabled) return 0;
    if (read_int(cfg, "auto_patch_scope", "intersection_top_k", 1, &a->intersection_top_k, err) != 0 ||
        read_int(cfg, "auto_patch_scope", "tokens_k", 1, &a->tokens_k, err) != 0 ||
        read_bool(cfg, "auto_patch_scope", "use_normalized", &a->use_normalized, err) != 0 ||
        read_tasks(job, st, "auto_patch_scope", "dataset", false, &a->tasks, &a->n_tasks, err) != 0)
        return -1;
    dk_method_input(job, "auto_patch_scope", "intersection_top_k %lld, tokens_k %lld, use_normalized %d",
                    (long long)a->intersection_top_k, (long long)a->tokens_k, a->use_normalized);
    return open_grader(job, "auto_patch_scope", &a->grader, err);
}

static int read_steer(dk_method_job *job, const adl_state *st, adl_steer_settings *s, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    if (read_bool(cfg, "steering", "enabled", &s->enabled, err) != 0) return -1;
    if (!s->enabled) return 0;
    const char *file = NULL;
    if (read_int(cfg, "steering", "max_batch_size", 1, &s->max_batch_size, err) != 0 ||
        read_int(cfg, "steering", "threshold.batch_steps", 1, &s->batch_steps, err) != 0 ||
        read_int(cfg, "steering", "threshold.steps", 1, &s->steps, err) != 0 ||
        read_int(cfg, "steering", "threshold.num_samples_per_strength", 1, &s->num_samples_per_strength, err) != 0 ||
        read_float(cfg, "steering", "threshold.coherence_threshold", 0.0, &s->coherence_threshold, err) != 0 ||
        read_float(cfg, "steering", "threshold.max_strength", 0.0, &s->max_strength, err) != 0 ||
        read_int(cfg, "steering", "threshold.generation.max_new_tokens", 1, &s->thr_max_new_tokens, err) != 0 ||
        read_float(cfg, "steering", "threshold.generation.temperature", 0.0, &s->thr_temperature, err) != 0 ||
        read_int(cfg, "steering", "final.num_samples_per_prompt", 1, &s->final_samples, err) != 0 ||
        read_int(cfg, "steering", "final.generation.max_new_tokens", 1, &s->final_max_new_tokens, err) != 0 ||
        read_float(cfg, "steering", "final.generation.temperature", 0.0, &s->final_temperature, err) != 0 ||
        dk_cfg_try_str(cfg, "diffing.method.steering.prompts_file", false, &file, err) != 0)
        return -1;
    if (s->coherence_threshold > 100.0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.steering.threshold.coherence_threshold = %g: a percentage "
                          "of coherent samples, at most 100", s->coherence_threshold);
    /* do_sample: false means greedy (temperature 0) */
    bool sample = true;
    if (read_bool(cfg, "steering", "threshold.generation.do_sample", &sample, err) != 0) return -1;
    if (!sample) s->thr_temperature = 0;
    if (read_bool(cfg, "steering", "final.generation.do_sample", &sample, err) != 0) return -1;
    if (!sample) s->final_temperature = 0;
    s->prompts_file = dk_strdup(file);
    if (dk_read_prompts(file, "diffing.method.steering.prompts_file", &s->prompts, &s->n_prompts, err) != 0 ||
        read_tasks(job, st, "steering", "dataset", false, &s->tasks, &s->n_tasks, err) != 0)
        return -1;
    dk_method_input(job, "steering", "%d prompts from %s; threshold: batch_steps %lld, steps %lld, %lld samples per "
                    "strength, coherence >= %g, max strength %g, %lld tokens at T=%g; final: %lld samples, %lld tokens "
                    "at T=%g", s->n_prompts, file, (long long)s->batch_steps, (long long)s->steps,
                    (long long)s->num_samples_per_strength, s->coherence_threshold, s->max_strength,
                    (long long)s->thr_max_new_tokens, s->thr_temperature, (long long)s->final_samples,
                    (long long)s->final_max_new_tokens, s->final_temperature);
    for (int i = 0; i < s->n_prompts; i++) dk_method_input(job, "steering prompt", "%s", s->prompts[i]);
    if (!dk_cfg_str_or_null(cfg, "model.chat_template") && job->d.rank == 0)
        LOG_WARN("diff_adl steering: model.chat_template is null: the prompts are given to the model as raw text");
    return open_grader(job, "steering", &s->grader, err);
}

static int read_relevance(dk_method_job *job, const adl_state *st, adl_relevance_settings *r, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    if (read_bool(cfg, "token_relevance", "enabled", &r->enabled, err) != 0) return -1;
    if (!r->enabled) return 0;
    const char *agreement = NULL, *description = NULL;
    int64_t permutations = 3;
    if (read_bool(cfg, "token_relevance", "grade_difference", &r->grade[0], err) != 0 ||
        read_bool(cfg, "token_relevance", "grade_base", &r->grade[1], err) != 0 ||
        read_bool(cfg, "token_relevance", "grade_ft", &r->grade[2], err) != 0 ||
        read_int(cfg, "token_relevance", "frequent_tokens.num_tokens", 1, &r->num_tokens, err) != 0 ||
        read_int(cfg, "token_relevance", "frequent_tokens.min_count", 1, &r->min_count, err) != 0 ||
        read_int(cfg, "token_relevance", "k_candidate_tokens", 1, &r->k_candidates, err) != 0 ||
        read_int(cfg, "token_relevance", "grader.permutations", 1, &permutations, err) != 0 ||
        dk_cfg_try_str(cfg, "diffing.method.token_relevance.agreement", false, &agreement, err) != 0 ||
        dk_cfg_try_str(cfg, "organism.description_long", false, &description, err) != 0)
        return -1;
    if (strcmp(agreement, "all") == 0) r->agreement = DK_AGREEMENT_ALL;
    else if (strcmp(agreement, "majority") == 0) r->agreement = DK_AGREEMENT_MAJORITY;
    else return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.token_relevance.agreement = %s: expected all or majority",
                           agreement);
    r->permutations = (int)permutations;
    r->description = dk_strdup(description);
    const dk_cfg_node *baselines = dk_cfg_get(cfg, "diffing.method.token_relevance.baseline_organisms");
    if (baselines && baselines->kind == DK_CFG_SEQ && baselines->n > 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.token_relevance.baseline_organisms lists %zu organisms: "
                          "grading against other organisms' frequent tokens is not implemented; set it to []",
                          baselines->n);
    if (read_tasks(job, st, "token_relevance", "dataset", true, &r->tasks, &r->n_tasks, err) != 0) return -1;
    dk_method_input(job, "token_relevance", "variants %d%d%d, agreement %s, %d permutations, frequent tokens %lld "
                    "(min count %lld), %lld candidates; description: %s", r->grade[0], r->grade[1], r->grade[2],
                    agreement, r->permutations, (long long)r->num_tokens, (long long)r->min_count,
                    (long long)r->k_candidates, description);
    return open_grader(job, "token_relevance", &r->grader, err);
}

/* The string at path, or NULL when it is absent or null. */
static const char *optional_str(const dk_cfg *cfg, const char *path) {
    return dk_cfg_has(cfg, path) ? dk_cfg_str_or_null(cfg, path) : NULL;
}

/* A causal effect task's eval dataset: eval_dataset (default "training": organism.dataset) with, for any other
 * id, eval_dataset_is_chat and the optional eval_dataset_text_column / eval_dataset_messages_column. */
static int read_causal_eval(const dk_cfg *cfg, size_t i, adl_causal_eval *e, dk_err *err) {
    char *base = dk_sprintf("diffing.method.causal_effect.tasks.%zu", i);
    char *alias_key = dk_sprintf("%s.eval_dataset", base), *chat_key = dk_sprintf("%s.eval_dataset_is_chat", base);
    char *text_key = dk_sprintf("%s.eval_dataset_text_column", base);
    char *msgs_key = dk_sprintf("%s.eval_dataset_messages_column", base);
    const char *alias = optional_str(cfg, alias_key), *id = NULL, *text = NULL, *msgs = NULL;
    int rc = 0;
    e->alias = dk_strdup(alias ? alias : "training");
    if (strcmp(e->alias, "training") == 0) {
        rc = dk_cfg_try_str(cfg, "organism.dataset.id", false, &id, err);
        if (rc == 0) rc = dk_cfg_try_bool(cfg, "organism.dataset.is_chat", &e->is_chat, err);
        text = optional_str(cfg, "organism.dataset.text_column");
        msgs = optional_str(cfg, "organism.dataset.messages_column");
    } else {
        id = e->alias;
        if (!dk_cfg_has(cfg, chat_key))
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s is missing: say whether %s = %s is a chat dataset (true or false)",
                            chat_key, alias_key, e->alias);
        if (rc == 0) rc = dk_cfg_try_bool(cfg, chat_key, &e->is_chat, err);
        text = optional_str(cfg, text_key);
        msgs = optional_str(cfg, msgs_key);
    }
    if (rc == 0) {
        e->id = dk_strdup(id);
        e->text_column = dk_strdup(text ? text : "text");
        e->messages_column = dk_strdup(msgs ? msgs : "messages");
    }
    free(base), free(alias_key), free(chat_key), free(text_key), free(msgs_key);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int read_causal(dk_method_job *job, const adl_state *st, adl_causal_settings *c, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    if (read_bool(cfg, "causal_effect", "enabled", &c->enabled, err) != 0) return -1;
    if (!c->enabled) return 0;
    const char *direction = NULL, *split = NULL;
    if (dk_cfg_try_str(cfg, "diffing.method.causal_effect.patch_direction", false, &direction, err) != 0 ||
        dk_cfg_try_str(cfg, "diffing.method.causal_effect.split", false, &split, err) != 0 ||
        read_bool(cfg, "causal_effect", "zero_ablate", &c->zero_ablate, err) != 0 ||
        read_int(cfg, "causal_effect", "batch_size", 1, &c->batch_size, err) != 0 ||
        read_int(cfg, "causal_effect", "max_samples", 1, &c->max_samples, err) != 0 ||
        read_int(cfg, "causal_effect", "max_total_tokens", 2, &c->max_total_tokens, err) != 0 ||
        read_int(cfg, "causal_effect", "after_k", 0, &c->after_k, err) != 0 ||
        read_int(cfg, "causal_effect", "num_random_vectors", 1, &c->num_random, err) != 0 ||
        read_int(cfg, "causal_effect", "num_random_diff_vectors", 0, &c->num_random_diff, err) != 0)
        return -1;
    if (strcmp(direction, "base_to_ft") != 0 && strcmp(direction, "ft_to_base") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.causal_effect.patch_direction = %s: expected base_to_ft "
                          "(the finetuned model gets the base model's component) or ft_to_base", direction);
    c->base_to_ft = strcmp(direction, "base_to_ft") == 0;
    c->split = dk_strdup(split);
    if (c->num_random_diff > 0) {
        const char *chat = optional_str(cfg, "dataset.chat.id");
        if (!chat)
            return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.causal_effect.num_random_diff_vectors = %lld draws "
                              "from dataset.chat.id, which is not set: set it, or num_random_diff_vectors to 0",
                              (long long)c->num_random_diff);
        c->rdiff_dataset = dk_strdup(chat);
    }
    if (read_tasks(job, st, "causal_effect", "diff_source_dataset", false, &c->tasks, &c->n_tasks, err) != 0) return -1;
    /* tasks of the same (diff_source_dataset, layer, eval dataset) are one group, as in the seed */
    c->evals = dk_calloc((size_t)c->n_tasks, sizeof *c->evals);
    int n_groups = 0;
    for (int i = 0; i < c->n_tasks; i++) {
        adl_causal_eval e = {0};
        if (read_causal_eval(cfg, (size_t)i, &e, err) != 0) {
            free(e.alias), free(e.id), free(e.text_column), free(e.messages_column);
            /* slots n_groups..i-1 are stale copies (merged or moved into a group): only i.. are still owned here */
            for (int j = i; j < c->n_tasks; j++) free(c->tasks[j].positions);
            c->n_tasks = n_groups; /* adl_steps_free frees the groups */
            return -1;
        }
        adl_task t = c->tasks[i];
        int into = -1;
        for (int j = 0; j < n_groups; j++)
            if (c->tasks[j].dataset == t.dataset && c->tasks[j].layer == t.layer && strcmp(c->evals[j].id, e.id) == 0)
                into = j;
        if (into < 0) {
            c->tasks[n_groups] = t;
            c->evals[n_groups++] = e;
        } else {
            adl_task *g = &c->tasks[into];
            g->positions = dk_realloc(g->positions, (size_t)(g->n_positions + t.n_positions) * sizeof *g->positions);
            memcpy(g->positions + g->n_positions, t.positions, (size_t)t.n_positions * sizeof *t.positions);
            g->n_positions += t.n_positions;
            free(t.positions);
            free(e.alias), free(e.id), free(e.text_column), free(e.messages_column);
        }
    }
    c->n_tasks = n_groups;
    for (int i = 0; i < c->n_tasks; i++) {
        adl_task *t = &c->tasks[i];
        qsort(t->positions, (size_t)t->n_positions, sizeof *t->positions, cmp_i64);
        int64_t n = 0;
        for (int64_t p = 0; p < t->n_positions; p++)
            if (n == 0 || t->positions[n - 1] != t->positions[p]) t->positions[n++] = t->positions[p];
        t->n_positions = n;
        dk_method_input(job, "causal_effect", "group %d: eval %s (%s, chat %d), %lld positions", i, c->evals[i].alias,
                        c->evals[i].id, c->evals[i].is_chat, (long long)n);
    }
    dk_method_input(job, "causal_effect", "%s, zero_ablate %d, split %s, batch_size %lld, max_samples %lld, "
                    "max_total_tokens %lld, after_k %lld, %lld random vectors, %lld random difference vectors (%s), "
                    "seed %lld", direction, c->zero_ablate, c->split, (long long)c->batch_size,
                    (long long)c->max_samples, (long long)c->max_total_tokens, (long long)c->after_k,
                    (long long)c->num_random, (long long)c->num_random_diff,
                    c->rdiff_dataset ? c->rdiff_dataset : "none", (long long)job->seed);
    return 0;
}

/* A token relevance task with source patchscope grades auto Patchscope's tokens: that step must run at the same
 * dataset, layer and position (found now, not after hours of steering). */
static int check_patchscope_sources(const adl_state *st, const adl_steps *steps, dk_err *err) {
    for (int t = 0; steps->relevance.enabled && t < steps->relevance.n_tasks; t++) {
        const adl_task *r = &steps->relevance.tasks[t];
        for (int64_t p = 0; r->source == ADL_SOURCE_PATCHSCOPE && p < r->n_positions; p++) {
            bool covered = false;
            for (int a = 0; steps->aps.enabled && a < steps->aps.n_tasks && !covered; a++) {
                const adl_task *aps = &steps->aps.tasks[a];
                for (int64_t q = 0; aps->dataset == r->dataset && aps->layer == r->layer && q < aps->n_positions; q++)
                    covered |= aps->positions[q] == r->positions[p];
            }
            if (!covered)
                return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.token_relevance.tasks.%d (source patchscope) grades "
                                  "auto Patchscope's tokens at %s layer %lld position %lld, but auto_patch_scope %s: "
                                  "enable it and add the position to its tasks, or use source logitlens", t,
                                  st->ds[r->dataset].name, (long long)r->layer, (long long)r->positions[p],
                                  steps->aps.enabled ? "has no task there" : "is disabled");
        }
    }
    return 0;
}

int adl_steps_read(dk_method_job *job, adl_state *st, adl_steps *steps, dk_err *err) {
    memset(steps, 0, sizeof *steps);
    if (dk_cfg_try_int(job->cfg, "diffing.method.agent.overview.steering_samples_per_prompt",
                       &steps->overview_samples_per_prompt, err) != 0 ||
        dk_cfg_try_int(job->cfg, "diffing.method.agent.overview.max_sample_chars", &steps->overview_max_chars, err) != 0)
        return -1;
    if (read_aps(job, st, &steps->aps, err) != 0 || read_steer(job, st, &steps->steer, err) != 0 ||
        read_relevance(job, st, &steps->relevance, err) != 0 || read_causal(job, st, &steps->causal, err) != 0)
        return -1;
    return check_patchscope_sources(st, steps, err);
}

static void free_tasks(adl_task *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].positions);
    free(t);
}

void adl_steps_free(adl_steps *steps) {
    free_tasks(steps->aps.tasks, steps->aps.n_tasks);
    close_grader(&steps->aps.grader);
    free_tasks(steps->steer.tasks, steps->steer.n_tasks);
    for (int i = 0; i < steps->steer.n_prompts; i++) free(steps->steer.prompts[i]);
    free(steps->steer.prompts);
    free(steps->steer.prompts_file);
    close_grader(&steps->steer.grader);
    free_tasks(steps->relevance.tasks, steps->relevance.n_tasks);
    free(steps->relevance.description);
    close_grader(&steps->relevance.grader);
    for (int i = 0; steps->causal.evals && i < steps->causal.n_tasks; i++) {
        adl_causal_eval *e = &steps->causal.evals[i];
        free(e->alias), free(e->id), free(e->text_column), free(e->messages_column);
    }
    free_tasks(steps->causal.tasks, steps->causal.n_tasks);
    free(steps->causal.evals), free(steps->causal.split), free(steps->causal.rdiff_dataset);
    for (int i = 0; i < steps->n_frequent; i++) free(steps->frequent[i]);
    free(steps->frequent);
    for (int i = 0; i < steps->n_aps_found; i++) {
        adl_aps_found *f = &steps->aps_found[i].found;
        for (int j = 0; j < f->n_tokens; j++) free(f->tokens[j]);
        for (int j = 0; j < f->n_selected; j++) free(f->selected[j]);
        free(f->tokens), free(f->probs), free(f->selected);
    }
    free(steps->aps_found);
    memset(steps, 0, sizeof *steps);
}

/* ---------------------------------------------------------------------------------------------------
 * Running */

/* The overview object of layer `layer` (adl_write.c made it), or NULL when the overview leaves it out. */
static cJSON *layer_overview(cJSON *overview_layers, int64_t layer) {
    if (!overview_layers) return NULL;
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)layer);
    return cJSON_GetObjectItemCaseSensitive(overview_layers, key);
}

int adl_steps_run(dk_method_job *job, const adl_state *st, adl_steps *steps, int ds_index, const adl_means *m,
                  cJSON *overview_layers, dk_err *err) {
    const adl_dataset *ds = &st->ds[ds_index];
    int rc = 0;
    /* auto Patchscope first: token relevance grades its tokens */
    for (int t = 0; steps->aps.enabled && t < steps->aps.n_tasks && rc == 0; t++) {
        const adl_task *task = &steps->aps.tasks[t];
        if (task->dataset != ds_index) continue;
        for (int64_t p = 0; p < task->n_positions && rc == 0; p++)
            rc = adl_aps_run(job, st, steps, ds, m, task, task->positions[p],
                             layer_overview(overview_layers, task->layer), err);
    }
    for (int t = 0; steps->steer.enabled && t < steps->steer.n_tasks && rc == 0; t++) {
        const adl_task *task = &steps->steer.tasks[t];
        if (task->dataset != ds_index) continue;
        for (int64_t p = 0; p < task->n_positions && rc == 0; p++)
            rc = adl_steer_run(job, st, steps, ds, m, task, task->positions[p],
                               layer_overview(overview_layers, task->layer), err);
    }
    for (int t = 0; steps->relevance.enabled && t < steps->relevance.n_tasks && rc == 0; t++) {
        const adl_task *task = &steps->relevance.tasks[t];
        if (task->dataset != ds_index) continue;
        for (int64_t p = 0; p < task->n_positions && rc == 0; p++)
            rc = adl_relevance_run(job, st, steps, ds, m, task, task->positions[p], err);
    }
    for (int t = 0; steps->causal.enabled && t < steps->causal.n_tasks && rc == 0; t++)
        if (steps->causal.tasks[t].dataset == ds_index) rc = adl_causal_run(job, st, steps, ds, m, t, err);
    return rc;
}
