/* diff_agent.c — the agent runner: for each method with an agent (diffing.evaluation.methods, or the one chosen
 * with diffing/method=NAME) an LLM agent reads the method's results, questions the base model and the organism
 * over HTTP and says what the finetuning was for; a grader scores each answer (host/agent/agent_eval.h).
 *
 * It links only the configuration, the results reader, the LLM client and the agent (no model code): the models
 * are asked through an OpenAI-compatible server, diffing.evaluation.models.base_url, or a `diffkit serve` it
 * starts on 127.0.0.1 for the evaluation. Without an agent LLM it writes the first messages the agent would be
 * sent and exits 0. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "agent/agent_eval.h"
#include "config/config.h"
#include "config/job_args.h"
#include "core/error.h"
#include "core/log.h"
#include "core/strutil.h"
#include "io/out_file.h"

static const char USAGE[] =
    "Runs the seed's agents on the results of diff_adl (ADL agent) and diff_mining (DiffMining agent): each run\n"
    "reads the method's results, asks the base model and the organism questions through an OpenAI-compatible\n"
    "server (a `diffkit serve` started here when diffing.evaluation.models.base_url is null) and ends with a\n"
    "description of the finetune, which the hypothesis grader scores 1-5 by the organism type's rubric.\n"
    "Settings: diffing.evaluation.* (configs/config.yaml). Outputs: <method results>/agent/<agent>_..._mi<budget>/\n"
    "run<i>/ and ${diffing.results_dir}/agent_summary.{md,json}. Without an agent LLM (agent.llm.base_url null or\n"
    "no key) it writes what the agent would be sent, <method results>/agent/<agent>_first_messages.json.";

/* A key=value argument that sets a method's key (diffing.method.*): it applies to the methods that have that key
 * (the methods' settings differ: ADL's agent.generate_steered is not diff_mining's); one that no evaluated method
 * has is an error, as a misspelt key is. */
static const char *method_key(const char *arg) {
    while (*arg == '+' || *arg == '~') arg++;
    return strncmp(arg, "diffing.method.", 15) == 0 ? arg : NULL;
}

/* cfg for `method` (NULL: none) with the overrides ov[0..n) (diffing/method=<method> first). */
static dk_cfg *compose(const char *config_dir, const char *method, const char *const *ov_in, size_t n_in, dk_err *err) {
    const char **ov = calloc(n_in + 1, sizeof *ov);
    size_t n = 0;
    char *method_arg = method ? dk_sprintf("diffing/method=%s", method) : NULL;
    if (method_arg) ov[n++] = method_arg;
    for (size_t i = 0; i < n_in; i++) ov[n++] = ov_in[i];
    dk_cfg_options opt = {.config_dir = config_dir, .overrides = ov, .n_overrides = n};
    dk_cfg *cfg = dk_cfg_compose(&opt, err);
    free(method_arg);
    free(ov);
    return cfg;
}

/* One method's configuration: the overrides that are not method keys, plus the method keys this method has. The
 * overrides kept are listed in *kept (for the serve child and the null control); used[i] marks method keys taken. */
static dk_cfg *compose_method(const dk_job_args *args, const char *method, bool *used, const char ***kept, size_t *n_kept,
                              dk_err *err) {
    const char **ov = calloc(args->n_overrides + 1, sizeof *ov);
    size_t n = 0;
    for (size_t i = 0; i < args->n_overrides; i++)
        if (!method_key(args->overrides[i]) && strncmp(args->overrides[i], "diffing/method=", 15) != 0)
            ov[n++] = args->overrides[i];
    dk_cfg *plain = compose(args->config_dir, method, ov, n, err);
    if (!plain) {
        free(ov);
        return NULL;
    }
    for (size_t i = 0; i < args->n_overrides; i++) {
        const char *key = method_key(args->overrides[i]);
        if (!key) continue;
        const char *eq = strchr(key, '=');
        char *path = eq ? dk_strndup(key, (size_t)(eq - key)) : dk_strdup(key);
        if (args->overrides[i][0] == '+' || dk_cfg_get(plain, path)) {
            ov[n++] = args->overrides[i];
            used[i] = true;
        }
        free(path);
    }
    dk_cfg_free(plain);
    dk_cfg *cfg = compose(args->config_dir, method, ov, n, err);
    *kept = ov;
    *n_kept = n;
    return cfg;
}

int main(int argc, char **argv) {
    dk_stdout_check_at_exit("diff_agent");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5 failures are reported by our messages */
    const bool check_mode = dk_job_take_flag(&argc, argv, "--check");
    dk_job_args args;
    dk_err err = {0};
    if (dk_job_args_parse(argc, argv, &args, &err) != 0) dk_die(&err);
    if (args.help) {
        printf("usage: diff_agent [--check] [--config-dir DIR] [--print-config] [group=NAME ...] [key=value ...]\n\n%s\n"
               "--check: exit 0 when every agent output these settings ask for is complete (nothing to do), 3 when\n"
               "diff_agent must run, with one line saying why (diffkit run asks before running the stage).\n", USAGE);
        return 0;
    }
    /* the methods: diffing/method=NAME on the command line, else diffing.evaluation.methods (read from the
     * configuration without a method) */
    const char *chosen = NULL;
    for (size_t i = 0; i < args.n_overrides; i++)
        if (strncmp(args.overrides[i], "diffing/method=", 15) == 0) chosen = args.overrides[i] + 15;
    const char **plain = calloc(args.n_overrides + 1, sizeof *plain);
    size_t n_plain = 0;
    for (size_t i = 0; i < args.n_overrides; i++)
        if (!method_key(args.overrides[i]) && strncmp(args.overrides[i], "diffing/method=", 15) != 0)
            plain[n_plain++] = args.overrides[i];
    dk_cfg *cfg = compose(args.config_dir, NULL, plain, n_plain, &err);
    free(plain);
    if (!cfg) dk_die(&err);
    const dk_cfg_node *list = dk_cfg_get(cfg, "diffing.evaluation.methods");
    const size_t n_methods = chosen ? 1 : (list && list->kind == DK_CFG_SEQ ? list->n : 0);
    if (n_methods == 0) {
        dk_err_set(&err, DK_EXIT_USAGE, "diffing.evaluation.methods is empty or not a list: give the methods whose agents "
                   "run, e.g. [activation_difference_lens, diff_mining], or diffing/method=NAME");
        dk_die(&err);
    }
    /* every method's configuration first: a bad setting stops diff_agent before any agent runs */
    bool *used = calloc(args.n_overrides + 1, sizeof *used);
    dk_cfg **mcfg = calloc(n_methods, sizeof *mcfg);
    const char ***kept = calloc(n_methods, sizeof *kept);
    size_t *n_kept = calloc(n_methods, sizeof *n_kept);
    for (size_t m = 0; m < n_methods; m++) {
        const char *method = chosen ? chosen : list->items[m]->text;
        if (!(mcfg[m] = compose_method(&args, method, used, &kept[m], &n_kept[m], &err))) {
            dk_err_prefix(&err, "%s%s: ", chosen ? "diffing/method=" : "diffing.evaluation.methods: ", method);
            dk_die(&err);
        }
    }
    for (size_t i = 0; i < args.n_overrides; i++)
        if (method_key(args.overrides[i]) && !used[i]) {
            dk_err_set(&err, DK_EXIT_USAGE, "argument '%s': none of the evaluated methods has this key (check its spelling "
                       "in configs/diffing/method/<method>.yaml, or write +KEY=VALUE to add one)", args.overrides[i]);
            dk_die(&err);
        }
    if (args.print_config) { /* the first method's configuration */
        char *yaml = dk_cfg_dump(mcfg[0]);
        fputs(yaml, stdout);
        free(yaml);
        return 0;
    }

    cJSON *rows = cJSON_CreateArray();
    int failed = 0, missing = 0, must_run = 0, exit_code = 0;
    dk_strbuf verdict = {0};
    for (size_t m = 0; m < n_methods; m++) {
        const char *method = chosen ? chosen : list->items[m]->text;
        dk_agent_eval_env env = {.config_dir = args.config_dir, .overrides = kept[m], .n_overrides = n_kept[m]};
        if (check_mode) {
            char why[1024];
            if (dk_agent_eval_check(mcfg[m], method, &env, why, sizeof why) != 0) must_run++;
            dk_strbuf_printf(&verdict, "%s%s: %s", m ? "; " : "", method, why);
            continue;
        }
        int rc = dk_agent_eval_method(mcfg[m], method, &env, rows, &err);
        if (rc == 1) missing++;
        if (rc < 0) {
            dk_log_error_once("diff_agent: %s: %s", method, err.msg);
            exit_code = err.code ? err.code : DK_EXIT_RUNTIME;
            failed++;
            break; /* a dead endpoint or a bad setting: the next method would meet it too */
        }
    }
    if (check_mode) {
        printf("%s\n", verdict.data ? verdict.data : "");
        exit_code = must_run ? DK_EXIT_MUST_RUN : DK_EXIT_OK;
    } else {
        dk_agent_eval_shutdown();
        if (cJSON_GetArraySize(rows) > 0 && dk_agent_eval_write_summary(cfg, rows, &err) != 0) {
            dk_log_error_once("diff_agent: %s", err.msg);
            if (!exit_code) exit_code = err.code;
        }
        if (!failed && missing == (int)n_methods) {
            dk_log_error_once("diff_agent: no method had results to give an agent (see above: run diff_adl / diff_mining first)");
            exit_code = DK_EXIT_USAGE;
        }
    }
    dk_strbuf_free(&verdict);
    cJSON_Delete(rows);
    for (size_t m = 0; m < n_methods; m++) {
        dk_cfg_free(mcfg[m]);
        free(kept[m]);
    }
    free(mcfg);
    free(kept);
    free(n_kept);
    free(used);
    dk_job_args_free(&args);
    dk_cfg_free(cfg);
    return exit_code;
}
