/* json_value.c — see json_value.h. cJSON_ParseWithLengthOpts reports where the value ended; only
 * whitespace may follow it. (Its require_null_terminated flag cannot be used with a length that excludes
 * the terminator, so the rest is checked here.) */
#include "io/json_value.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

cJSON *dk_json_parse_one(const char *text, size_t len, char *why, size_t why_cap) {
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        snprintf(why, why_cap, "a NUL byte at byte %zu (JSON text cannot hold one)", (size_t)(nul - text));
        return NULL;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        snprintf(why, why_cap, "not valid JSON (error near byte %zu)", at);
        return NULL;
    }
    const char *p = end ? end : text + len;
    while (p < text + len && is_space(*p)) p++;
    if (p < text + len) {
        size_t rest = (size_t)(text + len - p);
        snprintf(why, why_cap, "trailing data after the JSON value, at byte %zu: %.40s%s", (size_t)(p - text), p, rest > 40 ? "..." : "");
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}
