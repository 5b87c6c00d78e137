/* pyjson.h — JSON text exactly as Python's json module writes it, and Python's repr of a flat dict.
 *
 * Why it exists: the agent's transcript is the contract with the seed framework. Its messages embed
 * json.dumps(...) of tool outputs and budgets, str(dict) of budgets in error messages, and messages.json is
 * json.dump(..., ensure_ascii=False, indent=2). cJSON prints numbers, spacing and escapes differently, so a
 * transcript built with it could never equal the seed's byte for byte. These writers walk a cJSON tree and
 * print what CPython 3 prints for the same value:
 *   - dk_pyjson_dumps(v, DK_PYJSON_COMPACT): json.dumps(v) — separators ", " and ": ", ensure_ascii=True
 *     (every non-ASCII code point as \uXXXX, astral ones as a surrogate pair), object members in their order;
 *   - dk_pyjson_dumps(v, DK_PYJSON_INDENT2): json.dumps(v, ensure_ascii=False, indent=2) — newline + 2 spaces
 *     per level, separators "," and ": ", UTF-8 kept as is; empty list/object as [] / {};
 *   - numbers: a cJSON number whose value is integral and was marked integral (dk_pyjson_int / cJSON_CreateNumber
 *     of an integer with the "int" flag below) prints as an int ("5"); any other as Python's float repr: the
 *     shortest decimal that reads back to the same double ("0.1", "1e-05", "1.5e+16", "inf" as Infinity, nan
 *     as NaN, integral floats with ".0": "2.0");
 *   - strings: escapes \" \\ \n \r \t \b \f, other control characters as \u00XX, as Python does.
 * Python distinguishes int from float; cJSON does not, so integers are marked: the node's `type` gets
 * DK_PYJSON_INT_FLAG (dk_pyjson_int creates one; dk_pyjson_loads marks the numbers written without '.', 'e' or
 * 'E', as json.loads makes them ints). */
#ifndef DK_AGENT_PYJSON_H
#define DK_AGENT_PYJSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef enum { DK_PYJSON_COMPACT = 0, DK_PYJSON_INDENT2 = 1 } dk_pyjson_style;

/* Marks a cJSON number as a Python int (set in cJSON's type bits; cJSON ignores unknown high bits). */
#define DK_PYJSON_INT_FLAG (1 << 11)

/* A cJSON number marked as a Python int. */
cJSON *dk_pyjson_int(int64_t value);
/* cJSON_AddItemToObject(obj, key, dk_pyjson_int(value)); returns the item. */
cJSON *dk_pyjson_add_int(cJSON *obj, const char *key, int64_t value);

/* json.loads(text): the value (caller deletes), ints marked; NULL when text is not exactly one JSON value
 * (dk_json_parse_one's rules; why says what is wrong). */
cJSON *dk_pyjson_loads(const char *text, size_t len, char *why, size_t why_cap);
/* Whether a number node is a Python int (marked), and whether a node is a bool (Python's bool is an int:
 * callers that want an int reject bools themselves). */
int dk_pyjson_is_int(const cJSON *v);

/* The text (malloc'ed) Python would write for v (see above). Never NULL (aborts on out of memory). */
char *dk_pyjson_dumps(const cJSON *v, dk_pyjson_style style);

/* Python's repr (str()) of the value: dicts "{'a': 5, 'b': [0.5, True, None]}" (str(budgets) in the seed's
 * messages, str(cfg dict) in its config hash). Strings use repr's quoting ('...' unless the text holds ' and
 * no ", then "..."; escapes \\ \n \r \t, other non-printable characters \xNN/\uNNNN as repr does). */
char *dk_pyjson_repr(const cJSON *v);

#endif
