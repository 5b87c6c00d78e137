/* activation_analysis_out.c — writes what activation_analysis.c computed for one (dataset, layer): the seed's
 * statistics, the data of its histogram plots, the running means, the six max-activating tables, its JSON
 * files ({dataset}/results.json, {dataset}/layer_{L}.json) and the summary. Layout: docs/formats.md,
 * "Activation analysis results". Rank 0 only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "methods/activation_analysis.h"
#include "methods/histogram.h"
#include "methods/stats.h"

enum { BINS = 100 }; /* plt.hist(values, bins=100) */

static cJSON *stats_of(const aa_state *st, const float *v, int64_t n) {
    static const char *const keys[] = {"mean", "std", "median", "min", "max", "percentiles"}; /* the seed's order */
    return dk_stats_json(v, n, keys, 6, st->percentiles, st->n_percentiles);
}

static void attrs_from_json(dk_results *r, const char *path, const cJSON *o) {
    for (const cJSON *it = o->child; it; it = it->next) dk_results_attr_f64(r, path, it->string, it->valuedouble);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* One of the seed's histograms (compute_histogram in activation_analysis/method.py): the values (NaN left out,
 * as matplotlib does), optionally without Tukey's outliers; the mean and median of the values before the
 * outlier filter (the seed's red and green lines); the file names the seed gives its two plots. */
static void write_histogram(dk_results *r, const char *group, const char *name, const char *title, const float *values,
                            int64_t n, bool no_outliers) {
    float *kept = dk_malloc((size_t)(n ? n : 1) * sizeof *kept), *sorted = dk_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    int64_t m = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(values[i])) kept[m] = sorted[m] = values[i], sum += values[i], m++;
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_float);
    const double mean = m ? sum / (double)m : 0, median = m ? sorted[(m - 1) / 2] : 0; /* torch.median: the lower */
    char path[768], full_title[160];
    snprintf(path, sizeof path, "%s/histograms/%s", group, name);
    snprintf(full_title, sizeof full_title, "%s%s", title, no_outliers ? " (no outliers)" : "");
    if (no_outliers && m > 0) {
        float lower, upper;
        dk_iqr_fences(sorted, m, &lower, &upper);
        int64_t w = 0;
        for (int64_t i = 0; i < m; i++)
            if (kept[i] >= lower && kept[i] <= upper) kept[w++] = kept[i];
        m = w;
        dk_results_attr_f64(r, path, "lower_bound", lower);
        dk_results_attr_f64(r, path, "upper_bound", upper);
    }
    dk_histogram h;
    dk_histogram_compute(&h, kept, m, BINS);
    const int64_t nb = BINS, ne = BINS + 1;
    char member[1024];
    snprintf(member, sizeof member, "%s/counts", path);
    dk_results_i64(r, member, 1, &nb, h.counts);
    snprintf(member, sizeof member, "%s/edges", path);
    dk_results_f32(r, member, 1, &ne, h.edges);
    dk_results_attr_str(r, path, "title", full_title);
    dk_results_attr_i64(r, path, "n", h.n);
    dk_results_attr_f64(r, path, "mean", mean);
    dk_results_attr_f64(r, path, "median", median);
    /* the seed's files: title with '_' for ' ' (.png), and without parentheses + _log.png (log y axis) */
    char plot[200], plot_log[200];
    size_t k = 0, kl = 0;
    for (const char *c = full_title; *c && k + 1 < sizeof plot; c++) {
        plot[k++] = *c == ' ' ? '_' : *c;
        if (*c != '(' && *c != ')' && kl + 1 < sizeof plot_log) plot_log[kl++] = *c == ' ' ? '_' : *c;
    }
    plot[k] = 0, plot_log[kl] = 0;
    snprintf(member, sizeof member, "plots/%s.png", plot);
    dk_results_attr_str(r, path, "seed_plot", member);
    snprintf(member, sizeof member, "plots/%s_log.png", plot_log);
    dk_results_attr_str(r, path, "seed_plot_log", member);
    dk_histogram_free(&h);
    free(kept), free(sorted);
}

/* The seed's compute_plots, in its order (norm_base_vs_finetuned draws norm_base and norm_finetuned again,
 * as densities, from the same data). */
static void write_histograms(dk_results *r, const char *group, const aa_layer_out *out) {
    const int64_t n = out->n_tokens;
    write_histogram(r, group, "norm_diff_no_outliers", "Activation Difference Norm", out->norm_diff, n, true);
    write_histogram(r, group, "norm_diff", "Activation Difference Norm", out->norm_diff, n, false);
    write_histogram(r, group, "cos_sim", "Cosine Similarity", out->cos_sim, n, false);
    write_histogram(r, group, "norm_base", "Base Activation Norm", out->norm_base, n, false);
    write_histogram(r, group, "norm_base_no_outliers", "Base Activation Norm", out->norm_base, n, true);
    write_histogram(r, group, "norm_finetuned", "Finetuned Activation Norm", out->norm_finetuned, n, false);
    write_histogram(r, group, "norm_finetuned_no_outliers", "Finetuned Activation Norm", out->norm_finetuned, n, true);
    /* the seed's float32 norm_diff / (norm_base + norm_finetuned): 0/0 (both norms zero, or zeroed) is NaN */
    float *rel = dk_malloc((size_t)(n ? n : 1) * sizeof *rel);
    for (int64_t i = 0; i < n; i++) rel[i] = out->norm_diff[i] / (out->norm_base[i] + out->norm_finetuned[i]);
    write_histogram(r, group, "relative_norm_diff", "Relative Activation Difference Norm", rel, n, false);
    write_histogram(r, group, "relative_norm_diff_no_outliers", "Relative Activation Difference Norm", rel, n, true);
    free(rel);
}

/* The running means with observations (the seed saves those only): mean_{collector}_{dataset}.pt. */
static void write_means(dk_method_job *job, const char *group, const aa_dataset *ds, aa_layer_out *out) {
    dk_results *r = &job->res;
    const int64_t d = out->collectors[0].sum.d;
    double *mean = dk_malloc((size_t)d * sizeof *mean);
    float *mean32 = dk_malloc((size_t)d * sizeof *mean32);
    for (int c = 0; c < out->n_collectors; c++) {
        aa_collector *col = &out->collectors[c];
        if (col->sum.count == 0) continue;
        dk_bf16_sum_mean(&col->sum, mean);
        for (int64_t j = 0; j < d; j++) mean32[j] = (float)mean[j];
        char path[768], member[1024];
        snprintf(path, sizeof path, "%s/means/%s", group, col->name);
        snprintf(member, sizeof member, "%s/mean", path);
        dk_results_f32(r, member, 1, &d, mean32);
        dk_results_attr_i64(r, path, "count", col->sum.count);
        dk_results_attr_i64(r, path, "activation_dim", d);
        dk_results_attr_i64(r, path, "position", col->position);
        dk_results_attr_i64(r, path, "token_id", col->token_id);
        if (col->token_id >= 0) {
            dk_err derr = {0};
            char *text = dk_tokenizer_decode(job->tok, &col->token_id, 1, false, NULL, &derr);
            dk_results_attr_str(r, path, "token", text ? text : "");
            free(text);
        }
        snprintf(member, sizeof member, "mean_%s_%s.pt", col->name, ds->name);
        dk_results_attr_str(r, path, "seed_file", member);
    }
    free(mean), free(mean32);
}

static cJSON *examples_json(dk_method_job *job, const dk_maxact *t, int max) {
    cJSON *ex = cJSON_CreateArray();
    dk_maxact_entry *e = dk_maxact_sorted(t);
    for (int64_t i = 0; i < t->n && i < max; i++) {
        dk_err derr = {0};
        char *text = dk_tokenizer_decode(job->tok, e[i].tokens, (size_t)e[i].n_tokens, true, NULL, &derr);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "score", e[i].score);
        cJSON_AddNumberToObject(x, "sequence_index", (double)e[i].seq);
        if (text && strlen(text) > 128) text[128] = 0; /* a snippet (a cut UTF-8 character is escaped by cJSON) */
        cJSON_AddStringToObject(x, "text", text ? text : "");
        free(text);
        cJSON_AddItemToArray(ex, x);
    }
    free(e);
    return ex;
}

static double get(const cJSON *o, const char *key) { return cJSON_GetObjectItem(o, key)->valuedouble; }

void aa_write_layer(dk_method_job *job, const aa_state *st, const aa_dataset *ds, aa_layer_out *out,
                    cJSON *json_layers, cJSON *summary_dataset) {
    dk_results *r = &job->res;
    char group[512], path[600];
    snprintf(group, sizeof group, "layer_%lld/%s", (long long)out->layer, ds->name);
    dk_results_attr_str(r, group, "dataset_id", ds->id);
    dk_results_attr_i64(r, group, "layer", out->layer);
    dk_results_attr_i64(r, group, "total_tokens_processed", out->n_tokens);
    dk_results_attr_i64(r, group, "total_samples_processed", out->n_seqs);
    dk_results_attr_i64(r, group, "sequences_too_short", out->n_left_out);
    dk_results_attr_i64(r, group, "skip_first_n_tokens", st->n_skip);

    const char *metric[4] = {"norm_diff", "cos_dist", "norm_base", "norm_finetuned"};
    const float *values[4] = {out->norm_diff, out->cos_dist, out->norm_base, out->norm_finetuned};
    cJSON *stats[4];
    for (int m = 0; m < 4; m++) {
        stats[m] = stats_of(st, values[m], out->n_tokens);
        snprintf(path, sizeof path, "%s/statistics/%s", group, metric[m]);
        attrs_from_json(r, path, stats[m]);
    }
    write_histograms(r, group, out);
    write_means(job, group, ds, out);
    for (int t = 0; t < AA_N_TABLES; t++) {
        snprintf(path, sizeof path, "layer_%lld/max_act/%s/%s", (long long)out->layer, AA_TABLES[t], ds->name);
        dk_maxact_write(&out->tables[t], r, path, job->tok);
    }

    /* the seed's layer entry (results.json "layers", and layer_{L}.json): statistics of the norm difference */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset_id", ds->id);
    cJSON_AddNumberToObject(j, "layer", (double)out->layer);
    cJSON_AddItemToObject(j, "statistics", cJSON_Duplicate(stats[0], true));
    cJSON_AddNumberToObject(j, "total_tokens_processed", (double)out->n_tokens);
    cJSON_AddNumberToObject(j, "total_samples_processed", (double)out->n_seqs);
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddStringToObject(meta, "base_model", job->pair.base_id);
    cJSON_AddStringToObject(meta, "finetuned_model", job->pair.ft_id);
    char key[64];
    snprintf(key, sizeof key, "layer_%lld", (long long)out->layer);
    cJSON_AddItemToObject(json_layers, key, j);

    cJSON *s = cJSON_AddObjectToObject(summary_dataset, key);
    cJSON_AddNumberToObject(s, "norm_diff_mean", get(stats[0], "mean"));
    cJSON_AddNumberToObject(s, "norm_diff_median", get(stats[0], "median"));
    cJSON_AddNumberToObject(s, "cos_dist_mean", get(stats[1], "mean"));
    cJSON_AddNumberToObject(s, "norm_base_mean", get(stats[2], "mean"));
    cJSON_AddNumberToObject(s, "norm_finetuned_mean", get(stats[3], "mean"));
    cJSON_AddNumberToObject(s, "tokens", (double)out->n_tokens);
    cJSON_AddNumberToObject(s, "sequences", (double)out->n_seqs);
    cJSON_AddItemToObject(s, "top_mean_norm_diff_examples", examples_json(job, &out->tables[1], 3));
    LOG_INFO("diff_activation_analysis %s layer %lld: %lld sequences, %lld tokens, mean norm difference %.4g, mean "
             "cosine distance %.4g", ds->name, (long long)out->layer, (long long)out->n_seqs, (long long)out->n_tokens,
             get(stats[0], "mean"), get(stats[1], "mean"));
    for (int m = 0; m < 4; m++) cJSON_Delete(stats[m]);
}

void aa_write_dataset_json(dk_method_job *job, const aa_state *st, const aa_dataset *ds, cJSON *json_layers) {
    for (const cJSON *l = json_layers->child; l; l = l->next) {
        char *file = dk_sprintf("%s/%s.json", ds->name, l->string);
        dk_results_json(&job->res, file, cJSON_Duplicate(l, true));
        free(file);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset_id", ds->id);
    cJSON_AddItemToObject(j, "layers", json_layers);
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddStringToObject(meta, "base_model", job->pair.base_id);
    cJSON_AddStringToObject(meta, "finetuned_model", job->pair.ft_id);
    cJSON *pl = cJSON_AddArrayToObject(meta, "processed_layers");
    for (int64_t li = 0; li < st->n_layers; li++) cJSON_AddItemToArray(pl, cJSON_CreateNumber((double)st->layers[li]));
    char *file = dk_sprintf("%s/results.json", ds->name);
    dk_results_json(&job->res, file, j);
    free(file);
}
