/* agent_eval_internal.h — what the evaluation's files share: the settings of diffing.evaluation, read once. */
#ifndef DK_AGENT_AGENT_EVAL_INTERNAL_H
#define DK_AGENT_AGENT_EVAL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/agent_eval.h"

/* The organism type of a null pair (configs/organism/demo_null.yaml): its "finetune" is the base model. */
#define DK_NULL_ORGANISM_TYPE "no_finetune"

typedef struct dk_eval_settings {
    bool overwrite;
    const char *prompts_dir;
    /* grader */
    bool grader_enabled;
    const char *grader_mode;        /* auto | llm | offline */
    const char *grader_model;
    int grader_max_tokens, grader_repeat;
    const char *rubrics_path;
    /* agent */
    int num_repeat, parallel;
    const char *agent_base_url;     /* NULL: no agent LLM */
    const char *agent_model;
    double temperature;
    int max_tokens_per_call;
    int64_t agent_calls;
    int64_t *budgets;               /* [n_budgets] model-interaction budgets */
    size_t n_budgets;
    int64_t token_budget;
    int ask_max_new_tokens, ask_max_prompts, ask_max_prompt_chars;
    double ask_temperature;
    bool disable_thinking;
    const char *hints;
    bool baselines;
    int64_t *baseline_budgets;
    size_t n_baseline_budgets;
    int64_t baseline_token_budget;
    /* the served models */
    const char *models_url;         /* NULL: start diffkit serve */
    const char *base_model, *ft_model;
    const char *models_key_file, *models_key_env;
    double models_timeout_s, start_timeout_s;
    int models_attempts;
    const char *null_organism;      /* NULL: no null control */
    /* the organism */
    const char *organism;           /* NULL: none (organism=null) */
    const char *organism_type;
    bool is_null_pair;              /* organism type no_finetune */
} dk_eval_settings;

int dk_eval_settings_read(const dk_cfg *cfg, dk_eval_settings *s, dk_err *err);
void dk_eval_settings_free(dk_eval_settings *s);
/* "openai/gpt-5" -> "openai_gpt-5" (malloc'ed). */
char *dk_eval_llm_id(const char *model_id);
/* The seed's agent_cfg_hash ("" when diffing.method.agent is absent). */
void dk_eval_cfg_hash(const dk_cfg *cfg, char out[33]);
/* The folder of one (agent, budget): "{agent}_{_hash}{llm_id}_mi{budget}{_hints<md5>}{_c<hash>}". */
char *dk_eval_run_group_name(const char *agent_name, const char *cfg_hash, const char *llm_id, int64_t budget,
                             const char *hints);

#endif
