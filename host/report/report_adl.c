/* report_adl.c — the ADL section (docs/formats.md "ADL results"): per layer and dataset, the logit-lens tokens
 * of the mean difference per position (and of each model's own mean), the Patchscope tokens at the best scale,
 * the tokens the relevance grader marked, the norm of the mean difference per position, and the steering
 * threshold with steered and unsteered generations side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "io/file.h"
#include "report.h"
#include "svg.h"

enum { TOKENS_SHOWN = 10, POSITIONS_SHOWN = 8, SAMPLES_SHOWN = 2 };

/* The relevance labels of <method_dir>/layer_L/dataset/token_relevance/position_p/variant/relevance_source.json:
 * its tokens and labels, or NULL when not written. */
static cJSON *relevance(const rp_ctx *c, const char *method_dir, const char *layer, const char *ds, int64_t pos,
                        const char *variant, const char *source) {
    char *rel = dk_sprintf("%s/%s/%s/token_relevance/position_%lld/%s/relevance_%s.json", method_dir, layer, ds,
                           (long long)pos, variant, source);
    char *path = dk_path_join(c->o->results_dir, rel);
    cJSON *j = dk_is_file(path) ? rp_json_file(path, NULL) : NULL;
    free(path), free(rel);
    return j;
}

/* "RELEVANT" / "IRRELEVANT" / "UNKNOWN" / NULL for token text in a relevance file. */
static const char *label_of(const cJSON *rel, const char *token) {
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(rel, "tokens"), *labels = cJSON_GetObjectItemCaseSensitive(rel, "labels");
    for (int i = 0; i < cJSON_GetArraySize(toks); i++) {
        const cJSON *t = cJSON_GetArrayItem(toks, i), *l = cJSON_GetArrayItem(labels, i);
        if (cJSON_IsString(t) && cJSON_IsString(l) && strcmp(t->valuestring, token) == 0) return l->valuestring;
    }
    return NULL;
}

static void token_chip(dk_strbuf *b, const char *token, const char *label, const char *prob_file, const char *prob_path,
                       int64_t index, double prob) {
    const char *cls = label && strcmp(label, "RELEVANT") == 0 ? "rel" : label && strcmp(label, "UNKNOWN") == 0 ? "unk" : "";
    dk_strbuf_printf(b, "<span class=\"%s\" title=\"%s\">", cls, label ? label : "not graded");
    rp_esc(b, token);
    if (prob_path) {
        dk_strbuf_append(b, " <small>");
        rp_num(b, prob_file, prob_path, index, prob);
        dk_strbuf_append(b, "</small>");
    }
    dk_strbuf_append(b, "</span>");
}

/* The logit-lens table of one variant: rows = positions, cells = the top tokens with their probabilities. */
static void lens_table(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir, const char *layer,
                       const char *ds, const char *variant, const char *rel_variant, const rp_array *positions,
                       int n_positions, bool headline) {
    char *g = dk_sprintf("/%s/%s/logit_lens/%s", layer, ds, variant);
    char *p_tok = dk_sprintf("%s/top_tokens", g), *p_prob = dk_sprintf("%s/top_probs", g);
    dk_err err = {0};
    rp_array probs = {0};
    int64_t n_tok = 0;
    char **tokens = rp_h5_strings(f, p_tok, &n_tok, &err);
    if (!tokens || rp_h5_read(f, p_prob, &probs, &err) != 0 || probs.rank != 2 || probs.n != n_tok) {
        if (tokens && !err.msg[0]) dk_err_set(&err, 1, "%s:%s: top_tokens and top_probs differ in shape", f->rel, g);
        rp_view_failed(c, b, "the logit lens", &err);
        goto done;
    }
    int64_t P = probs.dims[0], k = probs.dims[1];
    dk_strbuf_append(b, "<table class=\"lens\"><thead><tr><th>position</th><th>top tokens (probability)</th>"
                        "<th>relevant</th></tr></thead><tbody>\n");
    dk_strbuf headline_tokens = {0};
    int headline_relevant = -1;  /* of the headline's tokens, those the relevance grader marked; -1: not graded */
    char headline_grader[64] = "";
    for (int64_t p = 0; p < P && p < n_positions; p++) {
        int64_t label = (int64_t)positions->v[p];
        cJSON *rel = rel_variant ? relevance(c, method_dir, layer, ds, label, rel_variant, "logitlens") : NULL;
        dk_strbuf_printf(b, "<tr><td>%lld</td><td class=\"toks\">", (long long)label);
        for (int64_t j = 0; j < k && j < TOKENS_SHOWN; j++) {
            token_chip(b, tokens[p * k + j], rel ? label_of(rel, tokens[p * k + j]) : NULL, f->rel, p_prob, p * k + j,
                       probs.v[p * k + j]);
            if (headline && label == 0 && j < 5) {
                dk_strbuf_printf(&headline_tokens, "%s'%s'", j ? ", " : "", tokens[p * k + j]);
                const char *l = rel ? label_of(rel, tokens[p * k + j]) : NULL;
                if (rel) headline_relevant = (headline_relevant < 0 ? 0 : headline_relevant) + (l && strcmp(l, "RELEVANT") == 0);
                const cJSON *grader = cJSON_GetObjectItemCaseSensitive(rel, "grader");
                if (cJSON_IsString(grader)) snprintf(headline_grader, sizeof headline_grader, "%s", grader->valuestring);
            }
        }
        dk_strbuf_append(b, "</td><td>");
        if (rel) {
            char *path = dk_sprintf("/%s/%s/token_relevance/position_%lld/%s/logitlens", layer, ds, (long long)label,
                                    rel_variant);
            double pct;
            if (rp_h5_attr(f, path, "percentage", &pct, NULL) == 0) {
                char *tag = dk_sprintf("%s@percentage", path);
                rp_num(b, f->rel, tag, -1, pct);
                dk_strbuf_append(b, " of the graded tokens are relevant (fraction)");
                free(tag);
            }
            free(path);
        } else {
            dk_strbuf_append(b, "not graded");
        }
        dk_strbuf_append(b, "</td></tr>\n");
        cJSON_Delete(rel);
    }
    dk_strbuf_append(b, "</tbody></table>\n<p class=\"from\">");
    rp_src(b, f->rel, p_tok);
    dk_strbuf_append(b, "</p>\n");
    if (headline && headline_tokens.len) {
        char graded[192] = "";
        if (headline_relevant >= 0)
            snprintf(graded, sizeof graded, " (%d of them relevant to the organism's data by the %s relevance grader)",
                     headline_relevant, headline_grader[0] ? headline_grader : "?");
        rp_headline(c, "ADL: the logit lens of the mean activation difference (%s, %s) at position 0 reads %s%s", layer,
                    ds, headline_tokens.data, graded);
    }
    dk_strbuf_free(&headline_tokens);
done:
    for (int64_t i = 0; tokens && i < n_tok; i++) free(tokens[i]);
    free(tokens);
    rp_array_free(&probs);
    free(g), free(p_tok), free(p_prob);
}

/* ‖mean_diff[p]‖ per position, and the models' mean norms at this layer as a reference. */
static void norm_plot(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *layer, const char *ds, const rp_array *positions) {
    char *p_md = dk_sprintf("/%s/%s/mean_diff", layer, ds);
    dk_err err = {0};
    rp_array md = {0};
    if (rp_h5_read(f, p_md, &md, &err) != 0 || md.rank != 2 || md.dims[0] != positions->n) {
        if (!err.msg[0]) dk_err_set(&err, 1, "%s:%s is not (positions, d)", f->rel, p_md);
        rp_view_failed(c, b, "the norm per position", &err);
        free(p_md);
        rp_array_free(&md);
        return;
    }
    int64_t P = md.dims[0], d = md.dims[1];
    double *norms = dk_calloc((size_t)P + 1, sizeof *norms);
    for (int64_t p = 0; p < P; p++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += md.v[p * d + i] * md.v[p * d + i];
        norms[p] = sqrt(s);
    }
    rp_series s = {.name = "||mean_diff||", .x = positions->v, .y = norms, .n = (size_t)P};
    char *title = dk_sprintf("Norm of the mean difference per position (%s, %s)", layer, ds);
    rp_plot plot = {.title = title, .x_label = "position", .y_label = "L2 norm"};
    dk_strbuf_append(b, "<figure>");
    rp_svg_lines(b, &plot, &s, 1);
    dk_strbuf_append(b, "<figcaption>");
    rp_src(b, f->rel, p_md);
    dk_strbuf_append(b, " (norm of each row)</figcaption></figure>\n");
    /* the models' own mean norms at this layer, for scale */
    char *p_layers = dk_sprintf("/model_norms/%s/layers", ds), *p_base = dk_sprintf("/model_norms/%s/base_model_norms", ds);
    char *p_ft = dk_sprintf("/model_norms/%s/ft_model_norms", ds);
    rp_array layers = {0}, base = {0}, ft = {0};
    long layer_no = strtol(layer + strlen("layer_"), NULL, 10);
    if (rp_h5_read(f, p_layers, &layers, NULL) == 0 && rp_h5_read(f, p_base, &base, NULL) == 0 &&
        rp_h5_read(f, p_ft, &ft, NULL) == 0 && base.n == layers.n && ft.n == layers.n) {
        for (int64_t i = 0; i < layers.n; i++)
            if ((long)layers.v[i] == layer_no) {
                dk_strbuf_append(b, "<p class=\"note\">For scale, the mean residual norm at this layer (positions "
                                    "&ge; 5): base ");
                rp_num(b, f->rel, p_base, i, base.v[i]);
                dk_strbuf_append(b, ", finetuned ");
                rp_num(b, f->rel, p_ft, i, ft.v[i]);
                dk_strbuf_append(b, ".</p>\n");
            }
    }
    rp_array_free(&layers), rp_array_free(&base), rp_array_free(&ft);
    free(p_layers), free(p_base), free(p_ft), free(title), free(norms), free(p_md);
    rp_array_free(&md);
}

/* Patchscope tokens at the best scale for each position that ran (the JSON beside results.h5 holds the tokens). */
static void patchscope(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir, const char *layer,
                       const char *ds) {
    static const char *const VARIANTS[][3] = {{"mean_diff", "", "difference"},
                                              {"base_mean", "base_", "base"},
                                              {"ft_mean", "ft_", "ft"}};
    char *g = dk_sprintf("/%s/%s/auto_patch_scope/mean_diff", layer, ds);
    size_t n_pos = 0;
    char **pos_names = rp_h5_children(f, g, &n_pos);
    free(g);
    if (!n_pos) {
        rp_note(b, "Patchscope did not run for %s, %s.", layer, ds);
        dk_free_strings(pos_names, n_pos);
        return;
    }
    dk_strbuf_append(b, "<table class=\"patchscope\"><thead><tr><th>position</th><th>variant</th><th>best scale</th>"
                        "<th>tokens at the best scale (the grader's selection marked)</th><th>source</th></tr></thead>"
                        "<tbody>\n");
    for (size_t i = 0; i < n_pos; i++) {
        long long pos = strtoll(pos_names[i] + strlen("position_"), NULL, 10);
        for (size_t v = 0; v < 3; v++) {
            char *grp = dk_sprintf("/%s/%s/auto_patch_scope/%s/%s", layer, ds, VARIANTS[v][0], pos_names[i]);
            char *rel = dk_sprintf("%s/%s/%s/%sauto_patch_scope_pos_%lld.json", method_dir, layer, ds, VARIANTS[v][1], pos);
            char *path = dk_path_join(c->o->results_dir, rel);
            dk_err err = {0};
            double best;
            cJSON *j = NULL;
            if (!rp_h5_has(f, grp)) goto next;
            if (rp_h5_attr(f, grp, "best_scale", &best, &err) != 0 || !(j = rp_json_file(path, &err))) {
                rp_view_failed(c, b, "a Patchscope row", &err);
                goto next;
            }
            cJSON *relv = relevance(c, method_dir, layer, ds, pos, VARIANTS[v][2], "patchscope");
            dk_strbuf_printf(b, "<tr><td>%lld</td><td>%s</td>", pos, VARIANTS[v][0]);
            char *tag = dk_sprintf("%s@best_scale", grp);
            rp_td_num(b, f->rel, tag, -1, best);
            free(tag);
            dk_strbuf_append(b, "<td class=\"toks\">");
            const cJSON *toks = cJSON_GetObjectItemCaseSensitive(j, "tokens_at_best_scale");
            const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "selected_tokens");
            int shown = 0;
            const cJSON *t;
            cJSON_ArrayForEach(t, toks) {
                if (!cJSON_IsString(t) || shown++ >= TOKENS_SHOWN) continue;
                bool selected = false;
                const cJSON *s;
                cJSON_ArrayForEach(s, sel) selected = selected || (cJSON_IsString(s) && strcmp(s->valuestring, t->valuestring) == 0);
                const char *label = relv ? label_of(relv, t->valuestring) : (selected ? "RELEVANT" : NULL);
                token_chip(b, t->valuestring, label, NULL, NULL, 0, 0);
            }
            if (!shown) dk_strbuf_append(b, "(no token survived)");
            dk_strbuf_append(b, "</td><td>");
            rp_src(b, f->rel, grp);
            dk_strbuf_append(b, "</td></tr>\n");
            cJSON_Delete(relv);
        next:
            cJSON_Delete(j);
            free(grp), free(rel), free(path);
        }
    }
    dk_strbuf_append(b, "</tbody></table>\n");
    dk_free_strings(pos_names, n_pos);
}

static void steering(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir, const char *layer, const char *ds) {
    char *g = dk_sprintf("/%s/%s/steering", layer, ds);
    size_t n_pos = 0;
    char **pos_names = rp_h5_children(f, g, &n_pos);
    if (!n_pos) rp_note(b, "Steering did not run for %s, %s.", layer, ds);
    for (size_t i = 0; i < n_pos; i++) {
        char *grp = dk_sprintf("%s/%s", g, pos_names[i]);
        char *p_s = dk_sprintf("%s/graded_strength", grp), *p_c = dk_sprintf("%s/graded_coherence", grp);
        char *rel = dk_sprintf("%s/%s/%s/steering/%s/generations.jsonl", method_dir, layer, ds, pos_names[i]);
        char *path = dk_path_join(c->o->results_dir, rel);
        dk_err err = {0};
        double thr;
        rp_array strength = {0}, coherence = {0};
        cJSON *gens = NULL;
        dk_strbuf_printf(b, "<h4>Steering with the mean difference at %s</h4>\n", pos_names[i]);
        if (rp_h5_attr(f, grp, "avg_threshold", &thr, &err) != 0 || rp_h5_read(f, p_s, &strength, &err) != 0 ||
            rp_h5_read(f, p_c, &coherence, &err) != 0 || !(gens = rp_jsonl_file(path, &err))) {
            rp_view_failed(c, b, "the steering view", &err);
        } else {
            char *grader = rp_h5_attr_str(f, grp, "grader", NULL);
            char *tag = dk_sprintf("%s@avg_threshold", grp);
            dk_strbuf_append(b, "<p>Steering strength used (the average coherence threshold): ");
            rp_num(b, f->rel, tag, -1, thr);
            dk_strbuf_append(b, " (grader: ");
            rp_esc(b, grader ? grader : "?");
            dk_strbuf_append(b, "; ");
            rp_src(b, f->rel, grp);
            dk_strbuf_append(b, ")</p>\n");
            if (grader && strcmp(grader, "offline") == 0)
                rp_note(b, "The offline grader's coherence is a heuristic (the unsteered model's loss on the text and "
                           "repetition), not an LLM's judgement.");
            free(tag), free(grader);
            if (strength.n == coherence.n && strength.n > 0) {
                /* sort by strength for the line */
                double *xs = dk_calloc((size_t)strength.n, sizeof *xs), *ys = dk_calloc((size_t)strength.n, sizeof *ys);
                int64_t *order = dk_calloc((size_t)strength.n, sizeof *order);
                for (int64_t a = 0; a < strength.n; a++) order[a] = a;
                for (int64_t a = 1; a < strength.n; a++)
                    for (int64_t z = a; z > 0 && strength.v[order[z - 1]] > strength.v[order[z]]; z--) {
                        int64_t t = order[z];
                        order[z] = order[z - 1], order[z - 1] = t;
                    }
                for (int64_t a = 0; a < strength.n; a++) xs[a] = strength.v[order[a]], ys[a] = coherence.v[order[a]];
                rp_series s = {.name = "coherence %", .x = xs, .y = ys, .n = (size_t)strength.n};
                rp_plot plot = {.title = "Coherence of steered text by strength (threshold search)",
                                .x_label = "steering strength", .y_label = "coherence %"};
                dk_strbuf_append(b, "<figure>");
                rp_svg_lines(b, &plot, &s, 1);
                dk_strbuf_append(b, "<figcaption>");
                rp_src(b, f->rel, p_c);
                dk_strbuf_append(b, "</figcaption></figure>\n");
                free(xs), free(ys), free(order);
            }
            dk_strbuf_append(b, "<table class=\"steer\"><thead><tr><th>prompt</th><th>samples</th></tr></thead><tbody>\n");
            const cJSON *rec;
            cJSON_ArrayForEach(rec, gens) {
                rp_prompt_row(b, rec);
                rp_samples(b, "steered", cJSON_GetObjectItemCaseSensitive(rec, "steered_samples"), SAMPLES_SHOWN);
                rp_samples(b, "unsteered", cJSON_GetObjectItemCaseSensitive(rec, "unsteered_samples"), SAMPLES_SHOWN);
                dk_strbuf_append(b, "</div></td></tr>\n");
            }
            dk_strbuf_append(b, "</tbody></table>\n<p class=\"from\">from ");
            rp_esc(b, rel);
            dk_strbuf_append(b, "</p>\n");
        }
        cJSON_Delete(gens);
        rp_array_free(&strength), rp_array_free(&coherence);
        free(grp), free(p_s), free(p_c), free(rel), free(path);
    }
    dk_free_strings(pos_names, n_pos);
    free(g);
}

void rp_section_adl(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    bool first = true, any = false;
    rp_note(b, "Token marks: a highlighted token is one the relevance grader labelled RELEVANT to the organism's "
               "data (token_relevance results; a dashed outline is UNKNOWN); in Patchscope rows without relevance "
               "results the highlight is the grader's selection. Small numbers are probabilities.");
    for (size_t li = 0; li < n_top; li++) {
        if (!dk_str_starts_with(top[li], "layer_")) continue;
        size_t n_ds = 0;
        char **dss = rp_h5_children(f, top[li], &n_ds);
        for (size_t di = 0; di < n_ds; di++) {
            char *p_pos = dk_sprintf("/%s/%s/positions", top[li], dss[di]);
            rp_array positions = {0};
            dk_err err = {0};
            dk_strbuf_printf(b, "<h3>%s, dataset ", top[li]);
            rp_esc(b, dss[di]);
            dk_strbuf_append(b, "</h3>\n");
            if (rp_h5_read(f, p_pos, &positions, &err) != 0) {
                rp_view_failed(c, b, "this dataset's views", &err);
                free(p_pos);
                continue;
            }
            any = true;
            dk_strbuf_append(b, "<h4>Logit lens of the mean difference (finetuned - base)</h4>\n");
            lens_table(c, b, f, method_dir, top[li], dss[di], "mean_diff", "difference", &positions, POSITIONS_SHOWN,
                       first);
            first = false;
            norm_plot(c, b, f, top[li], dss[di], &positions);
            dk_strbuf_append(b, "<details><summary>Logit lens of each model's own mean (base, finetuned)</summary>\n"
                                "<h4>base model mean</h4>\n");
            lens_table(c, b, f, method_dir, top[li], dss[di], "base_mean", "base", &positions, POSITIONS_SHOWN, false);
            dk_strbuf_append(b, "<h4>finetuned model mean</h4>\n");
            lens_table(c, b, f, method_dir, top[li], dss[di], "ft_mean", "ft", &positions, POSITIONS_SHOWN, false);
            dk_strbuf_append(b, "</details>\n<h4>Patchscope</h4>\n");
            patchscope(c, b, f, method_dir, top[li], dss[di]);
            steering(c, b, f, method_dir, top[li], dss[di]);
            rp_array_free(&positions);
            free(p_pos);
        }
        dk_free_strings(dss, n_ds);
    }
    if (!any) rp_problem(b, "%s has no layer_*/<dataset> group with positions: nothing to show", f->rel);
    dk_free_strings(top, n_top);
}
