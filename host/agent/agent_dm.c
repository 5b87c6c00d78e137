/* agent_dm.c — the DiffMiningAgent's overview (the seed's methods/diff_mining/agent_tools.get_overview): per
 * dataset the token groups of one ordering type (agent.overview.ordering_type), agent.overview.top_k_tokens
 * tokens split across the type's orderings (the seed's _allocate_token_budgets), each token as {token_str,
 * ordering_value rounded to 2 decimals}, the run's num_samples, and datasets anonymised ds1, ds2, ...
 *
 * Why it exists: the diff-mining agent has no tools of its own; everything it learns from the method is this
 * message. It is read from the run folder's JSON files (docs/formats.md "Diff mining results"), which belong to
 * a complete results.h5, exactly as the seed reads its own.
 *
 * Extraction variant: the seed keeps one run folder per logit-extraction method (logits, logit_lens,
 * patchscope_lens) and the overview picks agent.overview.extraction_method's. diffkit's diff_mining computes the
 * `logits` variant only (run_metadata.json logit_extraction_method): another configured variant is refused with
 * a message naming the key, rather than showing the logits' tokens under another name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_method_internal.h"
#include "agent/pyjson.h"
#include "config/config.h"
#include "core/strutil.h"
#include "io/file.h"

#define OV "diffing.method.agent.overview."

/* Python's str(float(text)) with '.' replaced by 'p' (the seed's folder-name rule). */
static char *float_tag(const dk_cfg *cfg, const char *key, double fallback) {
    double v = fallback;
    if (dk_cfg_has(cfg, key)) v = dk_cfg_float(cfg, key);
    cJSON *n = cJSON_CreateNumber(v);
    char *text = dk_pyjson_dumps(n, DK_PYJSON_COMPACT);
    cJSON_Delete(n);
    for (char *c = text; *c; c++)
        if (*c == '.') *c = 'p';
    return text;
}

/* The seed's DiffMiningMethod._ordering_dir_name. */
static char *ordering_dir_name(const dk_cfg *cfg, const char *type, dk_err *err) {
    if (strcmp(type, "top_k_occurring") == 0 || strcmp(type, "fraction_positive_diff") == 0) return dk_strdup(type);
    if (strcmp(type, "nmf") != 0) {
        dk_err_set(err, DK_EXIT_USAGE, OV "ordering_type = %s: expected top_k_occurring, fraction_positive_diff or nmf",
                   type);
        return NULL;
    }
    const char *N = "diffing.method.token_ordering.nmf.";
    char key[128];
    int64_t topics = 0, topn = 0;
    bool orth = false;
    snprintf(key, sizeof key, "%snum_topics", N);
    if (dk_cfg_try_int(cfg, key, &topics, err) != 0) return NULL;
    snprintf(key, sizeof key, "%stop_n_tokens_per_topic", N);
    if (dk_cfg_try_int(cfg, key, &topn, err) != 0) return NULL;
    snprintf(key, sizeof key, "%sorthogonal", N);
    if (dk_cfg_has(cfg, key) && dk_cfg_try_bool(cfg, key, &orth, err) != 0) return NULL;
    snprintf(key, sizeof key, "%smode", N);
    const char *mode = dk_cfg_str(cfg, key);
    snprintf(key, sizeof key, "%sbeta", N);
    char *beta = float_tag(cfg, key, 2.0);
    snprintf(key, sizeof key, "%sorthogonal_weight", N);
    char *w = float_tag(cfg, key, 1.0);
    char *name = dk_sprintf("nmf_topics%lld_topn%lld_mode_%s_beta%s_orth%s_w%s", (long long)topics, (long long)topn,
                            mode, beta, orth ? "true" : "false", w);
    free(beta);
    free(w);
    return name;
}

/* _load_token_groups: NULL + err when the dataset's orderings are missing (the seed asserts). */
static cJSON *token_groups(const char *ordering_dir, const char *ds, int64_t top_k, dk_err *err) {
    char *dir = dk_path_join(ordering_dir, ds);
    char *index_path = dk_path_join(dir, "orderings.json");
    cJSON *index = dk_is_file(index_path) ? agent_read_json(index_path, err) : NULL;
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(index, "orderings");
    cJSON *groups = NULL;
    const int n = cJSON_IsArray(entries) ? cJSON_GetArraySize(entries) : 0;
    if (n == 0) {
        if (!dk_err_is_set(err))
            dk_err_set(err, DK_EXIT_USAGE, "no ordering data for dataset %s: %s is missing or lists no orderings; "
                       "rerun diff_mining", ds, index_path);
        goto done;
    }
    groups = cJSON_CreateArray();
    int i = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, entries) {
        const int64_t budget = top_k / n + (i < top_k % n ? 1 : 0);
        i++;
        if (budget <= 0) continue;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "ordering_id");
        char *file = cJSON_IsString(id) ? dk_sprintf("%s/%s.json", dir, id->valuestring) : NULL;
        cJSON *ordering = file && dk_is_file(file) ? agent_read_json(file, err) : NULL;
        if (!ordering) {
            if (!dk_err_is_set(err))
                dk_err_set(err, DK_EXIT_USAGE, "%s: ordering %s of the index has no file; rerun diff_mining",
                           index_path, cJSON_IsString(id) ? id->valuestring : "(no ordering_id)");
            free(file);
            cJSON_Delete(groups);
            groups = NULL;
            goto done;
        }
        cJSON *group = cJSON_CreateArray();
        int64_t taken = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ordering, "tokens")) {
            if (taken++ >= budget) break;
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(t, "token_str");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "ordering_value");
            cJSON *tok = cJSON_CreateObject();
            cJSON_AddItemToObject(tok, "token_str", s ? cJSON_Duplicate(s, 1) : cJSON_CreateNull());
            /* round(value, 2): an int stays an int, a float is rounded */
            if (!v) cJSON_AddItemToObject(tok, "ordering_value", dk_pyjson_int(0));
            else if (dk_pyjson_is_int(v)) cJSON_AddItemToObject(tok, "ordering_value", cJSON_Duplicate(v, 1));
            else cJSON_AddNumberToObject(tok, "ordering_value", agent_round2(v->valuedouble));
            cJSON_AddItemToArray(group, tok);
        }
        cJSON_AddItemToArray(groups, group);
        cJSON_Delete(ordering);
        free(file);
    }
done:
    cJSON_Delete(index);
    free(index_path);
    free(dir);
    return groups;
}

char *dm_first_message(const dk_agent_method_config *mc, const char *post_overview, cJSON **mapping, dk_err *err) {
    const dk_cfg *cfg = mc->cfg;
    const char *run_dir = mc->results_dir;
    if (agent_results_complete(run_dir, "diff_mining", err) != 0) return NULL;
    const char *extraction = dk_cfg_has(cfg, OV "extraction_method") ? dk_cfg_str(cfg, OV "extraction_method") : NULL;
    const char *ordering_type = dk_cfg_has(cfg, OV "ordering_type") ? dk_cfg_str(cfg, OV "ordering_type") : NULL;
    int64_t top_k = 0;
    if (!extraction || !ordering_type) {
        dk_err_set(err, DK_EXIT_USAGE, OV "%s must be set", !extraction ? "extraction_method" : "ordering_type");
        return NULL;
    }
    if (dk_cfg_try_int(cfg, OV "top_k_tokens", &top_k, err) != 0) return NULL;
    if (top_k < 0) {
        dk_err_set(err, DK_EXIT_USAGE, OV "top_k_tokens = %lld: must be at least 0", (long long)top_k);
        return NULL;
    }
    char *meta_path = dk_path_join(run_dir, "run_metadata.json");
    cJSON *meta = dk_is_file(meta_path) ? agent_read_json(meta_path, err) : cJSON_CreateObject();
    if (!meta) {
        free(meta_path);
        return NULL;
    }
    const cJSON *made = cJSON_GetObjectItemCaseSensitive(meta, "logit_extraction_method");
    const char *made_with = cJSON_IsString(made) ? made->valuestring : "logits";
    if (strcmp(extraction, made_with) != 0) {
        dk_err_set(err, DK_EXIT_USAGE, OV "extraction_method = %s, but the diff_mining results in %s were computed "
                   "with logit extraction `%s` (%s), the only variant diffkit's diff_mining computes: set "
                   OV "extraction_method=%s", extraction, run_dir, made_with, meta_path, made_with);
        cJSON_Delete(meta);
        free(meta_path);
        return NULL;
    }
    free(meta_path);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(meta, "max_samples");
    const int64_t num_samples = cJSON_IsNumber(ms) ? (int64_t)ms->valuedouble : 0;
    cJSON_Delete(meta);

    char *folder = ordering_dir_name(cfg, ordering_type, err);
    if (!folder) return NULL;
    char *ordering_dir = dk_path_join(run_dir, folder);
    free(folder);
    if (!dk_is_dir(ordering_dir)) {
        dk_err_set(err, DK_EXIT_USAGE, "ordering folder %s not found: check " OV "ordering_type (%s) and whether the "
                   "diff_mining run computed that ordering (diffing.method.token_ordering.method)", ordering_dir,
                   ordering_type);
        free(ordering_dir);
        return NULL;
    }
    /* the datasets: agent.overview.datasets, or every folder with an orderings.json, sorted */
    char **names = NULL;
    size_t n_names = 0;
    const dk_cfg_node *list = dk_cfg_get(cfg, OV "datasets");
    if (list && list->kind == DK_CFG_SEQ && list->n > 0) {
        names = dk_calloc(list->n, sizeof *names);
        for (size_t i = 0; i < list->n; i++)
            names[n_names++] = dk_strdup(list->items[i]->text ? list->items[i]->text : "");
    } else {
        size_t n_all = 0;
        char **all = dk_list_dir(ordering_dir, NULL, false, &n_all);
        names = dk_calloc(n_all > 0 ? n_all : 1, sizeof *names);
        for (size_t i = 0; i < n_all; i++) {
            char *idx = dk_sprintf("%s/%s/orderings.json", ordering_dir, all[i]);
            if (dk_is_file(idx)) names[n_names++] = dk_strdup(all[i]);
            free(idx);
        }
        dk_free_strings(all, n_all);  /* dk_list_dir sorts by bytes: Python's sorted() of str for UTF-8 names */
        if (n_names == 0) {
            dk_err_set(err, DK_EXIT_USAGE, "no dataset orderings found in %s; rerun diff_mining", ordering_dir);
            free(names);
            free(ordering_dir);
            return NULL;
        }
    }
    cJSON *ov = cJSON_CreateObject(), *dss = cJSON_AddObjectToObject(ov, "datasets");
    cJSON *map = cJSON_CreateObject();
    int rc = 0;
    for (size_t i = 0; i < n_names; i++) {
        char anon[32];
        snprintf(anon, sizeof anon, "ds%zu", i + 1);
        agent_obj_set(map, anon, cJSON_CreateString(names[i]));
    }
    for (size_t i = 0; rc == 0 && i < n_names; i++) {
        char anon[32];
        snprintf(anon, sizeof anon, "ds%zu", i + 1);
        /* a configured name is a folder of the ordering dir; one with a path separator or ".." cannot be */
        cJSON *groups = strchr(names[i], '/') || strcmp(names[i], "..") == 0 || !names[i][0]
                            ? NULL : token_groups(ordering_dir, names[i], top_k, err);
        if (!groups) {
            if (!dk_err_is_set(err))
                dk_err_set(err, DK_EXIT_USAGE, OV "datasets[%zu] = '%s': not a dataset folder of %s", i, names[i],
                           ordering_dir);
            rc = -1;
            break;
        }
        int64_t shown = 0;
        const cJSON *g;
        cJSON_ArrayForEach(g, groups) shown += cJSON_GetArraySize(g);
        cJSON *d = cJSON_CreateObject();
        int64_t n_groups = cJSON_GetArraySize(groups);
        cJSON_AddItemToObject(d, "token_groups", groups);
        dk_pyjson_add_int(d, "num_samples", num_samples);
        cJSON *md = cJSON_AddObjectToObject(d, "metadata");
        dk_pyjson_add_int(md, "num_token_groups", n_groups);
        dk_pyjson_add_int(md, "num_tokens_shown", shown);
        agent_obj_set(dss, anon, d);
    }
    dk_free_strings(names, n_names);
    free(ordering_dir);
    if (rc != 0) {
        cJSON_Delete(ov);
        cJSON_Delete(map);
        return NULL;
    }
    *mapping = map;
    return agent_first_message("OVERVIEW:\n", ov, post_overview);
}
