/* run_plan.h — which pipeline stages `diffkit run` chains, in order, as the configuration selects them.
 *
 * Why it exists: the stages are separate executables (one job each, so SLURM and mpirun launch exactly one);
 * something must turn pipeline.mode (the seed's full | preprocessing | diffing | evaluation | no_evaluation) and
 * pipeline.methods into the ordered list preprocess -> methods -> agent -> report, with each stage's executable,
 * whether it may run on several MPI ranks, and its own overrides (pipeline.stage_args.<executable>). This file
 * decides the list from the configuration alone; jobs/cmd_run.c asks each stage whether its results are already
 * complete (`--check`) and runs the rest.
 *
 * Modes (seed_spec §1.1; the report, ours, follows every mode that makes or grades results):
 *   full           preprocess, methods, agent, report
 *   preprocessing  preprocess
 *   diffing        methods, report
 *   evaluation     agent, report
 *   no_evaluation  preprocess, methods, report
 * preprocess joins full / no_evaluation only when one of the chosen methods reads activation stores (the seed's
 * requires_preprocessing, decided by what diffkit's methods really read: kl, activation_analysis, pca,
 * sae_difference and crosscoder do; diff_mining, the ADL and weight amplification run the models themselves). */
#ifndef DK_PIPELINE_RUN_PLAN_H
#define DK_PIPELINE_RUN_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum { DK_STAGE_PREPROCESS, DK_STAGE_METHOD, DK_STAGE_AGENT, DK_STAGE_REPORT } dk_stage_kind;

typedef struct dk_stage {
    dk_stage_kind kind;
    const char *name;          /* "preprocess", the method ("kl", "activation_difference_lens"), "agent", "report" */
    const char *job;           /* its executable: diff_preprocess, diff_kl, diff_adl, ..., diff_agent, diff_report */
    bool mpi;                  /* may run on pipeline.ranks ranks (else always one process) */
    bool reads_stores;         /* a method that reads diff_preprocess's activation stores */
    const char **args;         /* (n_args) pipeline.stage_args.<job>: overrides for this stage only */
    size_t n_args;
} dk_stage;

typedef struct dk_run_plan {
    const char *mode;
    dk_stage *stages;          /* (n_stages) in run order */
    size_t n_stages;
    const char *why_no_preprocess;  /* full / no_evaluation without preprocess: why (else NULL) */
    int64_t ranks;             /* pipeline.ranks: 1 runs each stage directly, N > 1 under `LAUNCHER -n N` */
    const char *launcher;      /* infrastructure.launcher: mpirun (default) or srun (inside a SLURM allocation) */
    const char **mpirun_args;  /* (n_mpirun_args) pipeline.mpirun_args, given to mpirun before the executable */
    size_t n_mpirun_args;
} dk_run_plan;

/* The plan of cfg (pointers into cfg: keep it alive). 0, or -1 with err (code 2) naming the key: an unknown mode,
 * a method without a configs/diffing/method file or without an executable, stage_args for an unknown stage. */
int dk_run_plan_make(const dk_cfg *cfg, dk_run_plan *plan, dk_err *err);
void dk_run_plan_free(dk_run_plan *plan);

/* The executable of a diffing method (configs/diffing/method/<method>.yaml): "activation_difference_lens" ->
 * "diff_adl"; NULL when diffkit has no job for it. */
const char *dk_method_job_name(const char *method);

#endif
