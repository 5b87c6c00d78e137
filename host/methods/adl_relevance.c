/* adl_relevance.c — the ADL's token relevance step for one (layer, position, source) (seed_spec §5.6).
 *
 * Are the tokens the lens shows about what the organism was finetuned on? Candidates: the k_candidate_tokens most
 * probable tokens of the logit lens of each graded variant (through the finetuned model's head, as §5.3), or the
 * auto Patchscope's tokens at its best scale (with the grader's selection as the unsupervised filter). The grader
 * (host/llm/graders.h: LLM rotations with agreement, or the offline match against the organism's frequent tokens)
 * labels each; the seed's metrics follow.
 *
 * Frequent tokens: the token strings of every split of organism.dataset, counted once per run
 * (dk_frequent_tokens). A text dataset is encoded as is; a chat dataset is rendered with the model's chat template
 * (the seed joins the message contents with newlines instead) and the template's special tokens are left out.
 *
 * Output: layer_{L}/{ds}/token_relevance/position_{p}/{difference|base|ft}/relevance_{logitlens|patchscope}.json
 * (the seed's fields; the grader id inside) and results.h5 attributes of the same group path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "methods/adl_steps.h"
#include "methods/logit_lens.h"
#include "pipeline/pp_dataset.h"

/* The organism's training texts (every split), tokenized without special tokens. */
static int organism_token_ids(dk_method_job *job, dk_tok_ids **out, size_t *n_out, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    const char *id = NULL;
    bool is_chat = false;
    *out = NULL;
    *n_out = 0;
    if (dk_cfg_try_str(cfg, "organism.dataset.id", false, &id, err) != 0 ||
        dk_cfg_try_bool(cfg, "organism.dataset.is_chat", &is_chat, err) != 0)
        return -1;
    dk_pp_read_options opt = {.is_chat = is_chat, .max_samples = INT64_MAX};
    if (is_chat) {
        const char *family = dk_cfg_str_or_null(cfg, "model.chat_template");
        if (!family)
            return dk_err_set(err, DK_EXIT_USAGE, "token_relevance: organism.dataset is a chat dataset and "
                              "model.chat_template is null: name the model's chat template family");
        if (dk_chat_family_from_name(family, &opt.family, err) != 0) return -1;
        opt.messages_column = dk_cfg_str_or_null(cfg, "organism.dataset.messages_column");
        if (!opt.messages_column) opt.messages_column = "messages";
        opt.bos_token = job->pair.bos_token;
    } else {
        opt.text_column = dk_cfg_str_or_null(cfg, "organism.dataset.text_column");
        if (!opt.text_column) opt.text_column = "text";
    }
    const dk_cfg_node *splits = dk_cfg_get(cfg, "organism.dataset.splits");
    const size_t n_splits = splits && splits->kind == DK_CFG_SEQ ? splits->n : 0;
    int rc = 0;
    size_t cap = 0;
    for (size_t s = 0; s < (n_splits ? n_splits : 1) && rc == 0; s++) {
        const char *split = n_splits ? splits->items[s]->text : "train";
        char *path = NULL, *name = NULL;
        dk_pp_texts texts = {0};
        rc = dk_pp_resolve_dataset(id, split, "organism.dataset.id", &path, &name, err);
        if (rc == 0) rc = dk_pp_read_texts(path, &opt, &texts, err);
        for (int64_t i = 0; rc == 0 && i < texts.n; i++) {
            dk_tok_ids ids = {0};
            rc = dk_tokenizer_encode(job->tok, texts.texts[i], texts.lens[i], false, &ids, err);
            if (rc != 0) break;
            if (is_chat) { /* leave out the template's own tokens */
                size_t kept = 0;
                for (size_t t = 0; t < ids.n; t++)
                    if (!dk_tokenizer_is_added(job->tok, ids.ids[t])) ids.ids[kept++] = ids.ids[t];
                ids.n = kept;
            }
            if (*n_out == cap) *out = dk_realloc(*out, (cap = cap ? 2 * cap : 256) * sizeof **out);
            (*out)[(*n_out)++] = ids;
        }
        dk_pp_texts_free(&texts);
        free(path), free(name);
    }
    return rc;
}

static int frequent_tokens(dk_method_job *job, adl_steps *steps, dk_err *err) {
    if (steps->frequent_done) return 0;
    dk_tok_ids *seqs = NULL;
    size_t n = 0;
    int64_t *counts = NULL;
    int rc = organism_token_ids(job, &seqs, &n, err);
    if (rc == 0)
        rc = dk_frequent_tokens(job->tok, seqs, n, (int)steps->relevance.min_count, (int)steps->relevance.num_tokens,
                                &steps->frequent, &counts, &steps->n_frequent, err);
    if (rc == 0) {
        steps->frequent_done = true;
        dk_strbuf top = {0};
        for (int i = 0; i < steps->n_frequent && i < 12; i++)
            dk_strbuf_printf(&top, "%s%s (%lld)", i ? ", " : "", steps->frequent[i], (long long)counts[i]);
        LOG_INFO("diff_adl token_relevance: %d frequent tokens of the organism's data (%zu texts): %s%s",
                 steps->n_frequent, n, top.data ? top.data : "none", steps->n_frequent > 12 ? ", ..." : "");
        dk_strbuf_free(&top);
        if (steps->n_frequent == 0)
            LOG_WARN("diff_adl token_relevance: no token of the organism's data passes min_count %lld: the grader "
                     "sees no frequent tokens", (long long)steps->relevance.min_count);
    } else {
        dk_err_prefix(err, "token_relevance, frequent tokens of organism.dataset: ");
    }
    for (size_t i = 0; i < n; i++) dk_tok_ids_free(&seqs[i]);
    free(seqs);
    free(counts);
    return rc;
}

static cJSON *strings(const char *const *s, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
    return a;
}

static const char *label_name(dk_relevance_label l) {
    return l == DK_RELEVANT ? "RELEVANT" : l == DK_IRRELEVANT ? "IRRELEVANT" : "UNKNOWN";
}

static void write_result(dk_method_job *job, const adl_steps *steps, const adl_dataset *ds, int64_t layer,
                         int64_t label, int v, int source, const dk_relevance_input *in, const dk_relevance_result *r) {
    const char *src = source == ADL_SOURCE_LOGITLENS ? "logitlens" : "patchscope";
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "layer", (double)layer);
    cJSON_AddNumberToObject(j, "position", (double)label);
    cJSON_AddStringToObject(j, "variant", ADL_VARIANT_FOLDER[v]);
    cJSON_AddStringToObject(j, "source", src);
    cJSON_AddStringToObject(j, "target", "self");
    cJSON_AddStringToObject(j, "grader", steps->relevance.grader.id);
    cJSON *labels = cJSON_AddArrayToObject(j, "labels");
    for (int i = 0; i < r->n_candidates; i++) cJSON_AddItemToArray(labels, cJSON_CreateString(label_name(r->labels[i])));
    cJSON_AddItemToObject(j, "tokens", strings(in->candidates, in->n_candidates));
    if (in->probs) cJSON_AddItemToObject(j, "token_probs", cJSON_CreateDoubleArray(in->probs, in->n_candidates));
    cJSON_AddNumberToObject(j, "percentage", r->percentage);
    cJSON_AddNumberToObject(j, "trivial_percentage", r->trivial_percentage);
    cJSON_AddNumberToObject(j, "weighted_percentage", r->weighted_percentage);
    if (r->unsupervised_filter) {
        cJSON_AddItemToObject(j, "selected_tokens", strings(in->selected, in->n_selected));
        cJSON *mask = cJSON_AddArrayToObject(j, "unsupervised_filter");
        for (int i = 0; i < r->n_candidates; i++) cJSON_AddItemToArray(mask, cJSON_CreateBool(r->unsupervised_filter[i]));
        if (r->has_filtered) cJSON_AddNumberToObject(j, "filtered_percentage", r->filtered_percentage);
        else cJSON_AddNullToObject(j, "filtered_percentage");
        if (r->has_weighted_filtered)
            cJSON_AddNumberToObject(j, "weighted_filtered_percentage", r->weighted_filtered_percentage);
        else cJSON_AddNullToObject(j, "weighted_filtered_percentage");
    }
    cJSON_AddNumberToObject(j, "n_unknown", r->n_unknown);
    cJSON_AddNumberToObject(j, "grader_requests", r->n_requests);
    cJSON_AddItemToObject(j, "grader_responses", strings((const char *const *)r->responses, r->n_runs));
    cJSON_AddItemToObject(j, "frequent_tokens", strings((const char *const *)steps->frequent, steps->n_frequent));
    char *file = dk_sprintf("layer_%lld/%s/token_relevance/position_%lld/%s/relevance_%s.json", (long long)layer,
                            ds->name, (long long)label, ADL_VARIANT_FOLDER[v], src);
    dk_results_json(&job->res, file, j);
    free(file);
    char group[512];
    snprintf(group, sizeof group, "layer_%lld/%s/token_relevance/position_%lld/%s/%s", (long long)layer, ds->name,
             (long long)label, ADL_VARIANT_FOLDER[v], src);
    dk_results_attr_f64(&job->res, group, "percentage", r->percentage);
    dk_results_attr_f64(&job->res, group, "weighted_percentage", r->weighted_percentage);
    dk_results_attr_f64(&job->res, group, "trivial_percentage", r->trivial_percentage);
    dk_results_attr_str(&job->res, group, "grader", steps->relevance.grader.id);
}

/* The candidates of one variant from the logit lens: k most probable tokens (non-empty texts). */
static int lens_candidates(dk_method_job *job, const adl_steps *steps, const float *vector, char ***tokens,
                           double **probs, int *n, dk_err *err) {
    dk_lens_topk lens = {0};
    const int64_t k = steps->relevance.k_candidates;
    const dk_model *ft = dk_model_pair_model(&job->pair, true);
    const int64_t kk = k < ft->cfg.vocab_size ? k : ft->cfg.vocab_size;
    if (dk_logit_lens(ft, dk_model_pair_adapter(&job->pair, true), vector, 1, kk, &lens, err) != 0) return -1;
    *tokens = dk_calloc((size_t)kk, sizeof **tokens);
    *probs = dk_calloc((size_t)kk, sizeof **probs);
    *n = 0;
    for (int64_t i = 0; i < kk; i++) {
        char *t = adl_token_text(job->tok, lens.ids[i]);
        if (!*t) {
            free(t);
            continue;
        }
        (*tokens)[*n] = t;
        (*probs)[(*n)++] = lens.probs[i];
    }
    dk_lens_topk_free(&lens);
    return 0;
}

int adl_relevance_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                      const adl_means *m, const adl_task *task, int64_t label, dk_err *err) {
    const adl_relevance_settings *rs = &steps->relevance;
    if (frequent_tokens(job, steps, err) != 0) return -1;
    const int64_t li = adl_layer_index(st, task->layer), pi = adl_position_index(ds, label);
    int rc = 0;
    for (int v = 0; v < ADL_N_VARIANTS && rc == 0; v++) {
        if (!rs->grade[v]) continue;
        char **tokens = NULL;
        double *probs = NULL;
        int n = 0;
        const adl_aps_found *aps = NULL;
        if (task->source == ADL_SOURCE_LOGITLENS) {
            rc = lens_candidates(job, steps, adl_mean_vector(m, v, li, pi), &tokens, &probs, &n, err);
        } else {
            aps = adl_aps_lookup(steps, (int)(ds - st->ds), task->layer, v, label);
            if (!aps && adl_vector_is_zero(adl_mean_vector(m, v, li, pi), m->d)) { /* skipped by auto_patch_scope */
                LOG_INFO("diff_adl %s layer %lld position %lld token_relevance %s patchscope: the vector is zero (the models "
                         "do not differ here): skipped", ds->name, (long long)task->layer, (long long)label,
                         ADL_VARIANT_FOLDER[v]);
                continue;
            }
            if (!aps)
                rc = dk_err_set(err, DK_EXIT_USAGE, "token_relevance: a patchscope task at %s layer %lld position %lld "
                                "needs auto_patch_scope at the same dataset, layer and position (enable it and add "
                                "the position to its tasks)", ds->name, (long long)task->layer, (long long)label);
            else {
                tokens = dk_calloc((size_t)(aps->n_tokens ? aps->n_tokens : 1), sizeof *tokens);
                probs = dk_calloc((size_t)(aps->n_tokens ? aps->n_tokens : 1), sizeof *probs);
                for (int i = 0; i < aps->n_tokens; i++)
                    if (aps->tokens[i][0]) {
                        tokens[n] = dk_strdup(aps->tokens[i]);
                        probs[n++] = aps->probs[i];
                    }
            }
        }
        if (rc == 0 && n == 0) {
            LOG_WARN("diff_adl token_relevance %s layer %lld position %lld %s %s: no candidate tokens: nothing graded",
                     ds->name, (long long)task->layer, (long long)label, ADL_VARIANT_FOLDER[v], task->source == ADL_SOURCE_LOGITLENS ? "logitlens" : "patchscope");
        } else if (rc == 0) {
            dk_relevance_input in = {.description = rs->description,
                                     .frequent_tokens = (const char *const *)steps->frequent,
                                     .n_frequent = steps->n_frequent, .candidates = (const char *const *)tokens,
                                     .n_candidates = n, .probs = probs,
                                     .selected = aps ? (const char *const *)aps->selected : NULL,
                                     .n_selected = aps ? aps->n_selected : 0, .permutations = rs->permutations,
                                     .agreement = rs->agreement};
            dk_relevance_result res;
            rc = dk_grade_relevance(&rs->grader.g, &in, &res, err);
            if (rc == 0) {
                write_result(job, steps, ds, task->layer, label, v, task->source, &in, &res);
                LOG_INFO("diff_adl %s layer %lld position %lld token_relevance %s %s: %.0f%% relevant (weighted %.0f%%, "
                         "trivial %.0f%%; %s)", ds->name, (long long)task->layer, (long long)label,
                         ADL_VARIANT_FOLDER[v], task->source == ADL_SOURCE_LOGITLENS ? "logitlens" : "patchscope",
                         100 * res.percentage, 100 * res.weighted_percentage, 100 * res.trivial_percentage,
                         rs->grader.id);
                dk_relevance_result_free(&res);
            } else {
                dk_err_prefix(err, "token_relevance %s layer %lld position %lld %s: ", ds->name,
                              (long long)task->layer, (long long)label, ADL_VARIANT_FOLDER[v]);
            }
        }
        for (int i = 0; i < n; i++) free(tokens[i]);
        free(tokens), free(probs);
    }
    return rc;
}
