/* model_ids.h — the models a run's configuration names, found on disk: the base model (model.model_id at
 * model.revision), the organism's finetuned model for that base and variant
 * (organism.finetuned_models.<model.name>.<organism_variant>: an adapter_id, or a model_id for a full finetune;
 * an adapter_id naming a full model is a full finetune, as the seed's `chat` organism is), and the tokenizer
 * (the base's, or model.tokenizer_id; one shipped with the organism must have the same content).
 *
 * Why one place: diff_preprocess caches activations under these names and every diff_<method> opens them again
 * (methods/model_pair.c); both must read the same keys, accept the same forms and refuse with the same words,
 * or a method would look for stores the preprocessing never wrote. No weights are read here. */
#ifndef DK_PIPELINE_MODEL_IDS_H
#define DK_PIPELINE_MODEL_IDS_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

typedef struct dk_model_ids {
    char *base_dir, *base_id, *base_snapshot;   /* model folder, model_id, commit or "local" */
    bool base_only;                             /* organism=null or the seed's None organism: no finetuned model */
    char *ft_dir, *ft_id;                       /* adapter or full model folder and its id (NULL when base_only) */
    bool ft_is_adapter;
    char *tokenizer_path;                       /* tokenizer.json(.gz) */
    uint64_t tokenizer_hash;                    /* FNV-1a of its bytes */
    char tokenizer_hash_hex[32];                /* "fnv1a64:<hex>" */
} dk_model_ids;

/* Resolves ids and folders from cfg. 0, or -1 with err (code 2 for configuration errors: a missing variant or
 * model lists the ones the organism has). */
int dk_model_ids_resolve(dk_model_ids *ids, const dk_cfg *cfg, dk_err *err);
void dk_model_ids_free(dk_model_ids *ids);

/* The seed's folder name of a model: model_id.split('/')[-1] (a trailing slash ignored). Malloc'ed. */
char *dk_safe_model_name(const char *id);
/* The folder of a model's activation stores: dk_safe_model_name of the base, or of the finetuned model; when
 * the finetuned model's name equals the base's (a full finetune published under the base's name by another
 * owner, or a null control whose "finetune" is the base itself: configs/organism/demo_null.yaml), the
 * finetuned one gets "-finetuned" appended, so the two never share stores (the seed would let them collide).
 * ft_id NULL: the base's folder. Malloc'ed. */
char *dk_store_model_name(const char *base_id, const char *ft_id);

/* "fnv1a64:<hex>" of a file's bytes into out; 0, or -1 with err. */
int dk_hash_file_hex(const char *path, char out[32], dk_err *err);

#endif
