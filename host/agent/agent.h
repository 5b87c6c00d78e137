/* agent.h — the agent loop of the seed framework (seed_spec §14.2): an LLM investigates a finetune through
 * tools, under budgets, and ends with FINAL(description: "...").
 *
 * Why it exists: this is the step that turns diffs into an answer a researcher can check. The loop must
 * behave exactly as the seed's BaseAgent.run (same grammar, repairs, budget accounting, error texts and
 * message layout: the transcript is compared byte for byte with what the seed's code writes for the same
 * script, tests/agent), while being safe with untrusted LLM output: bad tool arguments are answered with a
 * TOOL_PARAMETER_ERROR message and cost nothing, an unknown tool is answered too (the seed asserts), and the
 * run never crashes on what the LLM writes.
 *
 * Pieces (one file each): pyjson.h (Python-identical JSON text), agent_grammar.c (FINAL/CALL extraction),
 * agent_hypotheses.c (the hypothesis board), agent_prompts.c (prompt texts from resources/agent/<name>.txt, in our
 * words, in the seed's structure), agent_loop.c (dk_agent_run), agent_blackbox.c (ask_model and
 * hypothesis_tracking), agent_adl.c / agent_dm.c (the ADL and diff-mining overviews and tools). The evaluation
 * (budgets x repeats, output folders, grading, summary, null control) is agent_eval.c; jobs/diff_agent.c is
 * the executable. */
#ifndef DK_AGENT_AGENT_H
#define DK_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "llm/llm_client.h"

/* ---- grammar (seed's _extract_final_description / _extract_tool_call) ------------------------------------ */

typedef enum {
    DK_AGENT_PARSE_NONE = 0,   /* no FINAL( / CALL( block */
    DK_AGENT_PARSE_OK = 1,
    DK_AGENT_PARSE_ERROR = 2,  /* a block that does not parse (the seed's AssertionError/JSONDecodeError) */
} dk_agent_parse;

/* The last FINAL( block of text: OK with *description (malloc'ed, stripped, escapes NOT decoded, as the seed
 * returns the raw text between the quotes), NONE, or ERROR. */
dk_agent_parse dk_agent_extract_final(const char *text, char **description);
/* The last CALL( block, which must end the text: OK with *tool (malloc'ed) and *args (a JSON object, ints
 * marked as dk_pyjson_loads does), NONE, or ERROR. */
dk_agent_parse dk_agent_extract_call(const char *text, char **tool, cJSON **args);

/* ---- tools --------------------------------------------------------------------------------------------- */

typedef enum {
    DK_TOOL_OK = 0,           /* *output is the tool's result (taken by the loop) */
    DK_TOOL_PARAM_ERROR = 1,  /* *message says what was wrong with the arguments (no "TOOL_PARAMETER_ERROR: "
                               * prefix); nothing is charged */
    DK_TOOL_FAILED = 2,       /* the run cannot go on (the models' endpoint is dead): err says why */
} dk_tool_status;

typedef struct dk_agent_tool {
    const char *name;                  /* "ask_model" */
    /* The Python signature the seed binds the arguments to, in order: the loop reports a missing required
     * argument or an unexpected one with Python's TypeError text ("missing a required argument: 'k'", "got an
     * unexpected keyword argument 'foo'") before the tool runs. var_kwargs: the tool takes **kwargs. */
    const char *const *params;         /* [n_params] */
    int n_params;
    bool var_kwargs;
    /* Model interactions charged before running (seed's get_pre_tool_cost; must not fail on bad args: the loop
     * calls it before checking them, as the seed does) and after (get_post_tool_cost, from the output). NULL: 0. */
    int64_t (*pre_cost)(void *ctx, const cJSON *args);
    int64_t (*post_cost)(void *ctx, const cJSON *output);
    /* Checks the arguments' types and values and runs the tool. */
    dk_tool_status (*run)(void *ctx, const cJSON *args, cJSON **output, char **message, dk_err *err);
    void *ctx;
} dk_agent_tool;

/* ---- the loop ------------------------------------------------------------------------------------------- */

typedef struct dk_agent_budgets {
    int64_t agent_llm_calls;        /* seed: 100 */
    int64_t model_interactions;     /* this run's budget */
    int64_t token_budget;           /* completion tokens of the agent LLM in all; -1 = unlimited */
} dk_agent_budgets;

typedef struct dk_agent_llm {
    dk_llm_client *client;          /* the agent's LLM (its model_id is the agent model) */
    double temperature;             /* seed: 0.7 */
    int max_tokens_per_call;        /* seed: 10000 */
} dk_agent_llm;

typedef enum {
    DK_AGENT_FINAL = 0,             /* the agent gave FINAL(...) */
    DK_AGENT_CALLS_EXHAUSTED = 1,   /* agent_llm_calls used up without FINAL (the seed asserts) */
    DK_AGENT_TOKENS_EXHAUSTED = 2,  /* completion tokens over token_budget (the seed asserts) */
    DK_AGENT_FAILED = 3,            /* the agent LLM or a tool's endpoint failed: err */
} dk_agent_outcome;

typedef struct dk_agent_run_input {
    const char *system_prompt;      /* the formatted system prompt (dk_agent_system_prompt) */
    const char *hints;              /* diffing.evaluation.agent.hints ("" none) */
    const char *first_user_message; /* the overview message */
    const char *post_tool_result;   /* the text after every tool result (resources/agent/post_tool_result.txt, the
                                     * seed's POST_TOOL_RESULT_PROMPT) */
    dk_agent_tool *tools;           /* [n_tools] */
    int n_tools;
    /* Text appended to a tool's result message (the blackbox agents: the active hypotheses after ask_model);
     * malloc'ed or NULL. May be NULL. */
    char *(*addendum)(void *ctx, const char *tool_name);
    void *addendum_ctx;
    dk_agent_budgets budgets;
    dk_agent_llm llm;
} dk_agent_run_input;

typedef struct dk_agent_result {
    dk_agent_outcome outcome;
    char *description;              /* FINAL's text; NULL otherwise */
    cJSON *messages;                /* the transcript: [{"role","content"[,"cache_control"]}] */
    int64_t agent_llm_calls_used;   /* calls answered (TOKENS_EXHAUSTED: the one that went over included; its
                                     * tokens are counted, its text is not in the transcript, as in the seed) */
    int64_t agent_prompt_tokens, agent_completion_tokens, agent_total_tokens;
    int64_t model_interactions_used;
    dk_err err;                     /* outcome FAILED (or EXHAUSTED: what ran out) */
} dk_agent_result;

/* Runs the loop. Returns 0 whatever the outcome (read result->outcome); -1 only for bad input (err). */
int dk_agent_run(const dk_agent_run_input *in, dk_agent_result *result, dk_err *err);
void dk_agent_result_free(dk_agent_result *r);
/* stats.json of a run: the seed's keys (agent_llm_calls_used, agent_prompt_tokens, agent_completion_tokens,
 * agent_total_tokens, model_interactions_used) plus "outcome". */
cJSON *dk_agent_stats_json(const dk_agent_result *r);

/* ---- prompts (resources/agent/, our words in the seed's structure) --------------------------------------- */

typedef struct dk_agent_prompt_parts {
    const char *first_user_message_description;
    const char *tool_descriptions;
    const char *additional_conduct;
    const char *interaction_examples;
    /* Appended after "\n\n" when model_interactions > 20 (the seed's note that a large budget should be used:
     * resources/agent/large_budget.txt). Required then: NULL fails instead of dropping it silently. */
    const char *large_budget_note;
} dk_agent_prompt_parts;

/* Reads <dir>/<name> (resources/agent/system_prompt.txt, ...): malloc'ed text, or NULL + err naming the file. */
char *dk_agent_prompt_read(const char *dir, const char *name, dk_err *err);
/* The system prompt: the template (Python str.format syntax: {name} replaced, {{ }} -> { }) filled with parts,
 * plus "\n\n" + parts->large_budget_note when model_interactions > 20 (as the seed's get_system_prompt). NULL +
 * err (code 2) on an unknown or unsupported {field}, a lone { or }, or a missing part. */
char *dk_agent_system_prompt(const char *template_text, const dk_agent_prompt_parts *parts,
                             int64_t model_interactions, dk_err *err);

/* ---- the blackbox tools (ask_model, hypothesis_tracking) -------------------------------------------------- */

/* The two models as served over HTTP (diffkit serve, vLLM, a hosted endpoint): one client per model, since a
 * client names one model_id. */
typedef struct dk_agent_models {
    dk_llm_client *base;            /* serves the base model */
    dk_llm_client *finetuned;       /* serves the organism */
    const char *system_prompt;      /* organism.agent_interaction_system_prompt, or NULL */
    int max_new_tokens;             /* agent.ask_model.max_new_tokens (1024) */
    double temperature;             /* agent.ask_model.temperature (0.8) */
    bool disable_thinking;          /* send chat_template_kwargs {"enable_thinking": false} (the seed's
                                     * generation with thinking off) */
    int max_prompts;                /* the most prompts one ask_model call may carry (untrusted input) */
    int max_prompt_chars;           /* the longest prompt accepted */
} dk_agent_models;

typedef struct dk_hypothesis_board dk_hypothesis_board;
dk_hypothesis_board *dk_hypothesis_board_new(void);
void dk_hypothesis_board_free(dk_hypothesis_board *b);

/* Fills tools[0..2): ask_model (ctx: models) and hypothesis_tracking (ctx: board). */
void dk_agent_blackbox_tools(dk_agent_models *models, dk_hypothesis_board *board, dk_agent_tool tools[2]);
/* The blackbox agents' addendum (ctx: the board): after ask_model, the active hypotheses. */
char *dk_agent_blackbox_addendum(void *board, const char *tool_name);

#endif
