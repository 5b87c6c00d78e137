/* dict_step.h — the pieces of one BatchTopK SAE / crosscoder training step on the CPU (dictionary_spec §1–§2),
 * the reference for their CUDA twins (kernels/cuda/dict_step.cuh). No MPI here: host/methods/dict_train.c
 * splits the batch over ranks, makes the selection global and sums the gradients.
 *
 * One layout for both models. A row is L stacked layers of d values (L = 1: the SAE's difference; L = 2: the
 * crosscoder's [base, ft]), D = L·d; F latents. Parameters, gradients and Adam moments are flat fp32 buffers of
 * P = 2·F·D + F + D values, in this order:
 *     W_enc (F, D)   row j: latent j's encoder vector        (SAE encoder.weight; crosscoder encoder.weight[l][:, j])
 *     b_enc (F)
 *     W_dec (F, D)   row j: latent j's decoder vector(s)     (SAE decoder.weight[:, j]; crosscoder decoder.weight[l][j])
 *     b_dec (D)                                               (SAE b_dec; crosscoder decoder.bias[l])
 * Rows are latents so that a sparse code touches whole contiguous rows (gather in the decoder, scatter in the
 * backward). Sparse codes are CSR by batch row: row_ptr (rows + 1), idx (latent), val.
 *
 * The step (the host strings these together):
 *   encode       pre = u·W_encᵀ + b_enc, u = x − b_dec (SAE) or x (crosscoder); one sgemm
 *   scores       s = relu(pre)·w, w_j = Σ_l ‖W_dec[j, l]‖ (crosscoder) or 1 (SAE)
 *   selection    the B·k largest positive scores of the global batch: 16-bit histograms of the float bits give
 *                the exact k-th value t; entries above t are kept, and ties at t in row-major order (dk_cpu_select)
 *   decode       x̂ = Σ_j f_j W_dec[j] + b_dec over the selected latents only
 *   auxk         per row, the k_aux dead latents of largest score (values relu(pre)), decoded without bias
 *   backward     for a sparse code and the loss gradient g (rows, D) w.r.t. the reconstruction:
 *                dW_dec[j] += f·g,  δ = W_dec[j]·g,  dW_enc[j] += δ·u,  db_enc[j] += δ   (only touched latents)
 *   optimizer    decoder-parallel gradient removal (SAE), global-norm clipping, Adam (torch's arithmetic), decoder
 *                renormalisation (SAE) */
#ifndef DK_CPU_DICT_STEP_H
#define DK_CPU_DICT_STEP_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dk_dict_shape {
    int64_t d;   /* per-layer width */
    int64_t L;   /* layers stacked in a row */
    int64_t D;   /* L·d */
    int64_t F;   /* latents */
} dk_dict_shape;

static inline int64_t dk_dict_n_params(const dk_dict_shape *s) { return 2 * s->F * s->D + s->F + s->D; }
static inline int64_t dk_dict_off_b_enc(const dk_dict_shape *s) { return s->F * s->D; }
static inline int64_t dk_dict_off_W_dec(const dk_dict_shape *s) { return s->F * s->D + s->F; }
static inline int64_t dk_dict_off_b_dec(const dk_dict_shape *s) { return 2 * s->F * s->D + s->F; }

/* pre (n, F) = u·W_encᵀ + b_enc with u (n, D) = x − b_dec when b_dec is given (SAE), else u = x (u may alias x
 * only when b_dec is NULL). */
void dk_cpu_dict_encode(const dk_dict_shape *s, const float *x, int64_t n, const float *W_enc, const float *b_enc,
                        const float *b_dec, float *u, float *pre);

/* w (F) = Σ_l ‖W_dec[j, l·d : (l+1)·d]‖₂ (fp32, as torch's norm(dim=2).sum(0)). */
void dk_cpu_dict_code_weights(const dk_dict_shape *s, const float *W_dec, float *w);

/* pre (n, F) becomes relu(pre); scores (n, F) = relu(pre) · w_j (w NULL: relu(pre); scores may then be pre itself);
 * hist_hi (65536, may be NULL) += the high-half histogram of the positive finite scores (dk_cpu_hist_hi), in the
 * same pass: the fused encoder tail of the CUDA twin. */
void dk_cpu_dict_scores(float *pre, int64_t n, int64_t F, const float *w, float *scores, uint64_t *hist_hi);

/* Histograms of the positive finite entries of s (n values) by their float bits: hi counts bits >> 16
 * (65536 bins); lo counts the low 16 bits of the entries whose high half equals `hi_bin`. Added to hist. */
void dk_cpu_hist_hi(const float *s, int64_t n, uint64_t *hist);
void dk_cpu_hist_lo(const float *s, int64_t n, uint32_t hi_bin, uint64_t *hist);

/* The selected entries of scores (rows, F): score > t, plus the first `ties` entries equal to t in row-major order;
 * t <= 0 selects every positive entry. Values come from val (rows, F) (relu(pre): unscaled). CSR out: row_ptr
 * (rows + 1), idx and fval (capacity cap; CHECKed). Returns the number selected. */
int64_t dk_cpu_select(const float *scores, const float *val, int64_t rows, int64_t F, float t, int64_t ties,
                      int64_t *row_ptr, int32_t *idx, float *fval, int64_t cap);

/* AuxK selection: per row, the k_aux latents with dead[j] != 0 of largest score (ties: lower index), keeping those
 * with a positive value (zeros decode to nothing and pass no gradient). CSR out as above (cap >= rows·k_aux). */
int64_t dk_cpu_auxk_select(const float *scores, const float *val, int64_t rows, int64_t F, const uint8_t *dead,
                           int64_t k_aux, int64_t *row_ptr, int32_t *idx, float *fval);

/* out (rows, D) = Σ_j f_j W_dec[j] (+ b_dec when given). */
void dk_cpu_dict_decode(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                        const float *fval, const float *W_dec, const float *b_dec, float *out);

/* The code's CSC (by latent) from its CSR: col_ptr (F + 1), row_of and cval (nnz); each latent's entries in row
 * order. */
void dk_cpu_dict_csc(int64_t rows, int64_t F, const int64_t *row_ptr, const int32_t *idx, const float *fval,
                     int64_t *col_ptr, int32_t *row_of, float *cval);
/* The sparse backward below for latents [j0, j1) from the CSC: latent-major, so each latent's gradient rows stay in
 * cache while its entries are added (in row order), and disjoint latent ranges can run on separate threads with
 * results independent of the split. δ = W_dec[j]·g_b with eight partial sums. */
void dk_cpu_dict_backward_latents(const dk_dict_shape *s, int64_t j0, int64_t j1, const int64_t *col_ptr,
                                  const int32_t *row_of, const float *cval, const float *g, const float *u,
                                  const float *W_dec, float *dW_enc, float *db_enc, float *dW_dec);
/* Sparse backward of one code against g (rows, D) (the CSC and every latent, on the calling thread): dW_dec[j] += f·g_b; δ = W_dec[j]·g_b; dW_enc[j] += δ·u_b;
 * db_enc[j] += δ. Accumulates into the gradient buffers. */
void dk_cpu_dict_backward(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                          const float *fval, const float *g, const float *u, const float *W_dec, float *dW_enc,
                          float *db_enc, float *dW_dec);

/* SAE: db_dec −= W_encᵀ·db_enc (the encoder's path to b_dec through u = x − b_dec). */
void dk_cpu_dict_bdec_through_encoder(const dk_dict_shape *s, const float *W_enc, const float *db_enc, float *db_dec);

/* SAE (L = 1): G[j] −= (G[j]·ŵ_j) ŵ_j with ŵ_j = W_dec[j] / (‖W_dec[j]‖ + 1e-6). */
void dk_cpu_dict_remove_parallel(const dk_dict_shape *s, const float *W_dec, float *dW_dec);
/* SAE: W_dec[j] /= ‖W_dec[j]‖ + FLT_EPSILON. */
void dk_cpu_dict_unit_norm(const dk_dict_shape *s, float *W_dec);

/* The loss's residual and its gradient w.r.t. the reconstruction, on this rank's n of the global batch's B rows:
 * e (n, D) holds x̂ on entry and e = x − x̂ on return; g (n, D) = ∂loss/∂x̂: SAE (loss mean_b ‖e_b‖²)
 * −(2/B)·e; crosscoder (loss mean_{b,l} ‖e_bl‖) −e_bl / ‖e_bl‖ / (B·L), 0 where ‖e_bl‖ = 0. sums = {Σ_{b,l} ‖e_bl‖²
 * (fp64), Σ_{b,l} (float)‖e_bl‖}, each (row, layer) in order. */
void dk_cpu_dict_residual(const dk_dict_shape *s, const float *x, int64_t n, int64_t B, bool sae, float *e, float *g,
                          double sums[2]);
/* The latents a code uses: fired (F) = 1 where some entry names the latent, else 0; returns the smallest selected
 * score f_e·w_j (w NULL: f_e), +inf without entries (the threshold EMA's minimum). */
float dk_cpu_dict_fired(int64_t nnz, const int32_t *idx, const float *fval, const float *w, int64_t F, uint8_t *fired);
/* out (D) = Σ_r x[r] in fp64, rows in order (AuxK's mean residual before the sum over ranks). */
void dk_cpu_dict_col_sums(const float *x, int64_t n, int64_t D, double *out);
/* db_dec (D) += Σ_r g[r] in fp32, rows in order (the decoder bias's gradient). */
void dk_cpu_dict_bdec_grad(const float *g, int64_t n, int64_t D, float *db_dec);
/* AuxK's sums: nd = {Σ ‖e − ê‖², Σ ‖e − ē‖²} in fp64 over e, ê (n, D), ē = mean_e (D). */
void dk_cpu_dict_auxk_residual(const float *e, const float *ehat, const double *mean_e, int64_t n, int64_t D,
                               double nd[2]);
/* AuxK's gradient w.r.t. ê in place: ê ← coef·(e − ê) over count values (coef = −2α / (B·den)). */
void dk_cpu_dict_auxk_grad(const float *e, float *ehat, int64_t count, float coef);

/* Σ x² in fp64. */
double dk_cpu_sumsq(const float *x, int64_t n);

/* Adam's fp32 constants for step t, computed in double and rounded once, as torch does; shared by dk_cpu_adam
 * and its CUDA twin so both use the same bits. */
typedef struct dk_adam_coef {
    float step;     /* lr / (1 − β1^t) */
    float bc2_sqrt; /* sqrt(1 − β2^t) */
    float w1;       /* 1 − β1 */
    float b2, w2;   /* β2, 1 − β2 */
    float eps;
} dk_adam_coef;

static inline dk_adam_coef dk_adam_coefs(double lr, double beta1, double beta2, double eps, int64_t t) {
    const double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    dk_adam_coef c = {(float)(lr / bc1), (float)sqrt(bc2), (float)(1.0 - beta1), (float)beta2, (float)(1.0 - beta2),
                      (float)eps};
    return c;
}

/* torch.optim.Adam (no weight decay, not amsgrad), step t >= 1, on n values, the gradient multiplied by
 * grad_scale first (torch's clip_grad_norm_ coefficient): m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²;
 * p ← p − (lr / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + eps). One pass over p, g, m, v. */
void dk_cpu_adam(float *p, const float *g, float *m, float *v, int64_t n, float grad_scale, double lr, double beta1,
                 double beta2, double eps, int64_t t);

#endif
