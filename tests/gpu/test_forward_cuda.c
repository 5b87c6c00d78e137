/* test_forward_cuda.c — the CUDA forward (host/model/forward_cuda.h) against the CPU forward on the golden
 * models of tests/fixtures/engine/models (every architecture in scope), with the hook plan, LoRA adapters,
 * the backend switch, error messages and bitwise repeatability. Label: gpu.
 *
 * Tolerances (err = max |gpu − cpu| / max |cpu| per tensor, golden_rel_error; the CPU forward matches
 * transformers to 5e-5, tests/engine/test_forward.c):
 *   mode F32:  FP32_TOL = 5e-5 for every capture and the logits, and the argmax of every logits row agrees.
 *              Both sides compute in fp32; they differ in summation order (cuBLASLt vs OpenBLAS, online vs
 *              two-pass softmax) and device cosf/expf ulps, a few 1e-7 per op through a few layers.
 *   mode BF16: a tolerance per case (BF16_TOLS below), derived without a GPU by tools/bf16_tolerance_sim.py:
 *              transformers fp32 with the weights and every activation rounded to bf16 where this CUDA path
 *              stores one (normed inputs, GEMM outputs, q/k after norm+RoPE, attention output, act(gate)⊙up;
 *              the residual stays fp32), against plain fp32; tolerance = max(2 × that simulated error, 0.02)
 *              rounded up to 1 digit (2×: the GPU is a second draw of the same rounding process). Simulated
 *              errors (2026-12-05): 0.0081–0.0136 on the architectures, 0.041 / 0.32 / 0.019 on llama_lora /
 *              qwen3_rslora / gemma3_lora (that random rsLoRA drives the residual to ~3e3, where rounding errors
 *              grow from layer to layer); the "mma" column also rounds the attention probabilities, as
 *              attention_mma.cu does. Rerun the script after changing a golden model or a rounding point.
 * Repeatability: two runs of the same batch give bit-identical captures and logits (no atomics, fixed
 * reduction trees, cuBLASLt plans cached per shape). */
#include "gpu_test.h"

#include "engine_test.h"
#include "model_golden.h"
#include "io/file.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model/forward_cuda.h"
#include "model/lora.h"

static const double FP32_TOL = 5e-5;

/* bf16 tolerances per case, pasted from the output of tools/bf16_tolerance_sim.py (see the header) */
static const struct {
    const char *name;
    double tol, tol_mma;
} BF16_TOLS[] = {
    {"llama", 0.02, 0.02},     {"llama_f32", 0.02, 0.02},   {"mistral", 0.03, 0.03},
    {"qwen2", 0.03, 0.03},     {"qwen3", 0.02, 0.02},       {"gemma2", 0.03, 0.03},
    {"gemma3", 0.02, 0.03},    {"gemma3_mm", 0.03, 0.04},   {"llama_lora", 0.09, 0},
    {"qwen3_rslora", 0.7, 0},  {"gemma3_lora", 0.04, 0},
};

static double bf16_tol(const char *name, bool mma) {
    for (size_t i = 0; i < sizeof BF16_TOLS / sizeof BF16_TOLS[0]; i++)
        if (strcmp(BF16_TOLS[i].name, name) == 0) return mma ? BF16_TOLS[i].tol_mma : BF16_TOLS[i].tol;
    CHECK(0, "no bf16 tolerance for %s: run tools/bf16_tolerance_sim.py and add its row to BF16_TOLS", name);
    return 0;
}

static const char *const MODELS[] = {"llama", "llama_f32", "mistral", "qwen2", "qwen3", "gemma2", "gemma3",
                                     "gemma3_mm", "gpt2", "qwen25_vl"};

typedef struct full_run {
    int64_t n_layers;
    float **layers; /* (L) of (T, H) */
    float *logits;  /* (T, V) */
} full_run;

/* Every layer captured and all logits, on the CPU (f == NULL) or the GPU. */
static void run_full(const dk_model *m, dk_cuda_forward *f, const dk_lora_adapter *adapter, const golden_tokens *tok,
                     full_run *r) {
    const int64_t L = m->cfg.num_hidden_layers, T = tok->n_tokens, H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    r->n_layers = L;
    r->layers = dk_malloc((size_t)L * sizeof *r->layers);
    int64_t *which = dk_malloc((size_t)L * sizeof *which);
    for (int64_t l = 0; l < L; l++) {
        r->layers[l] = dk_malloc((size_t)(T * H) * sizeof(float));
        gpu_poison_host(r->layers[l], (size_t)(T * H) * sizeof(float)); /* NaN: unwritten values fail */
        which[l] = l;
    }
    r->logits = dk_malloc((size_t)(T * V) * sizeof(float));
    gpu_poison_host(r->logits, (size_t)(T * V) * sizeof(float));
    dk_batch b = {tok->ids, T, tok->seq_start, tok->n_seqs, true};
    dk_hook_plan plan = {.n_capture = L, .capture_layers = which, .captures = r->layers, .logits = DK_LOGITS_ALL,
                         .logits_out = r->logits};
    dk_err err = {0};
    const int rc = f ? dk_cuda_forward_run(f, adapter, &b, &plan, &err) : dk_forward(m, adapter, &b, &plan, NULL, &err);
    EXPECT(rc == 0, "%s forward failed: %s", f ? "cuda" : "cpu", err.msg);
    free(which);
}

static void full_run_free(full_run *r) {
    for (int64_t l = 0; l < r->n_layers; l++) free(r->layers[l]);
    free(r->layers);
    free(r->logits);
}

static size_t count_non_finite(const float *p, int64_t n) {
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(p[i]);
    return bad;
}

static void compare_runs(const char *label, const dk_model *m, const golden_tokens *tok, const full_run *gpu,
                         const full_run *cpu, double tol, bool check_argmax) {
    const int64_t T = tok->n_tokens, H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    double worst = 0;
    for (int64_t l = 0; l < gpu->n_layers; l++) {
        EXPECT(count_non_finite(gpu->layers[l], T * H) == 0, "%s layer %lld: non-finite values", label, (long long)l);
        const double e = golden_rel_error(gpu->layers[l], cpu->layers[l], T * H);
        if (e > worst) worst = e;
        EXPECT(e <= tol, "%s layer %lld: rel error %.3g > %.3g", label, (long long)l, e, tol);
    }
    EXPECT(count_non_finite(gpu->logits, T * V) == 0, "%s logits: non-finite values", label);
    const double el = golden_rel_error(gpu->logits, cpu->logits, T * V);
    const int64_t mism = golden_argmax_mismatches(gpu->logits, cpu->logits, T, V);
    EXPECT(el <= tol, "%s logits: rel error %.3g > %.3g", label, el, tol);
    if (check_argmax) EXPECT(mism == 0, "%s logits: argmax differs in %lld of %lld rows", label, (long long)mism, (long long)T);
    printf("  %-32s captures worst %.3g, logits %.3g, argmax mismatches %lld/%lld (tol %.3g)\n", label, worst, el,
           (long long)mism, (long long)T, tol);
}

static void expect_bitwise(const char *label, const dk_model *m, const golden_tokens *tok, const full_run *a,
                           const full_run *b) {
    const int64_t T = tok->n_tokens, H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    size_t diff = 0;
    for (int64_t l = 0; l < a->n_layers; l++) diff += memcmp(a->layers[l], b->layers[l], (size_t)(T * H) * 4) != 0;
    diff += memcmp(a->logits, b->logits, (size_t)(T * V) * 4) != 0;
    EXPECT(diff == 0, "%s: two identical runs differ in %zu tensors (not repeatable)", label, diff);
}

/* Every architecture: fp32 mode tight, bf16 mode within its bound, bf16 repeatable bit for bit. */
static void test_architectures(void) {
    printf("architectures, CUDA vs CPU:\n");
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        char *dir = golden_model_dir(MODELS[i]);
        dk_model m;
        dk_err err = {0};
        CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
        golden_tokens tok;
        golden_tokens_read_model(MODELS[i], &tok);
        full_run cpu, g32, g16, g16b;
        run_full(&m, NULL, NULL, &tok, &cpu);
        for (int mode = 0; mode < 2; mode++) {
            dk_cuda_forward *f;
            if (!EXPECT(dk_cuda_forward_open(&m, mode ? DK_CUDA_BF16 : DK_CUDA_F32, &f, &err) == 0, "%s: %s",
                        MODELS[i], err.msg))
                continue;
            char label[64];
            snprintf(label, sizeof label, "%s %s", MODELS[i], mode ? "bf16" : "f32");
            if (mode == 0) {
                run_full(&m, f, NULL, &tok, &g32);
                compare_runs(label, &m, &tok, &g32, &cpu, FP32_TOL, true);
                full_run_free(&g32);
            } else {
                run_full(&m, f, NULL, &tok, &g16);
                run_full(&m, f, NULL, &tok, &g16b);
                compare_runs(label, &m, &tok, &g16, &cpu, bf16_tol(MODELS[i], false), false);
                expect_bitwise(label, &m, &tok, &g16, &g16b);
                full_run_free(&g16);
                full_run_free(&g16b);
            }
            dk_cuda_forward_close(f);
        }
        full_run_free(&cpu);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(dir);
    }
}

/* The tensor-core attention (DIFFKIT_CUDA_ATTN=mma, bf16) on the golden models whose head_dim is a multiple
 * of 16 (the others fall back to attention.cu, which the run must then equal bit for bit). */
static void test_attention_mma(void) {
    printf("forward with DIFFKIT_CUDA_ATTN=mma (bf16):\n");
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        char *dir = golden_model_dir(MODELS[i]);
        dk_model m;
        dk_err err = {0};
        CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
        golden_tokens tok;
        golden_tokens_read_model(MODELS[i], &tok);
        full_run cpu, plain, mma;
        run_full(&m, NULL, NULL, &tok, &cpu);
        dk_cuda_forward *f;
        CHECK(dk_cuda_forward_open(&m, DK_CUDA_BF16, &f, &err) == 0, "%s", err.msg);
        run_full(&m, f, NULL, &tok, &plain);
        dk_cuda_forward_close(f);
        setenv("DIFFKIT_CUDA_ATTN", "mma", 1);
        CHECK(dk_cuda_forward_open(&m, DK_CUDA_BF16, &f, &err) == 0, "%s", err.msg);
        unsetenv("DIFFKIT_CUDA_ATTN");
        run_full(&m, f, NULL, &tok, &mma);
        dk_cuda_forward_close(f);
        char label[64];
        snprintf(label, sizeof label, "%s bf16 mma", MODELS[i]);
        compare_runs(label, &m, &tok, &mma, &cpu, bf16_tol(MODELS[i], m.cfg.head_dim % 16 == 0), false);
        if (m.cfg.head_dim % 16 != 0) expect_bitwise(label, &m, &tok, &mma, &plain);
        full_run_free(&cpu);
        full_run_free(&plain);
        full_run_free(&mma);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(dir);
    }
}

/* Hooks: steering (one prompt-only, one with per-sequence strengths), a patch, captures at two layers, stopping early, logits LAST; pinned
 * and pageable capture buffers give the same bits. fp32 mode against the CPU. */
static void test_hooks(void) {
    printf("hooks (steer, patch, capture, stop early, last logits):\n");
    static const char *const names[] = {"llama", "gemma2", "qwen3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *dir = golden_model_dir(names[i]);
        dk_model m;
        dk_err err = {0};
        CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
        golden_tokens tok;
        golden_tokens_read_model(names[i], &tok);
        const int64_t T = tok.n_tokens, H = m.cfg.hidden_size, V = m.cfg.vocab_size, L = m.cfg.num_hidden_layers;
        float *v1 = gpu_random((size_t)H, -1, 1), *v2 = gpu_random((size_t)H, -1, 1), *pv = gpu_random((size_t)H, -2, 2);
        dk_steer steers[2] = {{.layer = 0, .strength = 3.0f, .vector = v1, .prompt_only = false},
                              {.layer = L > 1 ? 1 : 0, .strength = -1.5f, .vector = v2, .prompt_only = true}};
        float *seq_mult = dk_malloc((size_t)tok.n_seqs * sizeof(float)); /* (n_seqs) per-sequence strengths */
        for (int64_t q = 0; q < tok.n_seqs; q++) seq_mult[q] = 1.0f - 0.75f * (float)q;
        steers[0].seq_strength = seq_mult;
        dk_patch patches[1] = {{0, T / 2, pv}};
        const int64_t layers[2] = {0, L > 1 ? L - 2 : 0};
        dk_cuda_forward *f;
        CHECK(dk_cuda_forward_open(&m, DK_CUDA_F32, &f, &err) == 0, "%s", err.msg);
        for (int with_logits = 0; with_logits < 2; with_logits++) {
            float *cc[2], *gc[2], *pc[2];
            for (int k = 0; k < 2; k++) {
                cc[k] = dk_malloc((size_t)(T * H) * 4);
                gc[k] = dk_malloc((size_t)(T * H) * 4);
                pc[k] = dk_cuda_host_alloc((size_t)(T * H) * 4);
            }
            float *cl = dk_malloc((size_t)(tok.n_seqs * V) * 4), *gl = dk_malloc((size_t)(tok.n_seqs * V) * 4);
            dk_batch b = {tok.ids, T, tok.seq_start, tok.n_seqs, true};
            dk_hook_plan plan = {.n_capture = 2, .capture_layers = layers, .n_steer = 2, .steers = steers,
                                 .n_patch = 1, .patches = patches,
                                 .logits = with_logits ? DK_LOGITS_LAST : DK_LOGITS_NONE};
            plan.captures = cc, plan.logits_out = cl;
            EXPECT(dk_forward(&m, NULL, &b, &plan, NULL, &err) == 0, "cpu: %s", err.msg);
            plan.captures = gc, plan.logits_out = gl;
            EXPECT(dk_cuda_forward_run(f, NULL, &b, &plan, &err) == 0, "cuda: %s", err.msg);
            plan.captures = pc;
            EXPECT(dk_cuda_forward_run(f, NULL, &b, &plan, &err) == 0, "cuda pinned: %s", err.msg);
            double worst = 0;
            for (int k = 0; k < 2; k++) {
                const double e = golden_rel_error(gc[k], cc[k], T * H);
                if (e > worst) worst = e;
                EXPECT(e <= FP32_TOL, "%s hooks capture %d: rel error %.3g", names[i], k, e);
                EXPECT(memcmp(gc[k], pc[k], (size_t)(T * H) * 4) == 0, "%s: pinned and pageable captures differ",
                       names[i]);
            }
            if (with_logits) {
                const double e = golden_rel_error(gl, cl, tok.n_seqs * V);
                if (e > worst) worst = e;
                EXPECT(e <= FP32_TOL, "%s hooks last logits: rel error %.3g", names[i], e);
                EXPECT(golden_argmax_mismatches(gl, cl, tok.n_seqs, V) == 0, "%s last logits argmax", names[i]);
            }
            printf("  %-32s worst rel error %.3g\n", with_logits ? names[i] : "  (no logits: stops early)", worst);
            for (int k = 0; k < 2; k++) free(cc[k]), free(gc[k]), dk_cuda_host_free(pc[k]);
            free(cl), free(gl);
        }
        dk_cuda_forward_close(f);
        free(v1), free(v2), free(pv), free(seq_mult);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(dir);
    }
}

/* LoRA adapters at multipliers 1, 2 and 0 (0 must be exactly the base run) in fp32 mode, and at 1 in bf16. */
static void test_lora(void) {
    static const char *const adapters[][2] = {{"llama_lora", "llama"},         {"qwen3_rslora", "qwen3"},
                                              {"gemma3_lora", "gemma3"},       {"llama_patterns", "llama"},
                                              {"qwen3_regex", "qwen3"},        {"gpt2_lora", "gpt2"},
                                              {"qwen25_vl_lora", "qwen25_vl"}};
    printf("LoRA, CUDA vs CPU (llama_patterns: saved embed_tokens and lm_head too):\n");
    for (size_t i = 0; i < sizeof adapters / sizeof adapters[0]; i++) {
        char *rel = dk_sprintf("adapters/%s", adapters[i][0]);
        char *adir = engine_fixture(rel);
        dk_model m;
        dk_lora_adapter a;
        golden_open_lora(adapters[i][1], adir, &m, &a);
        dk_err err = {0};
        golden_tokens tok;
        golden_tokens_read_model(adapters[i][1], &tok);
        dk_cuda_forward *f;
        CHECK(dk_cuda_forward_open(&m, DK_CUDA_F32, &f, &err) == 0, "%s", err.msg);
        const float mults[] = {1.0f, 2.0f, 0.0f};
        full_run base;
        run_full(&m, f, NULL, &tok, &base);
        for (int k = 0; k < 3; k++) {
            dk_lora_set_multiplier(&a, mults[k]);
            full_run cpu, gpu;
            run_full(&m, NULL, &a, &tok, &cpu);
            run_full(&m, f, &a, &tok, &gpu);
            char label[64];
            snprintf(label, sizeof label, "%s w=%g", adapters[i][0], mults[k]);
            compare_runs(label, &m, &tok, &gpu, &cpu, mults[k] > 1 ? 4 * FP32_TOL : FP32_TOL, true);
            if (mults[k] == 0.0f) expect_bitwise(label, &m, &tok, &gpu, &base);
            full_run_free(&cpu);
            full_run_free(&gpu);
        }
        full_run_free(&base);
        /* the adapter freed and loaded again into the same struct (the same address), with other weights (B
         * negated): the forward must upload the new weights, not reuse the old ones by address */
        dk_lora_free(&a);
        CHECK(dk_lora_load(adir, &m.cfg, &m.w, &a, &err) == 0, "%s", err.msg);
        for (int64_t j = 0; j < a.n_layers * DK_N_MODULES; j++) {
            const dk_lora_module *mod = &a.modules[j];
            if (mod->A && mod->B)
                for (int64_t e = 0; e < mod->out_features * mod->r; e++) mod->B[e] = -mod->B[e];
        }
        {
            full_run cpu, gpu;
            run_full(&m, NULL, &a, &tok, &cpu);
            run_full(&m, f, &a, &tok, &gpu);
            char label[64];
            snprintf(label, sizeof label, "%s reloaded, B negated", adapters[i][0]);
            compare_runs(label, &m, &tok, &gpu, &cpu, FP32_TOL, true);
            full_run_free(&cpu);
            full_run_free(&gpu);
        }
        dk_cuda_forward_close(f);
        /* bf16 mode at w = 1: the LoRA GEMMs on bf16 operands (rank r rows: odd pitches) */
        if (EXPECT(dk_cuda_forward_open(&m, DK_CUDA_BF16, &f, &err) == 0, "%s", err.msg)) {
            dk_lora_set_multiplier(&a, 1.0f);
            full_run cpu, gpu;
            run_full(&m, NULL, &a, &tok, &cpu);
            run_full(&m, f, &a, &tok, &gpu);
            char label[64];
            snprintf(label, sizeof label, "%s w=1 bf16", adapters[i][0]);
            compare_runs(label, &m, &tok, &gpu, &cpu, bf16_tol(adapters[i][0], false), false);
            full_run_free(&cpu);
            full_run_free(&gpu);
            dk_cuda_forward_close(f);
        }
        dk_lora_free(&a);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(adir), free(rel);
    }
}

/* The backend switch: cpu is dk_forward bit for bit; cuda and auto run on the GPU here. Input errors carry
 * the CPU forward's messages. */
static void test_backend_and_errors(void) {
    printf("backend switch and errors\n");
    char *dir = golden_model_dir("llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    golden_tokens tok;
    golden_tokens_read_model("llama", &tok);
    const int64_t T = tok.n_tokens, H = m.cfg.hidden_size;
    const int64_t layer = 1;
    float *a = dk_malloc((size_t)(T * H) * 4), *b = dk_malloc((size_t)(T * H) * 4);
    dk_batch batch = {tok.ids, T, tok.seq_start, tok.n_seqs, true};
    dk_hook_plan plan = {.n_capture = 1, .capture_layers = &layer, .captures = &a};
    EXPECT(dk_forward(&m, NULL, &batch, &plan, NULL, &err) == 0, "%s", err.msg);
    dk_backend be;
    EXPECT(dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_CPU}, &err) == 0, "%s", err.msg);
    plan.captures = &b;
    EXPECT(dk_backend_forward(&be, NULL, &batch, &plan, NULL, &err) == 0, "%s", err.msg);
    EXPECT(memcmp(a, b, (size_t)(T * H) * 4) == 0, "device=cpu must be dk_forward bit for bit");
    dk_backend_close(&be);
    EXPECT(dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_AUTO}, &err) == 0, "%s", err.msg);
    EXPECT(be.device == DK_DEVICE_CUDA, "device=auto with a GPU present must pick cuda");
    EXPECT(dk_backend_forward(&be, NULL, &batch, &plan, NULL, &err) == 0, "%s", err.msg);
    EXPECT(golden_rel_error(b, a, T * H) <= bf16_tol("llama", false), "device=auto (bf16) far from the CPU");

    /* a bad token id and a bad layer: the CPU forward's messages, exit code 2 */
    int64_t *ids = dk_malloc((size_t)T * sizeof *ids);
    memcpy(ids, tok.ids, (size_t)T * sizeof *ids);
    ids[T - 1] = m.cfg.vocab_size;
    dk_batch bad = {ids, T, tok.seq_start, tok.n_seqs, true};
    dk_err e_cpu = {0}, e_gpu = {0};
    EXPECT(dk_forward(&m, NULL, &bad, &plan, NULL, &e_cpu) != 0, "cpu accepted a bad id");
    EXPECT(dk_backend_forward(&be, NULL, &bad, &plan, NULL, &e_gpu) != 0, "cuda accepted a bad id");
    EXPECT(e_gpu.code == DK_EXIT_USAGE && strcmp(e_cpu.msg, e_gpu.msg) == 0, "messages differ: '%s' vs '%s'",
           e_cpu.msg, e_gpu.msg);
    const int64_t bad_layer = m.cfg.num_hidden_layers;
    dk_hook_plan bad_plan = {.n_capture = 1, .capture_layers = &bad_layer, .captures = &b};
    memset(&e_cpu, 0, sizeof e_cpu), memset(&e_gpu, 0, sizeof e_gpu);
    EXPECT(dk_forward(&m, NULL, &batch, &bad_plan, NULL, &e_cpu) != 0, "cpu accepted a bad layer");
    EXPECT(dk_backend_forward(&be, NULL, &batch, &bad_plan, NULL, &e_gpu) != 0, "cuda accepted a bad layer");
    EXPECT(strcmp(e_cpu.msg, e_gpu.msg) == 0, "messages differ: '%s' vs '%s'", e_cpu.msg, e_gpu.msg);
    dk_backend_close(&be);
    dk_device d;
    EXPECT(dk_device_parse("gpu", &d, &err) != 0, "device 'gpu' must be refused");
    free(ids), free(a), free(b);
    golden_tokens_free(&tok);
    dk_model_close(&m);
    free(dir);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    test_architectures();
    test_attention_mma();
    test_hooks();
    test_lora();
    test_backend_and_errors();
    CUDA_CHECK(cudaDeviceSynchronize());
    return dk_test_finish("test_forward_cuda");
}
