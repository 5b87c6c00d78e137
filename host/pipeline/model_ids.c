/* model_ids.c — see model_ids.h. */
#include "pipeline/model_ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strutil.h"
#include "io/act_store.h" /* dk_fnv1a */
#include "io/file.h"
#include "io/hf_cache.h"
#include "model/model_path.h"
#include "model/organism.h"

char *dk_safe_model_name(const char *id) {
    char *copy = dk_strdup(id);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    const char *base = strrchr(copy, '/');
    char *out = dk_strdup(base ? base + 1 : copy);
    free(copy);
    return out;
}

char *dk_store_model_name(const char *base_id, const char *ft_id) {
    char *base = dk_safe_model_name(base_id);
    if (!ft_id) return base;
    char *ft = dk_safe_model_name(ft_id);
    if (strcmp(ft, base) == 0) {
        char *named = dk_sprintf("%s-finetuned", ft);
        free(ft);
        ft = named;
    }
    free(base);
    return ft;
}

static int hash_file(const char *path, uint64_t *hash, dk_err *err) {
    size_t n = 0;
    char *data = dk_read_file(path, &n, err);
    if (!data) return -1;
    *hash = dk_fnv1a(DK_FNV_OFFSET, data, n);
    free(data);
    return 0;
}

int dk_hash_file_hex(const char *path, char out[32], dk_err *err) {
    uint64_t h = 0;
    if (hash_file(path, &h, err) != 0) return -1;
    snprintf(out, 32, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

/* "a, b, c": the keys of the mapping at `path`, for messages. */
static char *keys_of(const dk_cfg *cfg, const char *path) {
    const dk_cfg_node *node = dk_cfg_get(cfg, path);
    dk_strbuf out = {0};
    dk_strbuf_append(&out, "");
    for (size_t i = 0; node && node->kind == DK_CFG_MAP && i < node->n; i++)
        dk_strbuf_printf(&out, "%s%s", i ? ", " : "", node->keys[i]);
    if (!out.data[0]) dk_strbuf_append(&out, "none");
    return dk_strbuf_take(&out);
}

/* organism.finetuned_models.<model>.<variant>: an adapter (adapter_id) or a full model (model_id). An adapter_id
 * whose folder holds a full model (config.json, no adapter_config.json) is compared as a full finetune. */
static int resolve_finetuned(const dk_cfg *cfg, dk_model_ids *ids, dk_err *err) {
    const char *model_name = dk_cfg_str(cfg, "model.name"), *organism = dk_cfg_str(cfg, "organism.name");
    const char *variant = dk_cfg_str(cfg, "organism_variant");
    char *models_key = dk_sprintf("organism.finetuned_models.%s", model_name);
    char *key = dk_sprintf("%s.%s", models_key, variant);
    char *adapter_key = dk_sprintf("%s.adapter_id", key), *full_key = dk_sprintf("%s.model_id", key);
    int rc = 0;
    if (!dk_cfg_get(cfg, models_key)) {
        char *models = keys_of(cfg, "organism.finetuned_models");
        rc = dk_err_set(err, DK_EXIT_USAGE, "organism %s has no finetuned model for model=%s (it has finetunes of: "
                        "%s); choose one of those with model=NAME, or organism=null for the base model alone",
                        organism, model_name, models);
        free(models);
    } else if (dk_cfg_has(cfg, adapter_key) || dk_cfg_has(cfg, full_key)) {
        const bool adapter = dk_cfg_has(cfg, adapter_key);
        ids->ft_id = dk_strdup(dk_cfg_str(cfg, adapter ? adapter_key : full_key));
        ids->ft_dir = dk_model_folder(ids->ft_id, NULL, err);
        dk_finetune_kind kind;
        if (!ids->ft_dir || dk_finetune_kind_of(ids->ft_dir, &kind, err) != 0) {
            dk_err_prefix(err, "%s: ", adapter ? adapter_key : full_key);
            rc = -1;
        } else {
            ids->ft_is_adapter = kind == DK_FINETUNE_ADAPTER;
            if (adapter && !ids->ft_is_adapter)
                LOG_INFO("%s = %s is a full model (config.json, no adapter_config.json): compared as a full "
                         "finetune", adapter_key, ids->ft_id);
        }
    } else {
        char *variants = keys_of(cfg, models_key);
        rc = dk_err_set(err, DK_EXIT_USAGE, "organism %s has no variant '%s' for model=%s (%s has neither adapter_id "
                        "nor model_id); its variants are: %s (organism_variant=NAME)", organism, variant,
                        model_name, key, variants);
        free(variants);
    }
    free(models_key);
    free(key);
    free(adapter_key);
    free(full_key);
    return rc;
}

int dk_model_ids_resolve(dk_model_ids *ids, const dk_cfg *cfg, dk_err *err) {
    memset(ids, 0, sizeof *ids);
    const char *model_id = dk_cfg_str(cfg, "model.model_id");
    const char *revision = dk_cfg_str_or_null(cfg, "model.revision");
    dk_hf_location loc = {0};
    if (dk_hf_resolve(model_id, revision, "config.json", &loc, err) != 0) return -1;
    ids->base_dir = dk_strdup(loc.path);
    ids->base_id = dk_strdup(model_id);
    ids->base_snapshot = dk_strdup(loc.commit ? loc.commit : "local");
    dk_hf_location_free(&loc);

    /* the seed's None organism, or the group left out: the base model alone */
    ids->base_only = !dk_cfg_has(cfg, "organism.name") || strcmp(dk_cfg_str(cfg, "organism.name"), "None") == 0;
    if (!ids->base_only && resolve_finetuned(cfg, ids, err) != 0) return -1;

    const char *tok_id = dk_cfg_str_or_null(cfg, "model.tokenizer_id");
    char *tok_folder = tok_id ? dk_model_folder(tok_id, NULL, err) : dk_strdup(ids->base_dir);
    if (!tok_folder) return -1;
    ids->tokenizer_path = dk_is_file(tok_folder) ? dk_strdup(tok_folder) : dk_tokenizer_file(tok_folder);
    free(tok_folder);
    if (!ids->tokenizer_path)
        return dk_err_set(err, DK_EXIT_USAGE, "no tokenizer.json in %s (set model.tokenizer_id)", ids->base_dir);
    if (hash_file(ids->tokenizer_path, &ids->tokenizer_hash, err) != 0) return -1;
    snprintf(ids->tokenizer_hash_hex, sizeof ids->tokenizer_hash_hex, "fnv1a64:%016llx",
             (unsigned long long)ids->tokenizer_hash);
    /* the organism must tokenize as the base does: a tokenizer shipped with it must have the same content */
    char *ft_tok = ids->ft_dir ? dk_tokenizer_file(ids->ft_dir) : NULL;
    int rc = ft_tok ? dk_tokenizers_check_same(ids->tokenizer_path, ft_tok, "the base model and the organism", err) : 0;
    free(ft_tok);
    return rc;
}

void dk_model_ids_free(dk_model_ids *ids) {
    free(ids->base_dir);
    free(ids->base_id);
    free(ids->base_snapshot);
    free(ids->ft_dir);
    free(ids->ft_id);
    free(ids->tokenizer_path);
    memset(ids, 0, sizeof *ids);
}
