/* test_generate.c — KV-cache generation against transformers' greedy generate() (generate.json of every
 * golden model, tools/make_model_goldens.py): each prompt alone, then all prompts of a model batched
 * together (different lengths, so finished and running sequences mix), must give identical token ids.
 * Then sampling: a fixed seed reproduces, top_k = 1 is greedy, and a token outside top-k/top-p never comes
 * out. Decode steps through the cache are also checked against a full forward of the whole sequence, and
 * steering during generation (all tokens / prompt only) against transformers with a forward hook. */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"
#include "model/generate.h"

#include <cjson/cJSON.h>
#include <math.h>

static const char *const MODELS[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_mm", "gpt2",
                                     "qwen25_vl"};
static const int64_t EOS = 2;

typedef struct golden_generation {
    int n;
    int64_t *prompt_ids, *prompt_start; /* packed prompts, (n + 1) offsets */
    int64_t *output_ids, *output_start; /* packed expected outputs */
} golden_generation;

static void read_ids(const cJSON *arr, int64_t **ids, int64_t *n, size_t *cap) {
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if ((size_t)*n == *cap) *ids = dk_realloc(*ids, (*cap *= 2) * sizeof **ids);
        (*ids)[(*n)++] = (int64_t)v->valuedouble;
    }
}

static void read_golden(const char *model, golden_generation *g) {
    char *rel = dk_sprintf("models/%s/generate.json", model);
    char *path = engine_fixture(rel);
    size_t size;
    char *text = (char *)engine_read_all(path, &size);
    cJSON *root = cJSON_Parse(text);
    CHECK(cJSON_IsArray(root), "%s: not a JSON array", path);
    g->n = cJSON_GetArraySize(root);
    size_t cap_p = 64, cap_o = 64;
    int64_t np = 0, no = 0;
    g->prompt_ids = dk_malloc(cap_p * sizeof(int64_t));
    g->output_ids = dk_malloc(cap_o * sizeof(int64_t));
    g->prompt_start = dk_malloc((size_t)(g->n + 1) * sizeof(int64_t));
    g->output_start = dk_malloc((size_t)(g->n + 1) * sizeof(int64_t));
    g->prompt_start[0] = g->output_start[0] = 0;
    for (int i = 0; i < g->n; i++) {
        const cJSON *item = cJSON_GetArrayItem(root, i);
        read_ids(cJSON_GetObjectItemCaseSensitive(item, "prompt"), &g->prompt_ids, &np, &cap_p);
        read_ids(cJSON_GetObjectItemCaseSensitive(item, "output"), &g->output_ids, &no, &cap_o);
        g->prompt_start[i + 1] = np;
        g->output_start[i + 1] = no;
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    free(rel);
}

static void free_golden(golden_generation *g) {
    free(g->prompt_ids);
    free(g->prompt_start);
    free(g->output_ids);
    free(g->output_start);
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
        read_golden(MODELS[k], &g);
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
        free_golden(&g);
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
    size_t size;
    char *text = (char *)engine_read_all(json_path, &size);
    cJSON *root = cJSON_Parse(text);
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
    free(text);
    free(json_path);
    free(vec);
    dk_st_close(golden);
    free(golden_path);
    dk_model_close(&m);
    free(dir);
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

int main(void) {
    test_greedy_matches_transformers();
    test_steered_generation();
    test_cache_matches_full_forward();
    test_long_generation_grows_cache();
    test_sampling();
    return dk_test_finish("test_generate");
}
