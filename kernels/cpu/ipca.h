/* ipca.h — incremental PCA (Ross et al. 2008), the algorithm of torchdr's and scikit-learn's IncrementalPCA that
 * the seed's PCA method runs (dictionary_spec §4), in fp64 with LAPACK:
 *
 *   partial_fit(X):  running mean and variance (Chan's merge of the batch's fp64 sums), then the SVD of
 *                    first batch:  X − mean
 *                    later:        [ diag(S)·V ; X − mean(X) ; sqrt(n_seen·n_X / n_total)·(mean_seen − mean(X)) ]
 *                    with signs fixed as svd_flip(u_based_decision=False) does (each row of V has its largest-|·|
 *                    entry positive).
 *   merge(A, B):     the same update with B's [diag(S_B)·V_B] rows in place of a batch's centred rows: the state
 *                    of A's rows followed by B's. This is how ranks combine what they fitted on their batches.
 *
 * Every component is kept between updates (no truncation to n_components until dk_ipca_result): the state then
 * describes the centred data exactly (its Gram matrix is Σ(x − mean)(x − mean)ᵀ), so any order of batches and
 * merges gives the exact PCA up to rounding. With n_components = d (the seed's default, n_components: null) this
 * is also what torchdr/scikit-learn compute; with fewer components they truncate after every batch, an
 * approximation of the same result (tests/methods/test_ipca.c measures both).
 *
 * Outputs (the seed's pca_model fields): components_ = V[:nc], singular_values_ = S[:nc],
 * explained_variance_ = S²/(n − 1), explained_variance_ratio_ = S² / Σ_j(var_j · n), mean_, var_ (population),
 * noise_variance_ = mean of the explained variances past nc (0 when nc equals d or the last batch's rows). */
#ifndef DK_CPU_IPCA_H
#define DK_CPU_IPCA_H

#include <stdint.h>

typedef struct dk_ipca {
    int64_t d;
    int64_t n_seen;
    int64_t last_batch;    /* rows of the last partial_fit (torchdr's noise-variance rule looks at it) */
    int64_t k;             /* components held: min(rows seen, d) */
    double *mean, *var;    /* (d) running mean, population variance */
    double *S;             /* (d) singular values, descending; first k valid */
    double *V;             /* (d, d) right singular vectors as rows; first k valid */
} dk_ipca;

void dk_ipca_init(dk_ipca *p, int64_t d);
void dk_ipca_free(dk_ipca *p);
/* x (n, d) fp32 rows. 0, or -1 when LAPACK does not converge. */
int dk_ipca_partial_fit(dk_ipca *p, const float *x, int64_t n);
/* a ← a followed by b. 0 or -1 as above. */
int dk_ipca_merge(dk_ipca *a, const dk_ipca *b);

/* The first nc components: components (nc, d) and the per-component arrays (nc each); noise_variance scalar. */
void dk_ipca_result(const dk_ipca *p, int64_t nc, double *components, double *singular_values,
                    double *explained_variance, double *explained_variance_ratio, double *noise_variance);

#endif
