/* results_read.h — the report's reader of the methods' results (docs/formats.md "Results files"): whether a
 * method's results exist and are complete, and typed reads of datasets and attributes that say which dataset
 * failed and why. The report reads nothing else (no models, no stores): results.h5, the JSON files beside it,
 * summary.json.
 *
 * A results.h5 that exists is complete (host/methods/results.h writes results.h5.partial and renames it at the
 * end); a .partial alone is a run that did not finish, and a results.h5 HDF5 cannot open is corrupt. */
#ifndef DK_REPORT_RESULTS_READ_H
#define DK_REPORT_RESULTS_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

typedef enum rp_state { RP_MISSING, RP_PARTIAL, RP_CORRUPT, RP_OK } rp_state;

typedef struct rp_h5 {
    int64_t file;   /* hid_t, -1 when not open */
    char *rel;      /* the file relative to the results folder: "kl/results.h5" */
    char *path;     /* full path */
} rp_h5;

/* Looks at <results_dir>/<subdir>/results.h5: RP_OK opens it into f; otherwise why holds the reason for the
 * reader ("only results.h5.partial: the run did not finish", "HDF5 cannot open it: truncated or not HDF5"). */
rp_state rp_h5_open(rp_h5 *f, const char *results_dir, const char *subdir, char *why, size_t why_cap);
void rp_h5_close(rp_h5 *f);

/* True when every group on the path and the object itself exist. */
bool rp_h5_has(const rp_h5 *f, const char *path);

typedef struct rp_array {
    double *v;          /* [n] values converted to double (row-major) */
    int64_t n;
    int rank;
    int64_t dims[4];
} rp_array;

/* A numeric dataset (any integer or float type) as doubles. 0, or -1 with err naming file:path and the cause. */
int rp_h5_read(const rp_h5 *f, const char *path, rp_array *out, dk_err *err);
void rp_array_free(rp_array *a);
/* A string dataset (scalar or any rank, variable or fixed length) as n malloc'ed strings; NULL + err. */
char **rp_h5_strings(const rp_h5 *f, const char *path, int64_t *n, dk_err *err);
/* Numeric and string attributes of the object at path. */
int rp_h5_attr(const rp_h5 *f, const char *path, const char *name, double *out, dk_err *err);
char *rp_h5_attr_str(const rp_h5 *f, const char *path, const char *name, dk_err *err);
/* The names of a group's members in natural order (latent_2 before latent_10); NULL when it is not a group. */
char **rp_h5_children(const rp_h5 *f, const char *group, size_t *n);

/* A JSON file (the caller deletes it), or NULL with err naming the file. */
cJSON *rp_json_file(const char *path, dk_err *err);
/* A JSON Lines file as an array of its records, or NULL with err naming the file and line. */
cJSON *rp_jsonl_file(const char *path, dk_err *err);

#endif
