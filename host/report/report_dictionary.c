/* report_dictionary.c — the SAE and crosscoder sections (docs/formats.md "SAE and crosscoder results",
 * "Dictionary analysis"): per layer and run the training curves, the validation metrics, the latent statistics
 * of the latents the seed's steering picks (the summary's top_latents), the latent-scaling and decoder-norm plots,
 * and max-activating examples of the first picked latents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"
#include "svg.h"

enum { LATENTS_TABLED = 10, LATENTS_EXAMPLED = 3, HIST_BINS = 40 };

static void curves(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *run) {
    static const char *const LOSSES[] = {"loss", "reconstruction_loss", "auxk_loss"};
    rp_array a[3] = {{0}};
    rp_series s[3];
    size_t n = 0;
    char *first = NULL;
    for (int i = 0; i < 3; i++) {
        char *p = dk_sprintf("%s/training/%s", run, LOSSES[i]);
        dk_err err = {0};
        if (rp_h5_read(f, p, &a[n], &err) == 0) {
            s[n] = (rp_series){.name = LOSSES[i], .y = a[n].v, .n = (size_t)a[n].n};
            if (!first) first = dk_strdup(p);
            n++;
        } else if (i == 0) {
            rp_view_failed(c, b, "the training curve", &err);
        }
        free(p);
    }
    if (n) {
        rp_plot p = {.title = "Training losses per step (normalised units)", .x_label = "step", .y_label = "loss", .log_y = true};
        dk_strbuf_append(b, "<figure>");
        rp_svg_lines(b, &p, s, n);
        dk_strbuf_append(b, "<figcaption>");
        rp_src(b, f->rel, first);
        dk_strbuf_append(b, " and beside it</figcaption></figure>\n");
    }
    for (size_t i = 0; i < n; i++) rp_array_free(&a[i]);
    free(first);
    char *p_dead = dk_sprintf("%s/training/dead_latents", run);
    rp_array dead = {0};
    if (rp_h5_read(f, p_dead, &dead, NULL) == 0) {
        rp_series sd = {.name = "dead latents", .y = dead.v, .n = (size_t)dead.n};
        rp_plot p = {.title = "Dead latents per step", .x_label = "step", .y_label = "latents"};
        dk_strbuf_append(b, "<figure>");
        rp_svg_lines(b, &p, &sd, 1);
        dk_strbuf_append(b, "<figcaption>");
        rp_src(b, f->rel, p_dead);
        dk_strbuf_append(b, "</figcaption></figure>\n");
    }
    rp_array_free(&dead);
    free(p_dead);
}

/* A histogram of a latent_stats column. */
static void column_histogram(dk_strbuf *b, const rp_h5 *f, const char *path, const char *title, const char *x_label) {
    rp_array a = {0};
    if (rp_h5_read(f, path, &a, NULL) == 0) rp_values_histogram(b, f, path, &a, title, x_label, "latents", false, HIST_BINS);
    rp_array_free(&a);
}

/* The layer's entry of the run's summary (/summary/json), or NULL; the caller deletes the whole summary (*root). */
static const cJSON *layer_summary(const rp_h5 *f, const char *layer, cJSON **root) {
    int64_t n_s = 0;
    char **s = rp_h5_strings(f, "/summary/json", &n_s, NULL);
    *root = s && n_s == 1 ? cJSON_Parse(s[0]) : NULL;
    for (int64_t i = 0; s && i < n_s; i++) free(s[i]);
    free(s);
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(*root, "layers"), layer + strlen("layer_"));
}

/* The validation metrics and latent classes the job summarised (numbers of the JSON summary, not of datasets). */
static void validation(dk_strbuf *b, const rp_h5 *f, const char *layer) {
    cJSON *root = NULL;
    const cJSON *lay = layer_summary(f, layer, &root);
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(lay, "validation"), *tags = cJSON_GetObjectItemCaseSensitive(lay, "latent_tags");
    if (cJSON_IsObject(val) || cJSON_IsObject(tags)) {
        dk_strbuf_append(b, "<h4>Validation (whole validation split) and latent classes</h4>\n<table class=\"stats\">"
                            "<thead><tr><th>metric</th><th>value</th></tr></thead><tbody>\n");
        const cJSON *groups[] = {val, tags}, *v;
        for (int g = 0; g < 2; g++)
            cJSON_ArrayForEach(v, groups[g]) {
                if (!cJSON_IsNumber(v)) continue;
                dk_strbuf_append(b, "<tr><td>");
                rp_esc(b, g ? "latents tagged " : "");
                rp_esc(b, v->string);
                dk_strbuf_printf(b, "</td><td class=\"num\">%.4g</td></tr>\n", v->valuedouble);
            }
        dk_strbuf_append(b, "</tbody></table>\n<p class=\"from\">from ");
        rp_src(b, f->rel, "/summary/json");
        dk_strbuf_append(b, "</p>\n");
    }
    cJSON_Delete(root);
}

/* The summary's top_latents of this layer, or the first latents when the summary has none. */
static int64_t *picked_latents(const rp_h5 *f, const char *layer, int64_t n_latents, size_t *n_out, char **by) {
    cJSON *sum = NULL;
    const cJSON *lay = layer_summary(f, layer, &sum);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(lay, "top_latents");
    const cJSON *top_by = cJSON_GetObjectItemCaseSensitive(lay, "top_latents_by");
    int64_t *out = dk_calloc(LATENTS_TABLED, sizeof *out);
    size_t n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, top) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(t, "latent");
        if (cJSON_IsNumber(l) && n < LATENTS_TABLED && l->valuedouble >= 0 && l->valuedouble < n_latents)
            out[n++] = (int64_t)l->valuedouble;
    }
    *by = dk_strdup(n && cJSON_IsString(top_by) ? top_by->valuestring : "the first latents (the summary names none)");
    for (int64_t i = 0; n == 0 && i < n_latents && i < LATENTS_TABLED; i++) out[i] = i;
    if (n == 0) n = (size_t)(n_latents < LATENTS_TABLED ? n_latents : LATENTS_TABLED);
    cJSON_Delete(sum);
    *n_out = n;
    return out;
}

static void latent_table(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *run, const char *layer, bool crosscoder) {
    char *g = dk_sprintf("%s/latent_stats", run);
    size_t n_cols = 0;
    char **cols = rp_h5_children(f, g, &n_cols);
    rp_array *vals = dk_calloc(n_cols + 1, sizeof *vals);
    bool *ok = dk_calloc(n_cols + 1, sizeof *ok);
    int64_t n_latents = -1;
    for (size_t i = 0; i < n_cols; i++) {
        char *p = dk_sprintf("%s/%s", g, cols[i]);
        ok[i] = strcmp(cols[i], "tag") != 0 && rp_h5_read(f, p, &vals[i], NULL) == 0;
        if (ok[i] && n_latents < 0) n_latents = vals[i].n;
        if (ok[i] && vals[i].n != n_latents) ok[i] = false;
        free(p);
    }
    if (n_latents <= 0) {
        dk_err err = {0};
        dk_err_set(&err, 1, "%s:%s has no readable column", f->rel, g);
        rp_view_failed(c, b, "the latent statistics", &err);
    } else {
        size_t n_pick = 0;
        char *by = NULL;
        int64_t *pick = picked_latents(f, layer, n_latents, &n_pick, &by);
        dk_strbuf_append(b, "<h4>Latent statistics</h4>\n<p class=\"from\">latents picked by ");
        rp_esc(b, by);
        dk_strbuf_append(b, "; columns from ");
        rp_src(b, f->rel, g);
        dk_strbuf_append(b, "</p>\n<div style=\"overflow-x:auto\"><table class=\"stats\"><thead><tr><th>latent</th>");
        for (size_t i = 0; i < n_cols; i++)
            if (ok[i]) {
                dk_strbuf_append(b, "<th>");
                rp_esc(b, cols[i]);
                dk_strbuf_append(b, "</th>");
            }
        dk_strbuf_append(b, "</tr></thead><tbody>\n");
        for (size_t k = 0; k < n_pick; k++) {
            dk_strbuf_printf(b, "<tr><td>%lld</td>", (long long)pick[k]);
            for (size_t i = 0; i < n_cols; i++)
                if (ok[i]) {
                    char *p = dk_sprintf("%s/%s", g, cols[i]);
                    rp_td_num(b, f->rel, p, pick[k], vals[i].v[pick[k]]);
                    free(p);
                }
            dk_strbuf_append(b, "</tr>\n");
        }
        dk_strbuf_append(b, "</tbody></table></div>\n");
        /* the plots: decoder norm difference (crosscoder) and the latent scaling ratio (both, where stored) */
        char *p_dnd = dk_sprintf("%s/dec_norm_diff", g), *p_ratio = dk_sprintf("%s/beta_activation_ratio", g);
        if (crosscoder && rp_h5_has(f, p_dnd))
            column_histogram(b, f, p_dnd, "Relative decoder norm difference (0 = finetuned only, 1 = base only)",
                             "dec_norm_diff");
        if (rp_h5_has(f, p_ratio))
            column_histogram(b, f, p_ratio, "Latent scaling: beta_activation base / finetuned", "beta ratio");
        free(p_dnd), free(p_ratio);
        /* examples of the first picked latents */
        char *mg = dk_sprintf("%s/max_act", run);
        size_t n_ds = 0;
        char **dss = rp_h5_children(f, mg, &n_ds);
        for (size_t k = 0; k < n_pick && k < LATENTS_EXAMPLED; k++)
            for (size_t d = 0; d < n_ds; d++) {
                char *t = dk_sprintf("%s/%s/latent_%lld", mg, dss[d], (long long)pick[k]);
                char *title = dk_sprintf("Latent %lld, dataset %s", (long long)pick[k], dss[d]);
                if (rp_h5_has(f, t)) rp_maxact(c, b, f, t, title);
                free(t), free(title);
            }
        dk_free_strings(dss, n_ds);
        free(mg), free(pick), free(by);
    }
    for (size_t i = 0; i < n_cols; i++) rp_array_free(&vals[i]);
    free(vals), free(ok), free(g);
    dk_free_strings(cols, n_cols);
}

void rp_section_dictionary(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    bool crosscoder = strstr(method_dir, "crosscoder") != NULL;
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    bool any = false;
    for (size_t li = 0; li < n_top; li++) {
        if (!dk_str_starts_with(top[li], "layer_")) continue;
        char *lg = dk_sprintf("/%s", top[li]);
        size_t n_runs = 0;
        char **runs = rp_h5_children(f, lg, &n_runs);
        for (size_t r = 0; r < n_runs; r++) {
            char *run = dk_sprintf("%s/%s", lg, runs[r]);
            char *tr = dk_sprintf("%s/training", run);
            if (rp_h5_has(f, tr)) {
                any = true;
                dk_strbuf_append(b, "<h3>");
                rp_esc(b, runs[r]);
                dk_strbuf_append(b, "</h3>\n");
                curves(c, b, f, run);
                validation(b, f, top[li]);
                latent_table(c, b, f, run, top[li], crosscoder);
            }
            free(tr), free(run);
        }
        dk_free_strings(runs, n_runs);
        free(lg);
    }
    if (!any) {
        rp_problem(b, "%s has no layer_*/<run>/training: nothing to show", f->rel);
        c->problems++;
    }
    dk_free_strings(top, n_top);
}
