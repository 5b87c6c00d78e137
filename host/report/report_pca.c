/* report_pca.c — the PCA section (docs/formats.md "PCA results"): per layer, target and dataset selection the
 * explained variance ratio of the first components (bars) with the cumulative ratio (line), and the sequences
 * that project most positively and negatively on component 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"
#include "svg.h"

enum { COMPONENTS_SHOWN = 20 };

static void one_fit(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *g) {
    char *p_ratio = dk_sprintf("%s/explained_variance_ratio", g), *p_cum = dk_sprintf("%s/analysis/cumulative_variance_ratio", g);
    rp_array ratio = {0}, cum = {0};
    dk_err err = {0};
    dk_strbuf_append(b, "<h3>");
    rp_esc(b, g + 1);
    dk_strbuf_append(b, "</h3>\n");
    if (rp_h5_read(f, p_ratio, &ratio, &err) != 0) {
        rp_view_failed(c, b, "the explained variance", &err);
    } else {
        size_t n = ratio.n < COMPONENTS_SHOWN ? (size_t)ratio.n : COMPONENTS_SHOWN;
        char labels_buf[COMPONENTS_SHOWN][8];
        const char *labels[COMPONENTS_SHOWN];
        for (size_t i = 0; i < n; i++) snprintf(labels_buf[i], sizeof labels_buf[i], "%zu", i), labels[i] = labels_buf[i];
        rp_plot p = {.title = "Explained variance ratio of the first components", .x_label = "component",
                     .y_label = "explained variance ratio"};
        dk_strbuf_append(b, "<figure>");
        rp_svg_bars(b, &p, ratio.v, labels, n);
        dk_strbuf_append(b, "<figcaption>");
        rp_src(b, f->rel, p_ratio);
        dk_strbuf_append(b, "</figcaption></figure>\n");
        if (rp_h5_read(f, p_cum, &cum, &err) == 0) {
            rp_series s = {.name = "cumulative", .y = cum.v, .n = (size_t)cum.n};
            rp_plot pc = {.title = "Cumulative explained variance", .x_label = "components", .y_label = "ratio"};
            dk_strbuf_append(b, "<figure>");
            rp_svg_lines(b, &pc, &s, 1);
            dk_strbuf_append(b, "<figcaption>");
            rp_src(b, f->rel, p_cum);
            dk_strbuf_append(b, "</figcaption></figure>\n");
        }
        dk_strbuf_append(b, "<table class=\"stats\"><thead><tr><th>component</th><th>explained variance ratio</th>"
                            "</tr></thead><tbody>\n");
        for (size_t i = 0; i < n && i < 5; i++) {
            dk_strbuf_printf(b, "<tr><td>%zu</td>", i);
            rp_td_num(b, f->rel, p_ratio, (int64_t)i, ratio.v[i]);
            dk_strbuf_append(b, "</tr>\n");
        }
        dk_strbuf_append(b, "</tbody></table>\n");
        if (ratio.n > 0) rp_headline(c, "PCA (%s): component 0 explains %.3g of the difference's variance", g + 1, ratio.v[0]);
    }
    /* max-activating examples of component 0, per dataset and sign */
    static const char *const SIGNS[] = {"positive", "negative"};
    for (int s = 0; s < 2; s++) {
        char *mg = dk_sprintf("%s/max_act/%s", g, SIGNS[s]);
        size_t n_ds = 0;
        char **dss = rp_h5_children(f, mg, &n_ds);
        for (size_t d = 0; d < n_ds; d++) {
            char *t = dk_sprintf("%s/%s/component_0", mg, dss[d]);
            char *title = dk_sprintf("Component 0, %s projections, dataset %s", SIGNS[s], dss[d]);
            if (rp_h5_has(f, t)) rp_maxact(c, b, f, t, title);
            free(t), free(title);
        }
        dk_free_strings(dss, n_ds);
        free(mg);
    }
    rp_array_free(&ratio), rp_array_free(&cum);
    free(p_ratio), free(p_cum);
}

void rp_section_pca(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    (void)method_dir;
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    bool any = false;
    for (size_t li = 0; li < n_top; li++) {
        if (!dk_str_starts_with(top[li], "layer_")) continue;
        char *lg = dk_sprintf("/%s", top[li]);
        size_t n_t = 0;
        char **targets = rp_h5_children(f, lg, &n_t);
        for (size_t t = 0; t < n_t; t++) {
            char *tg = dk_sprintf("%s/%s", lg, targets[t]);
            size_t n_tag = 0;
            char **tags = rp_h5_children(f, tg, &n_tag);
            for (size_t k = 0; k < n_tag; k++) {
                char *g = dk_sprintf("%s/%s", tg, tags[k]);
                char *p = dk_sprintf("%s/explained_variance_ratio", g);
                if (rp_h5_has(f, p)) one_fit(c, b, f, g), any = true;
                free(p), free(g);
            }
            dk_free_strings(tags, n_tag);
            free(tg);
        }
        dk_free_strings(targets, n_t);
        free(lg);
    }
    if (!any) {
        rp_problem(b, "%s has no layer_*/<target>/<selection>/explained_variance_ratio: nothing to show", f->rel);
        c->problems++;
    }
    dk_free_strings(top, n_top);
}
