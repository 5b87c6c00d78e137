/* kl.c — the KL divergence method (diff_kl; seed_spec §7): for the cached token sequences of each configured
 * dataset (train split), KL(finetuned ‖ base) of the next-token distributions at every position, per-token and
 * per-sequence statistics, and two max-activating tables (highest token KL, highest mean KL per sequence).
 *
 * Work split: the sequences are cut into batches of method_params.batch_size, the same whatever the rank count;
 * batch b runs on rank b % nranks, so every sequence sees the same forward on 1, 2 or 3 ranks and the results
 * are bit-identical. Per-token values are placed at their global offsets and summed to rank 0 (every slot has
 * exactly one non-zero writer, so the sum is exact).
 *
 * Where KL is computed: on the CPU backend, from host logits in double (dk_cpu_kl_rows, rows over threads). When
 * both models run on the GPU (device=cuda, or auto with a GPU), the logits stay there and KL is computed there
 * in fp32 (dk_backend_kl_rows): within 8·2^-24·(max|z|/T + ln V + 1) + 4e-6·KL of the double value on the same
 * logits (kernels/cuda/diffops.cuh; checked by tests/gpu/test_kl_cuda.c), i.e. ~2e-5 for logits up to 30 at
 * V = 262144. Only n_tokens floats per batch come back instead of 2·n_tokens·V, and no host logits buffers are
 * needed. Both paths are deterministic per batch, so the rank count still changes nothing.
 *
 * Results (docs/formats.md, "kl"): <dataset>/per_token_kl (tokens), <dataset>/mean_per_sample_kl (sequences),
 * <dataset>/tokens and sequence_offsets (the sequences as run), statistics as attributes; max_act/per_token/
 * <dataset> and max_act/mean_per_sample/<dataset>; kl/<dataset>.json with the seed's fields; a summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format.h"
#include "core/finite.h"
#include "core/host_memory.h"
#include "core/parallel.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "kernels/cpu/diffops.h"
#include "methods/maxact.h"
#include "methods/method_job.h"
#include "methods/methods.h"
#include "methods/stats.h"

typedef struct kl_dataset {
    char *name;                 /* short name: results paths and messages */
    const char *id;             /* the configured id */
    int64_t n_seqs, n_tokens;   /* as run: first max_samples sequences of >= 2 tokens, cut to max_tokens */
    int32_t *tokens;            /* (n_tokens) */
    int64_t *offsets;           /* (n_seqs + 1) */
    int64_t *store_seq;         /* (n_seqs) the sequence's index in the store (max-act examples name it) */
} kl_dataset;

typedef struct kl_state {
    int64_t batch_size, max_samples, max_tokens, n_examples;
    double temperature;
    int n_datasets;
    kl_dataset ds[3];
} kl_state;

static const char *const GROUPS[3] = {"dataset.chat", "dataset.pretraining", "organism.dataset"};
static const char *const USE_KEYS[3] = {"diffing.method.datasets.use_chat_dataset",
                                        "diffing.method.datasets.use_pretraining_dataset",
                                        "diffing.method.datasets.use_training_dataset"};

/* The sequences the seed runs: the first max_samples of the store, those of >= 2 tokens, cut to max_tokens. */
static void select_sequences(const dk_act_pair *p, const kl_state *st, kl_dataset *ds) {
    int64_t n = p->n_seqs;
    if (st->max_samples > 0 && st->max_samples < n) n = st->max_samples;
    ds->offsets = dk_malloc((size_t)(n + 1) * sizeof *ds->offsets);
    ds->store_seq = dk_malloc((size_t)(n ? n : 1) * sizeof *ds->store_seq);
    int64_t total = 0, kept = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t len = p->seq_offsets[s + 1] - p->seq_offsets[s];
        if (len < 2) continue;
        total += len < st->max_tokens ? len : st->max_tokens;
    }
    ds->tokens = dk_malloc((size_t)(total ? total : 1) * sizeof *ds->tokens);
    ds->offsets[0] = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t len = p->seq_offsets[s + 1] - p->seq_offsets[s];
        if (len < 2) continue;
        if (len > st->max_tokens) len = st->max_tokens;
        memcpy(ds->tokens + ds->offsets[kept], p->tokens + p->seq_offsets[s], (size_t)len * sizeof *ds->tokens);
        ds->store_seq[kept] = s;
        ds->offsets[kept + 1] = ds->offsets[kept] + len;
        kept++;
    }
    ds->n_seqs = kept;
    ds->n_tokens = total;
}

static int kl_prepare(dk_method_job *job, dk_err *err) {
    kl_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    st->batch_size = dk_cfg_int(cfg, "diffing.method.method_params.batch_size");
    st->max_samples = dk_cfg_has(cfg, "diffing.method.method_params.max_samples")
                          ? dk_cfg_int(cfg, "diffing.method.method_params.max_samples") : 0;
    st->max_tokens = dk_cfg_int(cfg, "diffing.method.method_params.max_tokens_per_sample");
    st->temperature = dk_cfg_float(cfg, "diffing.method.method_params.temperature");
    st->n_examples = dk_cfg_int(cfg, "diffing.method.analysis.max_activating_examples.num_examples");
    if (st->batch_size < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.method_params.batch_size = %lld: must be at least 1",
                          (long long)st->batch_size);
    if (st->max_tokens < 2)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.method_params.max_tokens_per_sample = %lld: must be at "
                          "least 2 (a next-token distribution needs a token to predict from)", (long long)st->max_tokens);
    if (!(st->temperature > 0))
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.method_params.temperature = %g: must be > 0",
                          st->temperature);
    if (st->n_examples < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.analysis.max_activating_examples.num_examples = %lld: "
                          "must be >= 0", (long long)st->n_examples);
    int64_t *layers = NULL, n_layers = 0;
    if (dk_method_store_layers(job, &layers, &n_layers, err) != 0) return -1;
    const int64_t layer = layers[0]; /* only the tokens are read: any cached layer will do */
    free(layers);
    for (int g = 0; g < 3; g++) {
        if (!dk_cfg_bool(cfg, USE_KEYS[g])) continue;
        char *id_key = dk_sprintf("%s.id", GROUPS[g]);
        bool configured = dk_cfg_has(cfg, id_key);
        if (configured) st->ds[st->n_datasets].id = dk_cfg_str(cfg, id_key);
        free(id_key);
        if (!configured) {
            if (job->d.rank == 0) LOG_INFO("diff_kl: %s is left out of the configuration; skipped", GROUPS[g]);
            continue;
        }
        kl_dataset *ds = &st->ds[st->n_datasets];
        dk_act_pair pair;
        if (dk_method_open_stores(job, GROUPS[g], "train", layer, &pair, &ds->name, err) != 0) return -1;
        select_sequences(&pair, st, ds);
        dk_act_pair_close(&pair);
        st->n_datasets++;
        if (ds->n_seqs == 0)
            return dk_err_set(err, DK_EXIT_USAGE, "%s (train): no sequence of 2 tokens or more among the first %lld: "
                              "nothing to compute KL on", ds->name, (long long)st->max_samples);
    }
    if (st->n_datasets == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "no dataset to run on: every diffing.method.datasets.use_* is false or "
                          "its dataset group is left out");
    return 0;
}

/* Names the model and sequence of a non-finite logit for the error message. */
static int nonfinite_logits(const dk_method_job *job, const kl_dataset *ds, const float *logits, int64_t T, int64_t V,
                            int64_t seq0, const int64_t *seq_start, int64_t n_seqs, bool finetuned, dk_err *err) {
    dk_nonfinite_at at;
    if (!dk_first_nonfinite_in_batch(logits, T, V, seq_start, n_seqs, &at)) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s produced non-finite logits (%s) on %s, sequence %lld (store sequence "
                      "%lld), token %lld: check the %s weights (adapter scale, NaN in the checkpoint)",
                      finetuned ? job->pair.ft_id : job->pair.base_id, dk_nonfinite_name(at.value), ds->name,
                      (long long)(seq0 + at.seq), (long long)ds->store_seq[seq0 + at.seq], (long long)at.token,
                      finetuned ? "finetuned model's" : "base model's");
}

typedef struct kl_out {
    float *per_token;       /* (n_tokens) global, this rank's slots filled */
    float *per_seq;         /* (n_seqs) */
    dk_maxact max_token, mean_seq;
} kl_out;

/* Both forwards of one batch with logits on the host, checked for non-finite values (the error names the model,
 * sequence and token). */
static int forward_both(dk_method_job *job, const kl_dataset *ds, const dk_batch *batch, int64_t s0,
                        float *logits_base, float *logits_ft, dk_err *err) {
    const int64_t V = dk_model_pair_model(&job->pair, false)->cfg.vocab_size;
    int rc = 0;
    for (int side = 0; side < 2 && rc == 0; side++) {
        float *logits = side ? logits_ft : logits_base;
        dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = logits};
        rc = dk_model_pair_forward(&job->pair, side == 1, batch, &plan, err);
        if (rc == 0)
            rc = nonfinite_logits(job, ds, logits, batch->n_tokens, V, s0, batch->seq_start, batch->n_seqs, side == 1,
                                  err);
    }
    return rc;
}

/* KL per token of one batch on the GPU (both backends CUDA): the logits stay on the device. A non-finite KL
 * means a non-finite logit (finite logits give a finite KL); the batch is then run again with host logits so
 * that the error names the model, sequence and token as the host path does. */
static int kl_on_device(dk_method_job *job, const kl_state *st, const kl_dataset *ds, const dk_batch *batch,
                        int64_t s0, float *kl, dk_err *err) {
    dk_model_pair *p = &job->pair;
    if (dk_backend_kl_rows(dk_model_pair_backend(p, false), dk_model_pair_adapter(p, false),
                           dk_model_pair_backend(p, true), dk_model_pair_adapter(p, true), batch,
                           (float)st->temperature, kl, err) != 0)
        return -1;
    const int64_t bad = dk_first_nonfinite_f32(kl, (size_t)batch->n_tokens);
    if (bad < 0) return 0;
    const size_t n = (size_t)batch->n_tokens * (size_t)dk_model_pair_model(p, false)->cfg.vocab_size;
    float *logits_base = dk_malloc(n * sizeof(float)), *logits_ft = dk_malloc(n * sizeof(float));
    int rc = forward_both(job, ds, batch, s0, logits_base, logits_ft, err);
    if (rc == 0)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: KL on the GPU is %s at token %lld of the batch of sequences %lld.., "
                        "but a rerun gives finite logits for both models (a bug: report it)", ds->name,
                        dk_nonfinite_name(kl[bad]), (long long)bad, (long long)s0);
    free(logits_base);
    free(logits_ft);
    return rc;
}

typedef struct kl_rows_job {
    float *kl;
    const float *logits_ft, *logits_base;
    int64_t V;
    float temperature;
} kl_rows_job;

static void kl_rows_block(void *ctx, int64_t r0, int64_t r1) {
    kl_rows_job *j = ctx;
    dk_cpu_kl_rows(j->kl + r0, j->logits_ft + r0 * j->V, j->logits_base + r0 * j->V, r1 - r0, j->V, j->temperature);
}

/* One batch of sequences [s0, s1) of ds: both forwards, KL per token, the tables. logits_base and logits_ft are
 * (T, V) host buffers, or both NULL to compute KL on the GPU. */
static int run_batch(dk_method_job *job, const kl_state *st, const kl_dataset *ds, int64_t s0, int64_t s1,
                     float *logits_base, float *logits_ft, kl_out *out, dk_err *err) {
    const int64_t V = dk_model_pair_model(&job->pair, false)->cfg.vocab_size;
    const int64_t n = s1 - s0, t0 = ds->offsets[s0], T = ds->offsets[s1] - t0;
    int64_t *ids = dk_malloc((size_t)T * sizeof *ids), *seq_start = dk_malloc((size_t)(n + 1) * sizeof *seq_start);
    for (int64_t t = 0; t < T; t++) ids[t] = ds->tokens[t0 + t];
    for (int64_t i = 0; i <= n; i++) seq_start[i] = ds->offsets[s0 + i] - t0;
    dk_batch batch = {ids, T, seq_start, n, true};
    float *kl = out->per_token + t0;
    int rc;
    if (logits_base) {
        rc = forward_both(job, ds, &batch, s0, logits_base, logits_ft, err);
        if (rc == 0) {
            kl_rows_job rows = {kl, logits_ft, logits_base, V, (float)st->temperature};
            dk_parallel_rows(job->threads, T, 16, kl_rows_block, &rows); /* rows are independent: same bits */
        }
    } else {
        rc = kl_on_device(job, st, ds, &batch, s0, kl, err);
    }
    if (rc == 0) {
        for (int64_t i = 0; i < n; i++) {
            const float *row = kl + seq_start[i];
            const int64_t len = seq_start[i + 1] - seq_start[i];
            double sum = 0, mx = -INFINITY;
            for (int64_t t = 0; t < len; t++) sum += row[t], mx = row[t] > mx ? row[t] : mx;
            out->per_seq[s0 + i] = (float)(sum / (double)len);
            const int32_t *toks = ds->tokens + t0 + seq_start[i];
            dk_maxact_offer(&out->max_token, mx, s0 + i, toks, len, row);
            dk_maxact_offer(&out->mean_seq, sum / (double)len, s0 + i, toks, len, row);
        }
    }
    free(ids);
    free(seq_start);
    return rc;
}

static cJSON *stats_of(const float *v, int64_t n) {
    static const char *const keys[] = {"mean", "std", "median", "min", "max", "percentiles"};
    static const double pct[] = {25, 50, 75};
    return dk_stats_json(v, n, keys, 6, pct, 3);
}

static void write_dataset(dk_method_job *job, const kl_dataset *ds, kl_out *out, cJSON *summary) {
    dk_results *r = &job->res;
    char path[512];
    snprintf(path, sizeof path, "%s/per_token_kl", ds->name);
    dk_results_f32(r, path, 1, &ds->n_tokens, out->per_token);
    snprintf(path, sizeof path, "%s/mean_per_sample_kl", ds->name);
    dk_results_f32(r, path, 1, &ds->n_seqs, out->per_seq);
    snprintf(path, sizeof path, "%s/tokens", ds->name);
    dk_results_i32(r, path, 1, &ds->n_tokens, ds->tokens);
    const int64_t n1 = ds->n_seqs + 1;
    snprintf(path, sizeof path, "%s/sequence_offsets", ds->name);
    dk_results_i64(r, path, 1, &n1, ds->offsets);
    snprintf(path, sizeof path, "%s/store_sequence_index", ds->name);
    dk_results_i64(r, path, 1, &ds->n_seqs, ds->store_seq);
    dk_results_attr_str(r, ds->name, "dataset_id", ds->id);
    snprintf(path, sizeof path, "max_act/per_token/%s", ds->name);
    dk_maxact_write(&out->max_token, r, path, job->tok);
    snprintf(path, sizeof path, "max_act/mean_per_sample/%s", ds->name);
    dk_maxact_write(&out->mean_seq, r, path, job->tok);

    /* the seed's kl/<dataset>.json */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset_id", ds->id);
    cJSON *pt = stats_of(out->per_token, ds->n_tokens), *ps = stats_of(out->per_seq, ds->n_seqs);
    cJSON_AddItemToObject(j, "per_token_statistics", pt);
    cJSON_AddItemToObject(j, "mean_per_sample_statistics", ps);
    cJSON_AddNumberToObject(j, "total_tokens_processed", (double)ds->n_tokens);
    cJSON_AddNumberToObject(j, "total_sequences_processed", (double)ds->n_seqs);
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddStringToObject(meta, "base_model", job->pair.base_id);
    cJSON_AddStringToObject(meta, "finetuned_model", job->pair.ft_id);
    cJSON_AddNumberToObject(meta, "temperature", dk_cfg_float(job->cfg, "diffing.method.method_params.temperature"));
    snprintf(path, sizeof path, "%s/per_token_statistics", ds->name);
    for (cJSON *it = pt->child; it; it = it->next) dk_results_attr_f64(r, path, it->string, it->valuedouble);
    snprintf(path, sizeof path, "%s/mean_per_sample_statistics", ds->name);
    for (cJSON *it = ps->child; it; it = it->next) dk_results_attr_f64(r, path, it->string, it->valuedouble);

    /* the summary: what a reader (or the agent) needs at a glance */
    cJSON *sd = cJSON_AddObjectToObject(summary, ds->name);
    cJSON_AddNumberToObject(sd, "per_token_mean", cJSON_GetObjectItem(pt, "mean")->valuedouble);
    cJSON_AddNumberToObject(sd, "per_token_median", cJSON_GetObjectItem(pt, "median")->valuedouble);
    cJSON_AddNumberToObject(sd, "mean_per_sample_mean", cJSON_GetObjectItem(ps, "mean")->valuedouble);
    cJSON_AddNumberToObject(sd, "tokens", (double)ds->n_tokens);
    cJSON_AddNumberToObject(sd, "sequences", (double)ds->n_seqs);
    cJSON *ex = cJSON_AddArrayToObject(sd, "top_mean_kl_examples");
    dk_maxact_entry *e = dk_maxact_sorted(&out->mean_seq);
    for (int64_t i = 0; i < out->mean_seq.n && i < 5; i++) {
        dk_err derr = {0};
        char *text = dk_tokenizer_decode(job->tok, e[i].tokens, (size_t)e[i].n_tokens, true, NULL, &derr);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "mean_kl", e[i].score);
        if (text && strlen(text) > 128) text[128] = 0; /* a snippet (may cut a UTF-8 character: cJSON escapes it) */
        cJSON_AddStringToObject(x, "text", text ? text : "");
        free(text);
        cJSON_AddItemToArray(ex, x);
    }
    free(e);
    char *file = dk_sprintf("%s.json", ds->name);
    dk_results_json(r, file, j);
    free(file);
}

static int kl_run(dk_method_job *job, dk_err *err) {
    kl_state *st = job->state;
    const int64_t V = dk_model_pair_model(&job->pair, false)->cfg.vocab_size;
    const bool on_device = dk_backend_kl_on_device(dk_model_pair_backend(&job->pair, false),
                                                   dk_model_pair_backend(&job->pair, true));
    cJSON *summary = cJSON_CreateObject();
    cJSON_AddStringToObject(summary, "method", "kl");
    cJSON *sum_ds = cJSON_AddObjectToObject(summary, "datasets");
    int rc = 0;
    for (int di = 0; di < st->n_datasets && rc == 0; di++) {
        kl_dataset *ds = &st->ds[di];
        int64_t max_T = 0;
        for (int64_t s0 = 0; s0 < ds->n_seqs; s0 += st->batch_size) {
            int64_t s1 = s0 + st->batch_size < ds->n_seqs ? s0 + st->batch_size : ds->n_seqs;
            if (ds->offsets[s1] - ds->offsets[s0] > max_T) max_T = ds->offsets[s1] - ds->offsets[s0];
        }
        /* on the GPU the logits never come to the host; else both models' logits of a batch are held here */
        const uint64_t need = on_device ? 0 : 2ull * (uint64_t)max_T * (uint64_t)V * sizeof(float);
        if (dk_host_memory_check(need, "diff_kl's logits of both models for one batch",
                                 "lower diffing.method.method_params.batch_size or max_tokens_per_sample", err) != 0) {
            rc = -1;
        }
        if (dk_dist_agree(&job->d, err) != 0) {
            rc = -1;
            break;
        }
        float *logits_base = on_device ? NULL : dk_malloc((size_t)(max_T * V) * sizeof(float));
        float *logits_ft = on_device ? NULL : dk_malloc((size_t)(max_T * V) * sizeof(float));
        kl_out out = {0};
        out.per_token = dk_calloc((size_t)(ds->n_tokens ? ds->n_tokens : 1), sizeof(float));
        out.per_seq = dk_calloc((size_t)ds->n_seqs, sizeof(float));
        dk_maxact_init(&out.max_token, st->n_examples, false);
        dk_maxact_init(&out.mean_seq, st->n_examples, false);
        char label[160];
        snprintf(label, sizeof label, "kl %s", ds->name);
        dk_progress prog;
        dk_progress_begin(&prog, label, (double)ds->n_tokens, "tokens");
        for (int64_t b = 0, s0 = 0; s0 < ds->n_seqs && rc == 0; b++, s0 += st->batch_size) {
            const int64_t s1 = s0 + st->batch_size < ds->n_seqs ? s0 + st->batch_size : ds->n_seqs;
            if (b % job->d.nranks != job->d.rank) continue;
            rc = run_batch(job, st, ds, s0, s1, logits_base, logits_ft, &out, err);
            /* rank 0 sees its own share: scale to an estimate of the whole */
            dk_progress_add(&prog, (double)(ds->offsets[s1] - ds->offsets[s0]) * job->d.nranks);
        }
        dk_progress_set_at(&prog, (double)ds->n_tokens, dk_time_now()); /* the estimate above may overshoot */
        dk_progress_end(&prog);
        free(logits_base);
        free(logits_ft);
        if (dk_dist_agree(&job->d, err) != 0) rc = -1;
        if (rc == 0) {
            /* every slot was written by exactly one rank, the others hold 0: the sums are exact */
            float *all_tok = job->d.rank == 0 ? dk_malloc((size_t)(ds->n_tokens ? ds->n_tokens : 1) * sizeof(float)) : NULL;
            float *all_seq = job->d.rank == 0 ? dk_malloc((size_t)ds->n_seqs * sizeof(float)) : NULL;
            dk_dist_reduce_sum_f32(&job->d, out.per_token, all_tok, ds->n_tokens);
            dk_dist_reduce_sum_f32(&job->d, out.per_seq, all_seq, ds->n_seqs);
            dk_maxact_gather(&out.max_token, &job->d);
            dk_maxact_gather(&out.mean_seq, &job->d);
            if (job->d.rank == 0) {
                free(out.per_token), free(out.per_seq);
                out.per_token = all_tok, out.per_seq = all_seq;
                write_dataset(job, ds, &out, sum_ds);
                LOG_INFO("diff_kl %s: %lld sequences, %lld tokens, mean KL per token %.4g", ds->name,
                         (long long)ds->n_seqs, (long long)ds->n_tokens,
                         cJSON_GetObjectItem(cJSON_GetObjectItem(sum_ds, ds->name), "per_token_mean")->valuedouble);
            }
        }
        free(out.per_token);
        free(out.per_seq);
        dk_maxact_free(&out.max_token);
        dk_maxact_free(&out.mean_seq);
    }
    dk_results_summary(&job->res, summary);
    return rc;
}

static void kl_free(dk_method_job *job) {
    kl_state *st = job->state;
    if (!st) return;
    for (int i = 0; i < 3; i++) {
        free(st->ds[i].name), free(st->ds[i].tokens), free(st->ds[i].offsets), free(st->ds[i].store_seq);
    }
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_kl = {
    .job = "diff_kl",
    .method = "kl",
    .results_subdir = "kl",
    .usage = "KL(finetuned || base) of the next-token distributions at every position of the cached token\n"
             "sequences of each configured dataset (train split), with statistics and max-activating examples.\n"
             "Needs the stores of diff_preprocess. Settings: diffing.method.* (configs/diffing/method/kl.yaml).\n"
             "    mpirun -n 2 diff_kl organism=NAME model=NAME [diffing.method.method_params.max_samples=1000]\n",
    .needs_models = true,
    .prepare = kl_prepare,
    .run = kl_run,
    .free_state = kl_free,
};
