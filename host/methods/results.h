/* results.h — the results of one method run: ${diffing.results_dir}/<method dir>/results.h5 and the JSON files
 * beside it (the seed's human-readable outputs, e.g. kl/{dataset}.json). Layout: docs/formats.md, "Results files".
 *
 * Lifecycle (every rank calls every function; rank 0 does the file work and the others follow):
 *   dk_results_begin   takes the lock of results.h5 (io/store_lock.h) for the whole run, then looks at what is
 *                      there: a complete results.h5 with the same fingerprint is reused (the method need not
 *                      run); one with another fingerprint is refused unless overwrite; a results.h5.partial
 *                      (a killed run) is removed; then results.h5.partial is created with the resolved
 *                      configuration and the inputs text (what the fingerprint hashes) in it.
 *   dk_results_*       writes datasets and attributes into the partial file (rank 0; no-ops elsewhere). A write
 *                      that fails is remembered, the later ones are skipped, and commit reports it.
 *   dk_results_json    queues a JSON file; queued files are written (temporary + rename) at commit, before
 *                      results.h5 appears, and carry the same fingerprint.
 *   dk_results_commit  writes the summary and the JSON files, closes the file, checks the lock and renames
 *                      results.h5.partial -> results.h5: a results.h5 that exists is complete. The outcome is
 *                      agreed across ranks.
 * So a killed run leaves only a .partial (never mistaken for results), and a rerun starts over.
 *
 * Paths inside the file are '/'-separated groups, created as needed: "layer_1/pretraining/mean_diff". */
#ifndef DK_METHODS_RESULTS_H
#define DK_METHODS_RESULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "dist/dist.h"
#include "io/out_file.h"
#include "io/store_lock.h"

typedef struct dk_results_json_file dk_results_json_file;

typedef struct dk_results {
    bool writer;              /* rank 0 writes, the others follow */
    char *dir;                /* the method's results folder */
    char *path, *partial;     /* <dir>/results.h5 and <dir>/results.h5.partial */
    int64_t file;             /* hid_t of the partial file (writer), -1 when closed */
    dk_store_lock lock;
    dk_file_id partial_id;    /* the partial this run created: only that one is renamed */
    uint64_t fingerprint;
    char fingerprint_hex[17];
    dk_err err;               /* first write failure (writer) */
    dk_results_json_file *json;  /* queued JSON files */
    cJSON *summary;           /* the agent's summary (dk_results_summary), written at commit */
} dk_results;

/* Opens the results of a run in dir (created if needed). method: the method's name; inputs: canonical text of
 * everything the results depend on (hashed into the fingerprint, stored in the file); config_yaml: the resolved
 * configuration. *reused is set when a complete results.h5 with the same fingerprint exists: then nothing is
 * opened and the caller is done (dk_results_end releases the lock). Collective; 0, or -1 with err agreed. */
int dk_results_begin(dk_results *r, const dk_dist *d, const char *dir, const char *method, const char *inputs,
                     const char *config_yaml, bool overwrite, bool *reused, dk_err *err);

/* What <dir>/results.h5 holds for these inputs, looked at without its lock and without changing anything (the
 * pipeline's reuse check, `diff_<method> --check`): absent, unfinished (only a .partial), complete with the same
 * fingerprint, or holding other inputs. why gets one sentence naming the file (and the first differing input). */
typedef enum { DK_RESULTS_ABSENT, DK_RESULTS_UNFINISHED, DK_RESULTS_SAME, DK_RESULTS_OTHER } dk_results_state;
dk_results_state dk_results_look(const char *dir, const char *inputs, char *why, size_t cap);

/* Datasets: rank dims (row-major), data on the writer. The path's groups are created as needed. */
void dk_results_f32(dk_results *r, const char *path, int rank, const int64_t *dims, const float *data);
void dk_results_f64(dk_results *r, const char *path, int rank, const int64_t *dims, const double *data);
void dk_results_i32(dk_results *r, const char *path, int rank, const int64_t *dims, const int32_t *data);
void dk_results_i64(dk_results *r, const char *path, int rank, const int64_t *dims, const int64_t *data);
/* A 1-D dataset of n UTF-8 strings (variable length; h5py reads str). */
void dk_results_strings(dk_results *r, const char *path, int64_t n, const char *const *strings);
/* The same with rank dims (row-major): strings holds the product of dims entries. */
void dk_results_strings_nd(dk_results *r, const char *path, int rank, const int64_t *dims, const char *const *strings);
/* Attributes of the object at path ("" or "/" = the file; groups are created as needed). */
void dk_results_attr_str(dk_results *r, const char *path, const char *name, const char *value);
void dk_results_attr_f64(dk_results *r, const char *path, const char *name, double value);
void dk_results_attr_i64(dk_results *r, const char *path, const char *name, int64_t value);

/* Queues <dir>/<relpath> (folders created) holding json (taken; freed by the results). Writer only uses it.
 * A relpath ending in .jsonl with an array writes JSON Lines: each item compact on its own line. */
void dk_results_json(dk_results *r, const char *relpath, cJSON *json);
/* The summary the agent runner reads (seed_spec §14.4 / §13): stored as /summary (attribute "json") and as
 * <dir>/summary.json at commit. json is taken. */
void dk_results_summary(dk_results *r, cJSON *json);

/* Completes the run (see above). 0, or -1 with err agreed across ranks (the partial is removed on failure). */
int dk_results_commit(dk_results *r, const dk_dist *d, dk_err *err);
/* Abandons an open run (error paths): closes and removes the partial, releases the lock. Safe after commit. */
void dk_results_end(dk_results *r);

#endif
