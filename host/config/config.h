/* config.h — diffkit's configuration: Hydra-style composition of YAML files, checked overrides, and typed
 * getters whose errors name the key and the file to edit.
 *
 * Composition (dk_cfg_compose):
 *   1. <config_dir>/config.yaml is the primary file. Its `defaults:` list names one choice per group, in
 *      order, e.g. `- organism: cake_bake`, `- model: auto`, and `_self_` (where the primary file's own keys
 *      are merged; at the end when not listed).
 *   2. A group is a folder of <config_dir>; choice NAME loads <config_dir>/<group>/NAME.yaml under the key
 *      <group>. On the command line `group=NAME` changes a choice (any folder of config_dir is a group;
 *      one not in the defaults list is added at the end; +group=NAME is accepted as in Hydra);
 *      `group=null` or `~group` leaves the group out.
 *      `model: auto` picks the first model listed under organism.finetuned_models (the seed's rule).
 *   3. Overrides, in command-line order:  a.b.c=VALUE  sets an existing key (VALUE is parsed as YAML, so
 *      layers=[0.25,0.5], x=null, name='a b' work) and must keep the key's type (an integer stays an
 *      integer, a list a list; a null or ??? key takes anything);  +a.b=VALUE adds a new key;  ++a.b=VALUE
 *      sets or adds;  ~a.b removes.
 *   4. Interpolations are resolved: ${other.key} (the value itself when it is the whole text, else
 *      spliced in as text), ${oc.select:key,default} (the default when the key is absent, e.g. in a group
 *      left out), ${env:VAR} and ${env:VAR,default} (oc.env: is accepted too), ${now:FORMAT}
 *      (strftime of the composition time). \${ is a literal ${.
 *   5. Every value must be set: a ??? left anywhere is an error naming the key and its file.
 * Every error is exit code 2 with one message naming the file (and line) or the command-line argument,
 * and the key; an unknown key gets the nearest valid key suggested; an unknown group choice lists the
 * available ones.
 */
#ifndef DK_CONFIG_H
#define DK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "node.h"

typedef struct dk_cfg {
    dk_cfg_node *root;       /* the resolved tree */
    char *config_dir;        /* absolute path of the configs/ folder used */
    char **sources;          /* interned source names that nodes point at */
    size_t n_sources;
    char **groups;           /* group names, in composition order ... */
    char **choices;          /* ... and the choice made for each (NULL = left out) */
    size_t n_groups;
} dk_cfg;

typedef struct dk_cfg_options {
    const char *config_dir;            /* folder holding config.yaml and the group folders */
    const char *config_name;           /* primary file without .yaml; NULL = "config" */
    const char *const *overrides;      /* command-line arguments, each group=NAME, key=VALUE, +k=V, ++k=V or ~k */
    size_t n_overrides;
} dk_cfg_options;

/* NULL + err (code 2) on any configuration error. */
dk_cfg *dk_cfg_compose(const dk_cfg_options *options, dk_err *err);
/* A configuration from one YAML text, no groups (for tests and for configs stored in output files). */
dk_cfg *dk_cfg_from_yaml(const char *text, const char *source, dk_err *err);
void dk_cfg_free(dk_cfg *cfg);

/* Resolved YAML text of the whole configuration (the caller frees). */
char *dk_cfg_dump(const dk_cfg *cfg);
/* The group choice made for `group` ("qwen3_1_7B"), or NULL when left out or unknown. */
const char *dk_cfg_choice(const dk_cfg *cfg, const char *group);

/* ---- typed getters --------------------------------------------------------------------------------
 * The try_ forms return 0, or -1 with err (code 2) naming the key, where it was set and what was
 * expected. The plain forms print that message and end the job with exit code 2 (under MPI every rank reads
 * the same configuration and meets the same error: rank 0 alone prints it, dk_die_identical). */
const dk_cfg_node *dk_cfg_get(const dk_cfg *cfg, const char *path); /* NULL when absent */
bool dk_cfg_has(const dk_cfg *cfg, const char *path);                 /* present and not null */

int dk_cfg_try_int(const dk_cfg *cfg, const char *path, int64_t *out, dk_err *err);
int dk_cfg_try_float(const dk_cfg *cfg, const char *path, double *out, dk_err *err);
int dk_cfg_try_bool(const dk_cfg *cfg, const char *path, bool *out, dk_err *err);
/* Strings: a null value gives *out = NULL when allow_null, an error otherwise. */
int dk_cfg_try_str(const dk_cfg *cfg, const char *path, bool allow_null, const char **out, dk_err *err);
/* Lists of numbers: *out is malloc'ed (caller frees), *n its length. */
int dk_cfg_try_float_list(const dk_cfg *cfg, const char *path, double **out, size_t *n, dk_err *err);
int dk_cfg_try_int_list(const dk_cfg *cfg, const char *path, int64_t **out, size_t *n, dk_err *err);

int64_t dk_cfg_int(const dk_cfg *cfg, const char *path);
double dk_cfg_float(const dk_cfg *cfg, const char *path);
bool dk_cfg_bool(const dk_cfg *cfg, const char *path);
const char *dk_cfg_str(const dk_cfg *cfg, const char *path);      /* error when null */
const char *dk_cfg_str_or_null(const dk_cfg *cfg, const char *path);

/* "configs/model/qwen3_1_7B.yaml:4:12" or "command line" for messages about a node. */
void dk_cfg_node_where(const dk_cfg_node *node, char *buf, size_t cap);

#endif
