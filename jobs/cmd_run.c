/* cmd_run.c — `diffkit run [--dry-run] [overrides...]`: the whole pipeline as one command.
 *
 * Why it exists: a researcher wants one command from a model and an organism to a finding. The stages stay
 * separate executables (host/pipeline/run_plan.h picks them from pipeline.mode and pipeline.methods); this
 * command runs them in order as child processes, the output streamed, each under `mpirun -n pipeline.ranks` when
 * ranks > 1 and the stage runs on ranks. Before a stage runs, `STAGE --check` (same arguments, one process, no
 * model loaded) says whether its complete results for these inputs already exist: exit 0 skips it, 3 runs it.
 * A stage whose executable is not built is reported missing (the run ends with exit 1, the others still run); a
 * stage that fails stops the chain with its exit code, naming the stage and the command that reruns it alone.
 * --dry-run prints the plan (what would run, what is skipped and why) and runs nothing. */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/job_args.h"
#include "core/error.h"
#include "core/strutil.h"
#include "core/timer.h"
#include "io/file.h"
#include "pipeline/run_plan.h"

extern char **environ;

static const char *USAGE =
    "Runs the pipeline's stages in order, as the configuration selects them:\n"
    "    diff_preprocess -> the methods (pipeline.methods) -> diff_agent -> diff_report\n"
    "pipeline.mode: full (all), preprocessing, diffing (methods, report), evaluation (agent, report),\n"
    "no_evaluation (preprocess, methods, report); preprocessing runs when a chosen method reads activation\n"
    "stores. diffing/method=NAME runs that method alone. A stage whose complete results for these inputs exist\n"
    "is skipped (each stage's --check says so without loading a model). Settings of one stage go in\n"
    "pipeline.stage_args.<executable> (a list of key=value); the overrides given here go to every stage.\n"
    "pipeline.ranks=N (N > 1) starts the stages that run on ranks with `mpirun -n N pipeline.mpirun_args...`\n"
    "(infrastructure.launcher=srun: `srun -n N`, inside a SLURM allocation).\n"
    "The stage executables are those beside this diffkit, or in $DIFFKIT_BIN.\n"
    "  --dry-run   print the plan: which stages run, which are skipped or missing, and why; run nothing\n"
    "Exit: 0 all selected stages done or skipped; a failed stage's code; 1 when a stage is not built; 2 config.\n"
    "Example: diffkit run model=demo organism=demo_glacier_honey pipeline.mode=no_evaluation";

/* ---- child processes ------------------------------------------------------------------------------------ */

static char *bin_dir(void) {
    const char *env = getenv("DIFFKIT_BIN");
    return env && *env ? dk_strdup(env) : dk_exe_dir();
}

/* argv as a shell command a person can paste: arguments quoted when they hold anything but safe characters. */
static char *command_text(char *const *argv) {
    dk_strbuf b = {0};
    for (int i = 0; argv[i]; i++) {
        const char *a = argv[i];
        bool plain = *a != 0;
        for (const char *c = a; *c; c++)
            plain &= (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                     strchr("-_./=:,@+%", *c) != NULL;
        if (i) dk_strbuf_append(&b, " ");
        if (plain) {
            dk_strbuf_append(&b, a);
            continue;
        }
        dk_strbuf_append(&b, "'");
        for (const char *c = a; *c; c++) {
            if (*c == '\'') dk_strbuf_append(&b, "'\\''");
            else dk_strbuf_printf(&b, "%c", *c);
        }
        dk_strbuf_append(&b, "'");
    }
    return b.data ? b.data : dk_strdup("");
}

/* Runs argv to the end. out_fd / err_fd >= 0 take the child's stdout / stderr (else inherited). Returns the exit
 * code, 128 + signal when killed, or -1 when it could not start (errno-style message in why). *cpu_s (may be
 * NULL): the CPU seconds (user + system) the child and its own children used. */
static int run_child(char *const *argv, int out_fd, int err_fd, char **envp, double *cpu_s, char *why, size_t cap) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_fd >= 0) posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
    fflush(stdout);
    fflush(stderr);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(why, cap, "cannot start %s: %s", argv[0], strerror(rc));
        return -1;
    }
    int status = 0;
    struct rusage ru = {0};
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            snprintf(why, cap, "waiting for %s: %s", argv[0], strerror(errno));
            return -1;
        }
    if (cpu_s)
        *cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
                 1e-6 * (double)ru.ru_stime.tv_usec;
    if (WIFSIGNALED(status)) {
        snprintf(why, cap, "killed by signal %d", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

/* The environment of the checks: this one, plus OMPI_MCA_ess_singleton_isolated=1 (unless set): a check is one
 * process that spawns nothing, and Open MPI then starts it without its runtime daemon (0.3 s instead of 1 s). */
static char **check_environment(void) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = dk_calloc(n + 2, sizeof *env);
    memcpy(env, environ, n * sizeof *env);
    if (!getenv("OMPI_MCA_ess_singleton_isolated")) env[n] = "OMPI_MCA_ess_singleton_isolated=1";
    return env;
}

/* Runs argv with stdout and stderr captured into malloc'ed texts, in the checks' environment. */
static int run_captured(char *const *argv, char **out, char **errs, char *why, size_t cap) {
    FILE *o = tmpfile(), *e = tmpfile();
    CHECK(o && e, "cannot create a temporary file for a stage's check output: %s", strerror(errno));
    char **env = check_environment();
    int code = run_child(argv, fileno(o), fileno(e), env, NULL, why, cap);
    free(env);
    FILE *files[2] = {o, e};
    char **texts[2] = {out, errs};
    for (int i = 0; i < 2; i++) {
        long size = (fseek(files[i], 0, SEEK_END), ftell(files[i]));
        rewind(files[i]);
        *texts[i] = dk_calloc((size_t)(size > 0 ? size : 0) + 1, 1);
        if (size > 0 && fread(*texts[i], 1, (size_t)size, files[i]) != (size_t)size) (*texts[i])[0] = 0;
        fclose(files[i]);
    }
    return code;
}

static void trim_end(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = 0;
}

/* ---- one stage ----------------------------------------------------------------------------------------------- */

typedef enum { ST_NOT_BUILT, ST_SKIPPED, ST_RAN, ST_WOULD_RUN, ST_FAILED } stage_status;

typedef struct run_ctx {
    const dk_run_plan *plan;
    const char *bin;
    const char *config_dir;
    const char **overrides;    /* (n_overrides) the user's, passed to every stage */
    size_t n_overrides;
} run_ctx;

/* The stage's argv: [mpirun -n N mpirun_args... | srun -n N] BIN/job [--check] --config-dir DIR stage_args...
 * overrides... */
static char **stage_argv(const run_ctx *c, const dk_stage *s, bool check) {
    const dk_run_plan *p = c->plan;
    const bool mpi = s->mpi && p->ranks > 1 && !check;
    size_t n = 0, cap = 8 + p->n_mpirun_args + s->n_args + c->n_overrides;
    char **argv = dk_calloc(cap, sizeof *argv);
    if (mpi) { /* srun: inside an allocation, which says the rest */
        argv[n++] = dk_strdup(p->launcher);
        argv[n++] = dk_strdup("-n");
        argv[n++] = dk_sprintf("%lld", (long long)p->ranks);
        for (size_t i = 0; strcmp(p->launcher, "mpirun") == 0 && i < p->n_mpirun_args; i++)
            argv[n++] = dk_strdup(p->mpirun_args[i]);
    }
    argv[n++] = dk_sprintf("%s/%s", c->bin, s->job);
    if (check) argv[n++] = dk_strdup("--check");
    argv[n++] = dk_strdup("--config-dir");
    argv[n++] = dk_strdup(c->config_dir);
    for (size_t i = 0; i < s->n_args; i++) argv[n++] = dk_strdup(s->args[i]);
    for (size_t i = 0; i < c->n_overrides; i++) argv[n++] = dk_strdup(c->overrides[i]);
    argv[n] = NULL;
    return argv;
}

static void free_argv(char **argv) {
    for (int i = 0; argv[i]; i++) free(argv[i]);
    free(argv);
}

/* Whether the stage's executable offers --check. diff_preprocess and the method jobs do; for the others (agent,
 * report) its --help says. A stage without it decides for itself whether its results are reusable: it always runs. */
static bool offers_check(const dk_stage *s, const char *exe) {
    if (s->kind == DK_STAGE_PREPROCESS || s->kind == DK_STAGE_METHOD) return true;
    char *argv[] = {(char *)exe, "--help", NULL}, *out = NULL, *errs = NULL, why[256];
    int code = run_captured(argv, &out, &errs, why, sizeof why);
    bool yes = code == 0 && strstr(out, "--check") != NULL;
    free(out);
    free(errs);
    return yes;
}

static bool is_executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Asks the stage whether complete results for its inputs exist (`STAGE --check`, see the file comment) and prints
 * the verdict. *skip: they do. Returns 0, or the exit code that stops the chain (its check failed). earlier_runs
 * (--dry-run): a stage above would run first, so a method that reads stores may not find them yet. */
static int check_stage(const run_ctx *c, const dk_stage *s, const char *exe, const char *label, bool dry_run,
                       bool earlier_runs, bool *skip) {
    *skip = false;
    if (!offers_check(s, exe)) {
        printf("%s: %s: %s offers no --check (it decides itself what to reuse)\n", label,
               dry_run ? "would run" : "runs", s->job);
        return 0;
    }
    char **cargv = stage_argv(c, s, true), *out = NULL, *errs = NULL, why[512] = "";
    const int code = run_captured(cargv, &out, &errs, why, sizeof why);
    trim_end(out);
    trim_end(errs);
    const char *verdict = strrchr(out, '\n') ? strrchr(out, '\n') + 1 : out;
    int rc = 0;
    if (code == DK_EXIT_OK) {
        *skip = true;
        printf("%s: skipped: %s\n", label, verdict);
    } else if (code == DK_EXIT_MUST_RUN) {
        printf("%s: %s: %s\n", label, dry_run ? "would run" : "runs", verdict);
    } else if (dry_run && earlier_runs && s->kind == DK_STAGE_METHOD && s->reads_stores) {
        const char *msg = strstr(errs, "error: ") ? strstr(errs, "error: ") + 7 : errs;
        printf("%s: would run after the stages above (its check cannot tell before they have run: %s)\n", label, msg);
    } else {
        char *cmd = command_text(cargv);
        if (out[0]) printf("%s\n", out);
        if (errs[0]) fprintf(stderr, "%s\n", errs);
        if (code < 0)
            fprintf(stderr, "diffkit run: stage %s: its check could not run (%s): %s\n", s->name, why, cmd);
        else
            fprintf(stderr, "diffkit run: stage %s: its check failed (exit %d): %s\n", s->name, code, cmd);
        free(cmd);
        rc = code > 0 ? code : DK_EXIT_RUNTIME;
    }
    free(out);
    free(errs);
    free_argv(cargv);
    return rc;
}

/* Runs the stage, its output streamed. Returns 0, or its exit code (named with the command that reruns it). */
static int run_stage(const run_ctx *c, const dk_stage *s, const char *label, double *cpu_s) {
    char **argv = stage_argv(c, s, false);
    char *cmd = command_text(argv), why[512] = "";
    printf("== %s: %s\n", label, cmd);
    const double t0 = dk_time_now();
    const int code = run_child(argv, -1, -1, NULL, cpu_s, why, sizeof why);
    if (code != 0) {
        char how[600];
        if (code < 0 || why[0]) /* could not start, or killed by a signal */
            snprintf(how, sizeof how, "%s", why);
        else if (code > 128)
            snprintf(how, sizeof how, "exit %d: a process was killed by signal %d", code, code - 128);
        else
            snprintf(how, sizeof how, "exit %d", code);
        fprintf(stderr, "diffkit run: stage %s failed (%s) after %.1f s. Rerun it alone with:\n    %s\n"
                "or rerun diffkit run with the same arguments: the finished stages are skipped.\n", s->name, how,
                dk_time_now() - t0, cmd);
    }
    free(cmd);
    free_argv(argv);
    return code == 0 ? 0 : code > 0 ? code : DK_EXIT_RUNTIME;
}

/* ---- the command --------------------------------------------------------------------------------------------- */

int cmd_run(int argc, char **argv) {
    const bool dry_run = dk_job_take_flag(&argc, argv, "--dry-run");
    dk_cfg *cfg = dk_job_config("diffkit run", USAGE, argc, argv); /* --help, --print-config, config errors: exit */
    dk_job_args args;
    dk_err err = {0};
    if (dk_job_args_parse(argc, argv, &args, &err) != 0) dk_die(&err);
    dk_run_plan plan;
    if (dk_run_plan_make(cfg, &plan, &err) != 0) dk_die(&err);
    char *bin = bin_dir();
    run_ctx c = {.plan = &plan, .bin = bin, .config_dir = cfg->config_dir, .overrides = args.overrides,
                 .n_overrides = args.n_overrides};
    const size_t n = plan.n_stages;
    printf("diffkit run: pipeline.mode=%s, %zu stage(s); executables in %s", plan.mode, n, bin);
    if (plan.ranks > 1) printf("; stages that run on ranks: %s -n %lld", plan.launcher, (long long)plan.ranks);
    printf("\n");
    if (plan.why_no_preprocess) printf("  preprocess: not needed (%s)\n", plan.why_no_preprocess);
    if (plan.ranks > 1 && strcmp(plan.launcher, "mpirun") == 0 && geteuid() == 0 && !getenv("OMPI_ALLOW_RUN_AS_ROOT")) {
        /* Open MPI refuses to start as root unless told; containers often run as root */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        printf("  running as root: OMPI_ALLOW_RUN_AS_ROOT=1 set for mpirun\n");
    }

    stage_status *status = dk_calloc(n ? n : 1, sizeof *status);
    double *seconds = dk_calloc(n ? n : 1, sizeof *seconds), *cpu = dk_calloc(n ? n : 1, sizeof *cpu);
    int exit_code = 0, not_built = 0;
    bool earlier_runs = false; /* --dry-run: a stage before this one would run (its outputs may feed this one) */
    const double t_all = dk_time_now();
    for (size_t i = 0; i < n && exit_code == 0; i++) {
        const dk_stage *s = &plan.stages[i];
        char *exe = dk_sprintf("%s/%s", bin, s->job);
        char label[160];
        snprintf(label, sizeof label, "[%zu/%zu] %s (%s)", i + 1, n, s->name, s->job);
        if (!is_executable(exe)) {
            printf("%s: missing: %s is not built%s\n", label, exe,
                   s->kind == DK_STAGE_AGENT || s->kind == DK_STAGE_REPORT ? " (this checkout has no such job yet)"
                                                                          : " (make build)");
            status[i] = ST_NOT_BUILT;
            not_built++;
            free(exe);
            continue;
        }
        const double t0 = dk_time_now();
        bool skip = false;
        exit_code = check_stage(&c, s, exe, label, dry_run, earlier_runs, &skip);
        free(exe);
        if (exit_code != 0) {
            status[i] = ST_FAILED;
            break;
        }
        if (skip) {
            status[i] = ST_SKIPPED;
        } else if (dry_run) {
            status[i] = ST_WOULD_RUN;
            earlier_runs = true;
        } else {
            exit_code = run_stage(&c, s, label, &cpu[i]);
            status[i] = exit_code == 0 ? ST_RAN : ST_FAILED;
        }
        seconds[i] = dk_time_now() - t0;
    }
    if (!dry_run) {
        static const char *const NAMES[] = {"missing (not built)", "skipped", "ran", "would run", "FAILED"};
        printf("diffkit run: summary (%.1f s in all; a skipped stage's time is its check)\n", dk_time_now() - t_all);
        printf("  %-28s %-20s %9s %9s\n", "stage", "", "wall", "CPU");
        for (size_t i = 0; i < n; i++) {
            printf("  %-28s %-20s %7.1f s", plan.stages[i].name, NAMES[status[i]], seconds[i]);
            if (status[i] == ST_RAN) printf(" %7.1f s", cpu[i]);
            printf("\n");
            if (status[i] == ST_FAILED) break;
        }
    }
    if (exit_code == 0 && not_built > 0) {
        fprintf(stderr, "diffkit run: incomplete: %d selected stage(s) are not built (listed as missing above)\n",
                not_built);
        exit_code = DK_EXIT_RUNTIME;
    }
    free(status);
    free(seconds);
    free(cpu);
    free(bin);
    dk_run_plan_free(&plan);
    dk_job_args_free(&args);
    dk_cfg_free(cfg);
    return exit_code;
}
