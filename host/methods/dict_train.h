/* dict_train.h — one data-parallel training step of the BatchTopK SAE (BatchTopKTrainer) or the BatchTopK
 * crosscoder (BatchTopKCrossCoderTrainer), on every rank, in the reference's order (dictionary_spec §1.6, §2.5):
 *
 *   0. step 0: b_dec ← geometric median of the batch (Weiszfeld, 100 iterations, tol 1e-5): of the raw rows for
 *      the SAE (the reference's quirk Q1: before normalisation), of the normalised rows for the crosscoder;
 *   1. encode (this rank's rows), scores, the global BatchTopK selection of k·B entries (below);
 *   2. threshold EMA (step > threshold_start_step): θ ← min positive selected score, then 0.999·θ + 0.001·min;
 *   3. decode, residual, loss: SAE mean_b ‖e_b‖²; crosscoder mean_{b,l} ‖e_bl‖ (non-squared);
 *   4. dead-latent counters (+B, reset where a latent fired) before the auxiliary loss; AuxK on the dead latents
 *      (k_aux = min(d/2, #dead) per row), normalised by the batch variance of the detached residual, α = 1/32;
 *   5. sparse backward of both codes, gradients summed over the ranks (MPI_Allreduce);
 *   6. SAE: decoder-parallel gradient removal; clipping to global norm 1.0; Adam (lr · warm-up/decay schedule,
 *      the update of step 0 has lr 0 but moves the moments, as LambdaLR does); SAE: decoder rows back to unit norm.
 *
 * Across ranks: rank r holds a contiguous slice of the global batch (rows in batch order). The selection is the
 * reference's torch.topk over the whole flattened (B, F) score matrix: the exact k·B-th largest positive score t
 * is found from 16-bit histograms of the scores' float bits summed over the ranks (two rounds: high half, then
 * the low half within the chosen bin); entries above t are kept, and the entries equal to t are taken in
 * row-major order of the global batch (an exclusive scan of the ranks' tie counts), so the set is the one a
 * single rank would select, ties included (torch leaves tie order unspecified; exact ties have measure zero).
 * Every other cross-row quantity (loss, AuxK's mean residual and denominators, the fired mask, the threshold's
 * minimum, the geometric median's sums) is reduced over the ranks; the parameter update then runs identically on
 * every rank. What differs with the rank count is only the order of fp32 additions in the summed gradients
 * (tests/methods/dict_ranks.sh states the tolerance). */
#ifndef DK_METHODS_DICT_TRAIN_H
#define DK_METHODS_DICT_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "dist/dist.h"
#include "methods/dict_model.h"

typedef struct dk_dict_train_cfg {
    int64_t steps;                /* the schedule's total steps */
    double lr;
    int64_t warmup_steps;
    int64_t decay_start;          /* < 0: no decay */
    double auxk_alpha;            /* 1/32 */
    int64_t dead_threshold;       /* tokens without firing that make a latent dead (10,000,000) */
    int64_t top_k_aux;            /* d / 2 */
    double threshold_beta;        /* 0.999 */
    int64_t threshold_start_step; /* 1000 */
    int64_t k;                    /* target k */
    int64_t k_initial;            /* crosscoder: k_max when given, else k (SAE: k) */
    int64_t k_anneal_steps;       /* crosscoder k-annealing; 0: k stays at k_initial (the reference's Q3) */
    double clip;                  /* max global gradient norm (1.0) */
    int threads;                  /* CPU threads of the step's sparse and element-wise passes (<= 1: one) */
    bool adam_bf16;               /* GPU trainer only: Adam moments stored as bf16 (dict_step.cuh, "bf16 moments";
                                   * the goldens hold for fp32 moments); the CPU trainer keeps fp32 moments */
} dk_dict_train_cfg;

typedef struct dk_dict_step_stats {
    double loss, l2_loss, mse_loss, auxk_loss;   /* the reference's logged losses (normalised units) */
    double grad_norm;                            /* before clipping */
    int64_t k, selected, dead;                   /* k of this step, entries kept, dead latents */
    double lr;
} dk_dict_step_stats;

typedef struct dk_dict_trainer {
    const dk_dist *dist;
    dk_dict_train_cfg c;
    dk_dict_model *m;
    float *grad, *adam_m, *adam_v;  /* (P) */
    int64_t *since_fired;           /* (F) tokens since each latent last fired */
    int64_t step;                   /* steps done */
    int64_t cap_rows;               /* rows per rank the scratch holds */
    float *u, *pre, *scores, *xhat, *g, *w, *ehat;   /* scores: crosscoder only (the SAE's are relu(pre)) */
    uint64_t *hist;                 /* (65536) this rank's high-half histogram of the scores */
    uint64_t *hist_scratch;         /* (max(threads, 1), 65536) per-thread histograms, kept between steps */
    int64_t *row_ptr, *aux_ptr;
    int32_t *idx, *aux_idx;
    float *fval, *aux_val;
    int64_t cap_sel;
    int64_t *col_ptr;               /* (F + 1) the code's CSC for the backward */
    int32_t *row_of;                /* (cap_sel) */
    float *cval;                    /* (cap_sel) */
    uint8_t *fired, *dead;
    dk_dict_step_stats last;
} dk_dict_trainer;

/* Collective only in the sense that every rank builds the same trainer. max_rows: most rows this rank will hold. */
void dk_dict_trainer_init(dk_dict_trainer *tr, const dk_dist *dist, const dk_dict_train_cfg *cfg, dk_dict_model *m,
                          int64_t max_rows);
void dk_dict_trainer_free(dk_dict_trainer *tr);

/* The crosscoder's annealed k at a step (the SAE's k when k_initial == k). */
int64_t dk_dict_k_at(const dk_dict_train_cfg *c, int64_t step);
/* lr · get_lr_schedule(step). */
double dk_dict_lr_at(const dk_dict_train_cfg *c, int64_t step);

/* One step on this rank's rows x (n, D), normalised; raw (n, D) the unnormalised rows (used at step 0 by the SAE,
 * may equal x when there is no normaliser); B the global batch rows. Collective. 0, or -1 with err (agreed) when
 * the loss is not finite. */
int dk_dict_trainer_step(dk_dict_trainer *tr, const float *x, const float *raw, int64_t n, int64_t B, dk_err *err);

/* ---- pieces of the step shared by this trainer and the GPU trainer (dict_train_cuda.h) ---------------------- */

/* Step 0: out (D) = the geometric median of the global batch's rows x (this rank's n of B), per layer. Collective. */
void dk_dict_geometric_median(const dk_dist *dist, const dk_dict_shape *s, const float *x, int64_t n, int64_t B,
                              float *out);
/* hist (65536, zeroed by the caller) = this rank's histogram of the low halves of its positive finite scores whose
 * high half is hi_bin (dk_cpu_hist_lo on whatever holds the scores). */
typedef void (*dk_dict_hist_lo_fn)(void *ctx, uint32_t hi_bin, uint64_t *hist);
/* The K-th largest positive score over every rank's scores, from h (65536) = this rank's high-half histogram
 * (overwritten): *t and the number of entries equal to t this rank keeps (*ties); *t = 0 when there are no more
 * than K positive entries (keep them all). Collective. */
void dk_dict_global_threshold(const dk_dist *dist, uint64_t *h, int64_t K, dk_dict_hist_lo_fn hist_lo, void *ctx,
                              float *t, int64_t *ties);
/* tr->fired (F, this rank's mask) becomes the mask over the ranks; after threshold_start_step the threshold EMA
 * with min_sel (this rank's smallest selected score) reduced over the ranks. Collective. */
void dk_dict_fired_and_threshold(dk_dict_trainer *tr, float min_sel);
/* tr->last from this rank's residual sums {Σ‖e‖², Σ‖e_l‖} (summed over the ranks here; collective). */
void dk_dict_loss_stats(dk_dict_trainer *tr, double sums[2], int64_t B, int64_t k, int64_t n_sel);
/* since_fired and tr->dead from tr->fired after a batch of B rows; the number of dead latents. */
int64_t dk_dict_count_dead(dk_dict_trainer *tr, int64_t B);
/* AuxK from this rank's {Σ‖e − ê‖², Σ‖e − ē‖²} (summed here; collective): false when the loss is not finite (no
 * AuxK gradient), else tr->last.auxk_loss and *coef, the gradient's factor on e − ê. */
bool dk_dict_auxk_coef(dk_dict_trainer *tr, double nd[2], int64_t B, float *coef);
/* tr->last.loss; -1 with err when it is not finite. */
int dk_dict_check_loss(dk_dict_trainer *tr, dk_err *err);
/* From Σ g² of the summed gradients: tr->last.grad_norm and .lr, and the clipping factor for Adam (<= 1). */
float dk_dict_clip_scale(dk_dict_trainer *tr, double sumsq);

/* Collective helpers shared with evaluation: element-wise sums / minimum over the ranks (in place). */
void dk_dict_allreduce_f64(const dk_dist *d, double *v, int64_t n);
void dk_dict_allreduce_f32(const dk_dist *d, float *v, int64_t n);

#endif
