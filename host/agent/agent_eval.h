/* agent_eval.h — the evaluation of diff_agent (seed_spec §14.6): for each method with an agent, every budget in
 * diffing.evaluation.agent.budgets.model_interactions, num_repeat runs each, every run graded num_repeat times,
 * files in the seed's layout, a summary table per (method, agent, budget), and the null control.
 *
 * Why it exists: one agent run is an anecdote; the seed's headline result (ADL agents find the finetuning
 * objective far more often than blackbox agents) is a mean grade over repeated runs per budget. This file
 * owns that loop and its files, so jobs/diff_agent.c is only argument handling.
 *
 * Output of a run (the seed's): {method results}/agent/{name}_mi{budget}{_hints<md5>}{_c<cfg md5>}/run{i}/ with
 *   messages.json, stats.json (written first), description.txt (written last: a run folder with it is finished,
 *   and overwrite=false reuses it), dataset_mapping.json, hypothesis_grade_{grader}_{j}.json, config.json;
 * name = {agent}_{_<cfg md5> when the method has agent settings}{agent llm id, '/' -> '_'} as the seed builds it.
 * Without an agent LLM (agent.llm.base_url null, or no key for it) the first messages the agent would get are
 * written to {method results}/agent/{agent}_first_messages.json and nothing is run.
 * Summary: {method results}/agent/summary.json and ${diffing.results_dir}/agent_summary.{json,md}. */
#ifndef DK_AGENT_AGENT_EVAL_H
#define DK_AGENT_AGENT_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "core/error.h"

/* How diff_agent was started: what a `diffkit serve` it starts, and the null control's configuration, need. */
typedef struct dk_agent_eval_env {
    const char *config_dir;            /* the configs folder used */
    const char *const *overrides;      /* the user's command-line overrides (without diffing/method) */
    size_t n_overrides;
    const char *diffkit_exe;           /* the diffkit executable (serve); NULL: beside this program */
} dk_agent_eval_env;

/* Evaluates `method` under cfg (composed with diffing/method=<method>); appends its summary rows to rows (a
 * JSON array). 0; 1 when the method's results are missing (rows get a "missing" row, err says what to run);
 * -1 + err on failure (a dead endpoint ends the evaluation: the finished runs' files stay). */
int dk_agent_eval_method(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, cJSON *rows,
                         dk_err *err);

/* diff_agent --check (diffkit run asks before running the stage): 0 when every output `method`'s evaluation
 * would write is there and newer than the method's results (no agent LLM: the first-messages files; with one:
 * overwrite=false and every run finished and graded by the current grader), else 1; why says which, in one line.
 * A configured null control is not looked into: it answers 1 (the evaluation decides what to reuse). */
int dk_agent_eval_check(const dk_cfg *cfg, const char *method, const dk_agent_eval_env *env, char *why, size_t cap);

/* Stops the `diffkit serve` an evaluation started (at the end of diff_agent; safe when none was started). */
void dk_agent_eval_shutdown(void);

/* Writes ${diffing.results_dir}/agent_summary.json and .md from rows and prints the table. */
int dk_agent_eval_write_summary(const dk_cfg *cfg, const cJSON *rows, dk_err *err);

/* md5 hex (32 characters + NUL) of text, as Python's hashlib.md5(text.encode()).hexdigest(). */
void dk_agent_md5_hex(const char *text, char out[33]);

/* The configuration subtree at path as JSON (ints marked as Python ints, as OmegaConf.to_container gives
 * them); NULL when absent. */
cJSON *dk_agent_cfg_json(const dk_cfg *cfg, const char *path);

#endif
