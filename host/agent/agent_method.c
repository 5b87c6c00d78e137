/* agent_method.c — the seed's agent types (BlackboxAgent, ADLAgent, ADLBlackboxAgent, DiffMiningAgent) bound to a
 * method's results: their names, prompt pieces, first message, dataset mapping and tools (agent_method.h), and
 * the helpers the method readers share (agent_method_internal.h): results completeness, JSON files read as
 * Python reads them, Python's string slicing and rounding, and the checks of untrusted tool arguments.
 *
 * Why it exists: the loop is one for all agents; this file is where the types differ, as the seed's class
 * hierarchy does: a method agent has the blackbox tools plus its own, its tool descriptions are the blackbox
 * ones followed by its own, and its other prompt pieces replace the blackbox ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "agent/agent_method_internal.h"
#include "agent/pyjson.h"
#include "core/strutil.h"
#include "io/file.h"

/* ---- results files ------------------------------------------------------------------------------------------- */

int agent_results_complete(const char *dir, const char *job, dk_err *err) {
    char *file = dk_path_join(dir, "results.h5");
    char *partial = dk_path_join(dir, "results.h5.partial");
    int rc = 0;
    if (!dk_is_file(file)) {
        if (dk_is_file(partial))
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s holds only results.h5.partial: the %s run that writes it did not "
                            "finish; rerun %s (the results appear as results.h5 when complete)", dir, job, job);
        else
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s has no results.h5: run %s first (the agent reads its results)",
                            dir, job);
    }
    free(file);
    free(partial);
    return rc;
}

cJSON *agent_read_json(const char *path, dk_err *err) {
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) {
        err->code = DK_EXIT_USAGE;
        return NULL;
    }
    char why[200];
    cJSON *v = dk_pyjson_loads(text, size, why, sizeof why);
    free(text);
    if (!v) dk_err_set(err, DK_EXIT_USAGE, "%s: %s", path, why);
    return v;
}

size_t agent_utf8_prefix(const char *s, int64_t max_chars) {
    size_t len = strlen(s), i = 0;
    for (int64_t c = 0; c < max_chars && i < len; c++) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        i += n > 0 ? (size_t)n : 1;  /* an invalid byte counts as one character (JSON text is valid UTF-8) */
    }
    return i;
}

cJSON *agent_string_prefix(const char *s, int64_t max_chars) {
    char *cut = dk_strndup(s, agent_utf8_prefix(s, max_chars));
    cJSON *v = cJSON_CreateString(cut);
    free(cut);
    return v;
}

void agent_obj_set(cJSON *obj, const char *key, cJSON *item) {
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else cJSON_AddItemToObject(obj, key, item);
}

void agent_int_key(int64_t v, char buf[24]) { snprintf(buf, 24, "%lld", (long long)v); }

char *agent_first_message(const char *header, cJSON *payload, const char *post_overview) {
    char *json = dk_pyjson_dumps(payload, DK_PYJSON_COMPACT);
    cJSON_Delete(payload);
    char *msg = dk_sprintf("%s%s\n\n%s", header, json, post_overview);
    free(json);
    return msg;
}

double agent_round2(double x) {
    /* Python rounds the exact binary value to 2 decimals, ties to even; so does printf's correctly rounded
     * conversion, and strtod reads the result back as the nearest double, as Python does. */
    if (!isfinite(x)) return x;
    char buf[400];
    snprintf(buf, sizeof buf, "%.2f", x);
    return strtod(buf, NULL);
}

/* ---- untrusted arguments ---------------------------------------------------------------------------------------- */

bool agent_arg_is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && dk_pyjson_is_int(v) && fabs(v->valuedouble) <= 9007199254740992.0;
}

const char *agent_arg_show(const cJSON *v, char *buf, size_t cap) {
    if (!v) {
        snprintf(buf, cap, "nothing");
        return buf;
    }
    char *text = dk_pyjson_dumps(v, DK_PYJSON_COMPACT);
    size_t len = strlen(text);
    if (len < cap) {
        memcpy(buf, text, len + 1);
    } else {
        size_t keep = agent_utf8_prefix(text, (int64_t)(cap > 8 ? cap - 8 : 0));
        while (keep > cap - 4) keep--;
        snprintf(buf, cap, "%.*s...", (int)keep, text);
    }
    free(text);
    return buf;
}

int agent_arg_int(const cJSON *args, const char *name, int64_t lo, int64_t hi, int64_t *out, char **message) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    char show[100];
    if (!agent_arg_is_int(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        *message = dk_sprintf("%s must be an int from %lld to %lld, got %s", name, (long long)lo, (long long)hi,
                              agent_arg_show(v, show, sizeof show));
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

int agent_arg_strings(const cJSON *args, const char *name, int64_t max_items, int64_t max_chars, bool allow_null,
                      const char ***items, int64_t *n, char **message) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    char show[100];
    *items = NULL;
    *n = 0;
    if (allow_null && cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v)) {
        *message = dk_sprintf("%s must be a list of strings%s, got %s", name, allow_null ? " or null" : "",
                              agent_arg_show(v, show, sizeof show));
        return -1;
    }
    int64_t count = cJSON_GetArraySize(v);
    if (count > max_items) {
        *message = dk_sprintf("%s has %lld entries; at most %lld per call", name, (long long)count,
                              (long long)max_items);
        return -1;
    }
    *items = dk_malloc((size_t)(count > 0 ? count : 1) * sizeof **items);
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || (int64_t)strlen(it->valuestring) > max_chars) {
            *message = dk_sprintf("%s[%lld] must be a non-empty string of at most %lld bytes, got %s", name,
                                  (long long)*n, (long long)max_chars, agent_arg_show(it, show, sizeof show));
            free(*items);
            *items = NULL;
            *n = 0;
            return -1;
        }
        (*items)[(*n)++] = it->valuestring;
    }
    return 0;
}

/* ---- the types -------------------------------------------------------------------------------------------------- */

static const char *const KIND_NAMES[] = {"ADL", "ADLBlackbox", "DiffMining", "Blackbox"};

int dk_agent_kind_parse(const char *name, dk_agent_kind *out, dk_err *err) {
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, KIND_NAMES[i]) == 0) {
            *out = (dk_agent_kind)i;
            return 0;
        }
    return dk_err_set(err, DK_EXIT_USAGE, "unknown agent type '%s': expected ADL, ADLBlackbox, DiffMining or Blackbox",
                      name ? name : "(none)");
}

/* Prompt pieces per type: the file of each part (NULL = the blackbox agent's: blackbox_*.txt; its
 * first_user_message_description is post_overview.txt), tools = blackbox tools + the type's. */
typedef struct type_prompts {
    const char *overview, *tools, *conduct, *examples;
} type_prompts;

static const type_prompts TYPE_PROMPTS[] = {
    [DK_AGENT_ADL] = {"adl_overview.txt", "adl_tools.txt", "adl_conduct.txt", "adl_examples.txt"},
    [DK_AGENT_ADL_BLACKBOX] = {"adl_blackbox_overview.txt", NULL, NULL, NULL},
    [DK_AGENT_DIFF_MINING] = {"dm_overview.txt", "dm_tools.txt", "dm_conduct.txt", "dm_examples.txt"},
    [DK_AGENT_BLACKBOX] = {NULL, NULL, NULL, NULL},
};

static int read_parts(dk_agent_method *m, const char *dir, const char *post_overview, dk_err *err) {
    const type_prompts *t = &TYPE_PROMPTS[m->kind];
    char *bb_tools = dk_agent_prompt_read(dir, "blackbox_tools.txt", err);
    if (!bb_tools) return -1;
    /* first_user_message_description: Blackbox's is the post-overview reminder itself */
    m->part_texts[0] = t->overview ? dk_agent_prompt_read(dir, t->overview, err) : dk_strdup(post_overview);
    if (t->tools) {
        char *own = dk_agent_prompt_read(dir, t->tools, err);
        m->part_texts[1] = own ? dk_sprintf("%s%s", bb_tools, own) : NULL;
        free(own);
        free(bb_tools);
    } else {
        m->part_texts[1] = bb_tools;
    }
    m->part_texts[2] = dk_agent_prompt_read(dir, t->conduct ? t->conduct : "blackbox_conduct.txt", err);
    m->part_texts[3] = dk_agent_prompt_read(dir, t->examples ? t->examples : "blackbox_examples.txt", err);
    m->part_texts[4] = dk_agent_prompt_read(dir, "large_budget.txt", err);
    for (int i = 0; i < 5; i++)
        if (!m->part_texts[i]) return -1;
    m->parts = (dk_agent_prompt_parts){m->part_texts[0], m->part_texts[1], m->part_texts[2], m->part_texts[3],
                                       m->part_texts[4]};
    return 0;
}

dk_agent_method *dk_agent_method_open(const dk_agent_method_config *mc, dk_err *err) {
    dk_agent_method *m = dk_calloc(1, sizeof *m);
    m->kind = mc->kind;
    m->name = mc->kind == DK_AGENT_ADL ? "ADL" : mc->kind == DK_AGENT_DIFF_MINING ? "DiffMining" : "Blackbox";
    char *post = dk_agent_prompt_read(mc->prompts_dir, "post_overview.txt", err);
    int rc = post ? read_parts(m, mc->prompts_dir, post, err) : -1;
    if (rc == 0) {
        switch (mc->kind) {
        case DK_AGENT_ADL:
        case DK_AGENT_ADL_BLACKBOX:
            m->adl = adl_results_open(mc, err);
            if (m->adl)
                m->first_message = mc->kind == DK_AGENT_ADL
                                       ? adl_first_message(m->adl, post, &m->dataset_mapping, err)
                                       : adl_blackbox_first_message(m->adl, post, &m->dataset_mapping, err);
            break;
        case DK_AGENT_DIFF_MINING:
            m->first_message = dm_first_message(mc, post, &m->dataset_mapping, err);
            break;
        case DK_AGENT_BLACKBOX:
            m->first_message = dk_strdup("");
            break;
        }
        if (!m->first_message) rc = -1;
    }
    free(post);
    if (rc != 0) {
        dk_agent_method_close(m);
        return NULL;
    }
    return m;
}

void dk_agent_method_close(dk_agent_method *m) {
    if (!m) return;
    free(m->first_message);
    for (int i = 0; i < 5; i++) free(m->part_texts[i]);
    cJSON_Delete(m->dataset_mapping);
    adl_results_free(m->adl);
    free(m);
}

const char *dk_agent_method_name(const dk_agent_method *m) { return m->name; }
const char *dk_agent_method_first_message(const dk_agent_method *m) { return m->first_message; }
const dk_agent_prompt_parts *dk_agent_method_prompt_parts(const dk_agent_method *m) { return &m->parts; }
const cJSON *dk_agent_method_dataset_mapping(const dk_agent_method *m) { return m->dataset_mapping; }

int dk_agent_method_tools(const dk_agent_method *m, dk_agent_models *models, dk_agent_run_tools *out, dk_err *err) {
    (void)err;
    memset(out, 0, sizeof *out);
    const int n_method = m->kind == DK_AGENT_ADL ? 4 : 0;
    out->tools = dk_calloc((size_t)(2 + n_method), sizeof *out->tools);
    out->board = dk_hypothesis_board_new();
    dk_agent_blackbox_tools(models, out->board, out->tools);
    if (m->kind == DK_AGENT_ADL) out->state = adl_tools(m->adl, models, out->tools + 2);
    out->n = 2 + n_method;
    return 0;
}

void dk_agent_run_tools_free(dk_agent_run_tools *t) {
    if (!t) return;
    free(t->tools);
    dk_hypothesis_board_free(t->board);
    adl_tools_state_free(t->state);
    memset(t, 0, sizeof *t);
}
