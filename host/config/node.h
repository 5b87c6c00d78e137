/* node.h — the configuration tree: what a YAML file, a group file or a command-line value becomes.
 *
 * Every value remembers where it was set (file:line:col, or "command line"), so an error about a value
 * can point at the file a person must edit. Scalars keep their text as written; their YAML type is
 * decided on demand (dk_cfg_scalar_type) with the YAML 1.2 core schema that Hydra/OmegaConf use:
 *   null: null Null NULL ~ (or empty)     bool: true false (any case: True, TRUE)
 *   int:  123 -7 0x1f 0o17 50_000_000    float: 1.5 -2e-3 .5 .inf -.inf .nan
 *   anything else, and every quoted scalar, is a string. (yes/no/on/off are strings, as in YAML 1.2.)
 * A scalar whose text is exactly ??? is a required value that is still missing (Hydra's convention).
 * Maps keep their keys in file order (the seed framework relies on the order of finetuned_models).
 */
#ifndef DK_CONFIG_NODE_H
#define DK_CONFIG_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { DK_CFG_NULL, DK_CFG_SCALAR, DK_CFG_SEQ, DK_CFG_MAP } dk_cfg_kind;

typedef enum {
    DK_CFG_TYPE_NULL,
    DK_CFG_TYPE_BOOL,
    DK_CFG_TYPE_INT,
    DK_CFG_TYPE_FLOAT,
    DK_CFG_TYPE_STRING,
    DK_CFG_TYPE_MISSING, /* ??? */
    DK_CFG_TYPE_SEQ,
    DK_CFG_TYPE_MAP,
} dk_cfg_type;

typedef struct dk_cfg_node dk_cfg_node;
struct dk_cfg_node {
    dk_cfg_kind kind;
    char *text;            /* SCALAR: text as written, quotes removed */
    bool quoted;           /* SCALAR: quoted in the source, so always a string */
    bool resolved;         /* SCALAR: interpolations done, the text is final */
    size_t n;              /* SEQ: item count; MAP: pair count */
    size_t cap;
    dk_cfg_node **items;   /* SEQ: [n] items; MAP: [n] values */
    char **keys;           /* MAP: [n] keys, in order */
    const char *source;    /* file this value came from, or "command line"; not owned */
    int line, col;         /* 1-based position in source, 0 when unknown */
};

dk_cfg_node *dk_cfg_node_new(dk_cfg_kind kind, const char *source, int line, int col);
dk_cfg_node *dk_cfg_scalar_new(const char *text, bool quoted, const char *source, int line, int col);
void dk_cfg_node_free(dk_cfg_node *node);
dk_cfg_node *dk_cfg_node_clone(const dk_cfg_node *node);

dk_cfg_type dk_cfg_node_type(const dk_cfg_node *node);
const char *dk_cfg_type_name(dk_cfg_type type); /* "an integer", "a boolean", ... for messages */

/* Strict conversions of a scalar's text; false when the text is not of that type. */
bool dk_cfg_parse_int(const char *text, int64_t *out);
bool dk_cfg_parse_float(const char *text, double *out);
bool dk_cfg_parse_bool(const char *text, bool *out);

/* MAP access. get returns NULL when absent. set replaces (freeing the old value) or appends; it takes
 * ownership of value. remove frees the value and returns false when absent. */
dk_cfg_node *dk_cfg_map_get(const dk_cfg_node *map, const char *key);
void dk_cfg_map_set(dk_cfg_node *map, const char *key, dk_cfg_node *value);
bool dk_cfg_map_remove(dk_cfg_node *map, const char *key);
void dk_cfg_seq_append(dk_cfg_node *seq, dk_cfg_node *item);

/* Dotted-path lookup: "preprocessing.layers.0" (numbers index sequences). NULL when absent. */
dk_cfg_node *dk_cfg_lookup(const dk_cfg_node *root, const char *path);

/* Deep merge of src into dst (both maps): maps merge key by key, anything else replaces. Takes src. */
void dk_cfg_merge(dk_cfg_node *dst, dk_cfg_node *src);

/* Every dotted path in the tree (interior maps and leaves). */
char **dk_cfg_all_paths(const dk_cfg_node *root, size_t *count);
/* The existing path nearest to `key` (for "did you mean ...?"), malloc'ed, or NULL when none is close. */
char *dk_cfg_nearest_path(const dk_cfg_node *root, const char *key);

#endif
