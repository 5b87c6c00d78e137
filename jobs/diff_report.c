/* diff_report.c — the static HTML report of one (model, organism): reads the methods' results under
 * ${diffing.results_dir} (results.h5 files, the JSON beside them, agent_summary.json) and writes
 * ${diffing.results_dir}/report/index.html, viewable offline (host/report/report.h).
 *
 * A light job: the configuration, the results reader and the tokenizer (to show token ids as text); no model
 * code, no activation store. The last two lines it prints are the headline and "report: <path>", which
 * `diffkit run` and `make demo` pass on. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "config/config.h"
#include "config/job_args.h"
#include "config/node.h"
#include "core/error.h"
#include "core/log.h"
#include "io/hf_cache.h"
#include "io/out_file.h"
#include "report/report.h"
#include "tokenizer/tokenizer.h"

static const char USAGE[] =
    "Writes the HTML report of one model and organism from the methods' results: ADL tokens, norms and steering;\n"
    "KL statistics, histograms and examples; activation analysis; PCA; SAE and crosscoder training, latents and\n"
    "examples; diff mining tokens; amplification generations; the agent's descriptions, grades and transcripts.\n"
    "Methods without results are listed with the command that makes them; partial or corrupt results are named\n"
    "and not shown. Output: ${diffing.results_dir}/report/index.html (open it in a browser; no network needed).\n"
    "Example: diff_report model=demo organism=demo_glacier_honey dataset=demo\n"
    "--check: exit 0 when the report is newer than every result (nothing to do), 3 when it must be written, with\n"
    "one line saying why (diffkit run asks before running the stage).";

/* The organism must have a finetuned model for this base model and variant, or there is nothing to report on. */
static int check_organism(const dk_cfg *cfg, const char *model, const char *organism, const char *variant, dk_err *err) {
    const dk_cfg_node *fm = dk_cfg_get(cfg, "organism.finetuned_models");
    if (!organism || strcmp(organism, "None") == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "no organism chosen: give organism=NAME (configs/organism/NAME.yaml)");
    const dk_cfg_node *per_model = NULL;
    for (size_t i = 0; fm && fm->kind == DK_CFG_MAP && i < fm->n; i++)
        if (strcmp(fm->keys[i], model) == 0) per_model = fm->items[i];
    if (!per_model) {
        char list[512] = "";
        for (size_t i = 0; fm && fm->kind == DK_CFG_MAP && i < fm->n; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", fm->keys[i]);
        return dk_err_set(err, DK_EXIT_USAGE, "organism %s has no finetuned model for model %s "
                          "(organism.finetuned_models lists: %s): choose one of those models, or another organism",
                          organism, model, list[0] ? list : "none");
    }
    bool has_variant = false;
    for (size_t i = 0; per_model->kind == DK_CFG_MAP && i < per_model->n; i++)
        has_variant = has_variant || strcmp(per_model->keys[i], variant) == 0;
    if (!has_variant)
        return dk_err_set(err, DK_EXIT_USAGE, "organism %s has no variant %s for model %s "
                          "(organism.finetuned_models.%s): set organism_variant to one it lists", organism, variant,
                          model, model);
    return 0;
}

/* --check: the newest file under the results folder, the report's own folder left out */
static double newest_input;
static const char *report_dir_of_walk;
static int note_mtime(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type == FTW_D && strcmp(path, report_dir_of_walk) == 0) return FTW_SKIP_SUBTREE;
    if (type == FTW_F) {
        const double t = (double)st->st_mtim.tv_sec + 1e-9 * (double)st->st_mtim.tv_nsec;
        if (t > newest_input) newest_input = t;
    }
    return FTW_CONTINUE;
}

/* Exit 0 when report/index.html is newer than every file under the results folder (nothing changed since it was
 * written), 3 when the report must be written; one line saying why (diffkit run's reuse check). */
static int check_report(const char *results_dir) {
    char *report_dir = dk_sprintf("%s/report", results_dir), *index = dk_sprintf("%s/index.html", report_dir);
    struct stat st;
    int code = DK_EXIT_MUST_RUN;
    if (stat(index, &st) != 0) {
        printf("must run (no %s yet)\n", index);
    } else {
        newest_input = 0;
        report_dir_of_walk = report_dir;
        nftw(results_dir, note_mtime, 16, FTW_PHYS | FTW_ACTIONRETVAL);
        const double t = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
        if (t >= newest_input) {
            printf("complete (%s is newer than every result under %s)\n", index, results_dir);
            code = DK_EXIT_OK;
        } else {
            printf("must run (results under %s changed after %s was written)\n", results_dir, index);
        }
    }
    free(index);
    free(report_dir);
    return code;
}

int main(int argc, char **argv) {
    dk_stdout_check_at_exit("diff_report");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5 failures are reported by our messages */
    const bool check_mode = dk_job_take_flag(&argc, argv, "--check");
    dk_cfg *cfg = dk_job_config("diff_report", USAGE, argc, argv); /* --help, --print-config, errors: exits */
    dk_err err = {0};
    const char *model = dk_cfg_str(cfg, "model.name");
    const char *organism = dk_cfg_str_or_null(cfg, "organism.name");
    const char *variant = dk_cfg_str_or_null(cfg, "organism_variant");
    if (!variant) variant = "default";
    if (check_organism(cfg, model, organism, variant, &err) != 0) dk_die(&err);
    const char *results_dir = dk_cfg_str(cfg, "diffing.results_dir");
    if (check_mode) {
        const int code = check_report(results_dir);
        dk_cfg_free(cfg);
        return code;
    }
    char *adl_dir = strcmp(variant, "default") != 0 ? dk_sprintf("%s_%s", results_dir, variant) : NULL;

    /* the tokenizer, to show token ids as text (optional: without it ids are shown) */
    dk_tokenizer *tok = NULL;
    const char *tok_id = dk_cfg_str_or_null(cfg, "model.tokenizer_id");
    const char *model_id = dk_cfg_str_or_null(cfg, "model.model_id");
    dk_hf_location loc = {0};
    dk_err tok_err = {0};
    char tok_why[sizeof tok_err.msg] = "";
    if (dk_hf_resolve(tok_id ? tok_id : model_id, dk_cfg_str_or_null(cfg, "model.revision"), "tokenizer.json", &loc,
                      &tok_err) == 0) {
        char *path = dk_sprintf("%s/tokenizer.json", loc.path);
        tok = dk_tokenizer_load(path, &tok_err);
        free(path);
        dk_hf_location_free(&loc);
    }
    if (!tok) {
        memcpy(tok_why, tok_err.msg, sizeof tok_why);
        LOG_WARN("diff_report: no tokenizer (%s): per-token views show token ids", tok_why);
    }

    char *suffix = NULL;
    const char *dataset = dk_cfg_choice(cfg, "dataset");
    if (dataset) suffix = dk_sprintf("dataset=%s", dataset);
    rp_options o = {.results_dir = results_dir, .adl_results_dir = adl_dir, .model = model, .organism = organism,
                    .variant = variant, .organism_description = dk_cfg_str_or_null(cfg, "organism.description"),
                    .command_suffix = suffix, .tok = tok, .tok_why = tok_why, .max_examples = 5};
    rp_outcome out;
    int rc = rp_write_report(&o, &out, &err);
    if (rc != 0) {
        dk_err_prefix(&err, "diff_report: ");
        dk_die(&err);
    }
    LOG_INFO("diff_report: %d method section(s) shown, %d missing, %d with unreadable or incomplete results",
             out.sections_shown, out.sections_missing, out.sections_bad);
    char *abs = realpath(out.path, NULL); /* the path a browser opens, wherever the caller is */
    printf("headline: %s\nreport: %s\n", out.headline, abs ? abs : out.path);
    free(abs);
    rp_outcome_free(&out);
    dk_tokenizer_free(tok);
    free(suffix), free(adl_dir);
    dk_cfg_free(cfg);
    return 0;
}
