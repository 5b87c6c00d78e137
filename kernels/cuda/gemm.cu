/* gemm.cu — see gemm.cuh. The plan cache is a fixed array searched linearly (a forward pass has about ten
 * distinct shapes); when full, the oldest plan is replaced. */
#include "gemm.cuh"

#include <cublasLt.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PLANS = 128 };

typedef struct plan_key {
    int64_t M, N, K, ldx, ldy;
    int in_dtype, y_dtype, has_beta;
    unsigned align_x, align_w, align_y;
} plan_key;

typedef struct plan {
    plan_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} plan;

struct dk_cuda_gemm {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    plan plans[MAX_PLANS];
    int n_plans, next_evict;
};

static cudaDataType_t cuda_type(int dtype) { return dtype == DK_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Largest power of two (<= 256) dividing both the address and the row pitch in bytes. */
static unsigned alignment(const void *p, int64_t ld, int dtype) {
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)(ld * (int64_t)dk_cuda_dtype_size((dk_cuda_dtype)dtype));
    unsigned a = 1;
    while (a < 256 && (v & a) == 0) a <<= 1;
    return a;
}

extern "C" cublasStatus_t dk_cuda_gemm_create(dk_cuda_gemm **out, size_t workspace_bytes) {
    dk_cuda_gemm *g = (dk_cuda_gemm *)calloc(1, sizeof *g);
    if (!g) return CUBLAS_STATUS_ALLOC_FAILED;
    cublasStatus_t st = cublasLtCreate(&g->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(g);
        return st;
    }
    if (workspace_bytes && cudaMalloc(&g->workspace, workspace_bytes) != cudaSuccess) {
        cublasLtDestroy(g->lt);
        free(g);
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    g->workspace_bytes = workspace_bytes;
    *out = g;
    return CUBLAS_STATUS_SUCCESS;
}

static void plan_destroy(plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    memset(p, 0, sizeof *p);
}

extern "C" void dk_cuda_gemm_destroy(dk_cuda_gemm *g) {
    if (!g) return;
    for (int i = 0; i < g->n_plans; i++) plan_destroy(&g->plans[i]);
    cudaFree(g->workspace);
    cublasLtDestroy(g->lt);
    free(g);
}

extern "C" int dk_cuda_gemm_n_plans(const dk_cuda_gemm *g) { return g->n_plans; }

#define TRY(expr)                                                                                            \
    do {                                                                                                     \
        cublasStatus_t st_ = (expr);                                                                         \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
            plan_destroy(p);                                                                                 \
            return st_;                                                                                      \
        }                                                                                                    \
    } while (0)

/* Builds the plan for key k into p (which is zeroed). Column-major view: D (N×M) = op_T(W: K×N) · x (K×M). */
static cublasStatus_t plan_build(dk_cuda_gemm *g, plan *p, const plan_key *k) {
    p->key = *k;
    const cublasComputeType_t compute = CUBLAS_COMPUTE_32F; /* fp32 accumulation; no TF32 in the F32 mode */
    TRY(cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F));
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
    TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
    TRY(cublasLtMatrixLayoutCreate(&p->a, cuda_type(k->in_dtype), (uint64_t)k->K, (uint64_t)k->N, k->K));
    TRY(cublasLtMatrixLayoutCreate(&p->b, cuda_type(k->in_dtype), (uint64_t)k->K, (uint64_t)k->M, k->ldx));
    TRY(cublasLtMatrixLayoutCreate(&p->c, cuda_type(k->y_dtype), (uint64_t)k->N, (uint64_t)k->M, k->ldy));
    cublasLtMatmulPreference_t pref;
    TRY(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = g->workspace_bytes;
    const uint32_t aw = k->align_w, ax = k->align_x, ay = k->align_y;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof aw);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof ax);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof ay);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof ay);
    cublasLtMatmulHeuristicResult_t result;
    int n_results = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result, &n_results);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && n_results == 0) st = CUBLAS_STATUS_NOT_SUPPORTED;
    TRY(st);
    p->algo = result.algo;
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t find_plan(dk_cuda_gemm *g, const plan_key *k, plan **out) {
    for (int i = 0; i < g->n_plans; i++)
        if (memcmp(&g->plans[i].key, k, sizeof *k) == 0) {
            *out = &g->plans[i];
            return CUBLAS_STATUS_SUCCESS;
        }
    plan *p;
    if (g->n_plans < MAX_PLANS) {
        p = &g->plans[g->n_plans];
    } else {
        p = &g->plans[g->next_evict];
        g->next_evict = (g->next_evict + 1) % MAX_PLANS;
        plan_destroy(p);
    }
    cublasStatus_t st = plan_build(g, p, k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (p == &g->plans[g->n_plans]) g->n_plans++;
    *out = p;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t dk_cuda_linear(dk_cuda_gemm *g, void *y, int64_t ldy, dk_cuda_dtype y_dtype, const void *x,
                                         int64_t ldx, const void *w, dk_cuda_dtype in_dtype, int64_t M, int64_t N,
                                         int64_t K, float alpha, float beta, cudaStream_t stream) {
    if (M == 0 || N == 0) return CUBLAS_STATUS_SUCCESS;
    if (K < 1 || ldx < K || ldy < N) return CUBLAS_STATUS_INVALID_VALUE;
    plan_key k;
    memset(&k, 0, sizeof k); /* padding too: keys are compared with memcmp */
    k.M = M, k.N = N, k.K = K, k.ldx = ldx, k.ldy = ldy;
    k.in_dtype = in_dtype, k.y_dtype = y_dtype, k.has_beta = beta != 0.0f;
    k.align_x = alignment(x, ldx, in_dtype), k.align_w = alignment(w, K, in_dtype), k.align_y = alignment(y, ldy, y_dtype);
    plan *p;
    cublasStatus_t st = find_plan(g, &k, &p);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return cublasLtMatmul(g->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c, &p->algo, g->workspace,
                          g->workspace_bytes, stream);
}

extern "C" cublasStatus_t dk_cuda_lora(dk_cuda_gemm *g, void *y, int64_t ldy, const void *x, int64_t ldx,
                                       const void *A, const void *B, void *tmp, int64_t M, int64_t N, int64_t K,
                                       int64_t r, float alpha, dk_cuda_dtype dtype, cudaStream_t stream) {
    cublasStatus_t st = dk_cuda_linear(g, tmp, r, dtype, x, ldx, A, dtype, M, r, K, 1.0f, 0.0f, stream);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return dk_cuda_linear(g, y, ldy, dtype, tmp, r, B, dtype, M, N, r, alpha, 1.0f, stream);
}
