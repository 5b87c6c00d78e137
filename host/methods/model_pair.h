/* model_pair.h — the two models a diffing method compares, as the configuration names them: the base model
 * (model.model_id, model.revision) and the organism's finetuned model for that base and variant
 * (organism.finetuned_models.<model.name>.<organism_variant>: an adapter_id, applied unmerged on the shared
 * base weights, or a model_id, a full finetune with its own weights), their tokenizer (the base's, or
 * model.tokenizer_id; a tokenizer shipped with the organism must be the same file), and where each forward
 * runs (one backend per model on this rank's device).
 *
 *     dk_model_pair p;
 *     if (dk_model_pair_resolve(&p, cfg, &err) != 0) ...          // ids and folders, no weights read
 *     if (dk_model_pair_open(&p, &dist, DK_DEVICE_AUTO, threads, &err) != 0) ...
 *     dk_model_pair_forward(&p, true, &batch, &plan, &err);        // the finetuned model
 *
 * dk_model_pair_inputs describes both for a results fingerprint. */
#ifndef DK_METHODS_MODEL_PAIR_H
#define DK_METHODS_MODEL_PAIR_H

#include <stdbool.h>

#include "config/config.h"
#include "core/strutil.h"
#include "dist/dist.h"
#include "model/backend.h"
#include "model/lora.h"
#include "pipeline/model_ids.h"   /* dk_safe_model_name */
#include "tokenizer/tokenizer.h"

typedef struct dk_model_pair {
    /* resolved */
    char *base_dir, *base_id, *base_snapshot;   /* folder, model_id, commit or "local" */
    char *ft_dir, *ft_id;                        /* adapter or full model folder, and its id */
    bool ft_is_adapter;
    char *tokenizer_path;
    char tokenizer_hash[32];                     /* "fnv1a64:<hex>" of tokenizer.json */
    char adapter_hash[32];                       /* of adapter_model.safetensors, or of the full model's config.json */
    int64_t n_layers, d_model, vocab_size;       /* of the base model (its config.json) */
    int64_t ft_vocab_size;                       /* of the finetuned model (the base's for an adapter) */
    /* opened */
    bool is_open;
    dk_model base, full_ft;                      /* full_ft only for a full finetune */
    dk_lora_adapter adapter;                     /* only for an adapter */
    dk_backend base_be, ft_be;                   /* ft_be only for a full finetune */
    dk_tokenizer *tok;
    char *bos_token;                             /* from tokenizer_config.json, or NULL */
} dk_model_pair;

/* Resolves ids and folders from cfg (no weights read). 0, or -1 with err (code 2 for configuration errors). */
int dk_model_pair_resolve(dk_model_pair *p, const dk_cfg *cfg, dk_err *err);
/* Opens both models, the tokenizer and a backend per model on `device` (GPU local_rank % GPUs); threads > 0
 * sets the CPU threads. Collective: the outcome is agreed across ranks (and device=auto must resolve the same
 * way on every rank). 0, or -1 with err. */
int dk_model_pair_open(dk_model_pair *p, const dk_dist *d, dk_device device, int threads, dk_err *err);
void dk_model_pair_close(dk_model_pair *p);
/* The tokenizer alone (p->tok, p->bos_token), as dk_model_pair_open loads it, for jobs that run no model. */
int dk_model_pair_load_tokenizer(dk_model_pair *p, dk_err *err);

/* The model, adapter (NULL for the base and for a full finetune) and backend of one side. */
const dk_model *dk_model_pair_model(const dk_model_pair *p, bool finetuned);
const dk_lora_adapter *dk_model_pair_adapter(const dk_model_pair *p, bool finetuned);
dk_backend *dk_model_pair_backend(dk_model_pair *p, bool finetuned);
/* dk_backend_forward on one side. */
int dk_model_pair_forward(dk_model_pair *p, bool finetuned, const dk_batch *batch, const dk_hook_plan *plan,
                          dk_err *err);
/* "cpu-fp32", "cuda-bf16", ...: how the forwards compute (enters fingerprints when not cpu-fp32). */
const char *dk_model_pair_compute(const dk_model_pair *p);

/* Appends "base=..., finetuned=..., tokenizer=..." lines describing both models to a fingerprint text, and
 * "compute: ..." when the forwards run (compute non-NULL) other than "cpu-fp32". */
void dk_model_pair_inputs(const dk_model_pair *p, const char *compute, dk_strbuf *out);

#endif
