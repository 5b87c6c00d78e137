/* serve_request.c — one request body of `diffkit serve`, checked and read: bytes that are not UTF-8, text that is
 * not JSON, fields of the wrong type or out of range, unknown models and settings the engine cannot honour each
 * get an OpenAI-style error naming the field (param) and what was expected, never a guess. Fields OpenAI defines
 * that change nothing here (user, metadata, ...) are ignored, as OpenAI-compatible servers do. The two fields
 * beyond OpenAI's (chat_template_kwargs, steering) are read by serve_extensions.c. */
#include "serve/serve_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"
#include "io/json_value.h"

static const char INVALID[] = "invalid_request_error";

/* Optional number in [lo, hi] (null or absent: *out unchanged). */
static int read_number(const cJSON *root, const char *key, double lo, double hi, float *out, serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return serve_error_set(e, 400, INVALID, key, "invalid_value", "'%s' must be a number from %g to %g, got %s",
                               key, lo, hi, cJSON_IsNumber(v) ? "a number outside that range" : dk_json_kind(v));
    *out = (float)v->valuedouble;
    return 0;
}

/* Optional integer in [lo, hi] (null or absent: *out unchanged, *given false). */
static int read_integer(const cJSON *root, const char *key, double lo, double hi, int64_t *out, bool *given,
                        serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (given) *given = false;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return serve_error_set(e, 400, INVALID, key, "invalid_value", "'%s' must be an integer from %.0f to %.0f, got %s",
                               key, lo, hi, cJSON_IsNumber(v) ? "a number outside that range or with a fraction"
                                                              : dk_json_kind(v));
    *out = (int64_t)v->valuedouble;
    if (given) *given = true;
    return 0;
}

/* Settings whose non-default values would change the answer in ways the engine does not do: refused, not ignored. */
static int refuse_unsupported(const cJSON *root, serve_error *e) {
    static const char *const must_be_false[] = {"stream", "logprobs", "echo"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof must_be_false[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, must_be_false[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
            return serve_error_set(e, 400, INVALID, must_be_false[i], "unsupported_parameter",
                                   "'%s' is not supported by diffkit serve: leave it out or false", must_be_false[i]);
    }
    static const char *const must_be_zero[] = {"frequency_penalty", "presence_penalty", "top_logprobs"};
    for (size_t i = 0; i < sizeof must_be_zero / sizeof must_be_zero[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, must_be_zero[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
            return serve_error_set(e, 400, INVALID, must_be_zero[i], "unsupported_parameter",
                                   "'%s' is not supported by diffkit serve: leave it out or 0", must_be_zero[i]);
    }
    static const char *const must_be_absent[] = {"tools", "tool_choice", "functions", "function_call", "suffix"};
    for (size_t i = 0; i < sizeof must_be_absent / sizeof must_be_absent[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, must_be_absent[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
            return serve_error_set(e, 400, INVALID, must_be_absent[i], "unsupported_parameter",
                                   "'%s' is not supported by diffkit serve (plain text generation only)",
                                   must_be_absent[i]);
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (bias && !cJSON_IsNull(bias) && !(cJSON_IsObject(bias) && !bias->child))
        return serve_error_set(e, 400, INVALID, "logit_bias", "unsupported_parameter",
                               "'logit_bias' is not supported by diffkit serve");
    const cJSON *best_of = cJSON_GetObjectItemCaseSensitive(root, "best_of");
    if (best_of && !cJSON_IsNull(best_of) && !(cJSON_IsNumber(best_of) && best_of->valuedouble == 1))
        return serve_error_set(e, 400, INVALID, "best_of", "unsupported_parameter",
                               "'best_of' is not supported by diffkit serve: use n");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    const cJSON *format_type = cJSON_GetObjectItemCaseSensitive(format, "type");
    if (format && !cJSON_IsNull(format) &&
        !(cJSON_IsString(format_type) && strcmp(format_type->valuestring, "text") == 0))
        return serve_error_set(e, 400, INVALID, "response_format", "unsupported_parameter",
                               "'response_format' other than {\"type\": \"text\"} is not supported by diffkit serve");
    return 0;
}

/* stop: a string or a list of at most SERVE_MAX_STOP non-empty strings. */
static int read_stop(const cJSON *root, serve_request *q, serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0]) q->stop[q->n_stop++] = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SERVE_MAX_STOP)
        return serve_error_set(e, 400, INVALID, "stop", "invalid_type", "'stop' must be a string or a list of at most "
                               "%d strings, got %s", SERVE_MAX_STOP, cJSON_IsArray(v) ? "a longer list" : dk_json_kind(v));
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsString(item))
            return serve_error_set(e, 400, INVALID, "stop", "invalid_type", "'stop' must hold strings, got %s",
                                   dk_json_kind(item));
        if (item->valuestring[0]) q->stop[q->n_stop++] = item->valuestring;
    }
    return 0;
}

/* The text of a message's content: a string, or a list of {"type": "text", "text": ...} parts (joined; the joined
 * text replaces the list in the tree, so that it lives as long as the request). */
static const char *content_text(cJSON *msg, size_t index, serve_error *e) {
    cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", index);
    if (cJSON_IsString(content)) return content->valuestring;
    if (!cJSON_IsArray(content)) {
        serve_error_set(e, 400, INVALID, param, "invalid_type", "'%s' must be a string or a list of text parts, got %s",
                        param, content ? dk_json_kind(content) : "nothing");
        return NULL;
    }
    dk_strbuf joined = {0};
    dk_strbuf_append(&joined, "");
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            dk_strbuf_free(&joined);
            serve_error_set(e, 400, INVALID, param, "invalid_type", "'%s' may hold only {\"type\": \"text\", \"text\": "
                            "STRING} parts (diffkit serve runs text models)", param);
            return NULL;
        }
        dk_strbuf_append(&joined, text->valuestring);
    }
    cJSON *replacement = cJSON_CreateString(joined.data);
    dk_strbuf_free(&joined);
    cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", replacement);
    return replacement->valuestring;
}

static int read_messages(serve_request *q, serve_error *e) {
    cJSON *list = cJSON_GetObjectItemCaseSensitive(q->root, "messages");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return serve_error_set(e, 400, INVALID, "messages", list ? "invalid_type" : "missing_required_parameter",
                               "'messages' must be a non-empty list of {\"role\", \"content\"} objects, got %s",
                               list ? (cJSON_IsArray(list) ? "an empty list" : dk_json_kind(list)) : "nothing");
    q->n_messages = (size_t)cJSON_GetArraySize(list);
    q->messages = dk_calloc(q->n_messages, sizeof *q->messages);
    size_t i = 0;
    cJSON *msg;
    cJSON_ArrayForEach(msg, list) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role))
            return serve_error_set(e, 400, INVALID, param, "invalid_type", "messages[%zu] must be an object with a "
                                   "string 'role' and a 'content'", i);
        const char *r = role->valuestring;
        if (strcmp(r, "developer") == 0) r = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0)
            return serve_error_set(e, 400, INVALID, param, "invalid_value", "'%s' must be system, developer, user or "
                                   "assistant, got '%.40s'", param, r);
        const char *text = content_text(msg, i, e);
        if (!text) return -1;
        q->messages[i++] = (dk_chat_message){r, text, NULL};
    }
    return 0;
}

static int read_prompt(serve_request *q, serve_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(q->root, "prompt");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    if (!cJSON_IsString(p))
        return serve_error_set(e, 400, INVALID, "prompt", p ? "invalid_type" : "missing_required_parameter",
                               "'prompt' must be a string (one prompt per request; send several requests, they are "
                               "batched), got %s", p ? dk_json_kind(p) : "nothing");
    q->prompt = p->valuestring;
    return 0;
}

int serve_request_parse(const char *body, size_t len, serve_kind kind, const serve_registry *r,
                        const dk_serve_config *sc, uint64_t default_seed, serve_request *q, serve_error *e) {
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->temperature = 1.0f;
    q->top_p = 1.0f;
    q->n = 1;
    q->seed = default_seed;
    q->enable_thinking = -1;
    size_t bad = dk_utf8_first_invalid(body, len);
    if (bad < len)
        return serve_error_set(e, 400, INVALID, NULL, "invalid_utf8", "the request body is not valid UTF-8 (byte %zu "
                               "of %zu): send JSON text encoded as UTF-8", bad, len);
    char why[256];
    q->root = dk_json_parse_one(body, len, why, sizeof why);
    if (!q->root)
        return serve_error_set(e, 400, INVALID, NULL, "invalid_json", "the request body (%zu bytes): %s", len, why);
    if (!cJSON_IsObject(q->root))
        return serve_error_set(e, 400, INVALID, NULL, "invalid_json", "the request body must be a JSON object, got %s",
                               dk_json_kind(q->root));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(q->root, "model");
    if (!cJSON_IsString(model))
        return serve_error_set(e, 400, INVALID, "model", model ? "invalid_type" : "missing_required_parameter",
                               "'model' must be a string naming one of the models GET /v1/models lists, got %s",
                               model ? dk_json_kind(model) : "nothing");
    q->model = serve_registry_find(r, model->valuestring);
    if (q->model < 0) {
        dk_strbuf names = {0};
        for (int i = 0; i < r->n_models; i++) dk_strbuf_printf(&names, "%s%s", i ? ", " : "", r->models[i].id);
        serve_error_set(e, 404, INVALID, "model", "model_not_found", "the model '%.200s' does not exist; this server "
                        "offers: %.700s", model->valuestring, names.data);
        dk_strbuf_free(&names);
        return -1;
    }
    if (refuse_unsupported(q->root, e) != 0) return -1;
    if (kind == SERVE_CHAT && !r->has_chat)
        return serve_error_set(e, 400, INVALID, "messages", "no_chat_template", "%s", r->chat_problem);
    if ((kind == SERVE_CHAT ? read_messages(q, e) : read_prompt(q, e)) != 0) return -1;
    bool seed_given = false, max_given = false;
    int64_t seed = 0;
    if (read_number(q->root, "temperature", 0, 2, &q->temperature, e) != 0 ||
        read_number(q->root, "top_p", 0, 1, &q->top_p, e) != 0 ||
        read_integer(q->root, "max_tokens", 1, (double)sc->max_tokens, &q->max_tokens, &max_given, e) != 0 ||
        (kind == SERVE_CHAT && !max_given &&
         read_integer(q->root, "max_completion_tokens", 1, (double)sc->max_tokens, &q->max_tokens, NULL, e) != 0) ||
        read_integer(q->root, "n", 1, (double)sc->max_n, &q->n, NULL, e) != 0 ||
        read_integer(q->root, "seed", -9007199254740992.0, 9007199254740992.0, &seed, &seed_given, e) != 0 ||
        read_stop(q->root, q, e) != 0)
        return -1;
    if (q->top_p <= 0)
        return serve_error_set(e, 400, INVALID, "top_p", "invalid_value", "'top_p' must be greater than 0 (at most 1); "
                               "for greedy text set temperature to 0");
    if (seed_given) q->seed = (uint64_t)seed;
    return serve_request_read_extensions(q, r, e);
}

void serve_request_free(serve_request *q) {
    cJSON_Delete(q->root);
    free(q->messages);
    free(q->steer_vector);
    memset(q, 0, sizeof *q);
}
