/* method_job.c — see method_job.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "methods/method_job.h"

#include <hdf5.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/job_args.h"
#include "config/node.h"
#include "config/yaml_io.h"
#include "core/format.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/file.h"
#include "pipeline/pp_dataset.h"

void dk_method_input(dk_method_job *job, const char *key, const char *fmt, ...) {
    dk_strbuf_printf(&job->inputs, "%s: ", key);
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    if (vasprintf(&v, fmt, ap) < 0) v = NULL;
    va_end(ap);
    CHECK(v, "out of memory describing an input");
    dk_strbuf_append(&job->inputs, v);
    dk_strbuf_append(&job->inputs, "\n");
    free(v);
}

int dk_method_layer(const dk_cfg_node *spec, int64_t n_layers, const char *key, int64_t *out, dk_err *err) {
    int64_t iv;
    double fv;
    char where[512];
    dk_cfg_node_where(spec, where, sizeof where);
    if (spec->kind == DK_CFG_SCALAR && dk_cfg_parse_int(spec->text, &iv)) {
        *out = iv;
    } else if (spec->kind == DK_CFG_SCALAR && dk_cfg_parse_float(spec->text, &fv) && fv >= 0.0 && fv <= 1.0) {
        *out = (int64_t)(fv * (double)(n_layers - 1));
    } else {
        return dk_err_set(err, DK_EXIT_USAGE, "%s = %s (%s): expected a fraction of depth in [0, 1] (0.5 = the middle "
                          "layer) or an absolute layer index", key, spec->text ? spec->text : "?", where);
    }
    if (*out < 0 || *out >= n_layers)
        return dk_err_set(err, DK_EXIT_USAGE, "%s = %s (%s) gives layer %lld; the model has layers 0..%lld", key,
                          spec->text, where, (long long)*out, (long long)(n_layers - 1));
    return 0;
}

int dk_method_layers(const dk_cfg *cfg, const char *key, int64_t n_layers, int64_t **out, int64_t *n, dk_err *err) {
    *out = NULL;
    *n = 0;
    const dk_cfg_node *list = dk_cfg_get(cfg, key);
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s must be a non-empty list of layers (fractions like 0.5 or indices)",
                          key);
    *out = dk_malloc(list->n * sizeof **out);
    for (size_t i = 0; i < list->n; i++) {
        char *item_key = dk_sprintf("%s[%zu]", key, i);
        int64_t l = 0;
        int rc = dk_method_layer(list->items[i], n_layers, item_key, &l, err);
        free(item_key);
        if (rc != 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        bool dup = false;
        for (int64_t j = 0; j < *n; j++) dup |= (*out)[j] == l;
        if (!dup) (*out)[(*n)++] = l;
    }
    return 0;
}

int dk_method_store_paths(const dk_method_job *job, const char *group, const char *split, char **base_path,
                          char **ft_path, char **name, dk_err *err) {
    *base_path = *ft_path = *name = NULL;
    char *id_key = dk_sprintf("%s.id", group);
    if (!dk_cfg_has(job->cfg, id_key)) {
        int rc = dk_err_set(err, DK_EXIT_USAGE, "%s is not configured (the dataset group is left out)", id_key);
        free(id_key);
        return rc;
    }
    char *file = NULL;
    int rc = dk_pp_resolve_dataset(dk_cfg_str(job->cfg, id_key), split, id_key, &file, name, err);
    free(id_key);
    free(file);
    if (rc != 0) return -1;
    const char *store_dir = dk_cfg_str(job->cfg, "preprocessing.activation_store_dir");
    char *base_name = dk_store_model_name(job->pair.base_id, NULL);
    char *ft_name = dk_store_model_name(job->pair.base_id, job->pair.ft_id);
    *base_path = dk_sprintf("%s/%s/%s/%s.h5", store_dir, base_name, *name, split);
    *ft_path = dk_sprintf("%s/%s/%s/%s.h5", store_dir, ft_name, *name, split);
    free(base_name);
    free(ft_name);
    for (int i = 0; i < 2 && rc == 0; i++) {
        const char *p = i ? *ft_path : *base_path;
        if (dk_is_file(p)) continue;
        char *partial = dk_sprintf("%s.partial", p);
        const char *model = dk_cfg_str(job->cfg, "model.name"), *organism = dk_cfg_str(job->cfg, "organism.name");
        if (dk_is_file(partial))
            rc = dk_err_set(err, DK_EXIT_USAGE, "the activation store %s is unfinished (%s exists): rerun "
                            "`mpirun -n N diff_preprocess model=%s organism=%s` to complete it", p, partial, model,
                            organism);
        else
            rc = dk_err_set(err, DK_EXIT_USAGE, "the activation store %s does not exist: make it first with "
                            "`mpirun -n N diff_preprocess model=%s organism=%s` (same preprocessing.* settings)", p,
                            model, organism);
        free(partial);
    }
    if (rc != 0) {
        free(*base_path), free(*ft_path), free(*name);
        *base_path = *ft_path = *name = NULL;
    }
    return rc;
}

int dk_method_open_stores(dk_method_job *job, const char *group, const char *split, int64_t layer, dk_act_pair *out,
                          char **name, dk_err *err) {
    char *base_path = NULL, *ft_path = NULL;
    if (dk_method_store_paths(job, group, split, &base_path, &ft_path, name, err) != 0) return -1;
    int rc = dk_act_pair_open(out, base_path, ft_path, layer, err);
    const dk_model_pair *mp = &job->pair;
    const char *want_ft_model = mp->ft_is_adapter ? mp->base_id : mp->ft_id, *want_adapter = mp->ft_is_adapter ? mp->ft_id : "";
    if (rc == 0) {
        const dk_act_store *b = &out->base, *f = &out->ft;
        if (strcmp(b->model_id, mp->base_id) != 0 || b->adapter_id[0])
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s was cached from %s%s%s, not from the base model %s: set "
                            "preprocessing.activation_store_dir to this model's stores, or rerun diff_preprocess",
                            base_path, b->model_id, b->adapter_id[0] ? " + adapter " : "", b->adapter_id, mp->base_id);
        else if (strcmp(f->model_id, want_ft_model) != 0 || strcmp(f->adapter_id, want_adapter) != 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s was cached from %s%s%s, not from the organism's %s: rerun "
                            "diff_preprocess for this organism", ft_path, f->model_id, f->adapter_id[0] ? " + adapter " : "",
                            f->adapter_id, mp->ft_id);
        else if (b->tokenizer_hash[0] && strcmp(b->tokenizer_hash, mp->tokenizer_hash) != 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s was tokenized with another tokenizer (%s) than %s (%s): rerun "
                            "diff_preprocess", base_path, b->tokenizer_hash, mp->tokenizer_path, mp->tokenizer_hash);
        /* the methods read each sequence's whole token list from the store (forwards, examples, positions) */
        else if (!b->tokens)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s holds no tokens (cached with preprocessing.store_tokens=false): "
                            "the diffing methods need them; rerun diff_preprocess with preprocessing.store_tokens=true",
                            base_path);
        else if (b->skip_first > 0)
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s was cached without the first %lld token(s) of each sequence "
                            "(model.ignore_first_n_tokens_per_sample_during_collection): the diffing methods do not "
                            "support such stores yet; rerun diff_preprocess with that key at 0", base_path,
                            (long long)b->skip_first);
        if (rc != 0) dk_act_pair_close(out);
    }
    if (rc == 0)
        dk_method_input(job, "store", "%s/%s layer %lld: %016llx %016llx", *name, split, (long long)layer,
                        (unsigned long long)out->base.fingerprint, (unsigned long long)out->ft.fingerprint);
    free(base_path);
    free(ft_path);
    if (rc != 0) {
        free(*name);
        *name = NULL;
    }
    return rc;
}

int dk_method_store_layers(const dk_method_job *job, int64_t **layers, int64_t *n, dk_err *err) {
    return dk_method_layers(job->cfg, "preprocessing.layers", job->pair.n_layers, layers, n, err);
}

/* ---- the job ------------------------------------------------------------------------------------------------ */

static int read_common(dk_method_job *job, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    const char *choice = dk_cfg_choice(cfg, "diffing/method");
    if (!choice || strcmp(choice, job->spec->method) != 0)
        return dk_err_set(err, DK_EXIT_USAGE, "%s runs the method %s, but the command line chose diffing/method=%s: "
                          "run diff_%s for that method", job->spec->job, job->spec->method, choice ? choice : "null",
                          choice ? choice : "...");
    const char *dir = dk_cfg_str(cfg, "diffing.results_dir");
    job->results_dir = dk_path_join(dir, job->spec->results_subdir);
    bool overwrite = false;
    int64_t threads = 0, seed = 0;
    if (dk_cfg_try_bool(cfg, "diffing.method.overwrite", &overwrite, err) != 0) return -1;
    if (dk_cfg_try_int(cfg, "threads", &threads, err) != 0 || dk_cfg_try_int(cfg, "seed", &seed, err) != 0) return -1;
    if (dk_device_parse(dk_cfg_str(cfg, "device"), &job->device, err) != 0) {
        dk_err_prefix(err, "configuration key device: ");
        return -1;
    }
    if (threads <= 0) { /* all cores available to the rank: mpirun binds ranks, so count the affinity mask */
        cpu_set_t set;
        threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    job->overwrite = overwrite;
    job->threads = (int)threads;
    job->seed = seed;
    return 0;
}

/* The method's settings as a fingerprint input, without the keys that do not change its results: what to do
 * with old results (overwrite), the agent's view of them (agent), debugging and loader knobs. */
static void settings_input(dk_method_job *job) {
    static const char *const not_results[] = {"overwrite", "agent", "debug_print_samples", "num_workers", "upload"};
    /* nested ones: the dictionary jobs' retraining switch and data-loader workers */
    static const char *const not_results_in[][2] = {{"training", "overwrite"}, {"training", "workers"}};
    dk_cfg_node *m = dk_cfg_node_clone(dk_cfg_get(job->cfg, "diffing.method"));
    for (size_t i = 0; i < sizeof not_results / sizeof not_results[0]; i++) dk_cfg_map_remove(m, not_results[i]);
    for (size_t i = 0; i < sizeof not_results_in / sizeof not_results_in[0]; i++) {
        dk_cfg_node *sub = dk_cfg_map_get(m, not_results_in[i][0]);
        if (sub) dk_cfg_map_remove(sub, not_results_in[i][1]);
    }
    char *yaml = dk_cfg_to_yaml(m);
    dk_strbuf_printf(&job->inputs, "settings:\n%s", yaml);
    free(yaml);
    dk_cfg_node_free(m);
}

static void check(dk_method_job *job, dk_err *err) {
    if (dk_dist_agree(&job->d, err) != 0) dk_dist_exit(&job->d, err);
}

/* --check: the results' state for these inputs, printed as one line; exits 0 (complete, same inputs) or 3 (the
 * job must run). Nothing is loaded but the tokenizer, nothing written, no lock taken. */
static int check_only(dk_method_job *job) {
    char why[1200];
    const dk_results_state state = dk_results_look(job->results_dir, job->inputs.data ? job->inputs.data : "", why,
                                                   sizeof why);
    const bool reuse = state == DK_RESULTS_SAME && !job->overwrite;
    if (job->d.rank == 0) {
        if (reuse)
            printf("%s: complete: %s\n", job->spec->job, why);
        else if (state == DK_RESULTS_SAME)
            printf("%s: must run: %s, but diffing.method.overwrite=true recomputes it\n", job->spec->job, why);
        else if (state == DK_RESULTS_OTHER)
            printf("%s: must run: %s; the job refuses to replace them unless diffing.method.overwrite=true\n",
                   job->spec->job, why);
        else
            printf("%s: must run: %s\n", job->spec->job, why);
        fflush(stdout);
    }
    return reuse ? DK_EXIT_OK : DK_EXIT_MUST_RUN;
}

int dk_method_main(const dk_method_spec *spec, int argc, char **argv) {
    dk_method_job job = {.spec = spec};
    dk_dist_init(&argc, &argv, &job.d);
    const bool check_mode = dk_job_take_flag(&argc, argv, "--check");
    if (check_mode && dk_log_get_level() == DK_LOG_INFO) dk_log_set_level(DK_LOG_WARN); /* one line: the verdict */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5 failures are reported by our messages */
    for (int i = 1; i < argc; i++) /* --help / --print-config: rank 0 prints, the others leave quietly */
        if ((strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--print-config") == 0) &&
            job.d.rank != 0) {
            dk_dist_finalize(&job.d);
            return 0;
        }
    if (job.d.rank == 0) dk_stdout_check_at_exit(spec->job);
    double t0 = dk_time_now();
    char *choice = dk_sprintf("diffing/method=%s", spec->method);
    char *usage = dk_sprintf("%s\n--check: say whether complete results for these inputs exist, loading no model: "
                             "exit 0 (they do: the job\nwould reuse them), 3 (it must run), 2 (configuration error).",
                             spec->usage);
    job.cfg = dk_job_config_for(spec->job, usage, choice, argc, argv);
    free(usage);
    free(choice);
    dk_err err = {0};
    if (read_common(&job, &err) == 0) dk_model_pair_resolve(&job.pair, job.cfg, &err);
    check(&job, &err);
    const bool models = spec->wants_models ? spec->wants_models(job.cfg) : spec->needs_models;
    /* the results depend on how the forwards compute: from the open backend, or (--check) as it would open */
    const char *compute = NULL;
    job.models_open = models && !check_mode;
    if (job.models_open) {
        if (dk_model_pair_open(&job.pair, &job.d, job.device, job.threads, &err) != 0) dk_dist_exit(&job.d, &err);
        job.tok = job.pair.tok;
        compute = dk_model_pair_compute(&job.pair);
    } else {
        if (models) dk_backend_compute_planned(job.device, &compute, &err);
        if (!dk_err_is_set(&err)) dk_model_pair_load_tokenizer(&job.pair, &err);
        job.tok = job.pair.tok;
        check(&job, &err);
    }
    dk_strbuf_printf(&job.inputs, "method: %s\n", spec->method);
    dk_model_pair_inputs(&job.pair, compute, &job.inputs);
    settings_input(&job);
    spec->prepare(&job, &err);
    check(&job, &err);
    if (check_mode) {
        const int code = check_only(&job);
        if (spec->free_state) spec->free_state(&job);
        if (job.tok) dk_tokenizer_free(job.tok);
        dk_model_pair_close(&job.pair);
        dk_strbuf_free(&job.inputs);
        free(job.results_dir);
        dk_cfg_free(job.cfg);
        dk_dist_finalize(&job.d);
        return code;
    }

    bool reused = false;
    char *config_yaml = dk_cfg_dump(job.cfg);
    const char *inputs = job.inputs.data ? job.inputs.data : "";
    if (dk_results_begin(&job.res, &job.d, job.results_dir, spec->method, inputs, config_yaml, job.overwrite, &reused,
                         &err) != 0)
        dk_dist_exit(&job.d, &err);
    free(config_yaml);
    if (reused) {
        LOG_INFO("%s: %s is complete with the same inputs (fingerprint %s): nothing to do (diffing.method.overwrite="
                 "true recomputes it)", spec->job, job.res.path, job.res.fingerprint_hex);
        dk_results_end(&job.res);
    } else {
        if (spec->run(&job, &err) != 0 && !dk_err_is_set(&err))
            dk_err_set(&err, DK_EXIT_RUNTIME, "%s failed without a message (a bug)", spec->job);
        if (dk_dist_agree(&job.d, &err) != 0) {
            dk_results_end(&job.res);
            dk_dist_exit(&job.d, &err);
        }
        if (getenv("DIFFKIT_TEST_KILL_BEFORE_COMMIT")) raise(SIGKILL); /* tests: a job killed (every rank, as SLURM does) */
        if (dk_results_commit(&job.res, &job.d, &err) != 0) dk_dist_exit(&job.d, &err);
        char b[DK_FMT_BUF];
        LOG_INFO("%s done in %s on %d rank(s) (%s)", spec->job, dk_format_duration(b, dk_time_now() - t0), job.d.nranks,
                 models ? dk_model_pair_compute(&job.pair) : "from the stores");
    }
    if (spec->free_state) spec->free_state(&job);
    if (!job.models_open && job.tok) dk_tokenizer_free(job.tok);
    dk_model_pair_close(&job.pair);
    dk_strbuf_free(&job.inputs);
    free(job.results_dir);
    dk_cfg_free(job.cfg);
    dk_dist_finalize(&job.d);
    return 0;
}
