/* llm_internal.h — what the files of host/llm share and nobody else needs: the API key (llm_key.c), the
 * JSON of requests and answers (llm_json.c). llm_client.c puts them together around curl. */
#ifndef DK_LLM_INTERNAL_H
#define DK_LLM_INTERNAL_H

#include <stddef.h>

#include "llm_client.h"

/* The key and a description of where it came from. Only `value` holds the secret; `source` is safe to print
 * ("the key from $OPENROUTER_API_KEY", "the key in openrouter_api_key.txt", "no key"). */
typedef struct llm_key {
    char *value;        /* NULL: no key (an endpoint without one) */
    char source[600];
} llm_key;

/* api_key_file when it exists, else api_key_env; both unset: no key. -1 + err (code 2) when a key was
 * configured but none was found, the one found is empty, or it holds characters a header cannot carry. */
int llm_key_load(const dk_llm_config *cfg, llm_key *key, dk_err *err);
/* Overwrites the key with zeros and frees it. */
void llm_key_free(llm_key *key);
/* A copy of text[0..len) (bytes after a NUL kept out) with every occurrence of the key replaced by
 * "[api key]" and control characters by spaces, for messages built from what a server sent. */
char *llm_redact(const char *text, size_t len, const llm_key *key);

/* The JSON body of a chat-completions request (the caller frees), or NULL with why when req->extra_body names a
 * member the client sets itself. */
char *llm_request_body(const char *model_id, const dk_llm_request *req, char *why, size_t why_cap);
/* Fills resp->choices and the usage from a 200 answer. 0, or -1 with why ("not valid JSON (error near byte
 * 12)", "no choices in the answer", ...) when the answer is unusable, which the caller retries. */
int llm_parse_answer(const char *body, size_t len, dk_llm_response *resp, char *why, size_t why_cap);
/* The server's own explanation in an error answer: error.message of an OpenAI-style error body, else the
 * body's first bytes; "" when the body is empty. Not redacted. */
void llm_error_detail(const char *body, size_t len, char *out, size_t cap);

#endif
