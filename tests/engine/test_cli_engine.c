/* test_cli_engine.c — `diffkit forward` and `diffkit generate` on the golden models, end to end: the files
 * and ids the commands write are compared with transformers/peft (tools/make_model_goldens.py), with the
 * thresholds of test_forward.c (5e-5 relative, argmax equal everywhere; see there for why). Usage (ctest):
 * test_cli_engine PATH/TO/diffkit. Error exits are checked by the cli_forward_* ctests (CMakeLists.txt). */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"

#include <cjson/cJSON.h>

static const double REL_TOL = 5e-5;
static const char *diffkit;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char cmd[4096];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static dk_st_checkpoint *open_st(const char *path) {
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    if (!ck) dk_die(&err);
    return ck;
}

/* Every tensor of `out` against the same name in `golden` (prefix: the golden's name prefix). */
static void compare_files(const char *label, const char *out_path, const char *golden_path, const char *prefix,
                          int64_t vocab, int64_t expect_tensors) {
    dk_st_checkpoint *out = open_st(out_path), *golden = open_st(golden_path);
    EXPECT((int64_t)out->n_tensors == expect_tensors, "%s: %zu tensors written, expected %lld", label, out->n_tensors,
           (long long)expect_tensors);
    double worst = 0;
    for (size_t i = 0; i < out->n_tensors; i++) {
        const dk_st_tensor *t = &out->tensors[i];
        char *name = dk_sprintf("%s%s", prefix, t->name);
        float *got = golden_load(out, t->name, t->numel), *want = golden_load(golden, name, t->numel);
        double e = golden_rel_error(got, want, t->numel);
        EXPECT(e <= REL_TOL, "%s %s: relative error %.3g", label, t->name, e);
        if (strstr(t->name, "logits"))
            EXPECT(golden_argmax_mismatches(got, want, t->numel / vocab, vocab) == 0, "%s %s: argmax differs", label,
                   t->name);
        worst = e > worst ? e : worst;
        free(got);
        free(want);
        free(name);
    }
    printf("  %-36s %zu tensors, max rel error %.2e\n", label, out->n_tensors, worst);
    dk_st_close(out);
    dk_st_close(golden);
}

static void test_forward_cli(const char *fx, const char *tmp) {
    /* llama: every layer and all logits of 4 sequences = 4 x (3 + 1) tensors */
    EXPECT(run("%s forward --model %s/models/llama --tokens %s/models/llama/tokens.jsonl --output %s/llama.st "
               "2>/dev/null", diffkit, fx, fx, tmp) == 0, "forward llama");
    char *out = dk_sprintf("%s/llama.st", tmp), *golden = dk_sprintf("%s/models/llama/golden.safetensors", fx);
    compare_files("forward llama (all layers, logits)", out, golden, "", 96, 16);
    free(out);
    free(golden);

    /* gemma3 + LoRA at multiplier 1 (peft) and 2 (merged reference), layer 1 only, no logits */
    for (int w = 1; w <= 2; w++) {
        EXPECT(run("%s forward --model %s/models/gemma3 --adapter %s/adapters/gemma3_lora --adapter-scale %d "
                   "--tokens %s/models/gemma3/tokens.jsonl --output %s/lora%d.st --layers 1 --logits none 2>/dev/null",
                   diffkit, fx, fx, w, fx, tmp, w) == 0, "forward gemma3 + lora");
        out = dk_sprintf("%s/lora%d.st", tmp, w);
        golden = dk_sprintf("%s/adapters/gemma3_lora/golden.safetensors", fx);
        char label[64];
        snprintf(label, sizeof label, "forward gemma3 + LoRA w=%d (layer 1)", w);
        compare_files(label, out, golden, w == 2 ? "w2." : "", 96, 4);
        free(out);
        free(golden);
    }

    /* --adapter-scale 0 writes exactly the base model's numbers */
    EXPECT(run("%s forward --model %s/models/gemma3 --adapter %s/adapters/gemma3_lora --adapter-scale 0 --tokens "
               "%s/models/gemma3/tokens.jsonl --output %s/scale0.st --logits last 2>/dev/null",
               diffkit, fx, fx, fx, tmp) == 0, "forward scale 0");
    EXPECT(run("%s forward --model %s/models/gemma3 --tokens %s/models/gemma3/tokens.jsonl --output %s/base.st "
               "--logits last 2>/dev/null", diffkit, fx, fx, tmp) == 0, "forward base");
    char *a = dk_sprintf("%s/scale0.st", tmp), *b = dk_sprintf("%s/base.st", tmp);
    size_t na, nb;
    unsigned char *ba = engine_read_all(a, &na), *bb = engine_read_all(b, &nb);
    EXPECT(na == nb && memcmp(ba, bb, na) == 0, "--adapter-scale 0 output differs from the base model's");
    free(ba);
    free(bb);
    free(a);
    free(b);
}

static void test_generate_cli(const char *fx) {
    static const char *const models[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_mm"};
    int same = 0;
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        char *path = dk_sprintf("%s/models/%s/generate.json", fx, models[k]);
        size_t size;
        char *text = (char *)engine_read_all(path, &size);
        cJSON *root = cJSON_Parse(text);
        const cJSON *first = cJSON_GetArrayItem(root, 1);
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(first, "prompt");
        char *want = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(first, "output"));
        char ids[512] = "";
        const cJSON *v;
        cJSON_ArrayForEach(v, prompt) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", ids[0] ? "," : "",
                                               v->valueint);
        char *cmd = dk_sprintf("%s generate --model %s/models/%s --prompt-ids %s --max-new-tokens 10", diffkit, fx,
                               models[k], ids);
        FILE *p = popen(cmd, "r");
        char line[2048] = "";
        if (p) {
            if (!fgets(line, sizeof line, p)) line[0] = '\0';
            EXPECT(pclose(p) == 0, "%s exited non-zero", cmd);
        }
        cJSON *got = cJSON_Parse(line);
        char *got_ids = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(got, "ids"));
        same += EXPECT(got_ids && strcmp(got_ids, want) == 0, "generate %s: %s, transformers: %s", models[k],
                       got_ids ? got_ids : line, want);
        free(got_ids);
        cJSON_Delete(got);
        free(cmd);
        free(want);
        cJSON_Delete(root);
        free(text);
        free(path);
    }
    printf("  generate --prompt-ids: %d of %zu models give transformers' greedy ids\n", same,
           sizeof models / sizeof models[0]);
}

/* Text in, text out: the prompt (plain, or --chat: rendered with the model's chat template, Gemma 2's)
 * through the model's own tokenizer, greedy ids, decoded with skip_special_tokens
 * (models/llama_text/generate_text.json, from transformers apply_chat_template + generate + decode). The random
 * model emits byte tokens, so the text holds U+FFFD and control bytes: compared byte for byte. */
static void test_generate_text_cli(const char *fx) {
    char *path = dk_sprintf("%s/models/llama_text/generate_text.json", fx);
    size_t size;
    char *text = (char *)engine_read_all(path, &size);
    cJSON *root = cJSON_Parse(text);
    const cJSON *item;
    int same = 0, total = 0;
    cJSON_ArrayForEach(item, root) {
        const char *prompt = cJSON_GetObjectItemCaseSensitive(item, "prompt")->valuestring;
        const char *want = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
        bool chat = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "chat"));
        char *cmd = dk_sprintf("%s generate --model %s/models/llama_text --prompt '%s' --max-new-tokens 10%s", diffkit,
                               fx, prompt, chat ? " --chat" : "");
        FILE *p = popen(cmd, "r");
        char got[4096] = "";
        size_t n = p ? fread(got, 1, sizeof got - 1, p) : 0;
        got[n] = '\0';
        EXPECT(p && pclose(p) == 0, "%s exited non-zero", cmd);
        if (n > 0 && got[n - 1] == '\n') got[n - 1] = '\0'; /* the command ends its output with a newline */
        same += EXPECT(strcmp(got, want) == 0, "generate --prompt '%s'%s: text differs from transformers'", prompt,
                       chat ? " --chat" : "");
        total++;
        free(cmd);
    }
    printf("  generate --prompt TEXT [--chat] (own tokenizer): %d of %d continuations identical\n", same,
           total);
    cJSON_Delete(root);
    free(text);
    free(path);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli_engine PATH/TO/diffkit\n");
        return 2;
    }
    diffkit = argv[1];
    char *fx = engine_fixture("");
    fx[strlen(fx) - 1] = '\0'; /* no trailing slash */
    const char *tmp = engine_scratch_dir();
    test_forward_cli(fx, tmp);
    test_generate_cli(fx);
    test_generate_text_cli(fx);
    engine_scratch_cleanup();
    free(fx);
    return dk_test_finish("test_cli_engine");
}
