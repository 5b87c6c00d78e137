/* report_activation_analysis.c — the activation-analysis section (docs/formats.md "Activation analysis
 * results"): per layer and dataset the statistics of the difference norms and cosine distances, their stored
 * histograms, and the sequences with the largest mean norm difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"

static const char *const METRICS[] = {"norm_diff", "cos_dist", "norm_base", "norm_finetuned"};
static const char *const ATTRS[] = {"mean", "std", "median", "min", "max"};
static const char *const HISTOGRAMS[][2] = {{"norm_diff", "||finetuned - base||"},
                                            {"cos_sim", "cosine similarity of base and finetuned"},
                                            {"relative_norm_diff", "||ft - base|| / (||base|| + ||ft||)"},
                                            {"norm_finetuned", "||finetuned||"}};

void rp_section_activation_analysis(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    (void)method_dir;
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    bool any = false;
    dk_strbuf ranking = {0};
    for (size_t li = 0; li < n_top; li++) {
        if (!dk_str_starts_with(top[li], "layer_")) continue;
        size_t n_ds = 0;
        char **dss = rp_h5_children(f, top[li], &n_ds);
        for (size_t di = 0; di < n_ds; di++) {
            char *stats = dk_sprintf("/%s/%s/statistics", top[li], dss[di]);
            if (strcmp(dss[di], "max_act") == 0 || !rp_h5_has(f, stats)) {
                free(stats);
                continue;
            }
            any = true;
            double mean;
            char *nd = dk_sprintf("%s/norm_diff", stats);
            if (rp_h5_attr(f, nd, "mean", &mean, NULL) == 0)
                dk_strbuf_printf(&ranking, "%s%s %s %.4g", ranking.len ? ", " : "", top[li], dss[di], mean);
            free(nd);
            dk_strbuf_printf(b, "<h3>%s, dataset ", top[li]);
            rp_esc(b, dss[di]);
            dk_strbuf_append(b, "</h3>\n");
            char *paths[4];
            for (int m = 0; m < 4; m++) paths[m] = dk_sprintf("%s/%s", stats, METRICS[m]);
            rp_stats_table(c, b, f, 4, (const char *const *)paths, METRICS, 5, ATTRS);
            for (int m = 0; m < 4; m++) free(paths[m]);
            for (size_t h = 0; h < sizeof HISTOGRAMS / sizeof *HISTOGRAMS; h++) {
                char *g = dk_sprintf("/%s/%s/histograms/%s", top[li], dss[di], HISTOGRAMS[h][0]);
                char *title = dk_sprintf("%s (%s, %s)", HISTOGRAMS[h][0], top[li], dss[di]);
                if (rp_h5_has(f, g)) rp_h5_histogram(c, b, f, g, title, HISTOGRAMS[h][1], false);
                free(g), free(title);
            }
            char *t = dk_sprintf("/%s/max_act/mean_norm_diff/%s", top[li], dss[di]);
            if (rp_h5_has(f, t)) rp_maxact(c, b, f, t, "Sequences with the largest mean ||finetuned - base||");
            free(t), free(stats);
        }
        dk_free_strings(dss, n_ds);
    }
    if (ranking.len) rp_headline(c, "Activation analysis: mean ||finetuned - base|| per token: %s", ranking.data);
    dk_strbuf_free(&ranking);
    if (!any) {
        rp_problem(b, "%s has no layer_*/<dataset>/statistics: nothing to show", f->rel);
        c->problems++;
    }
    dk_free_strings(top, n_top);
}
