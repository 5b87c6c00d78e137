/* dict_step.cu — see dict_step.cuh. Sections: 0. the context (scratch); 1. encoder, code weights, scores and
 * histograms; 2. the BatchTopK selection; 3. the AuxK selection; 4. sparse decode and backward; 5. the SAE
 * decoder constraint and the b_dec path; 6. sum of squares and Adam; 7. the loss residual, the fired mask, column
 * sums and AuxK's residual. The arithmetic that has a CPU order to follow uses __fmul_rn/__fadd_rn (never
 * contracted into an FMA), so it rounds as the CPU twin does. */
#include "dict_step.cuh"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

enum {
    ROW_THREADS = 256,    /* one block per row or per latent */
    HIST_THREADS = 1024,  /* the fused scores + histogram pass */
    HIST_SHARED_BINS = 32768, /* positive floats: high half < 0x7F80 */
    SCAN_THREADS = 1024,  /* the one-block scan over rows */
    AUX_THREADS = 512,
    BDEC_THREADS = 1024,  /* 32 warps × 32 columns */
    SUMSQ_BLOCKS = 512,
    SUMSQ_THREADS = 256,
};

static bool shape_ok(const dk_dict_shape *s) {
    return s->d >= 1 && s->L >= 1 && s->D == s->d * s->L && s->F >= 1 && s->F <= 0x7fffffff && s->D <= 0x7fffffff;
}

/* ---------------------------------------------------------------------------------------------------
 * 0. Context */

struct dk_cuda_dict {
    dk_dict_shape s;
    int64_t rows, cap;
    int key_bits;           /* bits of the largest latent index (F − 1), for the radix sort */
    int64_t *row_work;      /* (rows) per-row counts: the selection's equal entries, then the ties each row keeps */
    uint32_t *iota;         /* (cap) 0, 1, 2, ...: the entries' positions, sorted along with their latents */
    uint32_t *keys_sorted;  /* (cap) latents of a code, sorted */
    uint32_t *perm;         /* (cap) entry positions in latent order (row order within a latent) */
    int32_t *ent_row;       /* (cap) the batch row of each entry */
    float *delta;           /* (cap) δ = W_dec[j]·g_b of each entry */
    int32_t *col_ptr;       /* (F + 1) where each latent's entries start in perm */
    void *sort_tmp;         /* CUB's temporary storage for cap entries */
    size_t sort_tmp_bytes;
    double *partials;       /* (SUMSQ_BLOCKS) */
    double *row_sums;       /* (rows, max(L, 2)) per-row fp64 sums of the residual passes */
    double *row_sums_host;  /* the same on the host (malloc), summed there in row order */
    uint32_t *min_bits;     /* (1) the smallest selected score's bits (non-negative floats order as integers) */
};

__global__ void k_iota(uint32_t *out, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = (uint32_t)i;
}

extern "C" void dk_cuda_dict_destroy(dk_cuda_dict *c) {
    if (!c) return;
    cudaFree(c->row_work), cudaFree(c->iota), cudaFree(c->keys_sorted), cudaFree(c->perm), cudaFree(c->ent_row);
    cudaFree(c->delta), cudaFree(c->col_ptr), cudaFree(c->sort_tmp), cudaFree(c->partials);
    cudaFree(c->row_sums), cudaFree(c->min_bits), free(c->row_sums_host);
    free(c);
}

#define TRY_CREATE(expr)                                                                                     \
    do {                                                                                                     \
        const cudaError_t st_ = (expr);                                                                      \
        if (st_ != cudaSuccess) {                                                                            \
            dk_cuda_dict_destroy(c);                                                                         \
            return st_;                                                                                      \
        }                                                                                                    \
    } while (0)

extern "C" cudaError_t dk_cuda_dict_create(dk_cuda_dict **out, const dk_dict_shape *s, int64_t rows,
                                           int64_t sel_cap) {
    *out = NULL;
    if (!shape_ok(s) || rows < 1 || rows > 0x7fffffff || sel_cap < 1 || sel_cap > 0x7fffffff)
        return cudaErrorInvalidValue;
    dk_cuda_dict *c = (dk_cuda_dict *)calloc(1, sizeof *c);
    if (!c) return cudaErrorMemoryAllocation;
    c->s = *s, c->rows = rows, c->cap = sel_cap;
    c->key_bits = 1;
    while (c->key_bits < 31 && ((int64_t)1 << c->key_bits) < s->F) c->key_bits++;
    TRY_CREATE(cub::DeviceRadixSort::SortPairs(NULL, c->sort_tmp_bytes, (const uint32_t *)NULL, (uint32_t *)NULL,
                                               (const uint32_t *)NULL, (uint32_t *)NULL, (int)sel_cap, 0,
                                               c->key_bits));
    TRY_CREATE(cudaMalloc((void **)&c->row_work, (size_t)rows * sizeof(int64_t)));
    TRY_CREATE(cudaMalloc((void **)&c->iota, (size_t)sel_cap * sizeof(uint32_t)));
    TRY_CREATE(cudaMalloc((void **)&c->keys_sorted, (size_t)sel_cap * sizeof(uint32_t)));
    TRY_CREATE(cudaMalloc((void **)&c->perm, (size_t)sel_cap * sizeof(uint32_t)));
    TRY_CREATE(cudaMalloc((void **)&c->ent_row, (size_t)sel_cap * sizeof(int32_t)));
    TRY_CREATE(cudaMalloc((void **)&c->delta, (size_t)sel_cap * sizeof(float)));
    TRY_CREATE(cudaMalloc((void **)&c->col_ptr, (size_t)(s->F + 1) * sizeof(int32_t)));
    TRY_CREATE(cudaMalloc(&c->sort_tmp, c->sort_tmp_bytes ? c->sort_tmp_bytes : 1));
    TRY_CREATE(cudaMalloc((void **)&c->partials, SUMSQ_BLOCKS * sizeof(double)));
    const size_t row_sums = (size_t)rows * (size_t)(s->L > 2 ? s->L : 2);
    TRY_CREATE(cudaMalloc((void **)&c->row_sums, row_sums * sizeof(double)));
    TRY_CREATE(cudaMalloc((void **)&c->min_bits, sizeof(uint32_t)));
    c->row_sums_host = (double *)malloc(row_sums * sizeof(double));
    if (!c->row_sums_host) TRY_CREATE(cudaErrorMemoryAllocation);
    k_iota<<<dk_grid_1d((size_t)sel_cap, 256), 256>>>(c->iota, sel_cap);
    TRY_CREATE(cudaGetLastError());
    TRY_CREATE(cudaDeviceSynchronize());
    *out = c;
    return cudaSuccess;
}

/* ---------------------------------------------------------------------------------------------------
 * 1. Encoder, code weights, scores and histograms */

/* One block per row (grid-stride over rows): u = x − b_dec (when b_dec) and pre = b_enc. */
__global__ void k_encode_prep(const float *x, const float *b_dec, const float *b_enc, int64_t n, int64_t D,
                              int64_t F, float *u, float *pre) {
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        if (b_dec)
            for (int64_t i = threadIdx.x; i < D; i += blockDim.x) u[r * D + i] = __fsub_rn(x[r * D + i], b_dec[i]);
        for (int64_t j = threadIdx.x; j < F; j += blockDim.x) pre[r * F + j] = b_enc[j];
    }
}

extern "C" cublasStatus_t dk_cuda_dict_encode(dk_cuda_gemm *g, const dk_dict_shape *s, const float *x, int64_t n,
                                              const float *W_enc, const float *b_enc, const float *b_dec, float *u,
                                              float *pre, cudaStream_t stream) {
    if (n == 0) return CUBLAS_STATUS_SUCCESS;
    if (n < 0 || n > 0x7fffffff || !shape_ok(s) || (b_dec && !u)) return CUBLAS_STATUS_INVALID_VALUE;
    const unsigned blocks = (unsigned)(n < 65535 * 16 ? n : 65535 * 16);
    k_encode_prep<<<blocks, ROW_THREADS, 0, stream>>>(x, b_dec, b_enc, n, s->D, s->F, b_dec ? u : NULL, pre);
    if (cudaGetLastError() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (!b_dec && u && u != x &&
        cudaMemcpyAsync(u, x, (size_t)(n * s->D) * sizeof(float), cudaMemcpyDeviceToDevice, stream) != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    /* pre (n, F) += u (n, D) · W_enc (F, D)ᵀ */
    return dk_cuda_linear(g, pre, s->F, DK_CUDA_F32, b_dec ? u : x, s->D, W_enc, DK_CUDA_F32, n, s->F, s->D, 1.0f,
                          1.0f, stream);
}

/* One block per latent: w_j = Σ_l (float)sqrt(Σ_i W_dec[j, l·d + i]², fp64). */
__global__ void __launch_bounds__(ROW_THREADS) k_code_weights(const float *W_dec, int64_t d, int64_t L, float *w) {
    __shared__ double shared[32];
    const int64_t j = blockIdx.x;
    float total = 0.0f;
    for (int64_t l = 0; l < L; l++) {
        const float *v = W_dec + (j * L + l) * d; /* (d) */
        double ss = 0;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += (double)v[i] * v[i];
        ss = dk_block_sum(ss, shared);
        total = __fadd_rn(total, (float)sqrt(ss));
    }
    if (threadIdx.x == 0) w[j] = total;
}

extern "C" cudaError_t dk_cuda_dict_code_weights(const dk_dict_shape *s, const float *W_dec, float *w,
                                                 cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    k_code_weights<<<(unsigned)s->F, ROW_THREADS, 0, stream>>>(W_dec, s->d, s->L, w);
    return cudaGetLastError();
}

/* Over the n entries of in (grid-stride): a = relu(in) → relu_out (may be NULL, may be in), a·w[o % F] (w NULL:
 * a) → scores (may be NULL), and the high half of every positive finite score counted into hist (may be NULL):
 * with shared_hist in a block-private 32768-bin histogram flushed at the end (one 64-bit atomic per non-empty
 * bin), else straight into hist. NaN inputs give a = 0 (the CPU's `pre > 0 ? pre : 0`). */
__global__ void __launch_bounds__(HIST_THREADS) k_scores_hist(const float *in, float *relu_out, const float *w,
                                                              float *scores, int64_t n, int64_t F,
                                                              unsigned long long *hist, bool shared_hist) {
    extern __shared__ uint32_t bins[]; /* (HIST_SHARED_BINS) when shared_hist */
    const bool use_shared = hist && shared_hist;
    if (use_shared) {
        for (int i = threadIdx.x; i < HIST_SHARED_BINS; i += blockDim.x) bins[i] = 0;
        __syncthreads();
    }
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += stride) {
        const float p = in[o], a = p > 0.0f ? p : 0.0f, sc = w ? __fmul_rn(a, w[o % F]) : a;
        if (relu_out) relu_out[o] = a;
        if (scores) scores[o] = sc;
        if (hist && sc > 0.0f && sc <= FLT_MAX) {
            const uint32_t bin = __float_as_uint(sc) >> 16;
            if (use_shared) atomicAdd(&bins[bin], 1u);
            else atomicAdd(&hist[bin], 1ull);
        }
    }
    if (use_shared) {
        __syncthreads();
        for (int i = threadIdx.x; i < HIST_SHARED_BINS; i += blockDim.x)
            if (bins[i]) atomicAdd(&hist[i], (unsigned long long)bins[i]);
    }
}

/* Launches k_scores_hist: with a hist, one block per SM with the shared histogram when a block may have 128 KiB
 * of shared memory (sm_80 and later) and no block counts 2^32 entries, else the global-atomic variant. */
static cudaError_t launch_scores_hist(const float *in, float *relu_out, const float *w, float *scores, int64_t n,
                                      int64_t F, uint64_t *hist, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (n < 0 || F < 1) return cudaErrorInvalidValue;
    unsigned long long *h = (unsigned long long *)hist; /* uint64_t and unsigned long long: the same 64 bits */
    const size_t shared_bytes = HIST_SHARED_BINS * sizeof(uint32_t);
    int dev = 0, optin = 0, sms = 0;
    cudaError_t st = cudaGetDevice(&dev);
    if (st == cudaSuccess) st = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (st == cudaSuccess) st = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (st != cudaSuccess) return st;
    const unsigned blocks_shared = (unsigned)(sms > 0 ? sms : 1);
    const bool shared_hist = hist && (size_t)optin >= shared_bytes && n / blocks_shared < ((int64_t)1 << 31);
    if (shared_hist) {
        st = cudaFuncSetAttribute(k_scores_hist, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes);
        if (st != cudaSuccess) return st;
        k_scores_hist<<<blocks_shared, HIST_THREADS, shared_bytes, stream>>>(in, relu_out, w, scores, n, F, h, true);
    } else {
        k_scores_hist<<<dk_grid_1d((size_t)n, HIST_THREADS), HIST_THREADS, 0, stream>>>(in, relu_out, w, scores, n,
                                                                                        F, h, false);
    }
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_dict_scores(float *pre, int64_t n, int64_t F, const float *w, float *scores,
                                           uint64_t *hist_hi, cudaStream_t stream) {
    if (n < 0 || F < 1 || n > INT64_MAX / F) return cudaErrorInvalidValue;
    return launch_scores_hist(pre, pre, w, scores, n * F, F, hist_hi, stream);
}

extern "C" cudaError_t dk_cuda_hist_hi(const float *s, int64_t n, uint64_t *hist, cudaStream_t stream) {
    return launch_scores_hist(s, NULL, NULL, NULL, n, 1, hist, stream);
}

/* Low halves of the positive finite entries whose high half is hi_bin (few entries, spread over 65536 bins:
 * global atomics rarely collide). */
__global__ void k_hist_lo(const float *s, int64_t n, uint32_t hi_bin, unsigned long long *hist) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = s[i];
        if (!(v > 0.0f && v <= FLT_MAX)) continue;
        const uint32_t b = __float_as_uint(v);
        if ((b >> 16) == hi_bin) atomicAdd(&hist[b & 0xffffu], 1ull);
    }
}

extern "C" cudaError_t dk_cuda_hist_lo(const float *s, int64_t n, uint32_t hi_bin, uint64_t *hist,
                                       cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (n < 0 || hi_bin > 0xffffu) return cudaErrorInvalidValue;
    k_hist_lo<<<dk_grid_1d((size_t)n, 256), 256, 0, stream>>>(s, n, hi_bin, (unsigned long long *)hist);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 2. The BatchTopK selection: count per row, scan over rows, write per row */

/* the CPU's rule for one score: kept outright (above t; t <= 0: positive), or a candidate tie (equal to t > 0) */
__device__ __forceinline__ uint32_t sel_above(float v, float t) { return t > 0.0f ? v > t : v > 0.0f; }
__device__ __forceinline__ uint32_t sel_equal(float v, float t) { return t > 0.0f && v == t; }

/* One block per row: row_ptr[r + 1] = entries above t, eq[r] = entries equal to t. */
__global__ void __launch_bounds__(ROW_THREADS) k_select_count(const float *scores, int64_t F, float t,
                                                              int64_t *row_ptr, int64_t *eq) {
    __shared__ unsigned long long shared[32];
    const int64_t r = blockIdx.x;
    const float *sr = scores + r * F; /* (F) */
    unsigned long long n_above = 0, n_equal = 0;
    for (int64_t j = threadIdx.x; j < F; j += blockDim.x) {
        n_above += sel_above(sr[j], t);
        n_equal += sel_equal(sr[j], t);
    }
    n_above = dk_block_sum(n_above, shared);
    n_equal = dk_block_sum(n_equal, shared);
    if (threadIdx.x == 0) row_ptr[r + 1] = (int64_t)n_above, eq[r] = (int64_t)n_equal;
}

/* One block over all rows, in chunks of blockDim.x: row r keeps its row_ptr[r + 1] entries (as counted) plus
 * take_r = clamp(ties − equal entries of the rows before r, 0, eq[r]) (eq NULL: none); row_ptr becomes the CSR
 * offsets and eq[r] becomes take_r. Each thread reads and writes only its own row's slots. */
__global__ void __launch_bounds__(SCAN_THREADS) k_rows_scan(int64_t rows, int64_t *row_ptr, int64_t *eq,
                                                            int64_t ties) {
    __shared__ unsigned long long shared[33];
    unsigned long long eq_carry = 0, pos_carry = 0, total;
    if (threadIdx.x == 0) row_ptr[0] = 0;
    for (int64_t base = 0; base < rows; base += blockDim.x) { /* the same trip count for every thread */
        const int64_t r = base + threadIdx.x;
        const unsigned long long n_above = r < rows ? (unsigned long long)row_ptr[r + 1] : 0;
        const unsigned long long n_equal = r < rows && eq ? (unsigned long long)eq[r] : 0;
        const int64_t eq_before = (int64_t)(eq_carry + dk_block_exclusive_scan(n_equal, shared, &total));
        eq_carry += total;
        int64_t take = ties - eq_before;
        take = take < 0 ? 0 : take > (int64_t)n_equal ? (int64_t)n_equal : take;
        const unsigned long long count = n_above + (unsigned long long)take;
        const unsigned long long before = pos_carry + dk_block_exclusive_scan(count, shared, &total);
        pos_carry += total;
        if (r < rows) {
            row_ptr[r + 1] = (int64_t)(before + count);
            if (eq) eq[r] = take;
        }
    }
}

/* One block per row: its kept entries in index order at row_ptr[r] onwards. An entry's position is the number
 * kept before it in the row: those above t, plus min(equal ones before it, take_r). Nothing at or past cap. */
__global__ void __launch_bounds__(ROW_THREADS) k_select_write(const float *scores, const float *val, int64_t F,
                                                              float t, const int64_t *row_ptr, const int64_t *take,
                                                              int32_t *idx, float *fval, int64_t cap) {
    __shared__ uint32_t scan[33];
    const int64_t r = blockIdx.x, start = row_ptr[r], keep_equal = take[r];
    const float *sr = scores + r * F; /* (F) */
    int64_t above_base = 0, equal_base = 0;
    for (int64_t base = 0; base < F; base += blockDim.x) { /* the same trip count for every thread */
        const int64_t j = base + threadIdx.x;
        uint32_t above = 0, equal = 0;
        if (j < F) above = sel_above(sr[j], t), equal = sel_equal(sr[j], t);
        uint32_t total;
        const uint32_t before = dk_block_exclusive_scan(above | equal << 16, scan, &total);
        const int64_t above_before = above_base + (before & 0xffffu), equal_before = equal_base + (before >> 16);
        int64_t pos = -1;
        if (above) pos = start + above_before + (equal_before < keep_equal ? equal_before : keep_equal);
        else if (equal && equal_before < keep_equal) pos = start + above_before + equal_before;
        if (pos >= 0 && pos < cap) idx[pos] = (int32_t)j, fval[pos] = val[r * F + j];
        above_base += total & 0xffffu;
        equal_base += total >> 16;
    }
}

/* *n (host) = row_ptr[rows]; waits for the stream. */
static cudaError_t read_count(const int64_t *row_ptr, int64_t rows, int64_t *n, cudaStream_t stream) {
    cudaError_t st = cudaMemcpyAsync(n, row_ptr + rows, sizeof(int64_t), cudaMemcpyDeviceToHost, stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream);
    return st;
}

extern "C" cudaError_t dk_cuda_select(dk_cuda_dict *ctx, const float *scores, const float *val, int64_t rows,
                                      int64_t F, float t, int64_t ties, int64_t *row_ptr, int32_t *idx, float *fval,
                                      int64_t cap, int64_t *n_selected, cudaStream_t stream) {
    *n_selected = 0;
    if (rows < 0 || rows > ctx->rows || F < 1 || F > 0x7fffffff || cap < 0 || ties < 0) return cudaErrorInvalidValue;
    if (rows == 0) return cudaMemsetAsync(row_ptr, 0, sizeof(int64_t), stream);
    k_select_count<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(scores, F, t, row_ptr, ctx->row_work);
    k_rows_scan<<<1, SCAN_THREADS, 0, stream>>>(rows, row_ptr, ctx->row_work, ties);
    k_select_write<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(scores, val, F, t, row_ptr, ctx->row_work, idx, fval,
                                                               cap);
    cudaError_t st = cudaGetLastError();
    if (st == cudaSuccess) st = read_count(row_ptr, rows, n_selected, stream);
    if (st == cudaSuccess && *n_selected > cap) st = cudaErrorInvalidValue;
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * 3. The AuxK selection: one block per row, run to count (write false: row_ptr[r + 1] = the row's count) and,
 * after the scan over rows, to write */

__global__ void __launch_bounds__(AUX_THREADS) k_auxk(const float *scores, const float *val, int64_t F,
                                                      const uint8_t *dead, int64_t k_aux, bool write,
                                                      int64_t *row_ptr, int32_t *idx, float *fval) {
    extern __shared__ unsigned long long cand[]; /* (a power of two >= min(k_aux, F)) */
    __shared__ uint32_t hist[256], scan[33], sel[4];
    __shared__ unsigned long long shared[32];
    const int64_t r = blockIdx.x;
    const float *sr = scores + r * F, *vr = val + r * F; /* (F) each */
    unsigned long long n_dead = 0;
    for (int64_t j = threadIdx.x; j < F; j += blockDim.x) n_dead += dead[j] != 0;
    n_dead = dk_block_sum(n_dead, shared);
    const int64_t k = k_aux < (int64_t)n_dead ? k_aux : (int64_t)n_dead;
    const int64_t start = write ? row_ptr[r] : 0;
    int64_t done = 0; /* entries kept so far (the same in every thread) */
    uint32_t total;
    if (k > 0 && k == (int64_t)n_dead) { /* every dead latent, in index order (the CPU does not sort then) */
        for (int64_t base = 0; base < F; base += blockDim.x) {
            const int64_t j = base + threadIdx.x;
            const uint32_t keep = j < F && dead[j] && vr[j] > 0.0f;
            const uint32_t before = dk_block_exclusive_scan(keep, scan, &total);
            if (write && keep) idx[start + done + before] = (int32_t)j, fval[start + done + before] = vr[j];
            done += total;
        }
    } else if (k > 0) { /* the k best dead latents, best first, ties to the lower index */
        const auto key_at = [&](int64_t j, uint32_t &key) {
            if (!dead[j]) return false;
            key = dk_order_key(sr[j], true);
            return true;
        };
        dk_radix_select(F, (uint32_t)k, key_at, hist, sel);
        dk_collect_candidates(F, key_at, sel, cand, scan);
        dk_bitonic_sort_desc(cand, (int)k);
        for (int64_t base = 0; base < k; base += blockDim.x) {
            const int64_t i = base + threadIdx.x;
            const uint32_t j = i < k ? ~(uint32_t)cand[i] : 0;
            const uint32_t keep = i < k && vr[j] > 0.0f;
            const uint32_t before = dk_block_exclusive_scan(keep, scan, &total);
            if (write && keep) idx[start + done + before] = (int32_t)j, fval[start + done + before] = vr[j];
            done += total;
        }
    }
    if (!write && threadIdx.x == 0) row_ptr[r + 1] = done;
}

extern "C" cudaError_t dk_cuda_auxk_select(dk_cuda_dict *ctx, const float *scores, const float *val, int64_t rows,
                                           int64_t F, const uint8_t *dead, int64_t k_aux, int64_t *row_ptr,
                                           int32_t *idx, float *fval, int64_t *n_selected, cudaStream_t stream) {
    *n_selected = 0;
    if (rows < 0 || rows > ctx->rows || F < 1 || F > 0x7fffffff || k_aux < 0) return cudaErrorInvalidValue;
    if (rows == 0) return cudaMemsetAsync(row_ptr, 0, sizeof(int64_t), stream);
    const int64_t k_max = k_aux < F ? k_aux : F;
    int64_t P = 1;
    while (P < k_max) P <<= 1;
    const size_t shared_bytes = (size_t)P * sizeof(unsigned long long);
    int dev = 0, optin = 0;
    cudaError_t st = cudaGetDevice(&dev);
    if (st == cudaSuccess) st = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (st != cudaSuccess) return st;
    if (shared_bytes + 4096 > (size_t)optin) return cudaErrorInvalidValue; /* k_aux too large for shared memory */
    if (shared_bytes > 48 * 1024) {
        st = cudaFuncSetAttribute(k_auxk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes);
        if (st != cudaSuccess) return st;
    }
    k_auxk<<<(unsigned)rows, AUX_THREADS, shared_bytes, stream>>>(scores, val, F, dead, k_aux, false, row_ptr, idx,
                                                                  fval);
    k_rows_scan<<<1, SCAN_THREADS, 0, stream>>>(rows, row_ptr, NULL, 0);
    k_auxk<<<(unsigned)rows, AUX_THREADS, shared_bytes, stream>>>(scores, val, F, dead, k_aux, true, row_ptr, idx,
                                                                  fval);
    st = cudaGetLastError();
    if (st == cudaSuccess) st = read_count(row_ptr, rows, n_selected, stream);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * 4. Sparse decode and backward */

/* One block per row: out = b_dec (or 0) + f_e·W_dec[j_e] for the row's entries in order (the CPU's order). */
__global__ void __launch_bounds__(ROW_THREADS) k_decode(int64_t D, const int64_t *row_ptr, const int32_t *idx,
                                                        const float *fval, const float *W_dec, const float *b_dec,
                                                        float *out) {
    const int64_t r = blockIdx.x, e0 = row_ptr[r], e1 = row_ptr[r + 1];
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float o = b_dec ? b_dec[i] : 0.0f;
        for (int64_t e = e0; e < e1; e++) o = __fadd_rn(o, __fmul_rn(fval[e], W_dec[(int64_t)idx[e] * D + i]));
        out[r * D + i] = o;
    }
}

extern "C" cudaError_t dk_cuda_dict_decode(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr,
                                           const int32_t *idx, const float *fval, const float *W_dec,
                                           const float *b_dec, float *out, cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || !shape_ok(s)) return cudaErrorInvalidValue;
    k_decode<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(s->D, row_ptr, idx, fval, W_dec, b_dec, out);
    return cudaGetLastError();
}

/* One block per row: ent_row[e] = r for the row's entries. */
__global__ void k_entry_rows(const int64_t *row_ptr, int32_t *ent_row) {
    const int64_t r = blockIdx.x;
    for (int64_t e = row_ptr[r] + threadIdx.x; e < row_ptr[r + 1]; e += blockDim.x) ent_row[e] = (int32_t)r;
}

/* Over positions p in [0, nnz]: the latents between the previous sorted key and this one start at p, so
 * col_ptr[j] is where latent j's entries start (each j written exactly once; col_ptr[F] = nnz). */
__global__ void k_col_ptr(const uint32_t *keys, int64_t nnz, int64_t F, int32_t *col_ptr) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p <= nnz; p += stride) {
        const int64_t here = p < nnz ? (int64_t)keys[p] : F, prev = p > 0 ? (int64_t)keys[p - 1] : -1;
        for (int64_t j = prev + 1; j <= here; j++) col_ptr[j] = (int32_t)p;
    }
}

/* One warp per entry: delta[e] = W_dec[j_e]·g[row_e] (lane-strided partial sums, a fixed xor tree). */
__global__ void k_entry_delta(int64_t nnz, int64_t D, const int32_t *idx, const int32_t *ent_row, const float *g,
                              const float *W_dec, float *delta) {
    const int lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t e = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; e < nnz; e += warps) {
        const float *w = W_dec + (int64_t)idx[e] * D, *gr = g + (int64_t)ent_row[e] * D; /* (D) each */
        float acc = 0.0f;
        for (int64_t i = lane; i < D; i += 32) acc = fmaf(w[i], gr[i], acc);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) delta[e] = acc;
    }
}

/* One block per latent j: its entries in row order (perm[col_ptr[j] .. col_ptr[j+1])) added into dW_dec[j],
 * dW_enc[j] and db_enc[j] in the CPU's order: dW_dec[j] += f·g_b, dW_enc[j] += δ·u_b, db_enc[j] += δ. */
__global__ void __launch_bounds__(ROW_THREADS) k_latent_backward(int64_t D, const int32_t *col_ptr,
                                                                 const uint32_t *perm, const int32_t *ent_row,
                                                                 const float *fval, const float *delta,
                                                                 const float *g, const float *u, float *dW_enc,
                                                                 float *db_enc, float *dW_dec) {
    const int64_t j = blockIdx.x, p0 = col_ptr[j], p1 = col_ptr[j + 1];
    if (p0 == p1) return;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float dec = dW_dec[j * D + i], enc = dW_enc[j * D + i];
        for (int64_t p = p0; p < p1; p++) {
            const uint32_t e = perm[p];
            const int64_t o = (int64_t)ent_row[e] * D + i;
            dec = __fadd_rn(dec, __fmul_rn(fval[e], g[o]));
            enc = __fadd_rn(enc, __fmul_rn(delta[e], u[o]));
        }
        dW_dec[j * D + i] = dec, dW_enc[j * D + i] = enc;
    }
    if (threadIdx.x == 0) {
        float b = db_enc[j];
        for (int64_t p = p0; p < p1; p++) b = __fadd_rn(b, delta[perm[p]]);
        db_enc[j] = b;
    }
}

extern "C" cudaError_t dk_cuda_dict_backward(dk_cuda_dict *ctx, const dk_dict_shape *s, int64_t rows,
                                             const int64_t *row_ptr, const int32_t *idx, const float *fval,
                                             int64_t nnz, const float *g, const float *u, const float *W_dec,
                                             float *dW_enc, float *db_enc, float *dW_dec, cudaStream_t stream) {
    if (rows == 0 || nnz == 0) return cudaSuccess;
    if (rows < 0 || rows > 0x7fffffff || nnz < 0 || nnz > ctx->cap || !shape_ok(s) || s->F != ctx->s.F)
        return cudaErrorInvalidValue;
    size_t tmp_bytes = 0;
    cudaError_t st = cub::DeviceRadixSort::SortPairs(NULL, tmp_bytes, (const uint32_t *)idx, ctx->keys_sorted,
                                                     ctx->iota, ctx->perm, (int)nnz, 0, ctx->key_bits, stream);
    if (st != cudaSuccess) return st;
    if (tmp_bytes > ctx->sort_tmp_bytes) return cudaErrorInvalidValue;
    k_entry_rows<<<(unsigned)rows, ROW_THREADS, 0, stream>>>(row_ptr, ctx->ent_row);
    if ((st = cudaGetLastError()) != cudaSuccess) return st;
    /* stable: each latent's entries keep their CSR (row) order */
    st = cub::DeviceRadixSort::SortPairs(ctx->sort_tmp, tmp_bytes, (const uint32_t *)idx, ctx->keys_sorted, ctx->iota,
                                         ctx->perm, (int)nnz, 0, ctx->key_bits, stream);
    if (st != cudaSuccess) return st;
    k_col_ptr<<<dk_grid_1d((size_t)nnz + 1, 256), 256, 0, stream>>>(ctx->keys_sorted, nnz, s->F, ctx->col_ptr);
    k_entry_delta<<<dk_grid_1d((size_t)nnz * 32, 256), 256, 0, stream>>>(nnz, s->D, idx, ctx->ent_row, g, W_dec,
                                                                         ctx->delta);
    k_latent_backward<<<(unsigned)s->F, ROW_THREADS, 0, stream>>>(s->D, ctx->col_ptr, ctx->perm, ctx->ent_row, fval,
                                                                  ctx->delta, g, u, dW_enc, db_enc, dW_dec);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 5. The SAE decoder constraint and the encoder's path to b_dec */

/* 32 columns per block: lane = column, warp w sums the latents j ≡ w (mod 32); the 32 partial sums are added
 * in warp order. */
__global__ void __launch_bounds__(BDEC_THREADS) k_bdec_through_encoder(const float *W_enc, const float *db_enc,
                                                                       int64_t F, int64_t D, float *db_dec) {
    __shared__ float part[32][33];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t i = (int64_t)blockIdx.x * 32 + lane;
    float acc = 0.0f;
    if (i < D)
        for (int64_t j = warp; j < F; j += 32) acc = fmaf(W_enc[j * D + i], db_enc[j], acc);
    part[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && i < D) {
        float total = 0.0f;
        for (int w = 0; w < 32; w++) total += part[w][lane];
        db_dec[i] -= total;
    }
}

extern "C" cudaError_t dk_cuda_dict_bdec_through_encoder(const dk_dict_shape *s, const float *W_enc,
                                                         const float *db_enc, float *db_dec, cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    k_bdec_through_encoder<<<(unsigned)((s->D + 31) / 32), BDEC_THREADS, 0, stream>>>(W_enc, db_enc, s->F, s->D,
                                                                                     db_dec);
    return cudaGetLastError();
}

/* One block per latent: ŵ = w / ((float)‖w‖ + 1e-6) (norm in fp64), G[j] −= (G[j]·ŵ) ŵ with the CPU's
 * roundings (the dot product's sum by a tree). */
__global__ void __launch_bounds__(ROW_THREADS) k_remove_parallel(const float *W_dec, int64_t D, float *dW_dec) {
    __shared__ double shared_d[32];
    __shared__ float shared_f[32];
    const int64_t j = blockIdx.x;
    const float *w = W_dec + j * D; /* (D) */
    float *gr = dW_dec + j * D;     /* (D) */
    double ss = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += (double)w[i] * w[i];
    ss = dk_block_sum(ss, shared_d);
    const float inv = __fdiv_rn(1.0f, __fadd_rn((float)sqrt(ss), 1e-6f));
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) dot = __fadd_rn(dot, __fmul_rn(gr[i], __fmul_rn(w[i], inv)));
    dot = dk_block_sum(dot, shared_f);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        gr[i] = __fsub_rn(gr[i], __fmul_rn(dot, __fmul_rn(w[i], inv)));
}

extern "C" cudaError_t dk_cuda_dict_remove_parallel(const dk_dict_shape *s, const float *W_dec, float *dW_dec,
                                                    cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    k_remove_parallel<<<(unsigned)s->F, ROW_THREADS, 0, stream>>>(W_dec, s->D, dW_dec);
    return cudaGetLastError();
}

/* One block per latent: w /= (float)‖w‖ + FLT_EPSILON (norm in fp64). */
__global__ void __launch_bounds__(ROW_THREADS) k_unit_norm(float *W_dec, int64_t D) {
    __shared__ double shared[32];
    float *w = W_dec + (int64_t)blockIdx.x * D; /* (D) */
    double ss = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += (double)w[i] * w[i];
    ss = dk_block_sum(ss, shared);
    const float norm = __fadd_rn((float)sqrt(ss), FLT_EPSILON);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) w[i] = __fdiv_rn(w[i], norm);
}

extern "C" cudaError_t dk_cuda_dict_unit_norm(const dk_dict_shape *s, float *W_dec, cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    k_unit_norm<<<(unsigned)s->F, ROW_THREADS, 0, stream>>>(W_dec, s->D);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 6. Sum of squares and Adam */

/* SUMSQ_BLOCKS blocks, grid-stride: partials[b] = block b's Σ x² (fp64; products of floats are exact in fp64). */
__global__ void __launch_bounds__(SUMSQ_THREADS) k_sumsq(const float *x, int64_t n, double *partials) {
    __shared__ double shared[32];
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    double acc = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        acc += (double)x[i] * x[i];
    acc = dk_block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" cudaError_t dk_cuda_sumsq(dk_cuda_dict *ctx, const float *x, int64_t n, double *out, cudaStream_t stream) {
    *out = 0;
    if (n == 0) return cudaSuccess;
    if (n < 0) return cudaErrorInvalidValue;
    k_sumsq<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, stream>>>(x, n, ctx->partials);
    double host[SUMSQ_BLOCKS];
    cudaError_t st = cudaGetLastError();
    if (st == cudaSuccess)
        st = cudaMemcpyAsync(host, ctx->partials, sizeof host, cudaMemcpyDeviceToHost, stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream);
    if (st != cudaSuccess) return st;
    double total = 0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) total += host[b];
    *out = total;
    return cudaSuccess;
}

/* One pass over p, g, m, v (grid-stride), dk_cpu_adam's operations in its order and roundings; M is float or
 * __nv_bfloat16 (the moments' storage: read widened, updated in fp32, the fp32 values update p, stored rounded). */
template <typename M>
__global__ void k_adam(float *p, const float *g, M *m, M *v, int64_t n, float grad_scale, dk_adam_coef c) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float gi = __fmul_rn(g[i], grad_scale);
        float mi = dk_ld(m + i), vi = dk_ld(v + i);
        mi = __fadd_rn(mi, __fmul_rn(c.w1, __fsub_rn(gi, mi)));
        vi = __fadd_rn(__fmul_rn(vi, c.b2), __fmul_rn(__fmul_rn(c.w2, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
        p[i] = __fsub_rn(p[i], __fmul_rn(c.step, __fdiv_rn(mi, denom)));
        dk_st(m + i, mi);
        dk_st(v + i, vi);
    }
}

extern "C" cudaError_t dk_cuda_adam(float *p, const float *g, float *m, float *v, int64_t n, float grad_scale,
                                    double lr, double beta1, double beta2, double eps, int64_t t,
                                    cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (n < 0 || t < 1) return cudaErrorInvalidValue;
    k_adam<float><<<dk_grid_1d((size_t)n, 256), 256, 0, stream>>>(p, g, m, v, n, grad_scale,
                                                                  dk_adam_coefs(lr, beta1, beta2, eps, t));
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_adam_bf16(float *p, const float *g, uint16_t *m, uint16_t *v, int64_t n,
                                         float grad_scale, double lr, double beta1, double beta2, double eps,
                                         int64_t t, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (n < 0 || t < 1) return cudaErrorInvalidValue;
    k_adam<__nv_bfloat16><<<dk_grid_1d((size_t)n, 256), 256, 0, stream>>>(
        p, g, (__nv_bfloat16 *)m, (__nv_bfloat16 *)v, n, grad_scale, dk_adam_coefs(lr, beta1, beta2, eps, t));
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------
 * 7. The loss's residual, the fired mask, column sums and AuxK's residual (the CPU twins' loops: the element-wise
 * arithmetic rounds as the CPU; the fp64 sums of a row are a tree instead of a sequence, rows added in order) */

/* One block per (row, layer): e = x − x̂ in place, ss = Σ e² (fp64 tree) to row_sums[r·L + l], then g. */
__global__ void __launch_bounds__(ROW_THREADS) k_residual(const float *x, int64_t d, int64_t L, int64_t B, bool sae,
                                                          float *e, float *g, double *row_sums) {
    __shared__ double shared[32];
    const int64_t rl = blockIdx.x, o0 = rl * d; /* rows are L·d wide: (row, layer) rl starts at rl·d */
    double acc = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const float v = __fsub_rn(x[o0 + i], e[o0 + i]);
        e[o0 + i] = v;
        acc += (double)v * v;
    }
    const double ss = dk_block_sum(acc, shared);
    if (threadIdx.x == 0) row_sums[rl] = ss;
    const float norm = (float)sqrt(ss);
    const float two_over_b = __fdiv_rn(-2.0f, (float)B), bl = (float)(B * L);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const float v = e[o0 + i];
        g[o0 + i] = sae ? __fmul_rn(two_over_b, v) : (norm > 0 ? __fdiv_rn(__fdiv_rn(-v, norm), bl) : 0.0f);
    }
}

extern "C" cudaError_t dk_cuda_dict_residual(dk_cuda_dict *ctx, const dk_dict_shape *s, const float *x, int64_t n,
                                             int64_t B, bool sae, float *e, float *g, double sums[2],
                                             cudaStream_t stream) {
    sums[0] = sums[1] = 0;
    if (n < 0 || n > ctx->rows || !shape_ok(s) || s->L != ctx->s.L || B < 1) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const int64_t count = n * s->L;
    k_residual<<<(unsigned)count, ROW_THREADS, 0, stream>>>(x, s->d, s->L, B, sae, e, g, ctx->row_sums);
    cudaError_t st = cudaGetLastError();
    if (st == cudaSuccess)
        st = cudaMemcpyAsync(ctx->row_sums_host, ctx->row_sums, (size_t)count * sizeof(double),
                             cudaMemcpyDeviceToHost, stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream);
    if (st != cudaSuccess) return st;
    for (int64_t i = 0; i < count; i++) {
        const double ss = ctx->row_sums_host[i];
        sums[0] += ss;
        const float norm = (float)sqrt(ss);
        sums[1] += norm;
    }
    return cudaSuccess;
}

__global__ void k_fired_init(uint32_t *min_bits) { *min_bits = 0x7f800000u; /* +inf */ }

/* Grid-stride over the entries: fired[j] = 1 (every writer writes 1), min_bits = min over the scores' bits (the
 * scores are positive, or +inf: their bits order as the floats do; a NaN's bits exceed +inf's and never win, as
 * the CPU's v < min never takes a NaN). */
__global__ void k_fired(int64_t nnz, const int32_t *idx, const float *fval, const float *w, uint8_t *fired,
                        uint32_t *min_bits) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < nnz; e += stride) {
        const int32_t j = idx[e];
        fired[j] = 1;
        const float v = w ? __fmul_rn(fval[e], w[j]) : fval[e];
        atomicMin(min_bits, __float_as_uint(v));
    }
}

extern "C" cudaError_t dk_cuda_dict_fired(dk_cuda_dict *ctx, int64_t nnz, const int32_t *idx, const float *fval,
                                          const float *w, int64_t F, uint8_t *fired, float *min_sel,
                                          cudaStream_t stream) {
    *min_sel = INFINITY;
    if (nnz < 0 || nnz > ctx->cap || F != ctx->s.F) return cudaErrorInvalidValue;
    cudaError_t st = cudaMemsetAsync(fired, 0, (size_t)F, stream);
    if (st != cudaSuccess) return st;
    k_fired_init<<<1, 1, 0, stream>>>(ctx->min_bits);
    if (nnz > 0) k_fired<<<dk_grid_1d((size_t)nnz, 256), 256, 0, stream>>>(nnz, idx, fval, w, fired, ctx->min_bits);
    uint32_t bits = 0x7f800000u;
    st = cudaGetLastError();
    if (st == cudaSuccess) st = cudaMemcpyAsync(&bits, ctx->min_bits, sizeof bits, cudaMemcpyDeviceToHost, stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream);
    if (st == cudaSuccess) memcpy(min_sel, &bits, sizeof bits);
    return st;
}

/* One thread per column, the rows in order (the CPU's sums, bit for bit): fp64 sums into out, or fp32 sums added
 * to the column's value (T = double: out = Σ; T = float: out += Σ, each addition rounded). */
__global__ void k_col_sums_f64(const float *x, int64_t n, int64_t D, double *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    double acc = 0;
#pragma unroll 8
    for (int64_t r = 0; r < n; r++) acc += (double)x[r * D + i];
    out[i] = acc;
}

__global__ void k_col_sums_f32(const float *x, int64_t n, int64_t D, float *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float acc = out[i];
#pragma unroll 8
    for (int64_t r = 0; r < n; r++) acc = __fadd_rn(acc, x[r * D + i]);
    out[i] = acc;
}

extern "C" cudaError_t dk_cuda_dict_col_sums(const float *x, int64_t n, int64_t D, double *out, cudaStream_t stream) {
    if (n < 0 || D < 1) return cudaErrorInvalidValue;
    k_col_sums_f64<<<(unsigned)((D + 127) / 128), 128, 0, stream>>>(x, n, D, out);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_dict_bdec_grad(const float *g, int64_t n, int64_t D, float *db_dec,
                                              cudaStream_t stream) {
    if (n < 0 || D < 1) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    k_col_sums_f32<<<(unsigned)((D + 127) / 128), 128, 0, stream>>>(g, n, D, db_dec);
    return cudaGetLastError();
}

/* One block per row: row_sums[2r] = Σ (e − ê)², row_sums[2r + 1] = Σ (e − ē)² (fp64 trees). */
__global__ void __launch_bounds__(ROW_THREADS) k_auxk_residual(const float *e, const float *ehat,
                                                               const double *mean_e, int64_t D, double *row_sums) {
    __shared__ double shared[32];
    const int64_t r = blockIdx.x;
    double a0 = 0, a1 = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const double dh = (double)e[r * D + i] - ehat[r * D + i], dm = (double)e[r * D + i] - mean_e[i];
        a0 += dh * dh;
        a1 += dm * dm;
    }
    a0 = dk_block_sum(a0, shared);
    a1 = dk_block_sum(a1, shared);
    if (threadIdx.x == 0) row_sums[2 * r] = a0, row_sums[2 * r + 1] = a1;
}

extern "C" cudaError_t dk_cuda_dict_auxk_residual(dk_cuda_dict *ctx, const float *e, const float *ehat,
                                                  const double *mean_e, int64_t n, int64_t D, double nd[2],
                                                  cudaStream_t stream) {
    nd[0] = nd[1] = 0;
    if (n < 0 || n > ctx->rows || D != ctx->s.D) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    k_auxk_residual<<<(unsigned)n, ROW_THREADS, 0, stream>>>(e, ehat, mean_e, D, ctx->row_sums);
    cudaError_t st = cudaGetLastError();
    if (st == cudaSuccess)
        st = cudaMemcpyAsync(ctx->row_sums_host, ctx->row_sums, (size_t)(2 * n) * sizeof(double),
                             cudaMemcpyDeviceToHost, stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream);
    if (st != cudaSuccess) return st;
    for (int64_t r = 0; r < n; r++) nd[0] += ctx->row_sums_host[2 * r], nd[1] += ctx->row_sums_host[2 * r + 1];
    return cudaSuccess;
}

__global__ void k_auxk_grad(const float *e, float *ehat, int64_t count, float coef) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        ehat[i] = __fmul_rn(coef, __fsub_rn(e[i], ehat[i]));
}

extern "C" cudaError_t dk_cuda_dict_auxk_grad(const float *e, float *ehat, int64_t count, float coef,
                                              cudaStream_t stream) {
    if (count < 0) return cudaErrorInvalidValue;
    if (count == 0) return cudaSuccess;
    k_auxk_grad<<<dk_grid_1d((size_t)count, 256), 256, 0, stream>>>(e, ehat, count, coef);
    return cudaGetLastError();
}
