/* undertrained.h — the tokens a model has most likely never trained, found from its unembedding: the output-row
 * indicator of Land & Bartolo 2024, "Fishing for Magikarp: Automatically Detecting Under-trained Tokens in Large
 * Language Models" (the distance of each output-embedding row to the mean row of tokens known to be unused).
 *
 * Why this exists: a token that never occurs in a model's training text keeps an output row that only the
 * softmax denominator has pushed, and all such rows drift the same way, far from the trained rows and close to
 * each other. A logit lens (ADL, patchscope, diff mining) reads vectors through these rows, so a difference
 * vector along that shared direction lists the untrained tokens first: a finding about how the tokenizer was
 * made, not about the finetune (issue 11 found exactly this on the first demo pair). Methods mark or filter the
 * flagged ids in their token lists (configs/config.yaml: diffing.undertrained_tokens, default mark);
 * `diffkit undertrained --model DIR` writes the list as JSON (docs/formats.md).
 *
 * Reference set (tokens that provably never occur in training text): the ordinary (not added) tokens whose bytes
 * no UTF-8 text holds (0xC0, 0xC1, 0xF5-0xFF and overlong or surrogate pieces, in a byte-level or byte-fallback
 * vocabulary), and the rows past the tokenizer's vocabulary (padding rows of the embedding matrix). Magikarp
 * lists unused tokens by hand per model; these need no list.
 * Indicator: d_i = ||u_i - r||, u_i row i of the unembedding (lm_head; the embedding when tied), r the mean
 * reference row. Spread s = max over reference rows u_j of ||u_j - mean of the other reference rows||.
 * Decision: the reference rows form a cluster when s <= DK_UNDERTRAINED_CLUSTER_RATIO · (median of d_i over the
 * other ids); then every id with d_i <= max(DK_UNDERTRAINED_THRESHOLD_FACTOR · s, 1e-6 · median) is flagged,
 * reference ids included. Otherwise nothing is flagged and the status says why: the reference rows are as
 * spread as any others (a model trained on nothing, such as a random test model) or there are fewer than two.
 */
#ifndef DK_MODEL_UNDERTRAINED_H
#define DK_MODEL_UNDERTRAINED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "tokenizer/tokenizer.h"

#define DK_UNDERTRAINED_CLUSTER_RATIO 0.25
#define DK_UNDERTRAINED_THRESHOLD_FACTOR 2.0

typedef enum {
    DK_UNDERTRAINED_FLAGGED,      /* the reference rows cluster; ids near them are flagged */
    DK_UNDERTRAINED_NO_CLUSTER,   /* the reference rows are spread like any rows: nothing flagged */
    DK_UNDERTRAINED_NO_REFERENCE, /* fewer than two reference ids: nothing flagged */
} dk_undertrained_status;

typedef struct dk_undertrained {
    int64_t vocab_size;           /* rows of the unembedding */
    dk_undertrained_status status;
    int32_t *reference_ids;       /* (n_reference) ascending */
    int64_t n_reference;
    float *distance;              /* (vocab_size) d_i */
    double spread, median_distance, threshold; /* s, median d_i of non-reference ids, flagging bound (0 if none) */
    bool *flagged;                /* (vocab_size) */
    int64_t n_flagged;
} dk_undertrained;

/* The reference ids of a tokenizer for an unembedding of vocab_size rows (see above), ascending, malloc'ed. */
void dk_undertrained_reference_ids(const dk_tokenizer *tok, int64_t vocab_size, int32_t **ids, int64_t *n);

/* The indicator over a (V, H) unembedding tensor with the given reference ids (any order; ids outside [0, V)
 * are an error). 0, or -1 with err set. */
int dk_undertrained_compute(const dk_st_tensor *unembed, const int32_t *reference_ids, int64_t n_reference,
                            dk_undertrained *out, dk_err *err);

/* The indicator over the model's unembedding, the reference ids taken from its tokenizer (tok may be NULL: then
 * no id is known to be unused and the status is NO_REFERENCE). 0, or -1 with err set. */
int dk_undertrained_for_model(const dk_model *m, const dk_tokenizer *tok, dk_undertrained *out, dk_err *err);

void dk_undertrained_free(dk_undertrained *u);
const char *dk_undertrained_status_name(dk_undertrained_status s); /* "flagged", "no_cluster", "no_reference" */

/* What a method does with the flagged ids of its token lists (config key diffing.undertrained_tokens). */
typedef enum {
    DK_UNDERTRAINED_MARK,   /* keep them, each with "undertrained": true (the default) */
    DK_UNDERTRAINED_FILTER, /* leave them out of the lists */
    DK_UNDERTRAINED_OFF,    /* no detection */
} dk_undertrained_mode;

/* "mark" | "filter" | "off" -> mode; otherwise -1 with err (code 2) naming `where` (e.g. the config key). */
int dk_undertrained_mode_parse(const char *value, const char *where, dk_undertrained_mode *mode, dk_err *err);

#endif
