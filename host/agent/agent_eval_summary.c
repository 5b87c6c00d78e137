/* agent_eval_summary.c — the summary table of an evaluation: one row per (organism, method, agent, budget) with
 * the mean grade, and the null control's false-positive rate beside it.
 *
 * Why it exists: the evaluation's answer to "does this method help an agent find the finetune, and does it
 * invent one where there is none" is this table; researchers read the Markdown, the report (#16) reads the JSON. */
#include "agent/agent_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/pyjson.h"
#include "core/log.h"
#include "core/strutil.h"
#include "io/file.h"
#include "io/out_file.h"

static const char *str_of(const cJSON *row, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "3.40" or "-" for a number that is absent or null; percentages with pct. */
static void num_text(const cJSON *v, bool pct, char *buf, size_t cap) {
    if (!cJSON_IsNumber(v)) snprintf(buf, cap, "-");
    else if (pct) snprintf(buf, cap, "%.0f%%", 100 * v->valuedouble);
    else snprintf(buf, cap, "%.2f", v->valuedouble);
}

static char *markdown(const cJSON *rows) {
    dk_strbuf md = {0};
    dk_strbuf_append(&md, "| organism | method | agent | budget | runs | mean grade (1-5) | grader | null control: false positives |\n"
                          "|---|---|---|---|---|---|---|---|\n");
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *organism = str_of(row, "organism"), *method = str_of(row, "method");
        if (str_of(row, "missing")) {
            dk_strbuf_printf(&md, "| %s | %s | - | - | - | missing: %s | - | - |\n", organism, method, str_of(row, "missing"));
            continue;
        }
        if (str_of(row, "overview_only")) {
            dk_strbuf_printf(&md, "| %s | %s | %s | - | - | no agent LLM configured: overview in agent/%s | - | - |\n", organism,
                             method, str_of(row, "agent"), str_of(row, "overview_only"));
            continue;
        }
        char mean[32], fp[96] = "-", budget[32];
        num_text(cJSON_GetObjectItemCaseSensitive(row, "mean_grade"), false, mean, sizeof mean);
        snprintf(budget, sizeof budget, "%d", cJSON_GetObjectItemCaseSensitive(row, "budget")->valueint);
        const cJSON *own_fp = cJSON_GetObjectItemCaseSensitive(row, "false_positive_rate");
        const cJSON *nc = cJSON_GetObjectItemCaseSensitive(row, "null_control");
        if (own_fp) { /* a row of the null pair itself */
            char p[32];
            num_text(own_fp, true, p, sizeof p);
            snprintf(fp, sizeof fp, "%s (this is the null pair)", p);
        } else if (nc) {
            if (str_of(nc, "missing")) snprintf(fp, sizeof fp, "%s: not run", str_of(nc, "organism"));
            else {
                char p[32];
                num_text(cJSON_GetObjectItemCaseSensitive(nc, "false_positive_rate"), true, p, sizeof p);
                snprintf(fp, sizeof fp, "%s on %s", p, str_of(nc, "organism"));
            }
        }
        const cJSON *graded = cJSON_GetObjectItemCaseSensitive(row, "runs_graded"),
                    *finished = cJSON_GetObjectItemCaseSensitive(row, "runs_finished"),
                    *planned = cJSON_GetObjectItemCaseSensitive(row, "runs_planned");
        dk_strbuf_printf(&md, "| %s | %s | %s | %s | %d/%d (%d graded) | %s | %s | %s |\n", organism, method, str_of(row, "agent"),
                         budget, finished ? finished->valueint : 0, planned ? planned->valueint : 0,
                         graded ? graded->valueint : 0, mean, str_of(row, "grader"), fp);
    }
    return dk_strbuf_take(&md);
}

int dk_agent_eval_write_summary(const dk_cfg *cfg, const cJSON *rows, dk_err *err) {
    const char *dir = dk_cfg_str(cfg, "diffing.results_dir");
    if (dk_mkdirs(dir, err) != 0) return -1;
    char *json_path = dk_path_join(dir, "agent_summary.json"), *md_path = dk_path_join(dir, "agent_summary.md");
    /* the rows of (organism, method) pairs this run did not evaluate stay (diff_agent diffing/method=X updates X's) */
    cJSON *all = cJSON_Duplicate(rows, 1);
    size_t n_old = 0;
    dk_err rerr = {0};
    char *old_text = dk_is_file(json_path) ? dk_read_file(json_path, &n_old, &rerr) : NULL;
    cJSON *old = old_text ? cJSON_ParseWithLength(old_text, n_old) : NULL;
    const cJSON *previous = cJSON_IsArray(old) ? old : NULL, *prev;
    cJSON_ArrayForEach(prev, previous) {
        const char *org = str_of(prev, "organism"), *method = str_of(prev, "method");
        bool evaluated = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, rows) evaluated |= org && method && str_of(r, "organism") && str_of(r, "method") &&
                                               strcmp(org, str_of(r, "organism")) == 0 &&
                                               strcmp(method, str_of(r, "method")) == 0;
        if (!evaluated && org && method) cJSON_AddItemToArray(all, cJSON_Duplicate(prev, 1));
    }
    cJSON_Delete(old);
    free(old_text);
    char *json = dk_pyjson_dumps(all, DK_PYJSON_INDENT2), *md = markdown(all);
    cJSON_Delete(all);
    int rc = 0;
    const char *paths[2] = {json_path, md_path}, *texts[2] = {json, md};
    for (int i = 0; i < 2 && rc == 0; i++) {
        dk_out_file o;
        rc = dk_out_open(&o, paths[i], NULL, 0, err);
        if (rc == 0) {
            fputs(texts[i], o.f);
            rc = dk_out_commit(&o, err);
        }
    }
    if (rc == 0) {
        fprintf(stderr, "\n%s\n", md);
        LOG_INFO("diff_agent: summary: %s (and .json)", md_path);
    }
    free(json);
    free(md);
    free(json_path);
    free(md_path);
    return rc;
}
