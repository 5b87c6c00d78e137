/* linear_fused.c — see linear_fused.h. Output rows are taken ROWS at a time; K is walked in chunks of CHUNK
 * elements: the chunk of the ROWS weight rows is widened into `wide` (ROWS × CHUNK fp32, 4 KB, stays in L1),
 * then every row of x is multiplied into its ROWS × lanes accumulators, which persist across chunks in
 * `acc` (M × ROWS × lanes fp32, at most 16 KB). Each weight byte is read from memory once per call. */
#include "kernels/cpu/linear_fused.h"

#include <stdbool.h>
#include <string.h>

#include "kernels/dtype_convert.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DK_HAVE_X86_DISPATCH 1
#endif

enum { ROWS = 4, LANES = 8, MAX_LANES = 16, CHUNK = 256 };

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

/* The elements [kc_vec, kc) of a chunk that do not fill a whole group of n_lanes: lane i - kc_vec (= i mod
 * n_lanes, since chunks and kc_vec are multiples of n_lanes), multiply then add, in every path. acc is
 * (M, ROWS, n_lanes). */
static void accumulate_tail(float *acc, int n_lanes, const float *wide, const fused_args *a, int64_t k0,
                            int64_t kc_vec, int64_t kc) {
    for (int64_t m = 0; m < a->M; m++) {
        const float *xm = a->x + m * a->K + k0;
        for (int r = 0; r < ROWS; r++) {
            float *lanes = acc + (m * ROWS + r) * n_lanes;
            for (int64_t i = kc_vec; i < kc; i++) lanes[i - kc_vec] += wide[r * CHUNK + i] * xm[i];
        }
    }
}

/* y[m][n + r] = bias + lane 0 + lane 1 + ..., for the rows of this block. */
static void write_block(const float *acc, int n_lanes, const fused_args *a, int64_t n, int rows) {
    for (int64_t m = 0; m < a->M; m++)
        for (int r = 0; r < rows; r++) {
            const float *lanes = acc + (m * ROWS + r) * n_lanes;
            float sum = a->bias ? a->bias[n + r] : 0.0f;
            for (int j = 0; j < n_lanes; j++) sum += lanes[j];
            a->y[m * a->N + n + r] = sum;
        }
}

/* ---------------------------------------------------------------------------------------------------
 * Portable path: plain loops over LANES-wide groups, which the compiler vectorises for the baseline ISA. */

static void widen_portable(float *wide, const fused_args *a, int64_t n, int rows, int64_t k0, int64_t kc8) {
    widen_chunk_tail(wide, a, n, rows, k0, 0, kc8);
}

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

/* acc rows m (and m + 1 when two) += wide · x over [0, kc8). A single row is computed twice (the same sums
 * stored twice). */
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
    _mm256_store_ps(acc0, a00), _mm256_store_ps(acc0 + 8, a10);
    _mm256_store_ps(acc0 + 16, a20), _mm256_store_ps(acc0 + 24, a30);
    _mm256_store_ps(acc1, a01), _mm256_store_ps(acc1 + 8, a11);
    _mm256_store_ps(acc1 + 16, a21), _mm256_store_ps(acc1 + 24, a31);
}

DK_AVX2 static void accumulate_all_avx2(float *acc, const float *wide, const fused_args *a, int64_t k0,
                                        int64_t kc8) {
    for (int64_t m = 0; m < a->M; m += 2) accumulate_avx2(acc, wide, a, m, m + 1 < a->M, k0, kc8);
}

/* AVX-512 path: the same with 16 lanes, 4 weight rows × 4 rows of x per step in 16 zmm accumulators. */
#define DK_AVX512 __attribute__((target("avx512f")))
enum { LANES_512 = 16, XS_512 = 4 };

DK_AVX512 static void widen_chunk_avx512(float *wide, const fused_args *a, int64_t n, int rows, int64_t k0,
                                         int64_t kc16) {
    const size_t es = elem_size(a->type);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = a->w + ((size_t)(n + r) * (size_t)a->K + (size_t)k0) * es;
        float *dst = wide + r * CHUNK;
        for (int64_t i = 0; i < kc16; i += LANES_512) {
            __m512 v;
            if (a->type == DK_CPU_WEIGHT_BF16)
                v = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 2 * i))), 16));
            else if (a->type == DK_CPU_WEIGHT_F16)
                v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i)));
            else
                v = _mm512_loadu_ps(row + 4 * i);
            _mm512_store_ps(dst + i, v);
        }
    }
    for (int r = rows; r < ROWS; r++) memset(wide + r * CHUNK, 0, (size_t)kc16 * sizeof(float));
}

/* acc rows m .. m + nm - 1 (nm <= XS_512) += wide · x over [0, kc16). Always inlined with a constant nm, so
 * that each count gets its own fully unrolled loop (no wasted FMAs for the last, partial group). */
DK_AVX512 static inline __attribute__((always_inline)) void accumulate_avx512(float *acc, const float *wide,
                                                                             const fused_args *a, int64_t m,
                                                                             const int nm, int64_t k0,
                                                                             int64_t kc16) {
    const float *xs[XS_512];
    float *accs[XS_512];
    __m512 c[ROWS][XS_512];
    for (int j = 0; j < nm; j++) {
        xs[j] = a->x + (m + j) * a->K + k0;
        accs[j] = acc + (m + j) * ROWS * LANES_512;
        for (int r = 0; r < ROWS; r++) c[r][j] = _mm512_load_ps(accs[j] + r * LANES_512);
    }
    for (int64_t i = 0; i < kc16; i += LANES_512) {
        __m512 v[XS_512];
        for (int j = 0; j < nm; j++) v[j] = _mm512_loadu_ps(xs[j] + i);
        for (int r = 0; r < ROWS; r++) {
            const __m512 w = _mm512_load_ps(wide + r * CHUNK + i);
            for (int j = 0; j < nm; j++) c[r][j] = _mm512_fmadd_ps(w, v[j], c[r][j]);
        }
    }
    for (int j = 0; j < nm; j++)
        for (int r = 0; r < ROWS; r++) _mm512_store_ps(accs[j] + r * LANES_512, c[r][j]);
}

DK_AVX512 static void accumulate_all_avx512(float *acc, const float *wide, const fused_args *a, int64_t k0,
                                            int64_t kc16) {
    int64_t m = 0;
    for (; m + XS_512 <= a->M; m += XS_512) accumulate_avx512(acc, wide, a, m, XS_512, k0, kc16);
    switch (a->M - m) {
    case 3: accumulate_avx512(acc, wide, a, m, 3, k0, kc16); break;
    case 2: accumulate_avx512(acc, wide, a, m, 2, k0, kc16); break;
    case 1: accumulate_avx512(acc, wide, a, m, 1, k0, kc16); break;
    default: break;
    }
}

static bool cpu_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

static bool cpu_has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

/* ---------------------------------------------------------------------------------------------------
 * The driver, the same for every path */

typedef struct path_ops {
    int lanes;
    /* wide[r][0, kc_vec) = W[n + r][k0, k0 + kc_vec) widened (zero rows past `rows`); kc_vec % lanes == 0 */
    void (*widen)(float *wide, const fused_args *a, int64_t n, int rows, int64_t k0, int64_t kc_vec);
    /* acc (M, ROWS, lanes) += the products over [0, kc_vec) of the chunk */
    void (*accumulate)(float *acc, const float *wide, const fused_args *a, int64_t k0, int64_t kc_vec);
} path_ops;

static void run_rows(const path_ops *ops, const fused_args *a, int64_t n0, int64_t n1) {
    _Alignas(64) float wide[ROWS * CHUNK];                   /* (ROWS, CHUNK) */
    _Alignas(64) float acc[DK_CPU_FUSED_MAX_M * ROWS * MAX_LANES]; /* (M, ROWS, lanes) */
    const int lanes = ops->lanes;
    for (int64_t n = n0; n < n1; n += ROWS) {
        const int rows = n1 - n < ROWS ? (int)(n1 - n) : ROWS;
        memset(acc, 0, (size_t)(a->M * ROWS * lanes) * sizeof(float));
        for (int64_t k0 = 0; k0 < a->K; k0 += CHUNK) {
            const int64_t kc = a->K - k0 < CHUNK ? a->K - k0 : CHUNK, kc_vec = kc / lanes * lanes;
            ops->widen(wide, a, n, rows, k0, kc_vec);
            widen_chunk_tail(wide, a, n, rows, k0, kc_vec, kc);
            ops->accumulate(acc, wide, a, k0, kc_vec);
            accumulate_tail(acc, lanes, wide, a, k0, kc_vec, kc);
        }
        write_block(acc, lanes, a, n, rows);
    }
}

static const path_ops paths[DK_CPU_FUSED_N_PATHS] = {
    [DK_CPU_FUSED_PORTABLE] = {LANES, widen_portable, accumulate_portable},
#ifdef DK_HAVE_X86_DISPATCH
    [DK_CPU_FUSED_AVX2] = {LANES, widen_chunk_avx2, accumulate_all_avx2},
    [DK_CPU_FUSED_AVX512] = {LANES_512, widen_chunk_avx512, accumulate_all_avx512},
#endif
};

/* ---------------------------------------------------------------------------------------------------
 * Entry points */

bool dk_cpu_fused_path_available(dk_cpu_fused_path path) {
#ifdef DK_HAVE_X86_DISPATCH
    if (path == DK_CPU_FUSED_AVX512) return cpu_has_avx512();
    if (path == DK_CPU_FUSED_AVX2) return cpu_has_avx2();
#endif
    return path == DK_CPU_FUSED_PORTABLE;
}

const char *dk_cpu_fused_path_name(dk_cpu_fused_path path) {
    return path == DK_CPU_FUSED_AVX512 ? "avx512" : path == DK_CPU_FUSED_AVX2 ? "avx2" : "portable";
}

void dk_cpu_linear_fused_on(dk_cpu_fused_path path, float *y, const float *x, const void *w,
                            dk_cpu_weight_type type, const float *bias, int64_t M, int64_t N, int64_t K, int64_t n0,
                            int64_t n1) {
    fused_args a = {y, x, w, type, bias, M, N, K};
    run_rows(dk_cpu_fused_path_available(path) ? &paths[path] : &paths[DK_CPU_FUSED_PORTABLE], &a, n0, n1);
}

void dk_cpu_linear_fused(float *y, const float *x, const void *w, dk_cpu_weight_type type, const float *bias,
                         int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
    dk_cpu_fused_path path = DK_CPU_FUSED_PORTABLE;
    if (dk_cpu_fused_path_available(DK_CPU_FUSED_AVX512)) path = DK_CPU_FUSED_AVX512;
    else if (dk_cpu_fused_path_available(DK_CPU_FUSED_AVX2)) path = DK_CPU_FUSED_AVX2;
    dk_cpu_linear_fused_on(path, y, x, w, type, bias, M, N, K, n0, n1);
}
