/* test_generate.c — KV-cache generation against transformers' greedy generate() (generate.json of every
 * golden model, tools/make_model_goldens.py): each prompt alone, then all prompts of a model batched
 * together (different lengths, so finished and running sequences mix), must give identical token ids.
 * Then sampling: a fixed seed reproduces, top_k = 1 is greedy, and a token outside top-k/top-p never comes
 * out. Decode steps through the cache are also checked against a full forward of the whole sequence, and
 * steering during generation (all tokens / prompt only) against transformers with a forward hook; then the
 * hooks and modes of generation (generate_hooks.json): linear-decay steering, per-sequence strengths,
 * patchscope, logit-difference amplification; per-sequence sampling settings (batched == alone); greedy
 * generation on the demo pair (demo_generate.json). */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"
#include "model/generate.h"
#include "model/lora.h"

#include <cjson/cJSON.h>
#include <math.h>

static const char *const MODELS[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_mm", "gpt2",
                                     "qwen25_vl"};
static const int64_t EOS = 2;

static void read_ids(const cJSON *arr, int64_t **ids, int64_t *n, size_t *cap) {
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if ((size_t)*n == *cap) *ids = dk_realloc(*ids, (*cap *= 2) * sizeof **ids);
        (*ids)[(*n)++] = (int64_t)v->valuedouble;
    }
}

/* The parsed JSON file (the caller deletes it); ends the test when it does not parse. */
static cJSON *read_json(const char *path) {
    size_t size;
    char *text = (char *)engine_read_all(path, &size);
    cJSON *root = cJSON_Parse(text);
    CHECK(root, "%s: not JSON", path);
    free(text);
    return root;
}

static bool same_ids(const int64_t *a, int64_t na, const int64_t *b, int64_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static dk_generate_options greedy(int64_t max_new) {
    static const int64_t stop[] = {EOS};
    return (dk_generate_options){.max_new_tokens = max_new, .stop_ids = stop, .n_stop = 1};
}

static void test_greedy_matches_transformers(void) {
    printf("greedy generation vs transformers generate(do_sample=False):\n");
    for (size_t k = 0; k < sizeof MODELS / sizeof MODELS[0]; k++) {
        char *rel = dk_sprintf("models/%s", MODELS[k]);
        char *dir = engine_fixture(rel);
        dk_model m;
        dk_err err = {0};
        CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
        golden_generation g;
        golden_generation_read(MODELS[k], &g);
        const dk_generate_options opt = greedy(10); /* the goldens' max_new_tokens */
        int matched = 0;
        for (int i = 0; i < g.n; i++) { /* one prompt at a time */
            int64_t starts[2] = {0, g.prompt_start[i + 1] - g.prompt_start[i]};
            dk_batch b = {g.prompt_ids + g.prompt_start[i], starts[1], starts, 1, true};
            dk_generation out;
            EXPECT(dk_generate(&m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
            const int64_t *want = g.output_ids + g.output_start[i];
            int64_t n_want = g.output_start[i + 1] - g.output_start[i];
            matched += EXPECT(same_ids(out.ids[0], out.n_ids[0], want, n_want),
                              "%s prompt %d: generated %lld tokens that differ from transformers' %lld", MODELS[k], i,
                              (long long)out.n_ids[0], (long long)n_want);
            dk_generation_free(&out);
        }
        /* all prompts in one batch */
        dk_batch all = {g.prompt_ids, g.prompt_start[g.n], g.prompt_start, g.n, true};
        dk_generation out;
        EXPECT(dk_generate(&m, NULL, &all, &opt, &out, &err) == 0, "%s", err.msg);
        for (int i = 0; i < g.n; i++)
            matched += EXPECT(same_ids(out.ids[i], out.n_ids[i], g.output_ids + g.output_start[i],
                                       g.output_start[i + 1] - g.output_start[i]),
                              "%s prompt %d in a batch: differs from transformers", MODELS[k], i);
        dk_generation_free(&out);
        /* a second stop token, the first one prompt 0 generates: prompt 0 ends at once while the others run on
         * (finished and running sequences mixed in one batch); each output is the golden cut after its first
         * stop token */
        const int64_t stops[] = {EOS, g.output_ids[0]};
        dk_generate_options early = opt;
        early.stop_ids = stops;
        early.n_stop = 2;
        EXPECT(dk_generate(&m, NULL, &all, &early, &out, &err) == 0, "%s", err.msg);
        for (int i = 0; i < g.n; i++) {
            const int64_t *want = g.output_ids + g.output_start[i];
            int64_t n_want = g.output_start[i + 1] - g.output_start[i];
            for (int64_t j = 0; j < n_want; j++)
                if (want[j] == stops[0] || want[j] == stops[1]) {
                    n_want = j + 1;
                    break;
                }
            matched += EXPECT(same_ids(out.ids[i], out.n_ids[i], want, n_want),
                              "%s prompt %d with stop id %lld: %lld tokens, expected %lld", MODELS[k], i,
                              (long long)stops[1], (long long)out.n_ids[i], (long long)n_want);
        }
        EXPECT(out.n_ids[0] == 1, "%s: prompt 0 did not stop at its first token", MODELS[k]);
        printf("  %-10s %d of %d generations identical\n", MODELS[k], matched, 3 * g.n);
        dk_generation_free(&out);
        golden_generation_free(&g);
        dk_model_close(&m);
        free(dir);
        free(rel);
    }
}

/* Steering during generation (4·v after block 1), on every token and during the prompt only, against
 * transformers generate() with a forward hook doing the same (generate_steer.json). */
static void test_steered_generation(void) {
    char *dir = engine_fixture("models/llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    char *golden_path = dk_path_join(dir, "golden.safetensors");
    dk_st_checkpoint *golden = dk_st_open(golden_path, &err);
    CHECK(golden, "%s", err.msg);
    float *vec = golden_load(golden, "steer.vector", m.cfg.hidden_size);
    char *json_path = dk_path_join(dir, "generate_steer.json");
    cJSON *root = read_json(json_path);
    int same = 0, total = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        int64_t *prompt = NULL, *want = NULL, np = 0, nw = 0;
        size_t cp = 16, cw = 16;
        prompt = dk_malloc(cp * sizeof *prompt);
        want = dk_malloc(cw * sizeof *want);
        read_ids(cJSON_GetObjectItemCaseSensitive(item, "prompt"), &prompt, &np, &cp);
        read_ids(cJSON_GetObjectItemCaseSensitive(item, "output"), &want, &nw, &cw);
        dk_steer steer = {.layer = 1, .strength = 4.0f, .vector = vec,
                          .prompt_only = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "prompt_only"))};
        dk_generate_options opt = greedy(10);
        opt.steers = &steer;
        opt.n_steer = 1;
        int64_t starts[2] = {0, np};
        dk_batch b = {prompt, np, starts, 1, true};
        dk_generation out;
        EXPECT(dk_generate(&m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
        same += EXPECT(same_ids(out.ids[0], out.n_ids[0], want, nw), "steered generation (prompt_only %d) differs",
                       steer.prompt_only);
        total++;
        dk_generation_free(&out);
        free(prompt);
        free(want);
    }
    EXPECT(total == 4, "generate_steer.json holds %d cases, expected 4", total);
    printf("  steered generation (llama, all tokens / prompt only): %d of %d identical\n", same, total);
    cJSON_Delete(root);
    free(json_path);
    free(vec);
    dk_st_close(golden);
    free(golden_path);
    dk_model_close(&m);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------
 * Hooks and modes of generation against generate_hooks.json (tools/make_model_goldens.py,
 * generation_hook_goldens): linear-decay steering, per-sequence strengths, patchscope, logit amplification. */

/* A JSON array of ids as a malloc'd array (n set). */
static int64_t *ids_of(const cJSON *arr, int64_t *n) {
    *n = cJSON_GetArraySize(arr);
    int64_t *ids = dk_malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
    for (int64_t i = 0; i < *n; i++) ids[i] = (int64_t)cJSON_GetArrayItem(arr, (int)i)->valuedouble;
    return ids;
}

/* Prompts (JSON arrays of ids) packed into one batch: ids and n + 1 offsets. */
typedef struct packed_prompts {
    int64_t *ids, *starts, n;
} packed_prompts;

static packed_prompts pack_prompts(const cJSON *const *prompts, int64_t n) {
    packed_prompts p = {.starts = dk_malloc((size_t)(n + 1) * sizeof(int64_t)), .n = n};
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += cJSON_GetArraySize(prompts[i]);
    p.ids = dk_malloc((size_t)total * sizeof(int64_t));
    p.starts[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t len;
        int64_t *ids = ids_of(prompts[i], &len);
        memcpy(p.ids + p.starts[i], ids, (size_t)len * sizeof *ids);
        p.starts[i + 1] = p.starts[i] + len;
        free(ids);
    }
    return p;
}

static dk_batch batch_of(const packed_prompts *p) {
    return (dk_batch){p->ids, p->starts[p->n], p->starts, p->n, true};
}

static void free_packed(packed_prompts *p) {
    free(p->ids);
    free(p->starts);
}

static bool output_is(const dk_generation *g, int64_t s, const cJSON *want_arr) {
    int64_t n;
    int64_t *want = ids_of(want_arr, &n);
    bool same = same_ids(g->ids[s], g->n_ids[s], want, n);
    free(want);
    return same;
}

typedef struct hooks_fixture {
    dk_model m;
    cJSON *root;
    float *steer, *patch; /* (H) golden.safetensors' steer.vector, patch.vector */
} hooks_fixture;

static void hooks_open(hooks_fixture *f) {
    char *dir = engine_fixture("models/llama");
    dk_err err = {0};
    CHECK(dk_model_open(dir, &f->m, &err) == 0, "%s", err.msg);
    char *golden_path = dk_path_join(dir, "golden.safetensors");
    dk_st_checkpoint *golden = dk_st_open(golden_path, &err);
    CHECK(golden, "%s", err.msg);
    f->steer = golden_load(golden, "steer.vector", f->m.cfg.hidden_size);
    f->patch = golden_load(golden, "patch.vector", f->m.cfg.hidden_size);
    dk_st_close(golden);
    char *json_path = dk_path_join(dir, "generate_hooks.json");
    f->root = read_json(json_path);
    CHECK(cJSON_IsObject(f->root), "%s: not a JSON object", json_path);
    free(json_path);
    free(golden_path);
    free(dir);
}

static void hooks_close(hooks_fixture *f) {
    cJSON_Delete(f->root);
    free(f->steer);
    free(f->patch);
    dk_model_close(&f->m);
}

static int64_t json_int(const cJSON *o, const char *key) {
    return (int64_t)cJSON_GetObjectItemCaseSensitive(o, key)->valuedouble;
}

/* The seed's linear_decay mode (steer.vector after block 1, N = decay_steps, three strengths x two prompts):
 * each case alone, then all six in ONE batch carrying the strengths per sequence (seq_strength), must equal
 * transformers with a hook doing the same. */
static void test_linear_decay_and_seq_strengths(void) {
    hooks_fixture f;
    hooks_open(&f);
    dk_err err = {0};
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(f.root, "linear_decay");
    const int64_t n = cJSON_GetArraySize(cases), N = json_int(f.root, "decay_steps");
    const int64_t layer = json_int(f.root, "steer_layer");
    const cJSON **prompts = dk_malloc((size_t)n * sizeof *prompts);
    float *strengths = dk_malloc((size_t)n * sizeof *strengths); /* (n) one per sequence of the batch */
    int same = 0;
    for (int64_t i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cases, (int)i);
        prompts[i] = cJSON_GetObjectItemCaseSensitive(c, "prompt");
        strengths[i] = (float)cJSON_GetObjectItemCaseSensitive(c, "strength")->valuedouble;
        packed_prompts one = pack_prompts(&prompts[i], 1);
        dk_batch b = batch_of(&one);
        dk_steer steer = {.layer = layer, .strength = strengths[i], .vector = f.steer, .linear_decay_steps = N};
        dk_generate_options opt = greedy(10);
        opt.steers = &steer;
        opt.n_steer = 1;
        dk_generation out;
        EXPECT(dk_generate(&f.m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
        same += EXPECT(output_is(&out, 0, cJSON_GetObjectItemCaseSensitive(c, "output")),
                       "linear decay, strength %g, alone: differs from transformers", strengths[i]);
        dk_generation_free(&out);
        free_packed(&one);
    }
    packed_prompts all = pack_prompts(prompts, n);
    dk_batch b = batch_of(&all);
    dk_steer steer = {.layer = layer, .strength = 1.0f, .vector = f.steer, .linear_decay_steps = N,
                      .seq_strength = strengths};
    dk_generate_options opt = greedy(10);
    opt.steers = &steer;
    opt.n_steer = 1;
    dk_generation out;
    EXPECT(dk_generate(&f.m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
    for (int64_t i = 0; i < n; i++)
        same += EXPECT(output_is(&out, i, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cases, (int)i), "output")),
                       "linear decay, strength %g as seq_strength in a batch of %lld: differs from transformers",
                       strengths[i], (long long)n);
    printf("  linear-decay steering (llama, N = %lld, 3 strengths x 2 prompts): %d of %lld identical (alone, then "
           "one batch with per-sequence strengths)\n", (long long)N, same, (long long)(2 * n));
    dk_generation_free(&out);
    free_packed(&all);
    free(prompts);
    free(strengths);
    hooks_close(&f);
}

/* Per-sequence strengths with all-token steering, mixed with unsteered sequences in one batch: strength 4 via
 * seq_strength 1 must give generate_steer.json's outputs, seq_strength 0 the plain greedy generate.json. */
static void test_seq_strength_mixed_batch(void) {
    hooks_fixture f;
    hooks_open(&f);
    dk_err err = {0};
    golden_generation plain;
    golden_generation_read("llama", &plain);
    char *json_path = engine_fixture("models/llama/generate_steer.json");
    cJSON *steered = read_json(json_path); /* [{prompt_only, prompt, output}]: the all-token cases first */
    /* batch: prompt 0 steered, prompt 0 plain, prompt 1 plain, prompt 1 steered (strength 4 = 2 · 2) */
    const cJSON *prompts[4];
    const float mult[4] = {2.0f, 0.0f, 0.0f, 2.0f};
    for (int i = 0; i < 4; i++) prompts[i] = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(steered, i < 2 ? 0 : 1), "prompt");
    packed_prompts all = pack_prompts(prompts, 4);
    dk_batch b = batch_of(&all);
    dk_steer steer = {.layer = 1, .strength = 2.0f, .vector = f.steer, .seq_strength = mult};
    dk_generate_options opt = greedy(10);
    opt.steers = &steer;
    opt.n_steer = 1;
    dk_generation out;
    EXPECT(dk_generate(&f.m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
    int same = 0;
    for (int i = 0; i < 4; i++) {
        const int p = i < 2 ? 0 : 1;
        if (mult[i] != 0.0f)
            same += EXPECT(output_is(&out, i, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(steered, p), "output")),
                           "sequence %d (steered via seq_strength): differs from transformers", i);
        else
            same += EXPECT(same_ids(out.ids[i], out.n_ids[i], plain.output_ids + plain.output_start[p],
                                    plain.output_start[p + 1] - plain.output_start[p]),
                           "sequence %d (seq_strength 0): differs from unsteered transformers", i);
    }
    printf("  per-sequence strengths, steered and unsteered in one batch: %d of 4 identical\n", same);
    dk_generation_free(&out);
    free_packed(&all);
    cJSON_Delete(steered);
    free(json_path);
    golden_generation_free(&plain);
    hooks_close(&f);
}

/* Patchscope during generation: the residual after block patch_layer replaced by patch.vector at each prompt's
 * last token in the prefill. The next-token distribution (the prefill's hook plan, both prompts packed) within
 * 1e-4 of transformers, and the greedy continuations (one batch) equal. */
static void test_patch_generation(void) {
    hooks_fixture f;
    hooks_open(&f);
    dk_err err = {0};
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(f.root, "patch");
    const int64_t n = cJSON_GetArraySize(cases), V = f.m.cfg.vocab_size;
    const int64_t layer = json_int(f.root, "patch_layer");
    const cJSON *prompts[8] = {0};
    CHECK(n <= 8, "too many patch cases");
    for (int64_t i = 0; i < n; i++)
        prompts[i] = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cases, (int)i), "prompt");
    packed_prompts all = pack_prompts(prompts, n);
    dk_batch b = batch_of(&all);
    dk_patch patches[8];
    for (int64_t i = 0; i < n; i++) patches[i] = (dk_patch){layer, all.starts[i + 1] - 1, f.patch};
    float *logits = dk_malloc((size_t)(n * V) * sizeof(float)); /* (n, V) */
    dk_hook_plan plan = {.n_patch = n, .patches = patches, .logits = DK_LOGITS_LAST, .logits_out = logits};
    CHECK(dk_forward(&f.m, NULL, &b, &plan, NULL, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * V;
        float top = row[0];
        for (int64_t v = 1; v < V; v++) top = row[v] > top ? row[v] : top;
        double total = 0;
        for (int64_t v = 0; v < V; v++) total += exp((double)row[v] - top);
        const cJSON *probs = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cases, (int)i), "probs");
        EXPECT(cJSON_GetArraySize(probs) == V, "probs of case %lld: %d entries, expected %lld", (long long)i,
               cJSON_GetArraySize(probs), (long long)V);
        for (int64_t v = 0; v < V; v++) {
            double d = fabs(exp((double)row[v] - top) / total - cJSON_GetArrayItem(probs, (int)v)->valuedouble);
            worst = d > worst ? d : worst;
        }
    }
    EXPECT(worst <= 1e-4, "patchscope next-token distribution: max |p - p_ref| = %.3g > 1e-4", worst);
    dk_generate_options opt = greedy(10);
    opt.patches = patches;
    opt.n_patch = n;
    dk_generation out;
    EXPECT(dk_generate(&f.m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
    int same = 0;
    for (int64_t i = 0; i < n; i++)
        same += EXPECT(output_is(&out, i, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cases, (int)i), "output")),
                       "patched generation %lld differs from transformers", (long long)i);
    printf("  patchscope in generation (llama, layer %lld, last prompt token): max |p - p_ref| %.2e, %d of %lld "
           "continuations identical\n", (long long)layer, worst, same, (long long)n);
    dk_generation_free(&out);
    free(logits);
    free_packed(&all);
    hooks_close(&f);
}

/* Logit-difference amplification: organism llama_lora against the base (or llama_patterns), tokens the argmax
 * of ft + alpha·(ft − ref), each prompt alone and both prompts of a case in one batch, against transformers +
 * peft stepping both models. */
static void test_logit_amplification(void) {
    hooks_fixture f;
    hooks_open(&f);
    dk_err err = {0};
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(f.root, "logit_amp");
    int same = 0, total = 0;
    for (int i = 0; i + 1 < cJSON_GetArraySize(cases); i += 2) { /* cases come in pairs: one setting, two prompts */
        const cJSON *c[2] = {cJSON_GetArrayItem(cases, i), cJSON_GetArrayItem(cases, i + 1)};
        const char *organism = cJSON_GetObjectItemCaseSensitive(c[0], "adapter")->valuestring;
        const cJSON *ref_name = cJSON_GetObjectItemCaseSensitive(c[0], "reference");
        const float alpha = (float)cJSON_GetObjectItemCaseSensitive(c[0], "alpha")->valuedouble;
        dk_lora_adapter ft, ref;
        char *rel = dk_sprintf("adapters/%s", organism), *adir = engine_fixture(rel);
        CHECK(dk_lora_load(adir, &f.m.cfg, &f.m.w, &ft, &err) == 0, "%s", err.msg);
        free(rel), free(adir);
        if (cJSON_IsString(ref_name)) {
            rel = dk_sprintf("adapters/%s", ref_name->valuestring), adir = engine_fixture(rel);
            CHECK(dk_lora_load(adir, &f.m.cfg, &f.m.w, &ref, &err) == 0, "%s", err.msg);
            free(rel), free(adir);
        }
        dk_generate_options opt = greedy(10);
        opt.logit_amp = true;
        opt.logit_amp_alpha = alpha;
        opt.logit_amp_reference = cJSON_IsString(ref_name) ? &ref : NULL;
        const cJSON *prompts[2] = {cJSON_GetObjectItemCaseSensitive(c[0], "prompt"),
                                   cJSON_GetObjectItemCaseSensitive(c[1], "prompt")};
        for (int k = 0; k < 3; k++) { /* k = 0, 1: each prompt alone; 2: both in one batch */
            packed_prompts p = pack_prompts(k < 2 ? &prompts[k] : prompts, k < 2 ? 1 : 2);
            dk_batch b = batch_of(&p);
            dk_generation out;
            EXPECT(dk_generate(&f.m, &ft, &b, &opt, &out, &err) == 0, "%s", err.msg);
            for (int64_t s = 0; s < p.n; s++) {
                const cJSON *want = cJSON_GetObjectItemCaseSensitive(c[k < 2 ? k : s], "output");
                same += EXPECT(output_is(&out, s, want), "logit amplification (%s vs %s, alpha %g), %s, prompt %lld: "
                               "differs from transformers + peft", organism,
                               cJSON_IsString(ref_name) ? ref_name->valuestring : "base", alpha,
                               k < 2 ? "alone" : "batched", (long long)(k < 2 ? k : s));
                total++;
            }
            dk_generation_free(&out);
            free_packed(&p);
        }
        dk_lora_free(&ft);
        if (cJSON_IsString(ref_name)) dk_lora_free(&ref);
    }
    EXPECT(total == 12, "generate_hooks.json: %d logit-amplification generations, expected 12", total);
    printf("  logit-difference amplification (llama_lora vs base / llama_patterns): %d of %d identical\n", same,
           total);
    hooks_close(&f);
}

/* Sampling with per-sequence settings: every sequence of a batch gives the same tokens as when generated
 * alone with the same settings (its own generator); without per_seq, sequence s of a batch equals its prompt
 * alone with per_seq seed dk_generate_seq_seed(seed, s), and samples of one prompt differ. finish reasons:
 * stopped is true exactly when the last id is a stop id. */
static void test_per_seq_sampling(void) {
    char *dir = engine_fixture("models/llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    golden_generation g;
    golden_generation_read("llama", &g);
    static const int64_t eos[] = {EOS}, two_stops[] = {EOS, 27}, stop_68[] = {68};
    enum { S = 6 };
    const dk_seq_options so[S] = {
        {.temperature = 1.0f, .top_p = 0.9f, .seed = 7, .max_new_tokens = 12, .stop_ids = eos, .n_stop = 1},
        {.temperature = 0.7f, .top_k = 5, .seed = 9, .max_new_tokens = 6},
        {.temperature = 0.0f, .max_new_tokens = 10, .stop_ids = eos, .n_stop = 1}, /* greedy: generate.json */
        {.temperature = 1.5f, .seed = 7, .max_new_tokens = 30, .stop_ids = two_stops, .n_stop = 2},
        {.temperature = 1.0f, .top_p = 0.95f, .top_k = 20, .seed = 123456789, .max_new_tokens = 1},
        {.temperature = 0.0f, .max_new_tokens = 10, .stop_ids = stop_68, .n_stop = 1}, /* greedy, stops at 68 */
    };
    const int prompt_of[S] = {0, 1, 1, 0, 1, 1};
    int64_t ids[64], starts[S + 1] = {0};
    for (int s = 0; s < S; s++) {
        const int p = prompt_of[s];
        const int64_t len = g.prompt_start[p + 1] - g.prompt_start[p];
        memcpy(ids + starts[s], g.prompt_ids + g.prompt_start[p], (size_t)len * sizeof *ids);
        starts[s + 1] = starts[s] + len;
    }
    dk_batch all = {ids, starts[S], starts, S, true};
    dk_generate_options opt = {.per_seq = so, .max_new_tokens = 99, .temperature = 5.0f}; /* globals ignored */
    dk_generation batched;
    CHECK(dk_generate(&m, NULL, &all, &opt, &batched, &err) == 0, "%s", err.msg);
    int same = 0;
    for (int s = 0; s < S; s++) {
        int64_t one[2] = {0, starts[s + 1] - starts[s]};
        dk_batch b = {ids + starts[s], one[1], one, 1, true};
        dk_generate_options o1 = {.per_seq = &so[s]};
        dk_generation alone;
        CHECK(dk_generate(&m, NULL, &b, &o1, &alone, &err) == 0, "%s", err.msg);
        same += EXPECT(same_ids(batched.ids[s], batched.n_ids[s], alone.ids[0], alone.n_ids[0]),
                       "per_seq sequence %d: batched (%lld tokens) differs from alone (%lld tokens)", s,
                       (long long)batched.n_ids[s], (long long)alone.n_ids[0]);
        EXPECT(batched.stopped[s] == alone.stopped[0], "sequence %d: stopped differs batched / alone", s);
        const int64_t n = batched.n_ids[s];
        bool ends_on_stop = false;
        for (int k = 0; k < so[s].n_stop; k++) ends_on_stop |= n > 0 && batched.ids[s][n - 1] == so[s].stop_ids[k];
        EXPECT(batched.stopped[s] == ends_on_stop, "sequence %d: stopped %d, but its last id is %lld", s,
               batched.stopped[s], (long long)(n ? batched.ids[s][n - 1] : -1));
        EXPECT(ends_on_stop || n == so[s].max_new_tokens, "sequence %d: %lld tokens, neither a stop nor max_new %lld",
               s, (long long)n, (long long)so[s].max_new_tokens);
        dk_generation_free(&alone);
    }
    EXPECT(same_ids(batched.ids[2], batched.n_ids[2], g.output_ids + g.output_start[1],
                    g.output_start[2] - g.output_start[1]), "the greedy per_seq entry differs from transformers");
    EXPECT(batched.n_ids[4] == 1 && !batched.stopped[4], "max_new_tokens 1: %lld tokens", (long long)batched.n_ids[4]);
    /* generate.json's greedy output of prompt 1 is 5 48 68 ...: cut after the stop id 68, finish reason "stop" */
    EXPECT(batched.n_ids[5] == 3 && batched.ids[5][2] == 68 && batched.stopped[5],
           "greedy with stop id 68: %lld tokens, stopped %d (expected 3, true)", (long long)batched.n_ids[5],
           batched.stopped[5]);
    EXPECT(!batched.stopped[2] && batched.n_ids[2] == 10, "greedy without a stop in 10 tokens: stopped %d",
           batched.stopped[2]);
    printf("  per-sequence sampling settings: %d of %d sequences batched == alone\n", same, S);
    dk_generation_free(&batched);

    /* no per_seq: three samples of one prompt in a batch differ, and each equals its prompt alone with the
     * documented per-sequence seed */
    int64_t rep[24], rep_starts[4] = {0};
    const int64_t len = g.prompt_start[2] - g.prompt_start[1];
    for (int s = 0; s < 3; s++) {
        memcpy(rep + rep_starts[s], g.prompt_ids + g.prompt_start[1], (size_t)len * sizeof *rep);
        rep_starts[s + 1] = rep_starts[s] + len;
    }
    dk_batch three = {rep, 3 * len, rep_starts, 3, true};
    dk_generate_options global = {.temperature = 1.0f, .top_p = 1.0f, .seed = 42, .max_new_tokens = 16};
    CHECK(dk_generate(&m, NULL, &three, &global, &batched, &err) == 0, "%s", err.msg);
    EXPECT(!same_ids(batched.ids[0], batched.n_ids[0], batched.ids[1], batched.n_ids[1]) &&
           !same_ids(batched.ids[1], batched.n_ids[1], batched.ids[2], batched.n_ids[2]),
           "three samples of one prompt in a batch are not all different");
    for (int s = 0; s < 3; s++) {
        int64_t one[2] = {0, len};
        dk_batch b = {rep, len, one, 1, true};
        dk_seq_options o = dk_generate_seq_options(&global, s);
        EXPECT(o.seed == dk_generate_seq_seed(42, s) && (s > 0 || o.seed == 42), "sequence %d: seed %llu", s,
               (unsigned long long)o.seed);
        dk_generate_options o1 = {.per_seq = &o};
        dk_generation alone;
        CHECK(dk_generate(&m, NULL, &b, &o1, &alone, &err) == 0, "%s", err.msg);
        EXPECT(same_ids(batched.ids[s], batched.n_ids[s], alone.ids[0], alone.n_ids[0]),
               "sample %d of a batch differs from its prompt alone with dk_generate_seq_seed(42, %d)", s, s);
        dk_generation_free(&alone);
    }
    dk_generation_free(&batched);

    /* the per-sequence generators do not overlap: seed_s − seed_0 is not k splitmix64 increments for any small k
     * (sequence s would then replay sequence 0's numbers shifted by k draws) */
    const uint64_t G = 0x9E3779B97F4A7C15ull;
    uint64_t g_inv = G; /* G⁻¹ mod 2^64 by Newton's iteration (G is odd) */
    for (int i = 0; i < 6; i++) g_inv *= 2 - G * g_inv;
    for (int64_t s = 1; s < 1000; s++) {
        const uint64_t k = (dk_generate_seq_seed(42, s) - 42) * g_inv; /* draws between the two streams */
        if (!EXPECT(k > (1ull << 40) && -k > (1ull << 40), "sequence %lld's generator is %lld draws from sequence 0's",
                    (long long)s, (long long)k))
            break;
    }
    golden_generation_free(&g);
    dk_model_close(&m);
    free(dir);
}

/* Greedy generation on the demo pair (models/demo/: Qwen3 base and the glacier_honey LoRA organism), three
 * prompts x 20 tokens, against transformers + peft generate (tests/fixtures/engine/demo_generate.json), each
 * model's prompts batched; then the base steered (three modes) against transformers with a hook. */
static void test_demo_pair_generation(void) {
    const char *root = getenv("DIFFKIT_SOURCE_DIR");
    CHECK(root, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest");
    char *base_dir = dk_sprintf("%s/models/demo/base", root), *organism_dir = dk_sprintf("%s/models/demo/glacier_honey", root);
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(base_dir, &m, &err) == 0, "%s", err.msg);
    dk_lora_adapter organism;
    CHECK(dk_lora_load(organism_dir, &m.cfg, &m.w, &organism, &err) == 0, "%s", err.msg);
    char *json_path = engine_fixture("demo_generate.json");
    cJSON *root_json = read_json(json_path);
    const int64_t eos = json_int(root_json, "eos");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root_json, "cases");
    int same = 0, total = 0;
    for (int which = 0; which < 2; which++) {
        const char *name = which == 0 ? "base" : "glacier_honey";
        const cJSON *prompts[8], *want[8];
        int64_t n = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(c, "model")->valuestring, name) != 0 || n == 8) continue;
            prompts[n] = cJSON_GetObjectItemCaseSensitive(c, "prompt");
            want[n++] = cJSON_GetObjectItemCaseSensitive(c, "output");
        }
        packed_prompts p = pack_prompts(prompts, n);
        dk_batch b = batch_of(&p);
        dk_generate_options opt = {.max_new_tokens = 20, .stop_ids = &eos, .n_stop = 1};
        dk_generation out;
        EXPECT(dk_generate(&m, which ? &organism : NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
        for (int64_t s = 0; s < n; s++, total++)
            same += EXPECT(output_is(&out, s, want[s]), "demo %s prompt %lld: differs from transformers", name,
                           (long long)s);
        dk_generation_free(&out);
        free_packed(&p);
    }
    EXPECT(total == 6, "demo_generate.json: %d cases, expected 6", total);
    printf("  demo pair greedy generation (base, glacier_honey; 20 tokens): %d of %d identical\n", same, total);

    /* the base steered by the organism's ADL direction: every token, prompt only, linear decay; each mode's
     * prompts batched, then one by one */
    const int64_t H = m.cfg.hidden_size;
    const cJSON *vec_json = cJSON_GetObjectItemCaseSensitive(root_json, "steer_vector");
    CHECK(cJSON_GetArraySize(vec_json) == H, "demo_generate.json: steer_vector of %d floats, expected %lld",
          cJSON_GetArraySize(vec_json), (long long)H);
    float *vec = dk_malloc((size_t)H * sizeof(float)); /* (H) */
    for (int64_t j = 0; j < H; j++) vec[j] = (float)cJSON_GetArrayItem(vec_json, (int)j)->valuedouble;
    const cJSON *steered = cJSON_GetObjectItemCaseSensitive(root_json, "steered");
    static const char *const modes[] = {"all", "prompt_only", "linear_decay"};
    same = total = 0;
    for (int k = 0; k < 3; k++) {
        const cJSON *prompts[8], *want[8];
        int64_t n = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, steered) {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(c, "mode")->valuestring, modes[k]) != 0 || n == 8) continue;
            prompts[n] = cJSON_GetObjectItemCaseSensitive(c, "prompt");
            want[n++] = cJSON_GetObjectItemCaseSensitive(c, "output");
        }
        dk_steer steer = {.layer = json_int(root_json, "steer_layer"),
                          .strength = (float)cJSON_GetObjectItemCaseSensitive(root_json, "steer_strength")->valuedouble,
                          .vector = vec, .prompt_only = k == 1,
                          .linear_decay_steps = k == 2 ? json_int(root_json, "decay_steps") : 0};
        dk_generate_options opt = {.max_new_tokens = 20, .stop_ids = &eos, .n_stop = 1, .steers = &steer, .n_steer = 1};
        for (int64_t alone = -1; alone < n; alone++) { /* -1: all prompts of the mode in one batch */
            packed_prompts p = pack_prompts(alone < 0 ? prompts : &prompts[alone], alone < 0 ? n : 1);
            dk_batch b = batch_of(&p);
            dk_generation out;
            EXPECT(dk_generate(&m, NULL, &b, &opt, &out, &err) == 0, "%s", err.msg);
            for (int64_t s = 0; s < p.n; s++, total++)
                same += EXPECT(output_is(&out, s, want[alone < 0 ? s : alone]), "demo base steered (%s), prompt %lld "
                               "%s: differs from transformers", modes[k], (long long)(alone < 0 ? s : alone),
                               alone < 0 ? "batched" : "alone");
            dk_generation_free(&out);
            free_packed(&p);
        }
    }
    EXPECT(total == 18, "demo_generate.json: %d steered generations, expected 18", total);
    printf("  demo base steered by its organism's ADL direction (all / prompt only / linear decay, batched and "
           "alone): %d of %d identical\n", same, total);
    free(vec);
    cJSON_Delete(root_json);
    free(json_path);
    dk_lora_free(&organism);
    dk_model_close(&m);
    free(base_dir);
    free(organism_dir);
}

/* Decode steps through the cache give the logits a full forward of the whole sequence gives. */
static void test_cache_matches_full_forward(void) {
    char *dir = engine_fixture("models/gemma3"); /* sliding window 5 < the 12 positions used */
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    const int64_t V = m.cfg.vocab_size, T = 12;
    int64_t ids[12] = {1, 17, 33, 5, 80, 81, 9, 60, 44, 3, 95, 12};
    float *full = dk_malloc((size_t)(T * V) * sizeof(float)), *step = dk_malloc((size_t)V * sizeof(float));
    int64_t starts[2] = {0, T};
    dk_batch b = {ids, T, starts, 1, true};
    dk_hook_plan all = {.logits = DK_LOGITS_ALL, .logits_out = full};
    CHECK(dk_forward(&m, NULL, &b, &all, NULL, &err) == 0, "%s", err.msg);
    dk_kv_cache cache;
    dk_kv_cache_init(&cache, &m, 1, T);
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        int64_t one[2] = {0, 1};
        dk_batch s = {ids + t, 1, one, 1, t == 0};
        dk_hook_plan last = {.logits = DK_LOGITS_LAST, .logits_out = step};
        CHECK(dk_forward(&m, NULL, &s, &last, &cache, &err) == 0, "%s", err.msg);
        double e = golden_rel_error(step, full + t * V, V);
        worst = e > worst ? e : worst;
    }
    /* same math on the same numbers, one token at a time instead of 12 at once: only GEMM blocking differs */
    EXPECT(worst <= 1e-5, "cached decode vs full forward: relative error %.3g", worst);
    printf("  KV cache vs full forward (gemma3, 12 steps): max rel error %.2e\n", worst);
    int64_t past[2] = {0, 1};
    dk_batch over = {ids, 1, past, 1, false};
    dk_hook_plan last = {.logits = DK_LOGITS_LAST, .logits_out = step};
    EXPECT(dk_forward(&m, NULL, &over, &last, &cache, &err) != 0, "a full KV cache accepted another token");
    EXPECT_ERR_HAS(&err, "KV cache capacity 12");
    dk_kv_cache_free(&cache);
    free(full);
    free(step);
    dk_model_close(&m);
    free(dir);
}

/* A long generation outgrows the first KV cache (prompts + 256 positions) and the cache grows while the
 * sequences run (generate.c): every token generated after the growth must still be the greedy choice of a
 * full forward over the prompt and the tokens before it. Two prompts of different lengths, no stop token. */
static void test_long_generation_grows_cache(void) {
    char *dir = engine_fixture("models/llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    const int64_t V = m.cfg.vocab_size, N = 300;
    int64_t prompts[] = {1, 57, 83, 49, 41, 1, 42}, starts[3] = {0, 5, 7};
    dk_batch b = {prompts, 7, starts, 2, true};
    dk_generate_options o = {.max_new_tokens = N};
    dk_generation gen;
    CHECK(dk_generate(&m, NULL, &b, &o, &gen, &err) == 0, "%s", err.msg);
    EXPECT(gen.n_ids[0] == N && gen.n_ids[1] == N, "generated %lld and %lld tokens, expected %lld",
           (long long)gen.n_ids[0], (long long)gen.n_ids[1], (long long)N);
    int64_t *ids = dk_malloc((size_t)(5 + N) * sizeof *ids);
    float *logits = dk_malloc((size_t)V * sizeof(float));
    int checked = 0, wrong = 0;
    for (int64_t s = 0; s < 2; s++) {
        int64_t plen = starts[s + 1] - starts[s];
        memcpy(ids, prompts + starts[s], (size_t)plen * sizeof *ids);
        memcpy(ids + plen, gen.ids[s], (size_t)N * sizeof *ids);
        const int64_t at[] = {0, 200, 255, 256, 257, 258, 261, 262, 263, 270, 299};
        for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
            int64_t k = at[i], one[2] = {0, plen + k};
            dk_batch full = {ids, plen + k, one, 1, true};
            dk_hook_plan last = {.logits = DK_LOGITS_LAST, .logits_out = logits};
            CHECK(dk_forward(&m, NULL, &full, &last, NULL, &err) == 0, "%s", err.msg);
            float best = logits[0];
            for (int64_t v = 1; v < V; v++) best = logits[v] > best ? logits[v] : best;
            /* the token chosen through the (grown) cache is the argmax here, up to rounding of near-ties */
            wrong += logits[gen.ids[s][k]] < best - 1e-4f * (fabsf(best) + 1.0f);
            checked++;
        }
    }
    EXPECT(wrong == 0, "%d of %d tokens generated across the cache growth are not the greedy choice", wrong, checked);
    printf("  long generation (2 x %lld tokens, cache grown past 256 new positions): %d steps checked against a "
           "full forward\n", (long long)N, checked);
    free(ids);
    free(logits);
    dk_generation_free(&gen);
    dk_model_close(&m);
    free(dir);
}

static void test_sampling(void) {
    enum { V = 8 };
    const float logits[V] = {0.5f, 2.0f, 1.9f, -1.0f, 1.0f, 0.0f, 1.8f, -3.0f};
    uint64_t rng = 1;
    dk_generate_options o = {.temperature = 0.0f};
    EXPECT(dk_sample_token(logits, V, &o, &rng) == 1, "greedy is the argmax");
    o.temperature = 1.0f;
    o.top_k = 1;
    for (int i = 0; i < 50; i++) EXPECT(dk_sample_token(logits, V, &o, &rng) == 1, "top_k 1 is greedy");
    o.top_k = 3; /* only ids 1, 2, 6 */
    for (int i = 0; i < 200; i++) {
        int64_t id = dk_sample_token(logits, V, &o, &rng);
        EXPECT(id == 1 || id == 2 || id == 6, "top_k 3 gave id %lld", (long long)id);
    }
    o.top_k = 0;
    o.top_p = 0.3f; /* p(1) ≈ 0.27 < 0.3, so ids 1 and 2 (the smallest set reaching 0.3) */
    int seen[V] = {0};
    for (int i = 0; i < 400; i++) seen[dk_sample_token(logits, V, &o, &rng)]++;
    EXPECT(seen[1] > 0 && seen[2] > 0 && seen[1] + seen[2] == 400, "top_p 0.3: ids %d/%d of 400", seen[1], seen[2]);
    /* a seed reproduces */
    o.top_p = 1.0f;
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 20; i++)
        EXPECT(dk_sample_token(logits, V, &o, &a) == dk_sample_token(logits, V, &o, &b), "same seed, other draw");
}

/* The spec of sampling written the plain way (generate.h): every candidate sorted by (logit / T descending, id
 * ascending), top-k, the smallest prefix reaching top_p, a draw u · total walked through the prefix sums. */
typedef struct {
    double z;
    int64_t id;
} ref_candidate;

static int ref_order(const void *a, const void *b) {
    const ref_candidate *x = a, *y = b;
    if (x->z != y->z) return x->z < y->z ? 1 : -1;
    return x->id < y->id ? -1 : 1;
}

/* The candidates sorted once, the kept prefix and its total; reference_draw walks them for one draw. */
typedef struct {
    ref_candidate *c;
    int64_t keep;
    double total;
} reference_sampler;

static reference_sampler reference_prepare(const float *logits, int64_t V, const dk_seq_options *so) {
    reference_sampler r = {.c = dk_malloc((size_t)V * sizeof *r.c)};
    for (int64_t i = 0; i < V; i++) r.c[i] = (ref_candidate){logits[i] / so->temperature, i};
    qsort(r.c, (size_t)V, sizeof *r.c, ref_order);
    r.keep = so->top_k > 0 && so->top_k < V ? so->top_k : V;
    double mass = 0;
    for (int64_t i = 0; i < r.keep; i++) r.total += exp(r.c[i].z - r.c[0].z);
    if (so->top_p > 0 && so->top_p < 1) {
        int64_t n = 0;
        while (n < r.keep && mass < so->top_p * r.total) mass += exp(r.c[n++].z - r.c[0].z);
        r.keep = n;
        r.total = mass;
    }
    return r;
}

static int64_t reference_draw(const reference_sampler *r, uint64_t *rng) {
    /* the same generator as dk_sample_token_seq: splitmix64, 53 bits */
    uint64_t x = (*rng += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    double u = (double)(x >> 11) * (1.0 / 9007199254740992.0) * r->total, acc = 0;
    for (int64_t i = 0; i < r->keep; i++)
        if (u < (acc += exp(r->c[i].z - r->c[0].z))) return r->c[i].id;
    return r->c[r->keep - 1].id;
}

/* The sampler sorts only the prefix its walk reaches (generate.c): over peaked, flat and tied logits of a
 * 20k vocabulary and every truncation, it picks what the plain full sort picks. */
static void test_sampler_matches_full_sort(void) {
    enum { V = 20000, DRAWS = 25 };
    float *logits = dk_malloc(V * sizeof(float));
    uint64_t fill = 12345;
    int mismatches = 0, draws = 0;
    for (int shape = 0; shape < 4; shape++) {
        for (int64_t i = 0; i < V; i++) {
            fill = fill * 6364136223846793005ull + 1442695040888963407ull;
            const double r = (double)(fill >> 11) / 9007199254740992.0;
            /* 0: peaked (a few large logits), 1: flat, 2: a handful of distinct values (ties), 3: spread */
            logits[i] = shape == 0 ? (float)(r < 0.001 ? 20 * r * 1000 : 3 * r) : shape == 1 ? (float)(0.01 * r)
                        : shape == 2 ? (float)(int)(r * 5) : (float)(12 * r * r);
        }
        const dk_seq_options settings[] = {{.temperature = 1.0f}, {.temperature = 0.7f, .top_p = 0.9f},
                                           {.temperature = 1.3f, .top_k = 40},
                                           {.temperature = 1.0f, .top_k = 3000, .top_p = 0.5f},
                                           {.temperature = 2.0f, .top_p = 0.999f}};
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
            uint64_t a = 99 + k, b = 99 + k;
            reference_sampler ref = reference_prepare(logits, V, &settings[k]);
            for (int d = 0; d < DRAWS; d++, draws++)
                mismatches += dk_sample_token_seq(logits, V, &settings[k], &a) != reference_draw(&ref, &b);
            free(ref.c);
        }
    }
    EXPECT(mismatches == 0, "the prefix-sorting sampler differs from a full sort in %d of %d draws", mismatches, draws);
    printf("  sampler vs full sort (V %d, 4 logit shapes x 5 settings): %d of %d draws equal\n", V,
           draws - mismatches, draws);
    free(logits);
}

int main(void) {
    test_greedy_matches_transformers();
    test_steered_generation();
    test_linear_decay_and_seq_strengths();
    test_seq_strength_mixed_batch();
    test_patch_generation();
    test_logit_amplification();
    test_per_seq_sampling();
    test_demo_pair_generation();
    test_cache_matches_full_forward();
    test_long_generation_grows_cache();
    test_sampling();
    test_sampler_matches_full_sort();
    return dk_test_finish("test_generate");
}
