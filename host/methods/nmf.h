/* nmf.h — non-negative matrix factorisation of a sparse matrix, V ≈ H Wᵀ, as the seed's diff mining fits its
 * token topics: torchnmf 0.3.5, NMF(V.shape, rank).fit(V, beta=2, max_iter=200) (multiplicative updates for the
 * Frobenius loss, tol 1e-4). Shapes as torchnmf names them: V (rows, cols), W (cols, rank), H (rows, rank).
 *
 *   init   W = |randn(cols, rank)|, then H = |randn(rows, rank)|, from torch's CPU generator seeded with seed
 *          (torch_rng.h): the seed's library draws them so (torch.randn(...).abs()).
 *   loop   for it = 0 .. max_iter − 1:
 *            W ← W ⊙ (VᵀH + ε) / (W (HᵀH) + ε)
 *            H ← H ⊙ (V W + ε) / (H (WᵀW) + ε)          ε = float32 epsilon, as torchnmf adds it
 *            after every 10th: e = ‖V − HWᵀ‖_F, computed as torchnmf does, sqrt(‖V‖² + ⟨H WᵀW, H⟩ − 2⟨VᵀH, W⟩);
 *            stop when (e_previous − e) / e_0 < tol
 *   n_iter = the number of iterations run (torchnmf's return value).
 * Storage is float32 as in torch; products accumulate in double in a fixed order, and each output is computed by
 * one thread, so the result does not depend on the thread count. Against torchnmf on the same V and seed
 * (tests/methods/test_dm_nmf.c) W and H agree to 2e-6 relative (the test allows 2e-5): only float rounding differs. */
#ifndef DK_METHODS_NMF_H
#define DK_METHODS_NMF_H

#include <stdint.h>

#define DK_NMF_MAX_RANK 16 /* topics */

/* V in compressed rows: the values of row r are val[row_ptr[r] .. row_ptr[r + 1]), columns ascending. */
typedef struct dk_nmf_csr {
    int64_t rows, cols, nnz;
    int64_t *row_ptr;  /* (rows + 1) */
    int32_t *col;      /* (nnz) */
    float *val;        /* (nnz), > 0 */
} dk_nmf_csr;

typedef struct dk_nmf_fit {
    int64_t rows, cols;
    int rank;
    float *W;          /* (cols, rank) */
    float *H;          /* (rows, rank) */
    int n_iter;
    double err_init;   /* ‖V − HWᵀ‖_F at the start and at the last check (torchnmf's loss, as it computes it) */
    double err;
} dk_nmf_fit;

/* Allocates W and H and draws them as torchnmf does (rows * rank and cols * rank must be >= 16). */
void dk_nmf_init(dk_nmf_fit *f, int64_t rows, int64_t cols, int rank, uint64_t seed);
/* Runs the updates from the current W and H; threads >= 1. */
void dk_nmf_run(const dk_nmf_csr *V, dk_nmf_fit *f, int max_iter, double tol, int threads);
/* ‖V − HWᵀ‖_F of the current W and H, in double. */
double dk_nmf_error(const dk_nmf_csr *V, const dk_nmf_fit *f);
void dk_nmf_free(dk_nmf_fit *f);
void dk_nmf_csr_free(dk_nmf_csr *V);

#endif
