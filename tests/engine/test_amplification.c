/* test_amplification.c — weight amplification (host/model/amplification.h): the seed's config schema parsed and
 * resolved per (layer, attention | mlp), and the amplified organism's logits against peft with the LoRA B weights
 * scaled the seed's way (tools/make_amplification_goldens.py: llama_text with an adapter on all seven projections of
 * its three layers; cases zero, one, the presets default_2.5x and negative_1x, and a mixed config of ranges, lists,
 * module groups and two adapters entries).
 *
 * Tolerance: logits within 1e-4 of the golden's largest magnitude (golden_rel_error). Both sides run fp32 from the
 * same bf16-exact weights, unmerged LoRA on both (peft adds scale·B(Ax) with B pre-scaled; we scale the term by w):
 * the measured error is printed (<= 9.2e-6, for w = 1), 10x below the gate. Mutations of the resolution or the
 * application (round halves away from zero, down_proj counted as attention, an unlisted group at 0, exclusive
 * ranges, mlp multipliers not set, `all` setting attention only) move the logits by 0.77 to 2.0 relative and fail
 * it. The resolved weights must equal the golden's (the seed's resolution in Python) exactly, and
 * multiplier 0 everywhere must give the base model's logits bit for bit.
 */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"

#include <math.h>
#include "model/amplification.h"
#include "model/forward.h"

static const double TOL = 1e-4;

static char *configs_dir(void) {
    const char *src = getenv("DIFFKIT_SOURCE_DIR");
    CHECK(src, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest");
    return dk_path_join(src, "configs");
}

/* Resolves text for n_layers; 0 on success. */
static int resolve_text(const char *text, const char *organism, int64_t n_layers, float *w, dk_err *err) {
    dk_amp_config c;
    if (dk_amp_parse(text, strlen(text), "test.yaml", &c, err) != 0) return -1;
    int rc = dk_amp_resolve(&c, organism, n_layers, w, err);
    dk_amp_free(&c);
    return rc;
}

/* Expects the resolution of text for n_layers to be `want` (n_layers, 2). */
static void expect_weights(const char *label, const char *text, int64_t n_layers, const float *want) {
    float w[64 * 2];
    dk_err err = {0};
    if (!EXPECT(resolve_text(text, NULL, n_layers, w, &err) == 0, "%s: %s", label, err.msg)) return;
    for (int64_t k = 0; k < n_layers * 2; k++)
        EXPECT(w[k] == want[k], "%s: layer %lld %s weight %g, expected %g", label, (long long)(k / 2),
               k % 2 ? "mlp" : "attention", w[k], want[k]);
}

#define HEAD "name: t\nadapters:\n  - organism_name: custom\n    variant: null\n    layer_amplifications:\n"

static void test_resolution(void) {
    /* relative range 0.0-0.8 (the default presets): round(0.8 * 15) = 12 on 16 layers, round(21.6) = 22 on 28 */
    const char *preset = HEAD "      - layers: {type: range, start: 0.0, end: 0.8}\n        is_relative: true\n"
                              "        module_amplifications: [{modules: all, weight: 2.0}]\n";
    float w16[32], w28[56];
    for (int l = 0; l < 16; l++) w16[2 * l] = w16[2 * l + 1] = l <= 12 ? 2.0f : 1.0f;
    for (int l = 0; l < 28; l++) w28[2 * l] = w28[2 * l + 1] = l <= 22 ? 2.0f : 1.0f;
    expect_weights("0.0-0.8 of 16 layers", preset, 16, w16);
    expect_weights("0.0-0.8 of 28 layers", preset, 28, w28);
    /* Python's round halves to even: 0.5 * 5 = 2.5 -> 2, 0.7 * 5 = 3.5 -> 4, 0.1 * 5 = 0.5 -> 0 */
    const char *halves = HEAD "      - layers: [0.5, 0.7, 0.1]\n        is_relative: true\n"
                              "        module_amplifications: [{modules: mlp, weight: 3}]\n";
    const float wh[12] = {1, 3, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1};
    expect_weights("relative halves", halves, 6, wh);
    /* a later entry overwrites both groups of its layers (its unlisted group back to 1); later listing wins;
     * `layers: all`, a single index, absolute inclusive range */
    const char *order = HEAD "      - layers: all\n        module_amplifications: [{modules: all, weight: -1}]\n"
                             "      - layers: 2\n        module_amplifications: [{modules: attention, weight: 4},"
                             " {modules: attention, weight: 5}]\n"
                             "      - layers: {type: range, start: 3, end: 4}\n        is_relative: false\n"
                             "        module_amplifications: [{modules: all, weight: 0}, {modules: mlp, weight: 0.5}]\n";
    const float wo[10] = {-1, -1, -1, -1, 5, 1, 0, 0.5f, 0, 0.5f};
    expect_weights("entry order", order, 5, wo);
    /* no adapters, or an adapter with no layer_amplifications: every weight 1 */
    const float ones[6] = {1, 1, 1, 1, 1, 1};
    expect_weights("no adapters", "name: plain\ndescription: nothing\n", 3, ones);
    expect_weights("empty list", "name: e\nadapters:\n  - organism_name: x\n    layer_amplifications: []\n", 3, ones);
    /* an entry for a named organism applies when that organism runs (or when the organism is unknown) */
    const char *named = "name: n\nadapters:\n  - organism_name: cake_bake\n    variant: default\n"
                        "    layer_amplifications:\n      - layers: 0\n        module_amplifications: [{modules: all, weight: 7}]\n";
    float w[6];
    dk_err err = {0};
    EXPECT(resolve_text(named, "cake_bake", 3, w, &err) == 0 && w[0] == 7 && w[1] == 7 && w[2] == 1, "%s", err.msg);
    EXPECT(resolve_text(named, "other", 3, w, &err) == -1, "an entry for another organism was applied");
    EXPECT_ERR_HAS(&err, "test.yaml:", "layer_amplifications[0].layers", "'cake_bake'", "'other'", "organism_name: custom");
}

/* text must fail to parse (or, with n_layers > 0, to resolve) with a message holding every needle. */
static void expect_bad(const char *text, int64_t n_layers, const char *n1, const char *n2) {
    dk_err err = {0};
    float w[64];
    int rc;
    if (n_layers > 0) {
        rc = resolve_text(text, NULL, n_layers, w, &err);
    } else {
        dk_amp_config c;
        rc = dk_amp_parse(text, strlen(text), "test.yaml", &c, &err);
        if (rc == 0) dk_amp_free(&c);
    }
    if (!EXPECT(rc == -1, "accepted: %s", text)) return;
    EXPECT(err.code == DK_EXIT_USAGE, "exit code %d for %s", err.code, err.msg);
    EXPECT_ERR_HAS(&err, "test.yaml", n1, n2);
}

#define ENTRY(layers, rel, mods) HEAD "      - layers: " layers "\n        is_relative: " rel "\n" \
                                 "        module_amplifications: " mods "\n"
#define ALL2 "[{modules: all, weight: 2}]"

static void test_bad_configs(void) {
    expect_bad("", 0, "(top level)", "expected a mapping");
    expect_bad("description: x\n", 0, "required key 'name'", "(top level)");
    expect_bad("name: x\nadapter: []\n", 0, "unknown key 'adapter'", "did you mean adapters?");
    expect_bad("name: x\nadapters: {a: 1}\n", 0, "adapters", "expected a list");
    expect_bad("name: x\nadapters:\n  - organism_name: custom\n    layer_amplification: []\n", 0,
               "adapters[0]", "did you mean layer_amplifications?");
    expect_bad("name: x\nadapters:\n  - organism_name: custom\n", 0, "adapters[0]", "'layer_amplifications' is missing");
    expect_bad(ENTRY("all", "false", "[{modules: attn, weight: 2}]"), 0,
               "layer_amplifications[0].module_amplifications[0].modules", "expected attention, mlp or all");
    expect_bad(ENTRY("all", "false", "[{modules: all, weight: big}]"), 0, "module_amplifications[0].weight",
               "expected a finite number, got big");
    expect_bad(ENTRY("all", "false", "[{modules: all, weight: 1e39}]"), 0, "weight", "1e39 is out of range");
    expect_bad(ENTRY("all", "false", "[{modules: all, weight: .nan}]"), 0, "weight", "expected a finite number");
    expect_bad(ENTRY("all", "false", "[{modules: all}]"), 0, "module_amplifications[0]", "'weight' is missing");
    expect_bad(ENTRY("1.5", "false", ALL2), 0, "layers: layer 1.5 is not a layer index", "is_relative: true");
    expect_bad(ENTRY("-1", "false", ALL2), 0, "layer -1 is not a layer index", "non-negative");
    expect_bad(ENTRY("[0, 1.5]", "true", ALL2), 0, "layers[1]", "relative layer 1.5 is not in [0, 1]");
    expect_bad(ENTRY("[]", "false", ALL2), 0, "layers", "empty");
    expect_bad(ENTRY("{type: range, start: 3, end: 1}", "false", ALL2), 0, "ends (1) before it starts (3)", "inclusive");
    expect_bad(ENTRY("{type: span, start: 0, end: 1}", "false", ALL2), 0, "layers.type", "expected 'range'");
    expect_bad(ENTRY("{type: range, start: 0}", "false", ALL2), 0, "'end' is missing", "layers");
    expect_bad(ENTRY("some", "false", ALL2), 0, "layers", "got 'some'");
    expect_bad(ENTRY("all", "yes", ALL2), 0, "is_relative", "expected true or false, got 'yes'");
    /* past the model's last layer: found when resolving for a model, with the file and key */
    expect_bad(ENTRY("[0, 3]", "false", ALL2), 3, "layers: layer 3 is past the model's last layer", "0..2");
    expect_bad(ENTRY("{type: range, start: 1, end: 4}", "false", ALL2), 3, "layer 3 is past", "3 layers");
    expect_bad(ENTRY("9223372036854775807", "false", ALL2), 3, "layer 9.22337e+18 is past", "0..2");
    expect_bad(ENTRY("{type: range, start: 0, end: 9223372036854775807}", "false", ALL2), 3, "layer 3 is past", "0..2");
    /* duplicate keys and bad YAML come from the config reader, with the position */
    expect_bad("name: a\nname: b\n", 0, "test.yaml:2", "name");

    dk_amp_config c;
    dk_err err = {0};
    char *dir = configs_dir();
    EXPECT(dk_amp_load("default_4x", dir, &c, &err) == -1, "an unknown preset loaded");
    EXPECT_ERR_HAS(&err, "'default_4x' is neither a file nor a preset", "amplification_presets", "default_2.5x",
                   "negative_1x");
    dk_err_clear(&err);
    EXPECT(dk_amp_load("/no/such/amp.yaml", dir, &c, &err) == -1 && err.code == DK_EXIT_USAGE, "a missing file loaded");
    EXPECT_ERR_HAS(&err, "/no/such/amp.yaml");
    free(dir);
}

/* Every preset of configs/ parses; the seed's values. */
static void test_presets(void) {
    static const struct { const char *name; float w; } presets[] = {
        {"default_2x", 2.0f}, {"default_2.5x", 2.5f}, {"default_3x", 3.0f}, {"negative_1x", -1.0f}};
    char *dir = configs_dir();
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        dk_amp_config c;
        dk_err err = {0};
        if (!EXPECT(dk_amp_load(presets[i].name, dir, &c, &err) == 0, "%s: %s", presets[i].name, err.msg)) continue;
        EXPECT(strcmp(c.name, presets[i].name) == 0, "preset %s is named %s", presets[i].name, c.name);
        float w[10 * 2];
        EXPECT(dk_amp_resolve(&c, "any_organism", 10, w, &err) == 0, "%s", err.msg);
        const int last = presets[i].w < 0 ? 9 : 7; /* round(0.8 * 9) = 7 */
        for (int l = 0; l < 10; l++)
            EXPECT(w[2 * l] == (l <= last ? presets[i].w : 1.0f) && w[2 * l + 1] == w[2 * l], "%s layer %d: %g",
                   presets[i].name, l, w[2 * l]);
        dk_amp_free(&c);
    }
    free(dir);
}

/* Mutated configs (bit flips, inserted tokens, truncation) either parse or give a usage error; what parses resolves
 * for 3 layers or gives a usage error, and every weight it gives is finite. Under ASan this is the crash check of
 * the walk over the YAML tree (the YAML reader itself is fuzzed by tests/reliability). */
static void test_mutated_configs(void) {
    static const char *const files[] = {"amplification/configs/mixed.yaml", "amplification/configs/one.yaml"};
    int parsed = 0, total = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char *path = engine_fixture(files[f]);
        size_t size;
        unsigned char *seed = engine_read_all(path, &size);
        uint8_t *buf = dk_malloc(size + 256);
        for (int i = 0; i < 3000; i++, total++) {
            size_t n = engine_mutate(seed, size, buf, size + 256, false);
            dk_amp_config c;
            dk_err err = {0};
            if (dk_amp_parse((const char *)buf, n, "mutated.yaml", &c, &err) != 0) {
                EXPECT(err.code == DK_EXIT_USAGE && strstr(err.msg, "mutated.yaml"), "mutation %d: %d %s", i, err.code,
                       err.msg);
                continue;
            }
            parsed++;
            float w[3 * DK_AMP_N_GROUPS];
            if (dk_amp_resolve(&c, NULL, 3, w, &err) == 0) {
                for (int k = 0; k < 3 * DK_AMP_N_GROUPS; k++) EXPECT(isfinite(w[k]), "mutation %d: weight %g", i, w[k]);
            } else {
                EXPECT(err.code == DK_EXIT_USAGE, "mutation %d: resolve error code %d", i, err.code);
            }
            dk_amp_free(&c);
        }
        free(buf);
        free(seed);
        free(path);
    }
    printf("mutated configs: %d of %d parsed, the rest refused with a message\n", parsed, total);
}

/* The amplified organism against peft with B scaled the seed's way. */
static void test_logits_vs_peft(void) {
    static const char *const cases[][2] = {{"zero", "configs/zero.yaml"}, {"one", "configs/one.yaml"},
                                           {"default_2.5x", NULL}, {"negative_1x", NULL},
                                           {"mixed", "configs/mixed.yaml"}};
    char *adir = engine_fixture("adapters/llama_text_all");
    char *fix = engine_fixture("amplification");
    char *cdir = configs_dir();
    dk_model m;
    dk_lora_adapter a;
    golden_open_lora("llama_text", adir, &m, &a);
    EXPECT(a.n_adapted == 3 * DK_N_MODULES, "llama_text_all adapts %lld pairs", (long long)a.n_adapted);
    golden_tokens tok;
    char *tok_path = dk_path_join(fix, "tokens.jsonl");
    golden_tokens_read(tok_path, &tok);
    char *golden_path = dk_path_join(fix, "golden.safetensors");
    dk_err err = {0};
    dk_st_checkpoint *golden = dk_st_open(golden_path, &err);
    CHECK(golden, "%s", err.msg);
    const int64_t V = m.cfg.vocab_size, T = tok.n_tokens, L = m.cfg.num_hidden_layers;
    float *logits = dk_malloc((size_t)(T * V) * sizeof *logits), *base = dk_malloc((size_t)(T * V) * sizeof *base);
    dk_batch b = {tok.ids, T, tok.seq_start, tok.n_seqs, true};
    dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = base};
    CHECK(dk_forward(&m, NULL, &b, &plan, NULL, &err) == 0, "%s", err.msg);
    plan.logits_out = logits;
    printf("amplified llama_text_all vs peft with B scaled (tolerance %.0e of the largest logit):\n", TOL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = cases[i][0];
        char *path = cases[i][1] ? dk_path_join(fix, cases[i][1]) : dk_strdup(name);
        dk_amp_config c;
        if (!EXPECT(dk_amp_load(path, cdir, &c, &err) == 0, "%s: %s", name, err.msg)) {
            free(path);
            continue;
        }
        float w[3 * DK_AMP_N_GROUPS];
        CHECK(L == 3, "llama_text has %lld layers", (long long)L);
        EXPECT(dk_amp_resolve(&c, NULL, L, w, &err) == 0, "%s: %s", name, err.msg);
        char key[128];
        snprintf(key, sizeof key, "%s.weights", name);
        float *want_w = golden_load(golden, key, L * DK_AMP_N_GROUPS);
        for (int64_t k = 0; k < L * DK_AMP_N_GROUPS; k++)
            EXPECT(w[k] == want_w[k], "%s: layer %lld group %lld weight %g, the seed's resolution gives %g", name,
                   (long long)(k / 2), (long long)(k % 2), w[k], want_w[k]);
        free(want_w);
        dk_lora_set_multiplier(&a, 1.0f);
        int64_t unadapted = -1;
        EXPECT(dk_amp_apply_config(&c, NULL, &a, &unadapted, &err) == 0 && unadapted == 0, "%s: %s", name, err.msg);
        CHECK(dk_forward(&m, &a, &b, &plan, NULL, &err) == 0, "%s", err.msg);
        double worst = 0;
        for (int64_t s = 0; s < tok.n_seqs; s++) {
            const int64_t start = tok.seq_start[s], n = tok.seq_start[s + 1] - start;
            snprintf(key, sizeof key, "%s.seq%lld.logits", name, (long long)s);
            float *want = golden_load(golden, key, n * V);
            double e = golden_rel_error(logits + start * V, want, n * V);
            EXPECT(e <= TOL, "%s %s: relative error %.3g > %.0e", name, key, e, TOL);
            EXPECT(golden_argmax_mismatches(logits + start * V, want, n, V) == 0, "%s %s: argmax differs", name, key);
            if (e > worst) worst = e;
            free(want);
        }
        printf("  %-14s max rel error %.2e\n", name, worst);
        if (strcmp(name, "zero") == 0)
            EXPECT(memcmp(logits, base, (size_t)(T * V) * sizeof *logits) == 0, "multiplier 0 everywhere is not the base");
        dk_amp_free(&c);
        free(path);
    }
    free(logits);
    free(base);
    dk_st_close(golden);
    free(golden_path);
    free(tok_path);
    golden_tokens_free(&tok);
    dk_lora_free(&a);
    dk_model_close(&m);

    /* llama_lora adapts layers 0 and 2 only: negative_1x's weight on layer 1 (both groups) does nothing */
    free(adir);
    adir = engine_fixture("adapters/llama_lora");
    golden_open_lora("llama", adir, &m, &a);
    dk_amp_config c;
    CHECK(dk_amp_load("negative_1x", cdir, &c, &err) == 0, "%s", err.msg);
    int64_t unadapted = -1;
    EXPECT(dk_amp_apply_config(&c, NULL, &a, &unadapted, &err) == 0 && unadapted == 2,
           "unadapted (layer, group) pairs: %lld, expected 2 (layer 1)", (long long)unadapted);
    EXPECT(a.multiplier[0] == -1 && a.multiplier[1 * DK_N_MODULES + DK_MOD_DOWN] == -1 && a.saved_multiplier == 1,
           "multipliers not set");
    dk_amp_free(&c);
    dk_lora_free(&a);
    dk_model_close(&m);
    free(adir);
    free(fix);
    free(cdir);
}

int main(void) {
    test_resolution();
    test_bad_configs();
    test_presets();
    test_mutated_configs();
    test_logits_vs_peft();
    return dk_test_finish("test_amplification");
}
