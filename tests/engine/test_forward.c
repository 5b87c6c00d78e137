/* test_forward.c — the CPU forward pass against transformers (fp32, eager) on the tiny random-weight models
 * of tools/make_model_goldens.py: every architecture, every layer's residual and the logits of 4 sequences
 * (lengths 1, 6, 13, 19) run as ONE packed batch, so causality within each sequence is checked too (the
 * goldens ran each sequence alone). Then the hook plan (stop early, last-position logits, steering and
 * patching against transformers forward hooks), PEFT LoRA adapters at multipliers 0, 1 and 2 and per
 * (layer, module), Gemma 3's Hub tensor names, the base/organism shape check, and bad input.
 *
 * Thresholds. Both sides compute in fp32 from the same bf16-exact weights; they differ only in summation
 * order (OpenBLAS vs torch's sgemm, our double-accumulated RMSNorm mean, our attention loop vs torch's
 * batched matmul) and in libm (expf/tanhf/cosf). Each such difference is ~1 ulp (6e-8 relative) per
 * operation; over 3 blocks of ~10 chained ops with sums of up to 40 terms they stay below ~2e-6 relative
 * (measured, printed by the test: <= 1.7e-6 for the base models, <= 2.7e-6 with peft adapters at w = 1).
 * The gate is 5e-5 of the tensor's largest magnitude: 20x the measured noise, and 100x below what a real bug
 * gives (a wrong norm cast, a missing 1+w, an off-by-one window, a swapped RoPE half: all >= 5e-3 here).
 * The w = 2 reference is computed differently, not just in another order: transformers runs weights merged
 * in fp32 (W + 2·scale·BA rounded once per element) while we add the unmerged product; with the rsLoRA
 * adapter (scale 2.8, amplified twice) this measures 2.3e-5, so that comparison gets 2e-4 (W2_TOL). The argmax must agree at every position; the goldens were
 * drawn so that the top two logits differ by >= 1e-3 everywhere, far above the noise.
 */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"
#include "model/forward.h"

#include <cjson/cJSON.h>
#include <math.h>

static const double REL_TOL = 5e-5;
static const double W2_TOL = 2e-4;

static const char *const MODELS[] = {"llama", "llama_f32", "mistral", "qwen2", "qwen3", "gemma2", "gemma3",
                                     "gemma3_mm", "gpt2", "gpt2_hub", "qwen25_vl"};

/* The model whose golden and tokens a fixture uses: copies of a model (an fp32 checkpoint, Hub tensor names)
 * compute the same numbers. */
static const char *golden_of(const char *model) {
    if (strcmp(model, "llama_f32") == 0) return "llama";
    if (strcmp(model, "gpt2_hub") == 0) return "gpt2";
    return model;
}

/* Everything a full run produces: every layer's residual and all logits. */
typedef struct full_run {
    int64_t n_layers;
    float **layers;  /* (L) of (T, H) */
    float *logits;   /* (T, V) */
} full_run;

static void run_full(const dk_model *m, const dk_lora_adapter *adapter, const golden_tokens *tok, full_run *r) {
    const int64_t L = m->cfg.num_hidden_layers, T = tok->n_tokens, H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    r->n_layers = L;
    r->layers = dk_malloc((size_t)L * sizeof *r->layers);
    int64_t *which = dk_malloc((size_t)L * sizeof *which);
    for (int64_t l = 0; l < L; l++) {
        r->layers[l] = dk_malloc((size_t)(T * H) * sizeof(float));
        which[l] = l;
    }
    r->logits = dk_malloc((size_t)(T * V) * sizeof(float));
    dk_batch b = {tok->ids, T, tok->seq_start, tok->n_seqs, true};
    dk_hook_plan plan = {.n_capture = L, .capture_layers = which, .captures = r->layers, .logits = DK_LOGITS_ALL,
                         .logits_out = r->logits};
    dk_err err = {0};
    EXPECT(dk_forward(m, adapter, &b, &plan, NULL, &err) == 0, "forward failed: %s", err.msg);
    free(which);
}

static void full_run_free(full_run *r) {
    for (int64_t l = 0; l < r->n_layers; l++) free(r->layers[l]);
    free(r->layers);
    free(r->logits);
}

/* Compares a full run with `<prefix>seq{i}.layer{l}` / `<prefix>seq{i}.logits` and prints the worst errors. */
static void compare_run(const char *label, const dk_model *m, const golden_tokens *tok, const full_run *r,
                        const dk_st_checkpoint *golden, const char *prefix, double tol) {
    const int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    double worst_hidden = 0, worst_logits = 0;
    int64_t argmax_bad = 0;
    for (int64_t s = 0; s < tok->n_seqs; s++) {
        const int64_t start = tok->seq_start[s], n = tok->seq_start[s + 1] - start;
        char name[128];
        for (int64_t l = 0; l < r->n_layers; l++) {
            snprintf(name, sizeof name, "%sseq%lld.layer%lld", prefix, (long long)s, (long long)l);
            float *want = golden_load(golden, name, n * H);
            double e = golden_rel_error(r->layers[l] + start * H, want, n * H);
            EXPECT(e <= tol, "%s %s: relative error %.3g > %.1g", label, name, e, tol);
            if (e > worst_hidden) worst_hidden = e;
            free(want);
        }
        snprintf(name, sizeof name, "%sseq%lld.logits", prefix, (long long)s);
        float *want = golden_load(golden, name, n * V);
        double e = golden_rel_error(r->logits + start * V, want, n * V);
        EXPECT(e <= tol, "%s %s: relative error %.3g > %.1g", label, name, e, tol);
        if (e > worst_logits) worst_logits = e;
        int64_t bad = golden_argmax_mismatches(r->logits + start * V, want, n, V);
        EXPECT(bad == 0, "%s %s: argmax differs at %lld of %lld positions", label, name, (long long)bad, (long long)n);
        argmax_bad += bad;
        free(want);
    }
    printf("  %-22s max rel error: hidden %.2e, logits %.2e; argmax mismatches %lld\n", label, worst_hidden,
           worst_logits, (long long)argmax_bad);
}

static dk_st_checkpoint *open_golden(const char *dir) {
    char *path = dk_path_join(dir, "golden.safetensors");
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    if (!ck) dk_die(&err);
    free(path);
    return ck;
}

/* ---------------------------------------------------------------------------------------------------
 * Every architecture against transformers */

/* Each model twice: its 39 tokens go through the fused small-M linear by default (dk_model.fused_max_m), and
 * through the tiled sgemm with fused_max_m = 0. */
static void test_architectures(void) {
    printf("forward vs transformers (fp32 eager), 4 sequences packed in one batch:\n");
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        char *dir = golden_model_dir(MODELS[i]);
        char *golden_dir = golden_model_dir(golden_of(MODELS[i]));
        dk_model m;
        dk_err err = {0};
        if (!EXPECT(dk_model_open(dir, &m, &err) == 0, "%s: %s", MODELS[i], err.msg)) continue;
        golden_tokens tok;
        golden_tokens_read_model(golden_of(MODELS[i]), &tok);
        EXPECT(tok.n_tokens <= m.fused_max_m, "%s: %lld golden tokens no longer take the fused linear", MODELS[i],
               (long long)tok.n_tokens);
        dk_st_checkpoint *golden = open_golden(golden_dir);
        const int64_t fused_default = m.fused_max_m;
        for (int tiled = 0; tiled < 2; tiled++) {
            m.fused_max_m = tiled ? 0 : fused_default;
            char label[64];
            snprintf(label, sizeof label, "%s, %s linear", MODELS[i], tiled ? "tiled" : "fused");
            full_run r;
            run_full(&m, NULL, &tok, &r);
            compare_run(label, &m, &tok, &r, golden, "", REL_TOL);
            full_run_free(&r);
        }
        dk_st_close(golden);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(dir);
        free(golden_dir);
    }
}

/* The tiny models fit each matrix in one widening tile; big ones (an 8B LM head) are widened a few rows at
 * a time. A 100-float tile (3 rows of 32, 2 of 40) forces that path everywhere, biases (Qwen2, GPT-2) included. */
static void test_small_weight_tiles(void) {
    static const char *const names[] = {"qwen2", "gemma3", "gpt2"};
    static const int64_t tiles[] = {100, 100, 130}; /* GPT-2's widest row: 128 (c_proj, transposed) */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *dir = golden_model_dir(names[i]);
        dk_model m;
        dk_err err = {0};
        CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
        m.weight_tile_floats = tiles[i];
        m.fused_max_m = 0; /* the tiled path even for few tokens */
        golden_tokens tok;
        golden_tokens_read_model(names[i], &tok);
        dk_st_checkpoint *golden = open_golden(dir);
        full_run r;
        run_full(&m, NULL, &tok, &r);
        char label[64];
        snprintf(label, sizeof label, "%s, %lld-float tiles", names[i], (long long)tiles[i]);
        compare_run(label, &m, &tok, &r, golden, "", REL_TOL);
        full_run_free(&r);
        dk_st_close(golden);
        golden_tokens_free(&tok);
        dk_model_close(&m);
        free(dir);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Hook plan: stop early, last-position logits, steering, patching */

static void test_hooks(void) {
    char *dir = golden_model_dir("llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    golden_tokens tok;
    golden_tokens_read_model("llama", &tok);
    dk_st_checkpoint *golden = open_golden(dir);
    const int64_t T = tok.n_tokens, H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    dk_batch b = {tok.ids, T, tok.seq_start, tok.n_seqs, true};

    /* stop after block 0 (no logits): the capture still matches, and blocks 1.. never ran */
    float *cap0 = dk_malloc((size_t)(T * H) * sizeof(float));
    dk_hook_plan early = {.n_capture = 1, .capture_layers = (int64_t[]){0}, .captures = &cap0};
    EXPECT(dk_forward(&m, NULL, &b, &early, NULL, &err) == 0, "%s", err.msg);
    for (int64_t s = 0; s < tok.n_seqs; s++) {
        char name[64];
        snprintf(name, sizeof name, "seq%lld.layer0", (long long)s);
        int64_t n = tok.seq_start[s + 1] - tok.seq_start[s];
        float *want = golden_load(golden, name, n * H);
        double e = golden_rel_error(cap0 + tok.seq_start[s] * H, want, n * H);
        EXPECT(e <= REL_TOL, "stop-early capture %s: %.3g", name, e);
        free(want);
    }

    /* last-position logits: row s is the golden's last row of sequence s */
    float *last = dk_malloc((size_t)(tok.n_seqs * V) * sizeof(float));
    dk_hook_plan lastp = {.logits = DK_LOGITS_LAST, .logits_out = last};
    EXPECT(dk_forward(&m, NULL, &b, &lastp, NULL, &err) == 0, "%s", err.msg);
    for (int64_t s = 0; s < tok.n_seqs; s++) {
        char name[64];
        snprintf(name, sizeof name, "seq%lld.logits", (long long)s);
        int64_t n = tok.seq_start[s + 1] - tok.seq_start[s];
        float *want = golden_load(golden, name, n * V);
        double e = golden_rel_error(last + s * V, want + (n - 1) * V, V);
        EXPECT(e <= REL_TOL, "last-position logits of sequence %lld: %.3g", (long long)s, e);
        free(want);
    }

    /* steering: 4·v added after block 1 (transformers: a forward hook on layers[1]) */
    float *steer_vec = golden_load(golden, "steer.vector", H);
    dk_steer steer = {.layer = 1, .strength = 4.0f, .vector = steer_vec};
    float *cap2 = dk_malloc((size_t)(T * H) * sizeof(float));
    float *logits = dk_malloc((size_t)(T * V) * sizeof(float));
    dk_hook_plan steered = {.n_capture = 1, .capture_layers = (int64_t[]){2}, .captures = &cap2, .n_steer = 1,
                            .steers = &steer, .logits = DK_LOGITS_ALL, .logits_out = logits};
    EXPECT(dk_forward(&m, NULL, &b, &steered, NULL, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (int64_t s = 0; s < tok.n_seqs; s++) {
        char name[64];
        int64_t n = tok.seq_start[s + 1] - tok.seq_start[s];
        snprintf(name, sizeof name, "steer.seq%lld.layer2", (long long)s);
        float *want = golden_load(golden, name, n * H);
        double e = golden_rel_error(cap2 + tok.seq_start[s] * H, want, n * H);
        EXPECT(e <= REL_TOL, "%s: %.3g", name, e);
        worst = e > worst ? e : worst;
        free(want);
        snprintf(name, sizeof name, "steer.seq%lld.logits", (long long)s);
        want = golden_load(golden, name, n * V);
        e = golden_rel_error(logits + tok.seq_start[s] * V, want, n * V);
        EXPECT(e <= REL_TOL, "%s: %.3g", name, e);
        EXPECT(golden_argmax_mismatches(logits + tok.seq_start[s] * V, want, n, V) == 0, "%s: argmax differs", name);
        worst = e > worst ? e : worst;
        free(want);
    }
    /* prompt-only steering is off during decode steps: the batch then equals the unsteered run */
    steer.prompt_only = true;
    b.is_prompt = false;
    float *unsteered = dk_malloc((size_t)(T * V) * sizeof(float));
    dk_hook_plan plain = {.logits = DK_LOGITS_ALL, .logits_out = unsteered};
    EXPECT(dk_forward(&m, NULL, &b, &plain, NULL, &err) == 0, "%s", err.msg);
    EXPECT(dk_forward(&m, NULL, &b, &steered, NULL, &err) == 0, "%s", err.msg);
    EXPECT(memcmp(logits, unsteered, (size_t)(T * V) * sizeof(float)) == 0,
           "prompt-only steering changed a decode-step batch");
    b.is_prompt = true;

    /* patching: the residual after block 0 at position 5 of sequence 3 replaced */
    float *patch_vec = golden_load(golden, "patch.vector", H);
    dk_patch patch = {.layer = 0, .token = tok.seq_start[3] + 5, .vector = patch_vec};
    dk_hook_plan patched = {.n_patch = 1, .patches = &patch, .logits = DK_LOGITS_ALL, .logits_out = logits};
    EXPECT(dk_forward(&m, NULL, &b, &patched, NULL, &err) == 0, "%s", err.msg);
    int64_t n3 = tok.seq_start[4] - tok.seq_start[3];
    float *want = golden_load(golden, "patch.seq3.logits", n3 * V);
    double e = golden_rel_error(logits + tok.seq_start[3] * V, want, n3 * V);
    EXPECT(e <= REL_TOL, "patched logits: %.3g", e);
    EXPECT(golden_argmax_mismatches(logits + tok.seq_start[3] * V, want, n3, V) == 0, "patched argmax differs");
    worst = e > worst ? e : worst;
    printf("  hooks (llama)          max rel error: steering/patching %.2e\n", worst);

    free(want);
    free(patch_vec);
    free(unsteered);
    free(steer_vec);
    free(cap2);
    free(logits);
    free(last);
    free(cap0);
    dk_st_close(golden);
    golden_tokens_free(&tok);
    dk_model_close(&m);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------
 * LoRA: multiplier 1 = peft (unmerged), 2 = W + 2·scale·BA merged in fp32, 0 = the base, bit for bit */

static void test_lora(void) {
    static const char *const adapters[][2] = {
        {"llama_lora", "llama"},   {"qwen3_rslora", "qwen3"},     {"gemma3_lora", "gemma3"},
        {"llama_patterns", "llama"}, {"qwen3_regex", "qwen3"},    {"gpt2_lora", "gpt2"},
        {"qwen25_vl_lora", "qwen25_vl"}};
    printf("LoRA adapters vs peft:\n");
    for (size_t i = 0; i < sizeof adapters / sizeof adapters[0]; i++) {
        char *rel = dk_sprintf("adapters/%s", adapters[i][0]);
        char *adir = engine_fixture(rel);
        char *mdir = golden_model_dir(adapters[i][1]);
        dk_model m;
        dk_lora_adapter a;
        dk_err err = {0};
        CHECK(dk_model_open(mdir, &m, &err) == 0, "%s", err.msg);
        if (!EXPECT(dk_lora_load(adir, &m.cfg, &m.w, &a, &err) == 0, "%s: %s", adapters[i][0], err.msg)) {
            dk_model_close(&m);
            continue;
        }
        golden_tokens tok;
        golden_tokens_read_model(adapters[i][1], &tok);
        dk_st_checkpoint *golden = open_golden(adir);
        full_run r1, r2, r0, base;
        run_full(&m, &a, &tok, &r1);
        char label[64];
        snprintf(label, sizeof label, "%s w=1", adapters[i][0]);
        compare_run(label, &m, &tok, &r1, golden, "", REL_TOL);
        dk_lora_set_multiplier(&a, 2.0f);
        run_full(&m, &a, &tok, &r2);
        snprintf(label, sizeof label, "%s w=2", adapters[i][0]);
        compare_run(label, &m, &tok, &r2, golden, "w2.", W2_TOL);
        dk_lora_set_multiplier(&a, 0.0f);
        run_full(&m, &a, &tok, &r0);
        run_full(&m, NULL, &tok, &base);
        const size_t logit_bytes = (size_t)(tok.n_tokens * m.cfg.vocab_size) * sizeof(float);
        EXPECT(memcmp(r0.logits, base.logits, logit_bytes) == 0, "%s: multiplier 0 differs from the base model",
               adapters[i][0]);
        for (int64_t l = 0; l < r0.n_layers; l++)
            EXPECT(memcmp(r0.layers[l], base.layers[l], (size_t)(tok.n_tokens * m.cfg.hidden_size) * sizeof(float)) == 0,
                   "%s: multiplier 0 differs from the base at layer %lld", adapters[i][0], (long long)l);
        full_run_free(&r0);
        full_run_free(&r1);
        full_run_free(&r2);
        full_run_free(&base);
        dk_st_close(golden);
        golden_tokens_free(&tok);
        dk_lora_free(&a);
        dk_model_close(&m);
        free(mdir);
        free(adir);
        free(rel);
    }
}

/* Per-(layer, module) multipliers: llama_lora adapts q/v/down_proj of layers 0 and 2 only. */
static void test_lora_multiplier_granularity(void) {
    char *adir = engine_fixture("adapters/llama_lora");
    dk_model m;
    dk_lora_adapter a;
    golden_open_lora("llama", adir, &m, &a);
    dk_err err = {0};
    EXPECT(a.n_adapted == 6, "llama_lora adapts %lld (layer, module) pairs, expected 2 layers x 3 modules",
           (long long)a.n_adapted);
    EXPECT(dk_lora_at(&a, 1, DK_MOD_Q)->A == NULL && dk_lora_at(&a, 0, DK_MOD_K)->A == NULL &&
           dk_lora_at(&a, 2, DK_MOD_DOWN)->A != NULL, "layers_to_transform / target_modules not honoured");
    golden_tokens tok;
    golden_tokens_read_model("llama", &tok);
    const size_t resid_bytes = (size_t)(tok.n_tokens * m.cfg.hidden_size) * sizeof(float);
    full_run all, partial;
    run_full(&m, &a, &tok, &all);
    /* a multiplier on a pair the adapter does not touch changes nothing; turning layer 2 off leaves layers
     * 0 and 1 as they were and moves layer 2 */
    for (int k = 0; k < DK_N_MODULES; k++) a.multiplier[1 * DK_N_MODULES + k] = 5.0f;
    for (int k = 0; k < DK_N_MODULES; k++) a.multiplier[2 * DK_N_MODULES + k] = 0.0f;
    run_full(&m, &a, &tok, &partial);
    EXPECT(memcmp(all.layers[0], partial.layers[0], resid_bytes) == 0 &&
           memcmp(all.layers[1], partial.layers[1], resid_bytes) == 0,
           "multipliers of layers 1 and 2 changed the residual before layer 2");
    EXPECT(memcmp(all.layers[2], partial.layers[2], resid_bytes) != 0, "multiplier 0 on layer 2 changed nothing");
    full_run_free(&all);
    full_run_free(&partial);
    golden_tokens_free(&tok);
    /* a load into the same struct gets a new load id (device backends key their uploads by it, not the address) */
    const uint64_t first_id = a.load_id;
    dk_lora_free(&a);
    CHECK(dk_lora_load(adir, &m.cfg, &m.w, &a, &err) == 0, "%s", err.msg);
    EXPECT(first_id != 0 && a.load_id != 0 && a.load_id != first_id, "load ids %llu then %llu: not unique",
           (unsigned long long)first_id, (unsigned long long)a.load_id);
    dk_lora_free(&a);
    dk_model_close(&m);
    free(adir);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    unsigned char *bytes = engine_read_all(from, &n);
    engine_write_all(to, bytes, n);
    free(bytes);
}

/* ---------------------------------------------------------------------------------------------------
 * What adapter_config.json selects (peft's rules), checked against what peft built */

static void test_lora_selection(void) {
    dk_model llama, qwen3, gpt2;
    dk_lora_adapter a;
    dk_err err = {0};
    char *dirs[3] = {golden_model_dir("llama"), golden_model_dir("qwen3"), golden_model_dir("gpt2")};
    CHECK(dk_model_open(dirs[0], &llama, &err) == 0 && dk_model_open(dirs[1], &qwen3, &err) == 0 &&
          dk_model_open(dirs[2], &gpt2, &err) == 0, "%s", err.msg);

    /* llama_lora's tensors (q, v, down_proj of layers 0 and 2) under a config selecting layer 0: the layer-2
     * tensors are ignored, as peft ignores them (the golden is peft loading that folder) */
    char *adir = engine_fixture("adapters/llama_lora_layer0");
    if (EXPECT(dk_lora_load(adir, &llama.cfg, &llama.w, &a, &err) == 0, "llama_lora_layer0: %s", err.msg)) {
        EXPECT(a.n_adapted == 3 && dk_lora_at(&a, 2, DK_MOD_Q)->A == NULL && dk_lora_at(&a, 0, DK_MOD_V)->A != NULL,
               "layers_to_transform [0]: %lld pairs adapted", (long long)a.n_adapted);
        golden_tokens tok;
        golden_tokens_read_model("llama", &tok);
        dk_st_checkpoint *golden = open_golden(adir);
        full_run r;
        run_full(&llama, &a, &tok, &r);
        compare_run("llama_lora_layer0", &llama, &tok, &r, golden, "", REL_TOL);
        full_run_free(&r);
        dk_st_close(golden);
        golden_tokens_free(&tok);
        dk_lora_free(&a);
    }
    free(adir);

    /* rank_pattern / alpha_pattern: the first matching key wins; layers 0 and 1 only; whole modules saved */
    adir = engine_fixture("adapters/llama_patterns");
    if (EXPECT(dk_lora_load(adir, &llama.cfg, &llama.w, &a, &err) == 0, "llama_patterns: %s", err.msg)) {
        const dk_lora_module *q0 = dk_lora_at(&a, 0, DK_MOD_Q), *q1 = dk_lora_at(&a, 1, DK_MOD_Q);
        const dk_lora_module *down = dk_lora_at(&a, 0, DK_MOD_DOWN), *o = dk_lora_at(&a, 1, DK_MOD_O);
        const dk_lora_module *v = dk_lora_at(&a, 1, DK_MOD_V);
        EXPECT(q0->r == 4 && q1->r == 6 && down->r == 2 && o->r == 4 && v->r == 4 && a.r == 6, "ranks %lld %lld %lld",
               (long long)q0->r, (long long)q1->r, (long long)down->r);
        EXPECT(q0->scale == 3.0f / 4 && q1->scale == 3.0f / 6 && o->scale == 12.0f / 4 && down->scale == 8.0f / 2 &&
                   v->scale == 2.0f, "scales %g %g %g %g", q0->scale, q1->scale, o->scale, down->scale);
        EXPECT(dk_lora_at(&a, 2, DK_MOD_Q)->A == NULL && a.n_adapted == 8, "%lld pairs", (long long)a.n_adapted);
        EXPECT(a.embed != NULL && a.lm_head != NULL, "modules_to_save not loaded");
        dk_lora_free(&a);
    }
    free(adir);

    /* target_modules as a regex, minus exclude_modules */
    adir = engine_fixture("adapters/qwen3_regex");
    if (EXPECT(dk_lora_load(adir, &qwen3.cfg, &qwen3.w, &a, &err) == 0, "qwen3_regex: %s", err.msg)) {
        EXPECT(dk_lora_at(&a, 2, DK_MOD_UP)->A == NULL && dk_lora_at(&a, 1, DK_MOD_UP)->A != NULL &&
                   dk_lora_at(&a, 2, DK_MOD_K)->A != NULL && dk_lora_at(&a, 0, DK_MOD_Q)->A == NULL &&
                   a.n_adapted == 8, "regex selection: %lld pairs", (long long)a.n_adapted);
        dk_lora_free(&a);
    }
    free(adir);

    /* GPT-2: c_attn feeds q, k and v; "c_proj" names both attn.c_proj and mlp.c_proj */
    adir = engine_fixture("adapters/gpt2_lora");
    if (EXPECT(dk_lora_load(adir, &gpt2.cfg, &gpt2.w, &a, &err) == 0, "gpt2_lora: %s", err.msg)) {
        EXPECT(a.n_adapted == 3 * 5 && dk_lora_at(&a, 0, DK_MOD_K)->out_features == 32 &&
                   dk_lora_at(&a, 1, DK_MOD_DOWN)->A != NULL && dk_lora_at(&a, 1, DK_MOD_UP)->A == NULL,
               "gpt2 slots: %lld pairs", (long long)a.n_adapted);
        dk_lora_free(&a);
    }
    free(adir);
    dk_model_close(&llama);
    dk_model_close(&qwen3);
    dk_model_close(&gpt2);
    for (int i = 0; i < 3; i++) free(dirs[i]);
}

/* A copy of fixture adapter `src` whose adapter_config.json has the fields of the JSON object `changes` set. */
static char *adapter_variant(const char *src, const char *name, const char *changes) {
    char *rel = dk_sprintf("adapters/%s", src), *from = engine_fixture(rel);
    char *dir = dk_path_join(engine_scratch_dir(), name);
    dk_err err = {0};
    CHECK(dk_mkdirs(dir, &err) == 0, "%s", err.msg);
    char *a = dk_path_join(from, "adapter_model.safetensors"), *b = dk_path_join(dir, "adapter_model.safetensors");
    copy_file(a, b);
    free(a);
    free(b);
    a = dk_path_join(from, "adapter_config.json");
    size_t n;
    char *text = (char *)engine_read_all(a, &n);
    cJSON *cfg = cJSON_ParseWithLength(text, n), *delta = cJSON_Parse(changes);
    CHECK(cfg && delta, "bad test JSON %s", changes);
    for (cJSON *item = delta->child; item; item = item->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, item->string);
        cJSON_AddItemToObject(cfg, item->string, cJSON_Duplicate(item, 1));
    }
    char *out = cJSON_Print(cfg);
    b = dk_path_join(dir, "adapter_config.json");
    engine_write_all(b, out, strlen(out));
    free(out);
    cJSON_Delete(cfg);
    cJSON_Delete(delta);
    free(text);
    free(a);
    free(b);
    free(from);
    free(rel);
    return dir;
}

/* Adapter configs diffkit must refuse, each with a message naming what is wrong. */
static void test_lora_refusals(void) {
    static const struct {
        const char *src, *name, *changes, *expect1, *expect2;
    } cases[] = {
        {"llama_lora", "no_such_module", "{\"target_modules\": [\"q_proj\", \"qkv_proj\"]}", "'qkv_proj'",
         "q_proj, k_proj"},
        {"llama_lora", "no_such_layer", "{\"layers_to_transform\": [0, 7]}", "layer 7", "has 3 layers"},
        {"llama_lora", "pattern_nothing", "{\"layers_pattern\": \"blocks\"}", "selects no module", "layers_pattern 'blocks'"},
        {"qwen3_regex", "regex_nothing", "{\"target_modules\": \".*\\\\.nothing\"}", "selects no module", ".nothing"},
        {"qwen3_regex", "bad_regex", "{\"target_modules\": \"(q_proj\"}", "not a valid regular expression", "(q_proj"},
        {"llama_lora", "dora", "{\"use_dora\": true}", "\"use_dora\"", "DoRA"},
        {"llama_lora", "lora_bias", "{\"lora_bias\": true}", "\"lora_bias\"", "bias on lora_B"},
        {"llama_lora", "qalora", "{\"use_qalora\": true}", "\"use_qalora\"", "QA-LoRA"},
        {"llama_lora", "target_parameters", "{\"target_parameters\": [\"experts.weight\"]}", "\"target_parameters\"",
         "parameters"},
        {"llama_lora", "pissa", "{\"init_lora_weights\": \"pissa\"}", "\"init_lora_weights\"", "PiSSA"},
        {"llama_lora", "unknown_field", "{\"frobnicate_layers\": 3}", "\"frobnicate_layers\"", "does not know"},
        {"llama_patterns", "save_score", "{\"modules_to_save\": [\"score\"]}", "'score'", "lm_head and embed_tokens"},
        {"llama_lora", "no_targets", "{\"target_modules\": null}", "\"target_modules\" is missing", NULL},
    };
    dk_model m;
    dk_err err = {0};
    char *llama = golden_model_dir("llama"), *qwen3 = golden_model_dir("qwen3");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool on_qwen3 = strcmp(cases[i].src, "qwen3_regex") == 0;
        CHECK(dk_model_open(on_qwen3 ? qwen3 : llama, &m, &err) == 0, "%s", err.msg);
        char *dir = adapter_variant(cases[i].src, cases[i].name, cases[i].changes);
        dk_lora_adapter a;
        dk_err_clear(&err);
        EXPECT(dk_lora_load(dir, &m.cfg, &m.w, &a, &err) != 0, "%s: accepted", cases[i].name);
        EXPECT(err.code == DK_EXIT_USAGE, "%s: exit code %d", cases[i].name, err.code);
        EXPECT_ERR_HAS(&err, cases[i].expect1, cases[i].expect2 ? cases[i].expect2 : cases[i].expect1);
        dk_model_close(&m);
        free(dir);
    }
    free(llama);
    free(qwen3);
}

/* ---------------------------------------------------------------------------------------------------
 * Bad input: clear errors, never a crash */

/* A scratch copy of the llama fixture whose config.json and model.safetensors can then be damaged. */
static char *scratch_model(const char *name) {
    char *src = golden_model_dir("llama");
    char *dst = dk_path_join(engine_scratch_dir(), name);
    dk_err err = {0};
    CHECK(dk_mkdirs(dst, &err) == 0, "%s", err.msg);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *a = dk_path_join(src, files[i]), *b = dk_path_join(dst, files[i]);
        copy_file(a, b);
        free(a);
        free(b);
    }
    free(src);
    return dst;
}

/* Replaces the first occurrence of `from` by `to` (same length) in a file. */
static void patch_file(const char *dir, const char *file, const char *from, const char *to) {
    char *path = dk_path_join(dir, file);
    size_t n;
    unsigned char *bytes = engine_read_all(path, &n);
    size_t len = strlen(from);
    CHECK(strlen(to) == len, "patch_file: lengths differ");
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(bytes + i, from, len) == 0) {
            memcpy(bytes + i, to, len);
            break;
        }
    engine_write_all(path, bytes, n);
    free(bytes);
    free(path);
}

/* Replaces every occurrence of `from` by `to` (same length) in a file. */
static void patch_file_all(const char *dir, const char *file, const char *from, const char *to) {
    char *path = dk_path_join(dir, file);
    size_t n, len = strlen(from);
    unsigned char *bytes = engine_read_all(path, &n);
    CHECK(strlen(to) == len, "patch_file_all: lengths differ");
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(bytes + i, from, len) == 0) memcpy(bytes + i, to, len);
    engine_write_all(path, bytes, n);
    free(bytes);
    free(path);
}

/* Hub originals of Gemma3ForConditionalGeneration name the language model language_model.model.*, what
 * transformers >= 4.52 re-saves as model.language_model.* (same length: the header can be patched). */
static void test_gemma3_hub_prefix(void) {
    char *src = golden_model_dir("gemma3_mm");
    char *dst = dk_path_join(engine_scratch_dir(), "gemma3_mm_hub");
    dk_err err = {0};
    CHECK(dk_mkdirs(dst, &err) == 0, "%s", err.msg);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *a = dk_path_join(src, files[i]), *b = dk_path_join(dst, files[i]);
        copy_file(a, b);
        free(a);
        free(b);
    }
    patch_file_all(dst, "model.safetensors", "\"model.language_model.", "\"language_model.model.");
    dk_model m;
    if (EXPECT(dk_model_open(dst, &m, &err) == 0, "%s", err.msg)) {
        EXPECT(strcmp(m.w.prefix, "language_model.model.") == 0, "prefix %s", m.w.prefix);
        golden_tokens tok;
        golden_tokens_read_model("gemma3_mm", &tok);
        dk_st_checkpoint *golden = open_golden(src);
        full_run r;
        run_full(&m, NULL, &tok, &r);
        compare_run("gemma3_mm (hub names)", &m, &tok, &r, golden, "", REL_TOL);
        full_run_free(&r);
        dk_st_close(golden);
        golden_tokens_free(&tok);
        dk_model_close(&m);
    }
    free(dst);
    free(src);
}

static void test_organism_shapes(void) {
    dk_model base, same, other;
    dk_err err = {0};
    char *a = golden_model_dir("llama"), *b = golden_model_dir("llama_f32"), *c = golden_model_dir("mistral");
    CHECK(dk_model_open(a, &base, &err) == 0 && dk_model_open(b, &same, &err) == 0 &&
          dk_model_open(c, &other, &err) == 0, "%s", err.msg);
    EXPECT(dk_model_weights_check_same_shapes(&base.w, &same.w, &err) == 0, "bf16 vs f32 copy: %s", err.msg);
    EXPECT(dk_model_weights_check_same_shapes(&base.w, &other.w, &err) != 0, "llama vs mistral shapes accepted");
    EXPECT_ERR_HAS(&err, "model.layers.0.self_attn.q_proj.weight", "[48, 32]", "[32, 32]");
    dk_model_close(&base);
    dk_model_close(&same);
    dk_model_close(&other);
    free(a);
    free(b);
    free(c);
}

static void test_errors(void) {
    dk_model m;
    dk_err err = {0};

    char *dir = scratch_model("missing_tensor");
    patch_file(dir, "model.safetensors", "\"model.norm.weight\"", "\"model.nrm_.weight\"");
    EXPECT(dk_model_open(dir, &m, &err) != 0, "a missing tensor was accepted");
    EXPECT_ERR_HAS(&err, "model.norm.weight", "model.nrm_.weight");
    free(dir);

    dk_err_clear(&err);
    dir = scratch_model("wrong_shape");
    patch_file(dir, "config.json", "\"intermediate_size\": 40", "\"intermediate_size\": 48");
    EXPECT(dk_model_open(dir, &m, &err) != 0, "a wrong shape was accepted");
    EXPECT_ERR_HAS(&err, "model.layers.0.mlp.gate_proj.weight", "[48, 32]", "[40, 32]");
    free(dir);

    dk_err_clear(&err);
    dir = scratch_model("unsupported");
    patch_file(dir, "config.json", "\"LlamaForCausalLM\"", "\"GPT2LMHeadModelX\"");
    EXPECT(dk_model_open(dir, &m, &err) != 0, "an unsupported architecture was accepted");
    EXPECT_ERR_HAS(&err, "GPT2LMHeadModelX", "LlamaForCausalLM", "Gemma3ForConditionalGeneration");
    free(dir);

    dk_err_clear(&err);
    dir = scratch_model("truncated");
    char *st = dk_path_join(dir, "model.safetensors");
    size_t n;
    unsigned char *bytes = engine_read_all(st, &n);
    engine_write_all(st, bytes, n - 100);
    free(bytes);
    EXPECT(dk_model_open(dir, &m, &err) != 0, "a truncated checkpoint was accepted");
    EXPECT_ERR_HAS(&err, "model.safetensors");
    free(st);
    free(dir);

    /* token ids, layers, an adapter for another base */
    dk_err_clear(&err);
    char *llama = golden_model_dir("llama");
    CHECK(dk_model_open(llama, &m, &err) == 0, "%s", err.msg);
    int64_t ids[] = {1, 5, 96}, starts[] = {0, 3};
    dk_batch b = {ids, 3, starts, 1, true};
    float logits[3 * 96];
    dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = logits};
    EXPECT(dk_forward(&m, NULL, &b, &plan, NULL, &err) != 0, "token id 96 >= vocab 96 accepted");
    EXPECT_ERR_HAS(&err, "token id 96", "vocab_size 96");
    dk_err_clear(&err);
    ids[2] = 7;
    float cap[3 * 32], *caps = cap;
    dk_hook_plan bad_layer = {.n_capture = 1, .capture_layers = (int64_t[]){3}, .captures = &caps};
    EXPECT(dk_forward(&m, NULL, &b, &bad_layer, NULL, &err) != 0, "capture at layer 3 of 3 accepted");
    EXPECT_ERR_HAS(&err, "layer 3", "0..2");

    dk_err_clear(&err);
    char *qwen3_adapter = engine_fixture("adapters/qwen3_rslora");
    dk_lora_adapter a;
    EXPECT(dk_lora_load(qwen3_adapter, &m.cfg, &m.w, &a, &err) != 0, "a qwen3 adapter was accepted on llama");
    EXPECT_ERR_HAS(&err, "does not fit the base model", "expected");
    free(qwen3_adapter);
    dk_model_close(&m);
    free(llama);

    /* adapter settings we cannot honour */
    dk_err_clear(&err);
    char *adir = dk_path_join(engine_scratch_dir(), "dora");
    CHECK(dk_mkdirs(adir, &err) == 0, "%s", err.msg);
    char *src = engine_fixture("adapters/llama_lora/adapter_config.json");
    char *dst = dk_path_join(adir, "adapter_config.json");
    copy_file(src, dst);
    patch_file(adir, "adapter_config.json", "\"use_dora\": false", "\"use_dora\": true ");
    free(src);
    src = engine_fixture("adapters/llama_lora/adapter_model.safetensors");
    char *dst2 = dk_path_join(adir, "adapter_model.safetensors");
    copy_file(src, dst2);
    CHECK(dk_model_open(llama = golden_model_dir("llama"), &m, &err) == 0, "%s", err.msg);
    EXPECT(dk_lora_load(adir, &m.cfg, &m.w, &a, &err) != 0, "a DoRA adapter was accepted");
    EXPECT_ERR_HAS(&err, "use_dora", "DoRA");
    dk_model_close(&m);
    free(llama);
    free(src);
    free(dst);
    free(dst2);
    free(adir);
    engine_scratch_cleanup();
}

int main(void) {
    test_architectures();
    test_small_weight_tiles();
    test_hooks();
    test_lora();
    test_lora_multiplier_granularity();
    test_lora_selection();
    test_lora_refusals();
    test_gemma3_hub_prefix();
    test_organism_shapes();
    test_errors();
    return dk_test_finish("test_forward");
}
