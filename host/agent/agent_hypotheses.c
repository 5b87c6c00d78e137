/* agent_hypotheses.c — the hypothesis board (the seed's HypothesisTracker) and its tool, hypothesis_tracking:
 *   {"action": "add", "hypothesis": str} or {"action": "add", "hypotheses": [str, ...]}   ids from 1
 *   {"action": "update", "id": int, "status": "active"|"confirmed"|"rejected", "reasoning": str}
 *   {"action": "get"}
 * each answering the whole board {"hypotheses": [{"id", "hypothesis", "status", "reasoning"}, ...]}.
 *
 * The arguments come from the agent LLM. Where the seed asserts (and so ends the run), the tool answers
 * DK_TOOL_PARAM_ERROR with the assert's message, and the board is unchanged: an "add" with one bad item adds
 * none (the seed would have added the items before it, then crashed). Like the seed: "hypotheses" wins over
 * "hypothesis"; a value that is not a list is one item; the id is read as Python's int() reads it (an int, a
 * bool, a float truncated, a string of digits); reasoning is str() of whatever was given (default ""). */
#include "agent/agent.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_internal.h"
#include "agent/pyjson.h"
#include "core/error.h"
#include "core/strutil.h"

typedef struct hypothesis {
    int64_t id;
    char *text;
    char *status;
    char *reasoning;
} hypothesis;

struct dk_hypothesis_board {
    hypothesis *items;  /* [n] in the order they were added */
    int n, cap;
    int64_t next_id;
};

dk_hypothesis_board *dk_hypothesis_board_new(void) {
    dk_hypothesis_board *b = dk_calloc(1, sizeof *b);
    b->next_id = 1;
    return b;
}

void dk_hypothesis_board_free(dk_hypothesis_board *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        free(b->items[i].text);
        free(b->items[i].status);
        free(b->items[i].reasoning);
    }
    free(b->items);
    free(b);
}

static cJSON *board_json(const dk_hypothesis_board *b) {
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "hypotheses");
    for (int i = 0; i < b->n; i++) {
        cJSON *h = cJSON_CreateObject();
        dk_pyjson_add_int(h, "id", b->items[i].id);
        cJSON_AddStringToObject(h, "hypothesis", b->items[i].text);
        cJSON_AddStringToObject(h, "status", b->items[i].status);
        cJSON_AddStringToObject(h, "reasoning", b->items[i].reasoning);
        cJSON_AddItemToArray(list, h);
    }
    return root;
}

/* Python's int(v) for the values JSON can hold; false when int() would raise. */
static bool py_int(const cJSON *v, int64_t *out) {
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return true;
    }
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble) || fabs(v->valuedouble) > 9e18) return false;
        *out = (int64_t)trunc(v->valuedouble);
        return true;
    }
    if (cJSON_IsString(v)) {  /* int(" 12 "), int("-3"), int("+4") */
        char *s = agent_strip(v->valuestring, strlen(v->valuestring));
        const char *p = s + (s[0] == '-' || s[0] == '+');
        bool ok = *p != '\0' && strlen(p) < 18;
        for (const char *q = p; ok && *q; q++) ok = isdigit((unsigned char)*q);
        if (ok) *out = strtoll(s, NULL, 10);
        free(s);
        return ok;
    }
    return false;
}

static bool valid_status(const cJSON *v) {
    return cJSON_IsString(v) && (strcmp(v->valuestring, "active") == 0 || strcmp(v->valuestring, "confirmed") == 0 ||
                                 strcmp(v->valuestring, "rejected") == 0);
}

static dk_tool_status add(dk_hypothesis_board *b, const cJSON *args, char **message) {
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(args, "hypotheses");
    if (!raw) raw = cJSON_GetObjectItemCaseSensitive(args, "hypothesis");
    if (!raw) {
        *message = dk_strdup("add requires 'hypothesis' (str) or 'hypotheses' (list[str])");
        return DK_TOOL_PARAM_ERROR;
    }
    bool is_list = cJSON_IsArray(raw);
    int n = is_list ? cJSON_GetArraySize(raw) : 1;
    if (n == 0) {
        *message = dk_strdup("add requires at least one hypothesis");
        return DK_TOOL_PARAM_ERROR;
    }
    for (int i = 0; i < n; i++) {  /* all checked before any is added */
        const cJSON *h = is_list ? cJSON_GetArrayItem(raw, i) : raw;
        if (!cJSON_IsString(h) || h->valuestring[0] == '\0') {
            char *r = dk_pyjson_repr(h);
            *message = dk_sprintf("Each hypothesis must be a non-empty string, got: %s", r);
            free(r);
            return DK_TOOL_PARAM_ERROR;
        }
    }
    for (int i = 0; i < n; i++) {
        const cJSON *h = is_list ? cJSON_GetArrayItem(raw, i) : raw;
        if (b->n == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 8;
            b->items = dk_realloc(b->items, (size_t)b->cap * sizeof *b->items);
        }
        b->items[b->n++] = (hypothesis){.id = b->next_id++, .text = dk_strdup(h->valuestring),
                                        .status = dk_strdup("active"), .reasoning = dk_strdup("")};
    }
    return DK_TOOL_OK;
}

static dk_tool_status update(dk_hypothesis_board *b, const cJSON *args, char **message) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(args, "id");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(args, "status");
    if (!id) {
        *message = dk_strdup("update requires 'id'");
        return DK_TOOL_PARAM_ERROR;
    }
    if (!status) {
        *message = dk_strdup("update requires 'status'");
        return DK_TOOL_PARAM_ERROR;
    }
    if (!valid_status(status)) {
        char *s = agent_py_str(status);
        *message = dk_sprintf("Invalid status: %s (use 'active', 'confirmed' or 'rejected')", s);
        free(s);
        return DK_TOOL_PARAM_ERROR;
    }
    int64_t target = 0;
    if (!py_int(id, &target)) {
        char *r = dk_pyjson_repr(id);
        *message = dk_sprintf("id must be an integer, got: %s", r);
        free(r);
        return DK_TOOL_PARAM_ERROR;
    }
    hypothesis *match = NULL;
    for (int i = 0; i < b->n; i++)
        if (b->items[i].id == target) match = &b->items[i];
    if (!match) {
        *message = dk_sprintf("No hypothesis with id=%lld", (long long)target);
        return DK_TOOL_PARAM_ERROR;
    }
    const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(args, "reasoning");
    free(match->status);
    free(match->reasoning);
    match->status = dk_strdup(status->valuestring);
    match->reasoning = reasoning ? agent_py_str(reasoning) : dk_strdup("");
    return DK_TOOL_OK;
}

/* The tool's run: signature (action, **kwargs), already bound by the loop. */
static dk_tool_status tracking_run(void *ctx, const cJSON *args, cJSON **output, char **message, dk_err *err) {
    (void)err;
    dk_hypothesis_board *b = ctx;
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(args, "action");
    const char *a = cJSON_IsString(action) ? action->valuestring : "";
    dk_tool_status st;
    if (strcmp(a, "add") == 0) {
        st = add(b, args, message);
    } else if (strcmp(a, "update") == 0) {
        st = update(b, args, message);
    } else if (strcmp(a, "get") == 0) {
        st = DK_TOOL_OK;
    } else {
        char *s = agent_py_str(action);
        *message = dk_sprintf("Unknown action: %s. Use 'add', 'update', or 'get'", s);
        free(s);
        return DK_TOOL_PARAM_ERROR;
    }
    if (st == DK_TOOL_OK) *output = board_json(b);
    return st;
}

/* The active hypotheses, for the blackbox agents' addendum after ask_model. */
char *dk_agent_blackbox_addendum(void *ctx, const char *tool_name) {
    const dk_hypothesis_board *b = ctx;
    if (!b || strcmp(tool_name, "ask_model") != 0) return NULL;
    dk_strbuf lines = {0};
    for (int i = 0; i < b->n; i++) {
        if (strcmp(b->items[i].status, "active") != 0) continue;
        dk_strbuf_printf(&lines, "%s  [%lld] %s", lines.len ? "\n" : "", (long long)b->items[i].id, b->items[i].text);
    }
    if (lines.len == 0) return NULL;
    char *text = dk_sprintf("Active hypotheses:\n%s\nUpdate hypothesis_tracking with your findings.", lines.data);
    dk_strbuf_free(&lines);
    return text;
}

static const char *const tracking_params[] = {"action"};

void agent_hypothesis_tool(dk_hypothesis_board *board, dk_agent_tool *tool) {
    *tool = (dk_agent_tool){.name = "hypothesis_tracking", .params = tracking_params, .n_params = 1,
                            .var_kwargs = true, .run = tracking_run, .ctx = board};
}
