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
#include "pipeline/model_ids.h"
#include "tokenizer/chat_template.h"

int dk_model_pair_resolve(dk_model_pair *p, const dk_cfg *cfg, dk_err *err) {
    memset(p, 0, sizeof *p);
    dk_model_ids ids;
    int rc = dk_model_ids_resolve(&ids, cfg, err);
    /* the folders and ids move into the pair (freed by dk_model_pair_close) */
    p->base_dir = ids.base_dir, p->base_id = ids.base_id, p->base_snapshot = ids.base_snapshot;
    p->ft_dir = ids.ft_dir, p->ft_id = ids.ft_id, p->ft_is_adapter = ids.ft_is_adapter;
    p->tokenizer_path = ids.tokenizer_path;
    memcpy(p->tokenizer_hash, ids.tokenizer_hash_hex, sizeof p->tokenizer_hash);
    if (rc != 0) return -1;
    if (ids.base_only)
        return dk_err_set(err, DK_EXIT_USAGE, "no organism is configured (organism=null or None): a diffing method "
                          "compares a base model with an organism; choose one, e.g. organism=NAME");

    char *config_json = dk_path_join(p->base_dir, "config.json");
    dk_hf_config hc;
    int crc = dk_hf_config_load(config_json, &hc, err);
    free(config_json);
    if (crc != 0) return -1;
    p->n_layers = hc.num_hidden_layers;
    p->d_model = hc.hidden_size;
    p->vocab_size = p->ft_vocab_size = hc.vocab_size;
    dk_hf_config_free(&hc);
    if (!p->ft_is_adapter) { /* a full finetune has its own config.json (its vocabulary may have grown) */
        config_json = dk_path_join(p->ft_dir, "config.json");
        crc = dk_hf_config_load(config_json, &hc, err);
        free(config_json);
        if (crc != 0) return -1;
        p->ft_vocab_size = hc.vocab_size;
        dk_hf_config_free(&hc);
    }

    /* what identifies the finetuned weights in a results fingerprint */
    char *weights = dk_path_join(p->ft_dir, p->ft_is_adapter ? "adapter_model.safetensors" : "config.json");
    rc = dk_hash_file_hex(weights, p->adapter_hash, err);
    free(weights);
    return rc;
}

int dk_model_pair_load_tokenizer(dk_model_pair *p, dk_err *err) {
    p->tok = dk_tokenizer_load(p->tokenizer_path, err);
    if (p->tok && dk_tokenizer_config_json(p->tok))
        p->bos_token = dk_chat_config_bos_token(dk_tokenizer_config_json(p->tok));
    return p->tok ? 0 : -1;
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
    if (!dk_err_is_set(err)) dk_model_pair_load_tokenizer(p, err);
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

void dk_model_pair_inputs(const dk_model_pair *p, const char *compute, dk_strbuf *out) {
    dk_strbuf_printf(out, "base: %s @ %s\n", p->base_id, p->base_snapshot);
    dk_strbuf_printf(out, "finetuned: %s %s (%s)\n", p->ft_is_adapter ? "adapter" : "model", p->ft_id, p->adapter_hash);
    dk_strbuf_printf(out, "tokenizer: %s\n", p->tokenizer_hash);
    if (compute && strcmp(compute, "cpu-fp32") != 0) dk_strbuf_printf(out, "compute: %s\n", compute);
}
