/* method_job.h — the harness every diffing method job runs in, so each diff_<method> main() is one line:
 *
 *     int main(int argc, char **argv) { return dk_method_main(&dk_method_kl, argc, argv); }
 *
 * What the harness does, in order (every rank):
 *   1. MPI (dist.h), the command line and the configuration, composed with diffing/method=<method> (the
 *      method's settings: configs/diffing/method/<method>.yaml under diffing.method.*); --help, --print-config;
 *   2. the common settings: results folder ${diffing.results_dir}/<results_subdir>, diffing.method.overwrite,
 *      device, threads, seed;
 *   3. the two models (model_pair.h) when the method runs them, else only their ids and tokenizer;
 *   4. spec->prepare: the method reads its settings and checks its inputs (stores, datasets, layers) before any
 *      heavy work, adding what the results depend on to job->inputs; it may move job->results_dir to a folder
 *      below it (diff_mining: the seed's run folder seed{seed}_top{top_k});
 *   5. the results (results.h): reused when complete with the same fingerprint (the job ends there), refused
 *      when they hold other inputs (unless overwrite), else a fresh results.h5.partial;
 *   6. spec->run computes and writes; 7. commit (results.h5 appears), a closing line with the time.
 * Any error is agreed across ranks (every rank exits with the same code, rank 0 prints it once) and leaves
 * nothing that looks complete. */
#ifndef DK_METHODS_METHOD_JOB_H
#define DK_METHODS_METHOD_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "io/act_store_read.h"
#include "core/strutil.h"
#include "dist/dist.h"
#include "methods/model_pair.h"
#include "methods/results.h"
#include "model/backend.h"

typedef struct dk_method_job dk_method_job;

typedef struct dk_method_spec {
    const char *job;             /* executable name: "diff_kl" */
    const char *method;          /* configs/diffing/method/<method>.yaml and diffing.method.name: "kl" */
    const char *results_subdir;  /* under diffing.results_dir: "kl" (seed_spec §4) */
    const char *usage;           /* what the job does, a few lines for --help */
    bool needs_models;           /* open both models and a backend per rank (else ids and tokenizer only) */
    /* When set, decides needs_models from the configuration (a method whose models serve an optional step). */
    bool (*wants_models)(const dk_cfg *cfg);
    /* Reads the method's settings, checks its inputs and appends them to job->inputs (every rank; collective
     * calls allowed; the harness agrees the error). Sets job->state. */
    int (*prepare)(dk_method_job *job, dk_err *err);
    /* Computes and writes the results into job->res (every rank). */
    int (*run)(dk_method_job *job, dk_err *err);
    /* Frees job->state (may be NULL). */
    void (*free_state)(dk_method_job *job);
} dk_method_spec;

struct dk_method_job {
    const dk_method_spec *spec;
    dk_dist d;
    dk_cfg *cfg;
    dk_model_pair pair;          /* resolved always; opened when spec->needs_models */
    dk_tokenizer *tok;           /* the pair's tokenizer (opened with the models, or alone) */
    dk_results res;
    dk_strbuf inputs;            /* canonical text of every input: hashed into the results' fingerprint */
    char *results_dir;           /* ${diffing.results_dir}/<results_subdir> */
    bool overwrite;
    dk_device device;
    int threads;                 /* CPU threads per rank (resolved; > 0) */
    int64_t seed;
    bool models_open;            /* the pair's models and backends are open (needs_models / wants_models) */
    void *state;                 /* the method's own */
};

int dk_method_main(const dk_method_spec *spec, int argc, char **argv);

/* ---- helpers for methods ------------------------------------------------------------------------------------ */

/* Appends "key: value" to the fingerprint text. */
void dk_method_input(dk_method_job *job, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A layer given as a fraction of depth (0.5 -> int(0.5 * (L - 1)), the seed's rule) or an absolute index. */
int dk_method_layer(const dk_cfg_node *spec, int64_t n_layers, const char *key, int64_t *out, dk_err *err);
/* The list at key (e.g. diffing.method.layers) as distinct absolute layers, in order. 0 or -1 + err. */
int dk_method_layers(const dk_cfg *cfg, const char *key, int64_t n_layers, int64_t **out, int64_t *n, dk_err *err);

/* The activation stores of one configured dataset group ("dataset.pretraining", "dataset.chat",
 * "organism.dataset") and split, as diff_preprocess names them: base and finetuned paths and the dataset's
 * short name. Missing stores are an error naming the diff_preprocess command that makes them. */
int dk_method_store_paths(const dk_method_job *job, const char *group, const char *split, char **base_path,
                          char **ft_path, char **name, dk_err *err);

/* The two stores of (group, split) opened as a pair at layer (act_store_read.h), checked to belong to this
 * job's models and tokenizer, and added to the inputs (their plan fingerprints). *name: the dataset's short
 * name. 0 or -1 + err naming the store and what differs. */
int dk_method_open_stores(dk_method_job *job, const char *group, const char *split, int64_t layer, dk_act_pair *out,
                          char **name, dk_err *err);

/* The layers diff_preprocess caches (preprocessing.layers resolved on the base model): the first one is where
 * methods that only need the stores' tokens read them. */
int dk_method_store_layers(const dk_method_job *job, int64_t **layers, int64_t *n, dk_err *err);

#endif
