/* job_args.c — see job_args.h. */
#include "job_args.h"

#include "core/log.h"
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DIFFKIT_DEFAULT_CONFIG_DIR
#define DIFFKIT_DEFAULT_CONFIG_DIR "configs"
#endif

const char *dk_default_config_dir(void) {
    const char *env = getenv("DIFFKIT_CONFIG_DIR");
    if (env && *env) return env;
    if (dk_is_file("configs/config.yaml")) return "configs";
    return DIFFKIT_DEFAULT_CONFIG_DIR;
}

bool dk_job_take_flag(int *argc, char **argv, const char *flag) {
    bool found = false;
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], flag) == 0) found = true;
        else argv[n++] = argv[i];
    }
    for (int i = n; i < *argc; i++) argv[i] = NULL;
    *argc = n;
    return found;
}

int dk_job_args_parse(int argc, char **argv, dk_job_args *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->config_dir = dk_default_config_dir();
    out->overrides = dk_calloc((size_t)argc + 1, sizeof *out->overrides);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config-dir") == 0) {
            if (i + 1 >= argc) {
                dk_job_args_free(out);
                return dk_err_set(err, DK_EXIT_USAGE, "--config-dir needs a folder: --config-dir path/to/configs");
            }
            out->config_dir = argv[++i];
        } else if (strncmp(a, "--config-dir=", 13) == 0) {
            out->config_dir = a + 13;
        } else if (strcmp(a, "--print-config") == 0) {
            out->print_config = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            out->help = true;
        } else if (a[0] == '-' && a[1] == '-') {
            dk_job_args_free(out);
            return dk_err_set(err, DK_EXIT_USAGE,
                              "unknown option '%s'; jobs take --config-dir DIR, --print-config, --help and "
                              "key=value overrides", a);
        } else {
            out->overrides[out->n_overrides++] = a;
        }
    }
    return 0;
}

void dk_job_args_free(dk_job_args *args) {
    free(args->overrides);
    args->overrides = NULL;
    args->n_overrides = 0;
}

dk_cfg *dk_job_config(const char *job, const char *usage, int argc, char **argv) {
    return dk_job_config_for(job, usage, NULL, argc, argv);
}

dk_cfg *dk_job_config_for(const char *job, const char *usage, const char *group_choice, int argc, char **argv) {
    dk_job_args args;
    dk_err err = {0};
    if (dk_job_args_parse(argc, argv, &args, &err) != 0) dk_die_identical(&err);
    if (group_choice) { /* before the user's arguments, so theirs come later (and a contrary choice is seen) */
        memmove(args.overrides + 1, args.overrides, args.n_overrides * sizeof *args.overrides);
        args.overrides[0] = group_choice;
        args.n_overrides++;
    }
    if (args.help) {
        printf("usage: %s [--config-dir DIR] [--print-config] [group=NAME ...] [key=value ...]\n\n%s\n", job, usage);
        exit(0);
    }
    dk_cfg_options opt = {.config_dir = args.config_dir, .overrides = args.overrides, .n_overrides = args.n_overrides};
    dk_cfg *cfg = dk_cfg_compose(&opt, &err);
    dk_job_args_free(&args);
    if (!cfg) dk_die_identical(&err);
    if (args.print_config) {
        char *yaml = dk_cfg_dump(cfg);
        fputs(yaml, stdout);
        free(yaml);
        dk_cfg_free(cfg);
        exit(0);
    }
    for (size_t i = 0; i < cfg->n_groups; i++)
        LOG_DEBUG("%s: %s=%s", job, cfg->groups[i], cfg->choices[i] ? cfg->choices[i] : "null");
    return cfg;
}
