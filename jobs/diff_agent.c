/* diff_agent.c — the agent runner: for each method with an agent (diffing.evaluation.methods, or the one chosen
 * with diffing/method=NAME) an LLM agent reads the method's results, questions the base model and the organism
 * over HTTP and says what the finetuning was for; a grader scores each answer (host/agent/agent_eval.h).
 *
 * It links only the configuration, the results reader, the LLM client and the agent (no model code): the models
 * are asked through an OpenAI-compatible server, diffing.evaluation.models.base_url, or a `diffkit serve` it
 * starts on 127.0.0.1 for the evaluation. Without an agent LLM it writes the first messages the agent would be
 * sent and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "agent/agent_eval.h"
#include "config/config.h"
#include "config/job_args.h"
#include "core/error.h"
#include "core/log.h"
#include "io/out_file.h"

static const char USAGE[] =
    "Runs the seed's agents on the results of diff_adl (ADL agent) and diff_mining (DiffMining agent): each run\n"
    "reads the method's results, asks the base model and the organism questions through an OpenAI-compatible\n"
    "server (a `diffkit serve` started here when diffing.evaluation.models.base_url is null) and ends with a\n"
    "description of the finetune, which the hypothesis grader scores 1-5 by the organism type's rubric.\n"
    "Settings: diffing.evaluation.* (configs/config.yaml). Outputs: <method results>/agent/<agent>_..._mi<budget>/\n"
    "run<i>/ and ${diffing.results_dir}/agent_summary.{md,json}. Without an agent LLM (agent.llm.base_url null or\n"
    "no key) it writes what the agent would be sent, <method results>/agent/<agent>_first_messages.json.";

/* A key=value argument that sets a method's key: it applies to the per-method configurations only (the one
 * composed without a method has no diffing.method). */
static bool is_method_key(const char *arg) {
    while (*arg == '+' || *arg == '~') arg++;
    return strncmp(arg, "diffing.method.", 15) == 0;
}

/* cfg with the user's overrides: for `method` (diffing/method=<method> first), or without a method (then the
 * method keys are left out). */
static dk_cfg *compose(const dk_job_args *args, const char *method, dk_err *err) {
    const char **ov = calloc(args->n_overrides + 1, sizeof *ov);
    size_t n = 0;
    char *method_arg = method ? dk_sprintf("diffing/method=%s", method) : NULL;
    if (method_arg) ov[n++] = method_arg;
    for (size_t i = 0; i < args->n_overrides; i++)
        if (method || !is_method_key(args->overrides[i])) ov[n++] = args->overrides[i];
    dk_cfg_options opt = {.config_dir = args->config_dir, .overrides = ov, .n_overrides = n};
    dk_cfg *cfg = dk_cfg_compose(&opt, err);
    free(method_arg);
    free(ov);
    return cfg;
}

int main(int argc, char **argv) {
    dk_stdout_check_at_exit("diff_agent");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5 failures are reported by our messages */
    dk_job_args args;
    dk_err err = {0};
    if (dk_job_args_parse(argc, argv, &args, &err) != 0) dk_die(&err);
    if (args.help) {
        printf("usage: diff_agent [--config-dir DIR] [--print-config] [group=NAME ...] [key=value ...]\n\n%s\n", USAGE);
        return 0;
    }
    /* the configuration without a method (unless diffing/method=NAME chose one): the evaluation's settings */
    bool chose_method = false;
    for (size_t i = 0; i < args.n_overrides; i++) chose_method |= strncmp(args.overrides[i], "diffing/method=", 15) == 0;
    dk_cfg_options all = {.config_dir = args.config_dir, .overrides = args.overrides, .n_overrides = args.n_overrides};
    dk_cfg *cfg = chose_method ? dk_cfg_compose(&all, &err) : compose(&args, NULL, &err);
    if (!cfg) dk_die(&err);
    if (args.print_config) {
        char *yaml = dk_cfg_dump(cfg);
        fputs(yaml, stdout);
        free(yaml);
        dk_cfg_free(cfg);
        dk_job_args_free(&args);
        return 0;
    }

    /* the methods: the one chosen on the command line, else diffing.evaluation.methods */
    const char *chosen = dk_cfg_choice(cfg, "diffing/method");
    const dk_cfg_node *list = dk_cfg_get(cfg, "diffing.evaluation.methods");
    size_t n_methods = chosen ? 1 : (list && list->kind == DK_CFG_SEQ ? list->n : 0);
    if (n_methods == 0) {
        dk_err_set(&err, DK_EXIT_USAGE, "diffing.evaluation.methods is empty or not a list: give the methods whose agents "
                   "run, e.g. [activation_difference_lens, diff_mining], or diffing/method=NAME");
        dk_die(&err);
    }
    dk_agent_eval_env env = {.config_dir = args.config_dir, .n_overrides = 0};
    /* the overrides without the method choice (the evaluation adds its own) */
    const char **overrides = calloc(args.n_overrides + 1, sizeof *overrides);
    for (size_t i = 0; i < args.n_overrides; i++)
        if (strncmp(args.overrides[i], "diffing/method=", 15) != 0) overrides[env.n_overrides++] = args.overrides[i];
    env.overrides = overrides;

    cJSON *rows = cJSON_CreateArray();
    int failed = 0, missing = 0, exit_code = 0;
    for (size_t m = 0; m < n_methods; m++) {
        const char *method = chosen ? chosen : list->items[m]->text;
        dk_cfg *mcfg = chosen ? NULL : compose(&args, method, &err);
        if (!chosen && !mcfg) {
            dk_err_prefix(&err, "diffing.evaluation.methods: %s: ", method);
            dk_log_error_once("%s", err.msg);
            exit_code = err.code;
            failed++;
            break;
        }
        int rc = dk_agent_eval_method(mcfg ? mcfg : cfg, method, &env, rows, &err);
        if (rc == 1) missing++;
        if (rc < 0) {
            dk_log_error_once("diff_agent: %s: %s", method, err.msg);
            exit_code = err.code ? err.code : DK_EXIT_RUNTIME;
            failed++;
        }
        dk_cfg_free(mcfg);
        if (rc < 0) break; /* a dead endpoint or a bad setting: the next method would meet it too */
    }
    dk_agent_eval_shutdown();
    if (cJSON_GetArraySize(rows) > 0 && dk_agent_eval_write_summary(cfg, rows, &err) != 0) {
        dk_log_error_once("diff_agent: %s", err.msg);
        if (!exit_code) exit_code = err.code;
    }
    if (!failed && missing == (int)n_methods) {
        dk_log_error_once("diff_agent: no method had results to give an agent (see above: run diff_adl / diff_mining first)");
        exit_code = DK_EXIT_USAGE;
    }
    cJSON_Delete(rows);
    free(overrides);
    dk_job_args_free(&args);
    dk_cfg_free(cfg);
    return exit_code;
}
