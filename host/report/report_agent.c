/* report_agent.c — the agent section (issue #15's outputs: README "The agent"): the summary table of
 * ${diffing.results_dir}/agent_summary.json, and per (agent, budget) row its runs: the description, the grades
 * with the grader's reasoning, and the transcript (messages.json) in a collapsible block; rows written without an
 * agent LLM show the first messages the agent would be sent. The best mean grade goes to the headline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "io/file.h"
#include "report.h"

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void json_cell(dk_strbuf *b, const cJSON *v) {
    dk_strbuf_append(b, "<td>");
    if (!v || cJSON_IsNull(v)) dk_strbuf_append(b, "&ndash;");
    else if (cJSON_IsNumber(v)) dk_strbuf_printf(b, "%.4g", v->valuedouble);
    else if (cJSON_IsString(v)) rp_esc(b, v->valuestring);
    else {
        char *t = cJSON_PrintUnformatted(v);
        rp_esc(b, t);
        free(t);
    }
    dk_strbuf_append(b, "</td>");
}

/* <method results>/rel or <method results>/agent/rel, where <method results> is the method's folder or one of its
 * run folders (diff_mining/seed42_top100): the agent writes under the method's own results. NULL when absent. */
static char *find_in_method(const rp_ctx *c, const char *method, const char *rel) {
    const char *adl_root = c->o->adl_results_dir ? c->o->adl_results_dir : c->o->results_dir;
    char *base = strcmp(method, "activation_difference_lens") == 0 ? dk_path_join(adl_root, method)
                                                                   : dk_path_join(c->o->results_dir, method);
    size_t n_sub = 0;
    char **subs = dk_list_dir(base, NULL, false, &n_sub);
    char *found = NULL;
    for (size_t i = 0; i <= n_sub && !found; i++) {
        char *dir = i == 0 ? dk_strdup(base) : dk_path_join(base, subs[i - 1]);
        char *a = dk_path_join(dir, rel), *agent = dk_path_join(dir, "agent"), *b = dk_path_join(agent, rel);
        if (dk_is_dir(a) || dk_is_file(a)) found = dk_strdup(a);
        else if (dk_is_dir(b) || dk_is_file(b)) found = dk_strdup(b);
        free(a), free(agent), free(b), free(dir);
    }
    dk_free_strings(subs, n_sub);
    free(base);
    return found;
}

static void messages_block(dk_strbuf *b, const cJSON *msgs, const char *summary) {
    dk_strbuf_append(b, "<details><summary>");
    rp_esc(b, summary);
    dk_strbuf_printf(b, " (%d messages)</summary>\n", cJSON_GetArraySize(msgs));
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const char *role = str_of(m, "role"), *content = str_of(m, "content");
        dk_strbuf_append(b, "<div class=\"msg\"><b>");
        rp_esc(b, role ? role : "?");
        dk_strbuf_append(b, "</b><pre>");
        if (content) rp_esc(b, content);
        else {
            char *t = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(m, "content"));
            rp_esc(b, t ? t : "");
            free(t);
        }
        dk_strbuf_append(b, "</pre></div>\n");
    }
    dk_strbuf_append(b, "</details>\n");
}

static void runs(rp_ctx *c, dk_strbuf *b, const cJSON *row) {
    const char *method = str_of(row, "method"), *folder = str_of(row, "folder");
    const cJSON *planned = cJSON_GetObjectItemCaseSensitive(row, "runs_planned");
    if (!method || !folder || !cJSON_IsNumber(planned)) return;
    char *group = find_in_method(c, method, folder);
    dk_strbuf_append(b, "<h4>");
    rp_esc(b, str_of(row, "agent"));
    dk_strbuf_append(b, " on ");
    rp_esc(b, method);
    dk_strbuf_append(b, ": ");
    rp_esc(b, folder);
    dk_strbuf_append(b, "</h4>\n");
    if (!group) {
        rp_problem(b, "the run folder %s of %s is not there (moved or removed?)", folder, method);
        c->problems++;
        return;
    }
    for (int i = 0; i < (int)planned->valuedouble; i++) {
        char name[32];
        snprintf(name, sizeof name, "run%d", i);
        char *dir = dk_path_join(group, name), *desc_path = dk_path_join(dir, "description.txt");
        dk_strbuf_printf(b, "<div class=\"run\"><b>run %d</b> ", i);
        size_t len = 0;
        char *desc = dk_is_file(desc_path) ? dk_read_file(desc_path, &len, NULL) : NULL;
        if (!desc) {
            dk_strbuf_append(b, "<span class=\"missing\">not finished (no description.txt)</span></div>\n");
            free(dir), free(desc_path);
            continue;
        }
        dk_strbuf_append(b, "<p>Description:</p><pre class=\"gen\">");
        rp_esc_n(b, desc, len);
        dk_strbuf_append(b, "</pre>\n");
        /* grades: hypothesis_grade_<grader>_<j>.json */
        size_t n_files = 0;
        char **files = dk_list_dir(dir, ".json", false, &n_files);
        for (size_t k = 0; k < n_files; k++) {
            if (!dk_str_starts_with(files[k], "hypothesis_grade_")) continue;
            char *gp = dk_path_join(dir, files[k]);
            dk_err err = {0};
            cJSON *g = rp_json_file(gp, &err);
            const cJSON *score = cJSON_GetObjectItemCaseSensitive(g, "score");
            dk_strbuf_append(b, "<p>");
            rp_esc(b, files[k]);
            if (!g) {
                dk_strbuf_append(b, ": ");
                rp_esc(b, err.msg);
                c->problems++;
            } else {
                dk_strbuf_append(b, ": grade <b class=\"grade\">");
                if (cJSON_IsNumber(score)) dk_strbuf_printf(b, "%g", score->valuedouble);
                else dk_strbuf_append(b, "none");
                dk_strbuf_append(b, "</b> / 5</p><details><summary>the grader's reasoning</summary><pre class=\"gen\">");
                rp_esc(b, str_of(g, "reasoning"));
                dk_strbuf_append(b, "</pre></details>\n");
            }
            cJSON_Delete(g);
            free(gp);
        }
        dk_free_strings(files, n_files);
        char *mp = dk_path_join(dir, "messages.json");
        cJSON *msgs = dk_is_file(mp) ? rp_json_file(mp, NULL) : NULL;
        if (cJSON_IsArray(msgs)) messages_block(b, msgs, "Transcript");
        else dk_strbuf_append(b, "<p class=\"note\">no readable messages.json</p>\n");
        cJSON_Delete(msgs);
        dk_strbuf_append(b, "</div>\n");
        free(mp), free(desc), free(dir), free(desc_path);
    }
    free(group);
}

rp_state rp_section_agent(rp_ctx *c, dk_strbuf *b) {
    char *path = dk_path_join(c->o->results_dir, "agent_summary.json");
    if (!dk_is_file(path)) {
        free(path);
        return RP_MISSING;
    }
    dk_err err = {0};
    cJSON *rows = rp_json_file(path, &err);
    free(path);
    if (!cJSON_IsArray(rows)) {
        rp_problem(b, "agent_summary.json is not shown: %s", rows ? "it is not a JSON list of rows" : err.msg);
        cJSON_Delete(rows);
        return RP_CORRUPT;
    }
    static const char *const COLS[] = {"organism", "method", "agent", "budget", "runs_planned", "runs_finished",
                                       "runs_graded", "mean_grade", "grades", "grader", "outcomes",
                                       "false_positive_rate"};
    dk_strbuf_append(b, "<p class=\"from\">from agent_summary.json; grades are 1 (wrong) to 5 (the finetune's "
                        "purpose found) by the organism type's rubric</p>\n<table class=\"agent\"><thead><tr>");
    for (size_t i = 0; i < sizeof COLS / sizeof *COLS; i++) dk_strbuf_printf(b, "<th>%s</th>", COLS[i]);
    dk_strbuf_append(b, "<th>null control</th></tr></thead><tbody>\n");
    const cJSON *row, *best = NULL;
    cJSON_ArrayForEach(row, rows) {
        dk_strbuf_append(b, "<tr>");
        const char *missing = str_of(row, "missing"), *overview = str_of(row, "overview_only");
        if (missing || overview) {
            json_cell(b, cJSON_GetObjectItemCaseSensitive(row, "organism"));
            json_cell(b, cJSON_GetObjectItemCaseSensitive(row, "method"));
            json_cell(b, cJSON_GetObjectItemCaseSensitive(row, "agent"));
            dk_strbuf_printf(b, "<td colspan=\"%zu\" class=\"missing\">", sizeof COLS / sizeof *COLS - 2);
            if (missing) {
                dk_strbuf_append(b, "missing: ");
                rp_esc(b, missing);
            } else {
                dk_strbuf_append(b, "no agent LLM was configured: only the first messages were written (");
                rp_esc(b, overview);
                dk_strbuf_append(b, ")");
            }
            dk_strbuf_append(b, "</td></tr>\n");
            continue;
        }
        for (size_t i = 0; i < sizeof COLS / sizeof *COLS; i++) json_cell(b, cJSON_GetObjectItemCaseSensitive(row, COLS[i]));
        json_cell(b, cJSON_GetObjectItemCaseSensitive(row, "null_control"));
        dk_strbuf_append(b, "</tr>\n");
        const cJSON *mg = cJSON_GetObjectItemCaseSensitive(row, "mean_grade");
        const char *organism = str_of(row, "organism");
        bool is_null = cJSON_GetObjectItemCaseSensitive(row, "false_positive_rate") != NULL;
        if (cJSON_IsNumber(mg) && !is_null && (!organism || strcmp(organism, c->o->organism) == 0) &&
            (!best || mg->valuedouble > cJSON_GetObjectItemCaseSensitive(best, "mean_grade")->valuedouble))
            best = row;
    }
    dk_strbuf_append(b, "</tbody></table>\n");
    if (best) {
        const cJSON *graded = cJSON_GetObjectItemCaseSensitive(best, "runs_graded");
        rp_headline(c, "Agent: best mean grade %.3g / 5 (%s on %s, budget %g, %g run(s) graded)",
                    cJSON_GetObjectItemCaseSensitive(best, "mean_grade")->valuedouble, str_of(best, "agent"),
                    str_of(best, "method"), cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(best, "budget")),
                    cJSON_IsNumber(graded) ? graded->valuedouble : 0.0);
    }
    /* the runs, and the first messages of overview-only rows */
    cJSON_ArrayForEach(row, rows) {
        const char *overview = str_of(row, "overview_only"), *method = str_of(row, "method");
        if (overview && method) {
            char *p = find_in_method(c, method, overview);
            cJSON *msgs = p && dk_is_file(p) ? rp_json_file(p, NULL) : NULL;
            if (cJSON_IsArray(msgs)) {
                char *title = dk_sprintf("What the %s would be sent first (%s)", str_of(row, "agent"), overview);
                messages_block(b, msgs, title);
                free(title);
            }
            else {
                rp_problem(b, "%s of %s is not there or not a JSON list of messages", overview, method);
                c->problems++;
            }
            cJSON_Delete(msgs);
            free(p);
        } else if (!str_of(row, "missing")) {
            const char *organism = str_of(row, "organism");
            if (!organism || strcmp(organism, c->o->organism) == 0) runs(c, b, row);
            else {
                dk_strbuf_append(b, "<p class=\"note\">The runs of ");
                rp_esc(b, organism);
                dk_strbuf_append(b, " (a null control: a pair with no finetune) are in that organism's results "
                                    "folder; its row above summarises them.</p>\n");
            }
        }
    }
    cJSON_Delete(rows);
    return RP_OK;
}
