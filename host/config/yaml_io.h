/* yaml_io.h — YAML text <-> configuration tree, through libyaml.
 *
 * Reading uses libyaml's document API and adds what it leaves out: duplicate keys and YAML merge keys
 * (<<) are errors with line and column, non-scalar keys are errors, and anchors/aliases are expanded into
 * copies, at most 20,000 values / 4 MiB in all (an alias bomb is an error naming the line); nesting deeper
 * than 64 levels stops the parse where it is reached (linear time). Writing emits block mappings, flow lists of scalars, and quotes exactly the strings that would
 * otherwise read back as another type, so dump -> load -> dump is stable.
 */
#ifndef DK_CONFIG_YAML_IO_H
#define DK_CONFIG_YAML_IO_H

#include <stddef.h>

#include "core/error.h"
#include "node.h"

/* Parses one YAML document. An empty document gives a null node. `source` names the text in messages
 * and is stored (not copied) in every node, so it must outlive the tree. NULL + err (code 2) on error,
 * with "source:line:col: problem". */
dk_cfg_node *dk_cfg_parse_yaml(const char *text, size_t len, const char *source, dk_err *err);

/* Reads and parses a file; the tree's nodes point at `source` (pass an interned copy of the path). */
dk_cfg_node *dk_cfg_load_file(const char *path, const char *source, dk_err *err);

/* YAML text of the tree (the caller frees). */
char *dk_cfg_to_yaml(const dk_cfg_node *root);

#endif
