/* dict_analysis.h — what the SAE and crosscoder jobs compute from a trained dictionary (seed_spec §9–§10,
 * src/diffing/utils/dictionary/{analysis.py,latent_scaling/closed_form.py,latent_activations.py}):
 *
 *   latent statistics  per latent: dec_norm, enc_norm (SAE); for the crosscoder dec_base_norm, dec_ft_norm,
 *                      enc_base_norm, enc_ft_norm, dec_cos_sim, enc_cos_sim, dec_norm_diff
 *                      = ((n_b − n_f)/max(n_b, n_f) + 1)/2 and its class (ft_only < 0.1, base_only > 0.9,
 *                      shared |x − 0.5| < 0.1, else other)
 *   latent scaling     closed-form β_j = (d_jᵀ Σ_n f_nj x_n) / (‖d_j‖² Σ_n f_nj²) per latent and target over rows of
 *                      the analysis split: SAE targets base_activation and ft_activation (the normalised base / ft
 *                      rows; f from the difference rows), beta_activation_ratio = base/ft; crosscoder targets
 *                      base/ft_activation, base/ft_reconstruction, base/ft_error with d_j = W_dec[ft, j]
 *   latent activations threshold inference over the first max_num_samples sequences of each dataset: per latent the
 *                      max activation (max_act_train) and frequency (freq_train = #nonzero / #tokens), and the
 *                      max-activating examples (methods/maxact.h tables, sparse values) of every latent
 *   export             the dictionary in SAELens's format: <dir>/sae_weights.safetensors (W_enc (d_in, d_sae),
 *                      b_enc, W_dec (d_sae, d_in), b_dec) + cfg.json, with the normaliser folded in so that
 *                      SAELens's encode/decode on raw activation differences equals ours.
 * Every function is collective over job->d (rows and sequences are spread over the ranks and reduced); rank 0
 * writes into job->res under `base` (the run's group) and adds its headline numbers to `sum` (the layer's
 * summary object). */
#ifndef DK_METHODS_DICT_ANALYSIS_H
#define DK_METHODS_DICT_ANALYSIS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "methods/dict_data.h"
#include "methods/dict_model.h"
#include "methods/dict_norm.h"
#include "methods/method_job.h"

typedef struct dk_dict_analysis_cfg {
    bool latent_scaling;          /* analysis.latent_scaling.enabled */
    int64_t scaling_num_samples;  /* analysis.latent_scaling.num_samples: rows of the split (a prefix of the order) */
    bool latent_activations;      /* analysis.latent_activations.enabled */
    int64_t n_max_activations;    /* examples kept per latent and dataset */
    int64_t max_num_samples;      /* first sequences of each dataset */
    double min_threshold;         /* crosscoder: activations below are ignored (1e-4); SAE: 0 */
    int64_t n_effective_ft_only;  /* crosscoder: num_effective_ft_only_latents */
    uint64_t seed;
} dk_dict_analysis_cfg;

/* rows: the analysis split's rows of the training target (difference, or stacked [base, ft]); base_ft: the same
 * rows of the base and finetuned models (stacked), used for the SAE's latent-scaling targets (NULL for the
 * crosscoder, whose rows are already stacked). */
int dk_dict_analyse(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *rows,
                    const dk_dict_set *base_ft, const dk_dict_analysis_cfg *cfg, const char *base, cJSON *sum,
                    dk_err *err);

/* SAELens export into dir (rank 0 only; created). 0, or -1 with err naming the file. */
int dk_dict_export_saelens(const dk_dict_model *m, const dk_dict_norm *nrm, const char *dir, const char *model_name,
                           int64_t layer, const char *hook_name, dk_err *err);

#endif
