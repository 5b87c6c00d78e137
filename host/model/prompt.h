/* prompt.h — what a generation starts from and where it ends, as the model itself defines it: a prompt (plain text,
 * or chat messages rendered with the model's own chat template and BOS token) encoded to ids, and the ids that end a
 * generation (config.json's eos_token_id(s), generation_config.json's, and the chat end-of-turn token).
 *
 * Why one place: `diffkit generate --chat` and `diffkit serve` must give the same tokens for the same conversation,
 * or a served answer would differ from the command line's for reasons nobody could see.
 *
 * The chat family comes from a name (--chat-family) or is recognised from the template, which recent transformers
 * versions save as chat_template.jinja next to tokenizer_config.json (older files hold it in tokenizer_config.json).
 * The rendered text already holds its BOS, so it is encoded without special tokens; plain text gets them
 * (the tokenizer's post-processor, as HF encode(text) does). */
#ifndef DK_MODEL_PROMPT_H
#define DK_MODEL_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/forward.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

enum { DK_MAX_STOP_IDS = 24 };

typedef struct dk_chat_format {
    dk_chat_family family;
    char *bos_token;           /* the model's own BOS (tokenizer_config.json), NULL = the family's */
    int enable_thinking;       /* qwen3: -1 not given, 0, 1 */
    char warning[512];         /* "" or why the template may not fit the tokenizer (dk_chat_family_fits) */
} dk_chat_format;

/* The chat format of the model whose tokenizer is tok, read from model_dir: family_name when not NULL, else
 * recognised from the template. 0, or -1 with err (code 2 when the model has no template). */
int dk_chat_format_open(const dk_tokenizer *tok, const char *model_dir, const char *family_name, int enable_thinking,
                        dk_chat_format *out, dk_err *err);
void dk_chat_format_free(dk_chat_format *f);

/* The ids of a conversation rendered with a generation prompt (ids malloc'ed, at least one slot). 0, or -1 with
 * err (the template refuses the conversation: code 1; roles are the caller's to check). */
int dk_prompt_encode_chat(dk_tokenizer *tok, const dk_chat_format *f, const dk_chat_message *messages, size_t n,
                          int64_t **ids, int64_t *n_ids, dk_err *err);
/* The ids of plain text, with the tokenizer's special tokens (BOS). */
int dk_prompt_encode_text(dk_tokenizer *tok, const char *text, size_t len, int64_t **ids, int64_t *n_ids, dk_err *err);

/* The ids that end a generation of model m (whose folder is model_dir; tok may be NULL): at most DK_MAX_STOP_IDS,
 * no repeats. A generation_config.json that cannot be read adds none: its problem goes to `warning` ("" if none). */
int dk_model_stop_ids(const dk_model *m, const char *model_dir, const dk_tokenizer *tok, int64_t *stops,
                      char *warning, size_t warning_cap);

/* What transformers' generate(do_sample=True) samples with for the model in model_dir: generation_config.json's
 * top_k / top_p, else GenerationConfig's 50 / 1.0 (top_k 0 = off). An unreadable file keeps the defaults and says
 * so in `warning` ("" if none). */
void dk_model_sampling_defaults(const char *model_dir, int64_t *top_k, float *top_p, char *warning, size_t cap);

#endif
