/* dict_job.c — the two dictionary training jobs: diff_sae (a BatchTopK SAE on activation differences, the seed's
 * sae_difference; seed_spec §9) and diff_crosscoder (a BatchTopK crosscoder on paired [base, ft] rows; §10). One
 * job body serves both; what differs is the row target, the normaliser's source, k annealing and the run name.
 *
 * Per layer:
 *   1. rows      the train split's rows of the configured datasets (dict_data.h: the seed's proportional shares,
 *                leading tokens skipped, local shuffling reproducible from the seed and independent of the rank
 *                count), the validation split's for evaluation;
 *   2. normaliser the SAE samples its statistics (cached by input fingerprint), the crosscoder merges the stores'
 *                running statistics (sampled too when leading tokens are skipped, as the seed does);
 *   3. training  steps = max_steps or ceil(rows·epochs / batch_size); each step takes the next batch_size positions
 *                of the order, every rank its contiguous slice (dk_dict_slice), and runs the data-parallel step of
 *                dict_train.h (global BatchTopK, summed gradients: 1, 2 or 3 ranks give the same weights);
 *   4. checkpoints every validate_every_n_steps and at the end, rank 0 writes the whole training state (weights,
 *                Adam moments, dead-latent counters, threshold, step) atomically (dict_h5.h) under
 *                ${infrastructure.storage.checkpoint_dir}/<method>/<model>/<organism>/<run_name>.h5, keyed by a hash
 *                of everything that determines the weights; a rerun with the same key resumes from it (a killed run
 *                ends with the weights an uninterrupted run gives, bit for bit), another key is refused unless
 *                training.overwrite or overwrite is true;
 *   5. evaluation on the whole validation set with threshold inference (dictionary_spec §6): fraction of variance
 *                explained 1 − E‖x − x̂‖² / Σ_j Var(x_j) (variance about the mean, over the whole set; per layer
 *                for the crosscoder), the per-batch value the reference logs (labelled legacy), normalised MSE
 *                E‖x − x̂‖² / E‖x‖², L0, the fraction of latents that never fired, the training losses; at the
 *                end, with evaluation.ce_loss_recovered, the CE loss recovered by splicing the reconstruction into
 *                the finetuned model (dict_ce.h; the only step that opens the models);
 *   6. results   layer_{L}/{run_name}/: the dictionary in the reference's state-dict layout, the threshold, the
 *                normaliser, the loss curve, the metrics; training_metrics.json (the seed's fields); the SAELens
 *                export; the analysis of dict_analysis.h (latent statistics, latent scaling, latent activations).
 * Latent steering (generations steered along decoder rows) is not implemented yet: refused. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "io/act_store.h"
#include "io/file.h"
#include "methods/dict_analysis.h"
#include "methods/dict_ce.h"
#include "methods/dict_data.h"
#include "methods/dict_h5.h"
#include "methods/dict_model.h"
#include "methods/dict_norm.h"
#include "methods/dict_train.h"
#include "methods/dict_train_cuda.h"
#include "methods/method_job.h"
#include "methods/methods.h"
#include "model/backend.h"
#ifdef DIFFKIT_HAVE_CUDA
#include "model/forward_cuda.h"
#endif

#define KEY(k) "diffing.method." k

typedef struct dj_layer {
    int64_t layer;
    dk_dict_set train, val, an, an_bf;   /* an: analysis rows of the target; an_bf: stacked [base, ft] (SAE) */
    bool an_open, an_bf_open;
    char run_name[160];
} dj_layer;

typedef struct dj_state {
    dk_dict_kind kind;
    dk_dict_target target;
    int64_t expansion, batch, epochs, max_steps, validate_every, num_samples, num_val, shard, skip;
    double lr, init_norm;
    bool shuffle, norm_enabled, retrain;
    int64_t norm_subsample, norm_batch;
    double target_rms;
    const char *norm_cache;
    dk_dict_train_cfg tc;        /* steps filled per layer */
    bool analysis;
    dk_dict_analysis_cfg acfg;
    bool ce;                     /* evaluation.ce_loss_recovered */
    int64_t ce_seqs;
    char *ckpt_dir;
    bool gpu;                    /* training steps on the GPU (dict_train_cuda.h): device=cuda, or auto with GPUs */
    int64_t n_layers;
    dj_layer *L;
} dj_state;

/* ---- configuration ------------------------------------------------------------------------------------------ */

/* The seed's run names (training.py: sae_difference_run_name, crosscoder_run_name), '.' -> 'p', the organism
 * abbreviated to its initials when "science-of-finetuning/" + name would pass 96 characters. */
static int run_name(const dj_state *st, const dk_cfg *cfg, int64_t layer, char *out, size_t cap, dk_err *err) {
    const char *model = dk_cfg_str(cfg, "model.name"), *org = dk_cfg_str(cfg, "organism.name");
    char abbrev[64] = {0};
    for (int pass = 0; pass < 2; pass++) {
        const char *o = pass == 0 ? org : abbrev;
        char lr[32], tail[96] = "";
        snprintf(lr, sizeof lr, "%.0e", st->lr);
        size_t n = 0;
        if (st->kind == DK_DICT_SAE) {
            n = (size_t)snprintf(out, cap, "SAEdiff_%s-%s-%s-L%lld%s", st->target == DK_DICT_DIFF_BFT ? "bft" : "ftb", model,
                                 o, (long long)layer, st->norm_enabled ? "" : "-nonorm");
            if (st->init_norm != 1.0) n += (size_t)snprintf(out + n, cap - n, "-ei%.2e", st->init_norm);
        } else {
            n = (size_t)snprintf(out, cap, "%s-%s-L%lld-Crosscoder", model, o, (long long)layer);
        }
        if (st->skip > 0) n += (size_t)snprintf(out + n, cap - n, "-s%lld", (long long)st->skip);
        if (st->norm_enabled) n += (size_t)snprintf(out + n, cap - n, "-t%d", (int)st->target_rms);
        snprintf(tail, sizeof tail, "-k%lld-lr%s-x%lld", (long long)st->tc.k, lr, (long long)st->expansion);
        snprintf(out + n, cap - n, "%s", tail);
        for (char *c = out; *c; c++)
            if (*c == '.') *c = 'p';
        if (strlen("science-of-finetuning/") + strlen(out) <= 96) return 0;
        if (pass == 0) { /* initials of the organism's words */
            size_t a = 0;
            for (const char *c = org; *c && a + 1 < sizeof abbrev; c++)
                if (c == org || c[-1] == '_') abbrev[a++] = *c;
        }
    }
    return dk_err_set(err, DK_EXIT_USAGE, "the run name %s is longer than the seed allows (96 characters with "
                      "\"science-of-finetuning/\"): use shorter model or organism names", out);
}

/* The models are opened only for the CE loss recovered (the rest reads the stores). */
static bool wants_models(const dk_cfg *cfg) {
    return dk_cfg_has(cfg, KEY("evaluation.ce_loss_recovered")) && dk_cfg_bool(cfg, KEY("evaluation.ce_loss_recovered"));
}

static int dj_prepare(dk_method_job *job, dk_err *err) {
    dj_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    const bool sae = strcmp(job->spec->method, "sae_difference") == 0;
    st->kind = sae ? DK_DICT_SAE : DK_DICT_CROSSCODER;
    if (sae) {
        if (dk_dict_target_parse(dk_cfg_str(cfg, KEY("training.target")), KEY("training.target"), false, &st->target,
                                 err) != 0)
            return -1;
        if (st->target != DK_DICT_DIFF_FTB && st->target != DK_DICT_DIFF_BFT)
            return dk_err_set(err, DK_EXIT_USAGE, KEY("training.target") " = %s: the SAE on differences takes "
                              "difference_ftb or difference_bft", dk_dict_target_name(st->target));
    } else {
        st->target = DK_DICT_STACKED;
        const char *cn = dk_cfg_str(cfg, KEY("model.code_normalization"));
        if (strcmp(cn, "crosscoder") != 0)
            return dk_err_set(err, DK_EXIT_USAGE, KEY("model.code_normalization") " = %s: diffkit builds the seed's "
                              "default, crosscoder (w_j = sum of the decoder norms); set it to crosscoder", cn);
        if (!dk_cfg_bool(cfg, KEY("model.same_init_for_all_layers")) || !dk_cfg_bool(cfg, KEY("model.init_with_transpose")))
            return dk_err_set(err, DK_EXIT_USAGE, KEY("model.same_init_for_all_layers") " and init_with_transpose must "
                              "be true (the seed's settings; the others are not built)");
    }
    const char *type = dk_cfg_str(cfg, KEY("model.type"));
    if (strcmp(type, "batch-top-k") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, KEY("model.type") " = %s: diffkit builds batch-top-k only", type);
    st->expansion = dk_cfg_int(cfg, KEY("training.expansion_factor"));
    st->batch = dk_cfg_int(cfg, KEY("training.batch_size"));
    st->epochs = dk_cfg_int(cfg, KEY("training.epochs"));
    st->max_steps = dk_cfg_has(cfg, KEY("training.max_steps")) ? dk_cfg_int(cfg, KEY("training.max_steps")) : 0;
    st->validate_every = dk_cfg_int(cfg, KEY("training.validate_every_n_steps"));
    st->num_samples = dk_cfg_int(cfg, KEY("training.num_samples"));
    st->num_val = dk_cfg_int(cfg, KEY("training.num_validation_samples"));
    st->shuffle = dk_cfg_bool(cfg, KEY("training.local_shuffling"));
    st->shard = dk_cfg_int(cfg, KEY("training.local_shuffling_shard_size"));
    st->lr = dk_cfg_float(cfg, KEY("training.lr"));
    st->init_norm = sae ? dk_cfg_float(cfg, KEY("training.encoder_init_norm")) : dk_cfg_float(cfg, KEY("model.norm_init_scale"));
    st->retrain = dk_cfg_bool(cfg, KEY("training.overwrite")) || job->overwrite;
    st->skip = 0;
    if (dk_cfg_has(cfg, "model.ignore_first_n_tokens_per_sample_during_training"))
        st->skip = dk_cfg_int(cfg, "model.ignore_first_n_tokens_per_sample_during_training");
    st->norm_enabled = dk_cfg_bool(cfg, KEY("datasets.normalization.enabled"));
    st->norm_subsample = dk_cfg_int(cfg, KEY("datasets.normalization.subsample_size"));
    st->norm_batch = dk_cfg_int(cfg, KEY("datasets.normalization.batch_size"));
    st->target_rms = dk_cfg_float(cfg, KEY("datasets.normalization.target_rms"));
    st->norm_cache = dk_cfg_str_or_null(cfg, KEY("datasets.normalization.cache_dir"));

    dk_dict_train_cfg *c = &st->tc;
    c->lr = st->lr;
    c->warmup_steps = dk_cfg_int(cfg, KEY("optimization.warmup_steps"));
    c->decay_start = -1;
    c->auxk_alpha = dk_cfg_float(cfg, KEY("training.auxk_alpha"));
    c->dead_threshold = dk_cfg_int(cfg, KEY("training.dead_feature_threshold"));
    c->threshold_beta = 0.999;
    c->threshold_start_step = dk_cfg_int(cfg, KEY("training.threshold_start_step"));
    c->k = dk_cfg_int(cfg, KEY("training.k"));
    c->k_initial = sae ? c->k : dk_cfg_int(cfg, KEY("training.k_max"));
    c->k_anneal_steps = sae ? 0 : dk_cfg_int(cfg, KEY("training.k_annealing_steps"));
    c->clip = 1.0;

    if (st->expansion < 1 || st->batch < 1 || st->epochs < 1 || st->validate_every < 1 || st->shard < 1 ||
        st->num_samples < 1 || st->num_val < 0 || c->k < 1 || c->k_initial < c->k || c->warmup_steps < 0 ||
        c->k_anneal_steps < 0 || st->max_steps < 0 || c->dead_threshold < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.training: expansion_factor, batch_size, epochs, "
                          "validate_every_n_steps, k, num_samples and local_shuffling_shard_size must be >= 1, k_max >= k, "
                          "warmup_steps, k_annealing_steps, max_steps and num_validation_samples >= 0 (got expansion %lld, "
                          "batch %lld, epochs %lld, k %lld, k_max %lld)", (long long)st->expansion, (long long)st->batch,
                          (long long)st->epochs, (long long)c->k, (long long)c->k_initial);
    if (!(st->lr > 0) || !(c->auxk_alpha >= 0) || (st->norm_enabled && !(st->target_rms > 0)))
        return dk_err_set(err, DK_EXIT_USAGE, KEY("training.lr") " (%g) and normalization.target_rms (%g) must be "
                          "positive, auxk_alpha (%g) not negative", st->lr, st->target_rms, c->auxk_alpha);
    if (st->skip < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "model.ignore_first_n_tokens_per_sample_during_training = %lld: must be "
                          ">= 0", (long long)st->skip);

    st->ce = wants_models(cfg);
    st->ce_seqs = dk_cfg_int(cfg, KEY("evaluation.ce_num_sequences"));
    if (st->ce && st->ce_seqs < 1)
        return dk_err_set(err, DK_EXIT_USAGE, KEY("evaluation.ce_num_sequences") " = %lld: must be >= 1 (or set "
                          "evaluation.ce_loss_recovered=false)", (long long)st->ce_seqs);
    st->analysis = dk_cfg_bool(cfg, KEY("analysis.enabled"));
    if (st->analysis && dk_cfg_bool(cfg, KEY("analysis.latent_steering.enabled")))
        return dk_err_set(err, DK_EXIT_USAGE, KEY("analysis.latent_steering.enabled") " = true: latent steering (the "
                          "seed's steered generations along the dictionary's decoder rows) is not implemented in diffkit "
                          "yet; set it to false");
    dk_dict_analysis_cfg *a = &st->acfg;
    a->latent_scaling = st->analysis && dk_cfg_bool(cfg, KEY("analysis.latent_scaling.enabled"));
    a->scaling_num_samples = dk_cfg_int(cfg, KEY("analysis.latent_scaling.num_samples"));
    a->latent_activations = st->analysis && dk_cfg_bool(cfg, KEY("analysis.latent_activations.enabled"));
    a->n_max_activations = dk_cfg_int(cfg, KEY("analysis.latent_activations.n_max_activations"));
    a->max_num_samples = dk_cfg_int(cfg, KEY("analysis.latent_activations.max_num_samples"));
    a->min_threshold = dk_cfg_has(cfg, KEY("analysis.latent_activations.min_threshold"))
                           ? dk_cfg_float(cfg, KEY("analysis.latent_activations.min_threshold")) : 0.0;
    a->n_effective_ft_only = sae ? 0 : dk_cfg_int(cfg, KEY("analysis.latent_scaling.num_effective_ft_only_latents"));
    a->seed = (uint64_t)job->seed;
    if (a->scaling_num_samples < 1 || a->n_max_activations < 0 || a->max_num_samples < 0 || a->n_effective_ft_only < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.analysis: latent_scaling.num_samples must be >= 1, "
                          "n_max_activations, max_num_samples and num_effective_ft_only_latents >= 0");

    char *ckpt_root = NULL;
    if (dk_cfg_has(cfg, "infrastructure.storage.checkpoint_dir")) {
        ckpt_root = dk_path_join(dk_cfg_str(cfg, "infrastructure.storage.checkpoint_dir"), job->spec->results_subdir);
    } else {
        return dk_err_set(err, DK_EXIT_USAGE, "infrastructure.storage.checkpoint_dir is not set: the dictionary jobs "
                          "write their checkpoints there (configs/infrastructure/*.yaml)");
    }
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", dk_cfg_str(cfg, "model.name"), dk_cfg_str(cfg, "organism.name"));
    st->ckpt_dir = dk_path_join(ckpt_root, sub);
    free(ckpt_root);

    int64_t *layers = NULL;
    if (dk_cfg_has(cfg, KEY("layers"))) {
        if (dk_method_layers(cfg, KEY("layers"), job->pair.n_layers, &layers, &st->n_layers, err) != 0) return -1;
    } else if (dk_method_store_layers(job, &layers, &st->n_layers, err) != 0) {
        return -1;
    }
    st->L = dk_calloc((size_t)st->n_layers, sizeof *st->L);
    int rc = 0;
    const char *an_split = dk_cfg_str(cfg, KEY("analysis.latent_activations.split"));
    const char *sc_split = dk_cfg_str(cfg, KEY("analysis.latent_scaling.dataset_split"));
    if (a->latent_scaling && !sae && strcmp(an_split, sc_split) != 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, KEY("analysis.latent_scaling.dataset_split") " (%s) and "
                        "latent_activations.split (%s) must name the same split for the crosscoder (its scaling reads "
                        "the same rows)", sc_split, an_split);
    for (int64_t i = 0; i < st->n_layers && rc == 0; i++) {
        dj_layer *dl = &st->L[i];
        dl->layer = layers[i];
        rc = run_name(st, cfg, dl->layer, dl->run_name, sizeof dl->run_name, err);
        if (rc == 0) rc = dk_dict_set_open(job, "train", dl->layer, st->target, st->skip, st->num_samples, &dl->train, err);
        if (rc != 0) break;
        if (dl->train.total < st->batch) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "layer %lld: %lld training rows in all, fewer than one batch of %s = %lld: "
                            "lower it or cache more text", (long long)dl->layer, (long long)dl->train.total,
                            KEY("training.batch_size"), (long long)st->batch);
            break;
        }
        if (st->num_val > 0) {
            rc = dk_dict_set_open(job, "validation", dl->layer, st->target, st->skip, st->num_val, &dl->val, err);
            if (rc != 0) break;
        }
        if (a->latent_scaling || a->latent_activations) {
            /* the latent activations read whole sequences of the target's rows; the SAE's latent scaling reads the
               paired [base, ft] rows, chosen as the seed's training datasets choose them */
            rc = dk_dict_set_open(job, an_split, dl->layer, st->target, st->skip, 0, &dl->an, err);
            dl->an_open = rc == 0;
            if (rc == 0 && sae && a->latent_scaling) {
                rc = dk_dict_set_open(job, sc_split, dl->layer, DK_DICT_STACKED, st->skip, a->scaling_num_samples,
                                      &dl->an_bf, err);
                dl->an_bf_open = rc == 0;
            }
        }
    }
    free(layers);
    return rc;
}

typedef struct dj_curve {
    int64_t n;
    double *loss, *l2, *auxk, *lr;
    int64_t *dead, *k;
} dj_curve;

static void curve_init(dj_curve *c, int64_t steps) {
    c->n = steps;
    c->loss = dk_calloc((size_t)steps, sizeof(double)), c->l2 = dk_calloc((size_t)steps, sizeof(double));
    c->auxk = dk_calloc((size_t)steps, sizeof(double)), c->lr = dk_calloc((size_t)steps, sizeof(double));
    c->dead = dk_calloc((size_t)steps, sizeof(int64_t)), c->k = dk_calloc((size_t)steps, sizeof(int64_t));
}
static void curve_free(dj_curve *c) { free(c->loss), free(c->l2), free(c->auxk), free(c->lr), free(c->dead), free(c->k); }

/* ---- checkpoints ---------------------------------------------------------------------------------------------- */

/* Everything that determines the trained weights: the settings used, the shape, the normaliser, the stores. */
static uint64_t train_key(const dj_state *st, const dj_layer *dl, const dk_dict_model *m, const dk_dict_norm *nrm,
                          int64_t seed) {
    const dk_dict_train_cfg *c = &st->tc;
    char head[512];
    snprintf(head, sizeof head, "dict-train v1|%d|%s|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%.17g|%.17g|%lld|%lld|%.17g|"
             "%lld|%lld|%lld|%lld|%d|%lld|%lld|%lld", (int)st->kind, dk_dict_target_name(st->target),
             (long long)dl->layer, (long long)m->s.d, (long long)m->s.F, (long long)st->batch, (long long)st->epochs,
             (long long)c->steps, (long long)seed, st->lr, st->init_norm, (long long)c->warmup_steps, (long long)c->k,
             c->auxk_alpha, (long long)c->k_initial, (long long)c->k_anneal_steps, (long long)c->dead_threshold,
             (long long)c->threshold_start_step, (int)st->shuffle, (long long)st->shard, (long long)st->skip,
             (long long)dl->train.total);
    uint64_t h = dk_fnv1a(DK_FNV_OFFSET, head, strlen(head));
    h = dk_fnv1a(h, nrm->mean, (size_t)nrm->width * sizeof(float));
    h = dk_fnv1a(h, nrm->scale, (size_t)nrm->n_layers * sizeof(float));
    for (int k = 0; k < dl->train.n; k++) {
        const dk_dict_source *s = &dl->train.src[k];
        h = dk_fnv1a(h, s->name, strlen(s->name) + 1);
        h = dk_fnv1a(h, &s->pair.base.fingerprint, sizeof s->pair.base.fingerprint);
        h = dk_fnv1a(h, &s->pair.ft.fingerprint, sizeof s->pair.ft.fingerprint);
        h = dk_fnv1a(h, &s->n_use, sizeof s->n_use);
    }
    return h;
}

static int save_checkpoint(const char *path, uint64_t key, const dk_dict_trainer *tr, const dj_curve *cv,
                           const cJSON *evals, dk_err *err) {
    const dk_dict_model *m = tr->m;
    dk_h5w w;
    if (dk_h5w_open(&w, path, err) != 0) return -1;
    const int64_t P = m->P, F = m->s.F;
    dk_h5w_f32(&w, "params", 1, &P, m->p);
    dk_h5w_f32(&w, "adam_m", 1, &P, tr->adam_m);
    dk_h5w_f32(&w, "adam_v", 1, &P, tr->adam_v);
    dk_h5w_i64(&w, "since_fired", 1, &F, tr->since_fired);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
    dk_h5w_attr_str(&w, "key", hex);
    dk_h5w_attr_i64(&w, "step", tr->step);
    dk_h5w_attr_f64(&w, "threshold", m->threshold);
    /* the loss curve so far and the validation history, so that a resumed run reports the whole run */
    const int64_t n = tr->step;
    if (n > 0) {
        dk_h5w_f64(&w, "curve_loss", 1, &n, cv->loss), dk_h5w_f64(&w, "curve_l2", 1, &n, cv->l2);
        dk_h5w_f64(&w, "curve_auxk", 1, &n, cv->auxk), dk_h5w_f64(&w, "curve_lr", 1, &n, cv->lr);
        dk_h5w_i64(&w, "curve_dead", 1, &n, cv->dead), dk_h5w_i64(&w, "curve_k", 1, &n, cv->k);
    }
    char *hist = cJSON_PrintUnformatted(evals);
    dk_h5w_attr_str(&w, "validation_history", hist);
    free(hist);
    return dk_h5w_commit(&w, err);
}

/* 1: resumed, 0: no checkpoint (or retraining), -1: err (another key without overwrite, or a broken file). */
static int load_checkpoint(const char *path, uint64_t key, bool retrain, dk_dict_trainer *tr, dj_curve *cv,
                           cJSON **evals, dk_err *err) {
    if (!dk_is_file(path)) return 0;
    dk_h5r r;
    if (dk_h5r_open(&r, path, err) != 0) return -1;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
    char *have = dk_h5r_attr_str(&r, "key", err);
    int rc = have ? 0 : -1;
    if (rc == 0 && strcmp(have, hex) != 0) {
        if (retrain) rc = 1; /* ignored: trained again from scratch and overwritten */
        else
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s is a checkpoint of other settings or inputs (key %s, these are %s): "
                            "set diffing.method.training.overwrite=true to train again, or remove it", path, have, hex);
        free(have);
        dk_h5r_close(&r);
        return rc == 1 ? 0 : -1;
    }
    free(have);
    dk_dict_model *m = tr->m;
    int64_t step = 0;
    double thr = 0;
    if (rc == 0) rc = dk_h5r_f32(&r, "params", m->P, m->p, err);
    if (rc == 0) rc = dk_h5r_f32(&r, "adam_m", m->P, tr->adam_m, err);
    if (rc == 0) rc = dk_h5r_f32(&r, "adam_v", m->P, tr->adam_v, err);
    if (rc == 0) rc = dk_h5r_i64(&r, "since_fired", m->s.F, tr->since_fired, err);
    if (rc == 0) rc = dk_h5r_attr_i64(&r, "step", &step, err);
    if (rc == 0) rc = dk_h5r_attr_f64(&r, "threshold", &thr, err);
    if (rc == 0 && (step < 0 || step > cv->n))
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: step %lld is outside this run's %lld steps", path, (long long)step,
                        (long long)cv->n);
    if (rc == 0 && step > 0) {
        rc = dk_h5r_f64(&r, "curve_loss", step, cv->loss, err);
        if (rc == 0) rc = dk_h5r_f64(&r, "curve_l2", step, cv->l2, err);
        if (rc == 0) rc = dk_h5r_f64(&r, "curve_auxk", step, cv->auxk, err);
        if (rc == 0) rc = dk_h5r_f64(&r, "curve_lr", step, cv->lr, err);
        if (rc == 0) rc = dk_h5r_i64(&r, "curve_dead", step, cv->dead, err);
        if (rc == 0) rc = dk_h5r_i64(&r, "curve_k", step, cv->k, err);
    }
    char *hist = rc == 0 ? dk_h5r_attr_str(&r, "validation_history", err) : NULL;
    if (rc == 0 && !hist) rc = -1;
    if (hist) {
        cJSON *h = cJSON_Parse(hist);
        if (h) cJSON_Delete(*evals), *evals = h;
        free(hist);
    }
    dk_h5r_close(&r);
    if (rc != 0) return -1;
    tr->step = step;
    m->threshold = (float)thr;
    return 1;
}

/* ---- evaluation ------------------------------------------------------------------------------------------------ */

typedef struct dj_eval {
    int64_t rows;
    double fve, fve_legacy, nmse, l0, frac_dead, mse_loss, l2_loss;
    double fve_layer[2];          /* crosscoder: per model */
} dj_eval;

/* Threshold inference over every validation row (or, with no validation rows, the first training batch). */
static int evaluate(dk_method_job *job, const dj_state *st, const dk_dict_set *set, const dk_dict_model *m,
                    const dk_dict_norm *nrm, dj_eval *ev, dk_err *err) {
    const dk_dict_shape *s = &m->s;
    const int64_t D = s->D, F = s->F, L = s->L, d = s->d, B = st->batch;
    const int64_t total = set->total;
    float *x = dk_malloc((size_t)(B * D) * sizeof(float)), *u = dk_malloc((size_t)(B * D) * sizeof(float));
    float *pre = dk_malloc((size_t)(B * F) * sizeof(float)), *xh = dk_malloc((size_t)(B * D) * sizeof(float));
    float *val = dk_malloc((size_t)(B * F) * sizeof(float)), *w = dk_malloc((size_t)F * sizeof(float));
    int32_t *idx = dk_malloc((size_t)(B * F) * sizeof(int32_t));
    int64_t *row_ptr = dk_malloc((size_t)(B + 1) * sizeof(int64_t)), *ids = dk_malloc((size_t)B * sizeof(int64_t));
    uint8_t *fired = dk_calloc((size_t)F, 1);
    if (m->kind == DK_DICT_CROSSCODER) dk_cpu_dict_code_weights(s, dk_dict_W_dec(m), w);
    /* whole-set sums: [Σ‖e_l‖², Σ‖e_l‖ per layer] then per dimension Σx, Σx², then [rows, nnz, legacy sum, batches,
       Σ‖x‖²] */
    const int64_t nsum = 2 * L + 2 * D + 5;
    double *S = dk_calloc((size_t)nsum, sizeof(double)), *bs = dk_calloc((size_t)(4 * D), sizeof(double));
    double *ssx = S + 2 * L, *ssx2 = ssx + D, *tail = ssx2 + D;
    int rc = 0;
    for (int64_t p0 = 0; p0 < total && rc == 0; p0 += B) {
        const int64_t nb = total - p0 < B ? total - p0 : B;
        int64_t lo, hi;
        dk_dict_slice(nb, job->d.rank, job->d.nranks, &lo, &hi);
        const int64_t n = hi - lo;
        for (int64_t i = 0; i < n; i++) ids[i] = p0 + lo + i;
        if (n > 0) rc = dk_dict_set_read(set, ids, n, x, err);
        if (dk_dist_agree(&job->d, err) != 0) { rc = -1; break; }
        dk_dict_norm_apply(nrm, x, n);
        const int64_t cnt = dk_dict_encode_threshold(m, x, n, u, pre, m->kind == DK_DICT_CROSSCODER ? w : NULL, row_ptr,
                                                     idx, val);
        dk_cpu_dict_decode(s, n, row_ptr, idx, val, dk_dict_W_dec(m), dk_dict_b_dec(m), xh);
        for (int64_t q = 0; q < cnt; q++) fired[idx[q]] = 1;
        memset(bs, 0, (size_t)(4 * D) * sizeof(double)); /* this batch: Σe, Σe², Σx, Σx² per dimension */
        for (int64_t r = 0; r < n; r++) {
            for (int64_t l = 0; l < L; l++) {
                double ss = 0;
                for (int64_t i = 0; i < d; i++) {
                    const int64_t o = r * D + l * d + i;
                    const double xv = x[o], e = xv - (double)xh[o];
                    ss += e * e;
                    ssx[l * d + i] += xv, ssx2[l * d + i] += xv * xv;
                    bs[l * d + i] += e, bs[D + l * d + i] += e * e, bs[2 * D + l * d + i] += xv, bs[3 * D + l * d + i] += xv * xv;
                }
                S[l] += ss, S[L + l] += sqrt(ss);
            }
        }
        dk_dict_allreduce_f64(&job->d, bs, 4 * D);
        double ve = 0, vx = 0; /* unbiased batch variances, summed over dimensions (torch.var) */
        for (int64_t i = 0; i < D; i++) {
            ve += (bs[D + i] - bs[i] * bs[i] / (double)nb) / (double)(nb > 1 ? nb - 1 : 1);
            vx += (bs[3 * D + i] - bs[2 * D + i] * bs[2 * D + i] / (double)nb) / (double)(nb > 1 ? nb - 1 : 1);
        }
        if (job->d.rank == 0 && vx > 0) tail[2] += 1.0 - ve / vx, tail[3] += 1;
        tail[0] += (double)n, tail[1] += (double)cnt;
        for (int64_t i = 0; i < n * D; i++) tail[4] += (double)x[i] * x[i];
    }
    if (rc == 0) {
        dk_dict_allreduce_f64(&job->d, S, nsum);
        MPI_Allreduce(MPI_IN_PLACE, fired, (int)F, MPI_UINT8_T, MPI_MAX, job->d.comm);
        const double N = tail[0];
        double var_total = 0, var_l[2] = {0, 0}, se = 0;
        for (int64_t i = 0; i < D; i++) {
            const double mu = ssx[i] / N, v = ssx2[i] / N - mu * mu;
            var_total += v, var_l[i / d] += v;
        }
        for (int64_t l = 0; l < L; l++) se += S[l];
        memset(ev, 0, sizeof *ev);
        ev->rows = (int64_t)N;
        ev->fve = 1.0 - (se / N) / var_total;
        for (int64_t l = 0; l < L; l++) ev->fve_layer[l] = 1.0 - (S[l] / N) / var_l[l];
        ev->fve_legacy = tail[3] > 0 ? tail[2] / tail[3] : NAN;
        ev->nmse = se / tail[4];
        ev->l0 = tail[1] / N;
        int64_t dead = 0;
        for (int64_t j = 0; j < F; j++) dead += !fired[j];
        ev->frac_dead = (double)dead / (double)F;
        ev->mse_loss = se / (N * (double)(m->kind == DK_DICT_SAE ? 1 : L));
        double l2 = 0;
        for (int64_t l = 0; l < L; l++) l2 += S[L + l];
        ev->l2_loss = m->kind == DK_DICT_SAE ? se / N : l2 / (N * (double)L);
    }
    free(x), free(u), free(pre), free(xh), free(val), free(w), free(idx), free(row_ptr), free(ids), free(fired);
    free(S), free(bs);
    return rc;
}

static cJSON *eval_json(const dj_eval *ev, const dk_dict_model *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rows", (double)ev->rows);
    cJSON_AddNumberToObject(o, "frac_variance_explained", ev->fve);
    cJSON_AddNumberToObject(o, "frac_variance_explained_per_batch_legacy", ev->fve_legacy);
    if (m->kind == DK_DICT_CROSSCODER) {
        cJSON_AddNumberToObject(o, "cl0_frac_variance_explained", ev->fve_layer[0]);
        cJSON_AddNumberToObject(o, "cl1_frac_variance_explained", ev->fve_layer[1]);
    }
    cJSON_AddNumberToObject(o, "normalized_mse", ev->nmse);
    cJSON_AddNumberToObject(o, "l0", ev->l0);
    cJSON_AddNumberToObject(o, "frac_deads", ev->frac_dead);
    cJSON_AddNumberToObject(o, "mse_loss", ev->mse_loss);
    cJSON_AddNumberToObject(o, "l2_loss", ev->l2_loss);
    return o;
}

static void add_ce(cJSON *o, const dk_dict_ce *ce) {
    cJSON_AddNumberToObject(o, "ce_loss_recovered", ce->frac_recovered);
    cJSON_AddNumberToObject(o, "ce_clean", ce->ce_clean);
    cJSON_AddNumberToObject(o, "ce_spliced", ce->ce_spliced);
    cJSON_AddNumberToObject(o, "ce_base_activation", ce->ce_ablated);
    cJSON_AddNumberToObject(o, "ce_tokens", (double)ce->tokens);
}

/* The analysis headline in the log (what `make demo` prints): the crosscoder's latent classes, and the first
 * latents the seed's steering would pick with the dataset and text of their strongest example. */
static void log_findings(const dk_method_job *job, const dj_layer *dl, const cJSON *sum) {
    const cJSON *tags = cJSON_GetObjectItem(sum, "latent_tags");
    if (tags) {
        char line[256] = "";
        size_t n = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, tags) n += (size_t)snprintf(line + n, n < sizeof line ? sizeof line - n : 0, "%s%s %d",
                                                          n ? ", " : "", t->string, t->valueint);
        LOG_INFO("%s layer %lld finding: latent classes by relative decoder norm: %s", job->spec->job,
                 (long long)dl->layer, line);
    }
    const cJSON *top = cJSON_GetObjectItem(sum, "top_latents"), *lat;
    int shown = 0;
    cJSON_ArrayForEach(lat, top) {
        if (shown++ == 3) break;
        const cJSON *ex = cJSON_GetObjectItem(lat, "examples"), *ds, *best_ds = NULL, *best = NULL;
        cJSON_ArrayForEach(ds, ex) { /* the dataset whose first example scores highest */
            const cJSON *first = cJSON_GetArrayItem(ds, 0);
            const cJSON *sc = first ? cJSON_GetObjectItem(first, "score") : NULL;
            if (sc && (!best || sc->valuedouble > cJSON_GetObjectItem(best, "score")->valuedouble))
                best = first, best_ds = ds;
        }
        const cJSON *id = cJSON_GetObjectItem(lat, "latent");
        const cJSON *text = best ? cJSON_GetObjectItem(best, "text") : NULL;
        char snippet[100] = "";
        if (text && cJSON_IsString(text)) {
            snprintf(snippet, sizeof snippet, "%s", text->valuestring);
            for (char *c = snippet; *c; c++)
                if (*c == '\n') *c = ' ';
        }
        LOG_INFO("%s layer %lld finding: latent %d strongest on %s: \"%s\"", job->spec->job, (long long)dl->layer,
                 id ? id->valueint : -1, best_ds ? best_ds->string : "(no example)", snippet);
    }
}

/* ---- where the steps run ------------------------------------------------------------------------------------- */

/* st->gpu: device=cuda (an error without CUDA or a GPU), device=auto when every rank sees a GPU, device=cpu never.
 * Collective; the ranks must agree (a mix would train with two arithmetics). */
static int choose_device(dk_method_job *job, dj_state *st, dk_err *err) {
    const bool usable = dk_backend_cuda_usable();
    int rc = 0;
    if (job->device == DK_DEVICE_CUDA && !usable)
        rc = dk_err_set(err, DK_EXIT_USAGE, "device=cuda: this build has no CUDA or this rank sees no GPU; set "
                        "device=cpu (or auto) to train on the CPU");
    const int mine = job->device == DK_DEVICE_CUDA || (job->device == DK_DEVICE_AUTO && usable);
    int lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, job->d.comm);
    MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, job->d.comm);
    if (rc == 0 && lo != hi)
        rc = dk_err_set(err, DK_EXIT_USAGE, "device=%s resolved differently on different ranks (some have a GPU, some "
                        "not): set device=cpu or device=cuda explicitly", dk_device_name(job->device));
    st->gpu = lo == 1;
    return rc;
}

/* The GPU trainer over tr on this rank's GPU (local rank modulo the node's GPUs), when st->gpu. Collective. */
static int gpu_trainer(dk_method_job *job, const dj_state *st, dk_dict_trainer *tr, int64_t rows,
                       dk_dict_cuda_trainer **gt, dk_err *err) {
    *gt = NULL;
    if (!st->gpu) return 0;
#ifdef DIFFKIT_HAVE_CUDA
    const int n_gpus = dk_cuda_device_count(), device = n_gpus > 0 ? job->d.local_rank % n_gpus : 0;
    if (dk_dict_cuda_trainer_create(gt, tr, device, rows, err) != 0) return -1;
    if (job->d.rank == 0) {
        char name[128];
        dk_cuda_device_name(name, sizeof name);
        LOG_INFO("%s: training on the GPU (%s; %d rank(s), gradients summed with %s)", job->spec->job, name,
                 job->d.nranks, dk_dict_cuda_trainer_uses_nccl(*gt) ? "NCCL" : "MPI through the host");
    }
    return 0;
#else
    (void)job, (void)tr, (void)rows;
    return dk_err_set(err, DK_EXIT_USAGE, "device=cuda: this build has no CUDA");
#endif
}

/* One step on the GPU trainer when there is one, else on the CPU trainer. Collective. */
static int train_step(dk_dict_trainer *tr, dk_dict_cuda_trainer *gt, const float *x, const float *raw, int64_t n,
                      int64_t B, dk_err *err) {
#ifdef DIFFKIT_HAVE_CUDA
    if (gt) return dk_dict_cuda_trainer_step(gt, x, raw, n, B, err);
#else
    (void)gt;
#endif
    return dk_dict_trainer_step(tr, x, raw, n, B, err);
}

/* The GPU's parameters and moments into the host trainer (before evaluating, checkpointing, writing results). */
static void host_state(dk_dict_cuda_trainer *gt) {
#ifdef DIFFKIT_HAVE_CUDA
    if (gt) dk_dict_cuda_trainer_download(gt);
#else
    (void)gt;
#endif
}

static void gpu_trainer_free(dk_dict_cuda_trainer *gt) {
#ifdef DIFFKIT_HAVE_CUDA
    dk_dict_cuda_trainer_destroy(gt);
#else
    (void)gt;
#endif
}

/* ---- one layer ---------------------------------------------------------------------------------------------------- */

static int normaliser(dk_method_job *job, const dj_state *st, const dj_layer *dl, dk_dict_norm *nrm, dk_err *err) {
    if (!st->norm_enabled) {
        dk_dict_norm_identity(nrm, &dl->train);
        return 0;
    }
    if (st->kind == DK_DICT_CROSSCODER && st->skip == 0) return dk_dict_norm_from_stores(&dl->train, st->target_rms, nrm, err);
    return dk_dict_norm_sampled(job, &dl->train, st->norm_subsample, st->norm_batch, st->norm_cache, st->target_rms, nrm,
                                err);
}

static int train_layer(dk_method_job *job, dj_state *st, dj_layer *dl, cJSON *sum_layer, dk_err *err) {
    const int64_t d = dl->train.d, F = st->expansion * d, B = st->batch;
    dk_dict_norm nrm = {0};
    if (normaliser(job, st, dl, &nrm, err) != 0 || dk_dist_agree(&job->d, err) != 0) {
        dk_dict_norm_free(&nrm);
        return -1;
    }
    dk_dict_model m;
    dk_dict_model_init(&m, st->kind, d, F);
    dk_dict_model_random_init(&m, (uint64_t)job->seed ^ (uint64_t)dl->layer * 0x9E3779B97F4A7C15ull, st->init_norm);
    const int64_t D = m.s.D, positions = dl->train.total * st->epochs;
    dk_dict_train_cfg tc = st->tc;
    tc.steps = st->max_steps > 0 ? st->max_steps : (positions + B - 1) / B;
    tc.top_k_aux = d / 2; /* activation_dim // 2 in both reference trainers (per model for the crosscoder) */
    tc.threads = job->threads;
    st->tc.steps = tc.steps;
    /* on the GPU the host holds the state and two copies of this rank's rows */
    const uint64_t need = (uint64_t)m.P * 4 * 4 + (uint64_t)B * (uint64_t)(st->gpu ? 2 * D : 3 * F + 6 * D) * 4;
    int rc = dk_host_memory_check(need, "the dictionary, its gradients, Adam moments and one batch",
                                  "lower diffing.method.training.expansion_factor or batch_size", err);
    if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    int64_t lo, hi;
    dk_dict_slice(B, job->d.rank, job->d.nranks, &lo, &hi);
    dk_dict_trainer tr;
    dk_dict_trainer_init(&tr, &job->d, &tc, &m, st->gpu ? 1 : hi - lo + 1); /* the GPU trainer has its own rows */

    const uint64_t key = train_key(st, dl, &m, &nrm, job->seed);
    char name[200];
    snprintf(name, sizeof name, "%s.h5", dl->run_name);
    char *ckpt = dk_path_join(st->ckpt_dir, name);
    dj_curve cv;
    curve_init(&cv, tc.steps);
    cJSON *evals = cJSON_CreateArray();
    int resumed = 0;
    if (rc == 0) {
        resumed = load_checkpoint(ckpt, key, st->retrain, &tr, &cv, &evals, err);
        if (resumed < 0) rc = -1;
        if (rc == 0 && job->d.rank == 0 && dk_mkdirs(st->ckpt_dir, err) != 0) rc = -1;
        if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    }
    dk_dict_cuda_trainer *gt = NULL; /* after the checkpoint: it uploads the host state */
    if (rc == 0 && gpu_trainer(job, st, &tr, hi - lo + 1, &gt, err) != 0) rc = -1;
    if (rc == 0 && resumed && job->d.rank == 0)
        LOG_INFO("%s layer %lld: resuming from %s at step %lld of %lld", job->spec->job, (long long)dl->layer, ckpt,
                 (long long)tr.step, (long long)tc.steps);

    dk_dict_order order;
    dk_dict_order_init(&order, &dl->train, st->shard, st->epochs, st->shuffle, (uint64_t)job->seed);
    float *raw = dk_malloc((size_t)((hi - lo + 1) * D) * sizeof(float)), *x = dk_malloc((size_t)((hi - lo + 1) * D) * sizeof(float));
    int64_t *idx = dk_malloc((size_t)B * sizeof(int64_t));
    dj_eval ev = {0};
    char label[160];
    snprintf(label, sizeof label, "%s layer %lld", job->spec->method, (long long)dl->layer);
    dk_progress prog;
    dk_progress_begin(&prog, label, (double)(tc.steps - tr.step), "steps");
    const dk_dict_set *val_set = st->num_val > 0 ? &dl->val : &dl->train;
    double t_read = 0, t_step = 0; /* this rank's seconds reading rows and in training steps */
    int64_t rows_read = 0, steps_run = 0;
    while (rc == 0 && tr.step < tc.steps) {
        const int64_t step = tr.step, p0 = (step * B) % positions;
        const int64_t nb = positions - p0 < B ? positions - p0 : B;
        int64_t blo, bhi;
        dk_dict_slice(nb, job->d.rank, job->d.nranks, &blo, &bhi);
        const int64_t n = bhi - blo;
        const double t0 = dk_time_now();
        dk_dict_order_get(&order, p0, nb, idx);
        if (n > 0) rc = dk_dict_set_read(&dl->train, idx + blo, n, raw, err);
        const double t1 = dk_time_now();
        if (dk_dist_agree(&job->d, err) != 0) { rc = -1; break; }
        memcpy(x, raw, (size_t)(n * D) * sizeof(float));
        dk_dict_norm_apply(&nrm, x, n);
        rc = train_step(&tr, gt, x, raw, n, nb, err);
        if (rc != 0) break;
        t_read += t1 - t0, t_step += dk_time_now() - t1, rows_read += n, steps_run++;
        const dk_dict_step_stats *ss = &tr.last;
        cv.loss[step] = ss->loss, cv.l2[step] = ss->l2_loss, cv.auxk[step] = ss->auxk_loss, cv.lr[step] = ss->lr;
        cv.dead[step] = ss->dead, cv.k[step] = ss->k;
        dk_progress_add(&prog, 1);
        if (tr.step % st->validate_every == 0 || tr.step == tc.steps) {
            host_state(gt);
            rc = evaluate(job, st, val_set, &m, &nrm, &ev, err);
            if (rc != 0) break;
            cJSON *e = eval_json(&ev, &m);
            cJSON_AddNumberToObject(e, "step", (double)tr.step);
            cJSON_AddNumberToObject(e, "train_loss", ss->loss);
            cJSON_AddItemToArray(evals, e);
            if (job->d.rank == 0) {
                LOG_INFO("%s layer %lld step %lld/%lld: loss %.5g, validation FVE %.4f, L0 %.1f, dead %.3f",
                         job->spec->job, (long long)dl->layer, (long long)tr.step, (long long)tc.steps, ss->loss, ev.fve,
                         ev.l0, ev.frac_dead);
                rc = save_checkpoint(ckpt, key, &tr, &cv, evals, err);
            }
            if (dk_dist_agree(&job->d, err) != 0) rc = -1;
        }
    }
    dk_progress_end(&prog);
    if (rc == 0) host_state(gt);
    gpu_trainer_free(gt);
    if (rc == 0 && steps_run > 0 && job->d.rank == 0)
        LOG_INFO("%s layer %lld: rank 0 read %lld rows in %.2f s (%.0f rows/s) and trained on them in %.2f s (%.0f rows/s): "
                 "reading %s", job->spec->job, (long long)dl->layer, (long long)rows_read, t_read,
                 (double)rows_read / (t_read > 0 ? t_read : 1e-9), t_step, (double)rows_read / (t_step > 0 ? t_step : 1e-9),
                 t_read < t_step ? "keeps up" : "is the bottleneck");
    if (rc == 0 && ev.rows == 0) rc = evaluate(job, st, val_set, &m, &nrm, &ev, err); /* resumed at the end */
    dk_dict_ce ce = {0};
    if (rc == 0 && st->ce) {
        rc = dk_dict_ce_recovered(job, &m, &nrm, val_set, st->ce_seqs, &ce, err);
        if (rc == 0 && job->d.rank == 0)
            LOG_INFO("%s layer %lld: CE loss recovered %.4f (clean %.4f, spliced %.4f, base activation %.4f; %lld tokens)",
                     job->spec->job, (long long)dl->layer, ce.frac_recovered, ce.ce_clean, ce.ce_spliced,
                     ce.ce_ablated, (long long)ce.tokens);
    }

    char base[256];
    snprintf(base, sizeof base, "layer_%lld/%s", (long long)dl->layer, dl->run_name);
    if (rc == 0 && job->d.rank == 0) {
        dk_results *r = &job->res;
        char path[512];
#define P(nm) (snprintf(path, sizeof path, "%s/%s", base, nm), path)
        const bool sae = st->kind == DK_DICT_SAE;
        const int64_t L = m.s.L, nW = F * D;
        float *ew = dk_malloc((size_t)nW * sizeof(float)), *eb = dk_malloc((size_t)F * sizeof(float));
        float *dw = dk_malloc((size_t)nW * sizeof(float)), *db = dk_malloc((size_t)D * sizeof(float));
        dk_dict_to_reference(&m, ew, eb, dw, db);
        if (sae) {
            dk_results_f32(r, P("dictionary/encoder.weight"), 2, (int64_t[]){F, d}, ew);
            dk_results_f32(r, P("dictionary/decoder.weight"), 2, (int64_t[]){d, F}, dw);
            dk_results_f32(r, P("dictionary/b_dec"), 1, &d, db);
        } else {
            dk_results_f32(r, P("dictionary/encoder.weight"), 3, (int64_t[]){L, d, F}, ew);
            dk_results_f32(r, P("dictionary/decoder.weight"), 3, (int64_t[]){L, F, d}, dw);
            dk_results_f32(r, P("dictionary/decoder.bias"), 2, (int64_t[]){L, d}, db);
        }
        dk_results_f32(r, P("dictionary/encoder.bias"), 1, &F, eb);
        dk_results_attr_f64(r, P("dictionary"), "threshold", m.threshold);
        dk_results_attr_i64(r, P("dictionary"), "k", tc.k);
        dk_results_f32(r, P("normalizer/mean"), 1, &D, nrm.mean);
        const int64_t nl = nrm.n_layers;
        dk_results_f32(r, P("normalizer/scale"), 1, &nl, nrm.scale);
        dk_results_attr_f64(r, P("normalizer"), "target_rms", nrm.enabled ? nrm.target_rms : 0);
        dk_results_f64(r, P("training/loss"), 1, &cv.n, cv.loss);
        dk_results_f64(r, P("training/reconstruction_loss"), 1, &cv.n, cv.l2);
        dk_results_f64(r, P("training/auxk_loss"), 1, &cv.n, cv.auxk);
        dk_results_f64(r, P("training/lr"), 1, &cv.n, cv.lr);
        dk_results_i64(r, P("training/dead_latents"), 1, &cv.n, cv.dead);
        dk_results_i64(r, P("training/k"), 1, &cv.n, cv.k);
        free(ew), free(eb), free(dw), free(db);

        cJSON *tm = cJSON_CreateObject();
        cJSON_AddNumberToObject(tm, "layer", (double)dl->layer);
        cJSON_AddNumberToObject(tm, "activation_dim", (double)d);
        cJSON_AddNumberToObject(tm, "dictionary_size", (double)F);
        cJSON_AddNumberToObject(tm, "training_steps", (double)tc.steps);
        cJSON_AddNumberToObject(tm, "lr", st->lr);
        cJSON_AddNullToObject(tm, "wandb_link");
        cJSON_AddStringToObject(tm, "model_type", sae ? "batch-top-k-sae-difference" : "batch-top-k-crosscoder");
        cJSON_AddStringToObject(tm, "run_name", dl->run_name);
        cJSON_AddNullToObject(tm, "hf_repo_id");
        cJSON_AddStringToObject(tm, "training_mode", "local");
        cJSON_AddStringToObject(tm, "target", dk_dict_target_name(st->target));
        cJSON_AddNumberToObject(tm, "k", (double)tc.k);
        cJSON_AddNumberToObject(tm, "ranks", job->d.nranks);
        cJSON_AddBoolToObject(tm, "resumed_from_checkpoint", resumed > 0);
        cJSON *last = eval_json(&ev, &m);
        if (st->ce) add_ce(last, &ce);
        cJSON_AddItemToObject(tm, "last_eval_logs", last);
        cJSON_AddItemToObject(tm, "validation_history", cJSON_Duplicate(evals, true));
        snprintf(path, sizeof path, "%s/training_metrics.json", base);
        dk_results_json(r, path, tm);
#undef P
        cJSON_AddStringToObject(sum_layer, "run_name", dl->run_name);
        cJSON_AddNumberToObject(sum_layer, "dictionary_size", (double)F);
        cJSON_AddNumberToObject(sum_layer, "training_steps", (double)tc.steps);
        cJSON_AddNumberToObject(sum_layer, "final_train_loss", tc.steps > 0 ? cv.loss[tc.steps - 1] : NAN);
        cJSON *sv = eval_json(&ev, &m);
        if (st->ce) add_ce(sv, &ce);
        cJSON_AddItemToObject(sum_layer, "validation", sv);

        char *dir = dk_path_join(job->results_dir, base), *exp = dk_path_join(dir, "saelens");
        const char *hook = "blocks.%lld.hook_resid_post";
        char hook_name[96];
        snprintf(hook_name, sizeof hook_name, hook, (long long)dl->layer);
        rc = dk_dict_export_saelens(&m, &nrm, exp, dk_cfg_str(job->cfg, "model.name"), dl->layer, hook_name, err);
        free(dir), free(exp);
    }
    if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    if (rc == 0 && st->analysis) {
        rc = dk_dict_analyse(job, &m, &nrm, &dl->an, dl->an_bf_open ? &dl->an_bf : NULL, &st->acfg, base, sum_layer, err);
        if (rc == 0 && job->d.rank == 0) log_findings(job, dl, sum_layer);
    }

    cJSON_Delete(evals);
    curve_free(&cv);
    free(raw), free(x), free(idx), free(ckpt);
    dk_dict_order_free(&order);
    dk_dict_trainer_free(&tr);
    dk_dict_model_free(&m);
    dk_dict_norm_free(&nrm);
    return rc;
}

static int dj_run(dk_method_job *job, dk_err *err) {
    dj_state *st = job->state;
    cJSON *summary = cJSON_CreateObject();
    cJSON_AddStringToObject(summary, "method", job->spec->method);
    cJSON *layers = cJSON_AddObjectToObject(summary, "layers");
    int rc = choose_device(job, st, err);
    if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    for (int64_t i = 0; i < st->n_layers && rc == 0; i++) {
        char lname[32];
        snprintf(lname, sizeof lname, "%lld", (long long)st->L[i].layer);
        rc = train_layer(job, st, &st->L[i], cJSON_AddObjectToObject(layers, lname), err);
    }
    if (rc == 0) dk_results_summary(&job->res, summary);
    else cJSON_Delete(summary);
    return rc;
}

static void dj_free(dk_method_job *job) {
    dj_state *st = job->state;
    if (!st) return;
    for (int64_t i = 0; i < st->n_layers; i++) {
        dk_dict_set_close(&st->L[i].train);
        dk_dict_set_close(&st->L[i].val);
        if (st->L[i].an_open) dk_dict_set_close(&st->L[i].an);
        if (st->L[i].an_bf_open) dk_dict_set_close(&st->L[i].an_bf);
    }
    free(st->L);
    free(st->ckpt_dir);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_sae_difference = {
    .job = "diff_sae",
    .method = "sae_difference",
    .results_subdir = "sae_difference",
    .usage = "Trains a BatchTopK sparse autoencoder on activation differences (finetuned - base by default) at each\n"
             "layer, from the activation stores of diff_preprocess (train split; validation split for the metrics), data\n"
             "parallel over the ranks, then analyses its latents. Settings: diffing.method.* (configs/diffing/method/\n"
             "sae_difference.yaml). A killed run resumes from its last checkpoint.\n"
             "    mpirun -n 4 diff_sae organism=NAME model=NAME [diffing.method.training.k=100]\n",
    .needs_models = false,
    .wants_models = wants_models,
    .prepare = dj_prepare,
    .run = dj_run,
    .free_state = dj_free,
};

const dk_method_spec dk_method_crosscoder = {
    .job = "diff_crosscoder",
    .method = "crosscoder",
    .results_subdir = "crosscoder",
    .usage = "Trains a BatchTopK crosscoder on paired base and finetuned activations at each layer, from the\n"
             "activation stores of diff_preprocess (train split; validation split for the metrics), data parallel over\n"
             "the ranks, then classes its latents by relative decoder norm (finetuned-only, shared, base-only).\n"
             "Settings: diffing.method.* (configs/diffing/method/crosscoder.yaml). A killed run resumes from its last\n"
             "checkpoint.\n"
             "    mpirun -n 4 diff_crosscoder organism=NAME model=NAME [diffing.method.training.k=100]\n",
    .needs_models = false,
    .wants_models = wants_models,
    .prepare = dj_prepare,
    .run = dj_run,
    .free_state = dj_free,
};
