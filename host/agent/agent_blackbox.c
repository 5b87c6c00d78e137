/* agent_blackbox.c — the blackbox agent's budgeted tool, ask_model {"prompts": [str, ...]} -> {"base": [str, ...],
 * "finetuned": [str, ...]}: each prompt is one single-user-turn chat (the organism's agent system prompt first
 * when it has one) sent to both models, which are served over HTTP (diffkit serve, vLLM, a hosted endpoint) with
 * one client each. The seed formats the chat with the tokenizer's template and generates with thinking off; here
 * the server applies the template, and disable_thinking sends chat_template_kwargs {"enable_thinking": false}.
 * All prompts of a call are in flight at once (dk_llm_chat_many), the base model's and the finetuned model's at
 * the same time (one thread each: a client is used by one thread).
 *
 * The prompts come from the agent LLM: anything but a non-empty list of non-empty strings (or one string), more
 * than max_prompts of them or one longer than max_prompt_chars is answered with DK_TOOL_PARAM_ERROR before
 * anything is sent (nothing is charged). An endpoint that fails after its client's attempts ends the run
 * (DK_TOOL_FAILED): the seed's run dies there too, and an answer made up of errors would mislead the agent. */
#include "agent/agent.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_internal.h"
#include "agent/pyjson.h"
#include "core/error.h"
#include "io/json_value.h"

/* Interactions ask_model costs before it runs (the seed's get_pre_tool_cost: len(list(prompts))). It must not
 * fail on bad arguments (the loop calls it before checking them): a list costs its length; a string costs 1 — the
 * seed charges len(list(str)), its character count, which is a bug (ask_model itself takes the string as one
 * prompt); an object its member count, as len(list(dict)); anything else 0 (the tool then refuses it). */
static int64_t ask_model_pre_cost(void *ctx, const cJSON *args) {
    (void)ctx;
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(args, "prompts");
    if (cJSON_IsArray(prompts) || cJSON_IsObject(prompts)) return cJSON_GetArraySize(prompts);
    if (cJSON_IsString(prompts)) return 1;
    return 0;
}

/* NULL when the prompts are usable, else what is wrong (malloc'ed). */
static char *check_prompts(const dk_agent_models *m, const cJSON *prompts) {
    if (!cJSON_IsArray(prompts) && !cJSON_IsString(prompts))
        return dk_sprintf("prompts must be a list of strings (or one string), got %s", dk_json_kind(prompts));
    int n = cJSON_IsString(prompts) ? 1 : cJSON_GetArraySize(prompts);
    if (n == 0) return dk_strdup("prompts is empty: give at least one prompt");
    if (m->max_prompts > 0 && n > m->max_prompts)
        return dk_sprintf("prompts has %d items; one ask_model call takes at most %d", n, m->max_prompts);
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_IsString(prompts) ? prompts : cJSON_GetArrayItem(prompts, i);
        if (!cJSON_IsString(p)) return dk_sprintf("prompts[%d] is %s, not a string", i, dk_json_kind(p));
        if (p->valuestring[0] == '\0') return dk_sprintf("prompts[%d] is an empty string", i);
        size_t chars = agent_py_len(p->valuestring);
        if (m->max_prompt_chars > 0 && chars > (size_t)m->max_prompt_chars)
            return dk_sprintf("prompts[%d] has %zu characters; a prompt may have at most %d", i, chars,
                              m->max_prompt_chars);
    }
    return NULL;
}

/* One model's share of a call: n requests through its client. */
typedef struct model_batch {
    dk_llm_client *client;
    const dk_llm_request *reqs;  /* [n] */
    int n;
    dk_llm_response *resps;      /* [n] */
    int failed;
} model_batch;

static void *run_batch(void *arg) {
    model_batch *b = arg;
    b->failed = dk_llm_chat_many(b->client, b->reqs, b->n, b->resps);
    return NULL;
}

/* The first failure of a batch as the tool's error. */
static void batch_error(const model_batch *b, const char *which, dk_err *err) {
    for (int i = 0; i < b->n; i++)
        if (dk_err_is_set(&b->resps[i].err)) {
            dk_err_set(err, DK_EXIT_RUNTIME, "ask_model: the %s model (%s) did not answer prompt %d of %d: %s", which,
                       dk_llm_client_model(b->client), i + 1, b->n, b->resps[i].err.msg);
            return;
        }
}

static dk_tool_status ask_model_run(void *ctx, const cJSON *args, cJSON **output, char **message, dk_err *err) {
    dk_agent_models *m = ctx;
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(args, "prompts");
    char *problem = check_prompts(m, prompts);
    if (problem) {
        *message = problem;
        return DK_TOOL_PARAM_ERROR;
    }
    int n = cJSON_IsString(prompts) ? 1 : cJSON_GetArraySize(prompts);
    int per_chat = m->system_prompt && m->system_prompt[0] ? 2 : 1;
    dk_llm_message *msgs = dk_calloc((size_t)n * (size_t)per_chat, sizeof *msgs);  /* [n][per_chat] */
    dk_llm_request *reqs = dk_calloc((size_t)n, sizeof *reqs);
    cJSON *extra = NULL;
    if (m->disable_thinking) {
        extra = cJSON_CreateObject();
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(extra, "chat_template_kwargs"), "enable_thinking", 0);
    }
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_IsString(prompts) ? prompts : cJSON_GetArrayItem(prompts, i);
        dk_llm_message *chat = &msgs[i * per_chat];
        if (per_chat == 2) chat[0] = (dk_llm_message){.role = "system", .content = m->system_prompt};
        chat[per_chat - 1] = (dk_llm_message){.role = "user", .content = p->valuestring};
        reqs[i] = dk_llm_request_init(chat, per_chat);
        reqs[i].temperature = m->temperature;
        reqs[i].max_tokens = m->max_new_tokens;
        reqs[i].extra_body = extra;
    }
    dk_llm_response *resps = dk_calloc(2 * (size_t)n, sizeof *resps);  /* [base n | finetuned n] */
    model_batch base = {m->base, reqs, n, resps, 0}, finetuned = {m->finetuned, reqs, n, resps + n, 0};
    pthread_t thread;
    bool threaded = pthread_create(&thread, NULL, run_batch, &finetuned) == 0;
    run_batch(&base);
    if (threaded) pthread_join(thread, NULL);
    else run_batch(&finetuned);

    dk_tool_status status = DK_TOOL_OK;
    if (base.failed || finetuned.failed) {
        batch_error(&base, "base", err);
        batch_error(&finetuned, "finetuned", err);
        status = DK_TOOL_FAILED;
    } else {
        *output = cJSON_CreateObject();
        cJSON *b = cJSON_AddArrayToObject(*output, "base");
        cJSON *f = cJSON_AddArrayToObject(*output, "finetuned");
        for (int i = 0; i < n; i++) {
            cJSON_AddItemToArray(b, cJSON_CreateString(resps[i].choices[0].content));
            cJSON_AddItemToArray(f, cJSON_CreateString(resps[n + i].choices[0].content));
        }
    }
    for (int i = 0; i < 2 * n; i++) dk_llm_response_free(&resps[i]);
    free(resps);
    cJSON_Delete(extra);
    free(reqs);
    free(msgs);
    return status;
}

static const char *const ask_model_params[] = {"prompts"};

void dk_agent_blackbox_tools(dk_agent_models *models, dk_hypothesis_board *board, dk_agent_tool tools[2]) {
    tools[0] = (dk_agent_tool){.name = "ask_model", .params = ask_model_params, .n_params = 1, .var_kwargs = false,
                               .pre_cost = ask_model_pre_cost, .run = ask_model_run, .ctx = models};
    agent_hypothesis_tool(board, &tools[1]);
}
