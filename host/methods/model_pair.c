/* model_pair.c — see model_pair.h. */
#include "methods/model_pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/act_store.h"
#include "io/file.h"
#include "io/hf_cache.h"
#include "model/hf_config.h"
#include "model/model_path.h"
#include "tokenizer/chat_template.h"

char *dk_safe_model_name(const char *id) {
    char *copy = dk_strdup(id);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    const char *base = strrchr(copy, '/');
    char *out = dk_strdup(base ? base + 1 : copy);
    free(copy);
    return out;
}

/* "fnv1a64:<hex>" of a file's bytes; 0 or -1 with err. */
static int hash_file(const char *path, char out[32], dk_err *err) {
    size_t n = 0;
    char *data = dk_read_file(path, &n, err);
    if (!data) return -1;
    snprintf(out, 32, "fnv1a64:%016llx", (unsigned long long)dk_fnv1a(DK_FNV_OFFSET, data, n));
    free(data);
    return 0;
}

/* tokenizer.json (or .gz) of a folder, NULL if none */
static char *tokenizer_file(const char *folder) {
    const char *names[] = {"tokenizer.json", "tokenizer.json.gz"};
    for (int i = 0; i < 2; i++) {
        char *p = dk_path_join(folder, names[i]);
        if (dk_is_file(p)) return p;
        free(p);
    }
    return NULL;
}

int dk_model_pair_resolve(dk_model_pair *p, const dk_cfg *cfg, dk_err *err) {
    memset(p, 0, sizeof *p);
    const char *model_id = dk_cfg_str(cfg, "model.model_id");
    const char *revision = dk_cfg_str_or_null(cfg, "model.revision");
    dk_hf_location loc = {0};
    if (dk_hf_resolve(model_id, revision, "config.json", &loc, err) != 0) return -1;
    p->base_dir = dk_strdup(loc.path);
    p->base_id = dk_strdup(model_id);
    p->base_snapshot = dk_strdup(loc.commit ? loc.commit : "local");
    dk_hf_location_free(&loc);
    char *config_json = dk_path_join(p->base_dir, "config.json");
    dk_hf_config hc;
    int crc = dk_hf_config_load(config_json, &hc, err);
    free(config_json);
    if (crc != 0) return -1;
    p->n_layers = hc.num_hidden_layers;
    p->d_model = hc.hidden_size;
    p->vocab_size = hc.vocab_size;
    dk_hf_config_free(&hc);

    if (!dk_cfg_has(cfg, "organism.name"))
        return dk_err_set(err, DK_EXIT_USAGE, "no organism is configured (organism=null): a diffing method compares "
                          "a base model with an organism; choose one, e.g. organism=NAME");
    const char *model_name = dk_cfg_str(cfg, "model.name"), *variant = dk_cfg_str(cfg, "organism_variant");
    char *key = dk_sprintf("organism.finetuned_models.%s.%s", model_name, variant);
    char *adapter_key = dk_sprintf("%s.adapter_id", key), *full_key = dk_sprintf("%s.model_id", key);
    int rc = 0;
    if (dk_cfg_has(cfg, adapter_key)) {
        p->ft_id = dk_strdup(dk_cfg_str(cfg, adapter_key));
        p->ft_is_adapter = true;
        p->ft_dir = dk_model_folder(p->ft_id, "adapter_config.json", err);
    } else if (dk_cfg_has(cfg, full_key)) {
        p->ft_id = dk_strdup(dk_cfg_str(cfg, full_key));
        p->ft_dir = dk_model_folder(p->ft_id, "config.json", err);
    } else {
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s has neither adapter_id nor model_id: the organism has no finetuned "
                        "model for model=%s, variant %s", key, model_name, variant);
    }
    if (rc == 0 && !p->ft_dir) rc = -1;
    free(key);
    free(adapter_key);
    free(full_key);
    if (rc) return -1;
    char *weights = dk_path_join(p->ft_dir, p->ft_is_adapter ? "adapter_model.safetensors" : "config.json");
    rc = hash_file(weights, p->adapter_hash, err);
    free(weights);
    if (rc) return -1;

    const char *tok_id = dk_cfg_str_or_null(cfg, "model.tokenizer_id");
    char *tok_folder = tok_id ? dk_model_folder(tok_id, NULL, err) : dk_strdup(p->base_dir);
    if (!tok_folder) return -1;
    p->tokenizer_path = dk_is_file(tok_folder) ? dk_strdup(tok_folder) : tokenizer_file(tok_folder);
    free(tok_folder);
    if (!p->tokenizer_path)
        return dk_err_set(err, DK_EXIT_USAGE, "no tokenizer.json in %s (set model.tokenizer_id)", p->base_dir);
    if (hash_file(p->tokenizer_path, p->tokenizer_hash, err) != 0) return -1;
    /* the organism must tokenize as the base does: a tokenizer shipped with it must be the same file */
    char *ft_tok = tokenizer_file(p->ft_dir);
    if (ft_tok) {
        char h[32];
        if (hash_file(ft_tok, h, err) == 0 && strcmp(h, p->tokenizer_hash) != 0)
            dk_err_set(err, DK_EXIT_USAGE, "the base model and the organism use different tokenizers (%s differs "
                       "from %s): their outputs cannot be compared token by token", ft_tok, p->tokenizer_path);
        free(ft_tok);
        if (dk_err_is_set(err)) return -1;
    }
    return 0;
}

int dk_model_pair_open(dk_model_pair *p, const dk_dist *d, dk_device device, int threads, dk_err *err) {
    bool base_open = false, ft_open = false, base_be_open = false, ft_be_open = false;
    if (dk_model_open(p->base_dir, &p->base, err) == 0) {
        base_open = true;
        if (threads > 0) p->base.n_threads = threads;
        if (p->ft_is_adapter) {
            ft_open = dk_lora_load(p->ft_dir, &p->base.cfg, &p->base.w, &p->adapter, err) == 0;
        } else if (dk_model_open(p->ft_dir, &p->full_ft, err) == 0) {
            ft_open = true;
            if (threads > 0) p->full_ft.n_threads = threads;
            dk_model_weights_check_same_shapes(&p->base.w, &p->full_ft.w, err);
        }
    }
    if (!dk_err_is_set(err)) {
        p->tok = dk_tokenizer_load(p->tokenizer_path, err);
        if (p->tok && dk_tokenizer_config_json(p->tok))
            p->bos_token = dk_chat_config_bos_token(dk_tokenizer_config_json(p->tok));
    }
    if (!dk_err_is_set(err)) {
        int n_gpus = dk_backend_cuda_device_count();
        dk_backend_options bopt = {.device = device, .cuda_device = n_gpus > 0 ? d->local_rank % n_gpus : 0};
        if (dk_backend_open(&p->base_be, &p->base, &bopt, err) == 0) {
            base_be_open = true;
            if (!p->ft_is_adapter) ft_be_open = dk_backend_open(&p->ft_be, &p->full_ft, &bopt, err) == 0;
        }
    }
    /* device=auto resolves per node: every rank must compute the same way, or results would mix both */
    int mode = base_be_open && p->base_be.device == DK_DEVICE_CUDA ? 1 + (int)p->base_be.cuda_fp32 : 0, lo = 0, hi = 0;
    MPI_Allreduce(&mode, &lo, 1, MPI_INT, MPI_MIN, d->comm);
    MPI_Allreduce(&mode, &hi, 1, MPI_INT, MPI_MAX, d->comm);
    if (!dk_err_is_set(err) && lo != hi)
        dk_err_set(err, DK_EXIT_USAGE, "device=%s resolved differently on different ranks (some have a GPU, some "
                   "not): set device=cpu or device=cuda explicitly", dk_device_name(device));
    if (dk_dist_agree(d, err) != 0) {
        if (ft_be_open) dk_backend_close(&p->ft_be);
        if (base_be_open) dk_backend_close(&p->base_be);
        if (ft_open) p->ft_is_adapter ? dk_lora_free(&p->adapter) : dk_model_close(&p->full_ft);
        if (base_open) dk_model_close(&p->base);
        if (p->tok) dk_tokenizer_free(p->tok);
        p->tok = NULL;
        return -1;
    }
    p->is_open = true;
    return 0;
}

void dk_model_pair_close(dk_model_pair *p) {
    if (p->is_open) {
        if (!p->ft_is_adapter) dk_backend_close(&p->ft_be);
        dk_backend_close(&p->base_be);
        if (p->ft_is_adapter)
            dk_lora_free(&p->adapter);
        else
            dk_model_close(&p->full_ft);
        dk_model_close(&p->base);
        dk_tokenizer_free(p->tok);
    }
    free(p->base_dir), free(p->base_id), free(p->base_snapshot);
    free(p->ft_dir), free(p->ft_id), free(p->tokenizer_path), free(p->bos_token);
    memset(p, 0, sizeof *p);
}

const dk_model *dk_model_pair_model(const dk_model_pair *p, bool finetuned) {
    return finetuned && !p->ft_is_adapter ? &p->full_ft : &p->base;
}

const dk_lora_adapter *dk_model_pair_adapter(const dk_model_pair *p, bool finetuned) {
    return finetuned && p->ft_is_adapter ? &p->adapter : NULL;
}

dk_backend *dk_model_pair_backend(dk_model_pair *p, bool finetuned) {
    return finetuned && !p->ft_is_adapter ? &p->ft_be : &p->base_be;
}

int dk_model_pair_forward(dk_model_pair *p, bool finetuned, const dk_batch *batch, const dk_hook_plan *plan,
                          dk_err *err) {
    return dk_backend_forward(dk_model_pair_backend(p, finetuned), dk_model_pair_adapter(p, finetuned), batch, plan,
                              NULL, err);
}

const char *dk_model_pair_compute(const dk_model_pair *p) { return dk_backend_compute_name(&p->base_be); }

void dk_model_pair_inputs(const dk_model_pair *p, dk_strbuf *out) {
    dk_strbuf_printf(out, "base: %s @ %s\n", p->base_id, p->base_snapshot);
    dk_strbuf_printf(out, "finetuned: %s %s (%s)\n", p->ft_is_adapter ? "adapter" : "model", p->ft_id, p->adapter_hash);
    dk_strbuf_printf(out, "tokenizer: %s\n", p->tokenizer_hash);
    if (p->is_open && strcmp(dk_model_pair_compute(p), "cpu-fp32") != 0)
        dk_strbuf_printf(out, "compute: %s\n", dk_model_pair_compute(p));
}
