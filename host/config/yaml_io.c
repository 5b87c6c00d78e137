/* yaml_io.c — see yaml_io.h. */
#include "yaml_io.h"

#include "core/strutil.h"
#include "io/file.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Reading is event-driven (yaml_parser_parse) rather than through libyaml's document API, for two limits
 * that must hold before any work is spent on a hostile file:
 *   - depth: libyaml's scanner spends time proportional to the flow depth on every token, so a document
 *     nested 40,000 levels took minutes to load before our depth check could see it. Events let the check
 *     stop the parse at level MAX_DEPTH, so loading stays linear in the text read.
 *   - aliases: an alias is expanded into a copy of its anchored value; a "billion laughs" file (nine levels
 *     of nine aliases) would expand to 9^9 values and exhaust memory. Every copy is counted, and the total
 *     (values and bytes) is capped, with a message naming the alias's line. */
enum { MAX_DEPTH = 64, MAX_ALIAS_VALUES = 20000, MAX_ALIAS_BYTES = 4 << 20 };

typedef struct anchor {
    char *name;
    const dk_cfg_node *node;  /* owned by the tree being built */
} anchor;

typedef struct loader {
    yaml_parser_t parser;
    const char *source;
    dk_err *err;
    anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t alias_values, alias_bytes;  /* what alias expansion has copied so far */
} loader;

static int next_event(loader *L, yaml_event_t *ev) {
    if (yaml_parser_parse(&L->parser, ev)) return 0;
    yaml_mark_t mark = L->parser.problem_mark;
    if (L->parser.context)
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%zu:%zu: malformed YAML: %s %s (line %zu)", L->source, mark.line + 1,
                   mark.column + 1, L->parser.problem ? L->parser.problem : "error", L->parser.context,
                   L->parser.context_mark.line + 1);
    else
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%zu:%zu: malformed YAML: %s", L->source, mark.line + 1, mark.column + 1,
                   L->parser.problem ? L->parser.problem : "error");
    return -1;
}

static void count_values(const dk_cfg_node *n, size_t *values, size_t *bytes) {
    (*values)++;
    if (n->text) *bytes += strlen(n->text);
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) *bytes += strlen(n->keys[i]);
        count_values(n->items[i], values, bytes);
    }
}

static void remember_anchor(loader *L, const yaml_char_t *name, const dk_cfg_node *node) {
    if (!name) return;
    if (L->n_anchors == L->cap_anchors) {
        L->cap_anchors = L->cap_anchors ? 2 * L->cap_anchors : 16;
        L->anchors = dk_realloc(L->anchors, L->cap_anchors * sizeof *L->anchors);
    }
    L->anchors[L->n_anchors++] = (anchor){dk_strdup((const char *)name), node};
}

/* A copy of the value anchored as `name` (the latest definition wins, as in YAML), within the caps. */
static dk_cfg_node *expand_alias(loader *L, const char *name, int line, int col) {
    const dk_cfg_node *target = NULL;
    for (size_t i = L->n_anchors; i-- > 0 && !target;)
        if (strcmp(L->anchors[i].name, name) == 0) target = L->anchors[i].node;
    if (!target) {
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: alias *%s names no anchor &%s defined before it (an alias "
                   "inside its own anchored value is not allowed either)", L->source, line, col, name, name);
        return NULL;
    }
    size_t values = 0, bytes = 0;
    count_values(target, &values, &bytes);
    if (L->alias_values + values > MAX_ALIAS_VALUES || L->alias_bytes + bytes > (size_t)MAX_ALIAS_BYTES) {
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: the aliases of this file expand to more than %d values or %d MiB "
                   "(here *%s adds %zu values): a configuration never needs that many; write the values out, or this "
                   "is an alias bomb", L->source, line, col, MAX_ALIAS_VALUES, MAX_ALIAS_BYTES >> 20, name, values);
        return NULL;
    }
    L->alias_values += values;
    L->alias_bytes += bytes;
    return dk_cfg_node_clone(target);
}

static dk_cfg_node *load_node(loader *L, yaml_event_t *ev, int depth);

static dk_cfg_node *load_scalar(loader *L, const yaml_event_t *ev, int line, int col) {
    /* Only the style tells: every untagged scalar could be !!str, so an explicit !!str cannot be told apart and
     * is not supported (quote the value instead). */
    bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    char *text = dk_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    if (strlen(text) != ev->data.scalar.length) {
        free(text);
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: a value contains a NUL character", L->source, line, col);
        return NULL;
    }
    dk_cfg_node *n = dk_cfg_scalar_new(text, quoted, L->source, line, col);
    free(text);
    if (!quoted && dk_cfg_node_type(n) == DK_CFG_TYPE_NULL) {
        free(n->text);
        n->text = NULL;
        n->kind = DK_CFG_NULL;
    }
    return n;
}

static dk_cfg_node *load_sequence(loader *L, int depth, int line, int col) {
    dk_cfg_node *seq = dk_cfg_node_new(DK_CFG_SEQ, L->source, line, col);
    for (;;) {
        yaml_event_t item;
        if (next_event(L, &item) != 0) break;
        if (item.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&item);
            return seq;
        }
        dk_cfg_node *value = load_node(L, &item, depth + 1);
        if (!value) break;
        dk_cfg_seq_append(seq, value);
    }
    dk_cfg_node_free(seq);
    return NULL;
}

static dk_cfg_node *load_mapping(loader *L, int depth, int line, int col) {
    dk_cfg_node *map = dk_cfg_node_new(DK_CFG_MAP, L->source, line, col);
    for (;;) {
        yaml_event_t k;
        if (next_event(L, &k) != 0) break;
        if (k.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&k);
            return map;
        }
        int kl = (int)k.start_mark.line + 1, kc = (int)k.start_mark.column + 1;
        if (k.type != YAML_SCALAR_EVENT) {
            dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: a key must be a plain name, not a list, mapping or alias",
                       L->source, kl, kc);
            yaml_event_delete(&k);
            break;
        }
        char *key = dk_strndup((const char *)k.data.scalar.value, k.data.scalar.length);
        yaml_event_delete(&k);
        const char *problem = NULL;
        if (strcmp(key, "<<") == 0) problem = "YAML merge keys (<<) are not supported: write the keys out";
        else if (dk_cfg_map_get(map, key)) problem = "duplicate key";
        else if (key[0] == '\0') problem = "empty key";
        yaml_event_t v;
        dk_cfg_node *value = NULL;
        if (problem) dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: %s '%s'", L->source, kl, kc, problem, key);
        else if (next_event(L, &v) == 0) value = load_node(L, &v, depth + 1);
        if (value) dk_cfg_map_set(map, key, value);
        free(key);
        if (!value) break;
    }
    dk_cfg_node_free(map);
    return NULL;
}

/* The value that starts with *ev (consumed here), or NULL with L->err set. */
static dk_cfg_node *load_node(loader *L, yaml_event_t *ev, int depth) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    dk_cfg_node *node = NULL;
    const yaml_char_t *anchor_name = NULL;
    if (depth > MAX_DEPTH) {
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: nesting deeper than %d levels", L->source, line, col, MAX_DEPTH);
    } else if (ev->type == YAML_ALIAS_EVENT) {
        node = expand_alias(L, (const char *)ev->data.alias.anchor, line, col);
    } else if (ev->type == YAML_SCALAR_EVENT) {
        anchor_name = ev->data.scalar.anchor;
        node = load_scalar(L, ev, line, col);
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor_name = ev->data.sequence_start.anchor;
        node = load_sequence(L, depth, line, col);
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor_name = ev->data.mapping_start.anchor;
        node = load_mapping(L, depth, line, col);
    } else {
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%d:%d: unexpected YAML structure", L->source, line, col);
    }
    if (node) remember_anchor(L, anchor_name, node);
    yaml_event_delete(ev);
    return node;
}

/* STREAM-START, then an empty stream (null) or one document; a second document is an error. */
static dk_cfg_node *load_stream(loader *L) {
    yaml_event_t ev;
    if (next_event(L, &ev) != 0) return NULL;
    yaml_event_delete(&ev); /* STREAM-START */
    if (next_event(L, &ev) != 0) return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return dk_cfg_node_new(DK_CFG_NULL, L->source, 1, 1);
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (next_event(L, &ev) != 0) return NULL;
    dk_cfg_node *root = load_node(L, &ev, 0);
    if (!root) return NULL;
    if (next_event(L, &ev) != 0) goto fail;
    yaml_event_delete(&ev); /* DOCUMENT-END */
    if (next_event(L, &ev) != 0) goto fail;
    if (ev.type == YAML_DOCUMENT_START_EVENT) {
        dk_err_set(L->err, DK_EXIT_USAGE, "%s:%zu: a second YAML document (---) is not supported", L->source,
                   ev.start_mark.line + 1);
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    return root;
fail:
    dk_cfg_node_free(root);
    return NULL;
}

dk_cfg_node *dk_cfg_parse_yaml(const char *text, size_t len, const char *source, dk_err *err) {
    loader L = {.source = source, .err = err};
    if (!yaml_parser_initialize(&L.parser)) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s: cannot initialise the YAML parser (out of memory?)", source);
        return NULL;
    }
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    dk_cfg_node *root = load_stream(&L);
    for (size_t i = 0; i < L.n_anchors; i++) free(L.anchors[i].name);
    free(L.anchors);
    yaml_parser_delete(&L.parser);
    return root;
}

dk_cfg_node *dk_cfg_load_file(const char *path, const char *source, dk_err *err) {
    size_t len = 0;
    char *text = dk_read_file(path, &len, err);
    if (!text) return NULL;
    dk_cfg_node *root = dk_cfg_parse_yaml(text, len, source, err);
    free(text);
    return root;
}

/* ---- writing ------------------------------------------------------------------------------------ */

static int write_to_strbuf(void *data, unsigned char *buffer, size_t size) {
    dk_strbuf_append_n((dk_strbuf *)data, (const char *)buffer, size);
    return 1;
}

static bool all_scalars(const dk_cfg_node *seq) {
    for (size_t i = 0; i < seq->n; i++)
        if (seq->items[i]->kind == DK_CFG_SEQ || seq->items[i]->kind == DK_CFG_MAP) return false;
    return true;
}

static void emit_scalar(yaml_emitter_t *em, const char *text, bool force_quotes) {
    yaml_event_t ev;
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (force_quotes) style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    else if (strchr(text, '\n')) style = YAML_LITERAL_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), !force_quotes, 1, style);
    CHECK(yaml_emitter_emit(em, &ev), "libyaml could not emit a scalar: %s", em->problem ? em->problem : "?");
}

static void emit_node(yaml_emitter_t *em, const dk_cfg_node *node) {
    yaml_event_t ev;
    switch (node->kind) {
    case DK_CFG_NULL: emit_scalar(em, "null", false); break;
    case DK_CFG_SCALAR: {
        /* A string must be quoted when its plain text would read back as null, bool, number or ???. */
        dk_cfg_node plain = *node;
        plain.quoted = false;
        bool force = node->quoted && dk_cfg_node_type(&plain) != DK_CFG_TYPE_STRING;
        if (node->resolved && strstr(node->text, "${")) {
            /* a literal ${ left by interpolation (from \${): escape it again so a reload reads the same */
            dk_strbuf escaped = {0};
            for (const char *t = node->text; *t; t++) {
                if (t[0] == '$' && t[1] == '{') dk_strbuf_append(&escaped, "\\");
                dk_strbuf_append_n(&escaped, t, 1);
            }
            emit_scalar(em, escaped.data, force);
            dk_strbuf_free(&escaped);
        } else {
            emit_scalar(em, node->text, force);
        }
        break;
    }
    case DK_CFG_SEQ:
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                             all_scalars(node) ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
        CHECK(yaml_emitter_emit(em, &ev), "libyaml could not start a list");
        for (size_t i = 0; i < node->n; i++) emit_node(em, node->items[i]);
        yaml_sequence_end_event_initialize(&ev);
        CHECK(yaml_emitter_emit(em, &ev), "libyaml could not end a list");
        break;
    case DK_CFG_MAP:
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                            node->n ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE);
        CHECK(yaml_emitter_emit(em, &ev), "libyaml could not start a mapping");
        for (size_t i = 0; i < node->n; i++) {
            emit_scalar(em, node->keys[i], false);
            emit_node(em, node->items[i]);
        }
        yaml_mapping_end_event_initialize(&ev);
        CHECK(yaml_emitter_emit(em, &ev), "libyaml could not end a mapping");
        break;
    }
}

char *dk_cfg_to_yaml(const dk_cfg_node *root) {
    dk_strbuf out = {0};
    yaml_emitter_t em;
    yaml_event_t ev;
    CHECK(yaml_emitter_initialize(&em), "cannot initialise the YAML emitter (out of memory?)");
    yaml_emitter_set_output(&em, write_to_strbuf, &out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_emitter_set_indent(&em, 2);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    CHECK(yaml_emitter_emit(&em, &ev), "libyaml could not start a stream");
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    CHECK(yaml_emitter_emit(&em, &ev), "libyaml could not start a document");
    emit_node(&em, root);
    yaml_document_end_event_initialize(&ev, 1);
    CHECK(yaml_emitter_emit(&em, &ev), "libyaml could not end a document");
    yaml_stream_end_event_initialize(&ev);
    CHECK(yaml_emitter_emit(&em, &ev), "libyaml could not end a stream");
    yaml_emitter_delete(&em);
    return dk_strbuf_take(&out);
}
