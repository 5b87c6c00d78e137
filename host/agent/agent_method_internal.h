/* agent_method_internal.h — what the agent types (agent_method.c) share with the method readers (agent_adl.c,
 * agent_dm.c): the per-type state behind dk_agent_method, and small helpers for reading results and checking
 * the arguments an LLM wrote.
 *
 * Why it exists: the ADL and diff-mining agents read different results but check their inputs and their
 * untrusted arguments the same way; one copy of each rule keeps the error messages alike. */
#ifndef DK_AGENT_METHOD_INTERNAL_H
#define DK_AGENT_METHOD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "agent/agent_method.h"

typedef struct adl_results adl_results;   /* agent_adl.c */

struct dk_agent_method {
    dk_agent_kind kind;
    const char *name;                      /* "ADL", "Blackbox", "DiffMining" */
    char *first_message;                   /* "" for Blackbox */
    dk_agent_prompt_parts parts;           /* points into part_texts */
    char *part_texts[5];                   /* first_user_message_description, tools, conduct, examples,
                                            * large_budget_note */
    cJSON *dataset_mapping;                /* {"ds1": "real name"} or NULL */
    adl_results *adl;                      /* ADL and ADLBlackbox: the results read at open */
};

/* ---- results files ---------------------------------------------------------------------------------------- */

/* 0 when <dir>/results.h5 exists; else -1 + err (code 2) naming the folder, whether a results.h5.partial says the
 * run did not finish, and the job that makes the results (`job`: "diff_adl", "diff_mining"). */
int agent_results_complete(const char *dir, const char *job, dk_err *err);
/* A JSON file read as Python's json.load reads it (ints marked, dk_pyjson_loads): the value, or NULL + err
 * (code 2) naming the file. */
cJSON *agent_read_json(const char *path, dk_err *err);
/* The byte length of the first max_chars code points of s (Python's s[:max_chars] on a str). */
size_t agent_utf8_prefix(const char *s, int64_t max_chars);
/* A new string node holding s[:max_chars] (code points). */
cJSON *agent_string_prefix(const char *s, int64_t max_chars);
/* obj[key] = item: replaces an existing member in place (Python dict assignment keeps the first position). */
void agent_obj_set(cJSON *obj, const char *key, cJSON *item);
/* Python's str key of an int (json.dumps writes int keys as their decimal text). */
void agent_int_key(int64_t v, char buf[24]);
/* header + json.dumps(payload) + "\n\n" + post_overview (the seed's build_first_user_message); deletes payload. */
char *agent_first_message(const char *header, cJSON *payload, const char *post_overview);
/* Python's round(x, 2) of a float. */
double agent_round2(double x);

/* ---- untrusted arguments ---------------------------------------------------------------------------------- */

/* An int argument: a JSON number written without '.', 'e', 'E' (Python's int; not a bool), within +-2^53 so
 * that it converts to int64_t exactly. */
bool agent_arg_is_int(const cJSON *v);
/* args[name] as an int in [lo, hi]: 0, or -1 with *message (malloc'ed) naming the argument, what it is and the
 * allowed values. */
int agent_arg_int(const cJSON *args, const char *name, int64_t lo, int64_t hi, int64_t *out, char **message);
/* args[name] as a list of at most max_items non-empty strings, each at most max_chars bytes: 0 with *items (a
 * malloc'ed array, never NULL for a list, even an empty one; the strings point into args) and *n, or -1 with
 * *message. allow_null: a JSON null gives *items NULL, *n 0. */
int agent_arg_strings(const cJSON *args, const char *name, int64_t max_items, int64_t max_chars, bool allow_null,
                      const char ***items, int64_t *n, char **message);
/* A short rendering of an argument value for messages: its JSON text (cut to fit cap, "..." marking the cut),
 * or "nothing" when absent. Returns buf. */
const char *agent_arg_show(const cJSON *v, char *buf, size_t cap);

/* ---- the types ------------------------------------------------------------------------------------------- */

/* Reads an ADL results folder (agent_adl.c). */
adl_results *adl_results_open(const dk_agent_method_config *mc, dk_err *err);
void adl_results_free(adl_results *r);
/* The ADL overview message ("OVERVIEW:\n" + json.dumps(overview) + "\n\n" + post_overview) and the mapping. */
char *adl_first_message(adl_results *r, const char *post_overview, cJSON **mapping, dk_err *err);
/* ADLBlackboxAgent's first message (the unsteered samples) and its mapping. */
char *adl_blackbox_first_message(adl_results *r, const char *post_overview, cJSON **mapping, dk_err *err);
/* The four ADL tools into tools[0..4), their context (freed with adl_tools_state_free). */
void *adl_tools(adl_results *r, dk_agent_models *models, dk_agent_tool tools[4]);
void adl_tools_state_free(void *state);

/* The diff-mining overview message and mapping (agent_dm.c). */
char *dm_first_message(const dk_agent_method_config *mc, const char *post_overview, cJSON **mapping, dk_err *err);

#endif
