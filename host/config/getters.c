/* getters.c — typed access to the resolved configuration. Each error names the key, where its value was
 * set, what was expected and what was found; the plain getters turn that into exit code 2. */
#include "config.h"

#include "core/strutil.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

const dk_cfg_node *dk_cfg_get(const dk_cfg *cfg, const char *path) { return dk_cfg_lookup(cfg->root, path); }

bool dk_cfg_has(const dk_cfg *cfg, const char *path) {
    const dk_cfg_node *n = dk_cfg_get(cfg, path);
    return n && dk_cfg_node_type(n) != DK_CFG_TYPE_NULL;
}

static int missing(const dk_cfg *cfg, const char *path, dk_err *err) {
    dk_strbuf msg = {0};
    dk_strbuf_printf(&msg, "config key %s is missing", path);
    char *near = dk_cfg_nearest_path(cfg->root, path);
    if (near) dk_strbuf_printf(&msg, " (did you mean %s?)", near);
    free(near);
    dk_strbuf_printf(&msg, "; add it to %s/config.yaml or give it as +%s=VALUE",
                     cfg->config_dir[0] ? cfg->config_dir : "the config", path);
    int rc = dk_err_set(err, DK_EXIT_USAGE, "%s", msg.data);
    dk_strbuf_free(&msg);
    return rc;
}

static int wrong_type(const char *path, const dk_cfg_node *node, const char *expected, dk_err *err) {
    char where[PATH_MAX + 32];
    dk_cfg_node_where(node, where, sizeof where);
    const char *found = node->kind == DK_CFG_SCALAR ? node->text : dk_cfg_type_name(dk_cfg_node_type(node));
    return dk_err_set(err, DK_EXIT_USAGE, "config key %s (%s) must be %s, got '%s'", path, where, expected, found);
}

/* Looks up a scalar leaf; -1 with err set when absent or not a scalar. */
static int scalar(const dk_cfg *cfg, const char *path, const char *expected, const dk_cfg_node **out, dk_err *err) {
    const dk_cfg_node *n = dk_cfg_get(cfg, path);
    if (!n) return missing(cfg, path, err);
    if (n->kind != DK_CFG_SCALAR) return wrong_type(path, n, expected, err);
    *out = n;
    return 0;
}

int dk_cfg_try_int(const dk_cfg *cfg, const char *path, int64_t *out, dk_err *err) {
    const dk_cfg_node *n = NULL;
    if (scalar(cfg, path, "an integer", &n, err) != 0) return -1;
    if (dk_cfg_node_type(n) != DK_CFG_TYPE_INT || !dk_cfg_parse_int(n->text, out))
        return wrong_type(path, n, "an integer", err);
    return 0;
}

int dk_cfg_try_float(const dk_cfg *cfg, const char *path, double *out, dk_err *err) {
    const dk_cfg_node *n = NULL;
    if (scalar(cfg, path, "a number", &n, err) != 0) return -1;
    dk_cfg_type t = dk_cfg_node_type(n);
    if (t == DK_CFG_TYPE_INT) {
        int64_t i;
        dk_cfg_parse_int(n->text, &i);
        *out = (double)i;
        return 0;
    }
    if (t != DK_CFG_TYPE_FLOAT || !dk_cfg_parse_float(n->text, out)) return wrong_type(path, n, "a number", err);
    return 0;
}

int dk_cfg_try_bool(const dk_cfg *cfg, const char *path, bool *out, dk_err *err) {
    const dk_cfg_node *n = NULL;
    if (scalar(cfg, path, "a boolean (true or false)", &n, err) != 0) return -1;
    if (dk_cfg_node_type(n) != DK_CFG_TYPE_BOOL || !dk_cfg_parse_bool(n->text, out))
        return wrong_type(path, n, "a boolean (true or false)", err);
    return 0;
}

int dk_cfg_try_str(const dk_cfg *cfg, const char *path, bool allow_null, const char **out, dk_err *err) {
    const dk_cfg_node *n = dk_cfg_get(cfg, path);
    if (!n) return missing(cfg, path, err);
    if (n->kind == DK_CFG_NULL) {
        if (!allow_null) return wrong_type(path, n, "a string (it is null)", err);
        *out = NULL;
        return 0;
    }
    if (n->kind != DK_CFG_SCALAR) return wrong_type(path, n, "a string", err);
    *out = n->text;
    return 0;
}

static int number_list(const dk_cfg *cfg, const char *path, bool integers, double **out_f, int64_t **out_i, size_t *count,
                       dk_err *err) {
    const char *expected = integers ? "a list of integers" : "a list of numbers";
    const dk_cfg_node *n = dk_cfg_get(cfg, path);
    if (!n) return missing(cfg, path, err);
    if (n->kind != DK_CFG_SEQ) return wrong_type(path, n, expected, err);
    double *f = integers ? NULL : dk_malloc((n->n + 1) * sizeof(double));
    int64_t *v = integers ? dk_malloc((n->n + 1) * sizeof(int64_t)) : NULL;
    for (size_t i = 0; i < n->n; i++) {
        const dk_cfg_node *item = n->items[i];
        dk_cfg_type t = dk_cfg_node_type(item);
        bool ok = item->kind == DK_CFG_SCALAR &&
                  (integers ? (t == DK_CFG_TYPE_INT && dk_cfg_parse_int(item->text, &v[i]))
                            : ((t == DK_CFG_TYPE_INT || t == DK_CFG_TYPE_FLOAT) && dk_cfg_parse_float(item->text, &f[i])));
        if (!ok) {
            free(f);
            free(v);
            char *p = dk_sprintf("%s.%zu", path, i);
            int rc = wrong_type(p, item, integers ? "an integer" : "a number", err);
            free(p);
            return rc;
        }
    }
    if (integers) *out_i = v;
    else *out_f = f;
    *count = n->n;
    return 0;
}

int dk_cfg_try_float_list(const dk_cfg *cfg, const char *path, double **out, size_t *n, dk_err *err) {
    return number_list(cfg, path, false, out, NULL, n, err);
}

int dk_cfg_try_int_list(const dk_cfg *cfg, const char *path, int64_t **out, size_t *n, dk_err *err) {
    return number_list(cfg, path, true, NULL, out, n, err);
}

int64_t dk_cfg_int(const dk_cfg *cfg, const char *path) {
    dk_err err = {0};
    int64_t v = 0;
    if (dk_cfg_try_int(cfg, path, &v, &err) != 0) dk_die_identical(&err);
    return v;
}

double dk_cfg_float(const dk_cfg *cfg, const char *path) {
    dk_err err = {0};
    double v = 0;
    if (dk_cfg_try_float(cfg, path, &v, &err) != 0) dk_die_identical(&err);
    return v;
}

bool dk_cfg_bool(const dk_cfg *cfg, const char *path) {
    dk_err err = {0};
    bool v = false;
    if (dk_cfg_try_bool(cfg, path, &v, &err) != 0) dk_die_identical(&err);
    return v;
}

const char *dk_cfg_str(const dk_cfg *cfg, const char *path) {
    dk_err err = {0};
    const char *v = NULL;
    if (dk_cfg_try_str(cfg, path, false, &v, &err) != 0) dk_die_identical(&err);
    return v;
}

const char *dk_cfg_str_or_null(const dk_cfg *cfg, const char *path) {
    dk_err err = {0};
    const char *v = NULL;
    if (dk_cfg_try_str(cfg, path, true, &v, &err) != 0) dk_die_identical(&err);
    return v;
}
