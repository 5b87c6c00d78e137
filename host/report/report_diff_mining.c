/* report_diff_mining.c — the diff-mining section (docs/formats.md "Diff mining results"): per dataset each
 * ordering's first tokens (top-k occurrence rate, fraction of positive differences, NMF topics) with their values;
 * the most often top-k tokens go to the headline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"

enum { TOKENS_SHOWN = 15 };

static void ordering_table(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *g, const char *title, bool headline) {
    char *p_str = dk_sprintf("%s/token_str", g), *p_val = dk_sprintf("%s/ordering_value", g);
    char *p_avg = dk_sprintf("%s/avg_logit_diff", g), *p_pos = dk_sprintf("%s/count_positive", g);
    dk_err err = {0};
    int64_t n = 0;
    char **toks = rp_h5_strings(f, p_str, &n, &err);
    rp_array val = {0}, avg = {0}, pos = {0};
    if (!toks || rp_h5_read(f, p_val, &val, &err) || rp_h5_read(f, p_avg, &avg, &err) ||
        rp_h5_read(f, p_pos, &pos, &err) || val.n != n || avg.n != n || pos.n != n) {
        if (!err.msg[0]) dk_err_set(&err, 1, "%s:%s: its columns differ in length", f->rel, g);
        rp_view_failed(c, b, title, &err);
    } else {
        char *label = rp_h5_attr_str(f, g, "display_label", NULL);
        dk_strbuf_append(b, "<h4>");
        rp_esc(b, title);
        if (label) {
            dk_strbuf_append(b, ": ");
            rp_esc(b, label);
        }
        dk_strbuf_append(b, "</h4>\n<table class=\"ordering\"><thead><tr><th>#</th><th>token</th><th>ordering value</th>"
                            "<th>mean logit difference</th><th>positions with a positive difference</th></tr></thead>"
                            "<tbody>\n");
        dk_strbuf line = {0};
        for (int64_t i = 0; i < n && i < TOKENS_SHOWN; i++) {
            dk_strbuf_printf(b, "<tr><td>%lld</td><td class=\"toks\"><span>", (long long)i + 1);
            rp_esc(b, toks[i]);
            dk_strbuf_append(b, "</span></td>");
            rp_td_num(b, f->rel, p_val, i, val.v[i]);
            rp_td_num(b, f->rel, p_avg, i, avg.v[i]);
            rp_td_num(b, f->rel, p_pos, i, pos.v[i]);
            dk_strbuf_append(b, "</tr>\n");
            if (i < 8) dk_strbuf_printf(&line, "%s'%s'", i ? ", " : "", toks[i]);
        }
        dk_strbuf_append(b, "</tbody></table>\n<p class=\"from\">");
        rp_src(b, f->rel, g);
        dk_strbuf_append(b, "</p>\n");
        if (headline && line.len)
            rp_headline(c, "Diff mining: tokens most often among the finetune's largest logit increases: %s", line.data);
        dk_strbuf_free(&line);
        free(label);
    }
    for (int64_t i = 0; toks && i < n; i++) free(toks[i]);
    free(toks);
    rp_array_free(&val), rp_array_free(&avg), rp_array_free(&pos);
    free(p_str), free(p_val), free(p_avg), free(p_pos);
}

void rp_section_diff_mining(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    (void)method_dir;
    static const char *const TYPES[][2] = {{"top_k_occurring", "How often a token is among the top-k increases (%)"},
                                           {"fraction_positive_diff", "Fraction of positions where the finetune raised it"},
                                           {"nmf", "NMF topic"}};
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    bool any = false, headline = true;
    for (size_t d = 0; d < n_top; d++) {
        char *og = dk_sprintf("/%s/orderings", top[d]);
        if (!rp_h5_has(f, og)) {
            free(og);
            continue;
        }
        any = true;
        dk_strbuf_append(b, "<h3>Dataset ");
        rp_esc(b, top[d]);
        dk_strbuf_append(b, "</h3>\n");
        for (size_t t = 0; t < sizeof TYPES / sizeof *TYPES; t++) {
            char *tg = dk_sprintf("%s/%s", og, TYPES[t][0]);
            size_t n_ids = 0;
            char **ids = rp_h5_children(f, tg, &n_ids);
            if (n_ids > 1) dk_strbuf_append(b, "<div class=\"side\">");
            for (size_t i = 0; i < n_ids; i++) {
                char *g = dk_sprintf("%s/%s", tg, ids[i]);
                char *title = n_ids > 1 ? dk_sprintf("%s %s", TYPES[t][1], ids[i]) : dk_strdup(TYPES[t][1]);
                if (n_ids > 1) dk_strbuf_append(b, "<div>");
                ordering_table(c, b, f, g, title, headline && t == 0);
                if (n_ids > 1) dk_strbuf_append(b, "</div>");
                free(g), free(title);
            }
            if (n_ids > 1) dk_strbuf_append(b, "</div>\n");
            if (t == 0 && n_ids) headline = false;
            dk_free_strings(ids, n_ids);
            free(tg);
        }
        free(og);
    }
    if (!any) {
        rp_problem(b, "%s has no <dataset>/orderings: nothing to show", f->rel);
        c->problems++;
    }
    dk_free_strings(top, n_top);
}
