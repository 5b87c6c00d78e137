/* test_kernels_cuda.c — every kernels/cuda op against its kernels/cpu twin (or the CPU forward's loop it
 * replaces), in both modes, over odd shapes, with guard bands and NaN/Inf checks (rules in gpu_test.h), and
 * a bitwise repeatability check (the same launch twice gives the same bits). Label: gpu.
 *
 * fp32 tolerance table (mode F32, err = ‖got − want‖ / ‖want‖):
 *   embedding, steer, patch              0       bit-identical (the same fp32 operations, no contraction)
 *   rmsnorm, add_rmsnorm                 2e-6    sum of squares in fp32 tree order vs double on the CPU
 *   layernorm, add_layernorm             2e-6    mean and variance in fp32 tree order vs double on the CPU
 *   position embedding                   0       one fp32 add, as the CPU
 *   rope tables, qk_norm_rope            2e-6    device cosf/sinf within 2 ulp of libm
 *   gated / plain activation, bias, softcap  2e-6    device expf/tanhf/erff within 2 ulp
 *   attention                            1e-5    online vs two-pass softmax, summation order over keys
 *   (attention_mma is bf16 only: 3·floor + 1e-4, see test_attention)
 *   GEMM, LoRA (fp32, no TF32)           1e-5    K-term dot products summed in another order
 * bf16 tolerance: 2·floor + 1e-5 (gpu_test.h), floor measured on each test's data. */
#include "gpu_test.h"

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/hooks.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "model/lora.h"

static const char *mode_name(dk_cuda_dtype m) { return m == DK_CUDA_F32 ? "f32" : "bf16"; }

/* A device copy of n host ints (index arrays: token ids, positions, rows); the caller cudaFree()s it. */
static int32_t *device_ints(const int32_t *h, size_t n) {
    int32_t *d;
    CUDA_CHECK(cudaMalloc((void **)&d, n * sizeof *d));
    CUDA_CHECK(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice));
    return d;
}

/* A kernel that must match the CPU bit for bit: equal bytes, guards intact, and the line that says so. */
static void expect_exact(const char *what, const float *got, const float *want, size_t n, const dbuf *d) {
    EXPECT(memcmp(got, want, n * sizeof *got) == 0, "%s: not bit-identical to the CPU", what);
    gpu_expect_guards(what, d);
    printf("  %-48s exact\n", what);
}

/* A fused residual add + norm: the residual x (fp32 in both modes, within x_tol) and the normed h, and both
 * buffers' guards. */
static void expect_add_norm(const char *what, const dbuf *d_x, const float *x, double x_tol, const dbuf *d_h,
                            const float *h, dk_cuda_dtype mode) {
    float *got_x = dbuf_download(d_x), *got_h = dbuf_download(d_h);
    char w1[112], w2[112];
    snprintf(w1, sizeof w1, "%s: x", what);
    snprintf(w2, sizeof w2, "%s: h", what);
    gpu_expect_close(w1, got_x, x, d_x->n, DK_CUDA_F32, x_tol);
    gpu_expect_close(w2, got_h, h, d_h->n, mode, 2e-6);
    gpu_expect_guards(w1, d_x);
    gpu_expect_guards(w2, d_h);
    free(got_x), free(got_h);
}

/* ---------------------------------------------------------------------------------------------------
 * embedding */

/* Rows gathered from a table, bit for bit the CPU's loop: the token embedding x = table[ids]·scale (scale √H
 * as Gemma's in f32 mode, 1 in bf16), or GPT-2's learned positions x += table[positions] (two sequences). */
static void test_table_rows(dk_cuda_dtype mode, bool positions) {
    const int64_t R = positions ? 23 : 37, H = 45, T = 29;
    const float scale = !positions && mode == DK_CUDA_F32 ? sqrtf((float)H) : 1.0f;
    float *table = gpu_random((size_t)(R * H), -2, 2), *x = gpu_random((size_t)(T * H), -2, 2);
    dbuf d_table = dbuf_new((size_t)(R * H), mode), d_x = dbuf_new((size_t)(T * H), DK_CUDA_F32);
    dbuf_upload(&d_table, table), dbuf_upload(&d_x, x); /* the table rounded to bf16 in place, as held */
    int32_t idx[29];
    for (int64_t t = 0; t < T; t++)
        idx[t] = (int32_t)(positions ? (t < 15 ? t : (t - 15) % R) : (t * 7 + 3) % R);
    if (!positions) idx[0] = 0, idx[T - 1] = (int32_t)(R - 1);
    int32_t *d_idx = device_ints(idx, (size_t)T);
    if (positions)
        CUDA_CHECK(dk_cuda_add_position_embedding(d_x.d, d_idx, d_table.d, mode, T, H, 0));
    else
        CUDA_CHECK(dk_cuda_embedding(d_x.d, d_idx, d_table.d, mode, T, H, scale, 0));
    float *got = dbuf_download(&d_x);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < H; j++) {
            const float v = table[idx[t] * H + j];
            x[t * H + j] = positions ? x[t * H + j] + v : scale != 1.0f ? v * scale : v;
        }
    char what[64];
    snprintf(what, sizeof what, "%s %s", positions ? "position embedding" : "embedding", mode_name(mode));
    expect_exact(what, got, x, (size_t)(T * H), &d_x);
    dbuf_free(&d_table), dbuf_free(&d_x);
    CUDA_CHECK(cudaFree(d_idx));
    free(table), free(x), free(got);
}

/* ---------------------------------------------------------------------------------------------------
 * layernorm (GPT-2) and its fused residual add */

static void test_layernorm(dk_cuda_dtype mode, int64_t rows, int64_t dim) {
    char what[96];
    snprintf(what, sizeof what, "layernorm rows %lld dim %lld", (long long)rows, (long long)dim);
    const float eps = 1e-5f;
    const size_t n = (size_t)(rows * dim);
    float *x = gpu_random(n, -3, 3), *w = gpu_random((size_t)dim, -1, 1), *b = gpu_random((size_t)dim, -1, 1);
    for (int64_t j = 0; j < dim; j++) x[j] += 40.0f; /* a row far from zero mean */
    dbuf d_x = dbuf_new(n, DK_CUDA_F32), d_w = dbuf_new((size_t)dim, DK_CUDA_F32), d_b = dbuf_new((size_t)dim, DK_CUDA_F32);
    dbuf d_out = dbuf_new(n, mode);
    dbuf_upload(&d_x, x), dbuf_upload(&d_w, w), dbuf_upload(&d_b, b);
    CUDA_CHECK(dk_cuda_layernorm(d_out.d, d_x.d, NULL, d_w.d, d_b.d, rows, dim, eps, mode, 0));
    float *got = dbuf_download(&d_out), *want = malloc(n * 4);
    dk_cpu_layernorm(want, x, w, b, rows, dim, eps);
    gpu_expect_close(what, got, want, n, mode, 2e-6);
    gpu_expect_guards(what, &d_out);
    /* row_index: the last row alone */
    const int32_t last = (int32_t)(rows - 1);
    int32_t *d_last = device_ints(&last, 1);
    CUDA_CHECK(dk_cuda_layernorm(d_out.d, d_x.d, d_last, d_w.d, d_b.d, 1, dim, eps, mode, 0));
    float *got_last = dbuf_download(&d_out);
    EXPECT(memcmp(got_last, got + (rows - 1) * dim, (size_t)dim * 4) == 0, "%s: the gathered row differs", what);

    /* fused: x += delta; h = LayerNorm(x) */
    float *delta = gpu_random(n, -2, 2);
    dbuf d_delta = dbuf_new(n, mode);
    dbuf_upload(&d_delta, delta); /* delta rounded to bf16 in place, as the GPU holds it */
    CUDA_CHECK(dk_cuda_add_layernorm(d_x.d, d_delta.d, d_out.d, d_w.d, d_b.d, rows, dim, eps, mode, 0));
    for (size_t i = 0; i < n; i++) x[i] += delta[i];
    dk_cpu_layernorm(want, x, w, b, rows, dim, eps);
    char fused[112];
    snprintf(fused, sizeof fused, "add_%s", what);
    expect_add_norm(fused, &d_x, x, 0.0, &d_out, want, mode);
    CUDA_CHECK(cudaFree(d_last));
    dbuf_free(&d_x), dbuf_free(&d_w), dbuf_free(&d_b), dbuf_free(&d_out), dbuf_free(&d_delta);
    free(x), free(w), free(b), free(got), free(want), free(got_last), free(delta);
}

/* ---------------------------------------------------------------------------------------------------
 * rmsnorm and the fused residual add */

static void test_rmsnorm(dk_cuda_dtype mode, bool gemma, int64_t rows, int64_t dim) {
    char what[96];
    snprintf(what, sizeof what, "rmsnorm %s rows %lld dim %lld", gemma ? "gemma" : "llama", (long long)rows,
             (long long)dim);
    const float eps = 1e-6f;
    float *x = gpu_random((size_t)(rows * dim), -3, 3), *w = gpu_random((size_t)dim, -1, 1);
    dbuf d_x = dbuf_new((size_t)(rows * dim), DK_CUDA_F32), d_w = dbuf_new((size_t)dim, DK_CUDA_F32);
    dbuf d_out = dbuf_new((size_t)(rows * dim), mode);
    dbuf_upload(&d_x, x), dbuf_upload(&d_w, w);
    CUDA_CHECK(dk_cuda_rmsnorm(d_out.d, d_x.d, NULL, d_w.d, rows, dim, eps, gemma, mode, 0));
    float *got = dbuf_download(&d_out), *want = malloc((size_t)(rows * dim) * 4);
    dk_cpu_rmsnorm(want, x, w, rows, dim, eps, gemma ? DK_RMSNORM_GEMMA : DK_RMSNORM_LLAMA);
    gpu_expect_close(what, got, want, (size_t)(rows * dim), mode, 2e-6);
    gpu_expect_guards(what, &d_out);
    CUDA_CHECK(dk_cuda_rmsnorm(d_out.d, d_x.d, NULL, d_w.d, rows, dim, eps, gemma, mode, 0));
    float *again = dbuf_download(&d_out);
    gpu_expect_same_bits(what, got, again, (size_t)(rows * dim) * sizeof(float));

    /* row_index: rows in reverse order */
    int32_t *idx = malloc((size_t)rows * 4);
    for (int64_t r = 0; r < rows; r++) idx[r] = (int32_t)(rows - 1 - r);
    int32_t *d_idx = device_ints(idx, (size_t)rows);
    CUDA_CHECK(dk_cuda_rmsnorm(d_out.d, d_x.d, d_idx, d_w.d, rows, dim, eps, gemma, mode, 0));
    float *got_idx = dbuf_download(&d_out);
    size_t same = 0;
    for (int64_t r = 0; r < rows; r++)
        same += memcmp(got_idx + r * dim, got + (rows - 1 - r) * dim, (size_t)dim * 4) == 0;
    EXPECT(same == (size_t)rows, "%s: gathered rows differ from the plain norm's rows (%zu of %lld same)", what, same,
           (long long)rows);
    free(idx), free(got_idx), free(again);
    CUDA_CHECK(cudaFree(d_idx));
    dbuf_free(&d_x), dbuf_free(&d_w), dbuf_free(&d_out);
    free(x), free(w), free(got), free(want);
}

static void test_add_rmsnorm(dk_cuda_dtype mode, bool gemma, bool post, int64_t rows, int64_t dim) {
    char what[96];
    snprintf(what, sizeof what, "add_rmsnorm %s%s rows %lld dim %lld", gemma ? "gemma" : "llama",
             post ? " +post" : "", (long long)rows, (long long)dim);
    const float eps = 1e-5f;
    const size_t n = (size_t)(rows * dim);
    float *x = gpu_random(n, -3, 3), *delta = gpu_random(n, -2, 2), *w = gpu_random((size_t)dim, -1, 1);
    float *pw = gpu_random((size_t)dim, -1, 1);
    dbuf d_x = dbuf_new(n, DK_CUDA_F32), d_delta = dbuf_new(n, mode), d_w = dbuf_new((size_t)dim, DK_CUDA_F32);
    dbuf d_pw = dbuf_new((size_t)dim, DK_CUDA_F32), d_h = dbuf_new(n, mode);
    dbuf_upload(&d_x, x), dbuf_upload(&d_delta, delta), dbuf_upload(&d_w, w), dbuf_upload(&d_pw, pw);
    CUDA_CHECK(dk_cuda_add_rmsnorm(d_x.d, d_delta.d, post ? d_pw.d : NULL, d_h.d, d_w.d, rows, dim, eps, gemma, mode, 0));
    /* CPU: forward.c's order: out = post_norm(delta) (fp32), x += out, h = norm(x) */
    const dk_rmsnorm_kind kind = gemma ? DK_RMSNORM_GEMMA : DK_RMSNORM_LLAMA;
    float *d = malloc(n * 4), *h = malloc(n * 4);
    if (post) dk_cpu_rmsnorm(d, delta, pw, rows, dim, eps, kind);
    else memcpy(d, delta, n * 4);
    for (size_t i = 0; i < n; i++) x[i] += d[i];
    dk_cpu_rmsnorm(h, x, w, rows, dim, eps, kind);
    expect_add_norm(what, &d_x, x, post ? 2e-6 : 0.0, &d_h, h, mode);
    dbuf_free(&d_x), dbuf_free(&d_delta), dbuf_free(&d_w), dbuf_free(&d_pw), dbuf_free(&d_h);
    free(x), free(delta), free(w), free(pw), free(d), free(h);
}

/* ---------------------------------------------------------------------------------------------------
 * RoPE with q/k norms, on a strided (fused q‖k‖v-like) layout */

static void test_rope(dk_cuda_dtype mode, int64_t T, int64_t nh, int64_t D, bool with_norm, bool gemma) {
    char what[96];
    snprintf(what, sizeof what, "qk_norm_rope T %lld heads %lld D %lld%s", (long long)T, (long long)nh, (long long)D,
             with_norm ? (gemma ? " +norm gemma" : " +norm llama") : "");
    const int64_t ld = nh * D + 7; /* 7 extra columns that must stay untouched */
    const size_t n = (size_t)(T * ld);
    const float eps = 1e-6f, scaling = 1.25f;
    float *x = gpu_random(n, -2, 2), *nw = gpu_random((size_t)D, -1, 1), *inv_freq = malloc((size_t)(D / 2) * 4);
    for (int64_t i = 0; i < D / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * (float)i / (float)D);
    int32_t *pos = malloc((size_t)T * 4);
    int64_t *pos64 = malloc((size_t)T * 8);
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)((t * 37) % 5000), pos64[t] = pos[t];
    dbuf d_x = dbuf_new(n, mode), d_nw = dbuf_new((size_t)D, DK_CUDA_F32), d_f = dbuf_new((size_t)(D / 2), DK_CUDA_F32);
    dbuf d_cos = dbuf_new((size_t)(T * D), DK_CUDA_F32), d_sin = dbuf_new((size_t)(T * D), DK_CUDA_F32);
    dbuf_upload(&d_x, x), dbuf_upload(&d_nw, nw), dbuf_upload(&d_f, inv_freq);
    int32_t *d_pos = device_ints(pos, (size_t)T);
    CUDA_CHECK(dk_cuda_rope_tables(d_cos.d, d_sin.d, d_f.d, d_pos, T, D, scaling, 0));
    CUDA_CHECK(dk_cuda_qk_norm_rope(d_x.d, ld, T, nh, D, with_norm ? d_nw.d : NULL, eps, gemma, d_cos.d, d_sin.d, mode, 0));

    float *cos = malloc((size_t)(T * D) * 4), *sin = malloc((size_t)(T * D) * 4);
    dk_cpu_rope_tables(cos, sin, inv_freq, pos64, T, D, scaling);
    float *got_cos = dbuf_download(&d_cos), *got_sin = dbuf_download(&d_sin);
    char wt[112];
    snprintf(wt, sizeof wt, "%s: cos table", what);
    gpu_expect_close(wt, got_cos, cos, (size_t)(T * D), DK_CUDA_F32, 2e-6);
    snprintf(wt, sizeof wt, "%s: sin table", what);
    gpu_expect_close(wt, got_sin, sin, (size_t)(T * D), DK_CUDA_F32, 2e-6);
    gpu_expect_guards(wt, &d_sin);

    /* CPU on a compact copy of the heads, with the CPU's own tables */
    float *compact = malloc((size_t)(T * nh * D) * 4);
    for (int64_t t = 0; t < T; t++) memcpy(compact + t * nh * D, x + t * ld, (size_t)(nh * D) * 4);
    if (with_norm)
        dk_cpu_rmsnorm(compact, compact, nw, T * nh, D, eps, gemma ? DK_RMSNORM_GEMMA : DK_RMSNORM_LLAMA);
    dk_cpu_rope_apply(compact, cos, sin, T, nh, D);
    float *got = dbuf_download(&d_x), *got_compact = malloc((size_t)(T * nh * D) * 4);
    size_t extra_changed = 0;
    for (int64_t t = 0; t < T; t++) {
        memcpy(got_compact + t * nh * D, got + t * ld, (size_t)(nh * D) * 4);
        extra_changed += memcmp(got + t * ld + nh * D, x + t * ld + nh * D, 7 * 4) != 0;
    }
    gpu_expect_close(what, got_compact, compact, (size_t)(T * nh * D), mode, 2e-6);
    EXPECT(extra_changed == 0, "%s: %zu rows had columns outside the heads changed", what, extra_changed);
    gpu_expect_guards(what, &d_x);
    dbuf_free(&d_x), dbuf_free(&d_nw), dbuf_free(&d_f), dbuf_free(&d_cos), dbuf_free(&d_sin);
    CUDA_CHECK(cudaFree(d_pos));
    free(x), free(nw), free(inv_freq), free(pos), free(pos64), free(cos), free(sin), free(got_cos), free(got_sin);
    free(compact), free(got), free(got_compact);
}

/* ---------------------------------------------------------------------------------------------------
 * attention: several sequences of odd lengths in one packed batch, GQA, windows, softcap */

/* mma: the tensor-core variant (attention_mma.cu; bf16 only). Its P is rounded to bf16 before P·V, one
 * rounding more than the output's: tolerance 3·floor + 1e-4 instead of 2·floor + 1e-5. */
static void test_attention(dk_cuda_dtype mode, const int64_t *lens, int64_t n_seqs, int64_t nh, int64_t nkv, int64_t D,
                           int64_t window, float softcap, bool mma) {
    char what[112];
    snprintf(what, sizeof what, "attention%s seqs %lld heads %lld/%lld D %lld W %lld cap %g", mma ? " mma" : "",
             (long long)n_seqs, (long long)nh, (long long)nkv, (long long)D, (long long)window, softcap);
    int64_t *start = malloc((size_t)(n_seqs + 1) * 8);
    start[0] = 0;
    for (int64_t s = 0; s < n_seqs; s++) start[s + 1] = start[s] + lens[s];
    const int64_t T = start[n_seqs];
    /* q, k, v as column blocks of one (T, ld) buffer, as the forward lays them out */
    const int64_t qd = nh * D, kvd = nkv * D, ld = qd + 2 * kvd;
    float *qkv = gpu_random((size_t)(T * ld), -2, 2);
    dbuf d_qkv = dbuf_new((size_t)(T * ld), mode), d_out = dbuf_new((size_t)(T * qd), mode);
    dbuf_upload(&d_qkv, qkv);
    const int64_t bq = mma ? DK_CUDA_ATTN_MMA_BQ : DK_CUDA_ATTN_BQ;
    int32_t *tiles = malloc((size_t)T * 16), *d_tiles; /* at most T tiles */
    const int64_t n_tiles = dk_cuda_attention_tiles_bq(start, n_seqs, bq, tiles);
    if (!mma) EXPECT(n_tiles == dk_cuda_attention_n_tiles(start, n_seqs), "tile count");
    CUDA_CHECK(cudaMalloc((void **)&d_tiles, (size_t)n_tiles * 16));
    CUDA_CHECK(cudaMemcpy(d_tiles, tiles, (size_t)n_tiles * 16, cudaMemcpyHostToDevice));
    const float scale = 1.0f / sqrtf((float)D);
    char *base = d_qkv.d;
    const size_t e = d_qkv.esize;
    if (mma)
        CUDA_CHECK(dk_cuda_attention_mma(d_out.d, qd, base, ld, base + (size_t)qd * e, ld, base + (size_t)(qd + kvd) * e,
                                         ld, d_tiles, n_tiles, nh, nkv, D, scale, softcap, window, 0));
    else
        CUDA_CHECK(dk_cuda_attention(d_out.d, qd, base, ld, base + (size_t)qd * e, ld, base + (size_t)(qd + kvd) * e,
                                     ld, d_tiles, n_tiles, nh, nkv, D, scale, softcap, window, mode, 0));
    float *got = dbuf_download(&d_out);

    float *q = malloc((size_t)(T * qd) * 4), *k = malloc((size_t)(T * kvd) * 4), *v = malloc((size_t)(T * kvd) * 4);
    for (int64_t t = 0; t < T; t++) {
        memcpy(q + t * qd, qkv + t * ld, (size_t)qd * 4);
        memcpy(k + t * kvd, qkv + t * ld + qd, (size_t)kvd * 4);
        memcpy(v + t * kvd, qkv + t * ld + qd + kvd, (size_t)kvd * 4);
    }
    float *want = malloc((size_t)(T * qd) * 4);
    dk_attn_segment *seg = malloc((size_t)n_seqs * sizeof *seg);
    for (int64_t s = 0; s < n_seqs; s++)
        seg[s] = (dk_attn_segment){q + start[s] * qd, k + start[s] * kvd, v + start[s] * kvd, want + start[s] * qd,
                                   lens[s], lens[s]};
    dk_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = D, .scale = scale, .softcap = softcap,
                        .window = window, .n_threads = 1};
    dk_cpu_attention(seg, n_seqs, &p);
    if (mma) {
        gpu_cmp c = gpu_compare(got, want, (size_t)(T * qd));
        const double tol = 3 * c.floor + 1e-4;
        printf("  %-48s bf16 err %.3g (tol %.3g, bf16 floor %.3g) max|d| %.3g\n", what, c.err, tol, c.floor, c.max_abs);
        EXPECT(c.non_finite == 0, "%s: %zu non-finite outputs", what, c.non_finite);
        EXPECT(c.err <= tol, "%s: relative error %.3g > tolerance %.3g", what, c.err, tol);
    } else {
        gpu_expect_close(what, got, want, (size_t)(T * qd), mode, 1e-5);
    }
    gpu_expect_guards(what, &d_out);
    if (mma)
        CUDA_CHECK(dk_cuda_attention_mma(d_out.d, qd, base, ld, base + (size_t)qd * e, ld, base + (size_t)(qd + kvd) * e,
                                         ld, d_tiles, n_tiles, nh, nkv, D, scale, softcap, window, 0));
    else
        CUDA_CHECK(dk_cuda_attention(d_out.d, qd, base, ld, base + (size_t)qd * e, ld, base + (size_t)(qd + kvd) * e,
                                     ld, d_tiles, n_tiles, nh, nkv, D, scale, softcap, window, mode, 0));
    float *again = dbuf_download(&d_out);
    gpu_expect_same_bits(what, got, again, (size_t)(T * qd) * sizeof(float));
    dbuf_free(&d_qkv), dbuf_free(&d_out);
    CUDA_CHECK(cudaFree(d_tiles));
    free(start), free(qkv), free(tiles), free(got), free(again), free(q), free(k), free(v), free(want), free(seg);
}

/* With a KV cache (generation): sequence s has past[s] positions cached (random keys and values in a cache of
 * `cap` positions per sequence) and lens[s] new tokens, whose k and v dk_cuda_kv_append copies from the q‖k‖v
 * buffer into the cache before dk_cuda_attention_cached reads it; the CPU twin is dk_cpu_attention over the
 * cache rows (n_k = past + len, the queries the last len positions), as forward.c's block() runs it. The cache
 * itself must then hold exactly the appended rows (and its guards stay intact). */
static void test_attention_cached(dk_cuda_dtype mode, const int64_t *past, const int64_t *lens, int64_t n_seqs,
                                  int64_t cap, int64_t nh, int64_t nkv, int64_t D, int64_t window, float softcap) {
    char what[112];
    snprintf(what, sizeof what, "attention cached seqs %lld heads %lld/%lld D %lld W %lld cap %g", (long long)n_seqs,
             (long long)nh, (long long)nkv, (long long)D, (long long)window, softcap);
    int64_t *start = malloc((size_t)(n_seqs + 1) * 8);
    start[0] = 0;
    for (int64_t s = 0; s < n_seqs; s++) start[s + 1] = start[s] + lens[s];
    const int64_t T = start[n_seqs], qd = nh * D, kvd = nkv * D, ld = qd + 2 * kvd;
    float *qkv = gpu_random((size_t)(T * ld), -2, 2);                       /* (T, ld) this call's q‖k‖v */
    float *kc = gpu_random((size_t)(n_seqs * cap * kvd), -2, 2);            /* (n_seqs, cap, kvd) past keys */
    float *vc = gpu_random((size_t)(n_seqs * cap * kvd), -2, 2);            /* (n_seqs, cap, kvd) past values */
    dbuf d_qkv = dbuf_new((size_t)(T * ld), mode), d_out = dbuf_new((size_t)(T * qd), mode);
    dbuf d_k = dbuf_new((size_t)(n_seqs * cap * kvd), mode), d_v = dbuf_new((size_t)(n_seqs * cap * kvd), mode);
    dbuf_upload(&d_qkv, qkv), dbuf_upload(&d_k, kc), dbuf_upload(&d_v, vc); /* bf16: the host copies rounded */
    int32_t *rows = malloc((size_t)T * 4), *past32 = malloc((size_t)n_seqs * 4);
    for (int64_t s = 0; s < n_seqs; s++) {
        past32[s] = (int32_t)past[s];
        for (int64_t t = start[s]; t < start[s + 1]; t++) {
            rows[t] = (int32_t)(s * cap + past[s] + t - start[s]);
            memcpy(kc + rows[t] * kvd, qkv + t * ld + qd, (size_t)kvd * 4);       /* the CPU side of the append */
            memcpy(vc + rows[t] * kvd, qkv + t * ld + qd + kvd, (size_t)kvd * 4);
        }
    }
    int32_t *tiles = malloc((size_t)T * 16);
    const int64_t n_tiles = dk_cuda_attention_tiles(start, n_seqs, tiles);
    int32_t *d_rows = device_ints(rows, (size_t)T), *d_past = device_ints(past32, (size_t)n_seqs);
    int32_t *d_tiles = device_ints(tiles, (size_t)n_tiles * 4);
    const float scale = 1.0f / sqrtf((float)D);
    char *base = d_qkv.d;
    const size_t e = d_qkv.esize;
    CUDA_CHECK(dk_cuda_kv_append(d_k.d, d_v.d, base + (size_t)qd * e, ld, base + (size_t)(qd + kvd) * e, ld, d_rows, T,
                                 kvd, mode, 0));
    CUDA_CHECK(dk_cuda_attention_cached(d_out.d, qd, base, ld, d_k.d, d_v.d, kvd, cap, d_past, d_tiles, n_tiles, nh,
                                        nkv, D, scale, softcap, window, mode, 0));
    float *got = dbuf_download(&d_out), *got_k = dbuf_download(&d_k), *got_v = dbuf_download(&d_v);
    char append_what[140];
    snprintf(append_what, sizeof append_what, "kv append (%s)", what);
    expect_exact(append_what, got_k, kc, (size_t)(n_seqs * cap * kvd), &d_k);
    expect_exact(append_what, got_v, vc, (size_t)(n_seqs * cap * kvd), &d_v);

    float *q = malloc((size_t)(T * qd) * 4), *want = malloc((size_t)(T * qd) * 4);
    for (int64_t t = 0; t < T; t++) memcpy(q + t * qd, qkv + t * ld, (size_t)qd * 4);
    dk_attn_segment *seg = malloc((size_t)n_seqs * sizeof *seg);
    for (int64_t s = 0; s < n_seqs; s++)
        seg[s] = (dk_attn_segment){q + start[s] * qd, kc + s * cap * kvd, vc + s * cap * kvd, want + start[s] * qd,
                                   lens[s], past[s] + lens[s]};
    dk_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = D, .scale = scale, .softcap = softcap,
                        .window = window, .n_threads = 1};
    dk_cpu_attention(seg, n_seqs, &p);
    gpu_expect_close(what, got, want, (size_t)(T * qd), mode, 1e-5);
    gpu_expect_guards(what, &d_out);
    dbuf_free(&d_qkv), dbuf_free(&d_out), dbuf_free(&d_k), dbuf_free(&d_v);
    CUDA_CHECK(cudaFree(d_rows));
    CUDA_CHECK(cudaFree(d_past));
    CUDA_CHECK(cudaFree(d_tiles));
    free(start), free(qkv), free(kc), free(vc), free(rows), free(past32), free(tiles), free(got), free(got_k);
    free(got_v), free(q), free(want), free(seg);
}

/* ---------------------------------------------------------------------------------------------------
 * element-wise: gated activation on gate‖up, bias, softcap, steer, patch */

static void test_gated_act(dk_cuda_dtype mode, dk_cuda_act act, int64_t T, int64_t I) {
    static const char *const names[] = {"silu", "gelu_tanh", "gelu_erf"};
    char what[96];
    snprintf(what, sizeof what, "gated_act %s T %lld I %lld", names[act], (long long)T, (long long)I);
    float *gu = gpu_random((size_t)(T * 2 * I), -6, 6);
    dbuf d_gu = dbuf_new((size_t)(T * 2 * I), mode), d_out = dbuf_new((size_t)(T * I), mode);
    dbuf_upload(&d_gu, gu);
    CUDA_CHECK(dk_cuda_gated_act(d_out.d, d_gu.d, T, I, act, mode, 0));
    float *gate = malloc((size_t)(T * I) * 4), *up = malloc((size_t)(T * I) * 4), *want = malloc((size_t)(T * I) * 4);
    for (int64_t t = 0; t < T; t++) {
        memcpy(gate + t * I, gu + t * 2 * I, (size_t)I * 4);
        memcpy(up + t * I, gu + t * 2 * I + I, (size_t)I * 4);
    }
    const dk_cpu_act cpu = act == DK_CUDA_ACT_SILU ? DK_CPU_ACT_SILU
                           : act == DK_CUDA_ACT_GELU_TANH ? DK_CPU_ACT_GELU_TANH : DK_CPU_ACT_GELU_ERF;
    dk_cpu_gated_act(want, gate, up, (size_t)(T * I), cpu);
    float *got = dbuf_download(&d_out);
    gpu_expect_close(what, got, want, (size_t)(T * I), mode, 2e-6);
    gpu_expect_guards(what, &d_out);
    dbuf_free(&d_gu), dbuf_free(&d_out);
    free(gu), free(gate), free(up), free(want), free(got);
}

/* GPT-2's MLP: act(x) with no gate. */
static void test_plain_act(dk_cuda_dtype mode, int64_t T, int64_t I) {
    char what[96];
    snprintf(what, sizeof what, "plain_act gelu_tanh T %lld I %lld", (long long)T, (long long)I);
    float *x = gpu_random((size_t)(T * I), -6, 6);
    dbuf d_x = dbuf_new((size_t)(T * I), mode), d_out = dbuf_new((size_t)(T * I), mode);
    dbuf_upload(&d_x, x);
    if (mode == DK_CUDA_BF16)
        for (int64_t i = 0; i < T * I; i++) x[i] = dk_bf16_to_f32(dk_f32_to_bf16(x[i]));
    CUDA_CHECK(dk_cuda_plain_act(d_out.d, d_x.d, T, I, DK_CUDA_ACT_GELU_TANH, mode, 0));
    float *want = malloc((size_t)(T * I) * 4), *got = dbuf_download(&d_out);
    dk_cpu_plain_act(want, x, (size_t)(T * I), DK_CPU_ACT_GELU_TANH);
    gpu_expect_close(what, got, want, (size_t)(T * I), mode, 2e-6);
    gpu_expect_guards(what, &d_out);
    dbuf_free(&d_x), dbuf_free(&d_out);
    free(x), free(want), free(got);
}

static void test_bias_softcap(dk_cuda_dtype mode) {
    const int64_t T = 13, ld = 41, n = 37;
    float *y = gpu_random((size_t)(T * ld), -3, 3), *b = gpu_random((size_t)n, -1, 1);
    dbuf d_y = dbuf_new((size_t)(T * ld), mode), d_b = dbuf_new((size_t)n, DK_CUDA_F32);
    dbuf_upload(&d_y, y), dbuf_upload(&d_b, b);
    CUDA_CHECK(dk_cuda_add_bias(d_y.d, ld, d_b.d, T, n, mode, 0));
    float *want = malloc((size_t)(T * ld) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < ld; j++) want[t * ld + j] = y[t * ld + j] + (j < n ? b[j] : 0.0f);
    float *got = dbuf_download(&d_y);
    gpu_expect_close(mode == DK_CUDA_F32 ? "add_bias (strided) f32" : "add_bias (strided) bf16", got, want,
                     (size_t)(T * ld), mode, 0.0);
    gpu_expect_guards("add_bias", &d_y);
    dbuf_free(&d_y), dbuf_free(&d_b);
    free(y), free(b), free(want), free(got);

    if (mode != DK_CUDA_F32) return; /* softcap works on fp32 logits only */
    const int64_t N = 1001;
    const float cap = 30.0f;
    float *l = gpu_random((size_t)N, -200, 200), *lw = malloc((size_t)N * 4);
    dbuf d_l = dbuf_new((size_t)N, DK_CUDA_F32);
    dbuf_upload(&d_l, l);
    CUDA_CHECK(dk_cuda_softcap(d_l.d, N, cap, 0));
    for (int64_t i = 0; i < N; i++) lw[i] = tanhf(l[i] / cap) * cap;
    float *lg = dbuf_download(&d_l);
    gpu_expect_close("softcap", lg, lw, (size_t)N, DK_CUDA_F32, 2e-6);
    gpu_expect_guards("softcap", &d_l);
    dbuf_free(&d_l);
    free(l), free(lw), free(lg);
}

static void test_steer_patch(void) {
    const int64_t T = 19, H = 53;
    float *x = gpu_random((size_t)(T * H), -3, 3), *v = gpu_random((size_t)H, -1, 1), *pv = gpu_random((size_t)H, -1, 1);
    dbuf d_x = dbuf_new((size_t)(T * H), DK_CUDA_F32), d_v = dbuf_new((size_t)H, DK_CUDA_F32);
    dbuf d_pv = dbuf_new((size_t)H, DK_CUDA_F32);
    dbuf_upload(&d_x, x), dbuf_upload(&d_v, v), dbuf_upload(&d_pv, pv);
    CUDA_CHECK(dk_cuda_steer(d_x.d, d_v.d, -2.5f, T, H, 0));
    CUDA_CHECK(dk_cuda_patch(d_x.d, d_pv.d, 11, H, 0));
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < H; j++) x[t * H + j] += -2.5f * v[j];
    memcpy(x + 11 * H, pv, (size_t)H * 4);
    float *got = dbuf_download(&d_x);
    expect_exact("steer + patch (forward.c's after_block)", got, x, (size_t)(T * H), &d_x);
    dbuf_free(&d_x), dbuf_free(&d_v), dbuf_free(&d_pv);
    free(x), free(v), free(pv), free(got);
}

/* ---------------------------------------------------------------------------------------------------
 * GEMM and LoRA through cuBLASLt */

static void test_linear(dk_cuda_gemm *g, dk_cuda_dtype mode, dk_cuda_dtype out_mode, int64_t M, int64_t N, int64_t K,
                        int64_t ldy_extra, float beta) {
    char what[112];
    snprintf(what, sizeof what, "linear M %lld N %lld K %lld ldy+%lld beta %g out %s", (long long)M, (long long)N,
             (long long)K, (long long)ldy_extra, beta, mode_name(out_mode));
    const int64_t ldy = N + ldy_extra;
    float *x = gpu_random((size_t)(M * K), -1, 1), *w = gpu_random((size_t)(N * K), -1, 1);
    float *y0 = gpu_random((size_t)(M * ldy), -1, 1);
    dbuf d_x = dbuf_new((size_t)(M * K), mode), d_w = dbuf_new((size_t)(N * K), mode);
    dbuf d_y = dbuf_new((size_t)(M * ldy), out_mode);
    dbuf_upload(&d_x, x), dbuf_upload(&d_w, w), dbuf_upload(&d_y, y0);
    /* a refused shape (e.g. an alignment cuBLASLt has no kernel for) is a failure of this case, not the end of
     * the test */
    const cublasStatus_t st = dk_cuda_linear(g, d_y.d, ldy, out_mode, d_x.d, K, d_w.d, mode, M, N, K, 1.0f, beta, 0);
    if (!EXPECT(st == CUBLAS_STATUS_SUCCESS, "%s: cuBLASLt says %s", what, cublasGetStatusName(st))) {
        dbuf_free(&d_x), dbuf_free(&d_w), dbuf_free(&d_y);
        free(x), free(w), free(y0);
        return;
    }
    float *prod = malloc((size_t)(M * N) * 4), *want = malloc((size_t)(M * ldy) * 4);
    dk_cpu_linear(prod, x, w, NULL, M, N, K);
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < ldy; j++)
            want[m * ldy + j] = j < N ? prod[m * N + j] + beta * y0[m * ldy + j] : y0[m * ldy + j];
    float *got = dbuf_download(&d_y);
    gpu_expect_close(what, got, want, (size_t)(M * ldy), out_mode, 1e-5);
    gpu_expect_guards(what, &d_y);
    CUBLAS_CHECK(dk_cuda_linear(g, d_y.d, ldy, out_mode, d_x.d, K, d_w.d, mode, M, N, K, 1.0f, 0.0f, 0));
    float *once = dbuf_download(&d_y);
    CUBLAS_CHECK(dk_cuda_linear(g, d_y.d, ldy, out_mode, d_x.d, K, d_w.d, mode, M, N, K, 1.0f, 0.0f, 0));
    float *twice = dbuf_download(&d_y);
    gpu_expect_same_bits(what, once, twice, (size_t)(M * ldy) * sizeof(float));
    dbuf_free(&d_x), dbuf_free(&d_w), dbuf_free(&d_y);
    free(x), free(w), free(y0), free(prod), free(want), free(got), free(once), free(twice);
}

static void test_lora(dk_cuda_gemm *g, dk_cuda_dtype mode) {
    const int64_t M = 23, K = 40, N = 33, r = 5, ldy = N + 3;
    const float alpha = 1.7f;
    float *x = gpu_random((size_t)(M * K), -1, 1), *A = gpu_random((size_t)(r * K), -1, 1);
    float *B = gpu_random((size_t)(N * r), -1, 1), *y = gpu_random((size_t)(M * ldy), -1, 1);
    dbuf d_x = dbuf_new((size_t)(M * K), mode), d_A = dbuf_new((size_t)(r * K), mode), d_B = dbuf_new((size_t)(N * r), mode);
    dbuf d_y = dbuf_new((size_t)(M * ldy), mode), d_tmp = dbuf_new((size_t)(M * r), mode);
    dbuf_upload(&d_x, x), dbuf_upload(&d_A, A), dbuf_upload(&d_B, B), dbuf_upload(&d_y, y);
    const cublasStatus_t st = dk_cuda_lora(g, d_y.d, ldy, d_x.d, K, d_A.d, d_B.d, d_tmp.d, M, N, K, r, alpha, mode, 0);
    EXPECT(st == CUBLAS_STATUS_SUCCESS, "lora: cuBLASLt says %s", cublasGetStatusName(st));
    /* CPU: dk_lora_apply on the compact columns (w · scale = alpha), tmp rounded like the GPU's */
    float *yc = malloc((size_t)(M * N) * 4), *tmp = malloc((size_t)(M * r) * 4);
    for (int64_t m = 0; m < M; m++) memcpy(yc + m * N, y + m * ldy, (size_t)N * 4);
    dk_lora_module mod = {.A = A, .B = B, .r = r, .in_features = K, .out_features = N, .scale = alpha};
    dk_lora_apply(yc, x, M, &mod, 1.0f, tmp);
    float *want = malloc((size_t)(M * ldy) * 4);
    memcpy(want, y, (size_t)(M * ldy) * 4);
    for (int64_t m = 0; m < M; m++) memcpy(want + m * ldy, yc + m * N, (size_t)N * 4);
    float *got = dbuf_download(&d_y);
    /* bf16: tmp is rounded on the GPU too, a second rounding: compare with twice the usual allowance */
    char what[64];
    snprintf(what, sizeof what, "lora M %lld N %lld K %lld r %lld", (long long)M, (long long)N, (long long)K, (long long)r);
    if (mode == DK_CUDA_F32) {
        gpu_expect_close(what, got, want, (size_t)(M * ldy), mode, 1e-5);
    } else {
        gpu_cmp c = gpu_compare(got, want, (size_t)(M * ldy));
        printf("  %-48s bf16 err %.3g (tol %.3g)\n", what, c.err, 4 * c.floor + 1e-3);
        EXPECT(c.non_finite == 0 && c.err <= 4 * c.floor + 1e-3, "%s bf16: error %.3g", what, c.err);
    }
    gpu_expect_guards(what, &d_y);
    gpu_expect_guards(what, &d_tmp);
    dbuf_free(&d_x), dbuf_free(&d_A), dbuf_free(&d_B), dbuf_free(&d_y), dbuf_free(&d_tmp);
    free(x), free(A), free(B), free(y), free(yc), free(tmp), free(want), free(got);
}

static void test_gemm_all(dk_cuda_dtype mode) {
    dk_cuda_gemm *g;
    CUBLAS_CHECK(dk_cuda_gemm_create(&g, 32u << 20));
    test_linear(g, mode, mode, 1, 1, 1, 0, 0.0f);
    test_linear(g, mode, mode, 37, 53, 29, 0, 0.0f);
    test_linear(g, mode, mode, 129, 67, 257, 5, 0.0f);
    test_linear(g, mode, mode, 64, 96, 128, 3, 1.0f);
    test_linear(g, mode, DK_CUDA_F32, 17, 301, 64, 0, 0.0f); /* the LM head: fp32 logits */
    const int plans = dk_cuda_gemm_n_plans(g);
    test_linear(g, mode, mode, 37, 53, 29, 0, 0.0f);
    /* the same shape again may only add plans for new pointer alignments, never one per call */
    EXPECT(dk_cuda_gemm_n_plans(g) <= plans + 2, "plan cache: %d plans after repeating a shape (was %d)",
           dk_cuda_gemm_n_plans(g), plans);
    test_lora(g, mode);
    dk_cuda_gemm_destroy(g);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    /* DK_TEST_ONLY=attention: only the attention cases (compute-sanitizer racecheck in tools/gpu_check.sh) */
    const char *only = getenv("DK_TEST_ONLY");
    const bool attention_only = only && strcmp(only, "attention") == 0;
    const dk_cuda_dtype modes[] = {DK_CUDA_F32, DK_CUDA_BF16};
    for (int mi = 0; mi < 2; mi++) {
        const dk_cuda_dtype mode = modes[mi];
        printf("mode %s\n", mode_name(mode));
        if (attention_only) goto attention;
        test_table_rows(mode, false);
        test_rmsnorm(mode, false, 1, 1);
        test_rmsnorm(mode, false, 7, 33);
        test_rmsnorm(mode, true, 5, 1152);
        test_rmsnorm(mode, false, 3, 2049);
        test_add_rmsnorm(mode, false, false, 9, 45);
        test_add_rmsnorm(mode, true, true, 6, 1152);
        test_add_rmsnorm(mode, true, false, 4, 300);
        test_table_rows(mode, true);
        test_layernorm(mode, 1, 1);
        test_layernorm(mode, 7, 33);
        test_layernorm(mode, 5, 768);
        test_layernorm(mode, 3, 2049);
        test_rope(mode, 11, 3, 8, false, false);
        test_rope(mode, 9, 5, 12, true, false);
        test_rope(mode, 7, 4, 256, true, true);
        test_rope(mode, 17, 2, 70, false, false); /* half = 35: lanes past the end */
    attention:;
        const int64_t one[] = {1}, mixed[] = {1, 17, 5, 33, 16}, longer[] = {70, 3};
        test_attention(mode, one, 1, 2, 1, 8, 0, 0.0f, false);
        test_attention(mode, mixed, 5, 4, 2, 12, 0, 0.0f, false);
        test_attention(mode, mixed, 5, 4, 1, 16, 4, 0.0f, false);       /* window, MQA */
        test_attention(mode, longer, 2, 4, 2, 64, 0, 50.0f, false);     /* softcap */
        test_attention(mode, longer, 2, 2, 2, 128, 19, 0.0f, false);
        test_attention(mode, longer, 2, 4, 1, 256, 33, 50.0f, false);   /* Gemma's head_dim */
        test_attention(mode, mixed, 5, 6, 3, 96, 0, 0.0f, false);       /* D not a power of two */
        /* with a KV cache: a prefill (past 0), decode steps (one token each, uneven pasts), a mix; windows */
        const int64_t no_past[] = {0, 0, 0, 0, 0}, decode[] = {1, 1, 1, 1, 1}, pasts[] = {0, 40, 3, 77, 31};
        test_attention_cached(mode, no_past, mixed, 5, 40, 4, 2, 12, 0, 0.0f);
        test_attention_cached(mode, pasts, decode, 5, 80, 4, 2, 64, 0, 0.0f);
        test_attention_cached(mode, pasts, decode, 5, 80, 4, 1, 128, 5, 50.0f);
        test_attention_cached(mode, pasts, mixed, 5, 120, 2, 2, 256, 33, 0.0f);
        test_attention_cached(mode, pasts, mixed, 5, 120, 6, 3, 96, 4, 0.0f);
        if (mode == DK_CUDA_BF16) { /* the tensor-core variant: several 64-query tiles, 32-key tiles, windows */
            const int64_t many[] = {1, 130, 64, 7, 200};
            test_attention(mode, one, 1, 2, 1, 16, 0, 0.0f, true);
            test_attention(mode, mixed, 5, 4, 2, 16, 0, 0.0f, true);
            test_attention(mode, many, 5, 4, 1, 64, 0, 0.0f, true);
            test_attention(mode, many, 5, 4, 2, 64, 37, 50.0f, true);
            test_attention(mode, many, 5, 2, 2, 128, 0, 0.0f, true);
            test_attention(mode, many, 5, 4, 1, 256, 100, 0.0f, true);
            test_attention(mode, longer, 2, 6, 3, 96, 0, 0.0f, true);
        }
        if (attention_only) continue;
        test_gated_act(mode, DK_CUDA_ACT_SILU, 7, 45);
        test_gated_act(mode, DK_CUDA_ACT_GELU_TANH, 5, 63);
        test_gated_act(mode, DK_CUDA_ACT_GELU_ERF, 3, 17);
        test_plain_act(mode, 5, 67);
        test_bias_softcap(mode);
        test_gemm_all(mode);
    }
    if (attention_only) return dk_test_finish("test_kernels_cuda (attention only)");
    test_steer_patch();
    /* invalid launches are refused, not run */
    EXPECT(dk_cuda_attention(NULL, 1, NULL, 1, NULL, 1, NULL, 1, NULL, 1, 4, 3, 64, 1, 0, 0, DK_CUDA_F32, 0) ==
               cudaErrorInvalidValue, "attention with n_heads % n_kv_heads != 0 must be refused");
    EXPECT(dk_cuda_attention(NULL, 1, NULL, 1, NULL, 1, NULL, 1, NULL, 1, 4, 2, 320, 1, 0, 0, DK_CUDA_F32, 0) ==
               cudaErrorInvalidValue, "attention with head_dim 320 must be refused");
    EXPECT(dk_cuda_attention_mma(NULL, 8, NULL, 8, NULL, 8, NULL, 8, NULL, 1, 4, 2, 12, 1, 0, 0, 0) ==
               cudaErrorInvalidValue, "mma attention with head_dim 12 must be refused");
    CUDA_CHECK(cudaDeviceSynchronize());
    return dk_test_finish("test_kernels_cuda");
}
