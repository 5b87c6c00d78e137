/* generate.h — text generation with a KV cache: batched prompts, greedy or sampled, stop tokens, steering.
 *
 * Why this exists: diffing methods generate from the base and the finetuned model (and from steered or
 * amplified ones) and compare what comes out; greedy generations must be token-for-token what transformers'
 * generate(do_sample=False) gives. All prompts are prefilled as one packed batch into a KV cache
 * (forward.h), then each step feeds one token per sequence. A sequence that has stopped keeps being fed its
 * last token (its results are ignored) so that batch row s stays cache row s; this costs a little compute
 * for uneven lengths and keeps the forward pass simple.
 *
 * Sampling follows transformers' logits processors in their order: temperature, top-k, top-p (keeping the
 * smallest set whose probability reaches top_p, at least one token), then a draw from the softmax. The random
 * numbers are ours (splitmix64 from `seed`), so sampled text is reproducible across runs of diffkit but not
 * equal to torch's. temperature 0 means greedy (argmax, the first index on ties, like torch.argmax).
 */
#ifndef DK_MODEL_GENERATE_H
#define DK_MODEL_GENERATE_H

#include <stdint.h>

#include "model/forward.h"

typedef struct dk_generate_options {
    int64_t max_new_tokens;
    float temperature;           /* 0 = greedy */
    float top_p;                 /* 1 = off */
    int64_t top_k;               /* 0 = off */
    uint64_t seed;
    const int64_t *stop_ids;     /* generation of a sequence ends after it emits one of these (included) */
    int n_stop;
    const dk_steer *steers;      /* steering during generation (prompt_only: during the prefill only) */
    int64_t n_steer;
} dk_generate_options;

typedef struct dk_generation {
    int64_t n_seqs;
    int64_t **ids;               /* (n_seqs) generated ids, prompt excluded, stop token included */
    int64_t *n_ids;              /* (n_seqs) */
} dk_generation;

/* Generates from every sequence of `prompts` (a packed batch). 0, or -1 with err set (bad ids, ...). */
int dk_generate(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *prompts,
                const dk_generate_options *opt, dk_generation *out, dk_err *err);
void dk_generation_free(dk_generation *g);

/* The id chosen from one row of logits (V); rng_state advances when sampling. Exposed for tests. */
int64_t dk_sample_token(const float *logits, int64_t V, const dk_generate_options *opt, uint64_t *rng_state);

#endif
