/* dict_analysis_job.c — a test job that runs the dictionary analysis (host/methods/dict_analysis.c) over real
 * activation stores, under MPI, without training: tests/methods/dict_analysis.sh runs it on 1, 2 and 3 ranks over
 * the tiny test pair's stores and checks that every result is the same and present. (The training jobs diff_sae
 * and diff_crosscoder call the same dk_dict_analyse after training; this job only stands in for the training.)
 *
 * It borrows diff_pca's settings (diffing/method=pca: datasets, results folder). At the first cached layer it
 * opens the train split's difference rows (ft − base) and the stacked [base, ft] rows (first token of each
 * sequence skipped, 300 rows: the scaling set), builds a randomly initialised SAE and crosscoder (32 latents),
 * their normalisers sampled from the rows (dk_dict_norm_sampled), and writes results.h5 groups sae/ and cc/ with
 * the analysis, the SAELens exports under <results>/saelens_{sae,cc}/ and summary.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "methods/dict_analysis.h"
#include "methods/method_job.h"

typedef struct test_state {
    int64_t layer;
    dk_dict_set diff, pairs;
    bool diff_open, pairs_open;
} test_state;

static int prepare(dk_method_job *job, dk_err *err) {
    test_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    int64_t *layers = NULL, n = 0;
    if (dk_method_store_layers(job, &layers, &n, err) != 0) return -1;
    st->layer = layers[0];
    free(layers);
    if (dk_dict_set_open(job, "train", st->layer, DK_DICT_DIFF_FTB, 0, 0, &st->diff, err) != 0) return -1;
    st->diff_open = true;
    if (dk_dict_set_open(job, "train", st->layer, DK_DICT_STACKED, 1, 300, &st->pairs, err) != 0) return -1;
    st->pairs_open = true;
    dk_method_input(job, "test", "dict_analysis_job layer %lld", (long long)st->layer);
    return 0;
}

static int analyse_one(dk_method_job *job, dk_dict_kind kind, const dk_dict_set *rows, const dk_dict_set *pairs,
                       const char *name, cJSON *summary, dk_err *err) {
    const test_state *st = job->state;
    dk_dict_model m;
    dk_dict_model_init(&m, kind, rows->d, 32);
    dk_dict_model_random_init(&m, kind == DK_DICT_SAE ? 5 : 6, 1.0);
    m.threshold = kind == DK_DICT_SAE ? -1.0f : 10.0f;
    dk_dict_norm nrm;
    if (dk_dict_norm_sampled(job, rows, 1000, 256, NULL, 100.0, &nrm, err) != 0) return -1;
    const dk_dict_analysis_cfg cfg = {.latent_scaling = true, .scaling_num_samples = 250, .latent_activations = true,
                                      .n_max_activations = 3, .max_num_samples = 6, .min_threshold = 0,
                                      .n_effective_ft_only = 5, .seed = 42};
    cJSON *sum = cJSON_AddObjectToObject(summary, name);
    int rc = dk_dict_analyse(job, &m, &nrm, rows, pairs, &cfg, name, sum, err);
    if (rc == 0 && job->d.rank == 0) {
        char sub[64];
        snprintf(sub, sizeof sub, "saelens_%s", name);
        char *dir = dk_path_join(job->results_dir, sub);
        rc = dk_dict_export_saelens(&m, &nrm, dir, "tiny", st->layer, "blocks.1.hook_resid_post", err);
        free(dir);
    }
    rc = dk_dist_agree(&job->d, err) != 0 ? -1 : rc;
    dk_dict_norm_free(&nrm);
    dk_dict_model_free(&m);
    return rc;
}

static int run(dk_method_job *job, dk_err *err) {
    test_state *st = job->state;
    cJSON *summary = cJSON_CreateObject();
    int rc = analyse_one(job, DK_DICT_SAE, &st->diff, &st->pairs, "sae", summary, err);
    if (rc == 0) rc = analyse_one(job, DK_DICT_CROSSCODER, &st->pairs, &st->pairs, "cc", summary, err);
    dk_results_summary(&job->res, summary);
    return rc;
}

static void free_state(dk_method_job *job) {
    test_state *st = job->state;
    if (!st) return;
    if (st->diff_open) dk_dict_set_close(&st->diff);
    if (st->pairs_open) dk_dict_set_close(&st->pairs);
    free(st);
    job->state = NULL;
}

static const dk_method_spec spec = {
    .job = "dict_analysis_job",
    .method = "pca",
    .results_subdir = "dict_analysis_test",
    .usage = "Test job: the dictionary analysis of random dictionaries over the stores (tests/methods/dict_analysis.sh).\n",
    .needs_models = false,
    .prepare = prepare,
    .run = run,
    .free_state = free_state,
};

int main(int argc, char **argv) { return dk_method_main(&spec, argc, argv); }
