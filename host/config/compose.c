/* compose.c — dk_cfg_compose: primary file + defaults list + group files + command-line overrides, then
 * the ??? check and interpolation (interp.c). The rules are in config.h. */
#include "config.h"

#include "core/strutil.h"
#include "interp.h"
#include "io/file.h"
#include "yaml_io.h"

#include <ctype.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* `group: auto` takes the first key of the mapping at `from` (seed_spec §1.3: model auto.yaml). */
static const struct {
    const char *group;
    const char *from;
} auto_rules[] = {{"model", "organism.finetuned_models"}};

static const char *COMMAND_LINE = "command line";

typedef struct {
    char *group;        /* NULL for _self_ */
    char *choice;       /* NULL: left out (null) */
    const char *where;  /* for messages */
} default_entry;

typedef enum { OP_SET, OP_ADD, OP_UPSERT, OP_DELETE } override_op;

typedef struct {
    override_op op;
    char *key;
    char *value;        /* NULL for OP_DELETE */
    const char *arg;    /* the argument as given */
} override;

/* ---- small helpers ------------------------------------------------------------------------------ */

static const char *intern(dk_cfg *cfg, const char *s) {
    for (size_t i = 0; i < cfg->n_sources; i++)
        if (strcmp(cfg->sources[i], s) == 0) return cfg->sources[i];
    cfg->sources = dk_realloc(cfg->sources, (cfg->n_sources + 1) * sizeof *cfg->sources);
    cfg->sources[cfg->n_sources] = dk_strdup(s);
    return cfg->sources[cfg->n_sources++];
}

void dk_cfg_node_where(const dk_cfg_node *node, char *buf, size_t cap) {
    if (!node || !node->source) snprintf(buf, cap, "(unknown)");
    else if (node->line > 0) snprintf(buf, cap, "%s:%d:%d", node->source, node->line, node->col);
    else snprintf(buf, cap, "%s", node->source);
}

static bool valid_key(const char *key) {
    if (!*key || key[0] == '.' || key[strlen(key) - 1] == '.' || strstr(key, "..")) return false;
    for (const char *p = key; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.' || *p == '/')) return false;
    return !(strchr(key, '/') && strchr(key, '.')); /* '/' only in group names (diffing/method) */
}

/* Appends "; did you mean 'X'?" for the path nearest to `key` among all paths of `root`. */
static void append_suggestion(dk_strbuf *msg, const dk_cfg_node *root, const char *key) {
    char *near = dk_cfg_nearest_path(root, key);
    if (near) dk_strbuf_printf(msg, "; did you mean '%s'?", near);
    free(near);
}

/* ---- group files -------------------------------------------------------------------------------- */

static int load_group(dk_cfg *cfg, const char *group, const char *choice, const char *where, dk_cfg_node **out,
                      dk_err *err) {
    char *dir = dk_path_join(cfg->config_dir, group);
    char *file = dk_sprintf("%s/%s.yaml", dir, choice);
    int rc = 0;
    if (!dk_is_file(file)) {
        size_t n = 0;
        char **names = dk_list_dir(dir, ".yaml", true, &n);
        dk_strbuf msg = {0};
        dk_strbuf_printf(&msg, "unknown %s '%s' (%s): %s/ has no %s.yaml. Available: ", group, choice, where, dir,
                         choice);
        for (size_t i = 0; i < n; i++) dk_strbuf_printf(&msg, "%s%s", i ? ", " : "", names[i]);
        if (n == 0) dk_strbuf_append(&msg, "none");
        int best = dk_nearest_string(choice, (const char *const *)names, n);
        if (best >= 0) dk_strbuf_printf(&msg, ". Did you mean %s=%s?", group, names[best]);
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s", msg.data);
        dk_strbuf_free(&msg);
        dk_free_strings(names, n);
    } else {
        dk_cfg_node *node = dk_cfg_load_file(file, intern(cfg, file), err);
        if (!node) {
            rc = -1;
        } else if (node->kind == DK_CFG_NULL) {
            dk_cfg_node_free(node);
            *out = dk_cfg_node_new(DK_CFG_MAP, intern(cfg, file), 1, 1);
        } else if (node->kind != DK_CFG_MAP) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s: a group file must be a mapping of keys to values", file);
            dk_cfg_node_free(node);
        } else {
            *out = node;
        }
    }
    free(file);
    free(dir);
    return rc;
}

/* A group is a folder of config_dir: `model`, or a nested one such as `diffing/method` (Hydra's package
 * diffing.method: its files are merged under that dotted path). */
static bool is_group(const dk_cfg *cfg, const char *name) {
    if (!*name || strchr(name, '.') || name[0] == '/' || name[strlen(name) - 1] == '/' || strstr(name, "//"))
        return false;
    char *dir = dk_path_join(cfg->config_dir, name);
    bool yes = dk_is_dir(dir);
    free(dir);
    return yes;
}

/* ---- defaults list ------------------------------------------------------------------------------ */

static int parse_defaults(dk_cfg *cfg, const dk_cfg_node *list, default_entry **out, size_t *n_out, dk_err *err) {
    *out = NULL;
    *n_out = 0;
    if (!list || list->kind == DK_CFG_NULL) return 0;
    char where[PATH_MAX + 32];
    dk_cfg_node_where(list, where, sizeof where);
    if (list->kind != DK_CFG_SEQ)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: defaults must be a list such as [model: NAME, _self_]", where);
    default_entry *entries = dk_calloc(list->n + 1, sizeof *entries);
    size_t n = 0;
    for (size_t i = 0; i < list->n; i++) {
        const dk_cfg_node *item = list->items[i];
        dk_cfg_node_where(item, where, sizeof where);
        if (item->kind == DK_CFG_SCALAR && strcmp(item->text, "_self_") == 0) {
            entries[n++] = (default_entry){NULL, NULL, intern(cfg, where)};
            continue;
        }
        if (item->kind != DK_CFG_MAP || item->n != 1 || item->items[0]->kind == DK_CFG_SEQ ||
            item->items[0]->kind == DK_CFG_MAP) {
            for (size_t j = 0; j < n; j++) free(entries[j].group), free(entries[j].choice);
            free(entries);
            return dk_err_set(err, DK_EXIT_USAGE, "%s: each defaults entry must be 'GROUP: CHOICE' or '_self_'", where);
        }
        const char *group = item->keys[0];
        if (!is_group(cfg, group)) {
            for (size_t j = 0; j < n; j++) free(entries[j].group), free(entries[j].choice);
            free(entries);
            return dk_err_set(err, DK_EXIT_USAGE, "%s: defaults names group '%s', but %s/%s/ does not exist", where,
                              group, cfg->config_dir, group);
        }
        const dk_cfg_node *choice = item->items[0];
        entries[n++] = (default_entry){dk_strdup(group), choice->kind == DK_CFG_NULL ? NULL : dk_strdup(choice->text),
                                       intern(cfg, where)};
    }
    *out = entries;
    *n_out = n;
    return 0;
}

/* ---- command-line arguments --------------------------------------------------------------------- */

static int parse_argument(const char *arg, override *o, dk_err *err) {
    memset(o, 0, sizeof *o);
    o->arg = arg;
    const char *s = arg;
    if (s[0] == '~') {
        o->op = OP_DELETE;
        s++;
    } else if (s[0] == '+' && s[1] == '+') {
        o->op = OP_UPSERT;
        s += 2;
    } else if (s[0] == '+') {
        o->op = OP_ADD;
        s++;
    }
    const char *eq = strchr(s, '=');
    if (!eq && o->op != OP_DELETE)
        return dk_err_set(err, DK_EXIT_USAGE,
                          "argument '%s' is not an override: write key=value (e.g. preprocessing.context_len=512), "
                          "group=choice (e.g. model=qwen3_1_7B), +new.key=value or ~key", arg);
    o->key = eq ? dk_strndup(s, (size_t)(eq - s)) : dk_strdup(s);
    o->value = (eq && o->op != OP_DELETE) ? dk_strdup(eq + 1) : NULL;
    if (!valid_key(o->key)) {
        int rc = dk_err_set(err, DK_EXIT_USAGE,
                            "argument '%s': '%s' is not a valid key (letters, digits, _ and -, parts joined by dots, or a group folder such as diffing/method)",
                            arg, o->key);
        free(o->key);
        free(o->value);
        o->key = o->value = NULL;
        return rc;
    }
    return 0;
}

static dk_cfg_node *parse_value(const override *o, dk_err *err) {
    dk_cfg_node *v = dk_cfg_parse_yaml(o->value, strlen(o->value), COMMAND_LINE, err);
    if (!v) {
        dk_err_clear(err);
        dk_err_set(err, DK_EXIT_USAGE, "argument '%s': the value '%s' is not valid YAML; quote it: %s='...'", o->arg,
                   o->value, o->key);
        return NULL;
    }
    v->line = v->col = 0;
    return v;
}

/* Overrides keep the type a key already has, so a typo in a value fails here, not deep in a job. */
static int check_type(const override *o, const dk_cfg_node *old, dk_cfg_node *value, dk_err *err) {
    dk_cfg_type was = dk_cfg_node_type(old), now = dk_cfg_node_type(value);
    if (now == DK_CFG_TYPE_NULL || was == DK_CFG_TYPE_NULL || was == DK_CFG_TYPE_MISSING) return 0;
    if (old->kind == DK_CFG_SCALAR && strstr(old->text, "${")) return 0; /* an interpolation: typed later */
    bool ok;
    switch (was) {
    case DK_CFG_TYPE_STRING:
        ok = value->kind == DK_CFG_SCALAR;
        if (ok) value->quoted = true; /* model.name=123 is the string "123" */
        break;
    case DK_CFG_TYPE_FLOAT: ok = now == DK_CFG_TYPE_FLOAT || now == DK_CFG_TYPE_INT; break;
    default: ok = now == was; break;
    }
    if (ok) return 0;
    char where[PATH_MAX + 32];
    dk_cfg_node_where(old, where, sizeof where);
    return dk_err_set(err, DK_EXIT_USAGE, "argument '%s': %s must be %s (as at %s), got '%s'", o->arg, o->key,
                      dk_cfg_type_name(was), where, o->value);
}

/* Parent mapping or list of `key` and the last path component; creates missing maps when `create`. */
static dk_cfg_node *parent_of(dk_cfg_node *root, const char *key, bool create, char **last) {
    const char *dot = strrchr(key, '.');
    *last = dk_strdup(dot ? dot + 1 : key);
    if (!dot) return root;
    char *parent_path = dk_strndup(key, (size_t)(dot - key));
    dk_cfg_node *parent = dk_cfg_lookup(root, parent_path);
    if (!parent && create) {
        char *last_parent = NULL;
        dk_cfg_node *grand = parent_of(root, parent_path, true, &last_parent);
        if (grand && grand->kind == DK_CFG_MAP) {
            parent = dk_cfg_node_new(DK_CFG_MAP, COMMAND_LINE, 0, 0);
            dk_cfg_map_set(grand, last_parent, parent);
        }
        free(last_parent);
    }
    free(parent_path);
    return parent;
}

static int unknown_key(const dk_cfg_node *root, const override *o, dk_err *err) {
    dk_strbuf msg = {0};
    dk_strbuf_printf(&msg, "argument '%s': there is no key '%s' in the configuration", o->arg, o->key);
    append_suggestion(&msg, root, o->key);
    if (o->op == OP_SET) dk_strbuf_append(&msg, " (to add a new key write +KEY=VALUE)");
    int rc = dk_err_set(err, DK_EXIT_USAGE, "%s", msg.data);
    dk_strbuf_free(&msg);
    return rc;
}

static int apply_override(dk_cfg_node *root, const override *o, dk_err *err) {
    dk_cfg_node *existing = dk_cfg_lookup(root, o->key);
    if (o->op == OP_DELETE) {
        char *last = NULL;
        dk_cfg_node *parent = parent_of(root, o->key, false, &last);
        bool removed = existing && parent && dk_cfg_map_remove(parent, last);
        free(last);
        return removed ? 0 : unknown_key(root, o, err);
    }
    if (o->op == OP_SET && !existing) return unknown_key(root, o, err);
    if (o->op == OP_ADD && existing)
        return dk_err_set(err, DK_EXIT_USAGE, "argument '%s': key '%s' already exists; write %s=VALUE to change it",
                          o->arg, o->key, o->key);
    dk_cfg_node *value = parse_value(o, err);
    if (!value) return -1;
    if (existing && check_type(o, existing, value, err) != 0) {
        dk_cfg_node_free(value);
        return -1;
    }
    char *last = NULL;
    dk_cfg_node *parent = parent_of(root, o->key, true, &last);
    int rc = 0;
    int64_t index;
    if (parent && parent->kind == DK_CFG_MAP) {
        dk_cfg_map_set(parent, last, value);
    } else if (parent && parent->kind == DK_CFG_SEQ && existing && dk_cfg_parse_int(last, &index)) {
        dk_cfg_node_free(parent->items[index]);
        parent->items[index] = value;
    } else {
        rc = dk_err_set(err, DK_EXIT_USAGE, "argument '%s': the parent of '%s' is not a mapping", o->arg, o->key);
        dk_cfg_node_free(value);
    }
    free(last);
    return rc;
}

/* ---- the ??? check ------------------------------------------------------------------------------ */

static void find_missing(const dk_cfg_node *node, const char *path, dk_strbuf *list, int *count) {
    if (dk_cfg_node_type(node) == DK_CFG_TYPE_MISSING) {
        char where[PATH_MAX + 32];
        dk_cfg_node_where(node, where, sizeof where);
        dk_strbuf_printf(list, "\n  %s (%s)", path, where);
        (*count)++;
        return;
    }
    for (size_t i = 0; node && (node->kind == DK_CFG_MAP || node->kind == DK_CFG_SEQ) && i < node->n; i++) {
        char *child = node->kind == DK_CFG_MAP ? (path[0] ? dk_sprintf("%s.%s", path, node->keys[i]) : dk_strdup(node->keys[i]))
                                               : dk_sprintf("%s.%zu", path, i);
        find_missing(node->items[i], child, list, count);
        free(child);
    }
}

/* ---- composition -------------------------------------------------------------------------------- */

static dk_cfg *new_cfg(const char *config_dir) {
    dk_cfg *cfg = dk_calloc(1, sizeof *cfg);
    char resolved[PATH_MAX];
    cfg->config_dir = dk_strdup(realpath(config_dir, resolved) ? resolved : config_dir);
    return cfg;
}

static void record_choice(dk_cfg *cfg, const char *group, const char *choice) {
    cfg->groups = dk_realloc(cfg->groups, (cfg->n_groups + 1) * sizeof *cfg->groups);
    cfg->choices = dk_realloc(cfg->choices, (cfg->n_groups + 1) * sizeof *cfg->choices);
    cfg->groups[cfg->n_groups] = dk_strdup(group);
    cfg->choices[cfg->n_groups++] = choice ? dk_strdup(choice) : NULL;
}

static int compose_groups(dk_cfg *cfg, dk_cfg_node *result, dk_cfg_node **primary, default_entry *entries,
                          size_t n_entries, dk_err *err) {
    for (size_t i = 0; i < n_entries; i++) {
        default_entry *e = &entries[i];
        if (!e->group) {
            dk_cfg_merge(result, *primary);
            *primary = NULL;
            continue;
        }
        if (!e->choice) {
            record_choice(cfg, e->group, NULL);
            continue;
        }
        const char *choice = e->choice;
        for (size_t r = 0; r < sizeof auto_rules / sizeof auto_rules[0]; r++) {
            if (strcmp(choice, "auto") != 0 || strcmp(e->group, auto_rules[r].group) != 0) continue;
            const dk_cfg_node *from = dk_cfg_lookup(result, auto_rules[r].from);
            if (!from || from->kind != DK_CFG_MAP || from->n == 0)
                return dk_err_set(err, DK_EXIT_USAGE,
                                  "%s=auto (%s) takes the first entry of %s, but the configuration has none there: "
                                  "choose one explicitly, e.g. %s=NAME (see %s/%s/)",
                                  e->group, e->where, auto_rules[r].from, e->group, cfg->config_dir, e->group);
            choice = from->keys[0];
        }
        dk_cfg_node *content = NULL;
        if (load_group(cfg, e->group, choice, e->where, &content, err) != 0) return -1;
        record_choice(cfg, e->group, choice);
        /* the group's package: `model` -> result.model, `diffing/method` -> result.diffing.method */
        dk_cfg_node *parent = result;
        char *path = dk_strdup(e->group), *leaf = path;
        for (char *slash; (slash = strchr(leaf, '/')) != NULL; leaf = slash + 1) {
            *slash = 0;
            dk_cfg_node *next = dk_cfg_map_get(parent, leaf);
            if (!next || next->kind != DK_CFG_MAP) {
                next = dk_cfg_node_new(DK_CFG_MAP, content->source, 1, 1);
                dk_cfg_map_set(parent, leaf, next);
            }
            parent = next;
        }
        dk_cfg_node *existing = dk_cfg_map_get(parent, leaf);
        if (existing && existing->kind == DK_CFG_MAP)
            dk_cfg_merge(existing, content);
        else
            dk_cfg_map_set(parent, leaf, content);
        free(path);
    }
    if (*primary) { /* _self_ not listed: the primary file's keys come last */
        dk_cfg_merge(result, *primary);
        *primary = NULL;
    }
    return 0;
}

dk_cfg *dk_cfg_compose(const dk_cfg_options *opt, dk_err *err) {
    if (!opt->config_dir || !dk_is_dir(opt->config_dir)) {
        dk_err_set(err, DK_EXIT_USAGE,
                   "config folder '%s' does not exist: pass --config-dir DIR or set DIFFKIT_CONFIG_DIR to the "
                   "configs/ folder of your diffkit checkout", opt->config_dir ? opt->config_dir : "(none)");
        return NULL;
    }
    dk_cfg *cfg = new_cfg(opt->config_dir);
    const char *name = opt->config_name ? opt->config_name : "config";
    char *primary_path = dk_sprintf("%s/%s.yaml", cfg->config_dir, name);
    dk_cfg_node *primary = NULL, *result = NULL;
    default_entry *entries = NULL;
    size_t n_entries = 0;
    override *overrides = dk_calloc(opt->n_overrides + 1, sizeof *overrides);
    size_t n_overrides = 0;
    int rc = 0;

    primary = dk_cfg_load_file(primary_path, intern(cfg, primary_path), err);
    if (!primary) {
        rc = -1;
    } else if (primary->kind == DK_CFG_NULL) {
        dk_cfg_node_free(primary);
        primary = dk_cfg_node_new(DK_CFG_MAP, intern(cfg, primary_path), 1, 1);
    } else if (primary->kind != DK_CFG_MAP) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: the primary config must be a mapping", primary_path);
    }
    if (rc == 0) {
        dk_cfg_node *defaults = dk_cfg_lookup(primary, "defaults");
        rc = parse_defaults(cfg, defaults, &entries, &n_entries, err);
        dk_cfg_map_remove(primary, "defaults");
    }
    /* Group choices from the command line replace (or extend) the defaults list; the rest are overrides. */
    for (size_t i = 0; rc == 0 && i < opt->n_overrides; i++) {
        override o;
        rc = parse_argument(opt->overrides[i], &o, err);
        if (rc != 0) break;
        if (is_group(cfg, o.key)) { /* group=NAME, +group=NAME, ++group=NAME; ~group leaves it out */
            dk_cfg_node *v = o.op == OP_DELETE ? dk_cfg_node_new(DK_CFG_NULL, COMMAND_LINE, 0, 0) : parse_value(&o, err);
            if (!v) {
                rc = -1;
            } else if (v->kind == DK_CFG_SEQ || v->kind == DK_CFG_MAP) {
                rc = dk_err_set(err, DK_EXIT_USAGE, "argument '%s': a group choice is one name", o.arg);
            } else {
                size_t j = 0;
                while (j < n_entries && !(entries[j].group && strcmp(entries[j].group, o.key) == 0)) j++;
                if (j == n_entries) {
                    entries = dk_realloc(entries, (n_entries + 1) * sizeof *entries);
                    entries[n_entries++] = (default_entry){dk_strdup(o.key), NULL, COMMAND_LINE};
                }
                free(entries[j].choice);
                entries[j].choice = v->kind == DK_CFG_NULL ? NULL : dk_strdup(v->text);
                entries[j].where = intern(cfg, o.arg);
            }
            dk_cfg_node_free(v);
            free(o.key);
            free(o.value);
        } else if (strchr(o.key, '/')) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "argument '%s': %s/%s/ is not a folder, so '%s' is not a config group",
                            o.arg, cfg->config_dir, o.key, o.key);
            free(o.key);
            free(o.value);
        } else {
            overrides[n_overrides++] = o;
        }
    }
    if (rc == 0) {
        result = dk_cfg_node_new(DK_CFG_MAP, intern(cfg, primary_path), 1, 1);
        rc = compose_groups(cfg, result, &primary, entries, n_entries, err);
    }
    for (size_t i = 0; rc == 0 && i < n_overrides; i++) rc = apply_override(result, &overrides[i], err);
    if (rc == 0) {
        dk_strbuf list = {0};
        int count = 0;
        find_missing(result, "", &list, &count);
        if (count)
            rc = dk_err_set(err, DK_EXIT_USAGE,
                            "%d required value%s not set (??? in the config); give %s on the command line as "
                            "KEY=VALUE or set %s in the file:%s",
                            count, count > 1 ? "s are" : " is", count > 1 ? "them" : "it", count > 1 ? "them" : "it",
                            list.data);
        dk_strbuf_free(&list);
    }
    if (rc == 0) rc = dk_cfg_resolve_interpolations(result, err);

    for (size_t i = 0; i < n_entries; i++) free(entries[i].group), free(entries[i].choice);
    free(entries);
    for (size_t i = 0; i < n_overrides; i++) free(overrides[i].key), free(overrides[i].value);
    free(overrides);
    dk_cfg_node_free(primary);
    free(primary_path);
    if (rc != 0) {
        dk_cfg_node_free(result);
        dk_cfg_free(cfg);
        return NULL;
    }
    cfg->root = result;
    return cfg;
}

dk_cfg *dk_cfg_from_yaml(const char *text, const char *source, dk_err *err) {
    dk_cfg *cfg = dk_calloc(1, sizeof *cfg);
    cfg->config_dir = dk_strdup("");
    dk_cfg_node *root = dk_cfg_parse_yaml(text, strlen(text), intern(cfg, source), err);
    if (root && root->kind == DK_CFG_NULL) {
        dk_cfg_node_free(root);
        root = dk_cfg_node_new(DK_CFG_MAP, cfg->sources[0], 1, 1);
    }
    if (root && root->kind != DK_CFG_MAP) {
        dk_err_set(err, DK_EXIT_USAGE, "%s: a configuration must be a mapping", source);
        dk_cfg_node_free(root);
        root = NULL;
    }
    if (root && dk_cfg_resolve_interpolations(root, err) != 0) {
        dk_cfg_node_free(root);
        root = NULL;
    }
    if (!root) {
        dk_cfg_free(cfg);
        return NULL;
    }
    cfg->root = root;
    return cfg;
}

void dk_cfg_free(dk_cfg *cfg) {
    if (!cfg) return;
    dk_cfg_node_free(cfg->root);
    dk_free_strings(cfg->sources, cfg->n_sources);
    for (size_t i = 0; i < cfg->n_groups; i++) free(cfg->groups[i]), free(cfg->choices[i]);
    free(cfg->groups);
    free(cfg->choices);
    free(cfg->config_dir);
    free(cfg);
}

char *dk_cfg_dump(const dk_cfg *cfg) { return dk_cfg_to_yaml(cfg->root); }

const char *dk_cfg_choice(const dk_cfg *cfg, const char *group) {
    for (size_t i = 0; i < cfg->n_groups; i++)
        if (strcmp(cfg->groups[i], group) == 0) return cfg->choices[i];
    return NULL;
}
