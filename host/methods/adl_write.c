/* adl_write.c — the ADL's outputs for one dataset (rank 0): the logit lens of every mean vector through the
 * finetuned model's head (seed_spec §5.3), the results.h5 groups, the seed's model-norms file as JSON, and the
 * dataset's part of the agent's overview (seed_spec §14.4). Layout: docs/formats.md, "ADL results". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "methods/adl_internal.h"
#include "methods/logit_lens.h"

/* The three vectors of each position and the name of each in the results (the seed's file prefixes "", "base_",
 * "ft_"). */
enum { N_VARIANTS = 3 };
static const char *const VARIANTS[N_VARIANTS] = {"mean_diff", "base_mean", "ft_mean"};

static const float *variant_data(const adl_means *m, int v, int64_t layer_index) {
    const float *base = v == 0 ? m->mean_diff : v == 1 ? m->base_mean : m->ft_mean;
    return base + layer_index * m->n_pos * m->d;
}

/* Decoded single tokens (tokenizer.decode([id]) of the seed's agent tools), decoded once each. */
typedef struct token_names {
    const dk_tokenizer *tok;
    char **text;    /* (V) NULL until needed */
    int64_t V;
} token_names;

static const char *token_name(token_names *t, int32_t id) {
    if (!t->text[id]) {
        dk_err err = {0};
        t->text[id] = dk_tokenizer_decode(t->tok, &id, 1, false, NULL, &err);
        if (!t->text[id]) t->text[id] = dk_strdup(""); /* an id outside the tokenizer: the head is wider */
    }
    return t->text[id];
}

/* One lens table (rows = positions, k columns): ids, probabilities, decoded tokens, under-trained flags. */
static void write_table(dk_method_job *job, const adl_state *st, token_names *names, const char *group,
                        const char *prefix, const float *probs, const int32_t *ids, int64_t P, int64_t k) {
    char path[512];
    const int64_t dims[2] = {P, k};
    snprintf(path, sizeof path, "%s/%sprobs", group, prefix);
    dk_results_f32(&job->res, path, 2, dims, probs);
    snprintf(path, sizeof path, "%s/%sids", group, prefix);
    dk_results_i32(&job->res, path, 2, dims, ids);
    const char **text = dk_malloc((size_t)(P * k) * sizeof *text);
    for (int64_t i = 0; i < P * k; i++) text[i] = token_name(names, ids[i]);
    snprintf(path, sizeof path, "%s/%stokens", group, prefix);
    dk_results_strings_nd(&job->res, path, 2, dims, text);
    free(text);
    if (st->undertrained) {
        int32_t *flag = dk_malloc((size_t)(P * k) * sizeof *flag);
        for (int64_t i = 0; i < P * k; i++) flag[i] = ids[i] < names->V && st->undertrained[ids[i]];
        snprintf(path, sizeof path, "%s/%sundertrained", group, prefix);
        dk_results_i32(&job->res, path, 2, dims, flag);
        free(flag);
    }
}

/* The overview entry of one layer: the difference variant's top tokens at the overview positions. */
static cJSON *overview_layer(const adl_state *st, const adl_dataset *ds, const dk_lens_topk *diff_lens,
                             token_names *names) {
    cJSON *o = cJSON_CreateObject();
    cJSON *avail = cJSON_AddObjectToObject(o, "available_positions");
    cJSON *ll_pos = cJSON_AddArrayToObject(avail, "logit_lens");
    cJSON_AddArrayToObject(avail, "patch_scope");   /* filled by auto Patchscope (adl_aps.c) */
    cJSON_AddArrayToObject(avail, "steering");      /* filled by steering (adl_steer.c) */
    cJSON *per_position = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "logit_lens"), "per_position");
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "patch_scope"), "per_position");
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "steering_examples"), "per_position");
    const int64_t P = ds->in.n_pos;
    for (int64_t p = 0; diff_lens && p < P; p++) {
        const int64_t label = ds->in.labels[p];
        bool wanted = false;
        for (int64_t i = 0; i < st->n_overview_positions; i++) wanted |= st->overview_positions[i] == label;
        if (!wanted) continue;
        cJSON_AddItemToArray(ll_pos, cJSON_CreateNumber((double)label));
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)label);
        cJSON *entry = cJSON_AddObjectToObject(per_position, key);
        cJSON *tokens = cJSON_AddArrayToObject(entry, "tokens"), *probs = cJSON_AddArrayToObject(entry, "probs");
        cJSON *flags = st->undertrained ? cJSON_AddArrayToObject(entry, "undertrained") : NULL;
        const int64_t k = st->overview_top_k < diff_lens->k ? st->overview_top_k : diff_lens->k;
        for (int64_t i = 0; i < k; i++) {
            const int32_t id = diff_lens->ids[p * diff_lens->k + i];
            char prob[32];
            snprintf(prob, sizeof prob, "%.3e", (double)diff_lens->probs[p * diff_lens->k + i]);
            cJSON_AddItemToArray(tokens, cJSON_CreateString(token_name(names, id)));
            cJSON_AddItemToArray(probs, cJSON_CreateString(prob));
            if (flags) cJSON_AddItemToArray(flags, cJSON_CreateBool(id < names->V && st->undertrained[id]));
        }
    }
    cJSON *limits = cJSON_AddObjectToObject(o, "k_limits");
    cJSON_AddNumberToObject(limits, "logit_lens", diff_lens ? (double)diff_lens->k : 0);
    cJSON_AddNumberToObject(limits, "patch_scope", 0);
    return o;
}

static void write_inputs(dk_method_job *job, const adl_dataset *ds) {
    const adl_inputs *in = &ds->in;
    char group[256], path[512];
    snprintf(group, sizeof group, "sequences/%s", ds->name);
    const int64_t n_ids = in->offsets[in->n_seqs], n_off = in->n_seqs + 1, dims[2] = {in->n_seqs, in->n_pos};
    snprintf(path, sizeof path, "%s/ids", group);
    dk_results_i32(&job->res, path, 1, &n_ids, in->ids);
    snprintf(path, sizeof path, "%s/offsets", group);
    dk_results_i64(&job->res, path, 1, &n_off, in->offsets);
    snprintf(path, sizeof path, "%s/positions", group);
    dk_results_i64(&job->res, path, 2, dims, in->positions);
    snprintf(path, sizeof path, "%s/line", group);
    dk_results_i64(&job->res, path, 1, &in->n_seqs, in->line);
    dk_results_attr_str(&job->res, group, "dataset_id", ds->id);
    dk_results_attr_str(&job->res, group, "path", ds->path);
    dk_results_attr_i64(&job->res, group, "is_chat", ds->is_chat);
    dk_results_attr_i64(&job->res, group, "records_read", in->n_records);
    dk_results_attr_i64(&job->res, group, "records_too_short", in->n_short);
    dk_results_attr_i64(&job->res, group, "records_skipped", in->n_skipped);
}

/* model_norms/<dataset> in results.h5 and the seed's model_norms_<dataset> as JSON (its field names). */
static void write_norms(dk_method_job *job, const adl_state *st, const adl_dataset *ds, const adl_means *m) {
    char group[256], path[512];
    snprintf(group, sizeof group, "model_norms/%s", ds->name);
    snprintf(path, sizeof path, "%s/layers", group);
    dk_results_i64(&job->res, path, 1, &st->n_layers, st->layers);
    snprintf(path, sizeof path, "%s/base_model_norms", group);
    dk_results_f64(&job->res, path, 1, &st->n_layers, m->base_norm);
    snprintf(path, sizeof path, "%s/ft_model_norms", group);
    dk_results_f64(&job->res, path, 1, &st->n_layers, m->ft_norm);
    dk_results_attr_i64(&job->res, group, "skip_tokens", ADL_NORM_SKIP_TOKENS);
    dk_results_attr_i64(&job->res, group, "num_sequences", m->n_seqs);
    cJSON *j = cJSON_CreateObject();
    cJSON *b = cJSON_AddObjectToObject(j, "base_model_norms"), *f = cJSON_AddObjectToObject(j, "ft_model_norms");
    for (int64_t l = 0; l < st->n_layers; l++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)st->layers[l]);
        cJSON_AddNumberToObject(b, key, m->base_norm[l]);
        cJSON_AddNumberToObject(f, key, m->ft_norm[l]);
    }
    cJSON_AddNumberToObject(j, "skip_tokens", ADL_NORM_SKIP_TOKENS);
    cJSON_AddNumberToObject(j, "num_sequences", (double)m->n_seqs);
    char *file = dk_sprintf("model_norms_%s.json", ds->name);
    dk_results_json(&job->res, file, j);
    free(file);
}

int adl_write_dataset(dk_method_job *job, const adl_state *st, const adl_dataset *ds, const adl_means *m,
                      cJSON *overview_layers, dk_err *err) {
    const int64_t L = st->n_layers, P = m->n_pos, H = m->d;
    const dk_model *ft = dk_model_pair_model(&job->pair, true);
    token_names names = {.tok = job->tok, .V = ft->cfg.vocab_size};
    names.text = dk_calloc((size_t)names.V, sizeof *names.text);
    dk_lens_topk *lens = dk_calloc((size_t)L, sizeof *lens); /* per layer: rows = the 3 variants × P positions */
    float *vectors = dk_malloc((size_t)(N_VARIANTS * P * H) * sizeof(float));
    const int64_t mean_dims[2] = {P, H};
    int rc = 0;
    for (int64_t l = 0; l < L && rc == 0; l++) {
        char group[256], path[512];
        snprintf(group, sizeof group, "layer_%lld/%s", (long long)st->layers[l], ds->name);
        for (int v = 0; v < N_VARIANTS; v++) {
            snprintf(path, sizeof path, "%s/%s", group, VARIANTS[v]);
            dk_results_f32(&job->res, path, 2, mean_dims, variant_data(m, v, l));
            memcpy(vectors + v * P * H, variant_data(m, v, l), (size_t)(P * H) * sizeof(float));
        }
        snprintf(path, sizeof path, "%s/positions", group);
        dk_results_i64(&job->res, path, 1, &P, ds->in.labels);
        dk_results_attr_i64(&job->res, group, "count", m->n_seqs);
        dk_results_attr_i64(&job->res, group, "activation_dim", H);
        if (!st->lens) continue;
        rc = dk_logit_lens(ft, dk_model_pair_adapter(&job->pair, true), vectors, N_VARIANTS * P, st->k, &lens[l],
                           err);
        if (rc != 0) {
            dk_err_prefix(err, "%s layer %lld: ", ds->name, (long long)st->layers[l]);
            break;
        }
        for (int v = 0; v < N_VARIANTS; v++) {
            char lens_group[384];
            snprintf(lens_group, sizeof lens_group, "%s/logit_lens/%s", group, VARIANTS[v]);
            const int64_t at = v * P * st->k;
            write_table(job, st, &names, lens_group, "top_", lens[l].probs + at, lens[l].ids + at, P, st->k);
            write_table(job, st, &names, lens_group, "inv_", lens[l].inv_probs + at, lens[l].inv_ids + at, P, st->k);
        }
    }
    if (rc == 0) {
        write_norms(job, st, ds, m);
        write_inputs(job, ds);
        /* the overview, in its configured layer order; lens rows 0..P-1 are the difference variant */
        for (int64_t i = 0; overview_layers && i < st->n_overview_layers; i++)
            for (int64_t l = 0; l < L; l++) {
                if (st->layers[l] != st->overview_layers[i]) continue;
                char key[32];
                snprintf(key, sizeof key, "%lld", (long long)st->layers[l]);
                cJSON_AddItemToObject(overview_layers, key,
                                      overview_layer(st, ds, st->lens ? &lens[l] : NULL, &names));
            }
        for (int64_t l = 0; l < L; l++)
            LOG_INFO("diff_adl %s layer %lld: %lld sequences, mean norm base %.4g, finetuned %.4g", ds->name,
                     (long long)st->layers[l], (long long)m->n_seqs, m->base_norm[l], m->ft_norm[l]);
    }
    for (int64_t l = 0; l < L; l++) dk_lens_topk_free(&lens[l]);
    free(lens);
    free(vectors);
    for (int64_t i = 0; i < names.V; i++) free(names.text[i]);
    free(names.text);
    return rc;
}
