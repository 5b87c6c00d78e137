/* nmf.c — see nmf.h. */
#include "methods/nmf.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "methods/torch_rng.h"

#define MAX_THREADS 64

void dk_nmf_init(dk_nmf_fit *f, int64_t rows, int64_t cols, int rank, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->rows = rows, f->cols = cols, f->rank = rank;
    f->W = dk_malloc((size_t)(cols * rank) * sizeof *f->W);
    f->H = dk_malloc((size_t)(rows * rank) * sizeof *f->H);
    dk_torch_rng g;
    dk_torch_rng_seed(&g, seed);
    dk_torch_randn(&g, f->W, cols * rank);
    dk_torch_randn(&g, f->H, rows * rank);
    for (int64_t i = 0; i < cols * rank; i++) f->W[i] = fabsf(f->W[i]);
    for (int64_t i = 0; i < rows * rank; i++) f->H[i] = fabsf(f->H[i]);
}

void dk_nmf_free(dk_nmf_fit *f) {
    free(f->W);
    free(f->H);
    f->W = f->H = NULL;
}

void dk_nmf_csr_free(dk_nmf_csr *V) {
    free(V->row_ptr);
    free(V->col);
    free(V->val);
    memset(V, 0, sizeof *V);
}

/* Rows are independent in every product and update below, so the split over threads changes no result; a
 * block is at least PARALLEL_MIN_ROWS rows (shorter work is not worth a thread). */
enum { PARALLEL_MIN_ROWS = 2048 };

static void parallel_for(int threads, int64_t n, dk_rows_fn fn, void *ctx) {
    dk_parallel_rows(threads > MAX_THREADS ? MAX_THREADS : threads, n, PARALLEL_MIN_ROWS, fn, ctx);
}

/* ---- the products ----------------------------------------------------------------------------------------- */

/* V and its transpose (compressed columns), the two orders the updates read it in. */
typedef struct nmf_ctx {
    const dk_nmf_csr *V;
    int64_t *col_ptr;   /* (cols + 1) */
    int32_t *row_of;    /* (nnz) */
    float *val_t;       /* (nnz) */
    dk_nmf_fit *f;
    double gram[DK_NMF_MAX_RANK * DK_NMF_MAX_RANK]; /* (rank, rank): HᵀH or WᵀW */
    double *prod;       /* (rows or cols, rank): VᵀH or V W */
} nmf_ctx;

/* One compressed sparse matrix S (rows via ptr) times a dense X (·, R): out[i] = Σ_e val[e] · X[idx[e]]. */
typedef struct sparse_times {
    const int64_t *ptr;
    const int32_t *idx;
    const float *val;
    const float *X;
    double *out;
    int R;
} sparse_times;

static void sparse_times_rows(void *p, int64_t lo, int64_t hi) {
    const sparse_times *s = p;
    const int R = s->R;
    for (int64_t i = lo; i < hi; i++) {
        double acc[DK_NMF_MAX_RANK] = {0};
        for (int64_t e = s->ptr[i]; e < s->ptr[i + 1]; e++) {
            const float *x = s->X + (int64_t)s->idx[e] * R;
            for (int k = 0; k < R; k++) acc[k] += (double)s->val[e] * (double)x[k];
        }
        for (int k = 0; k < R; k++) s->out[i * R + k] = acc[k];
    }
}

/* prod = VᵀH (cols, R) */
static void vt_h(nmf_ctx *x, int threads) {
    sparse_times s = {x->col_ptr, x->row_of, x->val_t, x->f->H, x->prod, x->f->rank};
    parallel_for(threads, x->f->cols, sparse_times_rows, &s);
}

/* prod = V W (rows, R) */
static void v_w(nmf_ctx *x, int threads) {
    sparse_times s = {x->V->row_ptr, x->V->col, x->V->val, x->f->W, x->prod, x->f->rank};
    parallel_for(threads, x->f->rows, sparse_times_rows, &s);
}

/* gram = Aᵀ A for A (n, R) */
static void gram_of(const float *A, int64_t n, int R, double *gram) {
    memset(gram, 0, (size_t)(R * R) * sizeof *gram);
    for (int64_t i = 0; i < n; i++)
        for (int a = 0; a < R; a++)
            for (int b = 0; b < R; b++) gram[a * R + b] += (double)A[i * R + a] * (double)A[i * R + b];
}

/* The multiplicative update of X (n, R) = W or H: X ← X ⊙ (relu(prod) + ε) / (relu(X gram) + ε). */
typedef struct update_ctx {
    float *X;
    const double *prod, *gram;
    int R;
} update_ctx;

static void update_rows(void *p, int64_t lo, int64_t hi) {
    update_ctx *u = p;
    const int R = u->R;
    const double eps = (double)FLT_EPSILON;
    for (int64_t i = lo; i < hi; i++) {
        float *x = u->X + i * R;
        double den[DK_NMF_MAX_RANK];
        for (int k = 0; k < R; k++) {
            double s = 0;
            for (int j = 0; j < R; j++) s += (double)x[j] * u->gram[j * R + k];
            den[k] = s;
        }
        for (int k = 0; k < R; k++) {
            const double num = (u->prod[i * R + k] > 0 ? u->prod[i * R + k] : 0) + eps;
            x[k] = (float)((double)x[k] * num / ((den[k] > 0 ? den[k] : 0) + eps));
        }
    }
}

/* torchnmf's loss for β = 2, as it computes it: ½‖V‖² + ½⟨H WᵀW, H⟩ − ⟨VᵀH, W⟩, reported as sqrt(2 loss). */
static double torchnmf_error(nmf_ctx *x, double v_norm, int threads) {
    dk_nmf_fit *f = x->f;
    const int R = f->rank;
    gram_of(f->W, f->cols, R, x->gram);
    double pos = 0;
    for (int64_t r = 0; r < f->rows; r++)
        for (int a = 0; a < R; a++)
            for (int b = 0; b < R; b++) pos += (double)f->H[r * R + a] * x->gram[a * R + b] * (double)f->H[r * R + b];
    vt_h(x, threads);
    double neg = 0;
    for (int64_t i = 0; i < f->cols * R; i++) neg += x->prod[i] * (double)f->W[i];
    const double loss = v_norm + 0.5 * pos - neg;
    return sqrt(2.0 * (loss > 0 ? loss : 0));
}

void dk_nmf_run(const dk_nmf_csr *V, dk_nmf_fit *f, int max_iter, double tol, int threads) {
    CHECK(f->rank >= 1 && f->rank <= DK_NMF_MAX_RANK, "dk_nmf_run: rank %d (1..%d supported)", f->rank, DK_NMF_MAX_RANK);
    CHECK(V->rows == f->rows && V->cols == f->cols, "dk_nmf_run: V is %lldx%lld, the fit %lldx%lld",
          (long long)V->rows, (long long)V->cols, (long long)f->rows, (long long)f->cols);
    const int R = f->rank;
    nmf_ctx x = {.V = V, .f = f};
    /* the transpose, rows ascending within each column */
    x.col_ptr = dk_calloc((size_t)V->cols + 1, sizeof *x.col_ptr);
    x.row_of = dk_malloc((size_t)(V->nnz ? V->nnz : 1) * sizeof *x.row_of);
    x.val_t = dk_malloc((size_t)(V->nnz ? V->nnz : 1) * sizeof *x.val_t);
    for (int64_t e = 0; e < V->nnz; e++) x.col_ptr[V->col[e] + 1]++;
    for (int64_t c = 0; c < V->cols; c++) x.col_ptr[c + 1] += x.col_ptr[c];
    int64_t *fill = dk_malloc((size_t)(V->cols ? V->cols : 1) * sizeof *fill);
    memcpy(fill, x.col_ptr, (size_t)V->cols * sizeof *fill);
    for (int64_t r = 0; r < V->rows; r++)
        for (int64_t e = V->row_ptr[r]; e < V->row_ptr[r + 1]; e++) {
            const int64_t at = fill[V->col[e]]++;
            x.row_of[at] = (int32_t)r;
            x.val_t[at] = V->val[e];
        }
    free(fill);
    const int64_t longest = V->rows > V->cols ? V->rows : V->cols;
    x.prod = dk_malloc((size_t)(longest * R) * sizeof *x.prod);
    double v_norm = 0;
    for (int64_t e = 0; e < V->nnz; e++) v_norm += (double)V->val[e] * (double)V->val[e];
    v_norm *= 0.5;

    f->err_init = f->err = torchnmf_error(&x, v_norm, threads);
    double previous = f->err_init;
    int it = 0;
    for (; it < max_iter; it++) {
        /* W from H */
        gram_of(f->H, f->rows, R, x.gram);
        vt_h(&x, threads);
        update_ctx uw = {f->W, x.prod, x.gram, R};
        parallel_for(threads, f->cols, update_rows, &uw);
        /* H from the new W */
        gram_of(f->W, f->cols, R, x.gram);
        v_w(&x, threads);
        update_ctx uh = {f->H, x.prod, x.gram, R};
        parallel_for(threads, f->rows, update_rows, &uh);
        if (it % 10 == 9) {
            f->err = torchnmf_error(&x, v_norm, threads);
            if ((previous - f->err) / f->err_init < tol) break;
            previous = f->err;
        }
    }
    f->n_iter = it < max_iter ? it + 1 : max_iter;
    free(x.col_ptr);
    free(x.row_of);
    free(x.val_t);
    free(x.prod);
}

double dk_nmf_error(const dk_nmf_csr *V, const dk_nmf_fit *f) {
    const int R = f->rank;
    double vv = 0, cross = 0, gw[DK_NMF_MAX_RANK * DK_NMF_MAX_RANK], gh[DK_NMF_MAX_RANK * DK_NMF_MAX_RANK];
    for (int64_t r = 0; r < V->rows; r++)
        for (int64_t e = V->row_ptr[r]; e < V->row_ptr[r + 1]; e++) {
            double wh = 0;
            for (int k = 0; k < R; k++) wh += (double)f->H[r * R + k] * (double)f->W[(int64_t)V->col[e] * R + k];
            vv += (double)V->val[e] * (double)V->val[e];
            cross += (double)V->val[e] * wh;
        }
    gram_of(f->W, f->cols, R, gw);
    gram_of(f->H, f->rows, R, gh);
    double hw = 0;
    for (int i = 0; i < R * R; i++) hw += gw[i] * gh[i];
    const double sq = vv - 2 * cross + hw;
    return sqrt(sq > 0 ? sq : 0);
}
