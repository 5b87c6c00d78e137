/* act_store_read.h — reading activation stores, for the diffing methods (serial, no MPI needed).
 *
 * A method reads the base and the finetuned store of the same (dataset, split) side by side: rows by row
 * range or by sequence, as fp32, of the base, the finetuned model, or finetuned − base. Opening a pair
 * checks that both stores are complete and hold exactly the same tokens and sequence offsets, so row i is
 * the same token in both. A store written with preprocessing.store_tokens=false has no tokens: a pair of such
 * stores is checked by its dataset and tokenizer hashes and offsets instead.
 *
 *     dk_act_pair p;  dk_act_pair_open(&p, base_path, ft_path, 13, &err);
 *     float *x = malloc(n * p.d_model * 4);                       // (n, d)
 *     dk_act_pair_rows(&p, DK_ACT_DIFF, row0, n, x, &err);          // finetuned - base
 */
#ifndef DK_ACT_STORE_READ_H
#define DK_ACT_STORE_READ_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dk_act_store {
    int64_t file;             /* hid_t */
    int64_t layer_ds;         /* hid_t of layer_{layer} */
    int64_t bf16;             /* hid_t of the stored bf16 type */
    int64_t layer, d_model, n_tokens, n_seqs;
    int32_t *tokens;          /* (n_tokens), NULL when the store holds no tokens (store_tokens=false) */
    int64_t skip_first;       /* leading tokens of each sequence not stored (0 for stores older than the attribute) */
    char *dataset_hash;
    int64_t *seq_offsets;     /* (n_seqs + 1) */
    uint64_t fingerprint;
    char *path;
    char *model_id, *adapter_id;
    char *tokenizer_hash;     /* "fnv1a64:<hex>" of the tokenizer.json that made the tokens */
    char *compute;            /* "cpu-fp32", "cuda-bf16", ... ("cpu-fp32" for stores older than the attribute) */
} dk_act_store;

/* Opens a complete store for one layer (error naming the layers present otherwise). allow_partial opens an
 * unfinished NAME.h5.partial too (its unwritten rows hold garbage). 0 or -1 with err. */
int dk_act_store_open(dk_act_store *s, const char *path, int64_t layer, bool allow_partial, dk_err *err);
void dk_act_store_close(dk_act_store *s);
/* Rows [row0, row0 + n) of the layer as fp32 (out: (n, d)), or as raw bf16 bits (out: (n, d) uint16). */
int dk_act_store_rows(const dk_act_store *s, int64_t row0, int64_t n, float *out, dk_err *err);
int dk_act_store_rows_bf16(const dk_act_store *s, int64_t row0, int64_t n, uint16_t *out, dk_err *err);
/* Per-dimension mean and Bessel-corrected variance over all rows (fp64, (d) each). */
int dk_act_store_stats(const dk_act_store *s, double *mean, double *var, int64_t *count, dk_err *err);

typedef enum { DK_ACT_BASE, DK_ACT_FINETUNED, DK_ACT_DIFF } dk_act_which; /* DIFF = finetuned - base */

typedef struct dk_act_pair {
    dk_act_store base, ft;
    int64_t d_model, n_tokens, n_seqs;
    const int32_t *tokens;       /* (n_tokens), shared by both; NULL without stored tokens */
    const int64_t *seq_offsets;  /* (n_seqs + 1) */
} dk_act_pair;

/* Opens both stores and checks that they hold the same tokens and offsets. 0 or -1 with err. */
int dk_act_pair_open(dk_act_pair *p, const char *base_path, const char *ft_path, int64_t layer, dk_err *err);
void dk_act_pair_close(dk_act_pair *p);
/* Rows [row0, row0 + n) (out: (n, d) fp32). */
int dk_act_pair_rows(const dk_act_pair *p, dk_act_which which, int64_t row0, int64_t n, float *out, dk_err *err);
/* Sequence s: its row range in *row0, *n (out may be NULL to ask the length; else (n, d) fp32). */
int dk_act_pair_sequence(const dk_act_pair *p, dk_act_which which, int64_t s, int64_t *row0, int64_t *n, float *out,
                         dk_err *err);

#endif
