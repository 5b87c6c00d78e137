/* model_golden.h — what the forward/LoRA/generation tests share: reading the goldens written by
 * tools/make_model_goldens.py (tokens.jsonl, golden.safetensors, generate.json) and comparing a result
 * with a golden tensor (relative error, argmax per row). */
#ifndef DK_MODEL_GOLDEN_H
#define DK_MODEL_GOLDEN_H

#include <stdint.h>

#include "io/safetensors.h"
#include "model/forward.h"
#include "model/lora.h"

/* A packed batch read from a tokens.jsonl ({"ids": [...]} per line). */
typedef struct golden_tokens {
    int64_t *ids;        /* (n_tokens) */
    int64_t *seq_start;  /* (n_seqs + 1) */
    int64_t n_tokens, n_seqs;
} golden_tokens;

void golden_tokens_read(const char *path, golden_tokens *t);
/* $DIFFKIT_FIXTURES/engine/models/<name> (the caller frees); exits when DIFFKIT_FIXTURES is unset. */
char *golden_model_dir(const char *name);
/* The tokens.jsonl of golden model `name`; llama_f32 holds llama's weights as F32 and shares its tokens. */
void golden_tokens_read_model(const char *name, golden_tokens *t);
void golden_tokens_free(golden_tokens *t);
/* Opens golden model `name` into m and loads the LoRA adapter folder adapter_dir for it into a; exits with the
 * error when either fails (fixtures must load). The caller frees both (dk_lora_free, dk_model_close). */
void golden_open_lora(const char *name, const char *adapter_dir, dk_model *m, dk_lora_adapter *a);

/* The prompts and transformers' greedy outputs of models/<name>/generate.json, packed. */
typedef struct golden_generation {
    int n;
    int64_t *prompt_ids, *prompt_start; /* packed prompts, (n + 1) offsets */
    int64_t *output_ids, *output_start; /* packed expected outputs */
} golden_generation;

/* Reads generate.json of golden model `name`; exits when it does not parse (fixtures must load). */
void golden_generation_read(const char *name, golden_generation *g);
void golden_generation_free(golden_generation *g);

/* The named float tensor of a golden file, widened (the caller frees); exits when absent: fixtures must
 * be complete. */
float *golden_load(const dk_st_checkpoint *golden, const char *name, int64_t expect_numel);

/* max |got - want| / max |want| over n values (0 when equal; want all zero gives the absolute error). */
double golden_rel_error(const float *got, const float *want, int64_t n);
/* Number of rows (of width cols) whose argmax differs. */
int64_t golden_argmax_mismatches(const float *got, const float *want, int64_t rows, int64_t cols);

#endif
