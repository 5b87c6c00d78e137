/* report_kl.c — the KL section (docs/formats.md "kl"): per dataset the statistics of the per-token and
 * per-sequence KL, a histogram of the per-token KL, and the max-activating examples with per-token highlighting;
 * the datasets ranked by mean per-token KL go to the headline. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "report.h"
#include "svg.h"

enum { KL_BINS = 60 };

static const char *const STAT_ATTRS[] = {"mean", "std", "median", "min", "max", "percentile_25", "percentile_75"};

typedef struct ranked { char *name; double mean; } ranked;

static int by_mean_desc(const void *a, const void *b) {
    double x = ((const ranked *)a)->mean, y = ((const ranked *)b)->mean;
    return x < y ? 1 : x > y ? -1 : 0;
}

void rp_section_kl(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir) {
    (void)method_dir;
    size_t n_top = 0;
    char **top = rp_h5_children(f, "/", &n_top);
    ranked *rank = dk_calloc(n_top + 1, sizeof *rank);
    size_t n_rank = 0;
    for (size_t i = 0; i < n_top; i++) {
        char *p_kl = dk_sprintf("/%s/per_token_kl", top[i]);
        if (!rp_h5_has(f, p_kl)) {
            free(p_kl);
            continue;
        }
        dk_strbuf_append(b, "<h3>Dataset ");
        rp_esc(b, top[i]);
        dk_strbuf_append(b, "</h3>\n");
        char *p_tok = dk_sprintf("/%s/per_token_statistics", top[i]), *p_seq = dk_sprintf("/%s/mean_per_sample_statistics", top[i]);
        const char *paths[] = {p_tok, p_seq}, *names[] = {"per token", "per sequence (mean)"};
        rp_stats_table(c, b, f, 2, paths, names, sizeof STAT_ATTRS / sizeof *STAT_ATTRS, STAT_ATTRS);
        double mean;
        if (rp_h5_attr(f, p_tok, "mean", &mean, NULL) == 0) rank[n_rank++] = (ranked){dk_strdup(top[i]), mean};
        rp_array kl = {0};
        dk_err err = {0};
        if (rp_h5_read(f, p_kl, &kl, &err) != 0) {
            rp_view_failed(c, b, "the per-token KL histogram", &err);
        } else {
            char *title = dk_sprintf("Per-token KL(finetuned || base), %s", top[i]);
            rp_values_histogram(b, f, p_kl, &kl, title, "KL (nats)", "tokens", true, KL_BINS);
            free(title);
        }
        rp_array_free(&kl);
        char *t1 = dk_sprintf("/max_act/per_token/%s", top[i]), *t2 = dk_sprintf("/max_act/mean_per_sample/%s", top[i]);
        if (rp_h5_has(f, t1)) rp_maxact(c, b, f, t1, "Sequences with the largest token KL");
        if (rp_h5_has(f, t2)) rp_maxact(c, b, f, t2, "Sequences with the largest mean KL");
        free(t1), free(t2), free(p_tok), free(p_seq), free(p_kl);
    }
    if (n_rank) {
        qsort(rank, n_rank, sizeof *rank, by_mean_desc);
        dk_strbuf line = {0};
        for (size_t i = 0; i < n_rank; i++) dk_strbuf_printf(&line, "%s%s %.4g", i ? " > " : "", rank[i].name, rank[i].mean);
        rp_headline(c, "KL: mean per-token KL(finetuned || base) by dataset: %s nats", line.data);
        dk_strbuf_free(&line);
    } else {
        rp_problem(b, "%s has no <dataset>/per_token_kl: nothing to show", f->rel);
        c->problems++;
    }
    for (size_t i = 0; i < n_rank; i++) free(rank[i].name);
    free(rank);
    dk_free_strings(top, n_top);
}
