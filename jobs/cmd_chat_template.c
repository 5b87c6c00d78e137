/* cmd_chat_template.c — `diffkit chat-template`: JSON Lines {"messages": [...]} -> {"text": "..."} (or
 * {"ids": [...]} with --ids), one output line per input line, in order: the chat template of the family
 * rendered natively, as transformers' apply_chat_template(messages, tokenize=False) gives it. The family
 * comes from --family (the names model configs use in `chat_template:`) or is recognized from the
 * tokenizer_config.json next to tokenizer.json. --ids encodes the text without adding special tokens (the
 * template already holds the BOS). Tool definitions and tool calls are refused (an error naming the line):
 * the templates' tool branches are not implemented, and rendering without them would be silently wrong. */
#include "cli_numbers.h"
#include "commands.h"

#include "io/out_file.h"
#include "tokenizer/chat_template.h"
#include "io/json_text.h"
#include "tokenizer/tok_jsonl.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: diffkit chat-template --tokenizer PATH [--family NAME] [--generation-prompt]\n"
                 "                             [--enable-thinking true|false] [--date \"26 Jul 2024\"] [--ids]\n"
                 "                             [--input IN.jsonl] [--output OUT.jsonl]\n\n"
                 "Reads {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} lines (stdin by default) and writes\n"
                 "{\"text\": \"...\"} lines (stdout by default). NAME: gemma3, gemma2, llama3 (3.1/3.2), llama3_0, qwen3,\n"
                 "qwen2.5; without --family it is recognized from PATH's tokenizer_config.json. --generation-prompt\n"
                 "appends the assistant turn header; --enable-thinking is Qwen3's switch; --date pins Llama 3's\n"
                 "\"Today Date\"; --ids writes {\"ids\": [...]} (the text encoded without adding special tokens).\n");
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int cmd_chat_template(int argc, char **argv) {
    const char *tok_path = NULL, *family_name = NULL, *in_path = NULL, *out_path = NULL;
    dk_chat_options opt = {.enable_thinking = -1};
    bool want_ids = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_path = argv[++i];
        else if (strcmp(argv[i], "--family") == 0 && i + 1 < argc) family_name = argv[++i];
        else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc) in_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--date") == 0 && i + 1 < argc) opt.date_string = argv[++i];
        else if (strcmp(argv[i], "--generation-prompt") == 0) opt.add_generation_prompt = true;
        else if (strcmp(argv[i], "--ids") == 0) want_ids = true;
        else if (strcmp(argv[i], "--enable-thinking") == 0 && i + 1 < argc)
            opt.enable_thinking = cli_bool("chat-template", "--enable-thinking", argv[++i]);
        else {
            fprintf(stderr, "diffkit chat-template: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!tok_path) {
        fprintf(stderr, "diffkit chat-template: --tokenizer PATH is required (a folder with tokenizer.json)\n");
        return DK_EXIT_USAGE;
    }
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    if (!tok) dk_die(&err);
    dk_chat_family family;
    if ((family_name ? dk_chat_family_from_name(family_name, &family, &err)
                     : dk_chat_family_detect(dk_tokenizer_config_json(tok), &family, &err)) < 0) {
        dk_err_prefix(&err, "%s: ", tok_path);
        dk_die(&err);
    }
    char why[512];
    if (!dk_chat_family_fits(family, tok, why, sizeof why))
        fprintf(stderr, "diffkit chat-template: warning: %s: %s\n", tok_path, why);
    char *bos = dk_chat_config_bos_token(dk_tokenizer_config_json(tok));
    if (bos && (family == DK_CHAT_GEMMA3 || family == DK_CHAT_GEMMA2 || family == DK_CHAT_LLAMA3 ||
                family == DK_CHAT_LLAMA3_0))
        opt.bos_token = bos;
    dk_jsonl_reader in;
    if (dk_jsonl_open(&in, in_path, &err) < 0) dk_die(&err);
    dk_out_file out;
    const char *inputs[] = {in_path ? in_path : "-"};
    if (dk_out_open(&out, out_path, inputs, 1, &err) < 0) dk_die(&err);
    int rc = 0;
    for (;;) {
        cJSON *obj = NULL;
        int got = dk_jsonl_next(&in, &obj, &err);
        if (got <= 0) {
            rc = got;
            break;
        }
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, "messages");
        size_t n = cJSON_IsArray(msgs) ? (size_t)cJSON_GetArraySize(msgs) : 0, i = 0;
        dk_chat_message *m = calloc(n + 1, sizeof *m);
        for (const cJSON *x = cJSON_IsArray(msgs) ? msgs->child : NULL; x; x = x->next, i++)
            m[i] = (dk_chat_message){json_str(x, "role"), json_str(x, "content"), json_str(x, "reasoning_content")};
        bool has_tools = cJSON_GetObjectItemCaseSensitive(obj, "tools") != NULL;
        for (const cJSON *x = cJSON_IsArray(msgs) ? msgs->child : NULL; x; x = x->next)
            has_tools = has_tools || cJSON_GetObjectItemCaseSensitive(x, "tool_calls") != NULL;
        char *text = NULL;
        if (dk_json_has_nul_escape(in.line, strlen(in.line))) /* cJSON's strings would stop at it */
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: the line holds U+0000 (\\u0000), which the native chat "
                            "templates do not render (`diffkit tokenize` encodes it in plain text)", in.name,
                            in.line_no);
        else if (has_tools)
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: \"tools\" and \"tool_calls\" are not supported by the native "
                            "chat templates (tool results as role \"tool\" are)", in.name, in.line_no);
        else if (!cJSON_IsArray(msgs) || n == 0)
            rc = dk_err_set(&err, DK_EXIT_RUNTIME, "%s:%ld: expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}",
                            in.name, in.line_no);
        else if (!(text = dk_chat_render(family, m, n, &opt, &err))) {
            dk_err_prefix(&err, "%s:%ld: %s template: ", in.name, in.line_no, dk_chat_family_name(family));
            rc = -1;
        }
        free(m);
        cJSON_Delete(obj);
        if (rc < 0) break;
        if (want_ids) {
            dk_tok_ids ids = {0};
            if (dk_tokenizer_encode(tok, text, strlen(text), false, &ids, &err) < 0) {
                dk_err_prefix(&err, "%s:%ld: ", in.name, in.line_no);
                free(text);
                rc = -1;
                break;
            }
            fputs("{\"ids\": [", out.f);
            for (size_t k = 0; k < ids.n; k++) fprintf(out.f, k ? ", %d" : "%d", ids.ids[k]);
            fputs("]}\n", out.f);
            dk_tok_ids_free(&ids);
        } else {
            fputs("{\"text\": ", out.f);
            dk_json_write_string(out.f, text, strlen(text));
            fputs("}\n", out.f);
        }
        free(text);
        if ((rc = dk_out_check(&out, &err)) < 0) break;
    }
    free(bos);
    dk_jsonl_close(&in);
    if (rc == 0) rc = dk_out_commit(&out, &err);
    else dk_out_abort(&out);
    dk_tokenizer_free(tok);
    if (rc < 0) dk_die(&err);
    return 0;
}
