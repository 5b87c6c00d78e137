/* interp.c — ${key}, ${oc.select:key[,default]}, ${env:VAR[,default]} (also oc.env:), ${now:FORMAT} and \${
 * escapes.
 *
 * A scalar that is exactly one ${key} becomes a copy of that value, keeping its type (a list stays a list,
 * an integer an integer); anything else is spliced into a string. References are resolved depth-first
 * with a stack of the keys being resolved, so a cycle is reported as "a -> b -> a". */
#include "interp.h"

#include "config.h"
#include "core/strutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_CHAIN = 32 };

typedef struct {
    dk_cfg_node *root;
    const char *chain[MAX_CHAIN]; /* keys being resolved, outermost first */
    int depth;
    time_t now;
} resolver;

static int resolve_node(resolver *r, dk_cfg_node *node, const char *path, dk_err *err);

static int fail(resolver *r, const dk_cfg_node *node, const char *path, dk_err *err, const char *fmt, const char *a,
                const char *b) {
    char where[PATH_MAX + 32], what[1024];
    dk_cfg_node_where(node, where, sizeof where);
    snprintf(what, sizeof what, fmt, a, b);
    (void)r;
    return dk_err_set(err, DK_EXIT_USAGE, "%s (%s): %s", path, where, what);
}

/* Finds the '}' that closes the ${ at text[start]; -1 when missing or when another ${ is nested inside. */
static long closing_brace(const char *text, size_t start) {
    for (size_t i = start + 2; text[i]; i++) {
        if (text[i] == '}') return (long)i;
        if (text[i] == '$' && text[i + 1] == '{') return -1;
    }
    return -1;
}

static void trim(char *s) {
    size_t a = strspn(s, " \t"), len = strlen(s);
    while (len > a && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    memmove(s, s + a, len - a);
    s[len - a] = '\0';
}

/* The DEFAULT of ${env:VAR,DEFAULT} / ${oc.select:KEY,DEFAULT}: trimmed, one pair of quotes removed, typed as
 * YAML types a plain scalar (null is null, 3 an integer). */
static dk_cfg_node *default_value(const char *text, const dk_cfg_node *at) {
    char *def = dk_strdup(text);
    trim(def);
    size_t dl = strlen(def);
    if (dl >= 2 && ((def[0] == '\'' && def[dl - 1] == '\'') || (def[0] == '"' && def[dl - 1] == '"'))) {
        memmove(def, def + 1, dl - 2);
        def[dl - 2] = '\0';
    }
    dk_cfg_node *out = dk_cfg_scalar_new(def, false, at->source, at->line, at->col);
    free(def);
    return out;
}

static dk_cfg_node *reference(resolver *r, const dk_cfg_node *at, const char *path, const char *key, dk_err *err);

/* Evaluates one expression (the text between ${ and }); returns a new node or NULL with err set. */
static dk_cfg_node *evaluate(resolver *r, const dk_cfg_node *at, const char *path, const char *expr_in, dk_err *err) {
    char *expr = dk_strdup(expr_in);
    trim(expr);
    dk_cfg_node *out = NULL;
    const char *env_prefix = dk_str_starts_with(expr, "env:") ? "env:" : dk_str_starts_with(expr, "oc.env:") ? "oc.env:" : NULL;
    if (env_prefix) {
        char *spec = expr + strlen(env_prefix);
        char *comma = strchr(spec, ',');
        if (comma) *comma = '\0';
        char *var = dk_strdup(spec);
        trim(var);
        const char *value = getenv(var);
        if (!value && comma) {
            out = default_value(comma + 1, at);
        } else if (value) {
            out = dk_cfg_scalar_new(value, false, at->source, at->line, at->col);
        } else {
            fail(r, at, path, err, "environment variable %s is not set and ${env:%s,DEFAULT} gives no default", var, var);
        }
        free(var);
    } else if (dk_str_starts_with(expr, "now:")) {
        char buf[256];
        struct tm tm_now;
        localtime_r(&r->now, &tm_now);
        if (strftime(buf, sizeof buf, expr + 4, &tm_now) == 0 && expr[4] != '\0')
            fail(r, at, path, err, "${now:%s} gives an empty or too long text%s", expr + 4, "");
        else
            out = dk_cfg_scalar_new(buf, true, at->source, at->line, at->col);
    } else if (dk_str_starts_with(expr, "oc.select:")) {
        /* OmegaConf's oc.select: the value of KEY, or DEFAULT (null when not given) when KEY is absent, e.g. a
         * group left out with organism=null */
        char *key = dk_strdup(expr + strlen("oc.select:"));
        char *comma = strchr(key, ',');
        if (comma) *comma = '\0';
        trim(key);
        if (dk_cfg_lookup(r->root, key))
            out = reference(r, at, path, key, err);
        else
            out = comma ? default_value(comma + 1, at) : dk_cfg_node_new(DK_CFG_NULL, at->source, at->line, at->col);
        free(key);
    } else if (strchr(expr, ':')) {
        fail(r, at, path, err, "unknown resolver in ${%s}: diffkit knows ${KEY}, ${oc.select:KEY,default}, "
             "${env:VAR,default} and ${now:FORMAT}%s", expr, "");
    } else {
        out = reference(r, at, path, expr, err);
    }
    free(expr);
    return out;
}

/* ${KEY}: a resolved copy of the value at KEY, or NULL with err (absent key, cycle). */
static dk_cfg_node *reference(resolver *r, const dk_cfg_node *at, const char *path, const char *expr, dk_err *err) {
    dk_cfg_node *out = NULL;
    {
        dk_cfg_node *target = dk_cfg_lookup(r->root, expr);
        if (!target) {
            dk_strbuf msg = {0};
            dk_strbuf_printf(&msg, "${%s} refers to a key that does not exist", expr);
            char *near = dk_cfg_nearest_path(r->root, expr);
            if (near) dk_strbuf_printf(&msg, "; did you mean ${%s}?", near);
            free(near);
            fail(r, at, path, err, "%s%s", msg.data, "");
            dk_strbuf_free(&msg);
        } else {
            for (int i = 0; i < r->depth; i++) {
                if (strcmp(r->chain[i], expr) != 0) continue;
                dk_strbuf cycle = {0};
                for (int j = i; j < r->depth; j++) dk_strbuf_printf(&cycle, "%s -> ", r->chain[j]);
                dk_strbuf_append(&cycle, expr);
                fail(r, at, path, err, "interpolation cycle: %s%s", cycle.data, "");
                dk_strbuf_free(&cycle);
                return NULL;
            }
            if (resolve_node(r, target, expr, err) == 0) out = dk_cfg_node_clone(target);
        }
    }
    return out;
}

/* Resolves one scalar's text. */
static int resolve_scalar(resolver *r, dk_cfg_node *node, const char *path, dk_err *err) {
    const char *text = node->text;
    size_t len = strlen(text);
    /* whole-value reference: keeps the referenced value's type */
    if (len > 3 && text[0] == '$' && text[1] == '{' && closing_brace(text, 0) == (long)len - 1) {
        char *expr = dk_strndup(text + 2, len - 3);
        dk_cfg_node *value = evaluate(r, node, path, expr, err);
        free(expr);
        if (!value) return -1;
        free(node->text);
        node->kind = value->kind;
        node->text = value->text;
        node->quoted = value->quoted;
        node->n = value->n;
        node->cap = value->cap;
        node->items = value->items;
        node->keys = value->keys;
        free(value);
        return 0;
    }
    dk_strbuf out = {0};
    for (size_t i = 0; i < len;) {
        if (text[i] == '\\' && text[i + 1] == '$' && text[i + 2] == '{') {
            dk_strbuf_append(&out, "${");
            i += 3;
            continue;
        }
        if (text[i] == '$' && text[i + 1] == '{') {
            long end = closing_brace(text, i);
            if (end < 0) {
                dk_strbuf_free(&out);
                return fail(r, node, path, err, "unclosed or nested interpolation in '%s'%s", text, "");
            }
            char *expr = dk_strndup(text + i + 2, (size_t)end - i - 2);
            dk_cfg_node *value = evaluate(r, node, path, expr, err);
            free(expr);
            if (!value) {
                dk_strbuf_free(&out);
                return -1;
            }
            if (value->kind == DK_CFG_SEQ || value->kind == DK_CFG_MAP) {
                dk_cfg_node_free(value);
                dk_strbuf_free(&out);
                return fail(r, node, path, err, "'%s' splices a list or mapping into text%s", text, "");
            }
            dk_strbuf_append(&out, value->kind == DK_CFG_NULL ? "null" : value->text);
            dk_cfg_node_free(value);
            i = (size_t)end + 1;
            continue;
        }
        dk_strbuf_append_n(&out, text + i, 1);
        i++;
    }
    free(node->text);
    node->text = dk_strbuf_take(&out);
    node->quoted = true; /* text built from pieces is a string */
    return 0;
}

static int resolve_node(resolver *r, dk_cfg_node *node, const char *path, dk_err *err) {
    if (node->kind == DK_CFG_SCALAR) {
        if (node->resolved || !strstr(node->text, "${")) return 0;
        if (r->depth == MAX_CHAIN) return fail(r, node, path, err, "interpolations nested deeper than 32 levels%s%s", "", "");
        r->chain[r->depth++] = path;
        int rc = resolve_scalar(r, node, path, err);
        r->depth--;
        if (rc == 0 && node->kind == DK_CFG_SCALAR) node->resolved = true;
        return rc;
    }
    for (size_t i = 0; (node->kind == DK_CFG_MAP || node->kind == DK_CFG_SEQ) && i < node->n; i++) {
        char *child = node->kind == DK_CFG_MAP ? (path[0] ? dk_sprintf("%s.%s", path, node->keys[i]) : dk_strdup(node->keys[i]))
                                               : dk_sprintf("%s.%zu", path, i);
        int rc = resolve_node(r, node->items[i], child, err);
        free(child);
        if (rc != 0) return rc;
    }
    return 0;
}

int dk_cfg_resolve_interpolations(dk_cfg_node *root, dk_err *err) {
    resolver r = {.root = root, .depth = 0, .now = time(NULL)};
    return resolve_node(&r, root, "", err);
}
