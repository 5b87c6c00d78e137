/* node.c — see node.h. */
#include "node.h"

#include "core/error.h"
#include "core/strutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

dk_cfg_node *dk_cfg_node_new(dk_cfg_kind kind, const char *source, int line, int col) {
    dk_cfg_node *n = dk_calloc(1, sizeof *n);
    n->kind = kind;
    n->source = source;
    n->line = line;
    n->col = col;
    return n;
}

dk_cfg_node *dk_cfg_scalar_new(const char *text, bool quoted, const char *source, int line, int col) {
    dk_cfg_node *n = dk_cfg_node_new(DK_CFG_SCALAR, source, line, col);
    n->text = dk_strdup(text);
    n->quoted = quoted;
    return n;
}

void dk_cfg_node_free(dk_cfg_node *node) {
    if (!node) return;
    for (size_t i = 0; i < node->n; i++) {
        dk_cfg_node_free(node->items[i]);
        if (node->keys) free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node->text);
    free(node);
}

dk_cfg_node *dk_cfg_node_clone(const dk_cfg_node *node) {
    if (!node) return NULL;
    dk_cfg_node *c = dk_cfg_node_new(node->kind, node->source, node->line, node->col);
    c->quoted = node->quoted;
    c->resolved = node->resolved;
    if (node->text) c->text = dk_strdup(node->text);
    for (size_t i = 0; i < node->n; i++) {
        if (node->kind == DK_CFG_MAP)
            dk_cfg_map_set(c, node->keys[i], dk_cfg_node_clone(node->items[i]));
        else
            dk_cfg_seq_append(c, dk_cfg_node_clone(node->items[i]));
    }
    return c;
}

/* ---- scalar typing ------------------------------------------------------------------------------ */

static bool is_null_text(const char *t) {
    return t[0] == '\0' || strcmp(t, "~") == 0 || strcmp(t, "null") == 0 || strcmp(t, "Null") == 0 ||
           strcmp(t, "NULL") == 0;
}

bool dk_cfg_parse_bool(const char *t, bool *out) {
    if (strcasecmp(t, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(t, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Copies t without underscores between digits ("50_000_000" -> "50000000"); false if an underscore is
 * anywhere else or the text is too long. */
static bool strip_digit_underscores(const char *t, char *buf, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; t[i]; i++) {
        if (t[i] == '_') {
            bool between = i > 0 && t[i + 1] && strchr("0123456789abcdefABCDEF", t[i - 1]) &&
                           strchr("0123456789abcdefABCDEF", t[i + 1]);
            if (!between) return false;
            continue;
        }
        if (j + 1 >= cap) return false;
        buf[j++] = t[i];
    }
    buf[j] = '\0';
    return true;
}

bool dk_cfg_parse_int(const char *text, int64_t *out) {
    char t[128];
    if (!strip_digit_underscores(text, t, sizeof t) || !t[0]) return false;
    const char *s = t;
    int sign = 1;
    if (*s == '+' || *s == '-') sign = (*s++ == '-') ? -1 : 1;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) base = 16, s += 2;
    else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) base = 8, s += 2;
    if (!*s) return false;
    for (const char *p = s; *p; p++) {
        bool ok = base == 16 ? strchr("0123456789abcdefABCDEF", *p) != NULL
                             : (*p >= '0' && *p < (char)('0' + base));
        if (!ok) return false;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) return false;
    if (sign > 0 && v > (unsigned long long)INT64_MAX) return false;
    if (sign < 0 && v > (unsigned long long)INT64_MAX + 1ull) return false;
    *out = sign > 0 ? (int64_t)v : (int64_t)(0 - v);
    return true;
}

bool dk_cfg_parse_float(const char *text, double *out) {
    if (strcmp(text, ".inf") == 0 || strcmp(text, "+.inf") == 0 || strcasecmp(text, ".Inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(text, "-.inf") == 0 || strcasecmp(text, "-.Inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcasecmp(text, ".nan") == 0) {
        *out = NAN;
        return true;
    }
    char t[128];
    if (!strip_digit_underscores(text, t, sizeof t) || !t[0]) return false;
    /* [-+]? ( digits [. digits?] | . digits ) ([eE] [-+]? digits)? */
    const char *s = t;
    if (*s == '+' || *s == '-') s++;
    size_t int_digits = strspn(s, "0123456789");
    s += int_digits;
    size_t frac_digits = 0;
    if (*s == '.') {
        s++;
        frac_digits = strspn(s, "0123456789");
        s += frac_digits;
    }
    if (int_digits + frac_digits == 0) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        size_t exp_digits = strspn(s, "0123456789");
        if (exp_digits == 0) return false;
        s += exp_digits;
    }
    if (*s) return false;
    errno = 0;
    char *end = NULL;
    double v = strtod(t, &end);
    if (*end) return false;
    *out = v;
    return true;
}

dk_cfg_type dk_cfg_node_type(const dk_cfg_node *node) {
    if (!node || node->kind == DK_CFG_NULL) return DK_CFG_TYPE_NULL;
    if (node->kind == DK_CFG_SEQ) return DK_CFG_TYPE_SEQ;
    if (node->kind == DK_CFG_MAP) return DK_CFG_TYPE_MAP;
    if (node->quoted) return DK_CFG_TYPE_STRING;
    const char *t = node->text;
    if (strcmp(t, "???") == 0) return DK_CFG_TYPE_MISSING;
    if (is_null_text(t)) return DK_CFG_TYPE_NULL;
    bool b;
    if (dk_cfg_parse_bool(t, &b)) return DK_CFG_TYPE_BOOL;
    int64_t i;
    if (dk_cfg_parse_int(t, &i)) return DK_CFG_TYPE_INT;
    double d;
    if (dk_cfg_parse_float(t, &d)) return DK_CFG_TYPE_FLOAT;
    return DK_CFG_TYPE_STRING;
}

const char *dk_cfg_type_name(dk_cfg_type type) {
    switch (type) {
    case DK_CFG_TYPE_NULL: return "null";
    case DK_CFG_TYPE_BOOL: return "a boolean (true or false)";
    case DK_CFG_TYPE_INT: return "an integer";
    case DK_CFG_TYPE_FLOAT: return "a number";
    case DK_CFG_TYPE_STRING: return "a string";
    case DK_CFG_TYPE_MISSING: return "a required value that is not set (?\?\?)";
    case DK_CFG_TYPE_SEQ: return "a list";
    case DK_CFG_TYPE_MAP: return "a mapping";
    }
    return "?";
}

/* ---- maps, sequences, paths --------------------------------------------------------------------- */

static void grow(dk_cfg_node *node) {
    if (node->n < node->cap) return;
    node->cap = node->cap ? 2 * node->cap : 8;
    node->items = dk_realloc(node->items, node->cap * sizeof *node->items);
    if (node->kind == DK_CFG_MAP) node->keys = dk_realloc(node->keys, node->cap * sizeof *node->keys);
}

dk_cfg_node *dk_cfg_map_get(const dk_cfg_node *map, const char *key) {
    if (!map || map->kind != DK_CFG_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

void dk_cfg_map_set(dk_cfg_node *map, const char *key, dk_cfg_node *value) {
    CHECK(map->kind == DK_CFG_MAP, "dk_cfg_map_set on a node that is not a mapping (key %s)", key);
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            dk_cfg_node_free(map->items[i]);
            map->items[i] = value;
            return;
        }
    }
    grow(map);
    map->keys[map->n] = dk_strdup(key);
    map->items[map->n++] = value;
}

bool dk_cfg_map_remove(dk_cfg_node *map, const char *key) {
    if (!map || map->kind != DK_CFG_MAP) return false;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) != 0) continue;
        dk_cfg_node_free(map->items[i]);
        free(map->keys[i]);
        memmove(map->items + i, map->items + i + 1, (map->n - i - 1) * sizeof *map->items);
        memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof *map->keys);
        map->n--;
        return true;
    }
    return false;
}

void dk_cfg_seq_append(dk_cfg_node *seq, dk_cfg_node *item) {
    CHECK(seq->kind == DK_CFG_SEQ, "dk_cfg_seq_append on a node that is not a list");
    grow(seq);
    seq->items[seq->n++] = item;
}

dk_cfg_node *dk_cfg_lookup(const dk_cfg_node *root, const char *path) {
    const dk_cfg_node *node = root;
    char *copy = dk_strdup(path);
    char *save = NULL;
    for (char *part = strtok_r(copy, ".", &save); part && node; part = strtok_r(NULL, ".", &save)) {
        if (node->kind == DK_CFG_MAP) {
            node = dk_cfg_map_get(node, part);
        } else if (node->kind == DK_CFG_SEQ) {
            int64_t idx;
            node = (dk_cfg_parse_int(part, &idx) && idx >= 0 && (size_t)idx < node->n) ? node->items[idx] : NULL;
        } else {
            node = NULL;
        }
    }
    free(copy);
    return (dk_cfg_node *)node;
}

void dk_cfg_merge(dk_cfg_node *dst, dk_cfg_node *src) {
    CHECK(dst->kind == DK_CFG_MAP && src->kind == DK_CFG_MAP, "dk_cfg_merge needs two mappings");
    for (size_t i = 0; i < src->n; i++) {
        dk_cfg_node *mine = dk_cfg_map_get(dst, src->keys[i]);
        if (mine && mine->kind == DK_CFG_MAP && src->items[i]->kind == DK_CFG_MAP) {
            dk_cfg_merge(mine, src->items[i]);
        } else {
            dk_cfg_map_set(dst, src->keys[i], src->items[i]);
            src->items[i] = NULL;
        }
        free(src->keys[i]);
    }
    free(src->keys);
    free(src->items);
    free(src->text);
    free(src);
}

static void collect_paths(const dk_cfg_node *node, const char *prefix, char ***out, size_t *n, size_t *cap) {
    if (!node || node->kind != DK_CFG_MAP) return;
    for (size_t i = 0; i < node->n; i++) {
        char *path = prefix[0] ? dk_sprintf("%s.%s", prefix, node->keys[i]) : dk_strdup(node->keys[i]);
        if (*n == *cap) *out = dk_realloc(*out, (*cap = *cap ? 2 * *cap : 64) * sizeof **out);
        (*out)[(*n)++] = path;
        collect_paths(node->items[i], path, out, n, cap);
    }
}

char **dk_cfg_all_paths(const dk_cfg_node *root, size_t *count) {
    char **out = NULL;
    size_t n = 0, cap = 0;
    collect_paths(root, "", &out, &n, &cap);
    *count = n;
    return out;
}

char *dk_cfg_nearest_path(const dk_cfg_node *root, const char *key) {
    size_t n = 0;
    char **paths = dk_cfg_all_paths(root, &n);
    int best = dk_nearest_string(key, (const char *const *)paths, n);
    char *result = best >= 0 ? dk_strdup(paths[best]) : NULL;
    dk_free_strings(paths, n);
    return result;
}
