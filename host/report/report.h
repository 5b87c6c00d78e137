/* report.h — the static HTML report of one (model, organism): ${diffing.results_dir}/report/index.html, built
 * only from the methods' results files (results_read.h), viewable offline (no network: a Content-Security-Policy
 * forbids every load; the CSS and the self-check script are ours and inline).
 *
 * One section per method (one file each, report_<method>.c); a method with no results gets a line saying so
 * and the command that makes them; partial or corrupt results are named with the reason and never shown. A
 * headline at the top collects what the sections found (their rp_headline calls). The page runs a small
 * self-check on load (every section rendered, tables have rows, plots have marks, no load was blocked) and
 * writes its verdict as JSON into <pre id="selfcheck">, which tests/report/report_browser.sh reads from the DOM
 * headless Chromium dumps.
 *
 *     rp_options o = {.results_dir = ..., .model = "demo", .organism = "demo_glacier_honey", ...};
 *     rp_outcome out;
 *     if (rp_write_report(&o, &out, &err) != 0) ...      // out.path, out.headline */
#ifndef DK_REPORT_REPORT_H
#define DK_REPORT_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/strutil.h"
#include "results_read.h"

typedef struct dk_tokenizer dk_tokenizer;

typedef struct rp_options {
    const char *results_dir;     /* ${diffing.results_dir} */
    const char *adl_results_dir; /* where activation_difference_lens/ is (the variant's folder), or NULL = results_dir */
    const char *model, *organism, *variant;
    const char *organism_description;  /* organism.description, shown for the reader (not used by the headline) */
    const char *command_suffix;        /* extra arguments repeated in the "how to make it" commands, or NULL */
    dk_tokenizer *tok;                 /* the model's tokenizer for per-token views, or NULL (ids shown) */
    const char *tok_why;               /* why tok is NULL */
    int max_examples;                  /* max-activating examples shown per table */
} rp_options;

typedef struct rp_outcome {
    char *path;       /* the report's index.html */
    char *headline;   /* one line, plain text */
    int sections_shown, sections_missing, sections_bad;
} rp_outcome;

int rp_write_report(const rp_options *o, rp_outcome *out, dk_err *err);
void rp_outcome_free(rp_outcome *out);

/* ---- shared by the section files ---- */

typedef struct rp_ctx {
    const rp_options *o;
    dk_strbuf headline_html;   /* <li> items */
    dk_strbuf headline_text;   /* "; "-joined plain text */
    int problems;              /* views skipped in this section because a dataset could not be read */
} rp_ctx;

/* Adds one finding to the headline (plain text; escaped for the page). */
void rp_headline(rp_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A view that could not be shown: prints the reason (err's message) and counts it. */
void rp_view_failed(rp_ctx *c, dk_strbuf *b, const char *view, const dk_err *err);
/* A token's display string (the tokenizer's piece decoded, or "#id"); malloc'ed. */
char *rp_token_text(const rp_ctx *c, int32_t id);
/* A max-activating table (docs/formats.md "Max-activating examples") at group: its best examples with the score
 * and a per-token strip coloured by value. title may be NULL. Returns 0, or -1 after rp_view_failed. */
int rp_maxact(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *group, const char *title);
/* A statistics table from the numeric attributes of the objects at paths[i] (row names[i]); columns = attrs. */
void rp_stats_table(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, size_t n, const char *const *paths,
                    const char *const *names, size_t n_attrs, const char *const *attrs);
/* A histogram from <group>/counts and <group>/edges. */
int rp_h5_histogram(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *group, const char *title, const char *x_label,
                    bool log_y);

/* A histogram of the finite values of a (read from file:path) in `bins` equal bins over their range. */
void rp_values_histogram(dk_strbuf *b, const rp_h5 *f, const char *path, const rp_array *a, const char *title,
                         const char *x_label, const char *y_label, bool log_y, int bins);
/* A column of generated samples (the first `max` strings of a JSON list) under a bold title, for side-by-side views. */
void rp_samples(dk_strbuf *b, const char *title, const cJSON *samples, int max);
/* Opens the table row of one generations.jsonl record: its prompt, then the side-by-side cell the caller fills with
 * rp_samples and closes with "</div></td></tr>". */
void rp_prompt_row(dk_strbuf *b, const cJSON *record);

/* The sections. Each writes its body for complete results (the file is open). */
void rp_section_adl(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_kl(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_activation_analysis(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_pca(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_dictionary(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_diff_mining(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
void rp_section_amplification(rp_ctx *c, dk_strbuf *b, const rp_h5 *f, const char *method_dir);
/* The agent's section (agent_summary.json and the run folders): RP_MISSING when there is no summary (nothing
 * written), RP_CORRUPT when it cannot be read (named in b), RP_OK otherwise. */
rp_state rp_section_agent(rp_ctx *c, dk_strbuf *b);

#endif
