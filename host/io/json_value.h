/* json_value.h — parse a text as exactly one JSON value, nothing before or after it but whitespace.
 *
 * Why: cJSON_Parse stops at the end of the first value and ignores what follows, so a JSON Lines line
 * {"text":"a"}{"text":"b"} would silently keep the first record and drop the second, and a config file with
 * two objects glued together would be half-read. Every reader of JSON Lines records and of JSON files goes
 * through this, so "a line is one JSON value and nothing else" holds everywhere, with one message. */
#ifndef DK_JSON_VALUE_H
#define DK_JSON_VALUE_H

#include <stddef.h>

#include "core/error.h"

typedef struct cJSON cJSON;

/* text[0..len) as one JSON value (the caller deletes it), or NULL with why filled for a message:
 *   "not valid JSON (error near byte 12)", "a NUL byte at byte 5 (JSON text cannot hold one)",
 *   "trailing data after the JSON value, at byte 13: {\"text\":\"b\"}" (the first bytes of the rest). */
cJSON *dk_json_parse_one(const char *text, size_t len, char *why, size_t why_cap);

/* A whole JSON file (config.json, tokenizer.json, an index): the value, or NULL with err (code `code`):
 * "NAME: not valid JSON (error near byte 812, line 30): HINT" or "NAME: trailing data after the JSON value
 * near byte ..., line ...: HINT". */
cJSON *dk_json_parse_document(const char *text, size_t len, const char *name, int code, const char *hint,
                              dk_err *err);

/* "a string", "a number", "a boolean", "a list", "an object" or "null": what a value is, for messages that say what
 * was found where something else was expected. */
const char *dk_json_kind(const cJSON *v);

#endif
