/* test_undertrained.c — the under-trained token indicator (host/model/undertrained.h) and its pieces.
 *
 *   1. dk_utf8_can_occur on byte strings that some UTF-8 text holds and on ones none does;
 *   2. the first demo base (tests/fixtures/undertrained/demo_v1, made by tools/make_undertrained_fixture.py from
 *      commit 88ec501): the reference ids, the distances, spread, median and threshold equal the numpy
 *      reference's, and the flagged ids are exactly the ids that base never read in training (ground truth from
 *      its training data: 276 ids; issue 11 counted 282, the ids absent from the raw pretrain texts and chat
 *      message contents, but 6 of those, <|endoftext|>, <|im_start|>, <|im_end|>, <think>, </think> and
 *      "assistant", enter the training stream through the document ends and the chat template: they were trained);
 *   3. the published tokenizers of the tokenizer tests (Qwen3, Llama 3.1, Gemma 3): their reference ids are the
 *      lone bytes no UTF-8 text holds;
 *   4. the engine's random golden models: their rows form no cluster, so nothing is flagged; fewer than two
 *      reference ids give no_reference;
 *   5. the config values of diffing.undertrained_tokens. */
#include "test.h"

#include "io/file.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/undertrained.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>

static void test_can_occur(void) {
    static const struct { const char *bytes; bool can; } cases[] = {
        {"a", true}, {"\xC3\xA9", true}, {"\xA9", true}, {"\xC3", true}, {"\x80\x80\x80", true},
        {"\xE0\xA0", true}, {"\x90\x80\x80", true}, {"\xF0\x9F\x98", true}, {"x\xE2\x82", true},
        {"\xC0", false}, {"\xC1", false}, {"\xF5", false}, {"\xFF", false}, {"a\xFE", false},
        {"\xE0\x80", false},       /* overlong */
        {"\xED\xA0", false},       /* surrogate */
        {"\xF4\x90", false},       /* past U+10FFFF */
        {"\x80\x80\x80\x80", false}, /* four continuation bytes */
        {"\xC3\xA9\x80", false},   /* a continuation byte after a whole character */
        {"\xC3z", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].bytes);
        EXPECT(dk_utf8_can_occur(cases[i].bytes, n) == cases[i].can, "dk_utf8_can_occur case %zu: want %d", i,
               cases[i].can);
    }
}

static cJSON *read_json(const char *path) {
    dk_err err = {0};
    size_t size;
    char *text = dk_read_file(path, &size, &err);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    EXPECT(j != NULL, "cannot read %s: %s", path, err.msg);
    free(text);
    return j;
}

static bool lone_impossible_byte(const dk_tokenizer *tok, int32_t id) {
    size_t len = 0;
    char *b = dk_tokenizer_token_bytes(tok, id, &len, NULL);
    unsigned char c = b && len == 1 ? (unsigned char)b[0] : 0;
    free(b);
    return c == 0xC0 || c == 0xC1 || c >= 0xF5;
}

static void test_demo_v1(void) {
    char *dir = dk_fixture_path("undertrained/demo_v1");
    char *tok_path = dk_sprintf("%s/tokenizer.json.gz", dir), *st_path = dk_sprintf("%s/unembed.safetensors", dir);
    char *exp_path = dk_sprintf("%s/expected.json", dir);
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    dk_st_checkpoint *ck = tok ? dk_st_open(st_path, &err) : NULL;
    const dk_st_tensor *t = ck ? dk_st_find(ck, "model.embed_tokens.weight") : NULL;
    cJSON *exp = read_json(exp_path);
    if (EXPECT(tok && t && exp, "demo_v1 fixture: %s", err.msg)) {
        int32_t *ref;
        int64_t n_ref, V = t->shape[0];
        dk_undertrained_reference_ids(tok, V, &ref, &n_ref);
        const cJSON *exp_ref = cJSON_GetObjectItem(exp, "reference_ids");
        EXPECT(n_ref == cJSON_GetArraySize(exp_ref), "%lld reference ids, the reference has %d", (long long)n_ref,
               cJSON_GetArraySize(exp_ref));
        for (int64_t j = 0; j < n_ref && j < cJSON_GetArraySize(exp_ref); j++) {
            EXPECT(ref[j] == cJSON_GetArrayItem(exp_ref, (int)j)->valueint, "reference id %lld: %d vs %d",
                   (long long)j, ref[j], cJSON_GetArrayItem(exp_ref, (int)j)->valueint);
            EXPECT(lone_impossible_byte(tok, ref[j]), "reference id %d is not a lone byte no UTF-8 text holds", ref[j]);
        }
        dk_undertrained u;
        if (EXPECT(dk_undertrained_compute(t, ref, n_ref, &u, &err) == 0, "compute: %s", err.msg)) {
            EXPECT(u.status == DK_UNDERTRAINED_FLAGGED, "status %s", dk_undertrained_status_name(u.status));
            static const char *const stats[] = {"spread", "median_distance", "threshold"};
            const double ours[] = {u.spread, u.median_distance, u.threshold};
            for (int k = 0; k < 3; k++) {
                double want = cJSON_GetObjectItem(exp, stats[k])->valuedouble;
                EXPECT(fabs(ours[k] - want) <= 1e-5 * fabs(want), "%s: %.8g vs the reference's %.8g", stats[k],
                       ours[k], want);
            }
            const cJSON *dist = cJSON_GetObjectItem(exp, "distance");
            int far = 0;
            for (int64_t i = 0; i < V; i++)
                far += fabs(u.distance[i] - cJSON_GetArrayItem(dist, (int)i)->valuedouble) > 2e-6 + 1e-5 * u.distance[i];
            EXPECT(far == 0, "%d distances differ from the reference's", far);
            /* flagged == the ids the base never read (ground truth) == the reference indicator's flags */
            static const char *const lists[] = {"never_trained_ids", "flagged_ids"};
            for (int k = 0; k < 2; k++) {
                const cJSON *want = cJSON_GetObjectItem(exp, lists[k]), *id;
                bool *in = calloc((size_t)V, sizeof *in);
                cJSON_ArrayForEach(id, want) in[id->valueint] = true;
                int missing = 0, extra = 0;
                for (int64_t i = 0; i < V; i++) {
                    missing += in[i] && !u.flagged[i];
                    extra += !in[i] && u.flagged[i];
                }
                EXPECT(missing == 0 && extra == 0 && u.n_flagged == cJSON_GetArraySize(want),
                       "%s: %d of %d not flagged, %d flagged that are not in it", lists[k], missing,
                       cJSON_GetArraySize(want), extra);
                free(in);
            }
            printf("demo_v1: %lld of %lld flagged (spread %.4f, median %.4f, threshold %.4f)\n", (long long)u.n_flagged,
                   (long long)V, u.spread, u.median_distance, u.threshold);
            dk_undertrained_free(&u);
        }
        free(ref);
    }
    cJSON_Delete(exp);
    if (ck) dk_st_close(ck);
    if (tok) dk_tokenizer_free(tok);
    free(dir), free(tok_path), free(st_path), free(exp_path);
}

static void test_published_tokenizers(void) {
    static const char *const names[] = {"tokenizers/qwen3", "tokenizers/llama3_1", "tokenizers/gemma3"};
    for (int k = 0; k < 3; k++) {
        char *path = dk_fixture_path(names[k]);
        dk_err err = {0};
        dk_tokenizer *tok = dk_tokenizer_load(path, &err);
        if (EXPECT(tok != NULL, "%s: %s", path, err.msg)) {
            int32_t *ref;
            int64_t n_ref, V = dk_tokenizer_vocab_size(tok);
            dk_undertrained_reference_ids(tok, V, &ref, &n_ref);
            int lone = 0;
            for (int64_t j = 0; j < n_ref; j++) lone += lone_impossible_byte(tok, ref[j]);
            /* the 13 bytes 0xC0, 0xC1, 0xF5-0xFF, each a token of these vocabularies, and nothing else */
            EXPECT(n_ref == 13 && lone == 13, "%s: %lld reference ids, %d of them lone impossible bytes", names[k],
                   (long long)n_ref, lone);
            /* rows past the tokenizer's vocabulary (padding) are provably unused too */
            int32_t *ref_padded;
            int64_t n_padded;
            dk_undertrained_reference_ids(tok, V + 5, &ref_padded, &n_padded);
            EXPECT(n_padded == n_ref + 5 && ref_padded[n_padded - 1] == V + 4, "%s: padding rows are not reference ids",
                   names[k]);
            free(ref_padded);
            free(ref);
            dk_tokenizer_free(tok);
        }
        free(path);
    }
}

static void test_random_models(void) {
    static const char *const models[] = {"gemma2", "gemma3", "llama", "llama_f32", "mistral", "qwen2", "qwen3"};
    const int32_t ref[13] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        char *rel = dk_sprintf("engine/models/%s", models[k]), *dir = dk_fixture_path(rel);
        dk_err err = {0};
        dk_model m;
        if (EXPECT(dk_model_open(dir, &m, &err) == 0, "%s: %s", dir, err.msg)) {
            dk_undertrained u;
            if (EXPECT(dk_undertrained_compute(m.w.lm_head, ref, 13, &u, &err) == 0, "%s: %s", models[k], err.msg)) {
                EXPECT(u.status == DK_UNDERTRAINED_NO_CLUSTER && u.n_flagged == 0,
                       "%s (random weights): status %s, %lld flagged (spread %.3f, median %.3f)", models[k],
                       dk_undertrained_status_name(u.status), (long long)u.n_flagged, u.spread, u.median_distance);
                dk_undertrained_free(&u);
            }
            if (EXPECT(dk_undertrained_compute(m.w.lm_head, ref, 1, &u, &err) == 0, "%s: %s", models[k], err.msg)) {
                EXPECT(u.status == DK_UNDERTRAINED_NO_REFERENCE && u.n_flagged == 0, "%s with one reference id: %s",
                       models[k], dk_undertrained_status_name(u.status));
                dk_undertrained_free(&u);
            }
            EXPECT(dk_undertrained_for_model(&m, NULL, &u, &err) == 0 && u.status == DK_UNDERTRAINED_NO_REFERENCE,
                   "%s without a tokenizer: %s", models[k], dk_undertrained_status_name(u.status));
            dk_undertrained_free(&u);
            const int32_t bad[2] = {0, (int32_t)m.cfg.vocab_size};
            EXPECT(dk_undertrained_compute(m.w.lm_head, bad, 2, &u, &err) != 0 && strstr(err.msg, "is not a row"),
                   "a reference id past the vocabulary is an error: %s", err.msg);
            dk_undertrained_free(&u);
            dk_model_close(&m);
        }
        free(rel);
        free(dir);
    }
}

static void test_mode(void) {
    dk_undertrained_mode mode;
    dk_err err = {0};
    EXPECT(dk_undertrained_mode_parse("mark", "k", &mode, &err) == 0 && mode == DK_UNDERTRAINED_MARK, "mark");
    EXPECT(dk_undertrained_mode_parse("filter", "k", &mode, &err) == 0 && mode == DK_UNDERTRAINED_FILTER, "filter");
    EXPECT(dk_undertrained_mode_parse("off", "k", &mode, &err) == 0 && mode == DK_UNDERTRAINED_OFF, "off");
    EXPECT(dk_undertrained_mode_parse("hide", "diffing.undertrained_tokens", &mode, &err) != 0 &&
           err.code == DK_EXIT_USAGE && strstr(err.msg, "diffing.undertrained_tokens: 'hide' is not one of mark"),
           "a bad value names the key: %s", err.msg);
}

int main(void) {
    test_can_occur();
    test_demo_v1();
    test_published_tokenizers();
    test_random_models();
    test_mode();
    return dk_test_finish("test_undertrained");
}
