/* test_demo_tokens.c — our tokenizer and chat template on the bundled demo tokenizer (models/demo/base) against
 * the token ids that HF `tokenizers` and transformers' apply_chat_template gave when tools/make_demo_models.py
 * recorded the golden sequences (models/demo/golden/index.json).
 *
 * Why: the demo tokenizer is one we trained (byte-level BPE, Llama 3 split regex, non-special <think> tokens)
 * and its tokenizer_config.json carries Qwen3's published chat template. This checks, on the exact files that
 * `make demo` runs, that the family is recognised from that file without a --family hint, that the rendered
 * chat prompt is byte for byte the reference's, and that its ids and the text prompts' ids are the reference's.
 * Each golden entry holds `prompt` (the text before the cut) and `token_ids` (the first ids of it); the chat
 * entry also holds its `messages`, `add_generation_prompt` and `enable_thinking`. */
#include "test.h"

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "io/file.h"

#include <cjson/cJSON.h>

/* ids of `text` (no special tokens added: the demo tokenizer has no BOS template) vs the reference prefix */
static void check_ids(dk_tokenizer *tok, const char *name, const char *text, const cJSON *want) {
    dk_tok_ids ids = {0};
    dk_err err = {0};
    if (!EXPECT(dk_tokenizer_encode(tok, text, strlen(text), true, &ids, &err) == 0, "%s: encode: %s", name, err.msg))
        return;
    int n = cJSON_GetArraySize(want);
    EXPECT((int)ids.n >= n, "%s: %zu ids, the reference has at least %d", name, ids.n, n);
    int first_diff = -1;
    for (int i = 0; i < n && i < (int)ids.n && first_diff < 0; i++)
        if (ids.ids[i] != (int32_t)cJSON_GetArrayItem(want, i)->valuedouble) first_diff = i;
    EXPECT(first_diff < 0, "%s: id %d differs from the reference", name, first_diff);
    printf("%-8s %d reference ids matched\n", name, n);
    dk_tok_ids_free(&ids);
}

int main(void) {
    const char *root = getenv("DIFFKIT_SOURCE_DIR");
    if (!root) {
        fprintf(stderr, "DIFFKIT_SOURCE_DIR is not set: run this test through ctest\n");
        return 2;
    }
    char *base_dir = dk_sprintf("%s/models/demo/base", root);
    char *index_path = dk_sprintf("%s/models/demo/golden/index.json", root);
    dk_err err = {0};
    size_t len = 0;
    char *index_text = dk_read_file(index_path, &len, &err);
    cJSON *index = index_text ? cJSON_Parse(index_text) : NULL;
    dk_tokenizer *tok = NULL;
    if (EXPECT(index != NULL, "cannot read %s: %s", index_path, err.msg) &&
        EXPECT((tok = dk_tokenizer_load(base_dir, &err)) != NULL, "load %s: %s", base_dir, err.msg)) {
        dk_chat_family family = DK_CHAT_GEMMA3;
        EXPECT(dk_chat_family_detect(dk_tokenizer_config_json(tok), &family, &err) == 0 && family == DK_CHAT_QWEN3,
               "the demo tokenizer_config.json is not recognised as qwen3: %s", err.msg);
        int seen_chat = 0;
        const cJSON *seq;
        cJSON_ArrayForEach(seq, cJSON_GetObjectItem(index, "sequences")) {
            const char *name = cJSON_GetObjectItem(seq, "name")->valuestring;
            const cJSON *prompt = cJSON_GetObjectItem(seq, "prompt");
            const cJSON *want = cJSON_GetObjectItem(seq, "token_ids");
            if (!EXPECT(cJSON_IsString(prompt) && cJSON_IsArray(want), "%s: no prompt/token_ids in %s", name,
                        index_path))
                continue;
            const cJSON *messages = cJSON_GetObjectItem(seq, "messages");
            if (messages) {
                seen_chat = 1;
                int n = cJSON_GetArraySize(messages);
                dk_chat_message msgs[8] = {0};
                EXPECT(n >= 1 && n <= 8, "%s: %d messages", name, n);
                for (int i = 0; i < n && i < 8; i++) {
                    const cJSON *msg = cJSON_GetArrayItem(messages, i);
                    msgs[i].role = cJSON_GetObjectItem(msg, "role")->valuestring;
                    msgs[i].content = cJSON_GetObjectItem(msg, "content")->valuestring;
                }
                dk_chat_options opt = {
                    .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(seq, "add_generation_prompt")),
                    .enable_thinking = cJSON_IsTrue(cJSON_GetObjectItem(seq, "enable_thinking")) ? 1 : 0};
                char *text = dk_chat_render(family, msgs, (size_t)(n < 8 ? n : 8), &opt, &err);
                if (EXPECT(text != NULL, "%s: render: %s", name, err.msg)) {
                    EXPECT(strcmp(text, prompt->valuestring) == 0, "%s: rendered %s\nreference %s", name, text,
                           prompt->valuestring);
                    check_ids(tok, name, text, want);
                }
                free(text);
            } else {
                check_ids(tok, name, prompt->valuestring, want);
            }
        }
        EXPECT(seen_chat, "%s has no chat sequence", index_path);
    }
    dk_tokenizer_free(tok);
    cJSON_Delete(index);
    free(index_text);
    free(base_dir);
    free(index_path);
    return dk_test_finish("test_demo_tokens");
}
