/* adl.c — the Activation Difference Lens (diff_adl; seed_spec §5.1–5.3, §5.8, §14.4): for each configured
 * dataset, the per-position means of the finetuned − base residual stream (and of each model's own) over the
 * first n tokens of up to max_samples sequences, at each configured layer, computed with both models on the fly;
 * the models' mean norms; the logit lens of every mean vector through the finetuned model's head; and the agent's
 * overview as the results' summary.
 *
 * This file reads the settings and checks every input before any forward pass (prepare), then runs the datasets
 * in order (run): adl_means.c computes, adl_write.c writes. Results: ${diffing.results_dir}/activation_difference_
 * lens/ (for organism_variant != default the seed's {organism}_{variant} folder: results_dir + "_" + variant),
 * docs/formats.md "ADL results".
 *
 * The generating steps (auto Patchscope, steering, token relevance; seed_spec §5.4–5.6) run per dataset after the
 * logit lens, on rank 0, with the grader each step configures (an LLM endpoint or offline heuristics), then the
 * seed's optional causal effect step (§5.7, off by default): adl_steps.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/file.h"
#include "io/json_value.h"
#include "methods/adl_internal.h"
#include "methods/adl_steps.h"
#include "methods/methods.h"
#include "pipeline/pp_dataset.h"

static const char *const KEY = "diffing.method";

static int positive(const dk_cfg *cfg, const char *key, int64_t min, int64_t *out, dk_err *err) {
    if (dk_cfg_try_int(cfg, key, out, err) != 0) return -1;
    if (*out < min)
        return dk_err_set(err, DK_EXIT_USAGE, "%s = %lld: must be at least %lld", key, (long long)*out, (long long)min);
    return 0;
}

/* The under-trained-token hook (issue #11 adds a per-model list): logit_lens.undertrained = mark | off, and
 * logit_lens.undertrained_list = a JSON file holding the list (an array of token ids, or {"token_ids": [...]}),
 * or null when there is none (nothing is marked; the results say so). */
static int read_undertrained(dk_method_job *job, adl_state *st, dk_err *err) {
    const char *mode = NULL, *list = NULL;
    if (dk_cfg_try_str(job->cfg, "diffing.method.logit_lens.undertrained", false, &mode, err) != 0) return -1;
    if (strcmp(mode, "mark") != 0 && strcmp(mode, "off") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.logit_lens.undertrained = %s: expected mark (flag "
                          "under-trained tokens beside the logit-lens tokens) or off", mode);
    st->mark_undertrained = strcmp(mode, "mark") == 0;
    if (dk_cfg_try_str(job->cfg, "diffing.method.logit_lens.undertrained_list", true, &list, err) != 0) return -1;
    if (!st->mark_undertrained) {
        st->undertrained_source = dk_strdup("off (diffing.method.logit_lens.undertrained=off)");
        return 0;
    }
    if (!list) {
        st->undertrained_source = dk_strdup("unavailable: no under-trained token list was given "
                                            "(diffing.method.logit_lens.undertrained_list)");
        return 0;
    }
    size_t size = 0;
    char *text = dk_read_file(list, &size, err);
    if (!text) {
        dk_err_prefix(err, "diffing.method.logit_lens.undertrained_list: ");
        return -1;
    }
    char why[256];
    cJSON *root = dk_json_parse_one(text, size, why, sizeof why);
    free(text);
    const cJSON *ids = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "token_ids") : root;
    const int64_t V = job->pair.ft_vocab_size; /* from config.json: prepare runs before the models load */
    int rc = 0;
    if (!cJSON_IsArray(ids)) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "diffing.method.logit_lens.undertrained_list = %s: expected a JSON array "
                        "of token ids or an object with \"token_ids\"%s%s", list, root ? "" : ": ", root ? "" : why);
    } else {
        st->undertrained = dk_calloc((size_t)V, sizeof *st->undertrained);
        const cJSON *it;
        cJSON_ArrayForEach(it, ids) {
            if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble || it->valuedouble < 0 ||
                it->valuedouble >= (double)V) {
                rc = dk_err_set(err, DK_EXIT_USAGE, "diffing.method.logit_lens.undertrained_list = %s: every entry "
                                "must be a token id in [0, %lld)", list, (long long)V);
                break;
            }
            st->undertrained[(int64_t)it->valuedouble] = true;
        }
        st->undertrained_source = dk_strdup(list);
    }
    cJSON_Delete(root);
    return rc;
}

/* One entry of diffing.method.datasets: resolved, read and tokenized (every rank reads the same file). */
static int read_dataset(dk_method_job *job, adl_state *st, int64_t i, const dk_chat_family *family, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    adl_dataset *ds = &st->ds[st->n_datasets];
    char *key = dk_sprintf("%s.datasets.%lld", KEY, (long long)i);
    char *id_key = dk_sprintf("%s.id", key), *chat_key = dk_sprintf("%s.is_chat", key);
    char *text_key = dk_sprintf("%s.text_column", key), *msg_key = dk_sprintf("%s.messages_column", key);
    const char *id = NULL, *column = NULL;
    int rc = dk_cfg_try_str(cfg, id_key, false, &id, err);
    if (rc == 0) rc = dk_cfg_try_bool(cfg, chat_key, &ds->is_chat, err);
    if (rc == 0) rc = dk_cfg_try_str(cfg, ds->is_chat ? msg_key : text_key, false, &column, err);
    if (rc == 0) {
        ds->id = dk_strdup(id);
        rc = dk_pp_resolve_dataset(id, dk_cfg_str(cfg, "diffing.method.split"), id_key, &ds->path, &ds->name, err);
    }
    for (int j = 0; rc == 0 && j < st->n_datasets; j++)
        if (strcmp(st->ds[j].name, ds->name) == 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s and %s.datasets.%d are both named %s in the results: list each "
                            "dataset once", id_key, KEY, j, ds->name);
    if (rc == 0 && ds->is_chat && !family)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s is a chat dataset, but model.chat_template is null: name the model's "
                        "chat template family", chat_key);
    if (rc == 0) {
        adl_input_options o = {
            .path = ds->path, .name = ds->name, .is_chat = ds->is_chat, .text_column = column,
            .messages_column = column, .family = family ? *family : DK_CHAT_QWEN3, .bos_token = job->pair.bos_token,
            .n = st->n, .pre_assistant_k = ds->is_chat ? st->pre_assistant_k : 0, .max_samples = st->max_samples,
            .max_user_tokens = 512, .n_threads = job->threads,
            .debug_print_samples = job->d.rank == 0 && dk_cfg_has(cfg, "diffing.method.debug_print_samples")
                                       ? dk_cfg_int(cfg, "diffing.method.debug_print_samples") : 0};
        rc = adl_inputs_read(&o, job->tok, &ds->in, err);
    }
    if (rc == 0) {
        st->n_datasets++;
        const adl_inputs *in = &ds->in;
        dk_method_input(job, "dataset", "%s (%s) %s: %016llx, %lld sequences of %lld positions", ds->name, ds->path,
                        ds->is_chat ? "chat" : "text", (unsigned long long)in->content_hash, (long long)in->n_seqs,
                        (long long)in->n_pos);
        if (job->d.rank == 0)
            LOG_INFO("diff_adl %s: %lld sequences from %lld records (%lld too short, %lld skipped)%s", ds->name,
                     (long long)in->n_seqs, (long long)in->n_records, (long long)in->n_short,
                     (long long)in->n_skipped, in->n_seqs < st->max_samples ? ": fewer than max_samples" : "");
    } else {
        free(ds->id), free(ds->name), free(ds->path);
        memset(ds, 0, sizeof *ds);
    }
    free(key), free(id_key), free(chat_key), free(text_key), free(msg_key);
    return rc;
}

/* diffing.method.agent.overview: its layers (relative or absolute), positions and top-k. */
static int read_overview(dk_method_job *job, adl_state *st, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    if (dk_method_layers(cfg, "diffing.method.agent.overview.layers", job->pair.n_layers, &st->overview_layers,
                         &st->n_overview_layers, err) != 0)
        return -1;
    size_t n = 0;
    if (dk_cfg_try_int_list(cfg, "diffing.method.agent.overview.positions", &st->overview_positions, &n, err) != 0)
        return -1;
    st->n_overview_positions = (int64_t)n;
    if (positive(cfg, "diffing.method.agent.overview.top_k_tokens", 1, &st->overview_top_k, err) != 0) return -1;
    dk_strbuf t = {0};
    for (int64_t i = 0; i < st->n_overview_layers; i++) dk_strbuf_printf(&t, " %lld", (long long)st->overview_layers[i]);
    dk_strbuf_append(&t, "; positions");
    for (int64_t i = 0; i < st->n_overview_positions; i++)
        dk_strbuf_printf(&t, " %lld", (long long)st->overview_positions[i]);
    dk_method_input(job, "overview", "layers%s; top_k_tokens %lld", t.data, (long long)st->overview_top_k);
    dk_strbuf_free(&t);
    for (int64_t i = 0; i < st->n_overview_layers && job->d.rank == 0; i++) {
        bool computed = false;
        for (int64_t j = 0; j < st->n_layers; j++) computed |= st->layers[j] == st->overview_layers[i];
        if (!computed)
            LOG_WARN("diff_adl: diffing.method.agent.overview.layers gives layer %lld, which is not among "
                     "diffing.method.layers: the overview leaves it out", (long long)st->overview_layers[i]);
    }
    return 0;
}

/* diffing.method.agent.overview.datasets: [] shows every dataset (ds1, ds2, ... in run order); a list shows those it
 * names (by short name or id), numbered in its order. */
static int overview_datasets(dk_method_job *job, adl_state *st, dk_err *err) {
    const dk_cfg_node *list = dk_cfg_get(job->cfg, "diffing.method.agent.overview.datasets");
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0) {
        for (int i = 0; i < st->n_datasets; i++) st->ds[i].overview_index = i + 1;
        return 0;
    }
    for (size_t j = 0; j < list->n; j++) {
        const dk_cfg_node *it = list->items[j];
        int found = -1;
        for (int i = 0; it->kind == DK_CFG_SCALAR && i < st->n_datasets && found < 0; i++)
            if (strcmp(it->text, st->ds[i].name) == 0 || strcmp(it->text, st->ds[i].id) == 0) found = i;
        if (found < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.agent.overview.datasets[%zu] = %s is not one of "
                              "diffing.method.datasets (give a dataset's short name, e.g. %s, or its id)", j,
                              it->text ? it->text : "?", st->ds[0].name);
        if (!st->ds[found].overview_index) st->ds[found].overview_index = (int)j + 1;
        dk_method_input(job, "overview dataset", "%s", st->ds[found].name);
    }
    return 0;
}

/* organism_variant != default: the seed's {organism}_{variant} folder (results_dir ends with the organism). */
static void variant_results_dir(dk_method_job *job) {
    const char *variant = dk_cfg_str_or_null(job->cfg, "organism_variant");
    if (!variant || !*variant || strcmp(variant, "default") == 0) return;
    char *base = dk_strdup(dk_cfg_str(job->cfg, "diffing.results_dir"));
    size_t len = strlen(base);
    while (len > 1 && base[len - 1] == '/') base[--len] = 0;
    free(job->results_dir);
    job->results_dir = dk_sprintf("%s_%s/%s", base, variant, job->spec->results_subdir);
    free(base);
}

static int adl_prepare(dk_method_job *job, dk_err *err) {
    adl_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    variant_results_dir(job);
    if (positive(cfg, "diffing.method.n", 1, &st->n, err) != 0 ||
        positive(cfg, "diffing.method.batch_size", 1, &st->batch_size, err) != 0 ||
        positive(cfg, "diffing.method.max_samples", 1, &st->max_samples, err) != 0 ||
        positive(cfg, "diffing.method.pre_assistant_k", 0, &st->pre_assistant_k, err) != 0 ||
        dk_cfg_try_bool(cfg, "diffing.method.logit_lens.cache", &st->lens, err) != 0 ||
        positive(cfg, "diffing.method.logit_lens.k", 1, &st->k, err) != 0)
        return -1;
    const int64_t V = job->pair.ft_vocab_size; /* from config.json: prepare runs before the models load */
    if (st->k > V)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.logit_lens.k = %lld: the vocabulary has %lld tokens",
                          (long long)st->k, (long long)V);
    if (dk_method_layers(cfg, "diffing.method.layers", job->pair.n_layers, &st->layers, &st->n_layers, err) != 0)
        return -1;
    if (read_undertrained(job, st, err) != 0 || read_overview(job, st, err) != 0)
        return -1;

    const dk_cfg_node *list = dk_cfg_get(cfg, "diffing.method.datasets");
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.datasets must be a non-empty list of {id, is_chat, "
                          "text_column | messages_column}");
    bool any_chat = false, any_text = false;
    for (size_t i = 0; i < list->n; i++) {
        char *key = dk_sprintf("%s.datasets.%zu.is_chat", KEY, i);
        bool chat = false;
        int rc = dk_cfg_try_bool(cfg, key, &chat, err);
        free(key);
        if (rc != 0) return -1;
        any_chat |= chat;
        any_text |= !chat;
    }
    /* the norms leave out the first 5 positions: at least one must be left (the seed asserts it) */
    const int64_t fewest_positions = any_text ? st->n : st->n + st->pre_assistant_k;
    if (fewest_positions <= ADL_NORM_SKIP_TOKENS)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.n = %lld%s gives %lld positions per sequence; the model "
                          "norms leave out the first %d, so at least %d are needed", (long long)st->n,
                          any_text ? "" : " (+ pre_assistant_k)", (long long)fewest_positions, ADL_NORM_SKIP_TOKENS,
                          ADL_NORM_SKIP_TOKENS + 1);
    dk_chat_family family;
    const char *template_name = dk_cfg_str_or_null(cfg, "model.chat_template");
    bool have_family = false;
    if (any_chat && template_name) {
        if (dk_chat_family_from_name(template_name, &family, err) != 0) {
            dk_err_prefix(err, "model.chat_template: ");
            return -1;
        }
        have_family = true;
    }
    st->ds = dk_calloc(list->n, sizeof *st->ds);
    for (size_t i = 0; i < list->n; i++)
        if (read_dataset(job, st, (int64_t)i, have_family ? &family : NULL, err) != 0) return -1;
    dk_method_input(job, "undertrained", "%s", st->undertrained_source);
    if (overview_datasets(job, st, err) != 0) return -1;
    st->steps = dk_calloc(1, sizeof *st->steps);
    return adl_steps_read(job, st, st->steps, err);
}

static int adl_run(dk_method_job *job, dk_err *err) {
    adl_state *st = job->state;
    dk_results_attr_str(&job->res, "/", "undertrained_list", st->undertrained_source);
    cJSON *overview = cJSON_CreateObject(), *datasets = cJSON_AddObjectToObject(overview, "datasets");
    cJSON *mapping = cJSON_CreateObject();
    int rc = 0;
    for (int i = 0; i < st->n_datasets && rc == 0; i++) {
        const adl_dataset *ds = &st->ds[i];
        adl_means m = {0};
        rc = adl_compute_means(job, st, ds, &m, err);
        if (rc == 0 && job->d.rank == 0) {
            cJSON *layers = NULL;
            if (ds->overview_index) {
                char anon[32];
                snprintf(anon, sizeof anon, "ds%d", ds->overview_index); /* the seed hides dataset names from the agent */
                cJSON_AddStringToObject(mapping, anon, ds->name);
                layers = cJSON_AddObjectToObject(cJSON_AddObjectToObject(datasets, anon), "layers");
            }
            rc = adl_write_dataset(job, st, ds, &m, layers, err);
            if (rc == 0) rc = adl_steps_run(job, st, st->steps, i, &m, layers, err);
        }
        adl_means_free(&m);
        /* the other ranks wait while rank 0 generates: without busy polling, which would take its cores */
        if (dk_dist_agree_idle(&job->d, err) != 0) rc = -1;
    }
    dk_results_summary(&job->res, overview);
    dk_results_json(&job->res, "dataset_mapping.json", mapping);
    return rc;
}

static void adl_free(dk_method_job *job) {
    adl_state *st = job->state;
    if (!st) return;
    for (int i = 0; i < st->n_datasets; i++) {
        adl_dataset *ds = &st->ds[i];
        free(ds->id), free(ds->name), free(ds->path);
        adl_inputs_free(&ds->in);
    }
    free(st->ds);
    free(st->layers);
    free(st->undertrained);
    free(st->undertrained_source);
    if (st->steps) adl_steps_free(st->steps);
    free(st->steps);
    free(st->overview_layers);
    free(st->overview_positions);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_activation_difference_lens = {
    .job = "diff_adl",
    .method = "activation_difference_lens",
    .results_subdir = "activation_difference_lens",
    .usage = "Activation Difference Lens: per-position means of (finetuned - base) residual activations over the\n"
             "first n tokens of each configured dataset, at each configured layer, computed with both models on\n"
             "the fly; the models' mean norms; the logit lens of every mean through the finetuned model's head;\n"
             "auto Patchscope, steering (coherence threshold, steered samples) and token relevance, graded by an\n"
             "LLM endpoint or offline heuristics (grader.mode). Settings: diffing.method.*\n"
             "(configs/diffing/method/activation_difference_lens.yaml).\n"
             "    mpirun -n 2 diff_adl organism=NAME model=NAME [diffing.method.max_samples=1000]\n",
    .needs_models = true,
    .prepare = adl_prepare,
    .run = adl_run,
    .free_state = adl_free,
};
