/* test_generate_cuda.c — generation on the GPU (dk_generate_backend on a CUDA backend: the device KV cache of
 * forward_cuda.h, dk_cuda_attention_cached, dk_cuda_kv_append) against the CPU reference dk_generate, which
 * tests/engine/test_generate.c holds to transformers' generate() token for token. Label: gpu.
 *
 * Mode F32 (fp32 throughout, test_forward_cuda.c's FP32_TOL of 5e-5 on logits), greedy, must give the CPU's
 * tokens exactly:
 *   - every golden model (generate.json: the transformers outputs are checked too), each prompt alone and all
 *     prompts in one batch; the sliding-window models (mistral, gemma2, gemma3: windows of 4-5) decode past
 *     their window through the cache;
 *   - 300 new tokens on llama and gemma2: the caches grow past their first 256 new positions (reserve, rows
 *     kept at the new stride);
 *   - steering (steer.vector after block 1) on every token, on the prompt only, with linear decay, and with
 *     per-sequence strengths in one batch; patchscope in the prefill;
 *   - logit amplification (two device caches): against the base (reference NULL) and against a second adapter.
 * Mode BF16 (the default): bf16 rounding moves logits by about 1e-2 relative (test_forward_cuda.c's BF16_TOLS),
 *   so only the first token of each prompt is compared, and only where the CPU's top-2 logit gap exceeds
 *   2 × 0.03 × max |logit| (else it is a near tie that bf16 may break either way; counted and printed).
 * Speed: a batch of 32 prompts x 128 new tokens in mode BF16 on llama (tiny: this measures the per-step
 *   overhead of the loop, launches and host sampling, not bandwidth), printed as tokens/s for the gpu check's
 *   log. */
#include "gpu_test.h"

#include <time.h>

#include "engine_test.h"
#include "model_golden.h"
#include "io/file.h"
#include "model/backend.h"
#include "model/forward_cuda.h"
#include "model/generate.h"
#include "model/lora.h"

static const char *const MODELS[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_mm", "gpt2",
                                     "qwen25_vl"};
static const int64_t EOS = 2;
static const double BF16_REL = 0.03; /* the largest per-model bf16 logits tolerance of test_forward_cuda.c */

static dk_generate_options greedy(int64_t max_new) {
    static const int64_t stop[] = {EOS};
    return (dk_generate_options){.max_new_tokens = max_new, .stop_ids = stop, .n_stop = 1};
}

static bool same_ids(const int64_t *a, int64_t na, const int64_t *b, int64_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static dk_batch prompt_batch(const golden_generation *g, int i, int64_t starts[2]) {
    starts[0] = 0, starts[1] = g->prompt_start[i + 1] - g->prompt_start[i];
    return (dk_batch){g->prompt_ids + g->prompt_start[i], starts[1], starts, 1, true};
}

/* A golden model, a GPU backend on it (mode F32 or BF16) and its generate.json prompts, all prompts batched. */
typedef struct fixture {
    dk_model m;
    dk_backend be;
    golden_generation g;
    dk_batch all;
} fixture;

static void fixture_open(const char *name, bool fp32, fixture *f) {
    char *dir = golden_model_dir(name);
    dk_err err = {0};
    CHECK(dk_model_open(dir, &f->m, &err) == 0, "%s", err.msg);
    CHECK(dk_backend_open(&f->be, &f->m, &(dk_backend_options){.device = DK_DEVICE_CUDA, .cuda_fp32 = fp32}, &err) == 0,
          "%s", err.msg);
    golden_generation_read(name, &f->g);
    f->all = (dk_batch){f->g.prompt_ids, f->g.prompt_start[f->g.n], f->g.prompt_start, f->g.n, true};
    free(dir);
}

static void fixture_close(fixture *f) {
    golden_generation_free(&f->g);
    dk_backend_close(&f->be);
    dk_model_close(&f->m);
}

/* Generates `b` on the CPU and on the GPU backend; every sequence must be identical. Returns how many were. */
static int gpu_equals_cpu(const dk_model *m, dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *b,
                          const dk_generate_options *opt, const char *what) {
    dk_err err = {0};
    dk_generation cpu, gpu;
    CHECK(dk_generate(m, adapter, b, opt, &cpu, &err) == 0, "%s on the CPU: %s", what, err.msg);
    if (!EXPECT(dk_generate_backend(be, adapter, b, opt, &gpu, &err) == 0, "%s on the GPU: %s", what, err.msg)) {
        dk_generation_free(&cpu);
        return 0;
    }
    int same = 0;
    for (int64_t s = 0; s < b->n_seqs; s++) {
        const bool ok = same_ids(gpu.ids[s], gpu.n_ids[s], cpu.ids[s], cpu.n_ids[s]) && gpu.stopped[s] == cpu.stopped[s];
        int64_t at = 0;
        while (at < gpu.n_ids[s] && at < cpu.n_ids[s] && gpu.ids[s][at] == cpu.ids[s][at]) at++;
        same += EXPECT(ok, "%s, sequence %lld: the GPU generated %lld tokens, the CPU %lld; first difference at "
                       "token %lld", what, (long long)s, (long long)gpu.n_ids[s], (long long)cpu.n_ids[s], (long long)at);
    }
    dk_generation_free(&cpu);
    dk_generation_free(&gpu);
    return same;
}

/* Greedy, mode F32, every golden model: alone and batched, equal to the CPU and to transformers. */
static void test_f32_greedy_golden(void) {
    printf("mode F32 greedy generation on the GPU vs the CPU and transformers:\n");
    for (size_t k = 0; k < sizeof MODELS / sizeof MODELS[0]; k++) {
        fixture f;
        fixture_open(MODELS[k], true, &f);
        const golden_generation *g = &f.g;
        const dk_generate_options opt = greedy(10); /* the goldens' max_new_tokens */
        dk_err err = {0};
        int same = 0, total = 0;
        for (int i = 0; i < g->n; i++) {
            int64_t starts[2];
            dk_batch b = prompt_batch(g, i, starts);
            char *what = dk_sprintf("%s prompt %d alone", MODELS[k], i);
            same += gpu_equals_cpu(&f.m, &f.be, NULL, &b, &opt, what), total++;
            free(what);
        }
        char *what = dk_sprintf("%s all prompts batched", MODELS[k]);
        same += gpu_equals_cpu(&f.m, &f.be, NULL, &f.all, &opt, what), total += g->n;
        free(what);
        dk_generation out; /* and transformers' own tokens */
        if (EXPECT(dk_generate_backend(&f.be, NULL, &f.all, &opt, &out, &err) == 0, "%s", err.msg)) {
            for (int i = 0; i < g->n; i++)
                EXPECT(same_ids(out.ids[i], out.n_ids[i], g->output_ids + g->output_start[i],
                                g->output_start[i + 1] - g->output_start[i]),
                       "%s prompt %d batched on the GPU: differs from transformers (generate.json)", MODELS[k], i);
            dk_generation_free(&out);
        }
        printf("  %-10s %d of %d generations identical to the CPU's\n", MODELS[k], same, total);
        fixture_close(&f);
    }
}

/* 300 new tokens (no stop): the device caches grow past their first 256 new positions. */
static void test_f32_cache_growth(void) {
    const char *names[] = {"llama", "gemma2"};
    for (int k = 0; k < 2; k++) {
        fixture f;
        fixture_open(names[k], true, &f);
        const dk_generate_options opt = {.max_new_tokens = 300};
        char *what = dk_sprintf("%s, 300 new tokens (cache growth)", names[k]);
        const int same = gpu_equals_cpu(&f.m, &f.be, NULL, &f.all, &opt, what);
        printf("  %s: %d of %d identical\n", what, same, f.g.n);
        free(what);
        fixture_close(&f);
    }
}

/* Hooks during generation on llama (steer.vector and patch.vector of golden.safetensors, after block 1). */
static void test_f32_hooks(void) {
    fixture f;
    fixture_open("llama", true, &f);
    const golden_generation *g = &f.g;
    char *dir = golden_model_dir("llama"), *golden_path = dk_path_join(dir, "golden.safetensors");
    dk_err err = {0};
    dk_st_checkpoint *golden = dk_st_open(golden_path, &err);
    CHECK(golden, "%s", err.msg);
    float *vec = golden_load(golden, "steer.vector", f.m.cfg.hidden_size);
    float *patch_vec = golden_load(golden, "patch.vector", f.m.cfg.hidden_size);
    dk_st_close(golden);
    float *seq_strength = dk_malloc((size_t)g->n * sizeof(float)); /* (n) */
    for (int i = 0; i < g->n; i++) seq_strength[i] = i % 2 ? -1.5f : 2.5f;
    const struct {
        const char *what;
        dk_steer steer;
    } cases[] = {
        {"steering, all tokens", {.layer = 1, .strength = 4.0f, .vector = vec}},
        {"steering, prompt only", {.layer = 1, .strength = 4.0f, .vector = vec, .prompt_only = true}},
        {"steering, linear decay over 4 steps", {.layer = 1, .strength = 4.0f, .vector = vec, .linear_decay_steps = 4}},
        {"steering, per-sequence strengths", {.layer = 1, .strength = 4.0f, .vector = vec, .seq_strength = seq_strength}},
        {"steering, per-sequence strengths with linear decay",
         {.layer = 1, .strength = 4.0f, .vector = vec, .seq_strength = seq_strength, .linear_decay_steps = 4}},
    };
    int same = 0, total = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dk_generate_options opt = greedy(10);
        opt.steers = &cases[c].steer;
        opt.n_steer = 1;
        for (int i = 0; i < g->n; i++) { /* alone (with the sequence's own strength) and batched */
            int64_t starts[2];
            dk_batch b = prompt_batch(g, i, starts);
            dk_steer alone = cases[c].steer;
            alone.seq_strength = cases[c].steer.seq_strength ? &seq_strength[i] : NULL;
            dk_generate_options o = opt;
            o.steers = &alone;
            same += gpu_equals_cpu(&f.m, &f.be, NULL, &b, &o, cases[c].what), total++;
        }
        same += gpu_equals_cpu(&f.m, &f.be, NULL, &f.all, &opt, cases[c].what), total += g->n;
    }
    /* patchscope: the residual after block 1 at the last token of prompt 0 replaced in the prefill */
    const dk_patch patch = {.layer = 1, .token = g->prompt_start[1] - 1, .vector = patch_vec};
    dk_generate_options opt = greedy(10);
    opt.patches = &patch;
    opt.n_patch = 1;
    same += gpu_equals_cpu(&f.m, &f.be, NULL, &f.all, &opt, "patchscope in the prefill"), total += g->n;
    printf("  hooks (llama): %d of %d generations identical to the CPU's\n", same, total);
    free(seq_strength);
    free(vec);
    free(patch_vec);
    free(golden_path);
    free(dir);
    fixture_close(&f);
}

/* Logit amplification: the organism (llama_lora) and a reference step together, each with its own device cache. */
static void test_f32_logit_amplification(void) {
    fixture f;
    fixture_open("llama", true, &f);
    dk_err err = {0};
    dk_lora_adapter ft, ref;
    char *adir = engine_fixture("adapters/llama_lora");
    CHECK(dk_lora_load(adir, &f.m.cfg, &f.m.w, &ft, &err) == 0, "%s", err.msg);
    free(adir);
    adir = engine_fixture("adapters/llama_patterns");
    CHECK(dk_lora_load(adir, &f.m.cfg, &f.m.w, &ref, &err) == 0, "%s", err.msg);
    free(adir);
    int same = 0, total = 0;
    const float alphas[] = {0.0f, 1.0f, 2.0f};
    for (int a = 0; a < 3; a++)
        for (int r = 0; r < 2; r++) {
            dk_generate_options opt = greedy(10);
            opt.logit_amp = true;
            opt.logit_amp_alpha = alphas[a];
            opt.logit_amp_reference = r ? &ref : NULL;
            char *what = dk_sprintf("logit amplification alpha %g vs %s", alphas[a], r ? "llama_patterns" : "base");
            same += gpu_equals_cpu(&f.m, &f.be, &ft, &f.all, &opt, what), total += f.g.n;
            free(what);
        }
    /* the base after the organism: the organism's upload, kept on the device, must not leak into a base call */
    dk_generate_options opt = greedy(10);
    same += gpu_equals_cpu(&f.m, &f.be, NULL, &f.all, &opt, "base model after the organism"), total += f.g.n;
    same += gpu_equals_cpu(&f.m, &f.be, &ft, &f.all, &opt, "organism alone"), total += f.g.n;
    printf("  logit amplification (llama_lora): %d of %d generations identical to the CPU's\n", same, total);
    dk_lora_free(&ft);
    dk_lora_free(&ref);
    fixture_close(&f);
}

/* The gap between the two largest logits of a row, relative to its largest magnitude. */
static double top2_gap(const float *x, int64_t V) {
    float a = -INFINITY, b = -INFINITY, big = 0;
    for (int64_t i = 0; i < V; i++) {
        if (x[i] > a) b = a, a = x[i];
        else if (x[i] > b) b = x[i];
        if (fabsf(x[i]) > big) big = fabsf(x[i]);
    }
    return big > 0 ? (double)(a - b) / big : 0;
}

/* Mode BF16: the first token of every golden prompt, where the CPU's choice is not a near tie. */
static void test_bf16_first_tokens(void) {
    printf("mode BF16, first generated token vs the CPU (near ties skipped):\n");
    int compared_total = 0;
    for (size_t k = 0; k < sizeof MODELS / sizeof MODELS[0]; k++) {
        fixture f;
        fixture_open(MODELS[k], false, &f);
        const int64_t V = f.m.cfg.vocab_size, n = f.g.n;
        float *logits = dk_malloc((size_t)(n * V) * sizeof(float)); /* (n, V) the CPU's last-position logits */
        dk_hook_plan plan = {.logits = DK_LOGITS_LAST, .logits_out = logits};
        dk_err err = {0};
        CHECK(dk_forward(&f.m, NULL, &f.all, &plan, NULL, &err) == 0, "%s", err.msg);
        const dk_generate_options opt = greedy(4);
        dk_generation cpu, gpu;
        CHECK(dk_generate(&f.m, NULL, &f.all, &opt, &cpu, &err) == 0, "%s", err.msg);
        int compared = 0, ties = 0;
        if (EXPECT(dk_generate_backend(&f.be, NULL, &f.all, &opt, &gpu, &err) == 0, "%s bf16: %s", MODELS[k],
                   err.msg)) {
            for (int64_t i = 0; i < n; i++) {
                if (top2_gap(logits + i * V, V) <= 2 * BF16_REL) {
                    ties++;
                    continue;
                }
                compared++;
                EXPECT(gpu.n_ids[i] >= 1 && gpu.ids[i][0] == cpu.ids[i][0],
                       "%s bf16 prompt %lld: first token %lld on the GPU, %lld on the CPU", MODELS[k], (long long)i,
                       (long long)(gpu.n_ids[i] ? gpu.ids[i][0] : -1), (long long)cpu.ids[i][0]);
            }
            dk_generation_free(&gpu);
        }
        printf("  %-10s %d first tokens compared, %d near ties skipped\n", MODELS[k], compared, ties);
        compared_total += compared;
        dk_generation_free(&cpu);
        free(logits);
        fixture_close(&f);
    }
    EXPECT(compared_total > 0, "bf16: every first token was a near tie; nothing was compared");
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* tokens/s of 32 prompts x 128 new tokens, mode BF16, greedy, no stop ids (every sequence runs to the end). The
 * golden llama's context is 128 positions: generation past it logs one warning (RoPE has no hard limit). */
static void bench_bf16_batch(void) {
    fixture f;
    fixture_open("llama", false, &f);
    enum { S = 32, NEW = 128, PROMPT = 16 };
    int64_t ids[S * PROMPT], starts[S + 1];
    for (int s = 0; s <= S; s++) starts[s] = (int64_t)s * PROMPT;
    for (int i = 0; i < S * PROMPT; i++) ids[i] = 3 + (int64_t)((i * 7919) % (f.m.cfg.vocab_size - 3));
    dk_batch b = {ids, S * PROMPT, starts, S, true};
    const dk_generate_options opt = {.max_new_tokens = NEW};
    dk_err err = {0};
    dk_generation out;
    CHECK(dk_generate_backend(&f.be, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg); /* warm-up */
    dk_generation_free(&out);
    const double t0 = now_s();
    CHECK(dk_generate_backend(&f.be, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
    const double dt = now_s() - t0;
    int64_t n = 0;
    for (int s = 0; s < S; s++) n += out.n_ids[s];
    EXPECT(n == S * NEW, "bench: %lld tokens generated, expected %d", (long long)n, S * NEW);
    char name[256];
    dk_cuda_device_name(name, sizeof name);
    printf("BENCH generate_cuda bf16 llama (golden, H=%lld, %lld layers) %d x %d new tokens: %.3f s, %.0f tokens/s "
           "on %s\n", (long long)f.m.cfg.hidden_size, (long long)f.m.cfg.num_hidden_layers, S, NEW, dt,
           (double)n / dt, name);
    dk_generation_free(&out);
    fixture_close(&f);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    test_f32_greedy_golden();
    test_f32_cache_growth();
    test_f32_hooks();
    test_f32_logit_amplification();
    test_bf16_first_tokens();
    bench_bf16_batch();
    return dk_test_finish("test_generate_cuda");
}
