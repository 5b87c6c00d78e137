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
 * numbers are ours (splitmix64), so sampled text is reproducible across runs of diffkit but not equal to
 * torch's. temperature 0 means greedy (argmax, the first index on ties, like torch.argmax).
 *
 * Random numbers per sequence: each sequence draws from its own generator, started at per_seq[s].seed, or,
 * without per_seq, at dk_generate_seq_seed(seed, s) (sequence 0 starts at `seed` itself; the others at seeds
 * whose streams do not overlap it, so n samples of one prompt differ). A sequence's sampled text therefore
 * depends on its prompt, its settings and its seed only, never on what else is in the batch: generating
 * prompt s alone with per_seq seed dk_generate_seq_seed(seed, s) gives the same tokens as the batch.
 *
 * Per-sequence settings: per_seq (n_seqs entries) replaces ALL the global sampling settings (temperature,
 * top_p, top_k, seed, max_new_tokens, stop ids) for each sequence, so a server can batch requests that ask
 * for different settings; the hooks (steering, patches) and logit amplification stay global.
 *
 * Hooks during generation: steers as in forward.h (seq_strength per sequence of the batch); prompt_only
 * steers act during the prefill only; a steer with linear_decay_steps N > 0 follows the seed's linear_decay
 * mode: generation step i (i = 0 the prefill, all prompt tokens; i >= 1 the forward of one new token) adds
 * (N - i)·strength/N · vector, nothing from step N on (prompt_only is then irrelevant). Patches (patchscope)
 * replace the residual in the prefill only; their token indexes the packed prompt batch.
 *
 * Logit-difference amplification (Goodfire's model-diff amplification): with logit_amp, the model with
 * `adapter` (the organism) and the same dk_model with logit_amp_reference (NULL = the base model, no
 * adapter) step together on the same tokens, each with its own KV cache and the same hooks, and every token
 * is drawn from logits_ft + alpha·(logits_ft − logits_ref) (alpha 0 = the organism alone).
 *
 * Generating on a device (the GPU): dk_generate runs on the CPU (the reference). dk_generate_backend runs the
 * same loop on a backend (backend.h): the forward passes and the KV caches (two with logit amplification) where
 * the backend runs, sampling on the host from the last-position logits. A caller that picks the device (the
 * --device option of `diffkit generate`, chat_generate.c for the diffing methods) opens a backend once and
 * passes it:
 *     dk_backend be;
 *     if (dk_backend_open(&be, &model, &(dk_backend_options){.device = DK_DEVICE_AUTO}, &err) != 0) ...;
 *     dk_generate_backend(&be, adapter, &prompts, &opt, &gen, &err);   // as dk_generate
 *     dk_backend_close(&be);
 * On the GPU in mode F32 greedy generations equal the CPU's (tests/gpu/test_generate_cuda.c); in mode BF16
 * (the default) logits differ by bf16 rounding, so greedy continuations may part from the CPU's after a near tie.
 * The GPU forward keeps one adapter uploaded: logit amplification against the base model (reference NULL) costs
 * nothing extra, against a second adapter both are uploaded again at every step (slow; use the CPU or the base).
 */
#ifndef DK_MODEL_GENERATE_H
#define DK_MODEL_GENERATE_H

#include <stdint.h>

#include "model/backend.h"
#include "model/forward.h"

/* The sampling settings of one sequence (see "Per-sequence settings" above). */
typedef struct dk_seq_options {
    float temperature;           /* 0 = greedy */
    float top_p;                 /* 1 (or 0) = off */
    int64_t top_k;               /* 0 = off */
    uint64_t seed;               /* start of this sequence's generator */
    int64_t max_new_tokens;
    const int64_t *stop_ids;     /* the sequence ends after it emits one of these (included) */
    int n_stop;
} dk_seq_options;

typedef struct dk_generate_options {
    int64_t max_new_tokens;
    float temperature;           /* 0 = greedy */
    float top_p;                 /* 1 = off */
    int64_t top_k;               /* 0 = off */
    uint64_t seed;               /* sequence s draws from dk_generate_seq_seed(seed, s) */
    const int64_t *stop_ids;     /* generation of a sequence ends after it emits one of these (included) */
    int n_stop;
    const dk_steer *steers;      /* steering during generation (prompt_only: during the prefill only;
                                    linear_decay_steps: the seed's linear decay, see above) */
    int64_t n_steer;
    const dk_patch *patches;     /* patchscope: replacements in the prefill only, token = index into the packed
                                    prompt batch */
    int64_t n_patch;
    const dk_seq_options *per_seq; /* NULL, or (n_seqs) settings replacing the six above per sequence */
    bool logit_amp;              /* draw from logits_ft + alpha·(logits_ft − logits_ref) */
    float logit_amp_alpha;
    const dk_lora_adapter *logit_amp_reference; /* the reference model's adapter; NULL = the base model */
} dk_generate_options;

typedef struct dk_generation {
    int64_t n_seqs;
    int64_t **ids;               /* (n_seqs) generated ids, prompt excluded, stop token included */
    int64_t *n_ids;              /* (n_seqs) */
    bool *stopped;               /* (n_seqs) true: ended on a stop id (finish_reason "stop"); false: reached
                                    max_new_tokens ("length") */
} dk_generation;

/* Generates from every sequence of `prompts` (a packed batch). 0, or -1 with err set (bad ids, ...). */
int dk_generate(const dk_model *m, const dk_lora_adapter *adapter, const dk_batch *prompts,
                const dk_generate_options *opt, dk_generation *out, dk_err *err);
/* dk_generate on a backend (see "Generating on a device" above): the same results on the CPU, the forward and
 * the KV caches on the GPU when be runs there. be's model is the model generated from. */
int dk_generate_backend(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *prompts,
                        const dk_generate_options *opt, dk_generation *out, dk_err *err);
void dk_generation_free(dk_generation *g);

/* The settings sequence s generates with: per_seq[s], or the global ones with seed dk_generate_seq_seed. */
dk_seq_options dk_generate_seq_options(const dk_generate_options *opt, int64_t s);
/* The generator seed of sequence s of a batch generated with `seed` and no per_seq (s = 0: seed itself). */
uint64_t dk_generate_seq_seed(uint64_t seed, int64_t s);

/* The seed's default linear_decay_steps. */
enum { DK_STEER_DEFAULT_DECAY_STEPS = 10 };

/* Sets st->prompt_only and st->linear_decay_steps for the seed's steering mode `mode`: "all" (or "all_tokens"),
 * "prompt_only", or "linear_decay" over decay_steps steps (0: DK_STEER_DEFAULT_DECAY_STEPS). false for any other
 * mode (st unchanged). `diffkit generate --steer-mode` and `diffkit serve`'s "steering" both go through it. */
bool dk_steer_set_mode(dk_steer *st, const char *mode, int64_t decay_steps);

/* The id chosen from one row of logits (V) with opt's (or so's) temperature, top-k and top-p; rng_state
 * advances when sampling. Exposed for tests. */
int64_t dk_sample_token(const float *logits, int64_t V, const dk_generate_options *opt, uint64_t *rng_state);
int64_t dk_sample_token_seq(const float *logits, int64_t V, const dk_seq_options *so, uint64_t *rng_state);

#endif
