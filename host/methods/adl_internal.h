/* adl_internal.h — what the files of the Activation Difference Lens (diff_adl) share: its settings, its datasets
 * and the means it computes. adl.c reads the settings and checks the inputs, adl_means.c runs both models and
 * forms the means, adl_write.c runs the logit lens and writes results.h5, the JSON files and the summary. */
#ifndef DK_METHODS_ADL_INTERNAL_H
#define DK_METHODS_ADL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "methods/adl_inputs.h"
#include "methods/method_job.h"

enum { ADL_NORM_SKIP_TOKENS = 5 };   /* the model norms leave out the first 5 positions (seed: skip_tokens) */

typedef struct adl_dataset {
    char *id;                        /* as configured */
    char *name;                      /* short name: results groups and file names */
    char *path;                      /* the resolved file */
    bool is_chat;
    int overview_index;              /* its name in the agent's overview: ds<overview_index>; 0 = not shown */
    adl_inputs in;
} adl_dataset;

typedef struct adl_state {
    int64_t n, batch_size, max_samples, pre_assistant_k;
    bool lens;                       /* logit_lens.cache */
    int64_t k;                       /* logit_lens.k */
    int64_t *layers, n_layers;       /* absolute, in configured order */
    adl_dataset *ds;
    int n_datasets;
    /* under-trained tokens (issue #11): a per-token flag when a list is given and logit_lens.undertrained=mark */
    bool mark_undertrained;
    bool *undertrained;              /* (vocab) or NULL when no list is available */
    char *undertrained_source;       /* where the list came from, or why there is none */
    /* the generating steps (auto Patchscope, steering, token relevance): adl_steps.h */
    struct adl_steps *steps;
    /* the agent's overview (seed_spec §14.4): diffing.method.agent.overview */
    int64_t *overview_layers, n_overview_layers;
    int64_t *overview_positions, n_overview_positions;
    int64_t overview_top_k;
} adl_state;

/* Means and norms of one dataset: valid on rank 0 after adl_compute_means. */
typedef struct adl_means {
    int64_t n_layers, n_pos, d, n_seqs;
    float *mean_diff;                /* (n_layers, n_pos, d) mean of ft − base over the sequences */
    float *base_mean, *ft_mean;      /* (n_layers, n_pos, d) */
    double *base_norm, *ft_norm;     /* (n_layers) mean ‖h‖₂ over sequences and positions >= 5 */
} adl_means;

/* Runs both models over ds (batches round-robin over the ranks) and forms the means (collective). 0, or -1 with
 * err (a non-finite activation names the model, layer and record). */
int adl_compute_means(dk_method_job *job, const adl_state *st, const adl_dataset *ds, adl_means *out, dk_err *err);
void adl_means_free(adl_means *m);

/* Rank 0: the logit lens of every mean vector and the results of ds (results.h5 groups, model_norms JSON), and
 * ds's part of the agent's overview added to `overview_layers` (the "layers" object of its dataset entry; NULL
 * when the overview leaves ds out). */
int adl_write_dataset(dk_method_job *job, const adl_state *st, const adl_dataset *ds, const adl_means *m,
                      cJSON *overview_layers, dk_err *err);

#endif
