/* agent_method.h — the seed's agent types bound to one method's results: what the agent is told first (the
 * overview, from the results files), which tools it has, and the prompt pieces of its type (seed_spec §14.4).
 *
 * Why it exists: the loop (agent.h) is the same for every agent; what differs is the overview and the method
 * tools. Each type reads only results files (results.h5 and the JSON beside it) and talks to models over
 * HTTP, so diff_agent links no model code.
 *
 * Types (dk_agent_kind_parse takes these names):
 *   "ADL"          ADLAgent: overview of logit lens, patchscope and steering examples per dataset/layer/position
 *                  (datasets anonymised ds1, ds2, ...), tools ask_model, hypothesis_tracking,
 *                  get_logitlens_details, get_patchscope_details, get_steering_samples, generate_steered.
 *   "ADLBlackbox"  ADLBlackboxAgent (name "Blackbox"): only the organism's unsteered samples; blackbox tools.
 *   "DiffMining"   DiffMiningAgent: token groups per dataset from the diff-mining orderings; blackbox tools.
 *   "Blackbox"     BlackboxAgent: no overview (empty first message); blackbox tools.
 * Prompt pieces come from <prompts_dir>/<file>.txt (resources/agent/): as the seed's classes, a type's tool
 * descriptions are blackbox_tools.txt followed by its own (adl_tools.txt, dm_tools.txt); its overview description,
 * conduct and examples replace the blackbox ones (adl_overview.txt, adl_conduct.txt, adl_examples.txt;
 * dm_*.txt; ADLBlackbox: adl_blackbox_overview.txt with the blackbox rest; Blackbox: post_overview.txt as the
 * overview description), large_budget.txt for every type.
 *
 * Settings (diffing.method.agent.*): overview.{datasets ([] = every dataset of the results, sorted: the seed
 * iterates a set), layers (a float is a fraction of depth, int(f * (num_hidden_layers - 1)) with model.model_id's
 * config.json; an int makes every entry absolute, as the seed's _abs_layers_from_rel), top_k_tokens,
 * steering_samples_per_prompt, max_sample_chars, positions}; ADL tools: drilldown.{max_sample_chars,
 * max_steering_samples_per_prompt (the most n get_steering_samples takes)}, generate_steered.{max_new_tokens,
 * temperature, do_sample, max_samples_per_call (the most n x len(prompts) one call takes)}; diff mining:
 * overview.{datasets, top_k_tokens, ordering_type, extraction_method (must be the results' variant: logits)}.
 * The ADL tools take a dataset as the agent sees it (ds1, ...), its real name or the name's last path component;
 * they echo the name as given. generate_steered asks models->finetuned, one chat request per prompt with n
 * choices and extra_body {"chat_template_kwargs": {"enable_thinking": false} (when models->disable_thinking),
 * "steering": {"layer", "vector" (results.h5 steering/position_{p}/vector: ft_norm * mean_diff/|mean_diff|, what
 * the steering step used), "strength" (threshold.json avg_threshold), "mode": "all"}}.
 */
#ifndef DK_AGENT_AGENT_METHOD_H
#define DK_AGENT_AGENT_METHOD_H

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "config/config.h"
#include "core/error.h"

typedef enum {
    DK_AGENT_ADL = 0,
    DK_AGENT_ADL_BLACKBOX = 1,
    DK_AGENT_DIFF_MINING = 2,
    DK_AGENT_BLACKBOX = 3,
} dk_agent_kind;

/* "ADL" -> DK_AGENT_ADL, ...; -1 + err listing the names. */
int dk_agent_kind_parse(const char *name, dk_agent_kind *out, dk_err *err);

typedef struct dk_agent_method_config {
    dk_agent_kind kind;
    const dk_cfg *cfg;             /* composed configuration: diffing.method.agent.* (overview, drilldown,
                                    * generate_steered), model.*, organism.* */
    const char *results_dir;       /* the method's results folder (.../activation_difference_lens,
                                    * .../diff_mining/seed42_top100) */
    const char *prompts_dir;       /* resources/agent */
} dk_agent_method_config;

typedef struct dk_agent_method dk_agent_method;

/* Reads everything the type needs from the results into memory (checks they exist and are complete:
 * results.h5, not .partial) and builds the overview. After open, m is read-only and its tools never touch
 * HDF5: diff_agent runs several agents at once in threads, each with its own tools. NULL + err (code 2:
 * missing or incomplete results, naming the folder and the job that makes them). */
dk_agent_method *dk_agent_method_open(const dk_agent_method_config *mc, dk_err *err);
void dk_agent_method_close(dk_agent_method *m);

/* "ADL", "Blackbox", "DiffMining": the seed's agent.name (output folder names). */
const char *dk_agent_method_name(const dk_agent_method *m);
/* The first user message (overview + post-overview reminder, or "" for Blackbox). Owned by m. */
const char *dk_agent_method_first_message(const dk_agent_method *m);
/* The prompt pieces of the type (owned by m). */
const dk_agent_prompt_parts *dk_agent_method_prompt_parts(const dk_agent_method *m);
/* {"ds1": "real name", ...} or NULL when the type has none (Blackbox). Owned by m. */
const cJSON *dk_agent_method_dataset_mapping(const dk_agent_method *m);
/* The tools of one run: the blackbox ones first, then the method's, a fresh hypothesis board, and the models
 * of that run (ask_model; generate_steered asks models->finetuned with the steering vector). One per thread;
 * models and m must outlive them. */
typedef struct dk_agent_run_tools {
    dk_agent_tool *tools;          /* [n] */
    int n;
    dk_hypothesis_board *board;    /* the addendum's ctx (dk_agent_blackbox_addendum) */
    void *state;                   /* the method tools' own */
} dk_agent_run_tools;

int dk_agent_method_tools(const dk_agent_method *m, dk_agent_models *models, dk_agent_run_tools *out, dk_err *err);
void dk_agent_run_tools_free(dk_agent_run_tools *t);

#endif
