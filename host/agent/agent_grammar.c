/* agent_grammar.c — the agent's output grammar, as the seed's _extract_final_description and _extract_tool_call
 * read it: the LAST "FINAL(" / "CALL(" block, its closing parenthesis found by a scan that skips quoted text
 * (with backslash escapes) and counts nested parentheses; FINAL takes description: or description= and either a
 * quoted string (returned raw, escapes not decoded) or the rest of the block; CALL must end the text, splits at
 * its first ':' into a tool name and JSON arguments that must be an object.
 *
 * Python works on code points and C here on UTF-8 bytes: every character the scans look at is ASCII, and no byte
 * of a multi-byte UTF-8 sequence is ASCII, so the positions found are the same characters. Whitespace for strip()
 * and line ends for splitlines() are Python's sets, not C's. */
#include "agent/agent.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "agent/agent_internal.h"
#include "agent/pyjson.h"
#include "core/error.h"
#include "core/strutil.h"

/* ---- Python's whitespace and lines -------------------------------------------------------------------- */

static bool py_space(int32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* str.splitlines() boundaries other than \r\n (which counts once). */
static bool py_line_break(int32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
           cp == 0x2028 || cp == 0x2029;
}

/* The code point at s[i] and its length in bytes (invalid UTF-8: the byte, length 1). */
static int32_t code_point_at(const char *s, size_t len, size_t i, size_t *n) {
    utf8proc_int32_t cp = -1;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
    if (k <= 0 || cp < 0) {
        *n = 1;
        return 0xfffd;
    }
    *n = (size_t)k;
    return cp;
}

void agent_strip_span(const char *s, size_t len, size_t *begin, size_t *end) {
    size_t b = 0, n;
    while (b < len && py_space(code_point_at(s, len, b, &n))) b += n;
    /* from the end: step back to the start of each code point */
    size_t e = len;
    while (e > b) {
        size_t start = e - 1;
        while (start > b && ((unsigned char)s[start] & 0xc0) == 0x80 && e - start < 4) start--;
        int32_t cp = code_point_at(s, len, start, &n);
        if (start + n != e) {  /* not one code point: an invalid byte, not whitespace */
            break;
        }
        if (!py_space(cp)) break;
        e = start;
    }
    *begin = b;
    *end = e;
}

char *agent_strip(const char *s, size_t len) {
    size_t b, e;
    agent_strip_span(s, len, &b, &e);
    return dk_strndup(s + b, e - b);
}

char *agent_last_line(const char *text) {
    size_t len = strlen(text), i = 0, line_start = 0;
    char *last = dk_strdup("");
    while (i <= len) {
        size_t n = 1;
        bool at_end = i == len;
        int32_t cp = at_end ? 0 : code_point_at(text, len, i, &n);
        if (at_end || py_line_break(cp)) {
            if (!at_end || i > line_start) {
                char *line = agent_strip(text + line_start, i - line_start);
                if (line[0]) {
                    free(last);
                    last = line;
                } else {
                    free(line);
                }
            }
            if (at_end) break;
            if (cp == '\r' && i + 1 < len && text[i + 1] == '\n') n = 2;
            line_start = i + n;
        }
        i += n;
    }
    return last;
}

char *agent_py_str(const cJSON *v) { return cJSON_IsString(v) ? dk_strdup(v->valuestring) : dk_pyjson_repr(v); }

size_t agent_py_len(const char *s) {
    size_t len = strlen(s), count = 0, n;
    for (size_t i = 0; i < len; i += n) {
        code_point_at(s, len, i, &n);
        count++;
    }
    return count;
}

/* ---- the blocks ----------------------------------------------------------------------------------------- */

/* The last occurrence of needle in text, or NULL (str.rfind). */
static const char *rfind(const char *text, const char *needle) {
    const char *last = NULL;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) last = p;
    return last;
}

/* The ')' closing the '(' at lpar: quoted text (with \ escapes) skipped, nesting counted; NULL when unmatched. */
static const char *closing_paren(const char *lpar) {
    int depth = 0;
    bool in_quotes = false, escape = false;
    for (const char *p = lpar; *p; p++) {
        char ch = *p;
        if (in_quotes) {
            if (ch == '\\' && !escape) {
                escape = true;
                continue;
            }
            if (ch == '"' && !escape) in_quotes = false;
            escape = false;
            continue;
        }
        if (ch == '"') {
            in_quotes = true;
        } else if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            depth--;
            if (depth == 0) return p;
        }
    }
    return NULL;
}

/* strstr within inside[0..len). */
static const char *find_in(const char *inside, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(inside + i, needle, n) == 0) return inside + i;
    return NULL;
}

dk_agent_parse dk_agent_extract_final(const char *text, char **description) {
    *description = NULL;
    const char *start = rfind(text, "FINAL(");
    if (!start) return DK_AGENT_PARSE_NONE;
    const char *lpar = start + 5;
    const char *rpar = closing_paren(lpar);
    if (!rpar) return DK_AGENT_PARSE_ERROR;  /* "Unmatched parenthesis in FINAL(...)" */
    const char *inside = lpar + 1;
    size_t inside_len = (size_t)(rpar - inside);
    const char *key = find_in(inside, inside_len, "description:");
    if (!key) key = find_in(inside, inside_len, "description=");
    if (!key) return DK_AGENT_PARSE_ERROR;  /* "FINAL(...) must contain description: or description=" */
    const char *after_key = key + strlen("description:");
    size_t rest_begin, rest_end;
    agent_strip_span(after_key, (size_t)(rpar - after_key), &rest_begin, &rest_end);
    if (rest_begin < rest_end && after_key[rest_begin] == '"') {
        /* the first '"' after the key is where the stripped rest starts */
        const char *first_quote = after_key + rest_begin;
        bool escape = false;
        for (const char *p = first_quote + 1; p < rpar; p++) {
            if (*p == '\\' && !escape) {
                escape = true;
                continue;
            }
            if (*p == '"' && !escape) {
                *description = agent_strip(first_quote + 1, (size_t)(p - first_quote - 1));
                return DK_AGENT_PARSE_OK;
            }
            escape = false;
        }
        return DK_AGENT_PARSE_ERROR;  /* "Unterminated quoted description string" */
    }
    /* rest.strip(): the stripped rest (lstrip then strip) */
    *description = dk_strndup(after_key + rest_begin, rest_end - rest_begin);
    return DK_AGENT_PARSE_OK;
}

dk_agent_parse dk_agent_extract_call(const char *text, char **tool, cJSON **args) {
    *tool = NULL;
    *args = NULL;
    const char *start = rfind(text, "CALL(");
    if (!start) return DK_AGENT_PARSE_NONE;
    const char *lpar = start + 4;
    const char *rpar = closing_paren(lpar);
    if (!rpar) return DK_AGENT_PARSE_ERROR;  /* "Unmatched parenthesis in CALL(...)" */
    size_t b, e;
    agent_strip_span(rpar + 1, strlen(rpar + 1), &b, &e);
    if (b != e) return DK_AGENT_PARSE_ERROR;  /* "CALL(...) must be the last content" */
    const char *inside = lpar + 1;
    const char *colon = memchr(inside, ':', (size_t)(rpar - inside));
    if (!colon) return DK_AGENT_PARSE_ERROR;  /* "CALL(...) must contain ':' ..." */
    char *name = agent_strip(inside, (size_t)(colon - inside));
    if (!name[0]) {  /* "Tool name missing in CALL(...)" */
        free(name);
        return DK_AGENT_PARSE_ERROR;
    }
    char *json = agent_strip(colon + 1, (size_t)(rpar - colon - 1));
    char why[256];
    cJSON *parsed = dk_pyjson_loads(json, strlen(json), why, sizeof why);
    free(json);
    if (!cJSON_IsObject(parsed)) {  /* json.loads failed, or "JSON args must parse to an object" */
        cJSON_Delete(parsed);
        free(name);
        return DK_AGENT_PARSE_ERROR;
    }
    *tool = name;
    *args = parsed;
    return DK_AGENT_PARSE_OK;
}
