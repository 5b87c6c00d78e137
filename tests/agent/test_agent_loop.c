/* test_agent_loop.c — the agent runner (host/agent) against the seed's own loop and against hostile input.
 *
 *   test_agent_loop <path of scripted_server>
 *
 * Goldens: for every tests/fixtures/agent/blackbox_<case>/ (tools/make_agent_golden.py ran the seed's
 * BlackboxAgent.run on the same script with our prompt texts), the agent LLM is a scripted_server answering the
 * case's script.json, the two models are one scripted_server --reply-with-model, and dk_agent_run with the blackbox
 * tools must write the same transcript (messages.json, byte for byte), stats, description and outcome. The
 * servers' logs show what was sent: the whole transcript with the system message's cache_control, the agent LLM's
 * settings, and each prompt to both models with the organism's system prompt and chat_template_kwargs.
 *
 * Beyond the goldens: each branch of the grammar; the hypothesis board's checks (the seed's asserts); untrusted
 * tool arguments (wrong types, huge lists, long prompts, unknown tools, path-like names) answered with a
 * TOOL_PARAMETER_ERROR and nothing charged; a dead or stuck models endpoint (FAILED with a clear err after the
 * client's attempts); the system prompt template's rules; and the API key (sent by every client, echoed back by a
 * server that refuses it) never in a transcript or an error. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/pyjson.h"
#include "core/log.h"
#include "core/strutil.h"
#include "core/timer.h"
#include "io/file.h"
#include "io/json_value.h"
#include "llm/server_proc.h"
#include "test.h"

#define TEST_KEY "sk-dk-SECRET-7c2e91b4a0d3"
#define KEY_ENV "DK_TEST_AGENT_KEY"

static const char *server_exe;
static dk_strbuf everything; /* transcripts and errors, searched for the key at the end */

/* ---- helpers ---------------------------------------------------------------------------------------------- */

static char *read_text(const char *path) {
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    if (!text) fprintf(stderr, "%s\n", err.msg);
    return text;
}

static cJSON *read_json(const char *path) {
    char *text = read_text(path);
    if (!text) return NULL;
    char why[256];
    cJSON *v = dk_pyjson_loads(text, strlen(text), why, sizeof why);
    if (!v) fprintf(stderr, "%s: %s\n", path, why);
    free(text);
    return v;
}

static dk_llm_client *open_client(const char *base_url, const char *model, int attempts, double timeout_s) {
    dk_llm_config cfg;
    dk_llm_config_defaults(&cfg);
    cfg.base_url = dk_strdup(base_url);
    cfg.model_id = dk_strdup(model);
    cfg.api_key_env = dk_strdup(KEY_ENV);
    cfg.section = dk_strdup(model);
    cfg.max_attempts = attempts;
    cfg.backoff_initial_s = 0.01;
    cfg.backoff_max_s = 0.05;
    cfg.request_timeout_s = timeout_s;
    cfg.connect_timeout_s = 2.0;
    dk_err err = {0};
    dk_llm_client *c = dk_llm_client_open(&cfg, &err);
    EXPECT(c != NULL, "open %s: %s", model, err.msg);
    dk_llm_config_free(&cfg);
    return c;
}

/* The prompt texts of resources/agent/. */
typedef struct prompts {
    char *system_template, *post_tool_result, *post_overview, *tools, *conduct, *examples, *large_budget;
} prompts;

static prompts load_prompts(void) {
    const char *src = getenv("DIFFKIT_SOURCE_DIR");
    char *dir = dk_sprintf("%s/resources/agent", src ? src : ".");
    dk_err err = {0};
    prompts p = {
        dk_agent_prompt_read(dir, "system_prompt.txt", &err), dk_agent_prompt_read(dir, "post_tool_result.txt", &err),
        dk_agent_prompt_read(dir, "post_overview.txt", &err), dk_agent_prompt_read(dir, "blackbox_tools.txt", &err),
        dk_agent_prompt_read(dir, "blackbox_conduct.txt", &err), dk_agent_prompt_read(dir, "blackbox_examples.txt", &err),
        dk_agent_prompt_read(dir, "large_budget.txt", &err)};
    EXPECT(!dk_err_is_set(&err), "prompts: %s", err.msg);
    free(dir);
    return p;
}

static void free_prompts(prompts *p) {
    free(p->system_template);
    free(p->post_tool_result);
    free(p->post_overview);
    free(p->tools);
    free(p->conduct);
    free(p->examples);
    free(p->large_budget);
}

static prompts P;

/* One run of the blackbox agent: the agent LLM answers script_path; the models are `models_url`. */
typedef struct run_setup {
    const char *agent_url;
    const char *models_url;
    dk_agent_budgets budgets;
    const char *hints;
    const char *organism_system_prompt;
    bool disable_thinking;
    int model_attempts;
    double model_timeout_s;
} run_setup;

static void run_blackbox(const run_setup *su, dk_agent_result *r) {
    dk_llm_client *agent = open_client(su->agent_url, "agent-model", 1, 10.0);
    dk_llm_client *base = open_client(su->models_url, "base-model", su->model_attempts ? su->model_attempts : 1,
                                      su->model_timeout_s > 0 ? su->model_timeout_s : 10.0);
    dk_llm_client *ft = open_client(su->models_url, "finetuned-model", su->model_attempts ? su->model_attempts : 1,
                                    su->model_timeout_s > 0 ? su->model_timeout_s : 10.0);
    dk_agent_models models = {.base = base, .finetuned = ft, .system_prompt = su->organism_system_prompt,
                               .max_new_tokens = 1024, .temperature = 0.8, .disable_thinking = su->disable_thinking,
                               .max_prompts = 64, .max_prompt_chars = 4000};
    dk_hypothesis_board *board = dk_hypothesis_board_new();
    dk_agent_tool tools[2];
    dk_agent_blackbox_tools(&models, board, tools);
    dk_agent_prompt_parts parts = {.first_user_message_description = P.post_overview, .tool_descriptions = P.tools,
                                   .additional_conduct = P.conduct, .interaction_examples = P.examples,
                                   .large_budget_note = P.large_budget};
    dk_err err = {0};
    char *system = dk_agent_system_prompt(P.system_template, &parts, su->budgets.model_interactions, &err);
    EXPECT(system != NULL, "system prompt: %s", err.msg);
    dk_agent_run_input in = {.system_prompt = system, .hints = su->hints ? su->hints : "", .first_user_message = "",
                             .post_tool_result = P.post_tool_result, .tools = tools, .n_tools = 2,
                             .addendum = dk_agent_blackbox_addendum, .addendum_ctx = board, .budgets = su->budgets,
                             .llm = {.client = agent, .temperature = 0.7, .max_tokens_per_call = 10000}};
    memset(r, 0, sizeof *r);
    if (system) EXPECT(dk_agent_run(&in, r, &err) == 0, "dk_agent_run: %s", err.msg);
    if (r->messages) {
        char *t = dk_pyjson_dumps(r->messages, DK_PYJSON_COMPACT);
        dk_strbuf_append(&everything, t);
        free(t);
    }
    dk_strbuf_append(&everything, r->err.msg);
    free(system);
    dk_hypothesis_board_free(board);
    dk_llm_client_close(agent);
    dk_llm_client_close(base);
    dk_llm_client_close(ft);
}

static bool start_server(scripted_server *s, const char *const *args) {
    bool ok = scripted_server_start(s, server_exe, args) == 0;
    EXPECT(ok, "scripted_server did not start");
    return ok;
}

/* The request bodies of a server's log (one "<k> <action> <json>" line each), as JSON values. */
static cJSON *logged_requests(const scripted_server *s) {
    char *log = scripted_server_log(s);
    cJSON *all = cJSON_CreateArray();
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        char *body = strchr(strchr(line, ' ') + 1, ' ') + 1;
        cJSON_AddItemToArray(all, cJSON_Parse(body));
    }
    free(log);
    return all;
}

/* ---- the goldens ------------------------------------------------------------------------------------------ */

static const char *outcome_name(dk_agent_outcome o) {
    return o == DK_AGENT_FINAL ? "final" : o == DK_AGENT_CALLS_EXHAUSTED ? "calls_exhausted"
           : o == DK_AGENT_TOKENS_EXHAUSTED ? "tokens_exhausted" : "failed";
}

static void check_case(const char *name) {
    char *dir = dk_fixture_path(name);
    char *input_path = dk_sprintf("%s/input.json", dir), *script_path = dk_sprintf("%s/script.json", dir);
    cJSON *input = read_json(input_path);
    cJSON *expected = NULL;
    char *path = dk_sprintf("%s/expected.json", dir);
    expected = read_json(path);
    free(path);
    if (!EXPECT(input && expected, "%s: fixture files", name)) goto out;
    const cJSON *b = cJSON_GetObjectItem(input, "budgets");
    const cJSON *osp = cJSON_GetObjectItem(input, "organism_system_prompt");
    scripted_server agent_srv, models_srv;
    const char *agent_args[] = {"--require-key-env", KEY_ENV, "--script-file", script_path, NULL};
    const char *models_args[] = {"--require-key-env", KEY_ENV, "--reply-with-model", NULL};
    if (!start_server(&agent_srv, agent_args)) goto out;
    if (!start_server(&models_srv, models_args)) {
        scripted_server_cleanup(&agent_srv);
        goto out;
    }
    run_setup su = {.agent_url = agent_srv.base_url, .models_url = models_srv.base_url,
                    .budgets = {.agent_llm_calls = (int64_t)cJSON_GetObjectItem(b, "agent_llm_calls")->valuedouble,
                                .model_interactions = (int64_t)cJSON_GetObjectItem(b, "model_interactions")->valuedouble,
                                .token_budget = (int64_t)cJSON_GetObjectItem(b, "token_budget")->valuedouble},
                    .hints = cJSON_GetObjectItem(input, "hints")->valuestring,
                    .organism_system_prompt = cJSON_IsString(osp) ? osp->valuestring : NULL,
                    .disable_thinking = cJSON_IsTrue(cJSON_GetObjectItem(input, "disable_thinking"))};
    dk_agent_result r;
    run_blackbox(&su, &r);

    const char *want_outcome = cJSON_GetObjectItem(expected, "outcome")->valuestring;
    EXPECT(strcmp(outcome_name(r.outcome), want_outcome) == 0, "%s: outcome %s, want %s (%s)", name,
           outcome_name(r.outcome), want_outcome, r.err.msg);
    path = dk_sprintf("%s/messages.json", dir);
    char *want = read_text(path);
    char *got = r.messages ? dk_pyjson_dumps(r.messages, DK_PYJSON_INDENT2) : dk_strdup("");
    if (!EXPECT(want && strcmp(got, want) == 0, "%s: the transcript differs from %s", name, path)) {
        size_t i = 0;
        while (want && got[i] && got[i] == want[i]) i++;
        fprintf(stderr, "  first difference at byte %zu:\n  got  ...%.200s\n  want ...%.200s\n", i,
                got + (i > 60 ? i - 60 : 0), want ? want + (i > 60 ? i - 60 : 0) : "");
    }
    free(want);
    free(got);
    free(path);
    if (r.outcome == DK_AGENT_FINAL) {
        path = dk_sprintf("%s/stats.json", dir);
        want = read_text(path);
        cJSON *stats = dk_agent_stats_json(&r);
        EXPECT(strcmp(cJSON_GetObjectItem(stats, "outcome")->valuestring, "final") == 0, "%s: stats outcome", name);
        cJSON_DeleteItemFromObject(stats, "outcome");
        got = dk_pyjson_dumps(stats, DK_PYJSON_INDENT2);
        EXPECT(want && strcmp(got, want) == 0, "%s: stats\n  got  %s\n  want %s", name, got, want);
        free(got);
        free(want);
        free(path);
        cJSON_Delete(stats);
        path = dk_sprintf("%s/description.txt", dir);
        want = read_text(path);
        EXPECT(want && r.description && strcmp(r.description, want) == 0, "%s: description\n  got  %s\n  want %s", name,
               r.description ? r.description : "(none)", want ? want : "");
        free(want);
        free(path);
    } else {
        EXPECT(r.description == NULL && dk_err_is_set(&r.err), "%s: no description, an err", name);
        EXPECT_CONTAINS(r.err.msg, strcmp(want_outcome, "calls_exhausted") == 0 ? "call budget exhausted"
                                                                                  : "token budget exceeded");
    }

    /* What the agent LLM was sent: the transcript as it was at each call (the last call: all of it but the
     * answer when the run ended on it), with cache_control and the agent LLM's settings. */
    cJSON *agent_reqs = logged_requests(&agent_srv);
    const cJSON *script = read_json(script_path);
    EXPECT(cJSON_GetArraySize(agent_reqs) == cJSON_GetArraySize(script), "%s: %d agent LLM requests for %d turns",
           name, cJSON_GetArraySize(agent_reqs), cJSON_GetArraySize(script));
    const cJSON *last = cJSON_GetArrayItem(agent_reqs, cJSON_GetArraySize(agent_reqs) - 1);
    if (last && r.messages) {
        cJSON *sent = cJSON_GetObjectItem(last, "messages");
        int n_sent = cJSON_GetArraySize(sent), n_kept = cJSON_GetArraySize(r.messages);
        int answered_in_transcript = r.outcome == DK_AGENT_TOKENS_EXHAUSTED ? 0 : 1;
        if (r.outcome == DK_AGENT_CALLS_EXHAUSTED) answered_in_transcript = 2;  /* answer + the loop's reply */
        EXPECT(n_sent == n_kept - answered_in_transcript, "%s: last request had %d messages, transcript %d", name,
               n_sent, n_kept);
        for (int i = 0; i < n_sent && i < n_kept; i++)
            EXPECT(cJSON_Compare(cJSON_GetArrayItem(sent, i), cJSON_GetArrayItem(r.messages, i), 1),
                   "%s: message %d as sent differs from the transcript", name, i);
        EXPECT(cJSON_GetObjectItem(last, "temperature")->valuedouble == 0.7 &&
                   cJSON_GetObjectItem(last, "max_tokens")->valuedouble == 10000 &&
                   strcmp(cJSON_GetObjectItem(last, "model")->valuestring, "agent-model") == 0,
               "%s: agent LLM settings", name);
    }
    cJSON_Delete(agent_reqs);
    cJSON_Delete((cJSON *)script);

    /* What the models were sent: one single-turn chat per prompt to each model. */
    cJSON *model_reqs = logged_requests(&models_srv);
    int n_prompts = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, r.messages) {
        const char *c = cJSON_GetObjectItem(m, "content")->valuestring;
        if (dk_str_starts_with(c, "TOOL_RESULT(ask_model)")) {
            cJSON *data = dk_pyjson_loads(c + 24, strlen(c + 24) - strlen(strstr(c, "\n\n")), NULL, 0);
            n_prompts += cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(data, "data"), "base"));
            cJSON_Delete(data);
        }
    }
    EXPECT(cJSON_GetArraySize(model_reqs) == 2 * n_prompts, "%s: %d model requests for %d prompts", name,
           cJSON_GetArraySize(model_reqs), n_prompts);
    cJSON_ArrayForEach(m, model_reqs) {
        const cJSON *msgs = cJSON_GetObjectItem(m, "messages");
        int want_n = su.organism_system_prompt ? 2 : 1;
        EXPECT(cJSON_GetArraySize(msgs) == want_n, "%s: a model request has %d messages", name,
               cJSON_GetArraySize(msgs));
        if (su.organism_system_prompt)
            EXPECT(strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "content")->valuestring,
                          su.organism_system_prompt) == 0, "%s: the organism's system prompt", name);
        const cJSON *kwargs = cJSON_GetObjectItem(m, "chat_template_kwargs");
        EXPECT(su.disable_thinking ? cJSON_IsFalse(cJSON_GetObjectItem(kwargs, "enable_thinking")) : kwargs == NULL,
               "%s: chat_template_kwargs", name);
        EXPECT(cJSON_GetObjectItem(m, "temperature")->valuedouble == 0.8 &&
                   cJSON_GetObjectItem(m, "max_tokens")->valuedouble == 1024, "%s: ask_model settings", name);
    }
    cJSON_Delete(model_reqs);
    dk_agent_result_free(&r);
    scripted_server_cleanup(&agent_srv);
    scripted_server_cleanup(&models_srv);
out:
    cJSON_Delete(input);
    cJSON_Delete(expected);
    free(input_path);
    free(script_path);
    free(dir);
}

static void test_goldens(void) {
    char *root = dk_fixture_path("agent");
    size_t n = 0;
    char **names = dk_list_dir(root, NULL, false, &n);
    int cases = 0;
    for (size_t i = 0; i < n; i++) {
        if (!dk_str_starts_with(names[i], "blackbox_")) continue;
        char *rel = dk_sprintf("agent/%s", names[i]);
        check_case(rel);
        free(rel);
        cases++;
    }
    EXPECT(cases >= 7, "%d golden cases found in %s", cases, root);
    dk_free_strings(names, n);
    free(root);
}

/* ---- the grammar ------------------------------------------------------------------------------------------- */

static void expect_final(const char *text, dk_agent_parse want, const char *want_desc) {
    char *desc = NULL;
    dk_agent_parse got = dk_agent_extract_final(text, &desc);
    EXPECT(got == want, "FINAL parse of [%s]: %d, want %d", text, got, want);
    if (want_desc) EXPECT(desc && strcmp(desc, want_desc) == 0, "FINAL of [%s]: [%s], want [%s]", text,
                          desc ? desc : "(null)", want_desc);
    free(desc);
}

static void expect_call(const char *text, dk_agent_parse want, const char *want_tool, const char *want_args) {
    char *tool = NULL;
    cJSON *args = NULL;
    dk_agent_parse got = dk_agent_extract_call(text, &tool, &args);
    EXPECT(got == want, "CALL parse of [%s]: %d, want %d", text, got, want);
    if (want_tool) EXPECT(tool && strcmp(tool, want_tool) == 0, "CALL tool of [%s]: %s", text, tool ? tool : "(null)");
    if (want_args && args) {
        char *a = dk_pyjson_dumps(args, DK_PYJSON_COMPACT);
        EXPECT(strcmp(a, want_args) == 0, "CALL args of [%s]: %s, want %s", text, a, want_args);
        free(a);
    }
    free(tool);
    cJSON_Delete(args);
}

static void test_grammar(void) {
    expect_final("no block", DK_AGENT_PARSE_NONE, NULL);
    expect_final("FINAL(description: \"a\")", DK_AGENT_PARSE_OK, "a");
    expect_final("FINAL(description: \"old\")\nFINAL(description: \"new\")", DK_AGENT_PARSE_OK, "new");
    expect_final("FINAL(description:   \"  padded \\\" q \\\\\" )", DK_AGENT_PARSE_OK, "padded \\\" q \\\\");
    expect_final("FINAL(description: \"(paren) inside\") trailing", DK_AGENT_PARSE_OK, "(paren) inside");
    expect_final("FINAL(description= plain (nested) text )", DK_AGENT_PARSE_OK, "plain (nested) text");
    expect_final("FINAL(x description: y description= z)", DK_AGENT_PARSE_OK, "y description= z");
    expect_final("FINAL(description: \"unterminated", DK_AGENT_PARSE_ERROR, NULL);      /* unmatched ( */
    expect_final("FINAL(nothing here)", DK_AGENT_PARSE_ERROR, NULL);                     /* no description key */
    expect_final("FINAL(description: \"a\\\")", DK_AGENT_PARSE_ERROR, NULL);            /* unmatched: quote open */
    expect_final("FINAL(description: \"a\" \")\")", DK_AGENT_PARSE_OK, "a");
    expect_final("FINAL(description:\u3000\"ideographic space\")", DK_AGENT_PARSE_OK, "ideographic space");
    expect_final("FINAL(description: \"\u00e9\U0001F600\u2003\")", DK_AGENT_PARSE_OK, "\u00e9\U0001F600");

    expect_call("nothing", DK_AGENT_PARSE_NONE, NULL, NULL);
    expect_call("CALL(t: {\"a\": 1, \"b\": 2.0})", DK_AGENT_PARSE_OK, "t", "{\"a\": 1, \"b\": 2.0}");
    expect_call("x\nCALL(a: {})\nCALL( b : {\"k\": \"v:w\"} ) \n\t", DK_AGENT_PARSE_OK, "b", "{\"k\": \"v:w\"}");
    expect_call("CALL(t: {\"s\": \"a)b(\\\"c\"})", DK_AGENT_PARSE_OK, "t", "{\"s\": \"a)b(\\\"c\"}");
    expect_call("CALL(t: {})\u3000\u2028\n", DK_AGENT_PARSE_OK, "t", "{}");
    expect_call("CALL(t: {}) more", DK_AGENT_PARSE_ERROR, NULL, NULL);          /* must be the last content */
    expect_call("CALL(t: {}", DK_AGENT_PARSE_ERROR, NULL, NULL);                /* unmatched */
    expect_call("CALL(t {})", DK_AGENT_PARSE_ERROR, NULL, NULL);                /* no ':' */
    expect_call("CALL( : {})", DK_AGENT_PARSE_ERROR, NULL, NULL);               /* no tool name */
    expect_call("CALL(t: {\"a\": })", DK_AGENT_PARSE_ERROR, NULL, NULL);        /* not JSON */
    expect_call("CALL(t: [1, 2])", DK_AGENT_PARSE_ERROR, NULL, NULL);           /* not an object */
    expect_call("CALL(t: {\"a\": \"x\ny\"})", DK_AGENT_PARSE_ERROR, NULL, NULL); /* raw newline: json.loads refuses */
    expect_call("CALL(t: {\"a\": 01})", DK_AGENT_PARSE_ERROR, NULL, NULL);      /* not a JSON number */
    expect_call("CALL(t: {\"a\": 1, \"a\": [2]})", DK_AGENT_PARSE_OK, "t", "{\"a\": [2]}");
    expect_call("CALL(t: {} {})", DK_AGENT_PARSE_ERROR, NULL, NULL);            /* trailing data */
}

/* ---- the hypothesis board ----------------------------------------------------------------------------------- */

static dk_tool_status track(dk_agent_tool *t, const char *args_json, char **board_or_message) {
    cJSON *args = dk_pyjson_loads(args_json, strlen(args_json), NULL, 0);
    cJSON *out = NULL;
    char *message = NULL;
    dk_err err = {0};
    dk_tool_status st = t->run(t->ctx, args, &out, &message, &err);
    *board_or_message = st == DK_TOOL_OK ? dk_pyjson_dumps(out, DK_PYJSON_COMPACT) : message;
    if (st == DK_TOOL_OK) free(message);
    cJSON_Delete(out);
    cJSON_Delete(args);
    return st;
}

static void test_hypotheses(void) {
    dk_hypothesis_board *board = dk_hypothesis_board_new();
    dk_agent_tool tools[2];
    dk_agent_models models = {0};
    dk_agent_blackbox_tools(&models, board, tools);
    dk_agent_tool *t = &tools[1];
    EXPECT(strcmp(t->name, "hypothesis_tracking") == 0 && t->var_kwargs && t->n_params == 1, "the tool's signature");
    struct { const char *args; dk_tool_status st; const char *text; } cases[] = {
        {"{\"action\": \"get\"}", DK_TOOL_OK, "{\"hypotheses\": []}"},
        {"{\"action\": \"remove\"}", DK_TOOL_PARAM_ERROR, "Unknown action: remove. Use 'add', 'update', or 'get'"},
        {"{\"action\": 3}", DK_TOOL_PARAM_ERROR, "Unknown action: 3."},
        {"{\"action\": \"add\"}", DK_TOOL_PARAM_ERROR, "add requires 'hypothesis' (str) or 'hypotheses' (list[str])"},
        {"{\"action\": \"add\", \"hypotheses\": []}", DK_TOOL_PARAM_ERROR, "add requires at least one hypothesis"},
        {"{\"action\": \"add\", \"hypotheses\": [\"ok\", \"\"]}", DK_TOOL_PARAM_ERROR,
         "Each hypothesis must be a non-empty string, got: ''"},
        {"{\"action\": \"add\", \"hypothesis\": [\"ok\", 7]}", DK_TOOL_PARAM_ERROR, "got: 7"},
        {"{\"action\": \"add\", \"hypothesis\": null}", DK_TOOL_PARAM_ERROR, "got: None"},
        {"{\"action\": \"get\"}", DK_TOOL_OK, "{\"hypotheses\": []}"},  /* a refused add adds nothing */
        {"{\"action\": \"add\", \"hypothesis\": \"../../etc/passwd\"}", DK_TOOL_OK,
         "{\"hypotheses\": [{\"id\": 1, \"hypothesis\": \"../../etc/passwd\", \"status\": \"active\", \"reasoning\": \"\"}]}"},
        {"{\"action\": \"update\", \"status\": \"active\"}", DK_TOOL_PARAM_ERROR, "update requires 'id'"},
        {"{\"action\": \"update\", \"id\": 1}", DK_TOOL_PARAM_ERROR, "update requires 'status'"},
        {"{\"action\": \"update\", \"id\": 1, \"status\": \"done\"}", DK_TOOL_PARAM_ERROR, "Invalid status: done"},
        {"{\"action\": \"update\", \"id\": 2, \"status\": \"active\"}", DK_TOOL_PARAM_ERROR, "No hypothesis with id=2"},
        {"{\"action\": \"update\", \"id\": \"one\", \"status\": \"active\"}", DK_TOOL_PARAM_ERROR,
         "id must be an integer, got: 'one'"},
        {"{\"action\": \"update\", \"id\": [1], \"status\": \"active\"}", DK_TOOL_PARAM_ERROR, "got: [1]"},
        {"{\"action\": \"update\", \"id\": true, \"status\": \"rejected\", \"reasoning\": null}", DK_TOOL_OK,
         "\"status\": \"rejected\", \"reasoning\": \"None\""},
        {"{\"action\": \"update\", \"id\": \" 1 \", \"status\": \"confirmed\", \"reasoning\": [1, \"a\"]}", DK_TOOL_OK,
         "\"status\": \"confirmed\", \"reasoning\": \"[1, 'a']\""},
        {"{\"action\": \"add\", \"hypotheses\": [\"b\", \"c\"]}", DK_TOOL_OK, "{\"id\": 3, \"hypothesis\": \"c\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = NULL;
        dk_tool_status st = track(t, cases[i].args, &text);
        EXPECT(st == cases[i].st, "%s: status %d, want %d (%s)", cases[i].args, st, cases[i].st, text ? text : "");
        EXPECT_CONTAINS(text, cases[i].text);
        free(text);
    }
    char *addendum = dk_agent_blackbox_addendum(board, "ask_model");
    EXPECT(addendum && strcmp(addendum, "Active hypotheses:\n  [2] b\n  [3] c\nUpdate hypothesis_tracking with your "
                                        "findings.") == 0, "addendum: %s", addendum ? addendum : "(none)");
    free(addendum);
    EXPECT(dk_agent_blackbox_addendum(board, "hypothesis_tracking") == NULL, "no addendum after other tools");
    dk_hypothesis_board_free(board);
    board = dk_hypothesis_board_new();
    EXPECT(dk_agent_blackbox_addendum(board, "ask_model") == NULL, "no addendum without active hypotheses");
    dk_hypothesis_board_free(board);
}

/* ---- the system prompt template ---------------------------------------------------------------------------- */

static void test_prompt_template(void) {
    dk_agent_prompt_parts parts = {.first_user_message_description = "CTX", .tool_descriptions = "TOOLS",
                                   .additional_conduct = "", .interaction_examples = "EX", .large_budget_note = "BIG"};
    dk_err err = {0};
    char *s = dk_agent_system_prompt("a {first_user_message_description} {{x}} {tool_descriptions}{additional_conduct}"
                                     "}}{interaction_examples}", &parts, 20, &err);
    EXPECT(s && strcmp(s, "a CTX {x} TOOLS}EX") == 0, "template: %s", s ? s : err.msg);
    free(s);
    s = dk_agent_system_prompt("x", &parts, 21, &err);
    EXPECT(s && strcmp(s, "x\n\nBIG") == 0, "large budget: %s", s ? s : err.msg);
    free(s);
    const char *bad[] = {"{unknown}", "a } b", "{tool_descriptions", "{0}", "{}", "{tool_descriptions!r}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dk_err_clear(&err);
        s = dk_agent_system_prompt(bad[i], &parts, 5, &err);
        EXPECT(s == NULL && err.code == DK_EXIT_USAGE, "template %s is refused", bad[i]);
        free(s);
    }
    dk_err_clear(&err);
    parts.large_budget_note = NULL;
    s = dk_agent_system_prompt("x", &parts, 50, &err);
    EXPECT(s == NULL && strstr(err.msg, "large_budget.txt"), "a missing large-budget note is an error");
    free(s);
    dk_err_clear(&err);
    s = dk_agent_prompt_read("/nonexistent", "system_prompt.txt", &err);
    EXPECT(s == NULL, "a missing prompt file");
    EXPECT_CONTAINS(err.msg, "system_prompt.txt");
}

/* ---- untrusted arguments, through the loop ------------------------------------------------------------------ */

/* Writes turns (a JSON array of contents) as a script file; the path (caller frees). */
static char *write_script(const char *const *turns, int n) {
    char *path = strdup("/tmp/dk_agent_script_XXXXXX");
    int fd = mkstemp(path);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "content", turns[i]);
        cJSON_AddItemToArray(arr, e);
    }
    char *text = cJSON_PrintUnformatted(arr);
    EXPECT(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "script written");
    close(fd);
    free(text);
    cJSON_Delete(arr);
    return path;
}

/* Runs turns against a models server started with models_args; r filled; returns the models' request count. */
static int run_turns(const char *const *turns, int n, const char *const *models_args, run_setup su,
                     dk_agent_result *r, double *seconds) {
    char *script = write_script(turns, n);
    scripted_server agent_srv, models_srv;
    const char *agent_args[] = {"--require-key-env", KEY_ENV, "--script-file", script, NULL};
    int requests = -1;
    if (start_server(&agent_srv, agent_args)) {
        if (start_server(&models_srv, models_args)) {
            su.agent_url = agent_srv.base_url;
            su.models_url = models_srv.base_url;
            double t0 = dk_time_now();
            run_blackbox(&su, r);
            if (seconds) *seconds = dk_time_now() - t0;
            requests = scripted_server_requests(&models_srv);
            scripted_server_cleanup(&models_srv);
        }
        scripted_server_cleanup(&agent_srv);
    }
    unlink(script);
    free(script);
    return requests;
}

static const char *message_text(const dk_agent_result *r, int i) {
    const cJSON *m = cJSON_GetArrayItem(r->messages, i);
    return m ? cJSON_GetObjectItem(m, "content")->valuestring : "";
}

static void test_untrusted_arguments(void) {
    static char huge[8000];
    memset(huge, 'x', sizeof huge - 1);
    char *long_prompt = dk_sprintf("CALL(ask_model: {\"prompts\": [\"%s\"]})", huge);
    dk_strbuf many = {0};
    dk_strbuf_append(&many, "CALL(ask_model: {\"prompts\": [");
    for (int i = 0; i < 200; i++) dk_strbuf_printf(&many, "%s\"p%d\"", i ? ", " : "", i);
    dk_strbuf_append(&many, "]})");
    struct { const char *turn; const char *problem; } cases[] = {
        {"CALL(ask_model: {\"prompts\": 5})", "prompts must be a list of strings (or one string), got a number"},
        {"CALL(ask_model: {\"prompts\": null})", "got null"},
        {"CALL(ask_model: {\"prompts\": {\"a\": \"b\"}})", "got an object"},
        {"CALL(ask_model: {\"prompts\": []})", "prompts is empty"},
        {"CALL(ask_model: {\"prompts\": [\"ok\", 3]})", "prompts[1] is a number, not a string"},
        {"CALL(ask_model: {\"prompts\": [\"ok\", [\"nested\"]]})", "prompts[1] is a list, not a string"},
        {"CALL(ask_model: {\"prompts\": [\"\"]})", "prompts[0] is an empty string"},
        {"CALL(ask_model: {\"prompts\": \"\"})", "prompts[0] is an empty string"},
        {many.data, "prompts has 200 items; one ask_model call takes at most 64"},
        {long_prompt, "prompts[0] has 7999 characters; a prompt may have at most 4000"},
        {"CALL(ask_model: {})", "missing a required argument: 'prompts'"},
        {"CALL(ask_model: {\"prompts\": [\"a\"], \"../../etc/passwd\": 1})",
         "got an unexpected keyword argument '../../etc/passwd'"},
        {"CALL(../../etc/passwd: {\"prompts\": [\"a\"]})", "Unknown tool: ../../etc/passwd (the tools are: ask_model, "
                                                            "hypothesis_tracking)"},
        {"CALL(run_shell: {\"cmd\": \"rm -rf /\"})", "Unknown tool: run_shell"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    const char **turns = calloc((size_t)n + 1, sizeof *turns);
    for (int i = 0; i < n; i++) turns[i] = cases[i].turn;
    turns[n] = "FINAL(description: \"done\")";
    const char *models_args[] = {"--require-key-env", KEY_ENV, "--reply-with-model", NULL};
    run_setup su = {.budgets = {.agent_llm_calls = 100, .model_interactions = 500, .token_budget = -1}};
    dk_agent_result r;
    int requests = run_turns(turns, n + 1, models_args, su, &r, NULL);
    EXPECT(r.outcome == DK_AGENT_FINAL, "the run goes on to FINAL (%s)", r.err.msg);
    EXPECT(requests == 0, "no prompt reached the models (%d requests)", requests);
    EXPECT(r.model_interactions_used == 0, "nothing charged (%lld)", (long long)r.model_interactions_used);
    for (int i = 0; i < n; i++) {
        const char *reply = message_text(&r, 3 + 2 * i);
        EXPECT(dk_str_starts_with(reply, "TOOL_PARAMETER_ERROR: "), "case %d answered with a parameter error: %.200s", i,
               reply);
        EXPECT_CONTAINS(reply, cases[i].problem);
        EXPECT_CONTAINS(reply, "'model_interactions_remaining': 500");
    }
    dk_agent_result_free(&r);
    free(turns);
    free(long_prompt);
    dk_strbuf_free(&many);

    /* a string prompt is one prompt and costs 1 (the seed would charge its length) */
    const char *one[] = {"CALL(ask_model: {\"prompts\": \"What is your favourite colour?\"})",
                         "FINAL(description: \"x\")"};
    requests = run_turns(one, 2, models_args, su, &r, NULL);
    EXPECT(requests == 2 && r.model_interactions_used == 1, "a string prompt: %d requests, %lld charged", requests,
           (long long)r.model_interactions_used);
    EXPECT_CONTAINS(message_text(&r, 3), "{\"base\": [\"base-model reply to: What is your favourite colour?\"]");
    dk_agent_result_free(&r);

    /* a FINAL that does not parse in the first turn: a FORMAT_ERROR (the seed dies with UnboundLocalError) */
    const char *first[] = {"FINAL(oops", "FINAL(description: \"x\")"};
    run_turns(first, 2, models_args, su, &r, NULL);
    EXPECT(r.outcome == DK_AGENT_FINAL, "FINAL after a first-turn FINAL error");
    EXPECT_CONTAINS(message_text(&r, 3), "Error: Output grammar error around FINAL(...).");
    dk_agent_result_free(&r);
}

/* ---- failing endpoints and the key --------------------------------------------------------------------------- */

static void test_endpoints(void) {
    const char *turns[] = {"CALL(ask_model: {\"prompts\": [\"a\", \"b\"]})", "FINAL(description: \"x\")"};
    run_setup su = {.budgets = {.agent_llm_calls = 100, .model_interactions = 5, .token_budget = -1},
                    .model_attempts = 2, .model_timeout_s = 0.5};
    dk_agent_result r;
    double seconds = 0;

    /* models that refuse the key and quote it back (401, not retried) */
    const char *echo[] = {"--default", "echokey", NULL};
    run_turns(turns, 2, echo, su, &r, &seconds);
    EXPECT(r.outcome == DK_AGENT_FAILED, "refused key: outcome %d", r.outcome);
    EXPECT_CONTAINS(r.err.msg, "ask_model: the base model (base-model) did not answer prompt 1 of 2");
    EXPECT_CONTAINS(r.err.msg, "HTTP 401");
    EXPECT(strstr(r.err.msg, TEST_KEY) == NULL, "the key is in the error: %s", r.err.msg);
    EXPECT(cJSON_GetArraySize(r.messages) == 3, "the transcript ends with the call (%d messages)",
           cJSON_GetArraySize(r.messages));
    dk_agent_result_free(&r);

    /* models that never answer in time: the client's attempts, then FAILED */
    const char *slow[] = {"--require-key-env", KEY_ENV, "--default", "slow:5", NULL};
    int requests = run_turns(turns, 2, slow, su, &r, &seconds);
    EXPECT(r.outcome == DK_AGENT_FAILED, "slow models: outcome %d", r.outcome);
    EXPECT_CONTAINS(r.err.msg, "no complete answer within the time allowed");
    EXPECT_CONTAINS(r.err.msg, "after 2 attempts");
    EXPECT(requests == 8, "2 prompts x 2 models x 2 attempts, got %d requests", requests);
    EXPECT(seconds < 4.0, "bounded: %.1f s", seconds);
    dk_agent_result_free(&r);

    /* nobody listening */
    char dead_url[64];
    snprintf(dead_url, sizeof dead_url, "http://127.0.0.1:%d/v1", dead_port());
    char *script = write_script(turns, 2);
    scripted_server agent_srv;
    const char *agent_args[] = {"--require-key-env", KEY_ENV, "--script-file", script, NULL};
    if (start_server(&agent_srv, agent_args)) {
        su.agent_url = agent_srv.base_url;
        su.models_url = dead_url;
        run_blackbox(&su, &r);
        EXPECT(r.outcome == DK_AGENT_FAILED, "dead models: outcome %d", r.outcome);
        EXPECT_CONTAINS(r.err.msg, "could not connect");
        dk_agent_result_free(&r);
        scripted_server_cleanup(&agent_srv);
    }
    /* the agent LLM itself fails */
    const char *agent_fail[] = {"--require-key-env", KEY_ENV, "500", NULL};
    if (start_server(&agent_srv, agent_fail)) {
        su.agent_url = agent_srv.base_url;
        su.models_url = dead_url;
        su.model_attempts = 1;
        dk_llm_client *agent = open_client(agent_srv.base_url, "agent-model", 1, 5.0);
        dk_agent_run_input in = {.system_prompt = "S", .hints = "", .first_user_message = "",
                                 .post_tool_result = "P", .budgets = su.budgets,
                                 .llm = {.client = agent, .temperature = 0.7, .max_tokens_per_call = 100}};
        dk_err err = {0};
        EXPECT(dk_agent_run(&in, &r, &err) == 0, "run: %s", err.msg);
        EXPECT(r.outcome == DK_AGENT_FAILED && r.agent_llm_calls_used == 0, "agent LLM failure: outcome %d",
               r.outcome);
        EXPECT_CONTAINS(r.err.msg, "the agent LLM (agent-model) did not answer call 1");
        EXPECT_CONTAINS(r.err.msg, "HTTP 500");
        dk_strbuf_append(&everything, r.err.msg);
        dk_agent_result_free(&r);
        dk_llm_client_close(agent);
        scripted_server_cleanup(&agent_srv);
    }
    unlink(script);
    free(script);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_agent_loop <path of scripted_server>\n");
        return 2;
    }
    server_exe = argv[1];
    setenv(KEY_ENV, TEST_KEY, 1);
    dk_log_set_level(DK_LOG_WARN);
    P = load_prompts();
    test_grammar();
    test_hypotheses();
    test_prompt_template();
    test_goldens();
    test_untrusted_arguments();
    test_endpoints();
    EXPECT(everything.data && strstr(everything.data, TEST_KEY) == NULL, "the key is in a transcript or an error");
    dk_strbuf_free(&everything);
    free_prompts(&P);
    return dk_test_finish("test_agent_loop");
}
