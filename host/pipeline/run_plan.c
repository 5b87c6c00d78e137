/* run_plan.c — see run_plan.h. */
#include "pipeline/run_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"
#include "io/file.h"

/* Every diffing method diffkit has a job for: its config name, executable, whether it reads activation stores,
 * whether it runs on several ranks (diff_amplification samples on rank 0 alone). Run order of pipeline.methods is
 * the configuration's. */
static const struct method_job {
    const char *method, *job;
    bool reads_stores, mpi;
} METHOD_JOBS[] = {
    {"kl", "diff_kl", true, true},
    {"diff_mining", "diff_mining", false, true},
    {"activation_difference_lens", "diff_adl", false, true},
    {"weight_amplification", "diff_amplification", false, false},
    {"activation_analysis", "diff_activation_analysis", true, true},
    {"pca", "diff_pca", true, true},
    {"sae_difference", "diff_sae", true, true},
    {"crosscoder", "diff_crosscoder", true, true},
};
enum { N_METHOD_JOBS = sizeof METHOD_JOBS / sizeof METHOD_JOBS[0] };

static const struct method_job *find_method(const char *method) {
    for (int i = 0; i < N_METHOD_JOBS; i++)
        if (strcmp(METHOD_JOBS[i].method, method) == 0) return &METHOD_JOBS[i];
    return NULL;
}

const char *dk_method_job_name(const char *method) {
    const struct method_job *m = find_method(method);
    return m ? m->job : NULL;
}

static void known_methods(char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < N_METHOD_JOBS; i++) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", i ? ", " : "", METHOD_JOBS[i].method);
    }
}

static dk_stage *add(dk_run_plan *p, dk_stage_kind kind, const char *name, const char *job, bool mpi, bool stores) {
    p->stages = realloc(p->stages, (p->n_stages + 1) * sizeof *p->stages);
    CHECK(p->stages, "out of memory planning the pipeline");
    dk_stage *s = &p->stages[p->n_stages++];
    *s = (dk_stage){.kind = kind, .name = name, .job = job, .mpi = mpi, .reads_stores = stores};
    return s;
}

/* A list of strings at key (absent or null: none). */
static int string_list(const dk_cfg *cfg, const char *key, const char ***out, size_t *n, dk_err *err) {
    *out = NULL;
    *n = 0;
    const dk_cfg_node *list = dk_cfg_get(cfg, key);
    if (!list || list->kind == DK_CFG_NULL) return 0;
    char where[512];
    dk_cfg_node_where(list, where, sizeof where);
    if (list->kind != DK_CFG_SEQ)
        return dk_err_set(err, DK_EXIT_USAGE, "%s (%s) must be a list of strings", key, where);
    *out = dk_calloc(list->n + 1, sizeof **out);
    for (size_t i = 0; i < list->n; i++) {
        if (list->items[i]->kind != DK_CFG_SCALAR) {
            free(*out);
            *out = NULL;
            return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu] (%s) must be a string", key, i, where);
        }
        (*out)[(*n)++] = list->items[i]->text;
    }
    return 0;
}

/* The methods: diffing/method=NAME chosen on the command line runs that one, else pipeline.methods. */
static int add_methods(const dk_cfg *cfg, dk_run_plan *p, dk_err *err) {
    const char *chosen = dk_cfg_choice(cfg, "diffing/method");
    const char **names = NULL;
    size_t n = 0;
    if (chosen) {
        names = dk_calloc(1, sizeof *names);
        names[n++] = chosen;
    } else if (string_list(cfg, "pipeline.methods", &names, &n, err) != 0) {
        return -1;
    }
    if (n == 0) {
        free(names);
        return dk_err_set(err, DK_EXIT_USAGE, "pipeline.methods is empty: list the methods to run (names of "
                          "configs/diffing/method/*.yaml, e.g. [kl, diff_mining]), or choose one with "
                          "diffing/method=NAME");
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct method_job *m = find_method(names[i]);
        char *file = dk_sprintf("%s/diffing/method/%s.yaml", cfg->config_dir, names[i]);
        char known[512];
        known_methods(known, sizeof known);
        if (!dk_is_file(file))
            rc = dk_err_set(err, DK_EXIT_USAGE, "pipeline.methods: %s has no method config (%s does not exist); "
                            "diffkit's methods: %s", names[i], file, known);
        else if (!m)
            rc = dk_err_set(err, DK_EXIT_USAGE, "pipeline.methods: %s has a config but no diffkit job yet; diffkit's "
                            "methods: %s", names[i], known);
        for (size_t j = 0; j < p->n_stages && rc == 0; j++)
            if (p->stages[j].kind == DK_STAGE_METHOD && strcmp(p->stages[j].name, names[i]) == 0)
                rc = dk_err_set(err, DK_EXIT_USAGE, "pipeline.methods lists %s twice: list each method once", names[i]);
        free(file);
        if (rc == 0) add(p, DK_STAGE_METHOD, m->method, m->job, m->mpi, m->reads_stores);
    }
    free(names);
    return rc;
}

int dk_run_plan_make(const dk_cfg *cfg, dk_run_plan *plan, dk_err *err) {
    memset(plan, 0, sizeof *plan);
    dk_run_plan *p = plan;
    int rc = dk_cfg_try_str(cfg, "pipeline.mode", false, &p->mode, err);
    if (rc == 0) rc = dk_cfg_try_int(cfg, "pipeline.ranks", &p->ranks, err);
    if (rc == 0 && p->ranks < 1)
        rc = dk_err_set(err, DK_EXIT_USAGE, "pipeline.ranks = %lld: must be at least 1 (1 runs each stage directly, N "
                        "under `mpirun -n N`)", (long long)p->ranks);
    if (rc == 0) rc = string_list(cfg, "pipeline.mpirun_args", &p->mpirun_args, &p->n_mpirun_args, err);
    p->launcher = "mpirun";
    if (rc == 0 && dk_cfg_has(cfg, "infrastructure.launcher"))
        rc = dk_cfg_try_str(cfg, "infrastructure.launcher", false, &p->launcher, err);
    if (rc == 0 && strcmp(p->launcher, "mpirun") != 0 && strcmp(p->launcher, "srun") != 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "infrastructure.launcher = %s: diffkit run starts ranks with mpirun or "
                        "srun", p->launcher);
    if (rc != 0) {
        free(p->mpirun_args);
        p->mpirun_args = NULL;
        return -1;
    }
    const char *mode = p->mode;
    const bool full = strcmp(mode, "full") == 0, pre = strcmp(mode, "preprocessing") == 0;
    const bool diffing = strcmp(mode, "diffing") == 0, eval = strcmp(mode, "evaluation") == 0;
    const bool no_eval = strcmp(mode, "no_evaluation") == 0;
    if (!full && !pre && !diffing && !eval && !no_eval)
        return dk_err_set(err, DK_EXIT_USAGE, "pipeline.mode = %s: expected full, preprocessing, diffing, evaluation "
                          "or no_evaluation", mode);
    if (pre) {
        add(p, DK_STAGE_PREPROCESS, "preprocess", "diff_preprocess", true, false);
    } else {
        dk_run_plan methods = {0};
        if (!eval && add_methods(cfg, &methods, err) != 0) {
            free(methods.stages);
            dk_run_plan_free(p);
            return -1;
        }
        bool stores = false;
        for (size_t i = 0; i < methods.n_stages; i++) stores |= methods.stages[i].reads_stores;
        if ((full || no_eval) && stores)
            add(p, DK_STAGE_PREPROCESS, "preprocess", "diff_preprocess", true, false);
        else if (full || no_eval)
            p->why_no_preprocess = "none of the methods reads activation stores";
        for (size_t i = 0; i < methods.n_stages; i++)
            *add(p, DK_STAGE_METHOD, "", "", false, false) = methods.stages[i];
        free(methods.stages);
        if (full || eval) add(p, DK_STAGE_AGENT, "agent", "diff_agent", false, false);
        add(p, DK_STAGE_REPORT, "report", "diff_report", false, false);
    }
    /* pipeline.stage_args: a mapping executable -> list of overrides */
    const dk_cfg_node *sa = dk_cfg_get(cfg, "pipeline.stage_args");
    if (sa && sa->kind != DK_CFG_NULL && sa->kind != DK_CFG_MAP) {
        dk_run_plan_free(p);
        return dk_err_set(err, DK_EXIT_USAGE, "pipeline.stage_args must be a mapping {diff_JOB: [key=value, ...]}");
    }
    for (size_t i = 0; sa && sa->kind == DK_CFG_MAP && i < sa->n; i++) {
        const char *job = sa->keys[i];
        bool known = strcmp(job, "diff_preprocess") == 0 || strcmp(job, "diff_agent") == 0 ||
                     strcmp(job, "diff_report") == 0;
        for (int k = 0; k < N_METHOD_JOBS; k++) known |= strcmp(job, METHOD_JOBS[k].job) == 0;
        if (!known) {
            dk_run_plan_free(p);
            return dk_err_set(err, DK_EXIT_USAGE, "pipeline.stage_args.%s: no such stage; the stages are "
                              "diff_preprocess, diff_kl, diff_mining, diff_adl, diff_amplification, "
                              "diff_activation_analysis, diff_pca, diff_sae, diff_crosscoder, diff_agent, diff_report",
                              job);
        }
        char *key = dk_sprintf("pipeline.stage_args.%s", job);
        const char **args = NULL;
        size_t n = 0;
        rc = string_list(cfg, key, &args, &n, err);
        free(key);
        if (rc != 0) {
            dk_run_plan_free(p);
            return -1;
        }
        bool used = false;
        for (size_t s = 0; s < p->n_stages; s++)
            if (strcmp(p->stages[s].job, job) == 0 && !used) {
                p->stages[s].args = args;
                p->stages[s].n_args = n;
                used = true;
            }
        if (!used) free(args);
    }
    return 0;
}

void dk_run_plan_free(dk_run_plan *plan) {
    for (size_t i = 0; i < plan->n_stages; i++) free(plan->stages[i].args);
    free(plan->stages);
    free(plan->mpirun_args);
    memset(plan, 0, sizeof *plan);
}
