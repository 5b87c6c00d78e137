/* diff_preprocess.c — cache residual-stream activations of a base model and its finetuned organism.
 *
 *     mpirun -n N diff_preprocess [--config-dir DIR] [group=NAME ...] [key=value ...]
 *
 * For each configured dataset (chat, pretraining, organism — as the seed, seed_spec §3.1) and split, rank 0
 * reads and tokenizes the records and broadcasts the token ids; every rank makes the same plan (chunks of
 * preprocessing.batch_size sequences, fingerprint); then for the base model and the finetuned model the
 * store {activation_store_dir}/{model}/{dataset}/{split}.h5 is reused (complete, same fingerprint), resumed
 * (NAME.h5.partial, same fingerprint) or created, and its pending chunks are computed by all ranks and
 * written collectively (host/io/act_store.h), the write of one round overlapping the forward of the next
 * (host/pipeline/pp_run.c). One rank per device: device=cuda (or auto with a GPU visible) runs the bf16
 * CUDA forward on GPU local_rank % n_gpus (local rank from MPI_Comm_split_type), device=cpu the fp32 CPU
 * reference; every store records which (its `compute` attribute) and never mixes the two.
 * Expected errors (missing file, malformed line, mismatched store, ...) are agreed across ranks: every rank
 * exits with the same non-zero code and rank 0 prints the message once.
 * The organism's finetuned model is an adapter (adapter_id) or a full checkpoint (model_id, or an adapter_id that
 * names a full model, as the seed's `chat` organism does); a full one must have the base's shapes and tokenizer.
 * organism=null (or the seed's None organism) caches the base model alone. As the seed: the first
 * model.ignore_first_n_tokens_per_sample_during_collection tokens of each sequence run through the model but are
 * not stored, preprocessing.store_tokens=false leaves the tokens out of the stores, and
 * model.token_level_replacement {old_id: new_id} rewrites the input ids before the forward.
 *
 * Not done: the GPU path has not run on a GPU yet (tests/preprocess/pp_gpu.sh, label gpu, is its check);
 * the captures travel to the host as fp32 and are narrowed there (on the writer thread, overlapped with the
 * next forward): narrowing on the GPU would halve the copy; several GPUs per rank, and NCCL, are not used
 * (one rank per GPU).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/job_args.h"
#include "core/format.h"
#include "core/strutil.h"
#include "core/log.h"
#include "core/timer.h"
#include "dist/dist.h"
#include <hdf5.h>

#include "io/act_store.h"
#include "io/file.h"
#include "io/out_file.h"
#include "io/store_lock.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model/hf_config.h"
#include "pipeline/model_ids.h"
#include "pipeline/pp_dataset.h"
#include "pipeline/pp_plan.h"
#include "pipeline/pp_run.h"

static const char *USAGE =
    "Caches the residual-stream activations of the base model and its finetuned organism at\n"
    "preprocessing.layers for the chat, pretraining and organism datasets into HDF5 stores under\n"
    "preprocessing.activation_store_dir (layout: docs/formats.md). Run one rank per device:\n"
    "    mpirun -n 2 diff_preprocess organism=NAME model=NAME [key=value ...]\n"
    "A rerun of the same command resumes an interrupted run; complete stores are reused.\n"
    "--check: say whether every store is complete for these settings, loading no model (the data is read and\n"
    "tokenized to compute the plan fingerprints): exit 0 (all complete), 3 (the job must run), 2 (config error).\n";

/* Everything the job reads from the configuration, resolved once. */
typedef struct settings {
    const char *store_dir, *dtype, *chat_template, *variant;  /* chat_template NULL: no native renderer */
    const char *architecture;                   /* model.architecture, or NULL when the config does not say */
    int64_t layers_spec_n;
    double layers_spec[DK_STORE_MAX_LAYERS];
    bool layers_relative[DK_STORE_MAX_LAYERS];
    int64_t max_samples, max_tokens_train, max_tokens_validation, batch_size, context_len;
    bool overwrite, skip_bad, store_tokens;
    int64_t skip_first;                          /* ignore_first_n_tokens_per_sample_during_collection */
    int64_t *replace_from, *replace_to;          /* token_level_replacement, (n_replace) each */
    size_t n_replace;
    int threads;
    dk_device device;
    dk_model_ids m;                              /* base, organism (or base_only) and tokenizer */
    bool has_family;                             /* a chat template family to render chat datasets with */
    char *bos_token;
    dk_chat_family family;
    char *config_yaml;
} settings;

/* One configured dataset: a group of keys under `prefix` (dataset.chat, dataset.pretraining, organism.dataset). */
typedef struct dataset_cfg {
    const char *prefix;
    const char *id;
    bool is_chat;
    const char *text_column, *messages_column;
    char **splits;
    size_t n_splits;
} dataset_cfg;

static void free_settings(settings *s) {
    dk_model_ids_free(&s->m);
    free(s->bos_token);
    free(s->config_yaml);
    free(s->replace_from);
    free(s->replace_to);
}

static int read_layers(const dk_cfg *cfg, settings *s, dk_err *err) {
    const dk_cfg_node *node = dk_cfg_get(cfg, "preprocessing.layers");
    if (!node || node->kind != DK_CFG_SEQ || node->n == 0 || node->n > DK_STORE_MAX_LAYERS)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.layers must be a list of 1 to %d layers (fractions like "
                          "0.5, or absolute indices like 13)", DK_STORE_MAX_LAYERS);
    s->layers_spec_n = (int64_t)node->n;
    for (size_t i = 0; i < node->n; i++) {
        const dk_cfg_node *it = node->items[i];
        int64_t iv;
        double fv;
        if (it->kind == DK_CFG_SCALAR && dk_cfg_parse_int(it->text, &iv)) {
            s->layers_spec[i] = (double)iv;
            s->layers_relative[i] = false;
        } else if (it->kind == DK_CFG_SCALAR && dk_cfg_parse_float(it->text, &fv) && fv >= 0.0 && fv <= 1.0) {
            s->layers_spec[i] = fv;
            s->layers_relative[i] = true;
        } else {
            return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.layers[%zu] = %s: expected a fraction in [0, 1] or "
                              "an integer layer index", i, it->text ? it->text : "?");
        }
    }
    return 0;
}

/* model.token_level_replacement: null, or a mapping {old_id: new_id} of token ids. */
static int read_replacement(const dk_cfg *cfg, settings *s, dk_err *err) {
    const dk_cfg_node *map = dk_cfg_get(cfg, "model.token_level_replacement");
    if (!map || map->kind == DK_CFG_NULL) return 0;
    char where[1024];
    dk_cfg_node_where(map, where, sizeof where);
    if (map->kind != DK_CFG_MAP)
        return dk_err_set(err, DK_EXIT_USAGE, "model.token_level_replacement (%s) must be null or a mapping "
                          "{old_id: new_id} of token ids", where);
    s->replace_from = dk_malloc((map->n + 1) * sizeof *s->replace_from);
    s->replace_to = dk_malloc((map->n + 1) * sizeof *s->replace_to);
    for (size_t i = 0; i < map->n; i++) {
        const dk_cfg_node *v = map->items[i];
        if (!dk_cfg_parse_int(map->keys[i], &s->replace_from[i]) || v->kind != DK_CFG_SCALAR ||
            !dk_cfg_parse_int(v->text, &s->replace_to[i]) || s->replace_from[i] < 0 || s->replace_to[i] < 0)
            return dk_err_set(err, DK_EXIT_USAGE, "model.token_level_replacement (%s): entry '%s' must map a token id "
                              "to a token id (integers >= 0)", where, map->keys[i]);
    }
    s->n_replace = map->n;
    return 0;
}

static int read_settings(const dk_cfg *cfg, settings *s, dk_err *err) {
    memset(s, 0, sizeof *s);
    s->store_dir = dk_cfg_str(cfg, "preprocessing.activation_store_dir");
    s->dtype = dk_cfg_str(cfg, "preprocessing.dtype");
    s->max_samples = dk_cfg_int(cfg, "preprocessing.max_samples_per_dataset");
    s->max_tokens_train = dk_cfg_int(cfg, "preprocessing.max_tokens_per_dataset_train");
    s->max_tokens_validation = dk_cfg_int(cfg, "preprocessing.max_tokens_per_dataset_validation");
    s->batch_size = dk_cfg_int(cfg, "preprocessing.batch_size");
    s->context_len = dk_cfg_int(cfg, "preprocessing.context_len");
    s->overwrite = dk_cfg_bool(cfg, "preprocessing.overwrite");
    s->threads = (int)dk_cfg_int(cfg, "threads");
    if (s->threads <= 0) { /* "all cores available to the rank": mpirun binds ranks, so count the affinity mask */
        cpu_set_t set;
        s->threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    }
    s->variant = dk_cfg_str(cfg, "organism_variant");
    s->chat_template = dk_cfg_str_or_null(cfg, "model.chat_template");
    s->architecture = dk_cfg_has(cfg, "model.architecture") ? dk_cfg_str(cfg, "model.architecture") : NULL;
    s->store_tokens = dk_cfg_bool(cfg, "preprocessing.store_tokens");
    const char *bad = dk_cfg_str(cfg, "preprocessing.on_bad_record");
    if (strcmp(bad, "error") != 0 && strcmp(bad, "skip") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.on_bad_record=%s: expected error or skip", bad);
    s->skip_bad = strcmp(bad, "skip") == 0;
    if (strcmp(s->dtype, "bfloat16") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.dtype=%s: only bfloat16 is supported", s->dtype);
    if (s->batch_size < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.batch_size=%lld: it must be at least 1 (sequences per "
                          "forward pass and per chunk of the store)", (long long)s->batch_size);
    if (s->context_len < 2)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.context_len=%lld: it must be at least 2 (tokens kept per "
                          "sequence)", (long long)s->context_len);
    if (s->max_samples < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "preprocessing.max_samples_per_dataset=%lld: it must be at least 1",
                          (long long)s->max_samples);
    if (dk_cfg_has(cfg, "model.ignore_first_n_tokens_per_sample_during_collection"))
        s->skip_first = dk_cfg_int(cfg, "model.ignore_first_n_tokens_per_sample_during_collection");
    if (s->skip_first < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "model.ignore_first_n_tokens_per_sample_during_collection is %lld; it "
                          "must be 0 or more", (long long)s->skip_first);
    if (read_replacement(cfg, s, err) != 0) return -1;
    if (dk_device_parse(dk_cfg_str(cfg, "device"), &s->device, err) != 0) {
        dk_err_prefix(err, "configuration key device: ");
        return -1;
    }
    if (read_layers(cfg, s, err) != 0) return -1;
    if (s->chat_template) {
        if (dk_chat_family_from_name(s->chat_template, &s->family, err) != 0) {
            dk_err_prefix(err, "model.chat_template: ");
            return -1;
        }
        s->has_family = true;
    }
    s->config_yaml = dk_cfg_dump(cfg);
    return dk_model_ids_resolve(&s->m, cfg, err);
}

static int read_datasets(const dk_cfg *cfg, const settings *s, dataset_cfg *out, int *n_out, dk_err *err) {
    bool chat_only = dk_cfg_bool(cfg, "preprocessing.chat_only");
    bool pre_only = dk_cfg_bool(cfg, "preprocessing.pretraining_only");
    bool train_only = dk_cfg_bool(cfg, "preprocessing.training_only");
    if ((int)chat_only + (int)pre_only + (int)train_only > 1)
        return dk_err_set(err, DK_EXIT_USAGE, "at most one of preprocessing.chat_only, pretraining_only and "
                          "training_only may be true");
    const char *prefixes[3] = {"dataset.chat", "dataset.pretraining", "organism.dataset"}; /* seed order */
    bool wanted[3] = {!pre_only && !train_only, !chat_only && !train_only, !chat_only && !pre_only};
    *n_out = 0;
    for (int i = 0; i < 3; i++) {
        if (!wanted[i]) continue;
        char *k_id = dk_sprintf("%s.id", prefixes[i]);
        if (!dk_cfg_has(cfg, k_id)) {
            free(k_id);
            continue; /* group left out (dataset=null) */
        }
        dataset_cfg *d = &out[(*n_out)++];
        memset(d, 0, sizeof *d);
        d->prefix = prefixes[i];
        d->id = dk_cfg_str(cfg, k_id);
        free(k_id);
        char *k = dk_sprintf("%s.is_chat", prefixes[i]);
        d->is_chat = dk_cfg_has(cfg, k) && dk_cfg_bool(cfg, k);
        free(k);
        k = dk_sprintf("%s.text_column", prefixes[i]);
        const char *tc = dk_cfg_has(cfg, k) ? dk_cfg_str_or_null(cfg, k) : NULL;
        free(k);
        if (tc) d->is_chat = false; /* seed: a text_column wins over rendering messages */
        d->text_column = tc ? tc : "text";
        k = dk_sprintf("%s.messages_column", prefixes[i]);
        d->messages_column = dk_cfg_has(cfg, k) ? dk_cfg_str(cfg, k) : "messages";
        free(k);
        k = dk_sprintf("%s.splits", prefixes[i]);
        const dk_cfg_node *sp = dk_cfg_get(cfg, k);
        free(k);
        if (!sp || sp->kind != DK_CFG_SEQ || sp->n == 0)
            return dk_err_set(err, DK_EXIT_USAGE, "%s.splits must be a non-empty list", prefixes[i]);
        d->splits = dk_calloc(sp->n, sizeof(char *));
        for (size_t j = 0; j < sp->n; j++) d->splits[j] = sp->items[j]->text;
        d->n_splits = sp->n;
        if (d->is_chat && !s->has_family)
            return dk_err_set(err, DK_EXIT_USAGE, "%s (%s) is a chat dataset, but model.chat_template of model=%s is "
                              "null: diffkit renders the chat templates gemma3, gemma2, llama3, llama3_0, qwen3 and "
                              "qwen2.5 natively, and this model's is none of them. Leave chat data out "
                              "(preprocessing.pretraining_only=true), or give the dataset a text_column", d->prefix,
                              d->id, dk_cfg_str(cfg, "model.name"));
    }
    return 0;
}

/* Rank 0 reads and tokenizes; the result (or the error) reaches every rank. */
static int load_tokens(const dk_dist *d, const settings *s, const dk_tokenizer *tok, const dataset_cfg *ds,
                       const char *split, char **path, char **name, uint64_t *data_hash, dk_pp_tokens *t,
                       dk_err *err) {
    memset(t, 0, sizeof *t);
    *path = *name = NULL;
    if (d->rank == 0) {
        char *key = dk_sprintf("%s.id", ds->prefix);
        if (dk_pp_resolve_dataset(ds->id, split, key, path, name, err) == 0) {
            dk_pp_read_options opt = {.is_chat = ds->is_chat, .text_column = ds->text_column,
                                      .messages_column = ds->messages_column, .family = s->family,
                                      .bos_token = s->bos_token, .max_samples = s->max_samples,
                                      .skip_bad = s->skip_bad};
            dk_pp_texts texts;
            if (dk_pp_read_texts(*path, &opt, &texts, err) == 0) {
                *data_hash = texts.content_hash;
                int64_t cap = strcmp(split, "train") == 0 ? s->max_tokens_train : s->max_tokens_validation;
                if (texts.n_chat_skipped)
                    LOG_INFO("%s: %lld conversations skipped (the chat template refuses them, as in the seed)", *path,
                             (long long)texts.n_chat_skipped);
                dk_pp_tokenize(tok, &texts, s->context_len, cap, s->skip_bad, *path, s->threads, t, err);
                dk_pp_texts_free(&texts);
            }
        }
        free(key);
    }
    if (dk_dist_agree(d, err) != 0) return -1;
    int64_t sizes[2] = {t->n_seqs, t->n_tokens};
    MPI_Bcast(sizes, 2, MPI_INT64_T, 0, d->comm);
    MPI_Bcast(data_hash, 1, MPI_UINT64_T, 0, d->comm);
    if (d->rank != 0) {
        t->n_seqs = sizes[0];
        t->n_tokens = sizes[1];
        t->ids = dk_malloc((size_t)(t->n_tokens ? t->n_tokens : 1) * sizeof(int32_t));
        t->offsets = dk_malloc((size_t)(t->n_seqs + 1) * sizeof(int64_t));
    }
    MPI_Bcast(t->ids, (int)t->n_tokens, MPI_INT32_T, 0, d->comm);
    MPI_Bcast(t->offsets, (int)(t->n_seqs + 1), MPI_INT64_T, 0, d->comm);
    int len[2] = {*path ? (int)strlen(*path) + 1 : 0, *name ? (int)strlen(*name) + 1 : 0};
    MPI_Bcast(len, 2, MPI_INT, 0, d->comm);
    if (d->rank != 0) {
        *path = dk_calloc((size_t)len[0], 1);
        *name = dk_calloc((size_t)len[1], 1);
    }
    MPI_Bcast(*path, len[0], MPI_CHAR, 0, d->comm);
    MPI_Bcast(*name, len[1], MPI_CHAR, 0, d->comm);
    return 0;
}

typedef struct job_totals {
    dk_pp_totals mine;
    int64_t stores_written, stores_reused;
} job_totals;

static int do_store_locked(const dk_dist *d, const settings *s, dk_store_layout *layout, const dk_pp_plan *plan,
                           const dk_pp_tokens *t, dk_backend *be, const dk_lora_adapter *adapter, const char *path,
                           const char *label, bool is_base, const dk_pp_test_hooks *hooks, job_totals *jt,
                           dk_store_lock *lock, dk_err *err);

/* One store: lock, probe, reuse / resume / create, compute, finalize, unlock. Rank 0 holds the store's lock
 * (io/store_lock.h) from before the probe until after the rename, so a second job on the same store stops at
 * once instead of adopting this job's .partial; the kernel drops the lock if the job dies. */
static int do_store(const dk_dist *d, const settings *s, dk_store_layout *layout, const dk_pp_plan *plan,
                    const dk_pp_tokens *t, dk_backend *be, const dk_lora_adapter *adapter, const char *path,
                    const char *label, bool is_base, const dk_pp_test_hooks *hooks, job_totals *jt, dk_err *err) {
    dk_store_lock lock = {.fd = -1};
    int rc = do_store_locked(d, s, layout, plan, t, be, adapter, path, label, is_base, hooks, jt, &lock, err);
    dk_store_lock_release(&lock);
    return rc;
}

static int do_store_locked(const dk_dist *d, const settings *s, dk_store_layout *layout, const dk_pp_plan *plan,
                           const dk_pp_tokens *t, dk_backend *be, const dk_lora_adapter *adapter, const char *path,
                           const char *label, bool is_base, const dk_pp_test_hooks *hooks, job_totals *jt,
                           dk_store_lock *lock, dk_err *err) {
    int state = DK_STORE_ABSENT;
    char why[1024] = "";
    if (d->rank == 0) {
        char *dir = dk_strdup(path);
        *strrchr(dir, '/') = 0;
        if (dk_mkdirs(dir, err) == 0 && dk_store_lock_take(lock, path, err) == 0) {
            uint64_t found = 0;
            state = (int)dk_store_probe(path, layout->fingerprint, &found, why, sizeof why);
            if (state == DK_STORE_MISMATCH) {
                if (s->overwrite) {
                    LOG_WARN("%s; replacing it (preprocessing.overwrite=true)", why);
                    if (dk_store_remove(path, err) == 0) state = DK_STORE_ABSENT;
                } else {
                    dk_err_set(err, DK_EXIT_USAGE, "refusing to touch an existing store: %s. Set "
                               "preprocessing.overwrite=true to replace it, or choose another "
                               "preprocessing.activation_store_dir", why);
                }
            }
        }
        free(dir);
    }
    if (dk_dist_agree(d, err) != 0) return -1;
    MPI_Bcast(&state, 1, MPI_INT, 0, d->comm);
    if (state == DK_STORE_COMPLETE) {
        LOG_INFO("%s: %s is complete with the same plan fingerprint %016llx: reused, %s forward skipped", label, path,
                 (unsigned long long)layout->fingerprint, is_base ? "base model" : "finetuned model");
        jt->stores_reused++;
        return 0;
    }
    bool resume = state == DK_STORE_PARTIAL;
    dk_store_writer *w = dk_store_writer_open(d->comm, path, layout, resume, err);
    if (!w) return -1;
    LOG_INFO("%s: %s %s.partial (%lld sequences, %lld tokens, %lld chunks of up to %lld sequences)", label,
             resume ? "resuming" : "writing", path, (long long)layout->n_seqs, (long long)layout->n_tokens,
             (long long)layout->n_chunks, (long long)s->batch_size);
    if (dk_pp_run_store(d, w, layout, plan, t, be, adapter, label, hooks, &jt->mine, err) != 0) return -1;
    if (d->rank == 0) dk_store_lock_check(lock, err); /* still ours: then the rename checks the .partial too */
    if (dk_dist_agree(d, err) != 0) {
        dk_store_writer_close(w);
        return -1;
    }
    if (dk_store_finalize(w, err) != 0) return -1;
    jt->stores_written++;
    LOG_INFO("%s: complete: %s", label, path);
    return 0;
}

/* --check: the verdict for one store, as do_store would find it (no lock taken, nothing changed). Counts the
 * stores that are not complete with this fingerprint and keeps the first one's reason. */
typedef struct check_tally {
    int n_stores, n_pending;
    char first[1200];
} check_tally;

static void check_store(const dk_dist *d, const settings *s, const dk_store_layout *layout, const char *path,
                        check_tally *t) {
    if (d->rank != 0) return;
    t->n_stores++;
    uint64_t found = 0;
    char why[1024] = "";
    const dk_store_state state = dk_store_probe(path, layout->fingerprint, &found, why, sizeof why);
    if (state == DK_STORE_COMPLETE || t->n_pending++ > 0) return;
    if (state == DK_STORE_ABSENT)
        snprintf(t->first, sizeof t->first, "%s does not exist", path);
    else if (state == DK_STORE_PARTIAL)
        snprintf(t->first, sizeof t->first, "%s.partial is unfinished (a rerun resumes it)", path);
    else
        snprintf(t->first, sizeof t->first, "%s%s", why, s->overwrite ? " (preprocessing.overwrite=true replaces it)"
                 : "; the job refuses to replace it unless preprocessing.overwrite=true");
}

/* The closing report: totals over ranks; forward, narrowing and I/O as the slowest rank saw them; the writer
 * thread's time (narrowing + HDF5) hidden behind the forwards, summed over ranks. Collective. */
static void report_totals(const dk_dist *d, const job_totals *jt, const char *compute, const char *store_dir,
                          double t0) {
    int64_t tokens = dk_dist_sum_i64(d, jt->mine.tokens), bytes = dk_dist_sum_i64(d, jt->mine.bytes);
    double compute_s = dk_dist_max_f64(d, jt->mine.compute_s), io = dk_dist_max_f64(d, jt->mine.io_s);
    double narrow_s = dk_dist_max_f64(d, jt->mine.narrow_s);
    double writer_mine = jt->mine.narrow_s + jt->mine.io_s;
    double hidden_mine = writer_mine * dk_pp_hidden_share(writer_mine, jt->mine.wait_s), hidden = 0, writer_all = 0;
    MPI_Allreduce(&hidden_mine, &hidden, 1, MPI_DOUBLE, MPI_SUM, d->comm);
    MPI_Allreduce(&writer_mine, &writer_all, 1, MPI_DOUBLE, MPI_SUM, d->comm);
    double wall = dk_time_now() - t0;
    char b1[DK_FMT_BUF], b2[DK_FMT_BUF], b3[DK_FMT_BUF], b4[DK_FMT_BUF], b5[DK_FMT_BUF];
    double busy = compute_s + narrow_s + io > 0 ? compute_s + narrow_s + io : 1;
    LOG_INFO("diff_preprocess done (%s): %d stores written, %d reused; %s tokens in %s (%s tokens/s); forward "
             "%.0f%%, narrowing %.0f%%, I/O %.0f%% (%.2fs / %.2fs / %.2fs), %.0f%% of the narrowing and I/O hidden "
             "behind the forward; %s written (%s/s)",
             compute, (int)jt->stores_written, (int)jt->stores_reused, dk_format_count(b1, (double)tokens),
             dk_format_duration(b2, wall), dk_format_count(b3, wall > 0 ? (double)tokens / wall : 0),
             100 * compute_s / busy, 100 * narrow_s / busy, 100 * io / busy, compute_s, narrow_s, io,
             writer_all > 0 ? 100 * hidden / writer_all : 0,
             dk_format_bytes(b4, (double)bytes), dk_format_bytes(b5, io > 0 ? (double)bytes / io : 0));
    LOG_INFO("stores under %s", store_dir);
}

int main(int argc, char **argv) {
    dk_dist d;
    dk_dist_init(&argc, &argv, &d);
    const bool check_mode = dk_job_take_flag(&argc, argv, "--check");
    if (check_mode && dk_log_get_level() == DK_LOG_INFO) dk_log_set_level(DK_LOG_WARN); /* the verdict alone */
    dk_stdout_check_at_exit("diff_preprocess"); /* also: past a file-size limit a write fails (EFBIG), no kill */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5 errors are reported by H5_CHECK and our messages */
    double t0 = dk_time_now();
    for (int i = 1; i < argc; i++) /* --help / --print-config: rank 0 prints, the others leave quietly */
        if ((strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--print-config") == 0) &&
            d.rank != 0) {
            dk_dist_finalize(&d);
            return 0;
        }
    dk_cfg *cfg = dk_job_config("diff_preprocess", USAGE, argc, argv);
    dk_err err = {0};
    settings s;
    dataset_cfg datasets[3];
    int n_datasets = 0;
    dk_tokenizer *tok = NULL;
    if (read_settings(cfg, &s, &err) == 0 && read_datasets(cfg, &s, datasets, &n_datasets, &err) == 0 && d.rank == 0) {
        tok = dk_tokenizer_load(s.m.tokenizer_path, &err);
        if (tok && dk_tokenizer_config_json(tok)) s.bos_token = dk_chat_config_bos_token(dk_tokenizer_config_json(tok));
        bool any_chat = false;
        for (int i = 0; i < n_datasets; i++) any_chat |= datasets[i].is_chat;
        char why[512];
        if (tok && any_chat && !dk_chat_family_fits(s.family, tok, why, sizeof why))
            LOG_WARN("model.chat_template=%s: %s (%s)", s.chat_template, why, s.m.tokenizer_path);
    }
    if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);
    dk_pp_test_hooks hooks = {0}; /* tests only (tests/preprocess) */
    hooks.kill_after_rounds = getenv("DIFFKIT_TEST_KILL_AFTER_ROUNDS") ? atoi(getenv("DIFFKIT_TEST_KILL_AFTER_ROUNDS")) : 0;
    hooks.hold_writes = getenv("DIFFKIT_TEST_HOLD_WRITES") && strcmp(getenv("DIFFKIT_TEST_HOLD_WRITES"), "1") == 0;

    /* models: opened once, on first use; the adapter rides on the base mapping. --check reads config.json only. */
    dk_model base = {0}, full_ft = {0};
    dk_lora_adapter adapter = {0};
    bool base_open = false, ft_open = false;
    dk_hf_config hc = {0};
    bool hc_loaded = false;
    if (check_mode) {
        char *config_json = dk_path_join(s.m.base_dir, "config.json");
        hc_loaded = dk_hf_config_load(config_json, &hc, &err) == 0;
        free(config_json);
    } else if (dk_model_open(s.m.base_dir, &base, &err) == 0) {
        base_open = true;
        if (s.threads > 0) base.n_threads = s.threads;
        if (s.architecture && strcmp(s.architecture, base.cfg.architecture) != 0)
            dk_err_set(&err, DK_EXIT_USAGE, "model.architecture is %s, but %s says %s: the model config names the "
                       "wrong checkpoint, or its architecture key is wrong", s.architecture, base.cfg.path,
                       base.cfg.architecture);
        else if (s.m.base_only)
            ;
        else if (s.m.ft_is_adapter) {
            ft_open = dk_lora_load(s.m.ft_dir, &base.cfg, &base.w, &adapter, &err) == 0;
        } else if (dk_model_open(s.m.ft_dir, &full_ft, &err) == 0) {
            ft_open = true;
            if (s.threads > 0) full_ft.n_threads = s.threads;
            dk_model_weights_check_same_shapes(&base.w, &full_ft.w, &err);
        }
    }
    if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);

    /* where the forward runs: one backend per model (the adapter rides on the base's), one GPU per rank */
    dk_backend base_be = {0}, ft_be = {0};
    bool base_be_open = false, ft_be_open = false;
    int n_gpus = check_mode ? 0 : dk_backend_cuda_device_count();
    dk_backend_options bopt = {.device = s.device, .cuda_device = n_gpus > 0 ? d.local_rank % n_gpus : 0};
    const char *compute = NULL;
    if (check_mode) {
        dk_backend_compute_planned(s.device, &compute, &err);
    } else if (dk_backend_open(&base_be, &base, &bopt, &err) == 0) {
        base_be_open = true;
        if (!s.m.base_only && !s.m.ft_is_adapter) ft_be_open = dk_backend_open(&ft_be, &full_ft, &bopt, &err) == 0;
    }
    if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);
    if (!check_mode) compute = dk_backend_compute_name(&base_be);
    /* device=auto resolves per node: every rank must compute the same way, or one store would mix both */
    int mode = base_be.device == DK_DEVICE_CUDA ? 1 + (int)base_be.cuda_fp32 : 0, lo = 0, hi = 0;
    MPI_Allreduce(&mode, &lo, 1, MPI_INT, MPI_MIN, d.comm);
    MPI_Allreduce(&mode, &hi, 1, MPI_INT, MPI_MAX, d.comm);
    if (lo != hi) {
        dk_err_set(&err, DK_EXIT_USAGE, "device=%s resolved differently on different ranks (some have a GPU, some "
                   "not): set device=cpu or device=cuda explicitly", dk_device_name(s.device));
        dk_dist_exit(&d, &err);
    }
    if (base_be.device == DK_DEVICE_CUDA) {
        int64_t share = d.local_nranks > n_gpus ? (d.local_nranks + n_gpus - 1) / n_gpus : 1;
        LOG_INFO("diff_preprocess: device cuda (%s): %d GPU(s) on rank 0's node, %d rank(s) there%s", compute,
                 n_gpus, d.local_nranks, share > 1 ? "; several ranks share a GPU (run one rank per GPU)" : "");
    }
    const dk_hf_config *mc = check_mode ? &hc : &base.cfg;
    const int64_t L = mc->num_hidden_layers, H = mc->hidden_size, V = mc->vocab_size;
    int64_t layers[DK_STORE_MAX_LAYERS];
    int n_layers = 0;
    for (int64_t i = 0; i < s.layers_spec_n; i++) {
        int64_t l = s.layers_relative[i] ? (int64_t)(s.layers_spec[i] * (double)(L - 1)) : (int64_t)s.layers_spec[i];
        if (l < 0 || l >= L) {
            dk_err_set(&err, DK_EXIT_USAGE, "preprocessing.layers[%lld] gives layer %lld, outside [0, %lld) of %s",
                       (long long)i, (long long)l, (long long)L, s.m.base_id);
            break;
        }
        bool dup = false;
        for (int j = 0; j < n_layers; j++) dup |= layers[j] == l;
        if (!dup) layers[n_layers++] = l;
    }
    if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);
    if (mc->max_position_embeddings > 0 && s.context_len > mc->max_position_embeddings && !check_mode)
        LOG_WARN("preprocessing.context_len=%lld is longer than the context of %s (max_position_embeddings %lld): "
                 "positions past it are outside what the model was trained on", (long long)s.context_len, s.m.base_id,
                 (long long)mc->max_position_embeddings);
    char layer_list[256] = "";
    for (int i = 0; i < n_layers; i++) {
        size_t u = strlen(layer_list);
        snprintf(layer_list + u, sizeof layer_list - u, "%s%lld", i ? "," : "", (long long)layers[i]);
    }
    if (check_mode)
        ;
    else if (s.m.base_only)
        LOG_INFO("diff_preprocess: %d rank(s); base %s alone (no organism); layers [%s] of %lld; d_model %lld",
                 d.nranks, s.m.base_id, layer_list, (long long)L, (long long)H);
    else
        LOG_INFO("diff_preprocess: %d rank(s); base %s, organism %s %s; layers [%s] of %lld; d_model %lld",
                 d.nranks, s.m.base_id, s.m.ft_is_adapter ? "adapter" : "model", s.m.ft_id, layer_list, (long long)L,
                 (long long)H);

    job_totals jt = {0};
    check_tally tally = {0}; /* --check */
    char *base_name = dk_store_model_name(s.m.base_id, NULL);
    char *ft_name = s.m.base_only ? NULL : dk_store_model_name(s.m.base_id, s.m.ft_id);
    for (int di = 0; di < n_datasets; di++) {
        const dataset_cfg *ds = &datasets[di];
        for (size_t si = 0; si < ds->n_splits; si++) {
            const char *split = ds->splits[si];
            char *path = NULL, *name = NULL;
            uint64_t data_hash = 0;
            dk_pp_tokens t;
            if (load_tokens(&d, &s, tok, ds, split, &path, &name, &data_hash, &t, &err) != 0) dk_dist_exit(&d, &err);
            for (int64_t i = 0; i < t.n_tokens; i++) /* token_level_replacement, as the seed before its forward */
                for (size_t k = 0; k < s.n_replace; k++)
                    if (t.ids[i] == s.replace_from[k]) {
                        t.ids[i] = (int32_t)s.replace_to[k];
                        break;
                    }
            for (int64_t i = 0; i < t.n_tokens && !dk_err_is_set(&err); i++)
                if (t.ids[i] < 0 || t.ids[i] >= V)
                    dk_err_set(&err, DK_EXIT_USAGE, "%s: token id %d is outside the vocabulary of %s (%lld): the "
                               "tokenizer %s does not belong to this model", path, t.ids[i], s.m.base_id,
                               (long long)V, s.m.tokenizer_path);
            if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);
            dk_pp_plan plan;
            dk_pp_plan_make(&t, s.batch_size, &plan);
            /* the stored rows: each sequence without its first skip_first tokens */
            int64_t *rows_at = dk_malloc((size_t)(t.n_seqs + 1) * sizeof *rows_at); /* (n_seqs + 1) */
            rows_at[0] = 0;
            for (int64_t q = 0; q < t.n_seqs; q++) {
                const int64_t kept = t.offsets[q + 1] - t.offsets[q] - s.skip_first;
                rows_at[q + 1] = rows_at[q] + (kept > 0 ? kept : 0);
            }
            char data_hash_hex[32];
            snprintf(data_hash_hex, sizeof data_hash_hex, "fnv1a64:%016llx", (unsigned long long)data_hash);
            for (int which = 0; which < (s.m.base_only ? 1 : 2); which++) {
                bool is_base = which == 0;
                const char *model_name = is_base ? base_name : ft_name;
                dk_pp_identity ident = {.model_id = s.m.base_id, .model_snapshot = s.m.base_snapshot,
                                        .adapter_id = is_base ? "" : s.m.ft_id, .dtype = s.dtype, .compute = compute,
                                        .layers = layers,
                                        .n_layers = n_layers, .d_model = H, .context_len = s.context_len,
                                        .skip_first = s.skip_first, .store_tokens = s.store_tokens};
                dk_store_layout layout = {.n_tokens = rows_at[t.n_seqs], .n_seqs = t.n_seqs,
                                          .n_chunks = plan.n_chunks, .d_model = H, .n_layers = n_layers,
                                          .seq_offsets = rows_at, .store_tokens = s.store_tokens,
                                          .skip_first = s.skip_first,
                                          .chunk_seq = plan.chunk_seq, .context_len = s.context_len,
                                          .model_id = is_base || s.m.ft_is_adapter ? s.m.base_id : s.m.ft_id,
                                          .model_snapshot = s.m.base_snapshot,
                                          .adapter_id = is_base || !s.m.ft_is_adapter ? "" : s.m.ft_id,
                                          .dtype = s.dtype, .tokenizer_hash = s.m.tokenizer_hash_hex,
                                          .dataset_hash = data_hash_hex, .dataset_path = path, .split = split,
                                          .config_yaml = s.config_yaml, .compute = compute};
                if (!is_base && !s.m.ft_is_adapter) ident.model_id = s.m.ft_id;
                memcpy(layout.layers, layers, sizeof(int64_t) * (size_t)n_layers);
                layout.fingerprint = dk_pp_fingerprint(&ident, &t, &plan);
                char *store = dk_sprintf("%s/%s/%s/%s.h5", s.store_dir, model_name, name, split);
                char label[128];
                snprintf(label, sizeof label, "%s/%s/%s", model_name, name, split);
                dk_backend *be = is_base || s.m.ft_is_adapter ? &base_be : &ft_be;
                const dk_lora_adapter *a = !is_base && s.m.ft_is_adapter ? &adapter : NULL;
                if (check_mode)
                    check_store(&d, &s, &layout, store, &tally);
                else if (do_store(&d, &s, &layout, &plan, &t, be, a, store, label, is_base, &hooks, &jt, &err) != 0)
                    dk_dist_exit(&d, &err);
                free(store);
            }
            dk_pp_plan_free(&plan);
            free(rows_at);
            dk_pp_tokens_free(&t);
            free(path);
            free(name);
        }
    }

    int exit_code = DK_EXIT_OK;
    if (check_mode) {
        exit_code = tally.n_pending == 0 ? DK_EXIT_OK : DK_EXIT_MUST_RUN;
        if (d.rank == 0 && exit_code == DK_EXIT_OK)
            printf("diff_preprocess: complete: the %d stores under %s are complete with the same plan fingerprints\n",
                   tally.n_stores, s.store_dir);
        else if (d.rank == 0)
            printf("diff_preprocess: must run: %d of %d stores to make or finish (the first: %s)\n", tally.n_pending,
                   tally.n_stores, tally.first);
        fflush(stdout);
    } else {
        report_totals(&d, &jt, compute, s.store_dir, t0);
    }
    if (ft_be_open) dk_backend_close(&ft_be);
    if (base_be_open) dk_backend_close(&base_be);
    if (ft_open && s.m.ft_is_adapter) dk_lora_free(&adapter);
    if (ft_open && !s.m.ft_is_adapter) dk_model_close(&full_ft);
    if (base_open) dk_model_close(&base);
    if (hc_loaded) dk_hf_config_free(&hc);
    if (tok) dk_tokenizer_free(tok);
    free(base_name);
    free(ft_name);
    for (int i = 0; i < n_datasets; i++) free(datasets[i].splits);
    free_settings(&s);
    dk_cfg_free(cfg);
    dk_dist_finalize(&d);
    return exit_code;
}
