/* dict_data.h — the rows the dictionary methods (diff_pca, diff_sae, diff_crosscoder) learn from: activation
 * rows of the base and finetuned stores of the configured datasets at one layer, as the seed's training datasets
 * build them (seed_spec §3.3, src/diffing/utils/dictionary/training.py):
 *
 *   target       difference_ftb (finetuned − base), difference_bft (base − finetuned), base, ft, or stacked
 *                [base, ft] (the crosscoder's paired rows, width 2·d). Differences are rounded to bf16, as the
 *                seed's DifferenceCache subtracts two bf16 rows in bf16.
 *   skip         the first n tokens of every sequence are left out (ignore_first_n_tokens_per_sample_during_
 *                training); the rows left are a dataset's "kept" rows.
 *   n_use        each dataset contributes a prefix of its kept rows: all of them when they fit in num_samples,
 *                else a share proportional to its size (calculate_samples_per_dataset). The used rows of the
 *                datasets, in dataset order, are the set's "concatenated" indices 0..total-1.
 *   order        the training order over epochs (get_local_shuffled_indices): each epoch walks the datasets in
 *                shards, a shard taking max(1, int(shard_size · n_j / max_n)) consecutive rows of dataset j, and
 *                is permuted as a whole. Our permutation of shard s of epoch e is a Fisher–Yates shuffle driven by
 *                splitmix64 from (seed, e, s): reproducible from the seed, computable by any rank on its own, and
 *                independent of the rank count (the seed uses torch.randperm, which we cannot reproduce).
 *
 * A global batch is a run of positions of the order; rank r reads its slice of every batch (dk_dict_slice), so
 * the rows of a batch are the same whatever the rank count. Reads go straight to the stores' contiguous
 * layer datasets (pread at the dataset's file offset, sorted and coalesced), the way the seed reads its memmaps.
 * A non-finite value in a row is an error naming the store, sequence and token. */
#ifndef DK_METHODS_DICT_DATA_H
#define DK_METHODS_DICT_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "io/act_store_read.h"
#include "methods/method_job.h"

typedef enum { DK_DICT_DIFF_FTB, DK_DICT_DIFF_BFT, DK_DICT_BASE, DK_DICT_FT, DK_DICT_STACKED } dk_dict_target;

/* "difference_ftb" ... "stacked" -> target. 0, or -1 with err naming key and the accepted values. */
int dk_dict_target_parse(const char *s, const char *key, bool allow_stacked, dk_dict_target *t, dk_err *err);
const char *dk_dict_target_name(dk_dict_target t);

typedef struct dk_dict_source {
    char *name;               /* the dataset's short name */
    const char *group;        /* "dataset.chat", "dataset.pretraining", "organism.dataset" */
    dk_act_pair pair;
    int fd[2];                /* base, finetuned store files (raw reads) */
    int64_t offset[2];        /* file offset of layer_{L} in each, -1 when not contiguous (HDF5 reads then) */
    int64_t n_kept;           /* rows left after the first `skip` tokens of every sequence */
    int64_t *kept_before;     /* (n_seqs + 1) kept rows before sequence s */
    int64_t n_use;            /* rows used: the first n_use kept rows */
} dk_dict_source;

typedef struct dk_dict_set {
    int n;                    /* sources, in the seed's order: chat, pretraining, organism dataset */
    dk_dict_source src[3];
    dk_dict_target target;
    int64_t d, width;         /* d_model; width = d, or 2·d when stacked */
    int64_t skip;
    int64_t total;            /* Σ n_use */
    int64_t layer;
    const char *split;
} dk_dict_set;

/* Opens the stores of every dataset group whose diffing.method.datasets.use_* flag is on (and that is configured)
 * for split at layer, checks them (dk_method_open_stores) and picks each dataset's rows: max_total caps the sum
 * (<= 0: no cap). An empty dataset, or one with no row left after skip, is an error naming it. Collective only
 * through the harness's checks (every rank opens the same stores). */
int dk_dict_set_open(dk_method_job *job, const char *split, int64_t layer, dk_dict_target target, int64_t skip,
                     int64_t max_total, dk_dict_set *set, dk_err *err);
void dk_dict_set_close(dk_dict_set *set);

/* The source and store row of concatenated index c (0 <= c < total). */
void dk_dict_set_locate(const dk_dict_set *set, int64_t c, int *src, int64_t *row);
/* The store row of the kept-row index i of source src (any kept row, used or not). */
int64_t dk_dict_kept_row(const dk_dict_source *s, int64_t i);

/* Rows of concatenated indices idx[0..n) (any order, repeats allowed) into out (n, width) fp32. */
int dk_dict_set_read(const dk_dict_set *set, const int64_t *idx, int64_t n, float *out, dk_err *err);
/* Same, for (source, store row) pairs. */
int dk_dict_read_rows(const dk_dict_set *set, const int *src, const int64_t *row, int64_t n, float *out, dk_err *err);
/* Store rows [row0, row0 + n) of one source as the target's rows (a whole sequence, for max-activating examples). */
int dk_dict_read_range(const dk_dict_set *set, int src, int64_t row0, int64_t n, float *out, dk_err *err);

/* The training order (see the top of this file). */
typedef struct dk_dict_order {
    int n_src;
    int64_t n_use[3], cum[4];     /* rows per source and their running sum */
    int64_t total, epochs;
    bool shuffle;                 /* local_shuffling */
    uint64_t seed;
    int64_t n_shards;             /* per epoch */
    int64_t *shard_start;         /* (n_shards + 1) first position of each shard within an epoch */
    int64_t *shard_take;          /* (n_shards, n_src) rows of each source in each shard */
    int64_t *shard_first;         /* (n_shards, n_src) first row of each source in each shard */
    int64_t cached_key[2];        /* epoch * n_shards + shard of the cached permutations, -1 = none */
    int64_t *cached_perm[2];
    int64_t cached_len[2];
    int next_slot;
} dk_dict_order;

/* shard_size > 0; epochs >= 1. With shuffle false the rows come in concatenated order, epoch after epoch. */
void dk_dict_order_init(dk_dict_order *o, const dk_dict_set *set, int64_t shard_size, int64_t epochs, bool shuffle,
                        uint64_t seed);
void dk_dict_order_free(dk_dict_order *o);
/* Concatenated indices of positions [p0, p0 + n) of the order (0 <= p0, p0 + n <= total · epochs). */
void dk_dict_order_get(dk_dict_order *o, int64_t p0, int64_t n, int64_t *idx);

/* Rank r's slice [*lo, *hi) of a batch of n rows split over nranks (contiguous, in rank order). */
void dk_dict_slice(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi);

/* splitmix64: the next 64 random bits of state (the RNG of the order and of the normaliser's sample). */
uint64_t dk_dict_rng_next(uint64_t *state);
/* A uniform integer in [0, n) (n > 0), by rejection (no modulo bias). */
int64_t dk_dict_rng_below(uint64_t *state, int64_t n);

#endif
