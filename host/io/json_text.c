/* json_text.c — see json_text.h. A scanner over JSON text already known to be valid: it only has to find where
 * values begin and end, never to diagnose. */
#include "io/json_text.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

bool dk_json_has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return true;
        i++; /* skip the escaped character (so "\\\\u0000" is not a NUL) */
    }
    return false;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Past the string literal at p (a '"'). */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
    return p < end ? p + 1 : end;
}

/* Past the value at p. */
static const char *skip_value(const char *p, const char *end) {
    if (p >= end) return end;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                depth--;
                if (depth == 0) return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
    return p; /* a number, true, false or null */
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(const char *p, const char *end, uint32_t *out) {
    if (end - p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 0;
}

int dk_json_decode_string(const char *s, const char *end, char **out, size_t *len) {
    if (s >= end || *s != '"') return -1;
    const char *stop = skip_string(s, end) - 1; /* the closing quote */
    char *buf = dk_malloc((size_t)(stop - s) + 1), *w = buf; /* decoding never grows the text */
    for (const char *p = s + 1; p < stop; p++) {
        if (*p != '\\') {
            *w++ = *p;
            continue;
        }
        p++;
        uint32_t cp = 0;
        switch (*p) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (hex4(p + 1, stop, &cp) != 0) goto bad;
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad; /* a low surrogate first */
            if (cp >= 0xD800 && cp <= 0xDBFF) {         /* a high surrogate: the low one must follow */
                uint32_t lo;
                if (p + 2 >= stop || p[1] != '\\' || p[2] != 'u' || hex4(p + 3, stop, &lo) != 0 || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            w += utf8_put(cp, w);
            break;
        default: goto bad;
        }
    }
    *w = '\0';
    *out = buf;
    *len = (size_t)(w - buf);
    return 0;
bad:
    free(buf);
    return -1;
}

const char *dk_json_locate(const char *json, size_t n, const dk_json_step *path, size_t depth) {
    const char *end = json + n, *p = skip_ws(json, end);
    for (size_t d = 0; d < depth; d++) {
        const bool object = path[d].key != NULL;
        if (p >= end || *p != (object ? '{' : '[')) return NULL;
        p = skip_ws(p + 1, end);
        const char *found = NULL;
        for (int64_t i = 0; p < end && *p != (object ? '}' : ']') && !found; i++) {
            if (object) { /* "key" : value */
                char *key = NULL;
                size_t key_len = 0;
                const char *after_key = skip_string(p, end);
                bool match = dk_json_decode_string(p, end, &key, &key_len) == 0 &&
                             key_len == strlen(path[d].key) && memcmp(key, path[d].key, key_len) == 0;
                free(key);
                p = skip_ws(after_key, end);
                if (p < end && *p == ':') p = skip_ws(p + 1, end);
                if (match) found = p;
            } else if (i == path[d].index) {
                found = p;
            }
            if (!found) {
                p = skip_ws(skip_value(p, end), end);
                if (p < end && *p == ',') p = skip_ws(p + 1, end);
            }
        }
        if (!found) return NULL;
        p = found;
    }
    return p;
}
