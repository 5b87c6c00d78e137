/* test_cli_engine.c — `diffkit forward` and `diffkit generate` on the golden models, end to end: the files
 * and ids the commands write are compared with transformers/peft (tools/make_model_goldens.py), with the
 * thresholds of test_forward.c (5e-5 relative, argmax equal everywhere; see there for why); amplified adapters
 * (--amplification, --adapter PATH@W or PATH@PRESET) against tools/make_amplification_goldens.py. Usage (ctest):
 * test_cli_engine PATH/TO/diffkit. Error exits are checked by the cli_forward_* ctests (CMakeLists.txt). */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"

#include <cjson/cJSON.h>
#include <sys/wait.h>

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

/* A copy of model folder `src` in tmp/name, its tokenizer.json replaced by `tokenizer` (NULL: copied). */
static char *model_copy(const char *fx, const char *src, const char *tmp, const char *name, const char *tokenizer) {
    char *dir = dk_sprintf("%s/%s", tmp, name);
    dk_err err = {0};
    CHECK(dk_mkdirs(dir, &err) == 0, "%s", err.msg);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        char *from = dk_sprintf("%s/models/%s/%s", fx, src, files[i]), *to = dk_sprintf("%s/%s", dir, files[i]);
        size_t n;
        unsigned char *bytes = engine_read_all(from, &n);
        if (i == 2 && tokenizer) engine_write_all(to, tokenizer, strlen(tokenizer));
        else engine_write_all(to, bytes, n);
        free(bytes);
        free(from);
        free(to);
    }
    return dir;
}

/* An exit code and whether the command's stderr contains `needle`. */
static bool run_expect(int code, const char *needle, const char *tmp, const char *cmd) {
    char *log = dk_sprintf("%s/cmd.log", tmp), *full = dk_sprintf("%s 2>%s", cmd, log);
    int rc = system(full); /* a failing command is expected here: not run(), which reports failures */
    free(full);
    size_t n;
    char *text = (char *)engine_read_all(log, &n);
    bool ok = WIFEXITED(rc) && WEXITSTATUS(rc) == code && strstr(text, needle) != NULL;
    if (!ok) fprintf(stderr, "expected exit %d and \"%s\", got %d:\n%s\n", code, needle, WEXITSTATUS(rc), text);
    free(text);
    free(log);
    return ok;
}

/* --amplification and --adapter PATH@W / PATH@PRESET against peft with lora_B scaled the seed's way
 * (tools/make_amplification_goldens.py; llama_text has 3 layers, so default_2.5x is 2.5 everywhere). */
static void test_amplification_cli(const char *fx, const char *tmp) {
    static const char *const cases[][2] = {{"--amplification %s/amplification/configs/mixed.yaml", "mixed"},
                                           {"--amplification %s/amplification/configs/zero.yaml", "zero"},
                                           {"@default_2.5x", "default_2.5x"}, {"@2.5", "default_2.5x"},
                                           {"@negative_1x", "negative_1x"}};
    char *golden = dk_sprintf("%s/amplification/golden.safetensors", fx);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bool suffix = cases[i][0][0] == '@';
        char *how = dk_sprintf(cases[i][0], fx);
        EXPECT(run("%s forward --model %s/models/llama_text --adapter %s/adapters/llama_text_all%s%s --tokens "
                   "%s/amplification/tokens.jsonl --output %s/amp.st --layers none 2>/dev/null", diffkit, fx, fx,
                   suffix ? how : " ", suffix ? "" : how, fx, tmp) == 0, "forward %s", how);
        char *out = dk_sprintf("%s/amp.st", tmp), *prefix = dk_sprintf("%s.", cases[i][1]);
        char label[128];
        snprintf(label, sizeof label, "forward amplified %s", suffix ? cases[i][0] : cases[i][1]);
        compare_files(label, out, golden, prefix, 300, 4);
        free(out);
        free(prefix);
        free(how);
    }
    free(golden);
    char *cmd = dk_sprintf("%s forward --model %s/models/llama_text --amplification negative_1x --tokens "
                           "%s/amplification/tokens.jsonl --output %s/amp.st", diffkit, fx, fx, tmp);
    EXPECT(run_expect(2, "--amplification scales a LoRA adapter: give it with --adapter", tmp, cmd), "no adapter");
    free(cmd);
    cmd = dk_sprintf("%s forward --model %s/models/llama_text --adapter %s/adapters/llama_text_all --adapter-scale 2 "
                     "--amplification negative_1x --tokens %s/amplification/tokens.jsonl --output %s/amp.st", diffkit,
                     fx, fx, fx, tmp);
    EXPECT(run_expect(2, "--adapter-scale and --amplification exclude each other", tmp, cmd), "scale + amplification");
    free(cmd);
    cmd = dk_sprintf("%s forward --model %s/models/llama_text --adapter %s/adapters/llama_text_all@default_4x "
                     "--tokens %s/amplification/tokens.jsonl --output %s/amp.st", diffkit, fx, fx, fx, tmp);
    EXPECT(run_expect(2, "'default_4x' is neither a file nor a preset", tmp, cmd), "unknown preset");
    free(cmd);
    /* llama_lora adapts layers 0 and 2: negative_1x on layer 1 does nothing, and the command says so */
    cmd = dk_sprintf("%s forward --model %s/models/llama --adapter %s/adapters/llama_lora@negative_1x "
                     "--tokens %s/models/llama/tokens.jsonl --output %s/amp.st --logits none --layers 0", diffkit, fx,
                     fx, fx, tmp);
    EXPECT(run_expect(0, "sets a weight on 2 (layer, attention|mlp) pairs that the adapter", tmp, cmd), "warning");
    free(cmd);
}

/* An organism published as a full checkpoint: --finetuned-model runs it (llama_ft: every weight of llama moved;
 * golden from transformers) after checking shapes and tokenizer against --model. */
static void test_finetuned_model_cli(const char *fx, const char *tmp) {
    EXPECT(run("%s forward --model %s/models/llama --finetuned-model %s/models/llama_ft --tokens "
               "%s/models/llama/tokens.jsonl --output %s/ft.st 2>/dev/null", diffkit, fx, fx, fx, tmp) == 0,
           "forward --finetuned-model");
    char *out = dk_sprintf("%s/ft.st", tmp), *golden = dk_sprintf("%s/models/llama_ft/golden.safetensors", fx);
    compare_files("forward --finetuned-model llama_ft", out, golden, "", 96, 16);
    free(out);
    free(golden);

    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s forward --model %s/models/llama --finetuned-model %s/models/mistral --tokens "
             "%s/models/llama/tokens.jsonl --output %s/x.st", diffkit, fx, fx, fx, tmp);
    EXPECT(run_expect(2, "does not have the base model's shapes", tmp, cmd), "a finetune of another shape");
    snprintf(cmd, sizeof cmd, "%s forward --model %s/models/llama --finetuned-model %s/models/llama_ft --adapter "
             "%s/adapters/llama_lora --tokens %s/models/llama/tokens.jsonl --output %s/x.st", diffkit, fx, fx, fx, fx,
             tmp);
    EXPECT(run_expect(2, "--adapter and --finetuned-model exclude each other", tmp, cmd), "adapter + finetune");

    /* tokenizers: the same content re-saved (another key order, another "version") is the same tokenizer; a
     * changed merge list is not */
    char *tok_path = dk_sprintf("%s/models/llama_text/tokenizer.json", fx);
    size_t n;
    char *tok_text = (char *)engine_read_all(tok_path, &n);
    cJSON *tok = cJSON_Parse(tok_text);
    cJSON *version = cJSON_DetachItemFromObjectCaseSensitive(tok, "version");
    cJSON_Delete(version);
    cJSON_AddStringToObject(tok, "version", "9.9");
    char *resaved = cJSON_Print(tok);
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "merges");
    CHECK(cJSON_GetArraySize(merges) > 3, "the fixture tokenizer has merges");
    cJSON_DeleteItemFromArray(merges, 2);
    char *changed = cJSON_Print(tok);
    char *same_dir = model_copy(fx, "llama_text", tmp, "ft_same_tokenizer", resaved);
    char *other_dir = model_copy(fx, "llama_text", tmp, "ft_other_tokenizer", changed);
    EXPECT(run("%s generate --model %s/models/llama_text --finetuned-model %s --prompt 'The quick' "
               "--max-new-tokens 3 >/dev/null 2>&1", diffkit, fx, same_dir) == 0,
           "a re-saved, identical tokenizer was refused");
    snprintf(cmd, sizeof cmd, "%s generate --model %s/models/llama_text --finetuned-model %s --prompt 'The quick' "
             "--max-new-tokens 3", diffkit, fx, other_dir);
    EXPECT(run_expect(2, "use different tokenizers", tmp, cmd) && run_expect(2, "in \"model\"", tmp, cmd),
           "a different tokenizer must be refused, naming the part that differs");
    printf("  %-36s shapes, adapter exclusion and tokenizers checked\n", "forward/generate --finetuned-model");
    cJSON_Delete(tok);
    free(resaved);
    free(changed);
    free(tok_text);
    free(tok_path);
    free(same_dir);
    free(other_dir);
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
    test_finetuned_model_cli(fx, tmp);
    test_amplification_cli(fx, tmp);
    test_generate_cli(fx);
    test_generate_text_cli(fx);
    engine_scratch_cleanup();
    free(fx);
    return dk_test_finish("test_cli_engine");
}
