/* dm_stats.h — what diff mining gathers from each batch of logit differences (the seed's
 * core_analysis.compute_stats_from_logits and NmfOrderingType.collect_batch), kept so that the totals do not
 * depend on how batches are shared among ranks:
 *
 *   per token v   Σ diff (in fixed point: exact, so summing per-rank totals in any order gives the same bits),
 *                 #positions with diff > 0, #positions where v is among the top_k largest diffs, and among the
 *                 top_k smallest (dk_cpu_topk: ties to the lower id; torch leaves them unspecified);
 *   the NMF part  the batch's rows (positions, sample-major) of the top_k largest diffs: the token ids in order
 *                 of first appearance scanning k-major (for k: for row:), which is how the seed numbers the
 *                 NMF's columns, and per row the entries the seed keeps in its matrix (value > 0 after relu;
 *                 every entry with value 1 in binary_occurrence mode).
 * dm_nmf_builder joins the parts in batch order into the seed's sparse matrix (rows = positions in order,
 * columns = tokens in order of first appearance). */
#ifndef DM_STATS_H
#define DM_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "methods/nmf.h"

typedef struct dm_accum {
    int64_t V;                      /* tokens compared */
    int64_t *topk_pos, *topk_neg;   /* (V) */
    int64_t *count_pos;             /* (V) */
    int64_t *sum_hi, *sum_lo;       /* (V) Σ diff = hi + lo · 2^-32, each batch's double sum rounded to 2^-32 */
    int64_t positions;
} dm_accum;

typedef struct dm_nmf_part {
    int64_t rows;
    int32_t *first;       /* (n_first) distinct ids in order of first appearance */
    int64_t n_first;
    int32_t *row_nnz;     /* (rows) */
    int32_t *ids;         /* (nnz) row by row, in top-k order */
    float *vals;          /* (nnz) */
    int64_t nnz;
} dm_nmf_part;

void dm_accum_init(dm_accum *a, int64_t V);
void dm_accum_free(dm_accum *a);
/* Σ diff of token v. */
double dm_accum_sum(const dm_accum *a, int64_t v);

/* One batch: diff (rows, V), rows = analysed positions in order. Fills part (allocated here). */
void dm_collect_batch(dm_accum *a, const float *diff, int64_t rows, int64_t top_k, bool binary, dm_nmf_part *part);
void dm_nmf_part_free(dm_nmf_part *p);

/* A part as two flat arrays (for MPI): ints = rows, n_first, first[], row_nnz[], ids[]; floats = vals[]. */
void dm_nmf_part_pack(const dm_nmf_part *p, int32_t **ints, int64_t *n_ints, float **floats, int64_t *n_floats);
/* The inverse; the arrays stay the caller's (the part points into them). */
void dm_nmf_part_view(const int32_t *ints, const float *floats, dm_nmf_part *p);

typedef struct dm_nmf_builder {
    int64_t V;
    int32_t *tok2col;     /* (V) column of a token, −1 before it appears */
    int32_t *col2tok;     /* (cols) */
    dk_nmf_csr m;         /* grows part by part */
    int64_t cap_nnz;
} dm_nmf_builder;

void dm_nmf_builder_init(dm_nmf_builder *b, int64_t V);
/* Appends the next batch's part (parts must come in batch order). */
void dm_nmf_builder_add(dm_nmf_builder *b, const dm_nmf_part *p);
void dm_nmf_builder_free(dm_nmf_builder *b);

#endif
