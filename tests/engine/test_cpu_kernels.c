/* test_cpu_kernels.c — the CPU reference kernels against transformers/torch outputs dumped by
 * tools/make_engine_fixtures.py (fixtures/engine/{kernels,rope}) and against naive loops:
 *   RMSNorm (Llama and Gemma, fp32 and bf16-emulated), gated activations (SiLU, GELU-tanh, GELU-erf),
 *   Linear through OpenBLAS, the fused small-M linear from bf16/f16/f32 weights against that one, RoPE
 *   inverse frequencies for every config fixture (default, linear, llama3, yarn; Gemma 3 local/global), the
 *   cos/sin tables, and rotate_half application.
 * Differences are measured in float32 ulps; the thresholds are stated next to each check. */
#include "engine_test.h"

#include "core/strutil.h"
#include "io/file.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/linear_fused.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/dtype_convert.h"
#include "model/hf_config.h"
#include "model/rope_freq.h"

#include <math.h>
#include <stdint.h>

/* Distance in representable float32 values (0 = identical; +0 and -0 are 0 apart). */
static int64_t ulp_distance(float a, float b) {
    if (a == b) return 0;
    if (isnan(a) || isnan(b)) return INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia; /* monotone map of the float line onto integers */
    int64_t lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return la > lb ? la - lb : lb - la;
}

typedef struct {
    int64_t max_ulp;
    double max_abs;
    size_t n, exact;
} diff_stats;

static diff_stats compare(const float *got, const float *want, size_t n) {
    diff_stats s = {0, 0, n, 0};
    for (size_t i = 0; i < n; i++) {
        int64_t u = ulp_distance(got[i], want[i]);
        double a = fabs((double)got[i] - (double)want[i]);
        if (u == 0) s.exact++;
        if (u > s.max_ulp) s.max_ulp = u;
        if (a > s.max_abs) s.max_abs = a;
    }
    return s;
}

static void report(const char *what, diff_stats s) {
    printf("  %-44s %5zu values, %5zu identical, max %lld ulp, max abs %.3g\n", what, s.n, s.exact,
           (long long)s.max_ulp, s.max_abs);
}

/* Reads consecutive float32 arrays from a fixture .bin. */
typedef struct {
    unsigned char *bytes;
    size_t size, at;
} bin_reader;

static const float *take(bin_reader *r, size_t count) {
    CHECK(r->at + count * 4 <= r->size, "fixture too short (regenerate with tools/make_engine_fixtures.py)");
    const float *p = (const float *)(r->bytes + r->at); /* malloc'ed buffer, offsets multiple of 4 */
    r->at += count * 4;
    return p;
}

static uint64_t rng_state = 12345;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;
}

/* ---------------------------------------------------------------------------------------------------
 * GEMM */

static void test_linear(void) {
    const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 33}, {17, 64, 96}, {3, 1, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = dk_malloc((size_t)(M * K) * 4), *w = dk_malloc((size_t)(N * K) * 4), *b = dk_malloc((size_t)N * 4);
        float *y = dk_malloc((size_t)(M * N) * 4), *yb = dk_malloc((size_t)(M * N) * 4);
        for (int64_t i = 0; i < M * K; i++) x[i] = rand_uniform();
        for (int64_t i = 0; i < N * K; i++) w[i] = rand_uniform();
        for (int64_t i = 0; i < N; i++) b[i] = rand_uniform();
        dk_cpu_linear(y, x, w, NULL, M, N, K);
        dk_cpu_linear(yb, x, w, b, M, N, K);
        double worst = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double ref = 0, mag = 0; /* y[m][n] = Σ_k x[m][k]·W[n][k], in double */
                for (int64_t k = 0; k < K; k++) {
                    ref += (double)x[m * K + k] * w[n * K + k];
                    mag += fabs((double)x[m * K + k] * w[n * K + k]);
                }
                double e1 = fabs(y[m * N + n] - ref) / (mag + 1e-30);
                double e2 = fabs(yb[m * N + n] - (ref + b[n])) / (mag + fabs(b[n]) + 1e-30);
                worst = fmax(worst, fmax(e1, e2));
            }
        /* fp32 accumulation of K terms: error <= ~K·2^-24 relative to Σ|terms|; allow 4·K·6e-8 */
        EXPECT(worst <= 4.0 * (double)K * 6e-8, "linear %lldx%lldx%lld: relative error %g", (long long)M,
               (long long)N, (long long)K, worst);
        free(x), free(w), free(b), free(y), free(yb);
    }
    float bias[3] = {1, 2, 3}, out[6];
    dk_cpu_linear(out, NULL, NULL, bias, 2, 3, 0); /* K = 0: y = bias */
    EXPECT(out[0] == 1 && out[4] == 2 && out[5] == 3, "K=0 gives the bias");
}

/* The fused linear (decoding's path) against sgemm on the same weights widened to fp32. Both accumulate K
 * products in fp32: the fused one in L = 8 or 16 lane sums of at most K/8 + 1 terms plus L lane additions
 * and the bias, sgemm in some order of at most K additions, so |fused - sgemm| <= (K + K/8 + 18)·2^-24·
 * (Σ|x·w| + |b|) (the standard bound for recursive summation, each side). A wrong, dropped or repeated
 * product is far above it. Every path this CPU has (portable, AVX2, AVX-512) is checked, at an odd byte
 * address (safetensors allows 2-byte alignment) and with the output rows split in uneven pieces (as threads
 * split them), which must give the same bits. */
static void test_linear_fused_case(dk_cpu_weight_type type, int64_t M, int64_t N, int64_t K, bool with_bias,
                                   size_t misalign) {
    const size_t es = type == DK_CPU_WEIGHT_F32 ? 4 : 2;
    float *x = dk_malloc((size_t)(M * K + 1) * 4), *wide = dk_malloc((size_t)(N * K + 1) * 4);
    float *b = dk_malloc((size_t)N * 4), *want = dk_malloc((size_t)(M * N + 1) * 4);
    float *got = dk_malloc((size_t)(M * N + 1) * 4), *pieces = dk_malloc((size_t)(M * N + 1) * 4);
    uint8_t *raw = dk_malloc((size_t)(N * K) * es + 8), *w = raw + misalign; /* (N, K) in `type` */
    for (int64_t i = 0; i < M * K; i++) x[i] = rand_uniform();
    for (int64_t i = 0; i < N; i++) b[i] = rand_uniform();
    for (int64_t i = 0; i < N * K; i++) {
        float v = rand_uniform() * 2.0f;
        uint16_t h = type == DK_CPU_WEIGHT_BF16 ? dk_f32_to_bf16(v) : dk_f32_to_f16(v);
        if (type == DK_CPU_WEIGHT_F32) memcpy(w + 4 * i, &v, 4);
        else memcpy(w + 2 * i, &h, 2);
    }
    /* the reference path: the whole weight widened to fp32 (aligned copy), then sgemm */
    uint16_t *halves = dk_malloc((size_t)(N * K + 1) * 2);
    if (type == DK_CPU_WEIGHT_F32) {
        memcpy(wide, w, (size_t)(N * K) * 4);
    } else {
        memcpy(halves, w, (size_t)(N * K) * 2);
        if (type == DK_CPU_WEIGHT_BF16) dk_cpu_bf16_to_f32(wide, halves, (size_t)(N * K));
        else dk_cpu_f16_to_f32(wide, halves, (size_t)(N * K));
    }
    const float *bias = with_bias ? b : NULL;
    dk_cpu_linear(want, x, wide, bias, M, N, K);
    const char *names[] = {"f32", "bf16", "f16"};
    for (int p = 0; p < DK_CPU_FUSED_N_PATHS; p++) {
        const dk_cpu_fused_path path = (dk_cpu_fused_path)p;
        if (!dk_cpu_fused_path_available(path)) continue;
        dk_cpu_linear_fused_on(path, got, x, w, type, bias, M, N, K, 0, N);
        double worst = 0; /* error / bound */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double mag = with_bias ? fabs(b[n]) : 0;
                for (int64_t k = 0; k < K; k++) mag += fabs((double)x[m * K + k] * wide[n * K + k]);
                double bound = (double)(K + K / 8 + 18) * 0x1p-24 * mag + 1e-30;
                worst = fmax(worst, fabs((double)got[m * N + n] - want[m * N + n]) / bound);
            }
        EXPECT(worst <= 1.0, "fused linear %s (%s) %lldx%lldx%lld bias %d misaligned %zu: error %.3g of the fp32 "
               "accumulation bound", names[type], dk_cpu_fused_path_name(path), (long long)M, (long long)N,
               (long long)K, with_bias, misalign, worst);
        /* rows split as threads would split them: [0, 1), [1, N/3), [N/3, N) */
        const int64_t cuts[] = {0, N > 1 ? 1 : N, N / 3 > 1 ? N / 3 : (N > 1 ? 1 : N), N};
        for (int c = 0; c < 3; c++)
            dk_cpu_linear_fused_on(path, pieces, x, w, type, bias, M, N, K, cuts[c], cuts[c + 1]);
        EXPECT(memcmp(pieces, got, (size_t)(M * N) * 4) == 0, "fused linear %s (%s): rows split in pieces give "
               "other bits than one call (%lldx%lldx%lld)", names[type], dk_cpu_fused_path_name(path), (long long)M,
               (long long)N, (long long)K);
    }
    free(x), free(wide), free(b), free(want), free(got), free(pieces), free(raw), free(halves);
}

static void test_linear_fused(void) {
    for (int p = 0; p < DK_CPU_FUSED_N_PATHS; p++)
        printf("  fused linear path %-8s %s\n", dk_cpu_fused_path_name((dk_cpu_fused_path)p),
               dk_cpu_fused_path_available((dk_cpu_fused_path)p) ? "checked" : "not available on this CPU");
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 13, 300}, {2, 9, 256}, {3, 7, 263}, {8, 64, 1024}, {16, 33, 520},
                                 {DK_CPU_FUSED_MAX_M, 6, 71}, {5, 4, 7}, {7, 5, 530}, {31, 9, 40}};
    for (int type = 0; type < 3; type++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t misalign = 0; misalign <= 2; misalign += 2)
                test_linear_fused_case((dk_cpu_weight_type)type, shapes[s][0], shapes[s][1], shapes[s][2], s % 2 == 1,
                                       misalign);
    float bias[3] = {1, 2, 3}, out[6];
    dk_cpu_linear_fused(out, NULL, NULL, DK_CPU_WEIGHT_BF16, bias, 2, 3, 0, 0, 3); /* K = 0: y = bias */
    EXPECT(out[0] == 1 && out[4] == 2 && out[5] == 3, "fused linear with K=0 gives the bias");
}

/* ---------------------------------------------------------------------------------------------------
 * RMSNorm and activations against torch */

static void test_rmsnorm(void) {
    char *path = engine_fixture("kernels/rmsnorm.bin");
    bin_reader r = {0};
    r.bytes = engine_read_all(path, &r.size);
    enum { ROWS = 4, DIM = 40 };
    const float *x = take(&r, ROWS * DIM), *w = take(&r, DIM);
    const float *llama = take(&r, ROWS * DIM), *gemma = take(&r, ROWS * DIM);
    const float *llama_bf = take(&r, ROWS * DIM), *gemma_bf = take(&r, ROWS * DIM);
    float out[ROWS * DIM], xb[ROWS * DIM], wb[DIM];

    dk_cpu_rmsnorm(out, x, w, ROWS, DIM, 1e-6f, DK_RMSNORM_LLAMA);
    diff_stats s = compare(out, llama, ROWS * DIM);
    report("RMSNorm llama f32 vs LlamaRMSNorm", s);
    EXPECT(s.max_ulp <= 4, "llama rmsnorm: %lld ulp", (long long)s.max_ulp);
    dk_cpu_rmsnorm(out, x, w, ROWS, DIM, 1e-6f, DK_RMSNORM_GEMMA);
    s = compare(out, gemma, ROWS * DIM);
    report("RMSNorm gemma f32 vs Gemma3RMSNorm", s);
    EXPECT(s.max_ulp <= 4, "gemma rmsnorm: %lld ulp", (long long)s.max_ulp);

    /* bf16 model: inputs rounded to bf16 as torch's .to(bfloat16) does; compare in bf16 ulps (65536 f32 ulps). */
    for (int i = 0; i < ROWS * DIM; i++) xb[i] = dk_bf16_to_f32(dk_f32_to_bf16(x[i]));
    for (int i = 0; i < DIM; i++) wb[i] = dk_bf16_to_f32(dk_f32_to_bf16(w[i]));
    dk_cpu_rmsnorm_bf16_emulated(out, xb, wb, ROWS, DIM, 1e-6f, DK_RMSNORM_LLAMA);
    s = compare(out, llama_bf, ROWS * DIM);
    report("RMSNorm llama bf16 vs LlamaRMSNorm(bf16)", s);
    EXPECT(s.max_ulp <= 65536 && s.exact >= s.n * 95 / 100, "llama bf16: %zu/%zu identical, max %lld", s.exact, s.n,
           (long long)s.max_ulp);
    dk_cpu_rmsnorm_bf16_emulated(out, xb, wb, ROWS, DIM, 1e-6f, DK_RMSNORM_GEMMA);
    s = compare(out, gemma_bf, ROWS * DIM);
    report("RMSNorm gemma bf16 vs Gemma3RMSNorm(bf16)", s);
    EXPECT(s.max_ulp <= 65536 && s.exact >= s.n * 95 / 100, "gemma bf16: %zu/%zu identical", s.exact, s.n);
    /* The cast order matters: Gemma's rounding applied to a Llama norm must differ somewhere. */
    dk_cpu_rmsnorm_bf16_emulated(out, xb, wb, ROWS, DIM, 1e-6f, DK_RMSNORM_LLAMA);
    float alt[ROWS * DIM];
    for (int i = 0; i < ROWS * DIM; i++) { /* round once at the end, Gemma-style, with weight w */
        double ss = 0;
        for (int j = 0; j < DIM; j++) ss += (double)xb[i / DIM * DIM + j] * xb[i / DIM * DIM + j];
        float inv = 1.0f / sqrtf((float)(ss / DIM) + 1e-6f);
        alt[i] = dk_bf16_to_f32(dk_f32_to_bf16(wb[i % DIM] * (xb[i] * inv)));
    }
    EXPECT(compare(alt, llama_bf, ROWS * DIM).exact < (size_t)(ROWS * DIM), "the fixture should tell the orders apart");

    /* in place */
    float inplace[ROWS * DIM];
    memcpy(inplace, x, sizeof inplace);
    dk_cpu_rmsnorm(inplace, inplace, w, ROWS, DIM, 1e-6f, DK_RMSNORM_LLAMA);
    dk_cpu_rmsnorm(out, x, w, ROWS, DIM, 1e-6f, DK_RMSNORM_LLAMA);
    EXPECT(memcmp(inplace, out, sizeof out) == 0, "in-place rmsnorm");
    free(r.bytes);
    free(path);
}

static void test_activations(void) {
    char *path = engine_fixture("kernels/act.bin");
    bin_reader r = {0};
    r.bytes = engine_read_all(path, &r.size);
    enum { N = 2 * 33 };
    const float *gate = take(&r, N), *up = take(&r, N);
    const char *names[3] = {"silu(gate)*up vs F.silu", "gelu_tanh(gate)*up vs F.gelu(tanh)", "gelu(gate)*up vs F.gelu"};
    dk_cpu_act acts[3] = {DK_CPU_ACT_SILU, DK_CPU_ACT_GELU_TANH, DK_CPU_ACT_GELU_ERF};
    for (int a = 0; a < 3; a++) {
        const float *want = take(&r, N);
        float out[N];
        dk_cpu_gated_act(out, gate, up, N, acts[a]);
        diff_stats s = compare(out, want, N);
        report(names[a], s);
        /* libm vs torch's vectorised exp/tanh/erf: a few ulps, more where tanh saturates near -x */
        EXPECT(s.max_ulp <= 8 || s.max_abs <= 1e-6, "%s: %lld ulp, abs %g", names[a], (long long)s.max_ulp, s.max_abs);
    }
    float g[3] = {1, 2, 3}, u[3] = {2, 2, 2};
    dk_cpu_gated_act(g, g, u, 3, DK_CPU_ACT_SILU); /* out may alias gate */
    EXPECT(fabsf(g[0] - 2.0f * 0.7310585786f) < 1e-6f, "silu(1)*2 = %g", g[0]);
    free(r.bytes);
    free(path);
}

/* GPT-2: torch.nn.LayerNorm and NewGELUActivation ("gelu_new", no gate). */
static void test_layernorm(void) {
    char *path = engine_fixture("kernels/layernorm.bin");
    bin_reader r = {0};
    r.bytes = engine_read_all(path, &r.size);
    enum { ROWS = 4, DIM = 40, N = 3 * 29 };
    const float *x = take(&r, ROWS * DIM), *w = take(&r, DIM), *b = take(&r, DIM), *want = take(&r, ROWS * DIM);
    float out[ROWS * DIM];
    dk_cpu_layernorm(out, x, w, b, ROWS, DIM, 1e-5f);
    diff_stats s = compare(out, want, ROWS * DIM);
    report("LayerNorm f32 vs torch.nn.LayerNorm", s);
    /* the row at 100x magnitude normalises to the same size: a few ulps, or 1e-6 absolute near zero */
    EXPECT(s.max_ulp <= 8 || s.max_abs <= 1e-6, "layernorm: %lld ulp, abs %g", (long long)s.max_ulp, s.max_abs);
    const float *ax = take(&r, N), *agelu = take(&r, N);
    float aout[N];
    dk_cpu_plain_act(aout, ax, N, DK_CPU_ACT_GELU_TANH);
    s = compare(aout, agelu, N);
    report("gelu_tanh(x) vs NewGELUActivation", s);
    EXPECT(s.max_ulp <= 8 || s.max_abs <= 1e-6, "gelu_new: %lld ulp, abs %g", (long long)s.max_ulp, s.max_abs);
    free(r.bytes);
    free(path);
}

/* ---------------------------------------------------------------------------------------------------
 * RoPE */

/* Reads the whitespace-separated floats after `skip` tokens of a line. */
static int read_floats(const char *line, int skip, float *out, int max) {
    const char *p = line;
    for (int i = 0; i < skip; i++) {
        while (*p == ' ') p++;
        while (*p && *p != ' ') p++;
    }
    int n = 0;
    char *end;
    for (;;) {
        float v = strtof(p, &end);
        if (end == p || n == max) break;
        out[n++] = v;
        p = end;
    }
    return n;
}

static void test_rope_case(const char *rope_dir, const char *config_dir, const char *name, diff_stats *inv_all,
                           diff_stats *table_all) {
    char *txt_path = dk_sprintf("%s/%s.txt", rope_dir, name), *cfg_path = dk_sprintf("%s/%s.config.json", config_dir, name);
    dk_hf_config cfg;
    dk_err err = {0};
    if (dk_hf_config_load(cfg_path, &cfg, &err) != 0) {
        EXPECT(0, "%s: %s", name, err.msg);
        free(txt_path), free(cfg_path);
        return;
    }
    size_t size;
    char *text = (char *)engine_read_all(txt_path, &size);
    int64_t D = cfg.head_dim, positions[16];
    int n_pos = 0;
    float *inv = dk_malloc((size_t)D * 4), *want = dk_malloc((size_t)(D + 8) * 4);
    float *cos_tab = dk_malloc((size_t)(16 * D) * 4), *sin_tab = dk_malloc((size_t)(16 * D) * 4);
    float scale = 1;
    const dk_rope_params *rope = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[16], label[32];
        if (sscanf(line, "%15s %31s", kind, label) != 2) continue;
        if (strcmp(kind, "positions") == 0) {
            float p[16];
            n_pos = read_floats(line, 2, p, 16);
            for (int i = 0; i < n_pos; i++) positions[i] = (int64_t)p[i];
            continue;
        }
        rope = strcmp(label, "sliding_attention") == 0 ? &cfg.rope_sliding : &cfg.rope;
        if (strcmp(kind, "inv_freq") == 0) {
            double want_scale;
            int n_inv;
            sscanf(line, "%*s %*s %lf %d", &want_scale, &n_inv);
            EXPECT(n_inv == D / 2, "%s: %d frequencies for head_dim %lld", name, n_inv, (long long)D);
            int got_n = read_floats(line, 4, want, (int)D);
            EXPECT(got_n == D / 2, "%s: fixture has %d values", name, got_n);
            dk_rope_inv_freq(rope, D, inv, &scale);
            EXPECT(scale == (float)want_scale, "%s %s: attention scaling %.9g vs %.9g", name, label, scale, want_scale);
            diff_stats s = compare(inv, want, (size_t)(D / 2));
            if (s.max_ulp > 1)
                fprintf(stderr, "  %s %s (%s): inv_freq max %lld ulp\n", name, label, dk_rope_type_name(rope->type),
                        (long long)s.max_ulp);
            EXPECT(s.max_ulp <= 1, "%s %s: inv_freq %lld ulp from transformers", name, label, (long long)s.max_ulp);
            inv_all->n += s.n, inv_all->exact += s.exact;
            if (s.max_ulp > inv_all->max_ulp) inv_all->max_ulp = s.max_ulp;
            /* the tables, from transformers' inv_freq so that they are tested on their own */
            dk_cpu_rope_tables(cos_tab, sin_tab, want, positions, n_pos, D, (float)want_scale);
            continue;
        }
        /* cos/sin row at a position */
        long long pos;
        sscanf(line, "%*s %*s %lld", &pos);
        int row = -1;
        for (int i = 0; i < n_pos; i++)
            if (positions[i] == pos) row = i;
        EXPECT(row >= 0 && read_floats(line, 3, want, (int)D) == D, "%s: bad table line", name);
        if (row < 0) continue;
        const float *got = (strcmp(kind, "cos") == 0 ? cos_tab : sin_tab) + row * D;
        diff_stats s = compare(got, want, (size_t)D);
        /* cosf/sinf (glibc) vs torch's vectorised cos/sin of the same float angle: <= 1e-6 absolute */
        EXPECT(s.max_abs <= 1e-6 * fmax(1.0, (double)scale), "%s %s %s pos %lld: abs %g", name, label, kind, pos,
               s.max_abs);
        table_all->n += s.n, table_all->exact += s.exact;
        if (s.max_abs > table_all->max_abs) table_all->max_abs = s.max_abs;
        if (s.max_ulp > table_all->max_ulp) table_all->max_ulp = s.max_ulp;
    }
    free(inv), free(want), free(cos_tab), free(sin_tab), free(text);
    dk_hf_config_free(&cfg);
    free(txt_path), free(cfg_path);
}

static void test_rope_freqs(void) {
    char *rope_dir = engine_fixture("rope"), *config_dir = engine_fixture("configs");
    size_t n = 0;
    char **names = dk_list_dir(rope_dir, ".txt", true, &n);
    EXPECT(n >= 15, "rope fixtures: %zu", n);
    diff_stats inv_all = {0}, table_all = {0};
    for (size_t i = 0; i < n; i++) test_rope_case(rope_dir, config_dir, names[i], &inv_all, &table_all);
    report("RoPE inv_freq vs ROPE_INIT_FUNCTIONS (all)", inv_all);
    report("RoPE cos/sin tables vs rotary modules (all)", table_all);
    dk_free_strings(names, n);
    free(rope_dir), free(config_dir);
}

static void test_rope_apply(void) {
    char *path = engine_fixture("rope/apply.bin");
    bin_reader r = {0};
    r.bytes = engine_read_all(path, &r.size);
    enum { S = 5, D = 8, NH = 3, NKV = 2 };
    /* torch layout (1, heads, S, D); ours (S, heads, D) */
    const float *q = take(&r, NH * S * D), *k = take(&r, NKV * S * D), *cos_rows = take(&r, S * D), *sin_rows = take(&r, S * D);
    const float *q_rot = take(&r, NH * S * D), *k_rot = take(&r, NKV * S * D);
    float qs[S * NH * D], ks[S * NKV * D], want_q[S * NH * D], want_k[S * NKV * D];
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < S; t++)
            for (int d = 0; d < D; d++) {
                qs[(t * NH + h) * D + d] = q[(h * S + t) * D + d];
                want_q[(t * NH + h) * D + d] = q_rot[(h * S + t) * D + d];
            }
    for (int h = 0; h < NKV; h++)
        for (int t = 0; t < S; t++)
            for (int d = 0; d < D; d++) {
                ks[(t * NKV + h) * D + d] = k[(h * S + t) * D + d];
                want_k[(t * NKV + h) * D + d] = k_rot[(h * S + t) * D + d];
            }
    dk_cpu_rope_apply(qs, cos_rows, sin_rows, S, NH, D);
    dk_cpu_rope_apply(ks, cos_rows, sin_rows, S, NKV, D);
    diff_stats sq = compare(qs, want_q, S * NH * D), sk = compare(ks, want_k, S * NKV * D);
    report("RoPE apply q vs apply_rotary_pos_emb", sq);
    report("RoPE apply k vs apply_rotary_pos_emb", sk);
    EXPECT(sq.max_ulp == 0 && sk.max_ulp == 0, "rope apply: q %lld, k %lld ulp", (long long)sq.max_ulp,
           (long long)sk.max_ulp);

    /* Naive check of the pairing: (x_i, x_{i+D/2}) rotates as a complex number by the angle. */
    float v[D], c[D], s[D], inv[D / 2];
    for (int i = 0; i < D; i++) v[i] = (float)(i + 1);
    for (int i = 0; i < D / 2; i++) inv[i] = 0.1f * (float)(i + 1);
    int64_t p = 3;
    dk_cpu_rope_tables(c, s, inv, &p, 1, D, 1.0f);
    float rotated[D];
    memcpy(rotated, v, sizeof v);
    dk_cpu_rope_apply(rotated, c, s, 1, 1, D);
    for (int i = 0; i < D / 2; i++) {
        double angle = 3.0 * (double)inv[i];
        double re = v[i] * cos(angle) - v[i + D / 2] * sin(angle), im = v[i + D / 2] * cos(angle) + v[i] * sin(angle);
        EXPECT(fabs(rotated[i] - re) < 1e-5 && fabs(rotated[i + D / 2] - im) < 1e-5, "pair %d rotated wrong", i);
    }
    free(r.bytes);
    free(path);
}

int main(void) {
    printf("CPU kernels vs transformers/torch (fixtures) and naive loops:\n");
    test_linear();
    test_linear_fused();
    test_rmsnorm();
    test_activations();
    test_layernorm();
    test_rope_freqs();
    test_rope_apply();
    return dk_test_finish("test_cpu_kernels");
}
