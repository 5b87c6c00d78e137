/* dm_data.h — the samples diff mining runs its two models on, chosen as the seed chooses them (its ADL loaders
 * load_and_tokenize_dataset / load_and_tokenize_chat_dataset, called by diff_mining/preprocessing.py):
 *
 *   text datasets  records in file order; an empty or all-whitespace text is skipped; the text is cut to its
 *                  first 10·n characters (code points), encoded with the tokenizer's special tokens (BOS where
 *                  the tokenizer adds one); kept when it gives >= n tokens, as its first n. Analysed: all n.
 *   chat datasets  records in file order; a conversation whose first message is not the user's is skipped;
 *                  user turn u and assistant turn a (cut to 10·n characters): U = template(u, generation prompt),
 *                  F = template(u, a); skipped when |U| > 512 or F has < n tokens after U; the sample is
 *                  F[: |U| + n]. The seed analyses labels −k .. n−1 around the assistant start |U| and then keeps
 *                  the first n of them: positions |U| − k .. |U| − k + n − 1 (k = pre_assistant_k).
 * until max_samples samples are found. Each sample is run whole; its analysed positions are n consecutive rows
 * from first_pos. Differences from the seed: it shuffles chat datasets (and text datasets read without
 * streaming) with datasets.shuffle(seed); we read in file order (text datasets must say streaming: true). */
#ifndef DM_DATA_H
#define DM_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

typedef struct dm_dataset {
    char *name;             /* the seed's "<id tail>_<split>_<column>", the id tail being the short name */
    char *id;               /* as configured */
    char *path;             /* the file read (the split's) */
    char *column;           /* text_column or messages_column */
    bool is_chat;
    /* the samples */
    int32_t *ids;           /* (n_tokens) each sample's tokens as the models see them, packed */
    int64_t *offsets;       /* (n + 1) */
    int64_t *first_pos;     /* (n) first analysed position in the sample */
    int64_t *line_no;       /* (n) the record's line in the file */
    int64_t n, n_tokens;
    int64_t n_pos;          /* analysed positions per sample (max_tokens_per_sample) */
    uint64_t content_hash;  /* FNV-1a of the file's (decompressed) bytes */
} dm_dataset;

typedef struct dm_load_options {
    int64_t n;              /* max_tokens_per_sample */
    int64_t max_samples;
    int64_t pre_assistant_k;
    int64_t debug_print;    /* log the first texts (debug_print_samples; 0 = none) */
    dk_chat_family family;  /* chat datasets */
    const char *bos_token;  /* the template's BOS, or NULL */
} dm_load_options;

/* Reads ds->path (ds->is_chat, ds->column set) and selects the samples. An error names the file and line;
 * a dataset that gives no sample is an error saying why. 0, or -1 with err. */
int dm_dataset_load(dm_dataset *ds, const dk_tokenizer *tok, const dm_load_options *o, dk_err *err);
void dm_dataset_free(dm_dataset *ds);

#endif
