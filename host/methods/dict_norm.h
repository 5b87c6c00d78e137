/* dict_norm.h — the activation normaliser of the SAE and crosscoder (the reference's NormalizableMixin with
 * keep_relative_variance=True, dictionary_spec §1.1, seed_spec §9–§10): per-dimension mean μ and population
 * std σ, and one global scale per stacked layer l (1 for a difference SAE, 2 for the crosscoder: base, ft)
 *     s_l = target_rms / sqrt(Σ_{i ∈ l} σ_i² + 1e-8)        x̃ = (x − μ) · s_l        x = x̃ / (s_l + 1e-8) + μ
 * so that E‖x̃‖² = target_rms² per layer. The statistics come from
 *   - dk_dict_norm_sampled: the seed's recompute_normalizer: subsample_size rows drawn uniformly with replacement
 *     (split evenly across datasets) from each dataset's kept rows, Welford/Chan in fp64, population std; cached
 *     under cache_dir/<fingerprint of the stores, layer, target, skip, sample size, seed>/normalizer.h5, so a
 *     rerun (or the other method on the same rows) reads it instead of sampling again. The sample is drawn from
 *     the seed (our splitmix64, not torch's generator); blocks of batch_size rows are spread over the ranks and
 *     merged in block order, so the result does not depend on the rank count.
 *   - dk_dict_norm_from_stores: the crosscoder's combine_normalizer: the stores' own running statistics (count,
 *     mean, m2 written by diff_preprocess) merged over the datasets (Chan), population std, per model.
 * Like the reference after trainSAE's model.to(float32), μ and s are applied in fp32 (s computed in fp64). */
#ifndef DK_METHODS_DICT_NORM_H
#define DK_METHODS_DICT_NORM_H

#include <stdbool.h>
#include <stdint.h>

#include "methods/dict_data.h"

typedef struct dk_dict_norm {
    bool enabled;          /* false: x̃ = x (normalization.enabled=false) */
    int n_layers;          /* 1, or 2 for stacked rows */
    int64_t d, width;
    double target_rms;
    double *mean64, *std64;  /* (width) */
    float *mean;           /* (width) fp32 μ */
    float *scale;          /* (n_layers) fp32 s_l */
    bool from_cache;       /* the sampled statistics were read from the cache */
    char *cache_path;
} dk_dict_norm;

/* Collective. cache_dir NULL: no cache. */
int dk_dict_norm_sampled(dk_method_job *job, const dk_dict_set *set, int64_t subsample, int64_t batch,
                         const char *cache_dir, double target_rms, dk_dict_norm *nrm, dk_err *err);
/* Serial (every rank reads the same statistics). */
int dk_dict_norm_from_stores(const dk_dict_set *set, double target_rms, dk_dict_norm *nrm, dk_err *err);
/* The identity normaliser (normalization disabled). */
void dk_dict_norm_identity(dk_dict_norm *nrm, const dk_dict_set *set);
/* Sets mean/scale from given fp64 statistics (tests, checkpoints). mean64/std64 are copied. */
void dk_dict_norm_set(dk_dict_norm *nrm, int n_layers, int64_t d, const double *mean64, const double *std64,
                      double target_rms);
void dk_dict_norm_free(dk_dict_norm *nrm);

/* x (n, width) in place: x̃ = (x − μ) · s_l. */
void dk_dict_norm_apply(const dk_dict_norm *nrm, float *x, int64_t n);
/* x̃ (n, width) in place back to activations: x̃ / (s_l + 1e-8) + μ. */
void dk_dict_norm_undo(const dk_dict_norm *nrm, float *x, int64_t n);

#endif
