/* dm_orderings.h — diff mining's token orderings (the seed's token_ordering.py) from a dataset's merged
 * statistics, and their outputs: the seed's JSON files, the results.h5 groups, the agent's token groups.
 *
 *   top_k_occurring         rate_v = (count in the positive top-k / #positions) · 100, in float32 as torch
 *                           computes it; the num_tokens highest rates ("global")
 *   fraction_positive_diff  #positions with diff_v > 0 / #positions, float32; the num_tokens highest ("global")
 *   nmf                     V (positions × tokens that ever were in a positive top-k) holds the positive top-k
 *                           values (or 1s), factorised V ≈ H Wᵀ with `num_topics` topics (nmf.h); topic t lists
 *                           the num_tokens tokens of highest W[:, t] (weights < 1e-6 left out), with the seed's
 *                           topic metrics (mass, prevalence, concentration) and the topics' cosine similarities
 * Each entry: token_id, token_str (tokenizer.decode([id])), ordering_value, avg_logit_diff (Σ diff / #positions in
 * float32), count_positive, count_negative (top-k counts; for fraction_positive_diff the sign counts).
 * Ties in a value are ordered by lower token id (torch.topk leaves their order unspecified). */
#ifndef DM_ORDERINGS_H
#define DM_ORDERINGS_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "methods/dm_stats.h"
#include "methods/nmf.h"
#include "methods/results.h"
#include "tokenizer/tokenizer.h"

typedef enum { DM_TOP_K_OCCURRING, DM_FRACTION_POSITIVE_DIFF, DM_NMF } dm_ordering_type;

/* The merged statistics of one dataset (rank 0). */
typedef struct dm_totals {
    int64_t V, positions, samples;
    const int64_t *topk_pos, *topk_neg, *count_pos;   /* (V) */
    const double *sum;                                /* (V) Σ diff */
} dm_totals;

typedef struct dm_entry {
    int32_t token_id;
    double value;            /* ordering_value */
    float avg;               /* avg_logit_diff */
    int64_t count_positive, count_negative;
    int32_t col;             /* nmf_col_idx, −1 outside nmf */
} dm_entry;

typedef struct dm_ordering {
    char id[32], label[64];
    dm_entry *e;
    int64_t n;
    bool topic;
    double mass, prevalence, concentration;  /* nmf topics */
} dm_ordering;

typedef struct dm_type_result {
    dm_ordering_type type;
    const char *type_id;     /* "top_k_occurring", "fraction_positive_diff", "nmf" */
    char dir[320];           /* its folder: the seed's _ordering_dir_name */
    dm_ordering *o;
    int n_o;
    /* nmf */
    dk_nmf_fit fit;
    double *cosine;          /* (rank, rank) */
    int64_t nnz;
    double error;            /* ‖V − HWᵀ‖_F */
    const int32_t *col2tok;  /* (fit.cols), the builder's */
} dm_type_result;

typedef struct dm_nmf_settings {
    int num_topics;
    uint64_t seed;
    int threads;
    const char *mode;        /* for the metadata */
} dm_nmf_settings;

void dm_order_simple(const dm_totals *t, dm_ordering_type type, int64_t num_tokens, dm_type_result *out);
/* 1 = fitted, 0 = no NMF data (no positive top-k value: the seed writes nothing for nmf), -1 = error. */
int dm_order_nmf(const dm_totals *t, const dm_nmf_builder *b, const dm_nmf_settings *s, int64_t num_tokens,
                 dm_type_result *out, dk_err *err);
void dm_type_result_free(dm_type_result *r);

/* The seed's files for one dataset: <dir>/metadata.json, <dir>/<dataset>/orderings.json, <dir>/<dataset>/<id>.json;
 * and the same in results.h5 under <dataset>/orderings/<type_id>/. */
void dm_write_orderings(dk_results *res, const dk_tokenizer *tok, const char *dataset, const dm_type_result *r,
                        const dm_nmf_settings *s);
/* The overview's token groups of one ordering type: top_k_tokens split across its orderings, each token as
 * {"token_str", "ordering_value" rounded to 2 decimals} (the seed's agent_tools._load_token_groups). */
cJSON *dm_token_groups(const dm_type_result *r, const dk_tokenizer *tok, int64_t top_k_tokens);
/* tokenizer.decode([id]) ("" for an id the tokenizer does not have); malloc'ed. */
char *dm_token_str(const dk_tokenizer *tok, int32_t id);

#endif
