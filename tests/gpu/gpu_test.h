/* gpu_test.h — what the GPU tests share: skipping without a GPU (exit 77, ctest "Skipped"), device buffers
 * with guard bands, random inputs, and the comparison against a CPU reference with the tolerance rule
 * below.
 *
 * Tolerance rule (documented once, used by every op test):
 *   err = ‖got − want‖₂ / ‖want‖₂ over the whole output (want: the CPU reference on the same inputs; in
 *   mode BF16 the inputs are rounded to bf16 first and the reference sees those rounded values), and no
 *   output may be NaN or Inf.
 *   - mode F32: err ≤ the op's fp32 tolerance (table in test_kernels_cuda.c: 1e-6 for element-wise ops,
 *     up to 1e-5 for reductions over many terms), i.e. a few fp32 ulps of reordering.
 *   - mode BF16: the op computes in fp32 and rounds its output to bf16 once, so the best possible result is
 *     round_bf16(want). Its error, floor = ‖round_bf16(want) − want‖ / ‖want‖ (≈ 2^-9 relative RMS), is
 *     measured on each test's own data; we require err ≤ 2·floor + 1e-5: the extra floor covers values
 *     whose fp32 result lands on the other side of a bf16 rounding boundary from the CPU's, the 1e-5 the
 *     fp32 reordering. A kernel that rounded an intermediate to bf16 (or read a wrong element) fails this.
 * Poison and guard bands: every device buffer is filled with the poison pattern when it is made (every 16-bit
 * half is 0x7FA5: a NaN as bf16, and 0x7FA57FA5, a NaN, as f32), so an element a kernel forgets to write reads
 * as NaN and fails the non-finite check whatever the tolerance (a tiny finite poison such as 0xA5 bytes,
 * about -2.9e-16, would pass a loose one). GUARD elements before and after each output keep the pattern; any
 * change there is an out-of-bounds write. */
#ifndef DK_GPU_TEST_H
#define DK_GPU_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/check_cuda.h"
#include "kernels/cuda/dtype.h"
#include "kernels/dtype_convert.h"
#include "test.h"

enum { GPU_GUARD = 256, GPU_SKIP = 77 };
static const uint16_t GPU_POISON16 = 0x7FA5; /* NaN as bf16; two of them, 0x7FA57FA5, NaN as f32 */

/* Fills bytes (even) of host memory with the poison pattern. */
static inline void gpu_poison_host(void *p, size_t bytes) {
    uint16_t *h = p;
    for (size_t i = 0; i < bytes / 2; i++) h[i] = GPU_POISON16;
}

/* Fills bytes (even) of device memory with the poison pattern. */
static inline void gpu_poison_device(void *d, size_t bytes) {
    void *h = malloc(bytes ? bytes : 2);
    gpu_poison_host(h, bytes);
    CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    free(h);
}

/* Whether bytes (even) of host memory all still hold the poison pattern. */
static inline int gpu_is_poison(const void *p, size_t bytes) {
    const uint16_t *h = p;
    for (size_t i = 0; i < bytes / 2; i++)
        if (h[i] != GPU_POISON16) return 0;
    return 1;
}

static inline int gpu_available(void) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
        printf("SKIP: no GPU (cudaGetDeviceCount: %s, %d devices)\n",
               status == cudaSuccess ? "ok" : cudaGetErrorName(status), count);
        return 0;
    }
    return 1;
}

/* xorshift64*: uniform in [lo, hi) */
static uint64_t gpu_rng_state = 0x9E3779B97F4A7C15ull;
static inline float gpu_uniform(float lo, float hi) {
    uint64_t s = gpu_rng_state;
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    gpu_rng_state = s;
    return lo + (hi - lo) * (float)((s * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1u << 24);
}
static inline float *gpu_random(size_t n, float lo, float hi) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = gpu_uniform(lo, hi);
    return p;
}

static inline float gpu_round_bf16(float v) { return dk_bf16_to_f32(dk_f32_to_bf16(v)); }

/* A device array of n elements of dtype with guard bands. */
typedef struct dbuf {
    char *base;  /* (n + 2·GUARD) elements */
    void *d;     /* base + GUARD elements */
    size_t n, esize;
    dk_cuda_dtype dtype;
} dbuf;

static inline dbuf dbuf_new(size_t n, dk_cuda_dtype dtype) {
    dbuf b = {0};
    b.n = n, b.dtype = dtype, b.esize = dk_cuda_dtype_size(dtype);
    CUDA_CHECK(cudaMalloc((void **)&b.base, (n + 2 * GPU_GUARD) * b.esize));
    gpu_poison_device(b.base, (n + 2 * GPU_GUARD) * b.esize);
    b.d = b.base + GPU_GUARD * b.esize;
    return b;
}

/* Copies host (n floats) up, rounding host in place to the buffer's dtype (so a CPU reference sees the values
 * the GPU sees). */
static inline void dbuf_upload(dbuf *b, float *host) {
    if (b->dtype == DK_CUDA_F32) {
        CUDA_CHECK(cudaMemcpy(b->d, host, b->n * 4, cudaMemcpyHostToDevice));
        return;
    }
    uint16_t *tmp = malloc((b->n ? b->n : 1) * 2);
    for (size_t i = 0; i < b->n; i++) {
        tmp[i] = dk_f32_to_bf16(host[i]);
        host[i] = dk_bf16_to_f32(tmp[i]);
    }
    CUDA_CHECK(cudaMemcpy(b->d, tmp, b->n * 2, cudaMemcpyHostToDevice));
    free(tmp);
}

/* n floats widened from the buffer (malloc'ed). */
static inline float *dbuf_download(const dbuf *b) {
    float *out = malloc((b->n ? b->n : 1) * sizeof *out);
    if (b->dtype == DK_CUDA_F32) {
        CUDA_CHECK(cudaMemcpy(out, b->d, b->n * 4, cudaMemcpyDeviceToHost));
        return out;
    }
    uint16_t *tmp = malloc((b->n ? b->n : 1) * 2);
    CUDA_CHECK(cudaMemcpy(tmp, b->d, b->n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < b->n; i++) out[i] = dk_bf16_to_f32(tmp[i]);
    free(tmp);
    return out;
}

/* Whether both guard bands still hold the poison pattern. */
static inline int dbuf_guards_ok(const dbuf *b) {
    const size_t g = GPU_GUARD * b->esize;
    unsigned char *lo = malloc(g), *hi = malloc(g);
    CUDA_CHECK(cudaMemcpy(lo, b->base, g, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(hi, b->base + g + b->n * b->esize, g, cudaMemcpyDeviceToHost));
    const int ok = gpu_is_poison(lo, g) && gpu_is_poison(hi, g);
    free(lo), free(hi);
    return ok;
}

/* A device array of n elements of esize bytes (int32 ids, double sums) with guard bands; moved with
 * dbuf_put/dbuf_get, byte for byte. */
static inline dbuf dbuf_new_raw(size_t n, size_t esize) {
    dbuf b = {0};
    b.n = n, b.dtype = DK_CUDA_F32, b.esize = esize;
    CUDA_CHECK(cudaMalloc((void **)&b.base, (n + 2 * GPU_GUARD) * esize));
    gpu_poison_device(b.base, (n + 2 * GPU_GUARD) * esize);
    b.d = b.base + GPU_GUARD * esize;
    return b;
}
static inline void dbuf_put(dbuf *b, const void *host) {
    CUDA_CHECK(cudaMemcpy(b->d, host, b->n * b->esize, cudaMemcpyHostToDevice));
}
/* n elements (malloc'ed) */
static inline void *dbuf_get(const dbuf *b) {
    void *out = malloc(b->n ? b->n * b->esize : 1);
    CUDA_CHECK(cudaMemcpy(out, b->d, b->n * b->esize, cudaMemcpyDeviceToHost));
    return out;
}

static inline void gpu_expect_guards(const char *what, const dbuf *b) {
    EXPECT(dbuf_guards_ok(b), "%s: guard band overwritten (out-of-bounds write)", what);
}

/* Bitwise equality of two results of identical launches (bytes). */
static inline void gpu_expect_same_bits(const char *what, const void *a, const void *b, size_t bytes) {
    EXPECT(memcmp(a, b, bytes) == 0, "%s: two identical launches gave different bits", what);
}

static inline void dbuf_free(dbuf *b) {
    CUDA_CHECK(cudaFree(b->base));
    memset(b, 0, sizeof *b);
}

typedef struct gpu_cmp {
    double err, floor, max_abs;
    size_t non_finite;
} gpu_cmp;

static inline gpu_cmp gpu_compare(const float *got, const float *want, size_t n) {
    gpu_cmp c = {0};
    double num = 0, den = 0, fl = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            c.non_finite++;
            continue;
        }
        const double d = (double)got[i] - want[i], r = (double)gpu_round_bf16(want[i]) - want[i];
        num += d * d, den += (double)want[i] * want[i], fl += r * r;
        if (fabs(d) > c.max_abs) c.max_abs = fabs(d);
    }
    c.err = den > 0 ? sqrt(num / den) : sqrt(num);
    c.floor = den > 0 ? sqrt(fl / den) : sqrt(fl);
    return c;
}

/* The tolerance rule of the header: fp32_tol in mode F32, 2·floor + 1e-5 in mode BF16. Prints one line per
 * check (the log is the record of the measured errors). */
static inline void gpu_expect_close(const char *what, const float *got, const float *want, size_t n,
                                    dk_cuda_dtype mode, double fp32_tol) {
    gpu_cmp c = gpu_compare(got, want, n);
    const double tol = mode == DK_CUDA_F32 ? fp32_tol : 2.0 * c.floor + 1e-5;
    printf("  %-48s %s err %.3g (tol %.3g, bf16 floor %.3g) max|d| %.3g\n", what, mode == DK_CUDA_F32 ? "f32 " : "bf16",
           c.err, tol, c.floor, c.max_abs);
    EXPECT(c.non_finite == 0, "%s: %zu non-finite outputs", what, c.non_finite);
    EXPECT(c.err <= tol, "%s (%s): relative error %.3g > tolerance %.3g", what, mode == DK_CUDA_F32 ? "f32" : "bf16",
           c.err, tol);
}

/* The tolerance of dk_cuda_kl_rows against dk_cpu_kl_rows for one row (kernels/cuda/diffops.cuh,
 * tools/kl_fp32_error_sim.py): 8 units + 4e-6·|kl_cpu|, unit = 2^-24·(A + ln V + 1), A = max |z|/T over both rows. */
static inline double gpu_kl_tolerance(const float *zf, const float *zb, int64_t V, float temperature, double kl_cpu) {
    double A = 0;
    for (int64_t v = 0; v < V; v++) {
        if (fabs(zf[v]) > A) A = fabs(zf[v]);
        if (fabs(zb[v]) > A) A = fabs(zb[v]);
    }
    return 8 * ldexp(A / temperature + log((double)V) + 1.0, -24) + 4e-6 * fabs(kl_cpu);
}

#endif
