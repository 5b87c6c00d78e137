/* chat_template.c — the chat templates of chat_template.h, written out as C. Each render function follows
 * its family's Jinja template line by line (the template text is quoted above each one, abridged to the
 * branches without tools); Jinja's `trim` is Python's str.strip(). */
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_unicode.h"

#include "core/strutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *LLAMA3_DEFAULT_DATE = "26 Jul 2024";
static const char *QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/* ---- Python string helpers ---- */

/* Python str.isspace() for one char: Unicode White_Space plus U+001C..U+001F. */
static bool py_isspace(uint32_t cp) { return tok_is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

/* Appends s.strip() (Jinja `trim`). */
static void append_trimmed(dk_strbuf *out, const char *s) {
    size_t len = strlen(s), start = 0, end = len;
    while (start < end) {
        size_t l;
        if (!py_isspace(tok_utf8_decode(s + start, &l))) break;
        start += l;
    }
    while (end > start) {
        size_t b = end - 1;
        while (b > start && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        size_t l;
        if (!py_isspace(tok_utf8_decode(s + b, &l))) break;
        end = b;
    }
    dk_strbuf_append_n(out, s + start, end - start);
}

/* s[start, end) with the given char stripped from the chosen sides (Python strip('\n') and friends). */
static void strip_char(const char *s, size_t *start, size_t *end, char c, bool left, bool right) {
    while (left && *start < *end && s[*start] == c) (*start)++;
    while (right && *end > *start && s[*end - 1] == c) (*end)--;
}

/* Python json.dumps(s, ensure_ascii=False) of a string (transformers' `tojson` filter). */
static void append_json_string(dk_strbuf *out, const char *s) {
    dk_strbuf_append(out, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': dk_strbuf_append(out, "\\\""); break;
        case '\\': dk_strbuf_append(out, "\\\\"); break;
        case '\n': dk_strbuf_append(out, "\\n"); break;
        case '\r': dk_strbuf_append(out, "\\r"); break;
        case '\t': dk_strbuf_append(out, "\\t"); break;
        case '\b': dk_strbuf_append(out, "\\b"); break;
        case '\f': dk_strbuf_append(out, "\\f"); break;
        default:
            if (c < 0x20) dk_strbuf_printf(out, "\\u%04x", c);
            else dk_strbuf_append_n(out, (const char *)&c, 1);
        }
    }
    dk_strbuf_append(out, "\"");
}

static bool is_role(const dk_chat_message *m, const char *role) { return strcmp(m->role, role) == 0; }

static const char *find_last(const char *hay, const char *needle) {
    const char *last = NULL;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) last = p;
    return last;
}

/* ---- Gemma ---- */
/* {{ bos_token }}
 * {%- if messages[0]['role'] == 'system' -%} first_user_prefix = messages[0]['content'] + '\n\n'; loop over messages[1:]
 * {%- for message in loop_messages -%}
 *   {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%} raise_exception("Conversation roles must alternate ...")
 *   role = "model" if assistant else message['role']
 *   {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
 * {%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}
 * Gemma 2 has no prefix and raises 'System role not supported' instead. */
static int render_gemma(bool gemma3, const dk_chat_message *m, size_t n, const dk_chat_options *opt, dk_strbuf *out,
                        dk_err *err) {
    dk_strbuf_append(out, opt->bos_token ? opt->bos_token : "<bos>");
    const char *prefix = NULL;
    size_t first = 0;
    if (n > 0 && is_role(&m[0], "system")) {
        if (!gemma3) return dk_err_set(err, DK_EXIT_RUNTIME, "System role not supported (gemma2 has no system role)");
        prefix = m[0].content;
        first = 1;
    }
    for (size_t i = first; i < n; i++) {
        size_t index0 = i - first;
        if (is_role(&m[i], "user") != (index0 % 2 == 0))
            return dk_err_set(err, DK_EXIT_RUNTIME, "Conversation roles must alternate user/assistant/user/assistant/... "
                              "(message %zu is '%s')", i, m[i].role);
        dk_strbuf_append(out, "<start_of_turn>");
        dk_strbuf_append(out, is_role(&m[i], "assistant") ? "model" : m[i].role);
        dk_strbuf_append(out, "\n");
        if (prefix && index0 == 0) {
            dk_strbuf_append(out, prefix);
            dk_strbuf_append(out, "\n\n");
        }
        append_trimmed(out, m[i].content);
        dk_strbuf_append(out, "<end_of_turn>\n");
    }
    if (opt->add_generation_prompt) dk_strbuf_append(out, "<start_of_turn>model\n");
    return 0;
}

/* ---- Llama 3.0 ---- */
/* {% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'
 *   + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}
 * {{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %} */
static void render_llama3_0(const dk_chat_message *m, size_t n, const dk_chat_options *opt, dk_strbuf *out) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) dk_strbuf_append(out, opt->bos_token ? opt->bos_token : "<|begin_of_text|>");
        dk_strbuf_append(out, "<|start_header_id|>");
        dk_strbuf_append(out, m[i].role);
        dk_strbuf_append(out, "<|end_header_id|>\n\n");
        append_trimmed(out, m[i].content);
        dk_strbuf_append(out, "<|eot_id|>");
    }
    if (opt->add_generation_prompt) dk_strbuf_append(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---- Llama 3.1 / 3.2 ---- */
/* {{- bos_token }} date_string defaults to "26 Jul 2024"
 * system_message = messages[0]['content']|trim if messages[0] is system (and dropped), else ""
 * "<|start_header_id|>system<|end_header_id|>\n\n" "Cutting Knowledge Date: December 2023\n"
 * "Today Date: " + date_string + "\n\n" + system_message + "<|eot_id|>"
 * for message: ipython/tool -> "<|start_header_id|>ipython<|end_header_id|>\n\n" + content | tojson + "<|eot_id|>"
 *              (a string "is iterable" in Jinja, so string content goes through tojson too)
 *              else "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content|trim + "<|eot_id|>"
 * add_generation_prompt: "<|start_header_id|>assistant<|end_header_id|>\n\n" */
static void render_llama3(const dk_chat_message *m, size_t n, const dk_chat_options *opt, dk_strbuf *out) {
    dk_strbuf_append(out, opt->bos_token ? opt->bos_token : "<|begin_of_text|>");
    size_t first = 0;
    dk_strbuf_append(out, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
    dk_strbuf_append(out, opt->date_string ? opt->date_string : LLAMA3_DEFAULT_DATE);
    dk_strbuf_append(out, "\n\n");
    if (n > 0 && is_role(&m[0], "system")) {
        append_trimmed(out, m[0].content);
        first = 1;
    }
    dk_strbuf_append(out, "<|eot_id|>");
    for (size_t i = first; i < n; i++) {
        if (is_role(&m[i], "ipython") || is_role(&m[i], "tool")) {
            dk_strbuf_append(out, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            append_json_string(out, m[i].content);
        } else {
            dk_strbuf_append(out, "<|start_header_id|>");
            dk_strbuf_append(out, m[i].role);
            dk_strbuf_append(out, "<|end_header_id|>\n\n");
            append_trimmed(out, m[i].content);
        }
        dk_strbuf_append(out, "<|eot_id|>");
    }
    if (opt->add_generation_prompt) dk_strbuf_append(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---- Qwen ---- */
/* Tool results, shared by Qwen3 and Qwen2.5:
 * {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}'<|im_start|>user'{% endif %}
 * '\n<tool_response>\n' + content + '\n</tool_response>'
 * {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}'<|im_end|>\n'{% endif %} */
static void render_qwen_tool(const dk_chat_message *m, size_t n, size_t i, dk_strbuf *out) {
    if (i == 0 || !is_role(&m[i - 1], "tool")) dk_strbuf_append(out, "<|im_start|>user");
    dk_strbuf_append(out, "\n<tool_response>\n");
    dk_strbuf_append(out, m[i].content);
    dk_strbuf_append(out, "\n</tool_response>");
    if (i + 1 == n || !is_role(&m[i + 1], "tool")) dk_strbuf_append(out, "<|im_end|>\n");
}

static bool is_tool_response(const char *s) {
    size_t len = strlen(s);
    return dk_str_starts_with(s, "<tool_response>") && len >= 16 && strcmp(s + len - 16, "</tool_response>") == 0;
}

/* Qwen3 (see models_formats.md §6.3; the template is in tests/fixtures/tokenizers/qwen3/tokenizer_config.json.gz). */
static void render_qwen3(const dk_chat_message *m, size_t n, const dk_chat_options *opt, dk_strbuf *out) {
    if (n > 0 && is_role(&m[0], "system")) {
        dk_strbuf_append(out, "<|im_start|>system\n");
        dk_strbuf_append(out, m[0].content);
        dk_strbuf_append(out, "<|im_end|>\n");
    }
    size_t last_query_index = n ? n - 1 : 0;
    for (size_t k = n; k-- > 0;) {
        if (is_role(&m[k], "user") && !is_tool_response(m[k].content)) {
            last_query_index = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i != 0)) {
            dk_strbuf_append(out, "<|im_start|>");
            dk_strbuf_append(out, m[i].role);
            dk_strbuf_append(out, "\n");
            dk_strbuf_append(out, m[i].content);
            dk_strbuf_append(out, "<|im_end|>\n");
        } else if (is_role(&m[i], "assistant")) {
            const char *c = m[i].content;
            size_t cs = 0, ce = strlen(c);   /* content = c[cs, ce) */
            const char *r = "";
            size_t rs = 0, re = 0;           /* reasoning = r[rs, re) */
            if (m[i].reasoning_content) {
                r = m[i].reasoning_content;
                re = strlen(r);
            } else if (strstr(c, "</think>")) {
                /* content = content.split('</think>')[-1].lstrip('\n') */
                cs = (size_t)(find_last(c, "</think>") - c) + 8;
                strip_char(c, &cs, &ce, '\n', true, false);
                /* reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
                r = c;
                re = (size_t)(strstr(c, "</think>") - c);
                strip_char(r, &rs, &re, '\n', false, true);
                for (size_t k = rs; k + 7 <= re; k++)
                    if (memcmp(r + k, "<think>", 7) == 0) rs = k + 7;
                strip_char(r, &rs, &re, '\n', true, false);
            }
            dk_strbuf_append(out, "<|im_start|>assistant\n");
            if (i > last_query_index && (i + 1 == n || re > rs)) {
                size_t s2 = rs, e2 = re, c2 = cs;
                strip_char(r, &s2, &e2, '\n', true, true);
                strip_char(c, &c2, &ce, '\n', true, false);
                dk_strbuf_append(out, "<think>\n");
                dk_strbuf_append_n(out, r + s2, e2 - s2);
                dk_strbuf_append(out, "\n</think>\n\n");
                dk_strbuf_append_n(out, c + c2, ce - c2);
            } else {
                dk_strbuf_append_n(out, c + cs, ce - cs);
            }
            dk_strbuf_append(out, "<|im_end|>\n");
        } else if (is_role(&m[i], "tool")) {
            render_qwen_tool(m, n, i, out);
        }
    }
    if (opt->add_generation_prompt) {
        dk_strbuf_append(out, "<|im_start|>assistant\n");
        if (opt->enable_thinking == 0) dk_strbuf_append(out, "<think>\n\n</think>\n\n");
    }
}

/* Qwen2.5-Instruct:
 * '<|im_start|>system\n' + (messages[0]['content'] if system else 'You are Qwen, ...') + '<|im_end|>\n'
 * user, later system, assistant: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n'; tool: as above.
 * add_generation_prompt: '<|im_start|>assistant\n' */
static void render_qwen2_5(const dk_chat_message *m, size_t n, const dk_chat_options *opt, dk_strbuf *out) {
    dk_strbuf_append(out, "<|im_start|>system\n");
    dk_strbuf_append(out, n > 0 && is_role(&m[0], "system") ? m[0].content : QWEN25_DEFAULT_SYSTEM);
    dk_strbuf_append(out, "<|im_end|>\n");
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i != 0) || is_role(&m[i], "assistant")) {
            dk_strbuf_append(out, "<|im_start|>");
            dk_strbuf_append(out, m[i].role);
            dk_strbuf_append(out, "\n");
            dk_strbuf_append(out, m[i].content);
            dk_strbuf_append(out, "<|im_end|>\n");
        } else if (is_role(&m[i], "tool")) {
            render_qwen_tool(m, n, i, out);
        }
    }
    if (opt->add_generation_prompt) dk_strbuf_append(out, "<|im_start|>assistant\n");
}

char *dk_chat_render(dk_chat_family family, const dk_chat_message *messages, size_t n, const dk_chat_options *opt,
                     dk_err *err) {
    for (size_t i = 0; i < n; i++)
        if (!messages[i].role || !messages[i].content) {
            dk_err_set(err, DK_EXIT_RUNTIME, "message %zu needs a string \"role\" and a string \"content\"", i);
            return NULL;
        }
    dk_strbuf out = {0};
    dk_strbuf_append(&out, "");
    int rc = 0;
    switch (family) {
    case DK_CHAT_GEMMA3: rc = render_gemma(true, messages, n, opt, &out, err); break;
    case DK_CHAT_GEMMA2: rc = render_gemma(false, messages, n, opt, &out, err); break;
    case DK_CHAT_LLAMA3: render_llama3(messages, n, opt, &out); break;
    case DK_CHAT_LLAMA3_0: render_llama3_0(messages, n, opt, &out); break;
    case DK_CHAT_QWEN3: render_qwen3(messages, n, opt, &out); break;
    case DK_CHAT_QWEN2_5: render_qwen2_5(messages, n, opt, &out); break;
    }
    if (rc < 0) {
        dk_strbuf_free(&out);
        return NULL;
    }
    return dk_strbuf_take(&out);
}

/* ---- names and detection ---- */
static const struct {
    const char *name;
    dk_chat_family family;
} NAMES[] = {{"gemma3", DK_CHAT_GEMMA3}, {"gemma2", DK_CHAT_GEMMA2}, {"llama3", DK_CHAT_LLAMA3},
             {"llama3_0", DK_CHAT_LLAMA3_0}, {"qwen3", DK_CHAT_QWEN3}, {"qwen2.5", DK_CHAT_QWEN2_5},
             {"qwen2_5", DK_CHAT_QWEN2_5}};

int dk_chat_family_from_name(const char *name, dk_chat_family *out, dk_err *err) {
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(name, NAMES[i].name) == 0) {
            *out = NAMES[i].family;
            return 0;
        }
    return dk_err_set(err, DK_EXIT_USAGE, "unknown chat template family '%s' (known: gemma3, gemma2, llama3, llama3_0, "
                      "qwen3, qwen2.5)", name);
}

const char *dk_chat_family_name(dk_chat_family family) {
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (NAMES[i].family == family) return NAMES[i].name;
    return "?";
}

bool dk_chat_family_fits(dk_chat_family family, const dk_tokenizer *tok, char *why, size_t why_cap) {
    const char *marker = "<|im_start|>";
    if (family == DK_CHAT_GEMMA3 || family == DK_CHAT_GEMMA2) marker = "<start_of_turn>";
    else if (family == DK_CHAT_LLAMA3 || family == DK_CHAT_LLAMA3_0) marker = "<|start_header_id|>";
    if (dk_tokenizer_token_to_id(tok, marker) >= 0) return true;
    snprintf(why, why_cap, "the tokenizer has no %s token, which the %s chat template is built from: this is not a "
             "%s-family tokenizer, and the rendered chats would be text the model never saw; choose the model's own "
             "chat family", marker, dk_chat_family_name(family), dk_chat_family_name(family));
    return false;
}

int dk_chat_family_detect(const char *config_json, dk_chat_family *out, dk_err *err) {
    if (!config_json)
        return dk_err_set(err, DK_EXIT_USAGE, "no tokenizer_config.json next to tokenizer.json: pass --family");
    cJSON *root = cJSON_Parse(config_json);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    int rc = 0;
    if (!cJSON_IsString(t)) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "tokenizer_config.json has no string \"chat_template\": pass --family");
    } else {
        const char *s = t->valuestring;
        if (strstr(s, "<start_of_turn>") && strstr(s, "first_user_prefix")) *out = DK_CHAT_GEMMA3;
        else if (strstr(s, "<start_of_turn>") && strstr(s, "System role not supported")) *out = DK_CHAT_GEMMA2;
        else if (strstr(s, "Cutting Knowledge Date")) *out = DK_CHAT_LLAMA3;
        else if (strstr(s, "<|start_header_id|>")) *out = DK_CHAT_LLAMA3_0;
        else if (strstr(s, "<|im_start|>") && strstr(s, "You are Qwen, created by Alibaba Cloud")) *out = DK_CHAT_QWEN2_5;
        else if (strstr(s, "<|im_start|>") && strstr(s, "reasoning_content")) *out = DK_CHAT_QWEN3;
        else rc = dk_err_set(err, DK_EXIT_USAGE, "the chat_template in tokenizer_config.json is not one we render "
                             "natively: pass --family (gemma3, gemma2, llama3, llama3_0, qwen3, qwen2.5)");
    }
    cJSON_Delete(root);
    return rc;
}

char *dk_chat_config_bos_token(const char *config_json) {
    if (!config_json) return NULL;
    cJSON *root = cJSON_Parse(config_json);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bos_token");
    if (cJSON_IsObject(b)) b = cJSON_GetObjectItemCaseSensitive(b, "content");
    char *bos = cJSON_IsString(b) ? dk_strdup(b->valuestring) : NULL;
    cJSON_Delete(root);
    return bos;
}
