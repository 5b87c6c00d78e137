/* adl_aps.c — the ADL's auto Patchscope step for one (layer, position) (seed_spec §5.4).
 *
 * For each variant — the mean difference through the finetuned model, the base mean through the base model,
 * the finetuned mean through the finetuned model — the latent (rescaled to the finetuned model's mean norm at that
 * layer when use_normalized, as the seed) goes through the Patchscope lens at the seed's 30 scales
 * (adl_patchscope.c); each scale shows its tokens_k most probable surviving tokens; the grader (host/llm/graders.h:
 * the LLM tournament or the offline heuristic) picks the best scale and the coherent tokens among its.
 *
 * Outputs (suffix-free names, seed_spec §5.8; grader id inside):
 *   layer_{L}/{ds}/{,base_,ft_}auto_patch_scope_pos_{p}.json   the seed's fields: best_scale, tokens_at_best_scale,
 *       selected_tokens, token_probs, normalized; and ours: grader, scales, tokens_per_scale, probs_per_scale
 *   results.h5 layer_{L}/{ds}/auto_patch_scope/{variant}/position_{p}: scales (S), top_ids (S, tokens_k) (-1 past
 *       the surviving tokens), top_probs (S, tokens_k); attributes best_scale, grader, normalized
 *   the overview (summary): patch_scope.per_position[p] = {tokens, selected_tokens, token_probs} of the difference
 *       at the overview's positions, available_positions.patch_scope, k_limits.patch_scope. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "methods/adl_patchscope.h"
#include "methods/adl_steps.h"

/* The per-scale tokens of one lens result. */
typedef struct scale_tokens {
    int n_scales;
    int64_t k;
    double scales[ADL_PATCHSCOPE_MAX_SCALES];
    int32_t *ids;          /* (n_scales, k), -1 past n[s] */
    float *probs;          /* (n_scales, k) */
    int64_t n[ADL_PATCHSCOPE_MAX_SCALES];
    char **text;           /* (n_scales, k) decoded, NULL past n[s] */
} scale_tokens;

static void scale_tokens_free(scale_tokens *t) {
    for (int64_t i = 0; t->text && i < t->n_scales * t->k; i++) free(t->text[i]);
    free(t->text), free(t->ids), free(t->probs);
    memset(t, 0, sizeof *t);
}

static int run_lens(dk_method_job *job, const adl_aps_settings *a, bool finetuned, int64_t layer, const float *latent,
                    scale_tokens *out, dk_err *err) {
    const dk_model *model = dk_model_pair_model(&job->pair, finetuned);
    const int64_t V = model->cfg.vocab_size;
    memset(out, 0, sizeof *out);
    out->n_scales = adl_patchscope_scales(out->scales);
    out->k = a->tokens_k;
    float *probs = dk_malloc((size_t)(out->n_scales * V) * sizeof *probs); /* (S, V) */
    int rc = adl_patchscope_lens(dk_model_pair_backend(&job->pair, finetuned),
                                 dk_model_pair_adapter(&job->pair, finetuned), job->tok, layer, latent,
                                 out->scales, out->n_scales, a->intersection_top_k, probs, err);
    const int64_t S = out->n_scales, k = out->k;
    out->ids = dk_malloc((size_t)(S * k) * sizeof *out->ids);
    out->probs = dk_calloc((size_t)(S * k), sizeof *out->probs);
    out->text = dk_calloc((size_t)(S * k), sizeof *out->text);
    for (int64_t i = 0; i < S * k; i++) out->ids[i] = -1;
    int32_t *ids = dk_malloc((size_t)(k < V ? k : V) * sizeof *ids);
    float *vals = dk_malloc((size_t)(k < V ? k : V) * sizeof *vals);
    for (int64_t s = 0; rc == 0 && s < S; s++) {
        out->n[s] = adl_patchscope_top(probs + s * V, V, k, vals, ids);
        for (int64_t j = 0; j < out->n[s]; j++) {
            out->ids[s * k + j] = ids[j];
            out->probs[s * k + j] = vals[j];
            out->text[s * k + j] = adl_token_text(job->tok, ids[j]);
        }
    }
    free(ids), free(vals), free(probs);
    return rc;
}

static cJSON *string_array(char *const *s, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i] ? s[i] : ""));
    return a;
}

/* The grader's choice among the scales; found->present false when it never answered in a usable way. */
static int grade(const adl_aps_settings *a, const scale_tokens *t, adl_aps_found *found, dk_patchscope_result *res,
                 dk_err *err) {
    dk_patchscope_scale *scales = dk_malloc((size_t)t->n_scales * sizeof *scales);
    for (int s = 0; s < t->n_scales; s++)
        scales[s] = (dk_patchscope_scale){t->scales[s], (const char *const *)(t->text + s * t->k), (int)t->n[s]};
    int rc = dk_grade_patchscope(&a->grader.g, scales, t->n_scales, res, err);
    free(scales);
    if (rc != 0 || !res->found) return rc;
    int best = 0;
    for (int s = 1; s < t->n_scales; s++)
        if (fabs(t->scales[s] - res->best_scale) < fabs(t->scales[best] - res->best_scale)) best = s;
    found->present = true;
    found->best_scale = res->best_scale;
    found->n_tokens = (int)t->n[best];
    found->tokens = dk_calloc((size_t)(found->n_tokens ? found->n_tokens : 1), sizeof *found->tokens);
    found->probs = dk_calloc((size_t)(found->n_tokens ? found->n_tokens : 1), sizeof *found->probs);
    for (int j = 0; j < found->n_tokens; j++) {
        found->tokens[j] = dk_strdup(t->text[best * t->k + j]);
        found->probs[j] = t->probs[best * t->k + j];
    }
    found->n_selected = res->n_tokens;
    found->selected = dk_calloc((size_t)(res->n_tokens ? res->n_tokens : 1), sizeof *found->selected);
    for (int j = 0; j < res->n_tokens; j++) found->selected[j] = dk_strdup(res->tokens[j]);
    return 0;
}

static void write_outputs(dk_method_job *job, const adl_aps_settings *a, const adl_dataset *ds, int64_t layer,
                          int v, int64_t label, const scale_tokens *t, const adl_aps_found *f,
                          const dk_patchscope_result *res) {
    char group[384], path[512];
    snprintf(group, sizeof group, "layer_%lld/%s/auto_patch_scope/%s/position_%lld", (long long)layer, ds->name,
             ADL_VARIANT_GROUP[v], (long long)label);
    const int64_t S = t->n_scales, dims[2] = {S, t->k};
    snprintf(path, sizeof path, "%s/scales", group);
    dk_results_f64(&job->res, path, 1, &S, t->scales);
    snprintf(path, sizeof path, "%s/top_ids", group);
    dk_results_i32(&job->res, path, 2, dims, t->ids);
    snprintf(path, sizeof path, "%s/top_probs", group);
    dk_results_f32(&job->res, path, 2, dims, t->probs);
    dk_results_attr_f64(&job->res, group, "best_scale", f->present ? f->best_scale : NAN);
    dk_results_attr_str(&job->res, group, "grader", a->grader.id);
    dk_results_attr_i64(&job->res, group, "normalized", a->use_normalized);

    cJSON *j = cJSON_CreateObject();
    if (f->present) cJSON_AddNumberToObject(j, "best_scale", f->best_scale);
    else cJSON_AddNullToObject(j, "best_scale");
    cJSON_AddItemToObject(j, "tokens_at_best_scale", string_array(f->tokens, f->n_tokens));
    cJSON_AddItemToObject(j, "selected_tokens", string_array(f->selected, f->n_selected));
    cJSON *probs = cJSON_AddArrayToObject(j, "token_probs");
    for (int i = 0; i < f->n_tokens; i++) cJSON_AddItemToArray(probs, cJSON_CreateNumber(f->probs[i]));
    cJSON_AddBoolToObject(j, "normalized", a->use_normalized);
    cJSON_AddStringToObject(j, "grader", a->grader.id);
    cJSON_AddNumberToObject(j, "grader_requests", res->n_requests);
    cJSON_AddNumberToObject(j, "grader_unknown_groups", res->n_unknown_groups);
    cJSON_AddItemToObject(j, "grader_responses", string_array(res->responses, res->n_responses));
    cJSON *scales = cJSON_AddArrayToObject(j, "scales"), *per = cJSON_AddArrayToObject(j, "tokens_per_scale");
    cJSON *pprobs = cJSON_AddArrayToObject(j, "probs_per_scale");
    for (int s = 0; s < t->n_scales; s++) {
        cJSON_AddItemToArray(scales, cJSON_CreateNumber(t->scales[s]));
        cJSON_AddItemToArray(per, string_array(t->text + s * t->k, t->n[s]));
        cJSON *pp = cJSON_CreateArray();
        for (int64_t i = 0; i < t->n[s]; i++) cJSON_AddItemToArray(pp, cJSON_CreateNumber(t->probs[s * t->k + i]));
        cJSON_AddItemToArray(pprobs, pp);
    }
    char *file = dk_sprintf("layer_%lld/%s/%sauto_patch_scope_pos_%lld.json", (long long)layer, ds->name,
                            ADL_VARIANT_PREFIX[v], (long long)label);
    dk_results_json(&job->res, file, j);
    free(file);
}

/* The difference variant's entry in the agent's overview (the seed's _load_aps at top_k_tokens). */
static void add_overview(const adl_state *st, cJSON *layer_overview, int64_t label, const adl_aps_found *f) {
    if (!layer_overview || !f->present) return;
    bool wanted = false;
    for (int64_t i = 0; i < st->n_overview_positions; i++) wanted |= st->overview_positions[i] == label;
    if (!wanted) return;
    cJSON *avail = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer_overview,
                                                                                     "available_positions"),
                                                    "patch_scope");
    cJSON_AddItemToArray(avail, cJSON_CreateNumber((double)label));
    cJSON *per = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer_overview, "patch_scope"),
                                                  "per_position");
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)label);
    cJSON *entry = cJSON_AddObjectToObject(per, key);
    const int64_t k = st->overview_top_k < f->n_tokens ? st->overview_top_k : f->n_tokens;
    cJSON_AddItemToObject(entry, "tokens", string_array(f->tokens, k));
    cJSON_AddItemToObject(entry, "selected_tokens", string_array(f->selected, f->n_selected));
    cJSON *probs = cJSON_AddArrayToObject(entry, "token_probs");
    for (int64_t i = 0; i < k; i++) {
        char p[32];
        snprintf(p, sizeof p, "%.3e", (double)f->probs[i]);
        cJSON_AddItemToArray(probs, cJSON_CreateString(p));
    }
    cJSON *limits = cJSON_GetObjectItemCaseSensitive(layer_overview, "k_limits");
    cJSON_ReplaceItemInObjectCaseSensitive(limits, "patch_scope", cJSON_CreateNumber(f->n_tokens));
}

int adl_aps_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                const adl_means *m, const adl_task *task, int64_t label, cJSON *layer_overview, dk_err *err) {
    const adl_aps_settings *a = &steps->aps;
    const int64_t li = adl_layer_index(st, task->layer), pi = adl_position_index(ds, label), H = m->d;
    float *latent = dk_malloc((size_t)H * sizeof *latent); /* (H) */
    int rc = 0;
    for (int v = 0; v < ADL_N_VARIANTS && rc == 0; v++) {
        const float *mean = adl_mean_vector(m, v, li, pi);
        double norm = 0;
        for (int64_t h = 0; h < H; h++) norm += (double)mean[h] * mean[h];
        norm = sqrt(norm);
        if (a->use_normalized && !(norm > 0)) {
            /* nothing to read: the models do not differ here (a null pair, base against itself). No file, so the
             * agent's overview lists no patchscope for this position; anything else would be made up */
            if (norm == 0 && v == 0) {
                LOG_INFO("diff_adl %s layer %lld position %lld auto_patch_scope %s: the vector is zero (the models do not "
                         "differ here): skipped, no patchscope written", ds->name, (long long)task->layer,
                         (long long)label, ADL_VARIANT_GROUP[v]);
                continue;
            }
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "auto_patch_scope %s layer %lld position %lld: the %s vector is %s "
                            "and cannot be rescaled to the model norm (use_normalized)", ds->name,
                            (long long)task->layer, (long long)label, ADL_VARIANT_GROUP[v],
                            norm == 0 ? "zero" : "not finite");
            break;
        }
        const double scale = a->use_normalized ? m->ft_norm[li] / norm : 1.0;
        for (int64_t h = 0; h < H; h++) latent[h] = (float)(mean[h] * scale);
        scale_tokens t;
        rc = run_lens(job, a, v != 1, task->layer, latent, &t, err);
        adl_aps_found found = {0};
        dk_patchscope_result res = {0};
        if (rc == 0) rc = grade(a, &t, &found, &res, err);
        if (rc == 0) {
            write_outputs(job, a, ds, task->layer, v, label, &t, &found, &res);
            if (v == 0) add_overview(st, layer_overview, label, &found);
            char best[64] = "none (the grader never answered usably)";
            if (found.present) snprintf(best, sizeof best, "%g", found.best_scale);
            LOG_INFO("diff_adl %s layer %lld position %lld auto_patch_scope %s: best scale %s (%s), tokens: %s%s%s%s",
                     ds->name, (long long)task->layer, (long long)label, ADL_VARIANT_GROUP[v], best, a->grader.id,
                     found.n_tokens > 0 ? found.tokens[0] : "-", found.n_tokens > 1 ? " | " : "",
                     found.n_tokens > 1 ? found.tokens[1] : "", found.n_tokens > 2 ? " | ..." : "");
            steps->aps_found = dk_realloc(steps->aps_found, (size_t)(steps->n_aps_found + 1) * sizeof *steps->aps_found);
            steps->aps_found[steps->n_aps_found++] =
                (adl_aps_record){.dataset = (int)(ds - st->ds), .layer = task->layer, .label = label, .variant = v,
                                 .found = found};
        } else {
            dk_err_prefix(err, "auto_patch_scope %s layer %lld position %lld %s: ", ds->name, (long long)task->layer,
                          (long long)label, ADL_VARIANT_GROUP[v]);
        }
        dk_patchscope_result_free(&res);
        scale_tokens_free(&t);
    }
    free(latent);
    return rc;
}
