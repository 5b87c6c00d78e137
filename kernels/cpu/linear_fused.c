/* linear_fused.c — see linear_fused.h. Output rows are taken ROWS at a time; K is walked in chunks of CHUNK
 * elements: the chunk of the ROWS weight rows is widened into `wide` (ROWS × CHUNK fp32, 4 KB, stays in L1),
 * then every row of x is multiplied into its ROWS × LANES accumulators, which persist across chunks in
 * `acc` (M × ROWS × LANES fp32, at most 4 KB). Each weight byte is read from memory once per call. */
#include "kernels/cpu/linear_fused.h"

#include <stdbool.h>
#include <string.h>

#include "kernels/dtype_convert.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DK_HAVE_X86_DISPATCH 1
#endif

enum { ROWS = 4, LANES = 8, CHUNK = 256 };

typedef struct fused_args {
    float *y;             /* (M, N) */
    const float *x;       /* (M, K) */
    const uint8_t *w;     /* (N, K) elements of `type` */
    dk_cpu_weight_type type;
    const float *bias;    /* (N) or NULL */
    int64_t M, N, K;
} fused_args;

static size_t elem_size(dk_cpu_weight_type t) { return t == DK_CPU_WEIGHT_F32 ? 4 : 2; }

/* Element i of a row at any byte address, widened. */
static inline float widen_one(const uint8_t *row, dk_cpu_weight_type t, int64_t i) {
    if (t == DK_CPU_WEIGHT_F32) {
        float f;
        memcpy(&f, row + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + 2 * i, 2);
    return t == DK_CPU_WEIGHT_BF16 ? dk_bf16_to_f32(h) : dk_f16_to_f32(h);
}

/* wide[r][0, kc) = W[n + r][k0, k0 + kc) for r < rows, elements [from, kc) only; rows past `rows` are zero. */
static void widen_chunk_tail(float *wide, const fused_args *a, int64_t n, int rows, int64_t k0, int64_t from,
                             int64_t kc) {
    const size_t es = elem_size(a->type);
    for (int r = 0; r < ROWS; r++) {
        float *dst = wide + r * CHUNK;
        if (r >= rows) {
            memset(dst + from, 0, (size_t)(kc - from) * sizeof(float));
            continue;
        }
        const uint8_t *row = a->w + ((size_t)(n + r) * (size_t)a->K + (size_t)k0) * es;
        for (int64_t i = from; i < kc; i++) dst[i] = widen_one(row, a->type, i);
    }
}

/* The elements [kc8, kc) of a chunk that do not fill a whole group of LANES: lane i - kc8 (= i mod LANES,
 * since chunks and kc8 are multiples of LANES), multiply then add, in both paths. */
static void accumulate_tail(float *acc, const float *wide, const fused_args *a, int64_t k0, int64_t kc8,
                            int64_t kc) {
    for (int64_t m = 0; m < a->M; m++) {
        const float *xm = a->x + m * a->K + k0;
        for (int r = 0; r < ROWS; r++) {
            float *lanes = acc + (m * ROWS + r) * LANES;
            for (int64_t i = kc8; i < kc; i++) lanes[i - kc8] += wide[r * CHUNK + i] * xm[i];
        }
    }
}

/* y[m][n + r] = bias + lane 0 + ... + lane 7, for the rows of this block. */
static void write_block(const float *acc, const fused_args *a, int64_t n, int rows) {
    for (int64_t m = 0; m < a->M; m++)
        for (int r = 0; r < rows; r++) {
            const float *lanes = acc + (m * ROWS + r) * LANES;
            float sum = a->bias ? a->bias[n + r] : 0.0f;
            for (int j = 0; j < LANES; j++) sum += lanes[j];
            a->y[m * a->N + n + r] = sum;
        }
}

/* ---------------------------------------------------------------------------------------------------
 * Portable path: plain loops over LANES-wide groups, which the compiler vectorises for the baseline ISA. */

static void accumulate_portable(float *acc, const float *wide, const fused_args *a, int64_t k0, int64_t kc8) {
    for (int64_t m = 0; m < a->M; m++) {
        const float *xm = a->x + m * a->K + k0;
        for (int r = 0; r < ROWS; r++) {
            const float *wr = wide + r * CHUNK;
            float lanes[LANES];
            memcpy(lanes, acc + (m * ROWS + r) * LANES, sizeof lanes);
            for (int64_t i = 0; i < kc8; i += LANES)
                for (int j = 0; j < LANES; j++) lanes[j] += wr[i + j] * xm[i + j];
            memcpy(acc + (m * ROWS + r) * LANES, lanes, sizeof lanes);
        }
    }
}

static void rows_portable(const fused_args *a, int64_t n0, int64_t n1) {
    float wide[ROWS * CHUNK];                         /* (ROWS, CHUNK) */
    float acc[DK_CPU_FUSED_MAX_M * ROWS * LANES];     /* (M, ROWS, LANES) */
    for (int64_t n = n0; n < n1; n += ROWS) {
        const int rows = n1 - n < ROWS ? (int)(n1 - n) : ROWS;
        memset(acc, 0, (size_t)(a->M * ROWS * LANES) * sizeof(float));
        for (int64_t k0 = 0; k0 < a->K; k0 += CHUNK) {
            const int64_t kc = a->K - k0 < CHUNK ? a->K - k0 : CHUNK, kc8 = kc / LANES * LANES;
            widen_chunk_tail(wide, a, n, rows, k0, 0, kc);
            accumulate_portable(acc, wide, a, k0, kc8);
            accumulate_tail(acc, wide, a, k0, kc8, kc);
        }
        write_block(acc, a, n, rows);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * AVX2 path: widening with vpmovzxwd + shift (bf16) or vcvtph2ps (f16), then 4 weight rows × 2 rows of x
 * per step in 8 ymm accumulators. Compiled for AVX2/FMA/F16C whatever the build's -march, and called only
 * when the CPU reports all three. */

#ifdef DK_HAVE_X86_DISPATCH
#define DK_AVX2 __attribute__((target("avx2,fma,f16c")))

DK_AVX2 static void widen_chunk_avx2(float *wide, const fused_args *a, int64_t n, int rows, int64_t k0,
                                     int64_t kc8) {
    const size_t es = elem_size(a->type);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = a->w + ((size_t)(n + r) * (size_t)a->K + (size_t)k0) * es;
        float *dst = wide + r * CHUNK;
        for (int64_t i = 0; i < kc8; i += LANES) {
            __m256 v;
            if (a->type == DK_CPU_WEIGHT_BF16)
                v = _mm256_castsi256_ps(
                    _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * i))), 16));
            else if (a->type == DK_CPU_WEIGHT_F16)
                v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
            else
                v = _mm256_loadu_ps((const float *)(const void *)(row + 4 * i));
            _mm256_store_ps(dst + i, v);
        }
    }
    for (int r = rows; r < ROWS; r++) memset(wide + r * CHUNK, 0, (size_t)kc8 * sizeof(float));
}

/* acc rows m (and m + 1 when two) += wide · x over [0, kc8). */
DK_AVX2 static void accumulate_avx2(float *acc, const float *wide, const fused_args *a, int64_t m, bool two,
                                    int64_t k0, int64_t kc8) {
    const float *x0 = a->x + m * a->K + k0, *x1 = two ? x0 + a->K : x0;
    float *acc0 = acc + m * ROWS * LANES, *acc1 = two ? acc0 + ROWS * LANES : acc0;
    __m256 a00 = _mm256_load_ps(acc0), a10 = _mm256_load_ps(acc0 + 8), a20 = _mm256_load_ps(acc0 + 16),
           a30 = _mm256_load_ps(acc0 + 24);
    __m256 a01 = _mm256_load_ps(acc1), a11 = _mm256_load_ps(acc1 + 8), a21 = _mm256_load_ps(acc1 + 16),
           a31 = _mm256_load_ps(acc1 + 24);
    for (int64_t i = 0; i < kc8; i += LANES) {
        const __m256 v0 = _mm256_loadu_ps(x0 + i), v1 = _mm256_loadu_ps(x1 + i);
        const __m256 w0 = _mm256_load_ps(wide + i), w1 = _mm256_load_ps(wide + CHUNK + i);
        const __m256 w2 = _mm256_load_ps(wide + 2 * CHUNK + i), w3 = _mm256_load_ps(wide + 3 * CHUNK + i);
        a00 = _mm256_fmadd_ps(w0, v0, a00), a01 = _mm256_fmadd_ps(w0, v1, a01);
        a10 = _mm256_fmadd_ps(w1, v0, a10), a11 = _mm256_fmadd_ps(w1, v1, a11);
        a20 = _mm256_fmadd_ps(w2, v0, a20), a21 = _mm256_fmadd_ps(w2, v1, a21);
        a30 = _mm256_fmadd_ps(w3, v0, a30), a31 = _mm256_fmadd_ps(w3, v1, a31);
    }
    if (two) { /* stored first, so that a single row (acc1 == acc0) ends with its own sums */
        _mm256_store_ps(acc1, a01), _mm256_store_ps(acc1 + 8, a11);
        _mm256_store_ps(acc1 + 16, a21), _mm256_store_ps(acc1 + 24, a31);
    }
    _mm256_store_ps(acc0, a00), _mm256_store_ps(acc0 + 8, a10);
    _mm256_store_ps(acc0 + 16, a20), _mm256_store_ps(acc0 + 24, a30);
}

DK_AVX2 static void rows_avx2(const fused_args *a, int64_t n0, int64_t n1) {
    _Alignas(32) float wide[ROWS * CHUNK];                     /* (ROWS, CHUNK) */
    _Alignas(32) float acc[DK_CPU_FUSED_MAX_M * ROWS * LANES]; /* (M, ROWS, LANES) */
    for (int64_t n = n0; n < n1; n += ROWS) {
        const int rows = n1 - n < ROWS ? (int)(n1 - n) : ROWS;
        memset(acc, 0, (size_t)(a->M * ROWS * LANES) * sizeof(float));
        for (int64_t k0 = 0; k0 < a->K; k0 += CHUNK) {
            const int64_t kc = a->K - k0 < CHUNK ? a->K - k0 : CHUNK, kc8 = kc / LANES * LANES;
            widen_chunk_avx2(wide, a, n, rows, k0, kc8);
            widen_chunk_tail(wide, a, n, rows, k0, kc8, kc);
            for (int64_t m = 0; m < a->M; m += 2) accumulate_avx2(acc, wide, a, m, m + 1 < a->M, k0, kc8);
            accumulate_tail(acc, wide, a, k0, kc8, kc);
        }
        write_block(acc, a, n, rows);
    }
}

static bool cpu_has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

/* ---------------------------------------------------------------------------------------------------
 * Entry points */

void dk_cpu_linear_fused_portable(float *y, const float *x, const void *w, dk_cpu_weight_type type,
                                  const float *bias, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
    fused_args a = {y, x, w, type, bias, M, N, K};
    rows_portable(&a, n0, n1);
}

void dk_cpu_linear_fused(float *y, const float *x, const void *w, dk_cpu_weight_type type, const float *bias,
                         int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
    fused_args a = {y, x, w, type, bias, M, N, K};
#ifdef DK_HAVE_X86_DISPATCH
    if (cpu_has_avx2()) {
        rows_avx2(&a, n0, n1);
        return;
    }
#endif
    rows_portable(&a, n0, n1);
}
