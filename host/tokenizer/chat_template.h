/* chat_template.h — chat templates rendered natively (no Jinja engine), byte for byte what transformers'
 * apply_chat_template(messages, tokenize=False, ...) gives with each family's published template
 * (../shared/reference/models_formats.md §6). Tool definitions and assistant tool calls cannot be expressed in
 * dk_chat_message; callers must refuse them (diffkit chat-template does). Tool results (role "tool") render.
 *
 * Families (the names model configs use in `chat_template:`):
 *   gemma3    Gemma 3: a system message becomes the first user turn's prefix; roles must alternate
 *   gemma2    Gemma 2: no system role (error); roles must alternate
 *   llama3    Llama 3.1 / 3.2 / 3.3 Instruct: always a system block with "Today Date: {date_string}"
 *   llama3_0  Llama 3.0 Instruct style (what the llama3_1 tokenizer_config.json in ../shared holds)
 *   qwen3     Qwen3: <think> handling, enable_thinking
 *   qwen2.5   Qwen2.5-Instruct: default system prompt
 * Encode the rendered text WITHOUT special tokens: the templates already hold the BOS. */
#ifndef DK_CHAT_TEMPLATE_H
#define DK_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef enum {
    DK_CHAT_GEMMA3, DK_CHAT_GEMMA2, DK_CHAT_LLAMA3, DK_CHAT_LLAMA3_0, DK_CHAT_QWEN3, DK_CHAT_QWEN2_5
} dk_chat_family;

typedef struct dk_chat_message {
    const char *role;               /* "system", "user", "assistant", "tool" (ipython for llama3) */
    const char *content;
    const char *reasoning_content;  /* qwen3 only; NULL = not given */
} dk_chat_message;

typedef struct dk_chat_options {
    bool add_generation_prompt;
    int enable_thinking;            /* qwen3: -1 not given (thinking), 0 false, 1 true */
    const char *date_string;        /* llama3: NULL = "26 Jul 2024" (Llama 3.1's default; pin it for 3.2) */
    const char *bos_token;          /* NULL = the family's ("<bos>", "<|begin_of_text|>") */
} dk_chat_options;

/* "gemma3", "gemma2", "llama3", "llama3_0", "qwen3", "qwen2.5" (or "qwen2_5"). 0 or -1 with err. */
int dk_chat_family_from_name(const char *name, dk_chat_family *out, dk_err *err);
const char *dk_chat_family_name(dk_chat_family family);
/* Recognizes the family from the "chat_template" of a tokenizer_config.json text. 0 or -1 with err. */
int dk_chat_family_detect(const char *tokenizer_config_json, dk_chat_family *out, dk_err *err);
/* The "bos_token" of a tokenizer_config.json (string or {"content": ...}); malloc'ed, NULL if none. */
char *dk_chat_config_bos_token(const char *tokenizer_config_json);

typedef struct dk_tokenizer dk_tokenizer;
/* Whether tok can be this family's: the special token the family's turns are built from (<start_of_turn>,
 * <|start_header_id|>, <|im_start|>) must be one token of its vocabulary. A template of another family renders
 * text whose markers the model never saw as tokens, so its activations and generations would be garbage.
 * true, or false with why filled ("the tokenizer has no <|im_start|> token: ..."). */
bool dk_chat_family_fits(dk_chat_family family, const dk_tokenizer *tok, char *why, size_t why_cap);

/* Renders the conversation; malloc'ed UTF-8, or NULL with err (code 1) when the family's template would
 * raise (e.g. a system message for gemma2, roles that do not alternate). */
char *dk_chat_render(dk_chat_family family, const dk_chat_message *messages, size_t n, const dk_chat_options *opt,
                     dk_err *err);

#endif
