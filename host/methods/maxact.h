/* maxact.h — max-activating examples: the k sequences with the highest score for one (metric or latent,
 * dataset), with their tokens and per-token values, as the seed's MaxActStore keeps them (seed_spec §7.1).
 * One implementation for every method: KL, activation analysis, and later PCA, SAE and crosscoder latents.
 *
 * Each rank offers the sequences it processed; dk_maxact_gather merges every rank's table into rank 0's. The
 * order is total and independent of the rank count: score descending, then the sequence's global index
 * ascending (the tie-break), so 1, 2 or 3 ranks keep the same k examples in the same order. Per-token values
 * are kept dense (one per token) or sparse (positions and values of the non-zero tokens).
 *
 *     dk_maxact t;  dk_maxact_init(&t, 100, false);
 *     if (dk_maxact_wants(&t, score, seq)) dk_maxact_offer(&t, score, seq, tokens, n, values);
 *     dk_maxact_gather(&t, &dist);                       // collective
 *     dk_maxact_write(&t, &results, "max_act/kl_max/pretraining", tok);   // rank 0 writes
 * Layout in the results file: docs/formats.md ("Max-activating examples"). */
#ifndef DK_METHODS_MAXACT_H
#define DK_METHODS_MAXACT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "dist/dist.h"
#include "methods/results.h"
#include "tokenizer/tokenizer.h"

typedef struct dk_maxact_entry {
    double score;
    int64_t seq;          /* global sequence index in its dataset: the tie-break, and where the example came from */
    int64_t n_tokens;
    int32_t *tokens;      /* (n_tokens) */
    int64_t n_values;     /* n_tokens when dense, the non-zero count when sparse */
    int32_t *positions;   /* (n_values) sparse only */
    float *values;        /* (n_values) */
} dk_maxact_entry;

typedef struct dk_maxact {
    int64_t k;
    bool sparse;
    int64_t n;            /* entries held, <= k */
    dk_maxact_entry *e;   /* (k) a min-heap on the order above: e[0] is the weakest kept */
} dk_maxact;

void dk_maxact_init(dk_maxact *t, int64_t k, bool sparse);
void dk_maxact_free(dk_maxact *t);
/* Whether an example of this score and sequence index would be kept now (cheap; call before copying data). */
bool dk_maxact_wants(const dk_maxact *t, double score, int64_t seq);
/* Keeps a copy of the example if it ranks among the k best so far. values: (n) per token, or NULL. A
 * non-finite score is refused (CHECK): callers test their metrics first. */
void dk_maxact_offer(dk_maxact *t, double score, int64_t seq, const int32_t *tokens, int64_t n, const float *values);
/* Collective: rank 0 ends with the k best of every rank's table; the others are emptied. */
void dk_maxact_gather(dk_maxact *t, const dk_dist *d);
/* The entries best first (a sorted copy of the heap's order; the caller frees the array, not the entries). */
dk_maxact_entry *dk_maxact_sorted(const dk_maxact *t);
/* The first n examples, best first, as a JSON array of {"score", "text"} (text decoded with tok, special tokens
 * kept, cut to max_chars bytes): what a method puts in its summary. */
cJSON *dk_maxact_texts(const dk_maxact *t, const dk_tokenizer *tok, int64_t n, size_t max_chars);
/* Writes the table under group (rank 0; the text of each example decoded with tok, special tokens kept). */
void dk_maxact_write(const dk_maxact *t, dk_results *r, const char *group, const dk_tokenizer *tok);

#endif
