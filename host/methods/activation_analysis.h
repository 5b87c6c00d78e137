/* activation_analysis.h — what the two halves of the activation analysis method share (private to it):
 * activation_analysis.c computes one (dataset, layer) from the two stores, activation_analysis_out.c writes it
 * (statistics, histograms, running means, max-activating tables, the seed's JSON files, the summary). */
#ifndef DK_METHODS_ACTIVATION_ANALYSIS_H
#define DK_METHODS_ACTIVATION_ANALYSIS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "io/act_store_read.h"
#include "methods/bf16_sum.h"
#include "methods/maxact.h"
#include "methods/method_job.h"

enum { AA_N_TABLES = 6, AA_N_POSITIONS = 5 };

/* The six max-activating tables of the seed (layer_{L}/{name}.db), in its order. */
extern const char *const AA_TABLES[AA_N_TABLES];

typedef struct aa_dataset {
    char *name;              /* short name (results paths, messages) */
    const char *id;          /* the configured id */
    dk_act_pair *pairs;      /* (n_layers) the two stores opened at each layer */
} aa_dataset;

typedef struct aa_state {
    int64_t max_samples;     /* first sequences of the store considered (0: all) */
    int64_t n_skip;          /* first positions of each sequence zeroed and left out of the scores */
    int64_t n_examples;      /* per max-activating table and dataset */
    double *percentiles;     /* (n_percentiles) */
    int n_percentiles;
    int64_t *layers, n_layers;
    int32_t *template_ids;   /* (n_template) distinct ids of the empty chat template, ascending */
    int64_t n_template;
    int n_datasets;
    aa_dataset ds[3];
} aa_state;

/* One running mean of finetuned − base (the seed's RunningActivationMean): all tokens, one absolute position,
 * or one token id. */
typedef struct aa_collector {
    char name[48];           /* all_tokens, first_token, ..., chat_token_{id} */
    int64_t position;        /* -1: any */
    int32_t token_id;        /* -1: any */
    dk_bf16_sum sum;
} aa_collector;

/* Everything one (dataset, layer) produced, complete on rank 0 after the gathers. */
typedef struct aa_layer_out {
    int64_t layer;
    int64_t n_seqs, n_tokens;    /* processed: sequences and all their tokens */
    int64_t n_left_out;          /* among the first max_samples: sequences too short to score */
    /* per token (n_tokens), the processed sequences back to back; the first n_skip positions of each
     * sequence are 0 in norm_diff, cos_dist, norm_base and norm_finetuned (the seed zeroes them), not in cos_sim */
    float *norm_diff, *cos_dist, *cos_sim, *norm_base, *norm_finetuned;
    int n_collectors;
    aa_collector *collectors;
    dk_maxact tables[AA_N_TABLES];
} aa_layer_out;

/* Writes one (dataset, layer) into the results file and adds its entry to the dataset's results.json (layers
 * object) and to the summary (rank 0). */
void aa_write_layer(dk_method_job *job, const aa_state *st, const aa_dataset *ds, aa_layer_out *out,
                    cJSON *json_layers, cJSON *summary_dataset);
/* Queues the seed's {dataset}/results.json and {dataset}/layer_{L}.json (rank 0). json_layers is taken. */
void aa_write_dataset_json(dk_method_job *job, const aa_state *st, const aa_dataset *ds, cJSON *json_layers);

#endif
