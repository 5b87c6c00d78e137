/* agent_loop.c — dk_agent_run, the seed's BaseAgent.run: the agent LLM thinks, calls one tool per turn or gives
 * FINAL(description: "..."), under three budgets (agent LLM calls, completion tokens, model interactions).
 *
 * Every message the loop writes is the seed's, byte for byte (tests/agent compares whole transcripts with what
 * the seed's own code wrote for the same script): the system message with its hints and remaining interactions,
 * FORMAT_ERROR with the last non-empty line and str(budgets), MODEL_INTERACTION_BUDGET_EXHAUSTED with
 * json.dumps({"budgets": ...}), TOOL_PARAMETER_ERROR with Python's TypeError text from binding the arguments to
 * the tool's signature, TOOL_RESULT(name) with json.dumps({"data": ..., "budgets": ...}), the post-tool prompt,
 * the memo on remaining interactions and the tool's addendum.
 *
 * Where the seed asserts, the run does not crash:
 *   - agent LLM calls used up, or completion tokens over the budget: the run ends with outcome CALLS_EXHAUSTED /
 *     TOKENS_EXHAUSTED and the transcript as it was when the seed raised;
 *   - an unknown tool, and a tool's own argument checks (the seed's asserts inside the tools): a user message in
 *     the TOOL_PARAMETER_ERROR style; nothing is charged;
 *   - a FINAL( block that does not parse in the agent's first turn: the seed fails there with UnboundLocalError
 *     (final_desc is read before it was ever set); here it is a FORMAT_ERROR, as in any later turn;
 *   - a post-cost that takes the remaining interactions below 0 (the seed asserts after the tool ran): the
 *     remaining interactions become 0 and a warning is logged.
 * An endpoint that fails (the agent LLM's, or a tool's) ends the run with outcome FAILED and err; error texts
 * come from the LLM client, which never shows the API key. */
#include "agent/agent.h"

#include <stdlib.h>
#include <string.h>

#include "agent/agent_internal.h"
#include "agent/pyjson.h"
#include "core/error.h"
#include "core/log.h"
#include "core/strutil.h"

typedef struct loop_state {
    const dk_agent_run_input *in;
    dk_agent_result *r;
    int64_t remaining_calls, remaining_interactions;
} loop_state;

static void add_message(cJSON *messages, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(messages, m);
}

/* {"model_interactions_remaining", "agent_llm_calls_remaining", "token_budget_remaining"} */
static cJSON *budgets_json(const loop_state *s) {
    int64_t budget = s->in->budgets.token_budget;
    cJSON *b = cJSON_CreateObject();
    dk_pyjson_add_int(b, "model_interactions_remaining", s->remaining_interactions);
    dk_pyjson_add_int(b, "agent_llm_calls_remaining", s->remaining_calls);
    dk_pyjson_add_int(b, "token_budget_remaining", budget != -1 ? budget - s->r->agent_completion_tokens : -1);
    return b;
}

/* str(budgets), as the seed's f-strings write it. */
static char *budgets_repr(const loop_state *s) {
    cJSON *b = budgets_json(s);
    char *text = dk_pyjson_repr(b);
    cJSON_Delete(b);
    return text;
}

static void format_error(const loop_state *s, const char *last_line, const char *parse_error) {
    char *budgets = budgets_repr(s);
    char *text = dk_sprintf("FORMAT_ERROR: Your last turn did not follow the output grammar. Follow exactly one of: "
                            "FINAL(description: \"...\") or CALL(tool_name: {json_args}). CALL(...) may span multiple "
                            "lines but must be the final content (only whitespace after). Use exactly one tool per "
                            "turn and ensure json_args is valid JSON. Last line received: %s\nError: %s\nBudgets: %s",
                            last_line, parse_error, budgets);
    add_message(s->r->messages, "user", text);
    free(text);
    free(budgets);
}

static void parameter_error(const loop_state *s, const char *problem) {
    char *budgets = budgets_repr(s);
    char *text = dk_sprintf("TOOL_PARAMETER_ERROR: %s. Check that your arguments match the tool signature. "
                            "Budgets: %s", problem, budgets);
    add_message(s->r->messages, "user", text);
    free(text);
    free(budgets);
}

static void interaction_budget_exhausted(const loop_state *s) {
    cJSON *wrap = cJSON_CreateObject();
    cJSON_AddItemToObject(wrap, "budgets", budgets_json(s));
    char *json = dk_pyjson_dumps(wrap, DK_PYJSON_COMPACT);
    char *text = dk_sprintf("MODEL_INTERACTION_BUDGET_EXHAUSTED. Please try again with fewer model interactions or if "
                            "fully exhausted, provide a FINAL(description: \"...\"). \n\n%s", json);
    add_message(s->r->messages, "user", text);
    free(text);
    free(json);
    cJSON_Delete(wrap);
}

/* inspect.signature(tool).bind(**args): NULL, or the TypeError's text (malloc'ed). */
static char *bind_error(const dk_agent_tool *tool, const cJSON *args) {
    for (int i = 0; i < tool->n_params; i++)
        if (!cJSON_GetObjectItemCaseSensitive(args, tool->params[i])) {
            cJSON *name = cJSON_CreateString(tool->params[i]);
            char *r = dk_pyjson_repr(name);
            char *text = dk_sprintf("missing a required argument: %s", r);
            free(r);
            cJSON_Delete(name);
            return text;
        }
    if (tool->var_kwargs) return NULL;
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
        bool known = false;
        for (int i = 0; i < tool->n_params && !known; i++) known = strcmp(a->string, tool->params[i]) == 0;
        if (!known) {
            cJSON *name = cJSON_CreateString(a->string);
            char *r = dk_pyjson_repr(name);
            char *text = dk_sprintf("got an unexpected keyword argument %s", r);
            free(r);
            cJSON_Delete(name);
            return text;
        }
    }
    return NULL;
}

static const dk_agent_tool *find_tool(const dk_agent_run_input *in, const char *name) {
    for (int i = 0; i < in->n_tools; i++)
        if (strcmp(in->tools[i].name, name) == 0) return &in->tools[i];
    return NULL;
}

static void unknown_tool(const loop_state *s, const char *name) {
    dk_strbuf known = {0};
    for (int i = 0; i < s->in->n_tools; i++) dk_strbuf_printf(&known, "%s%s", i ? ", " : "", s->in->tools[i].name);
    char *problem = dk_sprintf("Unknown tool: %s (the tools are: %s)", name, known.data ? known.data : "none");
    parameter_error(s, problem);
    free(problem);
    dk_strbuf_free(&known);
}

/* TOOL_RESULT(name): json.dumps({"data", "budgets"}) + POST_TOOL_RESULT + memo + addendum. */
static void tool_result(const loop_state *s, const char *name, cJSON *output) {
    cJSON *wrap = cJSON_CreateObject();
    cJSON_AddItemToObject(wrap, "data", output ? output : cJSON_CreateNull());
    cJSON_AddItemToObject(wrap, "budgets", budgets_json(s));
    char *json = dk_pyjson_dumps(wrap, DK_PYJSON_COMPACT);
    cJSON_Delete(wrap);
    char *memo;
    if (s->remaining_interactions > 0)
        memo = dk_sprintf("You have %lld model interactions remaining. USE THEM!", (long long)s->remaining_interactions);
    else
        memo = dk_strdup("You have no model interactions remaining. You must provide a FINAL(description: \"...\")");
    char *addendum = s->in->addendum ? s->in->addendum(s->in->addendum_ctx, name) : NULL;
    char *text = dk_sprintf("TOOL_RESULT(%s): %s\n\n%s\n\n%s%s%s", name, json, s->in->post_tool_result, memo,
                            addendum && addendum[0] ? "\n\n" : "", addendum ? addendum : "");
    add_message(s->r->messages, "user", text);
    free(text);
    free(addendum);
    free(memo);
    free(json);
}

/* One agent LLM call over the whole transcript: its text (malloc'ed), or NULL with r->err. */
static char *agent_llm_call(const loop_state *s) {
    const cJSON *messages = s->r->messages;
    int n = cJSON_GetArraySize(messages);
    dk_llm_message *msgs = dk_calloc((size_t)n, sizeof *msgs);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        msgs[i++] = (dk_llm_message){.role = cJSON_GetObjectItem(m, "role")->valuestring,
                                     .content = cJSON_GetObjectItem(m, "content")->valuestring,
                                     .cache_ephemeral = cJSON_GetObjectItem(m, "cache_control") != NULL};
    }
    dk_llm_request req = dk_llm_request_init(msgs, n);
    req.temperature = s->in->llm.temperature;
    req.max_tokens = s->in->llm.max_tokens_per_call;
    dk_llm_response resp;
    char *text = NULL;
    if (dk_llm_chat(s->in->llm.client, &req, &resp) != 0) {
        dk_err_set(&s->r->err, resp.err.code ? resp.err.code : DK_EXIT_RUNTIME, "the agent LLM (%s) did not answer "
                   "call %lld: %s", dk_llm_client_model(s->in->llm.client),
                   (long long)s->r->agent_llm_calls_used + 1, resp.err.msg);
    } else {
        text = dk_strdup(resp.choices[0].content);
        s->r->agent_llm_calls_used++;
        s->r->agent_prompt_tokens += resp.prompt_tokens;
        s->r->agent_completion_tokens += resp.completion_tokens;
        s->r->agent_total_tokens += resp.total_tokens;
        LOG_INFO("Agent LLM: %lld completion tokens", (long long)resp.completion_tokens);
    }
    dk_llm_response_free(&resp);
    free(msgs);
    return text;
}

/* Runs the tool of a parsed CALL; false when the run must end (r->outcome and r->err set). */
static bool run_tool(loop_state *s, const char *name, const cJSON *args) {
    const dk_agent_tool *tool = find_tool(s->in, name);
    if (!tool) {  /* the seed asserts */
        unknown_tool(s, name);
        return true;
    }
    LOG_INFO("Executing tool: %s", name);
    int64_t pre_cost = tool->pre_cost ? tool->pre_cost(tool->ctx, args) : 0;
    if (s->remaining_interactions < pre_cost) {
        interaction_budget_exhausted(s);
        return true;
    }
    char *problem = bind_error(tool, args);
    if (problem) {
        parameter_error(s, problem);
        free(problem);
        return true;
    }
    cJSON *output = NULL;
    char *message = NULL;
    dk_err tool_err = {0};
    dk_tool_status st = tool->run(tool->ctx, args, &output, &message, &tool_err);
    if (st == DK_TOOL_PARAM_ERROR) {
        parameter_error(s, message ? message : "the arguments were refused");
        free(message);
        cJSON_Delete(output);
        return true;
    }
    free(message);
    if (st != DK_TOOL_OK) {
        cJSON_Delete(output);
        s->r->outcome = DK_AGENT_FAILED;
        if (dk_err_is_set(&tool_err)) s->r->err = tool_err;
        else dk_err_set(&s->r->err, DK_EXIT_RUNTIME, "the tool %s failed", name);
        return false;
    }
    int64_t post_cost = tool->post_cost ? tool->post_cost(tool->ctx, output) : 0;
    s->remaining_interactions -= pre_cost + post_cost;
    if (s->remaining_interactions < 0) {
        LOG_WARN("the tool %s used %lld model interactions more than were left; none are left now", name,
                 (long long)-s->remaining_interactions);
        s->remaining_interactions = 0;
    }
    tool_result(s, name, output);
    return true;
}

static char *system_content(const dk_agent_run_input *in) {
    const char *hints = in->hints ? in->hints : "";
    size_t b, e;
    agent_strip_span(hints, strlen(hints), &b, &e);
    char *hints_block = b < e ? dk_sprintf("Hints:\n%s\n\n", hints) : dk_strdup("");
    char *text = dk_sprintf("%s\n\n%sRemaining model interactions: %lld", in->system_prompt, hints_block,
                            (long long)in->budgets.model_interactions);
    free(hints_block);
    return text;
}

int dk_agent_run(const dk_agent_run_input *in, dk_agent_result *r, dk_err *err) {
    memset(r, 0, sizeof *r);
    if (!in->system_prompt || !in->system_prompt[0] || !in->llm.client || !in->post_tool_result ||
        in->budgets.agent_llm_calls < 0 || in->budgets.model_interactions < 0 || in->budgets.token_budget < -1)
        return dk_err_set(err, DK_EXIT_USAGE, "dk_agent_run: a system prompt, the post-tool prompt, an agent LLM "
                          "client and budgets >= 0 (token budget -1 = unlimited) are needed");
    loop_state s = {.in = in, .r = r, .remaining_calls = in->budgets.agent_llm_calls,
                    .remaining_interactions = in->budgets.model_interactions};
    r->messages = cJSON_CreateArray();
    char *system = system_content(in);
    add_message(r->messages, "system", system);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_GetArrayItem(r->messages, 0), "cache_control"), "type",
                            "ephemeral");
    free(system);
    add_message(r->messages, "user", in->first_user_message ? in->first_user_message : "");

    for (;;) {
        if (s.remaining_calls <= 0) {  /* the seed: assert remaining_agent_calls > 0 */
            r->outcome = DK_AGENT_CALLS_EXHAUSTED;
            dk_err_set(&r->err, DK_EXIT_RUNTIME, "Agent LLM call budget exhausted: %lld calls without a FINAL",
                       (long long)in->budgets.agent_llm_calls);
            break;
        }
        LOG_INFO("Agent LLM: thinking...");
        char *text = agent_llm_call(&s);
        if (!text) {
            r->outcome = DK_AGENT_FAILED;
            break;
        }
        if (in->budgets.token_budget != -1 && r->agent_completion_tokens > in->budgets.token_budget) {
            r->outcome = DK_AGENT_TOKENS_EXHAUSTED;  /* the seed asserts before keeping the answer */
            dk_err_set(&r->err, DK_EXIT_RUNTIME, "Agent LLM token budget exceeded: %lld > %lld",
                       (long long)r->agent_completion_tokens, (long long)in->budgets.token_budget);
            free(text);
            break;
        }
        s.remaining_calls--;
        add_message(r->messages, "assistant", text);
        char *last = agent_last_line(text);

        const char *parse_error = NULL;
        char *description = NULL;
        dk_agent_parse fp = dk_agent_extract_final(text, &description);
        if (fp == DK_AGENT_PARSE_OK) {
            r->outcome = DK_AGENT_FINAL;
            r->description = description;
            free(last);
            free(text);
            break;
        }
        if (fp == DK_AGENT_PARSE_ERROR) parse_error = "Output grammar error around FINAL(...).";

        char *tool = NULL;
        cJSON *args = NULL;
        if (!parse_error) {
            dk_agent_parse cp = dk_agent_extract_call(text, &tool, &args);
            if (cp == DK_AGENT_PARSE_ERROR) {  /* the model may have forgotten the closing parenthesis */
                char *repaired = dk_sprintf("%s)", text);
                if (dk_agent_extract_call(repaired, &tool, &args) != DK_AGENT_PARSE_OK)
                    parse_error = "Output grammar error around CALL(...).";
                free(repaired);
            } else if (cp == DK_AGENT_PARSE_NONE) {
                parse_error = "Output grammar error: expected CALL(...) or FINAL(...).";
            }
        }
        bool go_on = true;
        if (parse_error) format_error(&s, last, parse_error);
        else go_on = run_tool(&s, tool, args);
        free(tool);
        cJSON_Delete(args);
        free(last);
        free(text);
        if (!go_on) break;
    }
    r->model_interactions_used = in->budgets.model_interactions - s.remaining_interactions;
    return 0;
}

void dk_agent_result_free(dk_agent_result *r) {
    free(r->description);
    cJSON_Delete(r->messages);
    r->description = NULL;
    r->messages = NULL;
}

static const char *outcome_name(dk_agent_outcome o) {
    switch (o) {
    case DK_AGENT_FINAL: return "final";
    case DK_AGENT_CALLS_EXHAUSTED: return "calls_exhausted";
    case DK_AGENT_TOKENS_EXHAUSTED: return "tokens_exhausted";
    default: return "failed";
    }
}

cJSON *dk_agent_stats_json(const dk_agent_result *r) {
    cJSON *s = cJSON_CreateObject();
    dk_pyjson_add_int(s, "agent_llm_calls_used", r->agent_llm_calls_used);
    dk_pyjson_add_int(s, "agent_prompt_tokens", r->agent_prompt_tokens);
    dk_pyjson_add_int(s, "agent_completion_tokens", r->agent_completion_tokens);
    dk_pyjson_add_int(s, "agent_total_tokens", r->agent_total_tokens);
    dk_pyjson_add_int(s, "model_interactions_used", r->model_interactions_used);
    cJSON_AddStringToObject(s, "outcome", outcome_name(r->outcome));
    return s;
}
