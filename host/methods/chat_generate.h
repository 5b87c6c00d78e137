/* chat_generate.h — text in, text out: chat prompts rendered with the model's template, generated in batches by
 * the engine (model/generate.h), decoded back to text; for the methods that read what a model writes (the ADL's
 * steering, weight amplification).
 *
 * Why it exists: the seed's generate_steered / generate_unsteered and the amplification run do the same things
 * around model.generate: apply the chat template to one user message (enable_thinking=False for templates that
 * have the switch), tokenize, generate with stop tokens, decode the completion with special tokens kept and
 * collapse repeated end-of-sequence strings. One module so that every method prompts a model the same way.
 *
 * Prompt ids and stop ids are model/prompt.h's (what `diffkit generate --chat` and `diffkit serve` use): the
 * family of model.chat_template with the model's own BOS, or the raw prompt with the tokenizer's special tokens
 * when model.chat_template is null; config.json's and generation_config.json's eos ids, the end-of-turn token, and
 * the model config's end_of_turn_token. Samples are reproducible: sample i of a call draws from seed + i whatever
 * the batch it lands in (per_seq seeds), so the batch size changes speed only. */
#ifndef DK_METHODS_CHAT_GENERATE_H
#define DK_METHODS_CHAT_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "model/backend.h"
#include "model/generate.h"
#include "model/prompt.h"
#include "tokenizer/tokenizer.h"

typedef struct dk_chat_gen {
    dk_backend *be;                     /* where the model runs (the job's: CPU or GPU) */
    const dk_model *model;              /* be->model */
    const dk_lora_adapter *adapter;     /* NULL: the model alone */
    dk_tokenizer *tok;
    bool has_family;                    /* false: prompts are used as raw text */
    dk_chat_format format;              /* when has_family; format.enable_thinking is 0 after init (the seed's ADL
                                           prompts with enable_thinking=False); -1 leaves the template's default */
    int64_t stops[DK_MAX_STOP_IDS];
    int n_stops;
    char *eos_text;                     /* the text of the first stop id, collapsed when repeated */
    int64_t max_batch;                  /* sequences per dk_generate call */
    int64_t hf_top_k;                   /* what transformers' generate(do_sample=True) samples with: the model's */
    float hf_top_p;                     /* generation_config.json top_k / top_p, else GenerationConfig's 50 / 1.0 */
} dk_chat_gen;

/* From the composed configuration: model.chat_template (a family name or null) and model.end_of_turn_token;
 * be runs the model (dk_generate_backend: the GPU when the job runs there), model_dir is its folder (its
 * generation_config.json). 0, or -1 with err (code 2) naming the key. */
int dk_chat_gen_init(dk_chat_gen *g, const dk_cfg *cfg, dk_backend *be, const char *model_dir,
                     const dk_lora_adapter *adapter, dk_tokenizer *tok, int64_t max_batch, dk_err *err);
void dk_chat_gen_free(dk_chat_gen *g);

/* The ids of one user message as the model is prompted with it (malloc'ed into *ids, count *n). */
int dk_chat_gen_prompt_ids(const dk_chat_gen *g, const char *prompt, int64_t **ids, int64_t *n, dk_err *err);

typedef struct dk_chat_gen_request {
    const char *const *prompts;   /* (n) user messages; the same prompt may repeat (several samples) */
    int64_t n;
    int64_t max_new_tokens;
    float temperature;            /* 0 = greedy */
    float top_p;                  /* 1 = off */
    int64_t top_k;                /* 0 = off */
    uint64_t seed;                /* sample i draws from seed + i */
    const dk_steer *steer;        /* NULL, or one steer whose strength is multiplied by strengths[i] */
    const float *strengths;       /* (n) or NULL (all 1) */
    bool logit_amp;               /* logit-difference amplification against the base (model/generate.h) */
    float logit_amp_alpha;
    bool plain_text;              /* texts as vLLM's output.text: special tokens skipped, the final stop token left
                                     out (false: special tokens kept, as the seed's steering samples) */
} dk_chat_gen_request;

/* texts (n) malloc'ed completions (special tokens kept and repeated EOS collapsed, or plain_text); ids into ids/n_ids
 * when those are not NULL (ids[i] malloc'ed). 0, or -1 with err. */
int dk_chat_gen_run(const dk_chat_gen *g, const dk_chat_gen_request *req, char **texts, int64_t **ids,
                    int64_t *n_ids, dk_err *err);

/* Per-token negative log-likelihood (nats) of completion (n_completion) after prompt under the model of g (no
 * hooks): nll (n_completion). The offline coherence grader reads the steered text with the unsteered model. */
int dk_chat_gen_nll(const dk_chat_gen *g, const int64_t *prompt, int64_t n_prompt, const int64_t *completion,
                    int64_t n_completion, float *nll, dk_err *err);

/* A prompts file (the seed's read_prompts): one prompt per line, surrounding blanks trimmed, blank lines skipped;
 * *prompts (*n) malloc'ed. key names the setting in messages. 0, or -1 with err (no prompt at all: code 2). */
int dk_read_prompts(const char *path, const char *key, char ***prompts, int *n, dk_err *err);

#endif
