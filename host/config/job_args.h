/* job_args.h — the command line every diffkit job shares:
 *     JOB [--config-dir DIR] [--print-config] [--help] [group=NAME ...] [key=value ...]
 * The configs folder is, in order: --config-dir, $DIFFKIT_CONFIG_DIR, ./configs when it holds config.yaml,
 * and the folder this build was configured with (DIFFKIT_DEFAULT_CONFIG_DIR). */
#ifndef DK_JOB_ARGS_H
#define DK_JOB_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef struct dk_job_args {
    const char *config_dir;     /* chosen as above */
    bool print_config;
    bool help;
    const char **overrides;     /* [n_overrides] pointers into argv */
    size_t n_overrides;
} dk_job_args;

/* Removes every `flag` (e.g. "--check") from argv, shifting the rest down; true when there was one. For the
 * options one job adds to the shared command line (before dk_job_config sees it). */
bool dk_job_take_flag(int *argc, char **argv, const char *flag);

/* 0, or -1 with err (code 2) for an unknown --option or a missing option value. Free with dk_job_args_free. */
int dk_job_args_parse(int argc, char **argv, dk_job_args *out, dk_err *err);
void dk_job_args_free(dk_job_args *args);
const char *dk_default_config_dir(void);

/* Everything a job's main() needs before it starts: parses argv, prints `usage` for --help (exit 0),
 * composes the configuration (on error: message, printed once under MPI, exit 2), prints it for --print-config (exit 0), and
 * logs the group choices. `usage` describes the job in a few lines. */
dk_cfg *dk_job_config(const char *job, const char *usage, int argc, char **argv);
/* The same for a job tied to one group choice, given before the user's arguments: a method job passes
 * "diffing/method=kl" (the caller checks that no later argument chose otherwise: dk_cfg_choice). */
dk_cfg *dk_job_config_for(const char *job, const char *usage, const char *group_choice, int argc, char **argv);

#endif
