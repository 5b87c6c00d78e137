/* grader_frequent.c — the frequent tokens of an organism's training data (§5.6): the picture of its domain
 * that the token-relevance grader shows the LLM (and that the offline relevance grader matches against).
 *
 * As the seed's _compute_frequent_tokens: count the token strings of every training text, drop generic tokens
 * (dk_token_is_generic) and those seen fewer than min_count times, keep the num_tokens most frequent. The
 * seed counts with a Counter and sorts by count with a stable sort, so equal counts keep the order in which
 * the tokens first appeared; so do we. The texts come encoded by the caller (host/tokenizer, without special
 * tokens, as HF tokenize() gives), so the ADL job encodes once on all cores. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "llm/grader_internal.h"

typedef struct token_count {
    int32_t id;
    int64_t count;
    int64_t first;  /* position of the first occurrence over all sequences */
} token_count;

static int by_count_then_first(const void *a, const void *b) {
    const token_count *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return (x->first > y->first) - (x->first < y->first);
}

int dk_frequent_tokens(const dk_tokenizer *tok, const dk_tok_ids *seqs, size_t n_seqs, int min_count, int num_tokens,
                       char ***tokens_out, int64_t **counts_out, int *n_out, dk_err *err) {
    *tokens_out = NULL;
    if (counts_out) *counts_out = NULL;
    *n_out = 0;
    if (min_count < 1 || num_tokens < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "frequent tokens: min_count (%d) and num_tokens (%d) must be >= 1",
                          min_count, num_tokens);
    int32_t vocab = dk_tokenizer_vocab_size(tok);
    token_count *counts = dk_calloc((size_t)vocab, sizeof *counts);  /* [vocab] */
    for (int32_t v = 0; v < vocab; v++) counts[v] = (token_count){v, 0, -1};
    int64_t position = 0;
    for (size_t s = 0; s < n_seqs; s++) {
        for (size_t t = 0; t < seqs[s].n; t++, position++) {
            int32_t id = seqs[s].ids[t];
            if (id < 0 || id >= vocab) {
                free(counts);
                return dk_err_set(err, DK_EXIT_RUNTIME, "frequent tokens: sequence %zu, token %zu: id %d is outside "
                                  "the tokenizer's vocabulary (0..%d)", s, t, (int)id, (int)vocab - 1);
            }
            if (counts[id].count++ == 0) counts[id].first = position;
        }
    }
    size_t kept = 0;
    for (int32_t v = 0; v < vocab; v++) {
        if (counts[v].count < min_count) continue;
        const char *text = dk_tokenizer_id_to_token(tok, v);
        if (!text || dk_token_is_generic(text)) continue;
        counts[kept++] = counts[v];
    }
    qsort(counts, kept, sizeof *counts, by_count_then_first);
    int n = kept < (size_t)num_tokens ? (int)kept : num_tokens;
    *tokens_out = n ? dk_calloc((size_t)n, sizeof **tokens_out) : NULL;
    if (counts_out) *counts_out = n ? dk_calloc((size_t)n, sizeof **counts_out) : NULL;
    for (int i = 0; i < n; i++) {
        (*tokens_out)[i] = dk_strdup(dk_tokenizer_id_to_token(tok, counts[i].id));
        if (counts_out) (*counts_out)[i] = counts[i].count;
    }
    *n_out = n;
    free(counts);
    return 0;
}

void dk_frequent_tokens_free(char **tokens, int64_t *counts, int n) {
    for (int i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
    free(counts);
}
