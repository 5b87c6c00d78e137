/* report_views.c — the views several sections share: the headline, failed views, token strings, max-activating
 * tables, statistics tables and histograms read from a results file (report.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"
#include "svg.h"
#include "tokenizer/tokenizer.h"

enum { WINDOW = 64 };  /* tokens shown per max-activating example */

void rp_headline(rp_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = dk_vsprintf(fmt, ap);
    va_end(ap);
    dk_strbuf_append(&c->headline_html, "<li>");
    rp_esc(&c->headline_html, text);
    dk_strbuf_append(&c->headline_html, "</li>\n");
    if (c->headline_text.len) dk_strbuf_append(&c->headline_text, "; ");
    dk_strbuf_append(&c->headline_text, text);
    free(text);
}

void rp_view_failed(rp_ctx *c, dk_strbuf *b, const char *view, const dk_err *err) {
    rp_problem(b, "%s is not shown: %s", view, err->msg);
    c->problems++;
}

char *rp_token_text(const rp_ctx *c, int32_t id) {
    if (c->o->tok && id >= 0 && id < dk_tokenizer_vocab_size(c->o->tok)) {
        char *s = dk_tokenizer_decode(c->o->tok, &id, 1, false, NULL, NULL);
        if (s) return s;
    }
    return dk_sprintf("#%d", (int)id);
}

int rp_maxact(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *group, const char *title) {
    dk_err err = {0};
    rp_array score = {0}, offsets = {0}, tokens = {0}, values = {0}, value_offsets = {0}, positions = {0};
    int64_t n_text = 0;
    char **text = NULL;
    char *p_score = dk_sprintf("%s/score", group), *p_off = dk_sprintf("%s/token_offsets", group);
    char *p_tok = dk_sprintf("%s/tokens", group), *p_val = dk_sprintf("%s/values", group);
    char *p_voff = dk_sprintf("%s/value_offsets", group), *p_pos = dk_sprintf("%s/positions", group);
    char *p_text = dk_sprintf("%s/text", group);
    bool sparse = rp_h5_has(f, p_voff);
    int rc = -1;
    if (rp_h5_read(f, p_score, &score, &err) || rp_h5_read(f, p_off, &offsets, &err) ||
        rp_h5_read(f, p_tok, &tokens, &err) || rp_h5_read(f, p_val, &values, &err) ||
        (sparse && (rp_h5_read(f, p_voff, &value_offsets, &err) || rp_h5_read(f, p_pos, &positions, &err))) ||
        !(text = rp_h5_strings(f, p_text, &n_text, &err))) {
        rp_view_failed(c, b, title ? title : group, &err);
        goto done;
    }
    if (offsets.n != score.n + 1 || n_text != score.n || (sparse && value_offsets.n != score.n + 1) ||
        (!sparse && values.n != tokens.n)) {
        dk_err_set(&err, 1, "%s:%s: the sizes of score, token_offsets, text and values disagree", f->rel, group);
        rp_view_failed(c, b, title ? title : group, &err);
        goto done;
    }
    int64_t shown = score.n < c->o->max_examples ? score.n : c->o->max_examples;
    if (title) {
        dk_strbuf_append(b, "<h4>");
        rp_esc(b, title);
        dk_strbuf_append(b, "</h4>\n");
    }
    dk_strbuf_printf(b, "<p class=\"from\">the %lld best of %lld examples, from ", (long long)shown, (long long)score.n);
    rp_src(b, f->rel, group);
    dk_strbuf_append(b, "; each token is coloured by its value (red positive, blue negative, darker = larger; hover "
                        "for the value)</p>\n<table class=\"maxact\"><thead><tr><th>#</th><th>score</th><th>tokens"
                        "</th></tr></thead><tbody>\n");
    for (int64_t i = 0; i < shown; i++) {
        int64_t t0 = (int64_t)offsets.v[i], t1 = (int64_t)offsets.v[i + 1];
        if (t0 < 0 || t1 < t0 || t1 > tokens.n) break;
        size_t len = (size_t)(t1 - t0);
        char **toks = dk_calloc(len + 1, sizeof *toks);
        int32_t *ids = dk_calloc(len + 1, sizeof *ids);
        float *vals = dk_calloc(len + 1, sizeof *vals);
        double max_abs = 0;
        for (size_t t = 0; t < len; t++) {
            ids[t] = (int32_t)tokens.v[t0 + (int64_t)t];
            toks[t] = rp_token_text(c, ids[t]);
            if (!sparse) vals[t] = (float)values.v[t0 + (int64_t)t];
        }
        if (sparse)
            for (int64_t k = (int64_t)value_offsets.v[i]; k < (int64_t)value_offsets.v[i + 1] && k < values.n; k++) {
                int64_t pos = (int64_t)positions.v[k];
                if (pos >= 0 && pos < (int64_t)len) vals[pos] = (float)values.v[k];
            }
        size_t peak = 0;
        for (size_t t = 0; t < len; t++)
            if (isfinite(vals[t]) && fabs(vals[t]) > max_abs) max_abs = fabs(vals[t]), peak = t;
        /* a window around the largest value: long sequences would make the page heavy */
        size_t w0 = peak > WINDOW / 2 ? peak - WINDOW / 2 : 0, w1 = w0 + WINDOW < len ? w0 + WINDOW : len;
        dk_strbuf_printf(b, "<tr><td>%lld</td>", (long long)i + 1);
        rp_td_num(b, f->rel, p_score, i, score.v[i]);
        dk_strbuf_append(b, "<td>");
        if (w0 > 0 || w1 < len)
            dk_strbuf_printf(b, "<span class=\"note\">tokens %zu-%zu of %zu, around the largest value</span>", w0, w1 - 1, len);
        rp_token_strip(b, w1 - w0, (const char *const *)toks + w0, ids + w0, vals + w0, max_abs);
        dk_strbuf_append(b, "</td></tr>\n");
        for (size_t t = 0; t < len; t++) free(toks[t]);
        free(toks), free(ids), free(vals);
    }
    dk_strbuf_append(b, "</tbody></table>\n");
    rc = 0;
done:
    for (int64_t i = 0; text && i < n_text; i++) free(text[i]);
    free(text);
    rp_array_free(&score), rp_array_free(&offsets), rp_array_free(&tokens), rp_array_free(&values);
    rp_array_free(&value_offsets), rp_array_free(&positions);
    free(p_score), free(p_off), free(p_tok), free(p_val), free(p_voff), free(p_pos), free(p_text);
    return rc;
}

void rp_stats_table(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, size_t n, const char *const *paths,
                    const char *const *names, size_t n_attrs, const char *const *attrs) {
    dk_strbuf_append(b, "<table class=\"stats\"><thead><tr><th></th>");
    for (size_t a = 0; a < n_attrs; a++) {
        dk_strbuf_append(b, "<th>");
        rp_esc(b, attrs[a]);
        dk_strbuf_append(b, "</th>");
    }
    dk_strbuf_append(b, "<th>source</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        dk_strbuf_append(b, "<tr><th>");
        rp_esc(b, names[i]);
        dk_strbuf_append(b, "</th>");
        for (size_t a = 0; a < n_attrs; a++) {
            double v;
            dk_err err = {0};
            if (rp_h5_attr(f, paths[i], attrs[a], &v, &err) == 0) {
                char *tagged = dk_sprintf("%s@%s", paths[i], attrs[a]);
                rp_td_num(b, f->rel, tagged, -1, v);
                free(tagged);
            } else {
                dk_strbuf_append(b, "<td class=\"problem\" title=\"");
                rp_esc(b, err.msg);
                dk_strbuf_append(b, "\">not stored</td>");
            }
        }
        dk_strbuf_append(b, "<td>");
        rp_src(b, f->rel, paths[i]);
        dk_strbuf_append(b, "</td></tr>\n");
    }
    (void)c;
    dk_strbuf_append(b, "</tbody></table>\n");
}

int rp_h5_histogram(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *group, const char *title, const char *x_label,
                    bool log_y) {
    dk_err err = {0};
    rp_array counts = {0}, edges = {0};
    char *p_counts = dk_sprintf("%s/counts", group), *p_edges = dk_sprintf("%s/edges", group);
    int rc = -1;
    if (rp_h5_read(f, p_counts, &counts, &err) || rp_h5_read(f, p_edges, &edges, &err)) {
        rp_view_failed(c, b, title, &err);
    } else if (edges.n != counts.n + 1) {
        dk_err_set(&err, 1, "%s:%s: %lld edges for %lld counts (n + 1 expected)", f->rel, group, (long long)edges.n,
                   (long long)counts.n);
        rp_view_failed(c, b, title, &err);
    } else {
        dk_strbuf_append(b, "<figure>");
        rp_plot p = {.title = title, .x_label = x_label, .y_label = "count", .log_y = log_y};
        rp_svg_histogram(b, &p, edges.v, counts.v, (size_t)counts.n);
        dk_strbuf_append(b, "<figcaption>");
        rp_src(b, f->rel, p_counts);
        dk_strbuf_append(b, "</figcaption></figure>\n");
        rc = 0;
    }
    rp_array_free(&counts), rp_array_free(&edges);
    free(p_counts), free(p_edges);
    return rc;
}

void rp_values_histogram(dk_strbuf *b, const rp_h5 *f, const char *path, const rp_array *a, const char *title,
                         const char *x_label, const char *y_label, bool log_y, int bins) {
    double lo = INFINITY, hi = -INFINITY;
    int64_t finite = 0;
    for (int64_t i = 0; i < a->n; i++)
        if (isfinite(a->v[i])) lo = fmin(lo, a->v[i]), hi = fmax(hi, a->v[i]), finite++;
    if (!finite) return;
    if (!(lo < hi)) hi = lo + 1;
    double *edges = dk_calloc((size_t)bins + 1, sizeof *edges), *counts = dk_calloc((size_t)bins, sizeof *counts);
    for (int i = 0; i <= bins; i++) edges[i] = lo + (hi - lo) * i / bins;
    for (int64_t i = 0; i < a->n; i++) {
        if (!isfinite(a->v[i])) continue;
        int bin = (int)((a->v[i] - lo) / (hi - lo) * bins);
        counts[bin < 0 ? 0 : bin >= bins ? bins - 1 : bin] += 1;
    }
    rp_plot p = {.title = title, .x_label = x_label, .y_label = y_label, .log_y = log_y};
    dk_strbuf_append(b, "<figure>");
    rp_svg_histogram(b, &p, edges, counts, (size_t)bins);
    dk_strbuf_append(b, "<figcaption>");
    rp_src(b, f->rel, path);
    dk_strbuf_printf(b, " (%lld finite of %lld values, %d bins)</figcaption></figure>\n", (long long)finite,
                     (long long)a->n, bins);
    free(edges), free(counts);
}

void rp_samples(dk_strbuf *b, const char *title, const cJSON *samples, int max) {
    dk_strbuf_append(b, "<div><b>");
    rp_esc(b, title);
    dk_strbuf_append(b, "</b>");
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, samples) {
        if (!cJSON_IsString(s) || i++ >= max) continue;
        dk_strbuf_append(b, "<pre>");
        rp_esc(b, s->valuestring);
        dk_strbuf_append(b, "</pre>");
    }
    dk_strbuf_append(b, "</div>");
}

void rp_prompt_row(dk_strbuf *b, const cJSON *record) {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(record, "prompt");
    dk_strbuf_append(b, "<tr><td>");
    rp_esc(b, cJSON_IsString(prompt) ? prompt->valuestring : "?");
    dk_strbuf_append(b, "</td><td><div class=\"side\">");
}
