/* adl_steer.c — the ADL's steering step for one (layer, position) (seed_spec §5.5, the seed's steering.py).
 *
 * Steering vector s = ft_norm[layer] · mean_diff / ‖mean_diff‖, added after block `layer` at every token of the
 * prompt and of the generation (the engine's steer hook), to the finetuned model.
 *
 * Threshold: the highest strength at which the steered model still writes coherently, found per threshold prompt
 * by the seed's batched look-ahead bisection: each round enumerates the 2^batch_steps − 1 midpoints of the bracket
 * tree, generates num_samples_per_strength samples at each (all strengths in ONE batched generation: the engine's
 * per-sequence steering strength), grades them (coherence % over known labels, empty samples dropped), then
 * replays batch_steps bisection decisions (≥ coherence_threshold: best = max(best, mid), lo = mid; else hi = mid)
 * until `steps` decisions are used. The first prompt searches [0, max_strength] with `steps`; the others
 * [0, 2·first threshold] with steps/2. avg_threshold = their mean.
 * Offline grading reads every steered sample with the unsteered finetuned model (per-token NLL) and compares with
 * unsteered samples of the same prompt (host/llm/graders.h, dk_grade_coherence).
 *
 * Final generations: for every prompt of prompts_file, num_samples_per_prompt steered samples at avg_threshold and
 * as many unsteered ones.
 *
 * Outputs (suffix-free, seed_spec §5.8): layer_{L}/{ds}/steering/position_{p}/threshold.json
 * ({thresholds, avg_threshold} + grader, the graded strengths) and generations.jsonl (the seed's records);
 * results.h5 layer_{L}/{ds}/steering/position_{p}: vector (H), graded strengths and their coherence, attributes
 * avg_threshold, grader; the overview's steering examples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "methods/adl_steps.h"
#include "methods/chat_generate.h"

/* The seed's three threshold prompts (steering.py, hard-coded there): the same model inputs, so that thresholds
 * compare with the seed's. */
static const char *const THRESHOLD_PROMPTS[3] = {
    "Tell me a story?",
    "Give me some ideas for some fun weekend activities.",
    "Why don't you choose a topic of conversation for us?",
};

/* Strengths graded so far and their coherence %, for reuse across rounds and for the outputs. */
typedef struct graded {
    double *strength, *coherence;
    int64_t n;
} graded;

static const double *graded_find(const graded *g, double s) {
    for (int64_t i = 0; i < g->n; i++)
        if (fabs(g->strength[i] - s) <= 1e-12 * (fabs(s) > 1 ? fabs(s) : 1)) return &g->coherence[i];
    return NULL;
}

static void graded_add(graded *g, double s, double c) {
    g->strength = dk_realloc(g->strength, (size_t)(g->n + 1) * sizeof *g->strength);
    g->coherence = dk_realloc(g->coherence, (size_t)(g->n + 1) * sizeof *g->coherence);
    g->strength[g->n] = s;
    g->coherence[g->n++] = c;
}

/* The seed's _enumerate_midpoints: pre-order midpoints of the bracket tree, depth levels. */
static void midpoints(double lo, double hi, int64_t depth, double *out, int64_t *n) {
    if (depth <= 0) return;
    const double mid = (lo + hi) / 2.0;
    out[(*n)++] = mid;
    midpoints(lo, mid, depth - 1, out, n);
    midpoints(mid, hi, depth - 1, out, n);
}

typedef struct steer_ctx {
    dk_method_job *job;
    const adl_steer_settings *s;
    dk_chat_gen gen;             /* the finetuned model */
    dk_steer steer;              /* the vector at the layer, strength 1 (scaled per sample) */
    uint64_t seed;               /* advanced after every generation call */
    /* offline grading: the unsteered reference samples of the prompt being searched */
    float **ref_nll;
    int32_t **ref_ids;
    int *ref_n;
    int64_t n_ref;
} steer_ctx;

static void free_samples(char **texts, int64_t **ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (texts) free(texts[i]);
        if (ids) free(ids[i]);
    }
    free(texts);
    free(ids);
}

/* Per-token NLL and int32 ids of samples under the unsteered model (offline coherence). */
static int sample_nll(steer_ctx *c, const char *prompt, int64_t *const *ids, const int64_t *n_ids, int64_t n,
                      float **nll, int32_t **ids32, dk_err *err) {
    int64_t *prompt_ids = NULL, n_prompt = 0;
    if (dk_chat_gen_prompt_ids(&c->gen, prompt, &prompt_ids, &n_prompt, err) != 0) return -1;
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        nll[i] = dk_malloc((size_t)(n_ids[i] ? n_ids[i] : 1) * sizeof **nll);
        ids32[i] = dk_malloc((size_t)(n_ids[i] ? n_ids[i] : 1) * sizeof **ids32);
        for (int64_t t = 0; t < n_ids[i]; t++) ids32[i][t] = (int32_t)ids[i][t];
        rc = dk_chat_gen_nll(&c->gen, prompt_ids, n_prompt, ids[i], n_ids[i], nll[i], err);
    }
    free(prompt_ids);
    return rc;
}

/* Generates n samples of prompt at each strength (strengths (n_strengths)), all in one batched call; texts and
 * ids (n_strengths · n) in strength-major order. */
static int generate(steer_ctx *c, const char *prompt, const double *strengths, int64_t n_strengths, int64_t n,
                    int64_t max_new_tokens, double temperature, char ***texts, int64_t ***ids, int64_t **n_ids,
                    dk_err *err) {
    const int64_t total = n_strengths * n;
    const char **prompts = dk_malloc((size_t)total * sizeof *prompts);
    float *strength = dk_malloc((size_t)total * sizeof *strength);
    for (int64_t i = 0; i < total; i++) {
        prompts[i] = prompt;
        strength[i] = (float)strengths[i / n];
    }
    *texts = dk_calloc((size_t)total, sizeof **texts);
    *ids = dk_calloc((size_t)total, sizeof **ids);
    *n_ids = dk_calloc((size_t)total, sizeof **n_ids);
    /* sampled as the seed's transformers generate(do_sample=True): with the model's top_k / top_p defaults */
    dk_chat_gen_request req = {.prompts = prompts, .n = total, .max_new_tokens = max_new_tokens,
                               .temperature = (float)temperature, .top_p = c->gen.hf_top_p, .top_k = c->gen.hf_top_k,
                               .seed = c->seed,
                               .steer = &c->steer, .strengths = strength};
    c->seed += (uint64_t)total;
    int rc = dk_chat_gen_run(&c->gen, &req, *texts, *ids, *n_ids, err);
    free(prompts);
    free(strength);
    return rc;
}

/* Coherence % of each strength's samples (coherence (n_strengths)). */
static int grade(steer_ctx *c, const char *prompt, char **texts, int64_t **ids, const int64_t *n_ids,
                 int64_t n_strengths, int64_t n, double *coherence, dk_err *err) {
    const bool offline = c->s->grader.g.mode == DK_GRADER_OFFLINE;
    const int64_t total = n_strengths * n;
    float **nll = offline ? dk_calloc((size_t)total, sizeof *nll) : NULL;
    int32_t **ids32 = offline ? dk_calloc((size_t)total, sizeof *ids32) : NULL;
    int rc = offline ? sample_nll(c, prompt, ids, n_ids, total, nll, ids32, err) : 0;
    dk_coherence_sample *samples = dk_calloc((size_t)total, sizeof *samples);
    dk_coherence_sample *ref = dk_calloc((size_t)(c->n_ref ? c->n_ref : 1), sizeof *ref);
    for (int64_t i = 0; i < c->n_ref; i++) ref[i] = (dk_coherence_sample){NULL, c->ref_nll[i], c->ref_ids[i], c->ref_n[i]};
    for (int64_t j = 0; rc == 0 && j < n_strengths; j++) {
        for (int64_t i = 0; i < n; i++) {
            const int64_t at = j * n + i;
            samples[i] = (dk_coherence_sample){texts[at], offline ? nll[at] : NULL, offline ? ids32[at] : NULL,
                                               (int)n_ids[at]};
        }
        dk_coherence_result res;
        rc = dk_grade_coherence(&c->s->grader.g, samples, (int)n, offline ? ref : NULL, offline ? (int)c->n_ref : 0,
                                &res, err);
        if (rc == 0) {
            coherence[j] = res.percentage;
            if (res.n_unknown > 0)
                LOG_WARN("diff_adl steering: %d of %lld coherence grades never parsed (UNKNOWN, left out)",
                         res.n_unknown, (long long)n);
            dk_coherence_result_free(&res);
        }
    }
    for (int64_t i = 0; offline && i < total; i++) free(nll[i]), free(ids32[i]);
    free(nll), free(ids32), free(samples), free(ref);
    return rc;
}

/* The unsteered reference samples of a prompt for offline grading (threshold generation settings). */
static int make_reference(steer_ctx *c, const char *prompt, dk_err *err) {
    for (int64_t i = 0; i < c->n_ref; i++) free(c->ref_nll[i]), free(c->ref_ids[i]);
    free(c->ref_nll), free(c->ref_ids), free(c->ref_n);
    c->ref_nll = NULL, c->ref_ids = NULL, c->ref_n = NULL, c->n_ref = 0;
    if (c->s->grader.g.mode != DK_GRADER_OFFLINE) return 0;
    const int64_t n = c->s->num_samples_per_strength;
    const double zero = 0;
    char **texts = NULL;
    int64_t **ids = NULL, *n_ids = NULL;
    int rc = generate(c, prompt, &zero, 1, n, c->s->thr_max_new_tokens, c->s->thr_temperature, &texts, &ids, &n_ids,
                      err);
    c->ref_nll = dk_calloc((size_t)n, sizeof *c->ref_nll);
    c->ref_ids = dk_calloc((size_t)n, sizeof *c->ref_ids);
    c->ref_n = dk_calloc((size_t)n, sizeof *c->ref_n);
    if (rc == 0) rc = sample_nll(c, prompt, ids, n_ids, n, c->ref_nll, c->ref_ids, err);
    for (int64_t i = 0; i < n; i++) c->ref_n[i] = (int)n_ids[i];
    c->n_ref = n;
    free_samples(texts, ids, n);
    free(n_ids);
    return rc;
}

/* The seed's binary_search_threshold on one prompt. */
static int search(steer_ctx *c, const char *prompt, double lo, double hi, int64_t steps, graded *g, double *best,
                  dk_err *err) {
    const adl_steer_settings *s = c->s;
    if (make_reference(c, prompt, err) != 0) return -1;
    graded local = {0};  /* this prompt's grades (the seed's cache is per prompt) */
    *best = lo;
    int64_t remaining = steps;
    int rc = 0;
    double *mids = dk_malloc((size_t)((1 << (s->batch_steps < 20 ? s->batch_steps : 20)) + 1) * sizeof *mids);
    while (remaining > 0 && lo < hi && rc == 0) {
        const int64_t look = s->batch_steps < remaining ? s->batch_steps : remaining;
        int64_t n_mids = 0, n_new = 0;
        midpoints(lo, hi, look < 20 ? look : 20, mids, &n_mids);
        double *todo = dk_malloc((size_t)n_mids * sizeof *todo);
        for (int64_t i = 0; i < n_mids; i++) {
            bool seen = graded_find(&local, mids[i]) != NULL;
            for (int64_t j = 0; j < n_new && !seen; j++) seen = fabs(todo[j] - mids[i]) <= 1e-12;
            if (!seen) todo[n_new++] = mids[i];
        }
        char **texts = NULL;
        int64_t **ids = NULL, *n_ids = NULL;
        double *coherence = dk_calloc((size_t)(n_new ? n_new : 1), sizeof *coherence);
        if (n_new > 0) {
            rc = generate(c, prompt, todo, n_new, s->num_samples_per_strength, s->thr_max_new_tokens,
                          s->thr_temperature, &texts, &ids, &n_ids, err);
            if (rc == 0)
                rc = grade(c, prompt, texts, ids, n_ids, n_new, s->num_samples_per_strength, coherence, err);
            free_samples(texts, ids, n_new * s->num_samples_per_strength);
            free(n_ids);
        }
        for (int64_t j = 0; rc == 0 && j < n_new; j++) {
            graded_add(&local, todo[j], coherence[j]);
            graded_add(g, todo[j], coherence[j]);
            LOG_INFO("diff_adl steering: strength %.4f -> coherence %.1f%%", todo[j], coherence[j]);
        }
        free(coherence);
        free(todo);
        double cur_lo = lo, cur_hi = hi;
        for (int64_t i = 0; rc == 0 && i < look; i++) {
            const double mid = (cur_lo + cur_hi) / 2.0;
            const double *perc = graded_find(&local, mid);
            if (perc && *perc >= s->coherence_threshold) {
                if (mid > *best) *best = mid;
                cur_lo = mid;
            } else {
                cur_hi = mid;
            }
        }
        lo = cur_lo, hi = cur_hi;
        remaining -= look;
    }
    free(mids);
    free(local.strength), free(local.coherence);
    return rc;
}

static cJSON *sample_array(char **texts, int64_t from, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(texts[from + i] ? texts[from + i] : ""));
    return a;
}

/* The final steered and unsteered samples of every prompt: generations.jsonl records (an array). */
static int final_generations(steer_ctx *c, int64_t layer, int64_t label, double strength, cJSON *records,
                             dk_err *err) {
    const adl_steer_settings *s = c->s;
    int rc = 0;
    for (int p = 0; p < s->n_prompts && rc == 0; p++) {
        const double strengths[2] = {strength, 0.0};
        char **texts = NULL;
        int64_t **ids = NULL, *n_ids = NULL;
        rc = generate(c, s->prompts[p], strengths, 2, s->final_samples, s->final_max_new_tokens, s->final_temperature,
                      &texts, &ids, &n_ids, err);
        if (rc == 0) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "prompt", s->prompts[p]);
            cJSON_AddNumberToObject(r, "strength", strength);
            cJSON_AddNumberToObject(r, "layer", (double)layer);
            cJSON_AddNumberToObject(r, "position", (double)label);
            cJSON_AddNumberToObject(r, "num_samples", (double)s->final_samples);
            cJSON_AddNumberToObject(r, "temperature", s->final_temperature);
            cJSON_AddNumberToObject(r, "max_new_tokens", (double)s->final_max_new_tokens);
            cJSON_AddBoolToObject(r, "do_sample", s->final_temperature > 0);
            cJSON_AddItemToObject(r, "steered_samples", sample_array(texts, 0, s->final_samples));
            cJSON_AddItemToObject(r, "unsteered_samples", sample_array(texts, s->final_samples, s->final_samples));
            cJSON_AddItemToArray(records, r);
        }
        free_samples(texts, ids, 2 * s->final_samples);
        free(n_ids);
    }
    return rc;
}

/* Bytes of the first max_chars characters of UTF-8 text (the seed cuts Python strings by characters). */
static size_t utf8_prefix_bytes(const char *s, int64_t max_chars) {
    size_t i = 0;
    for (int64_t chars = 0; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == max_chars) break;
    }
    return i;
}

/* The overview's steering examples (the seed's get_steering_samples: the first steered and unsteered sample of
 * each prompt, cut to max_sample_chars; steering_samples_per_prompt records per prompt — one record per prompt
 * exists, so at most one). */
static void add_overview(const adl_state *st, const adl_steps *steps, cJSON *layer_overview, int64_t label,
                         const cJSON *records) {
    if (!layer_overview) return;
    bool wanted = false;
    for (int64_t i = 0; i < st->n_overview_positions; i++) wanted |= st->overview_positions[i] == label;
    if (!wanted || steps->overview_samples_per_prompt < 1) return;
    cJSON *avail = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer_overview,
                                                                                     "available_positions"),
                                                    "steering");
    cJSON_AddItemToArray(avail, cJSON_CreateNumber((double)label));
    cJSON *per = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(layer_overview,
                                                                                   "steering_examples"),
                                                  "per_position");
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)label);
    cJSON *list = cJSON_AddArrayToObject(per, key);
    const cJSON *r;
    cJSON_ArrayForEach(r, records) {
        const cJSON *st_s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "steered_samples"), 0);
        const cJSON *un_s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "unsteered_samples"), 0);
        if (!st_s || !un_s) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "prompt", cJSON_GetObjectItemCaseSensitive(r, "prompt")->valuestring);
        char *steered = dk_strndup(st_s->valuestring, utf8_prefix_bytes(st_s->valuestring, steps->overview_max_chars));
        char *unsteered = dk_strndup(un_s->valuestring, utf8_prefix_bytes(un_s->valuestring, steps->overview_max_chars));
        cJSON_AddStringToObject(e, "steered", steered);
        cJSON_AddStringToObject(e, "unsteered", unsteered);
        free(steered), free(unsteered);
        cJSON_AddItemToArray(list, e);
    }
}

int adl_steer_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                  const adl_means *m, const adl_task *task, int64_t label, cJSON *layer_overview, dk_err *err) {
    const adl_steer_settings *s = &steps->steer;
    const int64_t li = adl_layer_index(st, task->layer), pi = adl_position_index(ds, label), H = m->d;
    const float *diff = adl_mean_vector(m, 0, li, pi);
    double norm = 0;
    for (int64_t h = 0; h < H; h++) norm += (double)diff[h] * diff[h];
    norm = sqrt(norm);
    if (norm == 0) { /* a null pair (base against itself): nothing to steer with; no files, so no steering is shown */
        LOG_INFO("diff_adl %s layer %lld position %lld steering: the mean difference is zero (the models do not differ "
                 "here): skipped, no threshold or generations written", ds->name, (long long)task->layer, (long long)label);
        return 0;
    }
    if (!(norm > 0))
        return dk_err_set(err, DK_EXIT_RUNTIME, "steering %s layer %lld position %lld: the mean difference is not "
                          "finite", ds->name, (long long)task->layer, (long long)label);
    float *vector = dk_malloc((size_t)H * sizeof *vector); /* (H) ft_norm · unit mean difference */
    for (int64_t h = 0; h < H; h++) vector[h] = (float)(m->ft_norm[li] * diff[h] / norm);
    steer_ctx c = {.job = job, .s = s, .seed = (uint64_t)job->seed};
    c.steer = (dk_steer){.layer = task->layer, .strength = 1.0f, .vector = vector};
    int rc = dk_chat_gen_init(&c.gen, job->cfg, dk_model_pair_backend(&job->pair, true),
                              job->pair.ft_is_adapter ? job->pair.base_dir : job->pair.ft_dir,
                              dk_model_pair_adapter(&job->pair, true), job->tok, s->max_batch_size, err);
    graded g = {0};
    double thresholds[3] = {0, 0, 0};
    for (int p = 0; p < 3 && rc == 0; p++) {
        const double hi = p == 0 ? s->max_strength : 2.0 * thresholds[0];
        const int64_t n_steps = p == 0 ? s->steps : s->steps / 2;
        rc = search(&c, THRESHOLD_PROMPTS[p], 0.0, hi, n_steps, &g, &thresholds[p], err);
        if (rc == 0)
            LOG_INFO("diff_adl %s layer %lld position %lld steering: highest coherent strength for \"%s\": %.4f",
                     ds->name, (long long)task->layer, (long long)label, THRESHOLD_PROMPTS[p], thresholds[p]);
    }
    const double avg = (thresholds[0] + thresholds[1] + thresholds[2]) / 3.0;
    cJSON *records = cJSON_CreateArray();
    if (rc == 0) rc = final_generations(&c, task->layer, label, avg, records, err);
    if (rc == 0) {
        char dir[384], path[512];
        snprintf(dir, sizeof dir, "layer_%lld/%s/steering/position_%lld", (long long)task->layer, ds->name,
                 (long long)label);
        cJSON *thr = cJSON_CreateObject();
        cJSON_AddItemToObject(thr, "thresholds", cJSON_CreateDoubleArray(thresholds, 3));
        cJSON_AddNumberToObject(thr, "avg_threshold", avg);
        cJSON_AddStringToObject(thr, "grader", s->grader.id);
        cJSON *prompts = cJSON_AddArrayToObject(thr, "threshold_prompts");
        for (int p = 0; p < 3; p++) cJSON_AddItemToArray(prompts, cJSON_CreateString(THRESHOLD_PROMPTS[p]));
        cJSON_AddNumberToObject(thr, "coherence_threshold", s->coherence_threshold);
        cJSON *graded_json = cJSON_AddArrayToObject(thr, "graded");
        for (int64_t i = 0; i < g.n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "strength", g.strength[i]);
            cJSON_AddNumberToObject(e, "coherence", g.coherence[i]);
            cJSON_AddItemToArray(graded_json, e);
        }
        snprintf(path, sizeof path, "%s/threshold.json", dir);
        dk_results_json(&job->res, path, thr);
        add_overview(st, steps, layer_overview, label, records);
        snprintf(path, sizeof path, "%s/generations.jsonl", dir);
        dk_results_json(&job->res, path, records);
        records = NULL;
        snprintf(path, sizeof path, "%s/vector", dir);
        dk_results_f32(&job->res, path, 1, &H, vector);
        snprintf(path, sizeof path, "%s/graded_strength", dir);
        dk_results_f64(&job->res, path, 1, &g.n, g.strength);
        snprintf(path, sizeof path, "%s/graded_coherence", dir);
        dk_results_f64(&job->res, path, 1, &g.n, g.coherence);
        dk_results_attr_f64(&job->res, dir, "avg_threshold", avg);
        dk_results_attr_str(&job->res, dir, "grader", s->grader.id);
        LOG_INFO("diff_adl %s layer %lld position %lld steering: average threshold %.4f (%s)", ds->name,
                 (long long)task->layer, (long long)label, avg, s->grader.id);
    } else {
        dk_err_prefix(err, "steering %s layer %lld position %lld: ", ds->name, (long long)task->layer,
                      (long long)label);
    }
    cJSON_Delete(records);
    for (int64_t i = 0; i < c.n_ref; i++) free(c.ref_nll[i]), free(c.ref_ids[i]);
    free(c.ref_nll), free(c.ref_ids), free(c.ref_n);
    free(g.strength), free(g.coherence);
    dk_chat_gen_free(&c.gen);
    free(vector);
    return rc;
}
