/* pca.c — the PCA method (diff_pca; seed_spec §8, dictionary_spec §4): incremental PCA of activation
 * differences (or of one model's activations), a variance analysis, and max-activating examples of the
 * projections on every component, positive and negative.
 *
 * Training data (dict_data.h): the train split of the configured datasets at each layer, rows in the seed's
 * local-shuffled order (epochs = 1), batches of training.batch_size rows, the last incomplete one dropped
 * (drop_last). The seed fits the raw rows (its normalization statistics are computed and not applied), so no
 * normaliser here.
 *
 * Work split and merge: batch g runs on rank g % nranks, which fits its batches in order (kernels/cpu/ipca.h,
 * partial_fit); rank 0 then merges the ranks' states in rank order. Because no component is dropped before the
 * end, every state is the exact PCA of the rows it saw, and the merge of two is the exact PCA of their union:
 * 1, 2 or 3 ranks agree to fp64 rounding (tests/methods/pca_ranks.sh: components within 1e-6, variances within
 * 1e-9 relative). With n_components = d this equals torchdr/scikit-learn's IncrementalPCA on the same batches
 * (tests/methods/test_ipca.c against scikit-learn).
 *
 * Max-activating examples (the seed's positive_examples.db / negative_examples.db): for the first
 * max_num_samples sequences of each dataset (analysis split, whole sequences, the target's rows), the
 * projections P = (x − mean) · componentsᵀ in fp32 (torchdr's transform); per component the score of a sequence
 * is max_t P (positive table) and −min_t P (negative table), with the per-token projections stored densely.
 * Sequences are spread over the ranks (s % nranks) and the tables merged (methods/maxact.h).
 *
 * Results (docs/formats.md, "pca"): layer_{L}/{target}/{config_tag}/ components, explained_variance(_ratio),
 * singular_values, mean, var, noise_variance, analysis/cumulative_variance_ratio, max_act/{positive,negative}/
 * {dataset}/component_{i}; the seed's training_metrics.json and analysis/variance_analysis.json; a summary.
 * Component steering (generations steered along a component) is not implemented yet: refused when enabled. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "kernels/cpu/ipca.h"
#include "methods/dict_data.h"
#include "methods/maxact.h"
#include "methods/method_job.h"
#include "methods/methods.h"

typedef struct pca_layer {
    int64_t layer;
    dk_dict_set train;
    dk_dict_set an;              /* the analysis split (another split than train), else unused */
    bool an_own;
} pca_layer;

typedef struct pca_state {
    dk_dict_target target;
    int64_t batch, nc_cfg, num_samples, shard, skip;
    bool shuffle;
    char config_tag[96];
    bool analysis, maxact;
    int64_t n_max, max_seqs;
    const char *an_split;
    int64_t n_layers;
    pca_layer *L;
} pca_state;

#define KEY(k) "diffing.method." k

/* "all_datasets" or the sorted join of chat/pretrain/train, then _ignore_first_n_{n} (the seed's config tag). */
static void config_tag(const dk_cfg *cfg, int64_t skip, char *out, size_t cap) {
    const bool c = dk_cfg_bool(cfg, KEY("datasets.use_chat_dataset")), p = dk_cfg_bool(cfg, KEY("datasets.use_pretraining_dataset")),
               t = dk_cfg_bool(cfg, KEY("datasets.use_training_dataset"));
    if (c && p && t) snprintf(out, cap, "all_datasets");
    else snprintf(out, cap, "%s%s%s%s%s", c ? "chat" : "", c && (p || t) ? "_" : "", p ? "pretrain" : "",
                  p && t ? "_" : "", t ? "train" : "");
    if (skip > 0) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "_ignore_first_n_%lld", (long long)skip);
    }
}

static int pca_prepare(dk_method_job *job, dk_err *err) {
    pca_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    if (dk_dict_target_parse(dk_cfg_str(cfg, KEY("training.target")), KEY("training.target"), false, &st->target,
                             err) != 0)
        return -1;
    st->batch = dk_cfg_int(cfg, KEY("training.batch_size"));
    st->nc_cfg = dk_cfg_has(cfg, KEY("training.n_components")) ? dk_cfg_int(cfg, KEY("training.n_components")) : 0;
    st->num_samples = dk_cfg_int(cfg, KEY("training.num_samples"));
    st->shuffle = dk_cfg_bool(cfg, KEY("training.local_shuffling"));
    st->shard = dk_cfg_int(cfg, KEY("training.local_shuffling_shard_size"));
    st->skip = dk_cfg_int(cfg, KEY("datasets.ignore_first_n_tokens_per_sample_during_training"));
    st->analysis = dk_cfg_bool(cfg, KEY("analysis.enabled"));
    st->maxact = st->analysis && dk_cfg_bool(cfg, KEY("analysis.max_activating_examples.enabled"));
    st->n_max = dk_cfg_int(cfg, KEY("analysis.max_activating_examples.n_max_activations"));
    st->max_seqs = dk_cfg_int(cfg, KEY("analysis.max_activating_examples.max_num_samples"));
    st->an_split = dk_cfg_str(cfg, KEY("analysis.max_activating_examples.split"));
    config_tag(cfg, st->skip, st->config_tag, sizeof st->config_tag);
    if (st->batch < 1)
        return dk_err_set(err, DK_EXIT_USAGE, KEY("training.batch_size") " = %lld: must be at least 1", (long long)st->batch);
    if (st->shard < 1 || st->num_samples < 1)
        return dk_err_set(err, DK_EXIT_USAGE, KEY("training.num_samples") " and local_shuffling_shard_size must be >= 1");
    if (st->n_max < 0 || st->max_seqs < 0)
        return dk_err_set(err, DK_EXIT_USAGE, KEY("analysis.max_activating_examples") ".n_max_activations and "
                          "max_num_samples must be >= 0");
    if (st->analysis && dk_cfg_bool(cfg, KEY("analysis.component_steering.enabled")))
        return dk_err_set(err, DK_EXIT_USAGE, KEY("analysis.component_steering.enabled") " = true: component steering "
                          "(the seed's steered generations along a component) is not implemented in diffkit yet; set it "
                          "to false");
    if (dk_cfg_bool(cfg, KEY("datasets.normalization.enabled")) && job->d.rank == 0)
        LOG_WARN("diff_pca: datasets.normalization.enabled = true has no effect: the seed fits PCA on the raw rows");

    int64_t *layers = NULL;
    if (dk_cfg_has(cfg, KEY("layers"))) {
        if (dk_method_layers(cfg, KEY("layers"), job->pair.n_layers, &layers, &st->n_layers, err) != 0) return -1;
    } else if (dk_method_store_layers(job, &layers, &st->n_layers, err) != 0) {
        return -1;
    }
    st->L = dk_calloc((size_t)st->n_layers, sizeof *st->L);
    int rc = 0;
    for (int64_t i = 0; i < st->n_layers && rc == 0; i++) {
        pca_layer *pl = &st->L[i];
        pl->layer = layers[i];
        rc = dk_dict_set_open(job, "train", pl->layer, st->target, st->skip, st->num_samples, &pl->train, err);
        if (rc != 0) break;
        const int64_t d = pl->train.d, nc = st->nc_cfg ? st->nc_cfg : d;
        if (pl->train.total < st->batch)
            rc = dk_err_set(err, DK_EXIT_USAGE, "layer %lld: %lld rows in all, fewer than one batch of %s = %lld (the "
                            "last incomplete batch is dropped, as the seed does): lower it or cache more text",
                            (long long)pl->layer, (long long)pl->train.total, KEY("training.batch_size"),
                            (long long)st->batch);
        else if (nc < 1 || nc > d || nc > st->batch)
            rc = dk_err_set(err, DK_EXIT_USAGE, KEY("training.n_components") " = %lld: must be between 1 and d_model "
                            "(%lld) and at most the batch size (%lld)", (long long)nc, (long long)d, (long long)st->batch);
        else if (st->maxact && strcmp(st->an_split, "train") != 0) {
            rc = dk_dict_set_open(job, st->an_split, pl->layer, st->target, 0, 0, &pl->an, err);
            pl->an_own = rc == 0;
        }
    }
    free(layers);
    return rc;
}

/* ---- fitting ------------------------------------------------------------------------------------------------ */

/* Rank r > 0 sends its state to rank 0, which merges them in rank order. */
static int gather_merge(const dk_method_job *job, dk_ipca *p) {
    const int64_t d = p->d;
    int rc = 0;
    if (job->d.rank == 0) {
        dk_ipca other;
        dk_ipca_init(&other, d);
        for (int r = 1; r < job->d.nranks; r++) {
            int64_t head[3];
            MPI_Recv(head, 3, MPI_INT64_T, r, 71, job->d.comm, MPI_STATUS_IGNORE);
            other.n_seen = head[0], other.last_batch = head[1], other.k = head[2];
            MPI_Recv(other.mean, (int)d, MPI_DOUBLE, r, 72, job->d.comm, MPI_STATUS_IGNORE);
            MPI_Recv(other.var, (int)d, MPI_DOUBLE, r, 73, job->d.comm, MPI_STATUS_IGNORE);
            MPI_Recv(other.S, (int)d, MPI_DOUBLE, r, 74, job->d.comm, MPI_STATUS_IGNORE);
            for (int64_t i = 0; i < other.k; i++)
                MPI_Recv(other.V + i * d, (int)d, MPI_DOUBLE, r, 75, job->d.comm, MPI_STATUS_IGNORE);
            if (rc == 0) rc = dk_ipca_merge(p, &other);
        }
        dk_ipca_free(&other);
    } else {
        int64_t head[3] = {p->n_seen, p->last_batch, p->k};
        MPI_Send(head, 3, MPI_INT64_T, 0, 71, job->d.comm);
        MPI_Send(p->mean, (int)d, MPI_DOUBLE, 0, 72, job->d.comm);
        MPI_Send(p->var, (int)d, MPI_DOUBLE, 0, 73, job->d.comm);
        MPI_Send(p->S, (int)d, MPI_DOUBLE, 0, 74, job->d.comm);
        for (int64_t i = 0; i < p->k; i++) MPI_Send(p->V + i * d, (int)d, MPI_DOUBLE, 0, 75, job->d.comm);
    }
    return rc;
}

static int fit_layer(dk_method_job *job, const pca_state *st, pca_layer *pl, dk_ipca *p, int64_t *n_batches,
                     dk_err *err) {
    const int64_t d = pl->train.d, B = st->batch;
    dk_dict_order order;
    dk_dict_order_init(&order, &pl->train, st->shard, 1, st->shuffle, (uint64_t)job->seed);
    *n_batches = pl->train.total / B;
    const uint64_t need = (uint64_t)B * (uint64_t)d * (4 + 8 + 8) + (uint64_t)(B + d + 1) * (uint64_t)d * 8 * 2;
    int rc = dk_host_memory_check(need, "diff_pca's batch and its SVD", "lower diffing.method.training.batch_size", err);
    float *x = dk_malloc((size_t)(B * d) * sizeof(float)); /* (B, d) */
    int64_t *idx = dk_malloc((size_t)B * sizeof(int64_t));
    char label[128];
    snprintf(label, sizeof label, "pca layer %lld", (long long)pl->layer);
    dk_progress prog;
    dk_progress_begin(&prog, label, (double)(*n_batches * B), "rows");
    for (int64_t g = 0; g < *n_batches && rc == 0; g++) {
        if (g % job->d.nranks != job->d.rank) continue;
        dk_dict_order_get(&order, g * B, B, idx);
        rc = dk_dict_set_read(&pl->train, idx, B, x, err);
        if (rc == 0 && dk_ipca_partial_fit(p, x, B) != 0)
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "layer %lld, batch %lld: LAPACK's SVD did not converge", (long long)pl->layer,
                            (long long)g);
        dk_progress_add(&prog, (double)(B * job->d.nranks));
    }
    dk_progress_end(&prog);
    free(x), free(idx);
    dk_dict_order_free(&order);
    if (dk_dist_agree(&job->d, err) != 0) return -1;
    if (gather_merge(job, p) != 0)
        dk_err_set(err, DK_EXIT_RUNTIME, "layer %lld: LAPACK's SVD did not converge while merging the ranks' states",
                   (long long)pl->layer);
    return dk_dist_agree(&job->d, err);
}

/* ---- max-activating examples -------------------------------------------------------------------------------- */

typedef struct pca_tables {
    dk_maxact *pos, *neg;   /* (nc) per component */
} pca_tables;

static int maxact_dataset(dk_method_job *job, const pca_state *st, const dk_dict_set *set, int k, int64_t nc,
                          const float *mean, const float *comps, pca_tables *tb, dk_err *err) {
    const dk_dict_source *s = &set->src[k];
    const int64_t d = set->d, n_seqs = s->pair.n_seqs < st->max_seqs ? s->pair.n_seqs : st->max_seqs;
    int64_t max_len = 0;
    for (int64_t q = 0; q < n_seqs; q++) {
        const int64_t len = s->pair.seq_offsets[q + 1] - s->pair.seq_offsets[q];
        if (len > max_len) max_len = len;
    }
    float *x = dk_malloc((size_t)(max_len * d + 1) * sizeof(float));    /* (T, d) */
    float *proj = dk_malloc((size_t)(max_len * nc + 1) * sizeof(float)); /* (T, nc) */
    float *col = dk_malloc((size_t)(max_len + 1) * sizeof(float));      /* (T) one component's projections */
    int rc = 0;
    for (int64_t q = job->d.rank; q < n_seqs && rc == 0; q += job->d.nranks) {
        const int64_t row0 = s->pair.seq_offsets[q], T = s->pair.seq_offsets[q + 1] - row0;
        if (T == 0) continue;
        rc = dk_dict_read_range(set, k, row0, T, x, err);
        if (rc != 0) break;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < d; j++) x[t * d + j] -= mean[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nc, (int)d, 1.0f, x, (int)d, comps, (int)d,
                    0.0f, proj, (int)nc);
        const int32_t *toks = s->pair.tokens + row0;
        for (int64_t c = 0; c < nc; c++) {
            float mx = -INFINITY, mn = INFINITY;
            for (int64_t t = 0; t < T; t++) {
                const float v = proj[t * nc + c];
                col[t] = v;
                mx = v > mx ? v : mx;
                mn = v < mn ? v : mn;
            }
            if (dk_maxact_wants(&tb->pos[c], mx, q)) dk_maxact_offer(&tb->pos[c], mx, q, toks, T, col);
            if (dk_maxact_wants(&tb->neg[c], -mn, q)) dk_maxact_offer(&tb->neg[c], -mn, q, toks, T, col);
        }
    }
    free(x), free(proj), free(col);
    return rc;
}

/* ---- the job ------------------------------------------------------------------------------------------------ */

static void write_fit(dk_method_job *job, const pca_state *st, const pca_layer *pl, const dk_ipca *p, int64_t nc,
                      const double *comps, const double *sv, const double *ev, const double *ratio, double noise,
                      int64_t n_batches, const char *base, cJSON *sum_layer) {
    dk_results *r = &job->res;
    const int64_t d = pl->train.d, dims[2] = {nc, d};
    char path[512];
    float *c32 = dk_malloc((size_t)(nc * d) * sizeof(float));
    for (int64_t i = 0; i < nc * d; i++) c32[i] = (float)comps[i];
    double *cum = dk_malloc((size_t)nc * sizeof(double)), total = 0;
    for (int64_t i = 0; i < nc; i++) total += ratio[i], cum[i] = total;
#define P(name) (snprintf(path, sizeof path, "%s/%s", base, name), path)
    dk_results_f32(r, P("components"), 2, dims, c32);
    dk_results_f64(r, P("explained_variance"), 1, &nc, ev);
    dk_results_f64(r, P("explained_variance_ratio"), 1, &nc, ratio);
    dk_results_f64(r, P("singular_values"), 1, &nc, sv);
    dk_results_f64(r, P("mean"), 1, &d, p->mean);
    dk_results_f64(r, P("var"), 1, &d, p->var);
    dk_results_f64(r, P("analysis/cumulative_variance_ratio"), 1, &nc, cum);
#undef P
    dk_results_attr_f64(r, base, "noise_variance", noise);
    dk_results_attr_i64(r, base, "n_components", nc);
    dk_results_attr_i64(r, base, "n_samples_seen", p->n_seen);
    dk_results_attr_i64(r, base, "activation_dim", d);
    dk_results_attr_i64(r, base, "layer", pl->layer);
    dk_results_attr_i64(r, base, "batches", n_batches);
    dk_results_attr_str(r, base, "target", dk_dict_target_name(st->target));
    dk_results_attr_str(r, base, "config_tag", st->config_tag);
    dk_results_attr_f64(r, base, "total_variance_explained", total);

    /* the seed's JSON files */
    cJSON *tm = cJSON_CreateObject();
    cJSON_AddNumberToObject(tm, "layer", (double)pl->layer);
    cJSON_AddNumberToObject(tm, "activation_dim", (double)d);
    cJSON_AddNumberToObject(tm, "n_components", (double)nc);
    cJSON_AddNumberToObject(tm, "total_samples", (double)p->n_seen);
    cJSON_AddStringToObject(tm, "target", dk_dict_target_name(st->target));
    cJSON_AddNumberToObject(tm, "total_variance_explained", total);
    snprintf(path, sizeof path, "%s/training_metrics.json", base);
    dk_results_json(r, path, tm);
    cJSON *va = cJSON_CreateObject();
    cJSON_AddItemToObject(va, "explained_variance_ratio", cJSON_CreateDoubleArray(ratio, (int)nc));
    cJSON_AddItemToObject(va, "cumulative_variance_ratio", cJSON_CreateDoubleArray(cum, (int)nc));
    cJSON_AddNumberToObject(va, "total_variance_explained", total);
    snprintf(path, sizeof path, "%s/analysis/variance_analysis.json", base);
    dk_results_json(r, path, va);

    cJSON_AddStringToObject(sum_layer, "target", dk_dict_target_name(st->target));
    cJSON_AddStringToObject(sum_layer, "config_tag", st->config_tag);
    cJSON_AddNumberToObject(sum_layer, "n_components", (double)nc);
    cJSON_AddNumberToObject(sum_layer, "total_samples", (double)p->n_seen);
    cJSON_AddNumberToObject(sum_layer, "total_variance_explained", total);
    cJSON_AddItemToObject(sum_layer, "explained_variance_ratio_top10",
                          cJSON_CreateDoubleArray(ratio, (int)(nc < 10 ? nc : 10)));
    free(c32), free(cum);
}

static int pca_run(dk_method_job *job, dk_err *err) {
    pca_state *st = job->state;
    cJSON *summary = cJSON_CreateObject();
    cJSON_AddStringToObject(summary, "method", "pca");
    cJSON *sum_layers = cJSON_AddObjectToObject(summary, "layers");
    int rc = 0;
    for (int64_t li = 0; li < st->n_layers && rc == 0; li++) {
        pca_layer *pl = &st->L[li];
        const int64_t d = pl->train.d, nc = st->nc_cfg ? st->nc_cfg : d;
        dk_ipca p;
        dk_ipca_init(&p, d);
        int64_t n_batches = 0;
        rc = fit_layer(job, st, pl, &p, &n_batches, err);
        char base[256];
        snprintf(base, sizeof base, "layer_%lld/%s/%s", (long long)pl->layer, dk_dict_target_name(st->target),
                 st->config_tag);
        double *comps = dk_malloc((size_t)(nc * d) * sizeof(double)), *sv = dk_malloc((size_t)nc * sizeof(double));
        double *ev = dk_malloc((size_t)nc * sizeof(double)), *ratio = dk_malloc((size_t)nc * sizeof(double)), noise = 0;
        char lname[32];
        snprintf(lname, sizeof lname, "%lld", (long long)pl->layer);
        cJSON *sl = cJSON_AddObjectToObject(sum_layers, lname);
        if (rc == 0 && job->d.rank == 0) {
            dk_ipca_result(&p, nc, comps, sv, ev, ratio, &noise);
            write_fit(job, st, pl, &p, nc, comps, sv, ev, ratio, noise, n_batches, base, sl);
            LOG_INFO("diff_pca layer %lld: %lld rows in %lld batches, %lld components explain %.4f of the variance "
                     "(first: %.4f)", (long long)pl->layer, (long long)p.n_seen, (long long)n_batches, (long long)nc,
                     cJSON_GetObjectItem(sl, "total_variance_explained")->valuedouble, ratio[0]);
        }
        if (rc == 0 && st->maxact) {
            /* every rank projects: the mean and components in fp32, as torchdr's transform casts them */
            float *mean = dk_malloc((size_t)d * sizeof(float)), *c32 = dk_malloc((size_t)(nc * d) * sizeof(float));
            if (job->d.rank == 0)
                for (int64_t i = 0; i < nc * d; i++) c32[i] = (float)comps[i];
            if (job->d.rank == 0)
                for (int64_t j = 0; j < d; j++) mean[j] = (float)p.mean[j];
            MPI_Bcast(mean, (int)d, MPI_FLOAT, 0, job->d.comm);
            MPI_Bcast(c32, (int)(nc * d), MPI_FLOAT, 0, job->d.comm);
            const dk_dict_set *an = pl->an_own ? &pl->an : &pl->train;
            cJSON *ex = cJSON_AddObjectToObject(sl, "top_examples_component_0");
            for (int k = 0; k < an->n && rc == 0; k++) {
                pca_tables tb;
                tb.pos = dk_calloc((size_t)nc, sizeof *tb.pos);
                tb.neg = dk_calloc((size_t)nc, sizeof *tb.neg);
                for (int64_t c = 0; c < nc; c++) dk_maxact_init(&tb.pos[c], st->n_max, false), dk_maxact_init(&tb.neg[c], st->n_max, false);
                rc = maxact_dataset(job, st, an, k, nc, mean, c32, &tb, err);
                if (dk_dist_agree(&job->d, err) != 0) rc = -1;
                for (int64_t c = 0; c < nc && rc == 0; c++) {
                    dk_maxact_gather(&tb.pos[c], &job->d);
                    dk_maxact_gather(&tb.neg[c], &job->d);
                    if (job->d.rank != 0) continue;
                    char g[512];
                    snprintf(g, sizeof g, "%s/max_act/positive/%s/component_%lld", base, an->src[k].name, (long long)c);
                    dk_maxact_write(&tb.pos[c], &job->res, g, job->tok);
                    snprintf(g, sizeof g, "%s/max_act/negative/%s/component_%lld", base, an->src[k].name, (long long)c);
                    dk_maxact_write(&tb.neg[c], &job->res, g, job->tok);
                    if (c == 0) {
                        cJSON *dx = cJSON_AddObjectToObject(ex, an->src[k].name);
                        cJSON_AddItemToObject(dx, "positive", dk_maxact_texts(&tb.pos[c], job->tok, 3, 160));
                        cJSON_AddItemToObject(dx, "negative", dk_maxact_texts(&tb.neg[c], job->tok, 3, 160));
                    }
                }
                for (int64_t c = 0; c < nc; c++) dk_maxact_free(&tb.pos[c]), dk_maxact_free(&tb.neg[c]);
                free(tb.pos), free(tb.neg);
            }
            free(mean), free(c32);
        }
        free(comps), free(sv), free(ev), free(ratio);
        dk_ipca_free(&p);
    }
    dk_results_summary(&job->res, summary);
    return rc;
}

static void pca_free(dk_method_job *job) {
    pca_state *st = job->state;
    if (!st) return;
    for (int64_t i = 0; i < st->n_layers; i++) {
        dk_dict_set_close(&st->L[i].train);
        if (st->L[i].an_own) dk_dict_set_close(&st->L[i].an);
    }
    free(st->L);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_pca = {
    .job = "diff_pca",
    .method = "pca",
    .results_subdir = "pca",
    .usage = "Incremental PCA of activation differences (finetuned - base by default) at each layer, from the\n"
             "activation stores of diff_preprocess (train split), with the variance analysis and the\n"
             "max-activating examples of every component. Settings: diffing.method.* (configs/diffing/method/pca.yaml).\n"
             "    mpirun -n 2 diff_pca organism=NAME model=NAME [diffing.method.training.batch_size=4096]\n",
    .needs_models = false,
    .prepare = pca_prepare,
    .run = pca_run,
    .free_state = pca_free,
};
