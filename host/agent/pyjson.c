/* pyjson.c — the writers and the reader of pyjson.h: JSON text and repr() as CPython 3 writes them.
 *
 * Floats: Python prints the shortest decimal that reads back to the same double (David Gay's dtoa, mode 0) and
 * chooses fixed or exponent notation by where the decimal point falls. Here the shortest digits come from
 * glibc's correctly rounded printf at increasing precision, each candidate checked by reading it back with
 * strtod; at a power of two, where the rounding interval is lopsided, the neighbours of the correctly rounded
 * candidate are tried too, so the result is the one dtoa gives (tests/agent/test_pyjson.c checks powers of two,
 * float32 values and random doubles against Python).
 *
 * Strings are bytes in cJSON; they are read as UTF-8, an invalid byte as U+FFFD (Python's strings cannot hold
 * one). repr()'s "printable" is Python's: every code point except categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs
 * other than the space (utf8proc's categories; code points assigned after its Unicode version read as Cn). */
#include "agent/pyjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "core/strutil.h"
#include "io/json_value.h"

cJSON *dk_pyjson_int(int64_t value) {
    cJSON *v = cJSON_CreateNumber((double)value);
    v->type |= DK_PYJSON_INT_FLAG;
    return v;
}

cJSON *dk_pyjson_add_int(cJSON *obj, const char *key, int64_t value) {
    cJSON *v = dk_pyjson_int(value);
    cJSON_AddItemToObject(obj, key, v);
    return v;
}

int dk_pyjson_is_int(const cJSON *v) { return cJSON_IsNumber(v) && (v->type & DK_PYJSON_INT_FLAG) != 0; }

/* ---- numbers ----------------------------------------------------------------------------------------- */

/* The shortest decimal digits of x > 0 (finite) that read back to x: digits[0..n) with no trailing zeros and
 * the decimal point after `*decpt` digits (x = 0.d1d2...dn * 10^decpt). */
static void shortest_digits(double x, char digits[32], int *decpt) {
    char buf[64];
    for (int p = 0; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p, x);
        bool found = strtod(buf, NULL) == x;
        /* mantissa as an integer m and exponent e: x ~ m * 10^e */
        unsigned long long m = 0;
        int n_mant = 0;
        const char *s = buf;
        for (; *s && *s != 'e'; s++)
            if (*s >= '0' && *s <= '9') {
                m = m * 10 + (unsigned long long)(*s - '0');
                n_mant++;
            }
        int e = atoi(s + 1) - (n_mant - 1);
        if (!found && p > 0) {
            /* at a power of two the interval below x is half the one above: a neighbour may read back */
            for (int d = -1; d <= 1 && !found; d += 2) {
                unsigned long long cand = m + (unsigned long long)(long long)d;
                snprintf(buf, sizeof buf, "%llue%d", cand, e);
                if (strtod(buf, NULL) == x) {
                    m = cand;
                    found = true;
                }
            }
        }
        if (!found) continue;
        while (m % 10 == 0 && m > 0) {
            m /= 10;
            e++;
        }
        int n = snprintf(digits, 32, "%llu", m);
        *decpt = n + e;
        return;
    }
    /* %.17e always reads back: not reached */
    snprintf(digits, 32, "0");
    *decpt = 1;
}

/* float.__repr__(x); json: JSON's spelling of the non-finite values (Infinity, NaN). */
static void put_float(dk_strbuf *b, double x, bool json) {
    if (isnan(x)) {
        dk_strbuf_append(b, json ? "NaN" : "nan");
        return;
    }
    if (isinf(x)) {
        dk_strbuf_append(b, x < 0 ? "-" : "");
        dk_strbuf_append(b, json ? "Infinity" : "inf");
        return;
    }
    if (signbit(x)) dk_strbuf_append(b, "-");
    x = fabs(x);
    if (x == 0) {
        dk_strbuf_append(b, "0.0");
        return;
    }
    char digits[32];
    int decpt;
    shortest_digits(x, digits, &decpt);
    int n = (int)strlen(digits);
    if (decpt <= -4 || decpt > 16) {  /* 1e-05, 1.5e+16 */
        dk_strbuf_append_n(b, digits, 1);
        if (n > 1) {
            dk_strbuf_append(b, ".");
            dk_strbuf_append(b, digits + 1);
        }
        int exp10 = decpt - 1;
        dk_strbuf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (decpt <= 0) {  /* 0.0001 */
        dk_strbuf_append(b, "0.");
        for (int i = 0; i < -decpt; i++) dk_strbuf_append(b, "0");
        dk_strbuf_append(b, digits);
    } else if (decpt >= n) {  /* 123456789.0 */
        dk_strbuf_append(b, digits);
        for (int i = n; i < decpt; i++) dk_strbuf_append(b, "0");
        dk_strbuf_append(b, ".0");
    } else {
        dk_strbuf_append_n(b, digits, (size_t)decpt);
        dk_strbuf_append(b, ".");
        dk_strbuf_append(b, digits + decpt);
    }
}

static void put_number(dk_strbuf *b, const cJSON *v, bool json) {
    double x = v->valuedouble;
    if (dk_pyjson_is_int(v) && isfinite(x)) {
        if (fabs(x) < 9.2e18) dk_strbuf_printf(b, "%lld", (long long)x);
        else dk_strbuf_printf(b, "%.0f", x);  /* beyond int64: the double's integer value */
        return;
    }
    put_float(b, x, json);
}

/* ---- strings ----------------------------------------------------------------------------------------- */

/* The next code point of s[*i..len): invalid UTF-8 reads as U+FFFD and moves one byte. */
static int32_t next_code_point(const char *s, size_t len, size_t *i) {
    utf8proc_int32_t cp = -1;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(len - *i), &cp);
    if (n <= 0 || cp < 0) {
        *i += 1;
        return 0xFFFD;
    }
    *i += (size_t)n;
    return cp;
}

static void put_utf8(dk_strbuf *b, int32_t cp) {
    utf8proc_uint8_t out[4];
    utf8proc_ssize_t n = utf8proc_encode_char(cp, out);
    dk_strbuf_append_n(b, (const char *)out, (size_t)n);
}

/* json.dumps of a str: ensure_ascii escapes every code point above 0x7e as \uXXXX (astral: a surrogate pair). */
static void put_json_string(dk_strbuf *b, const char *s, bool ensure_ascii) {
    size_t len = strlen(s), i = 0;
    dk_strbuf_append(b, "\"");
    while (i < len) {
        int32_t cp = next_code_point(s, len, &i);
        switch (cp) {
        case '"': dk_strbuf_append(b, "\\\""); continue;
        case '\\': dk_strbuf_append(b, "\\\\"); continue;
        case '\n': dk_strbuf_append(b, "\\n"); continue;
        case '\r': dk_strbuf_append(b, "\\r"); continue;
        case '\t': dk_strbuf_append(b, "\\t"); continue;
        case '\b': dk_strbuf_append(b, "\\b"); continue;
        case '\f': dk_strbuf_append(b, "\\f"); continue;
        default: break;
        }
        if (cp < 0x20) {
            dk_strbuf_printf(b, "\\u%04x", (unsigned)cp);
        } else if (!ensure_ascii || cp < 0x7f) {
            put_utf8(b, cp);
        } else if (cp < 0x10000) {
            dk_strbuf_printf(b, "\\u%04x", (unsigned)cp);
        } else {
            uint32_t v = (uint32_t)cp - 0x10000;
            dk_strbuf_printf(b, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
        }
    }
    dk_strbuf_append(b, "\"");
}

/* Python's str.isprintable() for one code point. */
static bool py_printable(int32_t cp) {
    if (cp == ' ') return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

/* repr() of a str: '...' unless it holds ' and no ", then "...". */
static void put_repr_string(dk_strbuf *b, const char *s) {
    size_t len = strlen(s), i = 0;
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    dk_strbuf_append_n(b, &quote, 1);
    while (i < len) {
        int32_t cp = next_code_point(s, len, &i);
        if (cp == quote || cp == '\\') {
            char esc[2] = {'\\', (char)cp};
            dk_strbuf_append_n(b, esc, 2);
        } else if (cp == '\t') {
            dk_strbuf_append(b, "\\t");
        } else if (cp == '\n') {
            dk_strbuf_append(b, "\\n");
        } else if (cp == '\r') {
            dk_strbuf_append(b, "\\r");
        } else if (cp < 0x20 || cp == 0x7f) {
            dk_strbuf_printf(b, "\\x%02x", (unsigned)cp);
        } else if (cp < 0x7f || py_printable(cp)) {
            put_utf8(b, cp);
        } else if (cp <= 0xff) {
            dk_strbuf_printf(b, "\\x%02x", (unsigned)cp);
        } else if (cp <= 0xffff) {
            dk_strbuf_printf(b, "\\u%04x", (unsigned)cp);
        } else {
            dk_strbuf_printf(b, "\\U%08x", (unsigned)cp);
        }
    }
    dk_strbuf_append_n(b, &quote, 1);
}

/* ---- values ------------------------------------------------------------------------------------------ */

static void put_indent(dk_strbuf *b, int depth) {
    dk_strbuf_append(b, "\n");
    for (int i = 0; i < depth; i++) dk_strbuf_append(b, "  ");
}

static void put_json(dk_strbuf *b, const cJSON *v, dk_pyjson_style style, int depth) {
    bool indent = style == DK_PYJSON_INDENT2;
    if (cJSON_IsNull(v) || !v) {
        dk_strbuf_append(b, "null");
    } else if (cJSON_IsTrue(v)) {
        dk_strbuf_append(b, "true");
    } else if (cJSON_IsFalse(v)) {
        dk_strbuf_append(b, "false");
    } else if (cJSON_IsNumber(v)) {
        put_number(b, v, true);
    } else if (cJSON_IsString(v)) {
        put_json_string(b, v->valuestring, !indent);
    } else if (cJSON_IsRaw(v)) {
        dk_strbuf_append(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool object = cJSON_IsObject(v);
        if (!v->child) {
            dk_strbuf_append(b, object ? "{}" : "[]");
            return;
        }
        dk_strbuf_append(b, object ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (indent) put_indent(b, depth + 1);
            if (object) {
                put_json_string(b, c->string ? c->string : "", !indent);
                dk_strbuf_append(b, ": ");
            }
            put_json(b, c, style, depth + 1);
            if (c->next) dk_strbuf_append(b, indent ? "," : ", ");
        }
        if (indent) put_indent(b, depth);
        dk_strbuf_append(b, object ? "}" : "]");
    } else {
        dk_strbuf_append(b, "null");
    }
}

char *dk_pyjson_dumps(const cJSON *v, dk_pyjson_style style) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    put_json(&b, v, style, 0);
    return dk_strbuf_take(&b);
}

static void put_repr(dk_strbuf *b, const cJSON *v) {
    if (cJSON_IsNull(v) || !v) {
        dk_strbuf_append(b, "None");
    } else if (cJSON_IsTrue(v)) {
        dk_strbuf_append(b, "True");
    } else if (cJSON_IsFalse(v)) {
        dk_strbuf_append(b, "False");
    } else if (cJSON_IsNumber(v)) {
        put_number(b, v, false);
    } else if (cJSON_IsString(v)) {
        put_repr_string(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool object = cJSON_IsObject(v);
        dk_strbuf_append(b, object ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (object) {
                put_repr_string(b, c->string ? c->string : "");
                dk_strbuf_append(b, ": ");
            }
            put_repr(b, c);
            if (c->next) dk_strbuf_append(b, ", ");
        }
        dk_strbuf_append(b, object ? "}" : "]");
    } else {
        dk_strbuf_append(b, "None");
    }
}

char *dk_pyjson_repr(const cJSON *v) {
    dk_strbuf b = {0};
    dk_strbuf_append(&b, "");
    put_repr(&b, v);
    return dk_strbuf_take(&b);
}

/* ---- json.loads ---------------------------------------------------------------------------------------- */

/* Where cJSON is more lenient than Python's json.loads, the text is checked first: a raw control character
 * inside a string (Python: "Invalid control character") and numbers outside JSON's grammar ("01", "1.",
 * "+1", which cJSON's strtod takes). The same scan records, in document order, which numbers are ints. */
typedef struct number_kinds {
    bool *is_int;  /* [n] */
    int n, cap;
} number_kinds;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Whether s[0..n) is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i < n && s[i] == '0') i++;
    else if (i < n && is_digit(s[i])) while (i < n && is_digit(s[i])) i++;
    else return false;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return false;
        while (i < n && is_digit(s[i])) i++;
    }
    return i == n;
}

static int scan_text(const char *text, size_t len, number_kinds *kinds, char *why, size_t why_cap) {
    size_t i = 0;
    while (i < len) {
        char c = text[i];
        if (c == '"') {
            for (i++; i < len && text[i] != '"'; i++) {
                if ((unsigned char)text[i] < 0x20) {
                    snprintf(why, why_cap, "Invalid control character at byte %zu", i);
                    return -1;
                }
                if (text[i] == '\\') i++;
            }
            i++;
        } else if (c == '-' || is_digit(c) || c == '+' || c == '.') {
            size_t start = i;
            while (i < len && (is_digit(text[i]) || strchr("+-.eE", text[i]))) i++;
            if (!json_number_ok(text + start, i - start)) {
                snprintf(why, why_cap, "not a JSON number at byte %zu: %.*s", start, (int)(i - start > 40 ? 40 : i - start),
                         text + start);
                return -1;
            }
            if (kinds->n == kinds->cap) {
                kinds->cap = kinds->cap ? 2 * kinds->cap : 16;
                kinds->is_int = dk_realloc(kinds->is_int, (size_t)kinds->cap * sizeof *kinds->is_int);
            }
            bool integral = true;
            for (size_t k = start; k < i; k++)
                if (text[k] == '.' || text[k] == 'e' || text[k] == 'E') integral = false;
            kinds->is_int[kinds->n++] = integral;
        } else {
            i++;
        }
    }
    return 0;
}

/* Marks numbers in document order and makes objects behave like a dict built from the text: a repeated key
 * keeps its first place and its last value. */
static void mark_and_merge(cJSON *v, const number_kinds *kinds, int *next) {
    if (cJSON_IsNumber(v)) {
        if (*next < kinds->n && kinds->is_int[*next]) v->type |= DK_PYJSON_INT_FLAG;
        (*next)++;
        return;
    }
    cJSON *c = v->child;
    while (c) {
        cJSON *after = c->next;
        mark_and_merge(c, kinds, next);
        if (cJSON_IsObject(v)) {
            for (cJSON *e = v->child; e != c; e = e->next)
                if (strcmp(e->string, c->string) == 0) {
                    cJSON_DetachItemViaPointer(v, c);
                    cJSON_ReplaceItemViaPointer(v, e, c);
                    break;
                }
        }
        c = after;
    }
}

cJSON *dk_pyjson_loads(const char *text, size_t len, char *why, size_t why_cap) {
    number_kinds kinds = {0};
    cJSON *v = NULL;
    if (memchr(text, '\0', len) == NULL && scan_text(text, len, &kinds, why, why_cap) == 0) {
        v = dk_json_parse_one(text, len, why, why_cap);
        if (v) {
            int next = 0;
            mark_and_merge(v, &kinds, &next);
        }
    } else if (memchr(text, '\0', len)) {
        v = dk_json_parse_one(text, len, why, why_cap);  /* says where the NUL is */
    }
    free(kinds.is_int);
    return v;
}
