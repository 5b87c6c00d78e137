/* yaml_io.c — see yaml_io.h. */
#include "yaml_io.h"

#include "core/strutil.h"
#include "io/file.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum { MAX_DEPTH = 64 };

static dk_cfg_node *convert(yaml_document_t *doc, yaml_node_t *yn, const char *source, int depth, dk_err *err) {
    int line = (int)yn->start_mark.line + 1, col = (int)yn->start_mark.column + 1;
    if (depth > MAX_DEPTH) {
        dk_err_set(err, DK_EXIT_USAGE, "%s:%d:%d: nesting deeper than %d levels (an alias that refers to itself?)",
                   source, line, col, MAX_DEPTH);
        return NULL;
    }
    switch (yn->type) {
    case YAML_SCALAR_NODE: {
        /* Only the style tells: libyaml's document API gives every untagged scalar the !!str tag, so an
         * explicit !!str cannot be told apart and is not supported (quote the value instead). */
        bool quoted = yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        char *text = dk_strndup((const char *)yn->data.scalar.value, yn->data.scalar.length);
        if (strlen(text) != yn->data.scalar.length) {
            free(text);
            dk_err_set(err, DK_EXIT_USAGE, "%s:%d:%d: a value contains a NUL character", source, line, col);
            return NULL;
        }
        dk_cfg_node *n = dk_cfg_scalar_new(text, quoted, source, line, col);
        free(text);
        if (!quoted && dk_cfg_node_type(n) == DK_CFG_TYPE_NULL) {
            free(n->text);
            n->text = NULL;
            n->kind = DK_CFG_NULL;
        }
        return n;
    }
    case YAML_SEQUENCE_NODE: {
        dk_cfg_node *seq = dk_cfg_node_new(DK_CFG_SEQ, source, line, col);
        for (yaml_node_item_t *it = yn->data.sequence.items.start; it < yn->data.sequence.items.top; it++) {
            dk_cfg_node *item = convert(doc, yaml_document_get_node(doc, *it), source, depth + 1, err);
            if (!item) {
                dk_cfg_node_free(seq);
                return NULL;
            }
            dk_cfg_seq_append(seq, item);
        }
        return seq;
    }
    case YAML_MAPPING_NODE: {
        dk_cfg_node *map = dk_cfg_node_new(DK_CFG_MAP, source, line, col);
        for (yaml_node_pair_t *p = yn->data.mapping.pairs.start; p < yn->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(doc, p->key);
            int kl = (int)kn->start_mark.line + 1, kc = (int)kn->start_mark.column + 1;
            if (kn->type != YAML_SCALAR_NODE) {
                dk_err_set(err, DK_EXIT_USAGE, "%s:%d:%d: a key must be a plain name, not a list or mapping", source,
                           kl, kc);
                dk_cfg_node_free(map);
                return NULL;
            }
            char *key = dk_strndup((const char *)kn->data.scalar.value, kn->data.scalar.length);
            const char *problem = NULL;
            if (strcmp(key, "<<") == 0) problem = "YAML merge keys (<<) are not supported: write the keys out";
            else if (dk_cfg_map_get(map, key)) problem = "duplicate key";
            else if (key[0] == '\0') problem = "empty key";
            if (problem) {
                dk_err_set(err, DK_EXIT_USAGE, "%s:%d:%d: %s '%s'", source, kl, kc, problem, key);
                free(key);
                dk_cfg_node_free(map);
                return NULL;
            }
            dk_cfg_node *value = convert(doc, yaml_document_get_node(doc, p->value), source, depth + 1, err);
            if (!value) {
                free(key);
                dk_cfg_node_free(map);
                return NULL;
            }
            dk_cfg_map_set(map, key, value);
            free(key);
        }
        return map;
    }
    default:
        dk_err_set(err, DK_EXIT_USAGE, "%s:%d:%d: empty YAML node", source, line, col);
        return NULL;
    }
}

dk_cfg_node *dk_cfg_parse_yaml(const char *text, size_t len, const char *source, dk_err *err) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s: cannot initialise the YAML parser (out of memory?)", source);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_mark_t mark = parser.problem_mark;
        if (parser.context)
            dk_err_set(err, DK_EXIT_USAGE, "%s:%zu:%zu: malformed YAML: %s %s (line %zu)", source, mark.line + 1,
                       mark.column + 1, parser.problem ? parser.problem : "error", parser.context,
                       parser.context_mark.line + 1);
        else
            dk_err_set(err, DK_EXIT_USAGE, "%s:%zu:%zu: malformed YAML: %s", source, mark.line + 1, mark.column + 1,
                       parser.problem ? parser.problem : "error");
        yaml_parser_delete(&parser);
        return NULL;
    }
    dk_cfg_node *result;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        result = dk_cfg_node_new(DK_CFG_NULL, source, 1, 1);
    } else {
        result = convert(&doc, root, source, 0, err);
    }
    /* A second document in the same text is a mistake we report rather than ignore. */
    if (result) {
        yaml_document_t extra;
        if (yaml_parser_load(&parser, &extra)) {
            if (yaml_document_get_root_node(&extra)) {
                dk_err_set(err, DK_EXIT_USAGE, "%s:%zu: a second YAML document (---) is not supported", source,
                           extra.start_mark.line + 1);
                dk_cfg_node_free(result);
                result = NULL;
            }
            yaml_document_delete(&extra);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return result;
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
