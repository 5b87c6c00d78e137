/* adl_steps.h — the ADL's generating steps (seed_spec §5.4–5.6): auto Patchscope, steering with its coherence
 * threshold, and token relevance; their settings, their graders and what they share.
 *
 * Why a separate header: these steps read the means adl_means.c computed and ask a grader (host/llm/graders.h,
 * an LLM endpoint or the offline heuristics) about what the models produce; adl.c reads their settings with the
 * rest (adl_steps_read) and runs them per dataset after the logit lens (adl_steps_run, rank 0). Files:
 *   adl_steps.c       settings, tasks, graders (mode auto | llm | offline), the run order, the overview entries
 *   adl_aps.c         auto Patchscope: the lens at 30 scales (adl_patchscope.c) and the grader's tournament
 *   adl_steer.c       steering: the look-ahead bisection of the coherence threshold, the final generations
 *   adl_relevance.c   token relevance: frequent tokens of the organism's data, candidates, grades, metrics
 *   adl_causal.c      causal effect (optional, off by default): the loss with the component along v̂ patched
 * Outputs use the suffix-free names the agent reads (seed_spec §5.8's mismatch resolved that way): the grader's
 * id is a field inside each file, not part of its name. */
#ifndef DK_METHODS_ADL_STEPS_H
#define DK_METHODS_ADL_STEPS_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "llm/graders.h"
#include "methods/adl_internal.h"

enum { ADL_SOURCE_LOGITLENS = 0, ADL_SOURCE_PATCHSCOPE = 1 };
enum { ADL_N_VARIANTS = 3 };   /* mean_diff, base_mean, ft_mean */

/* One entry of a step's tasks: a dataset of diffing.method.datasets, a computed layer, positions (labels). */
typedef struct adl_task {
    int dataset;                 /* index into adl_state.ds */
    int64_t layer;               /* absolute, one of adl_state.layers */
    int64_t *positions;          /* (n_positions) position labels the dataset has */
    int64_t n_positions;
    int source;                  /* token relevance: ADL_SOURCE_* */
} adl_task;

/* A grader as configured in a step's grader section. */
typedef struct adl_grader {
    dk_grader g;
    dk_llm_client *client;       /* LLM mode only (owned) */
    char id[128];                /* dk_grader_id: "openai_gpt-5-mini" or "offline" */
    char *why;                   /* how the mode was chosen, for the log and the results */
} adl_grader;

typedef struct adl_aps_settings {
    bool enabled;
    adl_task *tasks;
    int n_tasks;
    int64_t intersection_top_k, tokens_k;
    bool use_normalized;
    adl_grader grader;
} adl_aps_settings;

typedef struct adl_steer_settings {
    bool enabled;
    adl_task *tasks;
    int n_tasks;
    char **prompts;              /* (n_prompts) the final generations' prompts (prompts_file) */
    int n_prompts;
    char *prompts_file;
    int64_t max_batch_size;
    int64_t batch_steps, steps, num_samples_per_strength;
    double coherence_threshold, max_strength;
    int64_t thr_max_new_tokens;
    double thr_temperature;
    int64_t final_samples, final_max_new_tokens;
    double final_temperature;
    adl_grader grader;
} adl_steer_settings;

typedef struct adl_relevance_settings {
    bool enabled;
    adl_task *tasks;
    int n_tasks;
    bool grade[ADL_N_VARIANTS];  /* grade_difference, grade_base, grade_ft */
    dk_relevance_agreement agreement;
    int permutations;
    int64_t num_tokens, min_count, k_candidates;
    char *description;           /* organism.description_long */
    adl_grader grader;
} adl_relevance_settings;

/* The eval dataset of a causal effect task: "training" (organism.dataset) or a dataset id. */
typedef struct adl_causal_eval {
    char *alias;                 /* "training" or the id, as configured */
    char *id;                    /* the dataset id */
    bool is_chat;
    char *text_column, *messages_column;
} adl_causal_eval;

typedef struct adl_causal_settings {
    bool enabled;
    adl_task *tasks;             /* dataset = diff_source_dataset; positions sorted, unique */
    adl_causal_eval *evals;      /* (n_tasks) */
    int n_tasks;
    bool base_to_ft;             /* patch_direction: base_to_ft (the finetuned model is intervened) or ft_to_base */
    bool zero_ablate;
    char *split;
    int64_t batch_size, max_samples, max_total_tokens, after_k, num_random, num_random_diff;
    char *rdiff_dataset;         /* dataset.chat.id: where the random difference vectors come from */
} adl_causal_settings;

typedef struct adl_steps {
    adl_aps_settings aps;
    adl_steer_settings steer;
    adl_relevance_settings relevance;
    adl_causal_settings causal;
    /* the frequent tokens of the organism's training data (token relevance), counted once */
    char **frequent;
    int n_frequent;
    bool frequent_done;
    /* what auto Patchscope found, for token relevance: per (dataset, layer, variant, position label) */
    struct adl_aps_record *aps_found;
    int n_aps_found;
    /* the overview's steering samples (diffing.method.agent.overview) */
    int64_t overview_samples_per_prompt, overview_max_chars;
} adl_steps;

/* Reads diffing.method.{auto_patch_scope, steering, token_relevance, causal_effect} (every rank) after the
 * datasets and layers are known; opens the graders. Adds the settings to the job's inputs. 0, or -1 + err. */
int adl_steps_read(dk_method_job *job, adl_state *st, adl_steps *steps, dk_err *err);
void adl_steps_free(adl_steps *steps);

/* Rank 0: runs the enabled steps for dataset ds with its means; fills the overview entries of ds
 * (overview_layers: the object adl_write_dataset filled, or NULL). 0, or -1 + err. */
int adl_steps_run(dk_method_job *job, const adl_state *st, adl_steps *steps, int ds_index, const adl_means *m,
                  cJSON *overview_layers, dk_err *err);

/* ---- shared by the step files ---- */
/* Index of layer in st->layers, of position label p in ds's labels (-1 when absent). */
int64_t adl_layer_index(const adl_state *st, int64_t layer);
int64_t adl_position_index(const adl_dataset *ds, int64_t label);
/* The mean vector (H) of variant v (0 diff, 1 base, 2 ft) at (layer index, position index). */
const float *adl_mean_vector(const adl_means *m, int v, int64_t layer_index, int64_t pos_index);
/* Whether v[0..H) is exactly zero: the models do not differ there (a null pair, base against itself), and the
 * steps that rescale the vector skip it (no files: nothing is shown for it rather than something made up). */
bool adl_vector_is_zero(const float *v, int64_t H);
/* The variant names: results groups ("mean_diff", ...), file prefixes ("", "base_", "ft_"), relevance folders
 * ("difference", "base", "ft"). */
extern const char *const ADL_VARIANT_GROUP[ADL_N_VARIANTS];
extern const char *const ADL_VARIANT_PREFIX[ADL_N_VARIANTS];
extern const char *const ADL_VARIANT_FOLDER[ADL_N_VARIANTS];
/* The decoded text of one token (tokenizer.decode([id])), malloc'ed. */
char *adl_token_text(const dk_tokenizer *tok, int32_t id);

/* auto Patchscope of one task position: results into the files and the overview; rank 0. */
int adl_aps_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                const adl_means *m, const adl_task *task, int64_t label, cJSON *layer_overview, dk_err *err);
/* steering of one task position */
int adl_steer_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                  const adl_means *m, const adl_task *task, int64_t label, cJSON *layer_overview, dk_err *err);
/* token relevance of one task position and source */
int adl_relevance_run(dk_method_job *job, const adl_state *st, adl_steps *steps, const adl_dataset *ds,
                      const adl_means *m, const adl_task *task, int64_t label, dk_err *err);
/* causal effect of task steps->causal.tasks[task_index] (every position of it) */
int adl_causal_run(dk_method_job *job, const adl_state *st, const adl_steps *steps, const adl_dataset *ds,
                   const adl_means *m, int task_index, dk_err *err);

/* What the auto Patchscope found for one (variant, position): kept for token relevance and the overview. */
typedef struct adl_aps_found {
    bool present;
    double best_scale;
    char **tokens;               /* (n_tokens) tokens at the best scale, most probable first */
    float *probs;                /* (n_tokens) */
    int n_tokens;
    char **selected;             /* (n_selected) the grader's selection */
    int n_selected;
} adl_aps_found;

typedef struct adl_aps_record {
    int dataset;
    int64_t layer, label;
    int variant;
    adl_aps_found found;
} adl_aps_record;

/* The record of (dataset, layer, variant, label), or NULL when auto Patchscope did not run it. */
const adl_aps_found *adl_aps_lookup(const adl_steps *steps, int dataset, int64_t layer, int variant, int64_t label);

#endif
