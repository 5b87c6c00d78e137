/* json_value.c — see json_value.h. cJSON_ParseWithLengthOpts reports where the value ended; only
 * whitespace may follow it. (Its require_null_terminated flag cannot be used with a length that excludes
 * the terminator, so the rest is checked here.) */
#include "io/json_value.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The value, or NULL with *problem (a phrase) and *bad_at (byte offset) set. */
static cJSON *parse_one(const char *text, size_t len, const char **problem, size_t *bad_at) {
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        *problem = "a NUL byte (JSON text cannot hold one)";
        *bad_at = (size_t)(nul - text);
        return NULL;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) {
        *problem = "not valid JSON (error";
        *bad_at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return NULL;
    }
    const char *p = end ? end : text + len;
    while (p < text + len && is_space(*p)) p++;
    if (p < text + len) {
        *problem = "trailing data after the JSON value";
        *bad_at = (size_t)(p - text);
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

cJSON *dk_json_parse_one(const char *text, size_t len, char *why, size_t why_cap) {
    const char *problem = NULL;
    size_t at = 0;
    cJSON *v = parse_one(text, len, &problem, &at);
    if (v) return v;
    if (strncmp(problem, "not valid", 9) == 0) snprintf(why, why_cap, "not valid JSON (error near byte %zu)", at);
    else if (problem[0] == 't')
        snprintf(why, why_cap, "trailing data after the JSON value, at byte %zu: %.40s%s", at, text + at,
                 len - at > 40 ? "..." : "");
    else snprintf(why, why_cap, "%s at byte %zu", problem, at);
    return NULL;
}

cJSON *dk_json_parse_document(const char *text, size_t len, const char *name, int code, const char *hint,
                              dk_err *err) {
    const char *problem = NULL;
    size_t at = 0;
    cJSON *v = parse_one(text, len, &problem, &at);
    if (v) return v;
    size_t line = 1;
    for (size_t i = 0; i < at; i++) line += text[i] == '\n';
    dk_err_set(err, code, "%s: %s near byte %zu, line %zu%s: %s", name, problem, at, line,
               strncmp(problem, "not valid", 9) == 0 ? ")" : "", hint);
    return NULL;
}

const char *dk_json_kind(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}
