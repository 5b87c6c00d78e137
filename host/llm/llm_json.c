/* llm_json.c — the JSON of the chat-completions API: the request body we send and the answer we read.
 *
 * An answer is usable when it is one JSON object with a non-empty `choices` array whose items have a
 * `message` object; `content` may be null (read as "", as the seed does), `finish_reason` and `usage` may be
 * absent. Anything else is reported with a reason the client puts in its retry and error messages. */
#include "llm_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_value.h"

dk_llm_request dk_llm_request_init(const dk_llm_message *messages, int n_messages) {
    dk_llm_request req;
    memset(&req, 0, sizeof req);
    req.messages = messages;
    req.n_messages = n_messages;
    req.temperature = -1.0;
    req.top_p = -1.0;
    return req;
}

char *llm_request_body(const char *model_id, const dk_llm_request *req, char *why, size_t why_cap) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_id);
    cJSON *messages = cJSON_AddArrayToObject(root, "messages");
    for (int i = 0; i < req->n_messages; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", req->messages[i].role);
        cJSON_AddStringToObject(m, "content", req->messages[i].content ? req->messages[i].content : "");
        if (req->messages[i].cache_ephemeral)
            cJSON_AddStringToObject(cJSON_AddObjectToObject(m, "cache_control"), "type", "ephemeral");
        cJSON_AddItemToArray(messages, m);
    }
    if (req->temperature >= 0) cJSON_AddNumberToObject(root, "temperature", req->temperature);
    if (req->top_p >= 0) cJSON_AddNumberToObject(root, "top_p", req->top_p);
    if (req->max_tokens > 0) cJSON_AddNumberToObject(root, "max_tokens", req->max_tokens);
    if (req->n > 1) cJSON_AddNumberToObject(root, "n", req->n);
    if (req->has_seed) cJSON_AddNumberToObject(root, "seed", (double)req->seed);
    if (req->n_stop > 0) {
        cJSON *stop = cJSON_AddArrayToObject(root, "stop");
        for (int i = 0; i < req->n_stop; i++) cJSON_AddItemToArray(stop, cJSON_CreateString(req->stop[i]));
    }
    if (req->extra_body && !cJSON_IsObject(req->extra_body)) {
        snprintf(why, why_cap, "the request's extra body is %s, not an object", dk_json_kind(req->extra_body));
        cJSON_Delete(root);
        return NULL;
    }
    const cJSON *extra;
    cJSON_ArrayForEach(extra, req->extra_body) {
        if (cJSON_GetObjectItemCaseSensitive(root, extra->string)) {
            snprintf(why, why_cap, "the request's extra body member \"%s\" is a field the client sets itself: set it "
                     "through the request's own field", extra->string);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToObject(root, extra->string, cJSON_Duplicate(extra, 1));
    }
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return body;
}

static int64_t usage_count(const cJSON *usage, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, name);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (int64_t)v->valuedouble : 0;
}

static char *string_or_empty(const cJSON *v) { return dk_strdup(cJSON_IsString(v) ? v->valuestring : ""); }

int llm_parse_answer(const char *body, size_t len, dk_llm_response *resp, char *why, size_t why_cap) {
    char parse_why[256];
    cJSON *root = dk_json_parse_one(body, len, parse_why, sizeof parse_why);
    if (!root) {
        snprintf(why, why_cap, "the answer (%zu bytes) is %s", len, parse_why);
        return -1;
    }
    int rc = -1;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!cJSON_IsObject(root)) {
        snprintf(why, why_cap, "the answer is JSON but not an object");
    } else if (error && !cJSON_IsNull(error)) {
        /* Some gateways report upstream failures inside a 200 answer. */
        snprintf(why, why_cap, "the answer is an error object instead of choices");
    } else if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        snprintf(why, why_cap, "the answer has no choices");
    } else {
        int n = cJSON_GetArraySize(choices);
        dk_llm_choice *parsed = dk_calloc((size_t)n, sizeof *parsed);
        int i = 0;
        const cJSON *choice;
        cJSON_ArrayForEach(choice, choices) {
            const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
            if (!cJSON_IsObject(message)) break;
            parsed[i].content = string_or_empty(cJSON_GetObjectItemCaseSensitive(message, "content"));
            parsed[i].finish_reason = string_or_empty(cJSON_GetObjectItemCaseSensitive(choice, "finish_reason"));
            i++;
        }
        if (i < n) {
            snprintf(why, why_cap, "choice %d of the answer has no message object", i);
            for (int k = 0; k < i; k++) {
                free(parsed[k].content);
                free(parsed[k].finish_reason);
            }
            free(parsed);
        } else {
            resp->choices = parsed;
            resp->n_choices = n;
            const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
            resp->prompt_tokens = usage_count(usage, "prompt_tokens");
            resp->completion_tokens = usage_count(usage, "completion_tokens");
            resp->total_tokens = usage_count(usage, "total_tokens");
            rc = 0;
        }
    }
    cJSON_Delete(root);
    return rc;
}

void llm_error_detail(const char *body, size_t len, char *out, size_t cap) {
    out[0] = '\0';
    if (len == 0) return;
    char why[64];
    cJSON *root = dk_json_parse_one(body, len, why, sizeof why);
    const cJSON *error = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    const cJSON *message = cJSON_IsObject(error) ? cJSON_GetObjectItemCaseSensitive(error, "message") : error;
    if (cJSON_IsString(message))
        snprintf(out, cap, "%s", message->valuestring);
    else
        snprintf(out, cap, "%.*s", (int)(len < 300 ? len : 300), body);
    cJSON_Delete(root);
}
