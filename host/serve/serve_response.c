/* serve_response.c — the JSON `diffkit serve` answers with, in OpenAI's shapes: errors
 * ({"error": {"message", "type", "param", "code"}}), the model list, chat.completion and text_completion objects.
 * Built with cJSON, so every string (model output included) is escaped as JSON requires. */
#include "serve/serve_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static char *print_and_delete(cJSON *root) {
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) abort(); /* out of memory */
    return text;
}

/* A string, or JSON null for "". */
static void add_string_or_null(cJSON *obj, const char *key, const char *value) {
    if (value && value[0]) cJSON_AddStringToObject(obj, key, value);
    else cJSON_AddNullToObject(obj, key);
}

char *serve_error_json(const serve_error *e) {
    cJSON *root = cJSON_CreateObject(), *error = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(error, "message", e->message);
    cJSON_AddStringToObject(error, "type", e->type);
    add_string_or_null(error, "param", e->param);
    add_string_or_null(error, "code", e->code);
    return print_and_delete(root);
}

char *serve_models_json(const serve_registry *r, int64_t created) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    for (int i = 0; i < r->n_models; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", r->models[i].id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)created);
        cJSON_AddStringToObject(m, "owned_by", "diffkit");
        cJSON_AddStringToObject(m, "description", r->models[i].description);
        cJSON_AddItemToArray(data, m);
    }
    return print_and_delete(root);
}

char *serve_completion_json(const serve_request *q, const serve_registry *r, const serve_choice *choices,
                            int64_t prompt_tokens, int64_t completion_tokens, uint64_t serial, int64_t created) {
    const bool chat = q->kind == SERVE_CHAT;
    char id[64];
    snprintf(id, sizeof id, "%s-dk%llu", chat ? "chatcmpl" : "cmpl", (unsigned long long)serial);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)created);
    cJSON_AddStringToObject(root, "model", r->models[q->model].id);
    cJSON *list = cJSON_AddArrayToObject(root, "choices");
    for (int64_t i = 0; i < q->n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", (double)i);
        if (chat) {
            cJSON *msg = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", choices[i].text);
        } else {
            cJSON_AddStringToObject(c, "text", choices[i].text);
            cJSON_AddNullToObject(c, "logprobs");
        }
        cJSON_AddStringToObject(c, "finish_reason", choices[i].finish_reason);
        cJSON_AddItemToArray(list, c);
    }
    cJSON *usage = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", (double)prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", (double)completion_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)(prompt_tokens + completion_tokens));
    return print_and_delete(root);
}
