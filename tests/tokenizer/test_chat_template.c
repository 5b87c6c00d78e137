/* test_chat_template.c — the native chat templates against transformers' apply_chat_template
 * (tests/fixtures/tokenizers/chat/<family>.jsonl, written by tools/make_chat_template_goldens.py): the
 * rendered text byte for byte, the ids of that text (encoded without special tokens, so the template's BOS
 * is the only one), and an error wherever the Jinja template raises. Also: the family is recognized from
 * each real tokenizer_config.json. */
#include "test.h"

#include "core/error.h"
#include "io/file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

static const struct {
    const char *family, *tokenizer;
} FAMILIES[] = {{"gemma3", "gemma3"}, {"gemma2", "gemma3"}, {"llama3", "llama3_1"},
                {"llama3_0", "llama3_1"}, {"qwen3", "qwen3"}, {"qwen2.5", "qwen3"}};

static const char *str_or_null(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void check_family(const char *family_name, const char *tokenizer_name) {
    char *root = dk_fixture_path("tokenizers");
    char *tok_path = dk_sprintf("%s/%s", root, tokenizer_name);
    char *golden_path = dk_sprintf("%s/chat/%s.jsonl", root, family_name);
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    size_t size;
    char *golden = dk_read_file(golden_path, &size, &err);
    dk_chat_family family;
    if (!EXPECT(tok && golden && dk_chat_family_from_name(family_name, &family, &err) == 0, "%s", err.msg)) goto out;
    int text_ok = 0, ids_ok = 0, err_ok = 0, cases = 0;
    for (char *line = strtok(golden, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(row, "messages");
        size_t n = (size_t)cJSON_GetArraySize(msgs), i = 0;
        dk_chat_message *m = calloc(n + 1, sizeof *m);
        for (const cJSON *x = msgs->child; x; x = x->next, i++)
            m[i] = (dk_chat_message){str_or_null(x, "role"), str_or_null(x, "content"), str_or_null(x, "reasoning_content")};
        const cJSON *think = cJSON_GetObjectItemCaseSensitive(row, "enable_thinking");
        dk_chat_options opt = {.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "add_generation_prompt")),
                               .enable_thinking = cJSON_IsBool(think) ? cJSON_IsTrue(think) : -1,
                               .date_string = str_or_null(row, "date_string")};
        dk_err rerr = {0};
        char *text = dk_chat_render(family, m, n, &opt, &rerr);
        const char *want = str_or_null(row, "text");
        cases++;
        if (!want) {
            if (EXPECT(!text && rerr.msg[0], "%s case %d: transformers raised (%s) but we rendered", family_name, cases,
                       str_or_null(row, "error")))
                err_ok++;
        } else if (EXPECT(text && strcmp(text, want) == 0, "%s case %d: text differs\n  want %s\n  got  %s", family_name,
                          cases, want, text ? text : rerr.msg)) {
            text_ok++;
            dk_tok_ids ids = {0};
            EXPECT(dk_tokenizer_encode(tok, text, strlen(text), false, &ids, &err) == 0, "%s", err.msg);
            const cJSON *want_ids = cJSON_GetObjectItemCaseSensitive(row, "ids");
            bool same = (size_t)cJSON_GetArraySize(want_ids) == ids.n;
            size_t k = 0;
            for (const cJSON *v = want_ids->child; same && v; v = v->next, k++) same = (int32_t)v->valuedouble == ids.ids[k];
            if (EXPECT(same, "%s case %d: ids differ", family_name, cases)) ids_ok++;
            dk_tok_ids_free(&ids);
        }
        free(text);
        free(m);
        cJSON_Delete(row);
    }
    printf("%-9s %d cases: text %d, ids %d, expected errors %d\n", family_name, cases, text_ok, ids_ok, err_ok);
out:
    dk_tokenizer_free(tok);
    free(golden);
    free(golden_path);
    free(tok_path);
    free(root);
}

static void check_detection(void) {
    static const struct {
        const char *tokenizer;
        dk_chat_family want;
    } CASES[] = {{"gemma3", DK_CHAT_GEMMA3}, {"qwen3", DK_CHAT_QWEN3}, {"llama3_1", DK_CHAT_LLAMA3_0}};
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *root = dk_fixture_path("tokenizers");
        char *path = dk_sprintf("%s/%s", root, CASES[i].tokenizer);
        dk_err err = {0};
        dk_tokenizer *tok = dk_tokenizer_load(path, &err);
        dk_chat_family got = DK_CHAT_GEMMA2;
        EXPECT(tok && dk_chat_family_detect(dk_tokenizer_config_json(tok), &got, &err) == 0 && got == CASES[i].want,
               "%s: detected %s: %s", CASES[i].tokenizer, dk_chat_family_name(got), err.msg);
        dk_tokenizer_free(tok);
        free(path);
        free(root);
    }
    dk_chat_family f;
    dk_err err = {0};
    EXPECT(dk_chat_family_from_name("mistral", &f, &err) < 0, "unknown family accepted");
    EXPECT_CONTAINS(err.msg, "unknown chat template family 'mistral'");
}

int main(void) {
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++) check_family(FAMILIES[i].family, FAMILIES[i].tokenizer);
    check_detection();
    return dk_test_finish("test_chat_template");
}
