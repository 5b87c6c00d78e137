/* json_text.h — JSON string values read with their length, U+0000 included.
 *
 * Why this exists: diffkit parses JSON with cJSON, whose strings end at the first NUL, so a text holding U+0000
 * (the escape \u0000, legal JSON) would be cut there. Hugging Face tokenizers encode U+0000 like any other
 * character, and the seed feeds such texts to them unchanged. Callers keep cJSON for structure and, when a line
 * holds a \u0000 escape (dk_json_has_nul_escape), read the strings that matter straight from the JSON text: find
 * the value by its path of keys and array indices (dk_json_locate) and decode it with its length
 * (dk_json_decode_string). The text must already be valid JSON (cJSON accepted it). */
#ifndef DK_JSON_TEXT_H
#define DK_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One step of a path: an object member (key) or, when key is NULL, an array element (index). */
typedef struct dk_json_step {
    const char *key;
    int64_t index;
} dk_json_step;

/* Whether the JSON text json[0..n) holds a \u0000 escape (an escaped backslash followed by "u0000" does not). */
bool dk_json_has_nul_escape(const char *json, size_t n);

/* The first character of the value at `path` (depth steps) in json[0..n), or NULL when there is none (a
 * missing key, an index past the end, a step into a scalar). With duplicate keys the first wins, as in cJSON. */
const char *dk_json_locate(const char *json, size_t n, const dk_json_step *path, size_t depth);

/* Decodes the string literal starting at s (a '"'; end bounds the text): escapes resolved, \uXXXX (with
 * surrogate pairs) to UTF-8, \u0000 to a 0 byte. *out is malloc'ed (len bytes and a terminating 0). 0, or -1
 * when s is not a string literal or holds a lone surrogate. */
int dk_json_decode_string(const char *s, const char *end, char **out, size_t *len);

#endif
