/* dict_analysis.h — what the SAE and crosscoder jobs compute from a trained dictionary (seed_spec §9–§10,
 * src/diffing/utils/dictionary/{analysis.py,latent_scaling/closed_form.py,latent_activations.py}):
 *
 *   latent statistics  per latent (the seed's latent_df columns): dec_norm, enc_norm (SAE); for the crosscoder
 *                      dec_base_norm, dec_ft_norm, dec_norm_diff = ((n_b − n_f)/max(n_b, n_f) + 1)/2, the same
 *                      three for the encoder (enc_*), dec_cos_sim, enc_cos_sim, and the tag of dec_norm_diff
 *                      (ft_only < 0.1, base_only > 0.9, shared |x − 0.5| < 0.1, else other)
 *   latent scaling     closed-form β_j = (d_jᵀ Σ_n f_nj y_n) / (‖d_j‖² Σ_n f_nj²) per latent and target over the first
 *                      rows of the scaling set, f from threshold inference (the unscaled code):
 *                        SAE  f from the normalised difference (ft − base, or base − ft) of the paired rows,
 *                             d_j = W_dec[j], targets base_activation / ft_activation = the base / ft rows
 *                             normalised with the SAE's normaliser (as the seed's load_*_activation do);
 *                             beta_activation_ratio = base/ft. (The seed's all-latents pass encodes the ft rows
 *                             instead, dictionary_spec Q7, which the spec calls a probable bug; we encode the
 *                             difference, what its is_difference_sae=True path does.)
 *                        CC   d_j = W_dec[j, ft], targets base/ft_activation (x̃_m), base/ft_reconstruction (x̂_m,
 *                             with b_dec), base/ft_error (x̃_m − x̂_m + f_j W_dec[j, m]); ratios beta_ratio_error,
 *                             beta_ratio_reconstruction, beta_activation_ratio. Every target is fitted for every
 *                             latent (the seed fits the error targets only on the effective ft-only latents and
 *                             the shared baseline; a latent's β does not depend on which others are fitted), and
 *                             the two sets are marked (effective_ft_only_latent, shared_baseline_latent).
 *                      Sums in fp64 (the seed: fp32), reduced over the ranks. A latent that never fired has β NaN.
 *   latent activations threshold inference over every token of the first max_num_samples sequences of each dataset
 *                      (SAE: the difference rows; CC: the scaled code f·w_j, the seed's get_activations): per latent
 *                      max_act_train and freq_train = #active / #tokens, and the max-activating sequences of
 *                      every latent that fired (methods/maxact.h tables, sparse values, n_max_activations per
 *                      latent and dataset). The seed samples quantile bins at random (reservoir); we keep the top.
 *   export             the dictionary in SAELens's format (dict_export.c).
 *
 * Results (rank 0, under `base`; docs/formats.md "Dictionary analysis"):
 *   latent_stats/<column>                  (F) f64 per latent_df column; latent_stats/tag (F) strings (CC)
 *   latent_scaling/<target>/beta           (F) f64; latent_scaling/count_active (F) i64; attributes rows, targets
 *   latent_scaling/{effective_ft_only_latents,shared_baseline_latents}   (n) i64 latent indices (CC)
 *   latent_activations                     attributes total_tokens, mean_l0, sequences
 *   max_act/<dataset>/latent_<j>           max-activating examples of latent j
 * and into `sum`: n_latents, the tag counts (CC), the scaling and activation headlines, and top_latents: the 10
 * latents the seed's steering would pick (CC: smallest dec_norm_diff; SAE: smallest |beta_activation_ratio|, NaN
 * dropped) with their statistics and top example texts. */
#ifndef DK_METHODS_DICT_ANALYSIS_H
#define DK_METHODS_DICT_ANALYSIS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "methods/dict_data.h"
#include "methods/dict_model.h"
#include "methods/dict_norm.h"
#include "methods/maxact.h"
#include "methods/method_job.h"

typedef struct dk_dict_analysis_cfg {
    bool latent_scaling;          /* analysis.latent_scaling.enabled */
    int64_t scaling_num_samples;  /* analysis.latent_scaling.num_samples: the first rows of the scaling set */
    bool latent_activations;      /* analysis.latent_activations.enabled */
    int64_t n_max_activations;    /* examples kept per latent and dataset */
    int64_t max_num_samples;      /* first sequences of each dataset */
    double min_threshold;         /* activations <= this are not counted (crosscoder config 1e-4; the seed reads
                                   * the key but never uses it: 0 is the seed's behaviour) */
    int64_t n_effective_ft_only;  /* crosscoder: num_effective_ft_only_latents (-1: every ft_only latent) */
    uint64_t seed;                /* the shared baseline's random sample */
} dk_dict_analysis_cfg;

/* rows: the target's rows (difference, or stacked [base, ft] for the crosscoder) of the latent-activations split:
 * whole sequences are read from its stores (every token, the seed's SampleCache). pairs: the stacked [base, ft]
 * rows of the latent-scaling split, opened with the seed's selection (dk_dict_set_open with max_total = scaling
 * num_samples and the training skip, as the seed's setup_training_datasets without shuffling); the first
 * cfg->scaling_num_samples of its rows are used. Crosscoder: NULL uses `rows` (the same stores and rows). */
int dk_dict_analyse(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *rows,
                    const dk_dict_set *pairs, const dk_dict_analysis_cfg *cfg, const char *base, cJSON *sum,
                    dk_err *err);

/* SAELens export into dir (created; rank 0 only): sae_weights.safetensors (W_enc (d_in, d_sae), b_enc (d_sae),
 * W_dec (d_sae, d_in), b_dec (d_in), threshold (d_sae)) and cfg.json, architecture "jumprelu" (threshold
 * inference with a global θ is a JumpReLU), the normaliser folded in so that SAELens's encode/decode on raw
 * activations equals ours (normalise, encode, decode, denormalise):
 *   SAE  d_in = d, input = the difference; apply_b_dec_to_input: W_enc' = s·W_encᵀ, b_dec' = μ + b_dec/s,
 *        W_dec' = W_dec/s, threshold_j = θ
 *   CC   d_in = 2·d, input = [base, ft] concatenated; no b_dec on the input: W_enc' rows of layer l scaled by s_l,
 *        b_enc' = b_enc − Σ_l s_l μ_l·W_enc[j, l], W_dec' = W_dec/s_l, b_dec' = μ_l + b_dec/s_l, threshold_j = θ/w_j
 *        (the crosscoder selects on relu(pre)·w_j > θ)
 * (our denormalisation divides by s + 1e-8: a relative 1e-8/s that fp32 does not see.) 0, or -1 with err naming
 * the file. */
int dk_dict_export_saelens(const dk_dict_model *m, const dk_dict_norm *nrm, const char *dir, const char *model_name,
                           int64_t layer, const char *hook_name, dk_err *err);

/* ---- the pieces (also what tests/methods/test_dict_analysis.c checks) --------------------------------------- */

enum { DK_DICT_MAX_COLS = 24, DK_DICT_MAX_TARGETS = 6 };

/* The seed's latent_df: named fp64 columns of F values. */
typedef struct dk_dict_latent_df {
    int64_t F;
    int n_cols;
    char name[DK_DICT_MAX_COLS][48];
    double *col[DK_DICT_MAX_COLS];       /* (F) each */
    const char **tag;                    /* crosscoder: (F) static strings; NULL for the SAE */
} dk_dict_latent_df;

void dk_dict_df_init(dk_dict_latent_df *df, int64_t F);
void dk_dict_df_free(dk_dict_latent_df *df);
/* A new column of F NaNs (or the existing one of that name). */
double *dk_dict_df_add(dk_dict_latent_df *df, const char *name);
/* The column, or NULL. */
double *dk_dict_df_col(const dk_dict_latent_df *df, const char *name);
/* The norm, cosine and tag columns of the model (see the top of this file). */
void dk_dict_latent_norms(const dk_dict_model *m, dk_dict_latent_df *df);
/* "ft_only", "base_only", "shared" or "other" (NaN: other). */
const char *dk_dict_tag(double dec_norm_diff);
/* The k latents of smallest |column| (NaN dropped; ties: lower index), as the seed's steering selects them.
 * Returns how many (<= k) were written to out. */
int64_t dk_dict_smallest(const dk_dict_latent_df *df, const char *column, int64_t k, int64_t *out);

/* Rows per encoder chunk for F latents: the (rows, F) scratch near 16M values (64 MB), 1 to 1024. */
int64_t dk_dict_chunk_rows(int64_t F);

/* Latent-scaling sums over a stream of paired rows (any split into batches and ranks: only sums). */
typedef struct dk_dict_scaling {
    const dk_dict_model *m;
    const dk_dict_norm *nrm;
    dk_dict_target input;           /* SAE: what is encoded (difference_ftb/bft, base, ft); CC: stacked */
    int n_targets;
    const char *target[DK_DICT_MAX_TARGETS];
    int64_t F, cap;                 /* latents; rows per call */
    double *sums;                   /* (n_targets + 2, F): Σ f·(d_j·y) per target, then Σ f², then active counts */
    float *x, *y, *u, *pre, *xhat, *val, *w;   /* scratch for cap rows */
    int64_t *row_ptr;
    int32_t *idx;
} dk_dict_scaling;

void dk_dict_scaling_init(dk_dict_scaling *s, const dk_dict_model *m, const dk_dict_norm *nrm, dk_dict_target input,
                          int64_t cap);
void dk_dict_scaling_free(dk_dict_scaling *s);
/* pairs (n <= cap, 2·d): raw stacked [base, ft] rows. */
void dk_dict_scaling_add(dk_dict_scaling *s, const float *pairs, int64_t n);
/* β of target t (F) from the (reduced) sums. */
void dk_dict_scaling_betas(const dk_dict_scaling *s, int t, double *beta);

/* Latent activations of whole sequences: threshold inference on the normalised rows, values f (SAE) or f·w_j
 * (crosscoder, the seed's get_activations); values <= min_threshold are not activations. Per latent the maximum
 * over the sequences seen and the active count; the sequence's maximum is its score in the latent's table. */
typedef struct dk_dict_acts {
    const dk_dict_model *m;
    const dk_dict_norm *nrm;
    double min_threshold;
    int64_t F, cap, longest;        /* latents; rows per encoder chunk; the longest sequence */
    double *stats;                  /* (F + 3): active count per latent, then tokens, Σ L0 (active entries), sequences */
    double *max_act;                /* (F) largest activation seen (0: never active) */
    /* scratch */
    float *u, *pre, *val, *w;       /* (cap, D), (cap, F), (cap·F), (F) crosscoder code weights */
    int64_t *row_ptr;
    int32_t *idx;
    int32_t *e_tok, *e_lat, *sorted;  /* one sequence's active entries, and their order grouped by latent */
    float *e_val;
    int64_t n_e, cap_e;
    float *seq_max;                 /* (F) zero except for the latents the sequence touched */
    int64_t *count, *start;         /* (F) */
    int32_t *touched;               /* (F) */
    float *col;                     /* (longest) one latent's per-token values */
} dk_dict_acts;

void dk_dict_acts_init(dk_dict_acts *a, const dk_dict_model *m, const dk_dict_norm *nrm, double min_threshold,
                       int64_t longest);
void dk_dict_acts_free(dk_dict_acts *a);
/* One sequence: x (T <= longest, D) its raw rows (normalised in place), tokens (T), q its index in its dataset (the
 * tables' tie-break); tables (F) receive the sequence when it ranks (NULL: statistics only). */
void dk_dict_acts_sequence(dk_dict_acts *a, float *x, int64_t T, const int32_t *tokens, int64_t q, dk_maxact *tables);

#endif
