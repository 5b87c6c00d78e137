/* dict_golden.h — one training golden of tools/make_dict_goldens.py (sae_golden / crosscoder_golden.safetensors)
 * as a case to run a trainer on: its settings, initial weights, normaliser, batches and the reference's results,
 * and the comparison of a model's weights with the reference's. Shared by the CPU trainer's test
 * (tests/methods/test_dict_train.c) and the GPU trainer's (tests/gpu/test_dict_train_cuda.c). */
#ifndef DK_TESTS_DICT_GOLDEN_H
#define DK_TESTS_DICT_GOLDEN_H

#include <stdbool.h>
#include <string.h>

#include "dict_fixture.h"
#include "methods/dict_data.h"
#include "methods/dict_model.h"
#include "methods/dict_norm.h"
#include "methods/dict_train.h"

typedef struct dict_golden {
    dk_st_checkpoint *ck;
    dk_dict_kind kind;
    const char *what;          /* "sae" or "crosscoder" */
    int64_t d, F, B, steps, width;
    dk_dict_train_cfg c;
    dk_dict_norm nrm;
    float *pool;               /* (n_pool, width) */
    int64_t n_pool;
    float *losses, *deads;     /* (steps) the reference's */
    float *since;              /* (F) tokens since each latent fired, after the last step */
    double threshold;
    float *config, *mean32, *std32;
    double *mean64, *std64;
} dict_golden;

/* 0, or -1 after a failed EXPECT (the fixture does not open). */
static inline int dict_golden_open(dict_golden *g, const char *fixture, dk_dict_kind kind) {
    memset(g, 0, sizeof *g);
    char *path = dk_fixture_path(fixture);
    dk_err err = {0};
    g->ck = dk_st_open(path, &err);
    free(path);
    EXPECT(g->ck != NULL, "%s", err.msg);
    if (!g->ck) return -1;
    const bool sae = kind == DK_DICT_SAE;
    g->kind = kind;
    g->what = sae ? "sae" : "crosscoder";
    float *config = g->config = fx_f32(g->ck, "config", NULL);
    g->d = (int64_t)config[0], g->F = (int64_t)config[1], g->B = (int64_t)config[3], g->steps = (int64_t)config[4];
    const int64_t k = (int64_t)config[2], dead_tokens = (int64_t)config[5], warmup = (int64_t)config[6];
    const int64_t thr_start = (int64_t)config[7];
    const double lr = config[8], target_rms = config[9];
    const int L = sae ? 1 : 2;
    dk_dict_train_cfg c = {.steps = g->steps, .lr = lr, .warmup_steps = warmup, .decay_start = -1,
                           .auxk_alpha = 1.0 / 32.0, .dead_threshold = dead_tokens, .top_k_aux = g->d / 2,
                           .threshold_beta = 0.999, .threshold_start_step = thr_start, .k = k,
                           .k_initial = sae ? k : (int64_t)config[10], .k_anneal_steps = sae ? 0 : (int64_t)config[11],
                           .clip = 1.0};
    g->c = c;
    /* the normaliser of the fixture's statistics (the reference's activation_mean / activation_std) */
    g->width = L * g->d;
    g->mean32 = fx_f32(g->ck, "mean", NULL), g->std32 = fx_f32(g->ck, "std", NULL);
    g->mean64 = malloc((size_t)g->width * sizeof(double)), g->std64 = malloc((size_t)g->width * sizeof(double));
    for (int64_t i = 0; i < g->width; i++) g->mean64[i] = g->mean32[i], g->std64[i] = g->std32[i];
    dk_dict_norm_set(&g->nrm, L, g->d, g->mean64, g->std64, target_rms);
    g->pool = fx_f32(g->ck, "pool", &g->n_pool);
    g->n_pool /= g->width;
    g->losses = fx_f32(g->ck, "losses", NULL), g->deads = fx_f32(g->ck, "deads", NULL);
    g->since = fx_f32(g->ck, "since_fired", NULL);
    g->threshold = fx_scalar(g->ck, "threshold");
    return 0;
}

static inline void dict_golden_close(dict_golden *g) {
    dk_dict_norm_free(&g->nrm);
    free(g->config), free(g->mean32), free(g->std32), free(g->mean64), free(g->std64), free(g->pool);
    free(g->losses), free(g->deads), free(g->since);
    dk_st_close(g->ck);
    memset(g, 0, sizeof *g);
}

/* m (initialised by the caller with dk_dict_model_init) := the reference's initial weights. */
static inline void dict_golden_init_model(const dict_golden *g, dk_dict_model *m) {
    const bool sae = g->kind == DK_DICT_SAE;
    float *ew = fx_f32(g->ck, "init.encoder.weight", NULL), *eb = fx_f32(g->ck, "init.encoder.bias", NULL);
    float *dw = fx_f32(g->ck, "init.decoder.weight", NULL);
    float *db = fx_f32(g->ck, sae ? "init.b_dec" : "init.decoder.bias", NULL);
    dk_dict_from_reference(m, ew, eb, dw, db);
    free(ew), free(eb), free(dw), free(db);
}

/* This rank's rows [lo, lo + n) of the batch of `step`: raw (n, width) and normalised x (n, width). */
static inline void dict_golden_batch(const dict_golden *g, int64_t step, int64_t lo, int64_t n, float *raw, float *x) {
    const int64_t width = g->width;
    for (int64_t r = 0; r < n; r++)
        memcpy(raw + r * width, g->pool + ((step * g->B + lo + r) % g->n_pool) * width, (size_t)width * sizeof(float));
    memcpy(x, raw, (size_t)(n * width) * sizeof(float));
    dk_dict_norm_apply(&g->nrm, x, n);
}

/* The model's parameters as the reference's four tensors, compared with the fixture's `tag.*` tensors. */
static inline void dict_golden_expect_weights(const dict_golden *g, const dk_dict_model *m, const char *what,
                                              const char *tag, double atol, double rtol) {
    const dk_dict_shape *s = &m->s;
    const int64_t nW = s->F * s->D;
    float *ew = malloc((size_t)nW * sizeof(float)), *eb = malloc((size_t)s->F * sizeof(float));
    float *dw = malloc((size_t)nW * sizeof(float)), *db = malloc((size_t)s->D * sizeof(float));
    dk_dict_to_reference(m, ew, eb, dw, db);
    const bool sae = m->kind == DK_DICT_SAE;
    const char *names[4] = {"encoder.weight", "encoder.bias", "decoder.weight", sae ? "b_dec" : "decoder.bias"};
    const float *ours[4] = {ew, eb, dw, db};
    const int64_t sizes[4] = {nW, s->F, nW, s->D};
    for (int i = 0; i < 4; i++) {
        char key[96], label[224];
        snprintf(key, sizeof key, "%s.%s", tag, names[i]);
        snprintf(label, sizeof label, "%s %s", what, key);
        int64_t n;
        float *want = fx_f32(g->ck, key, &n);
        EXPECT(n == sizes[i], "%s: %lld values, fixture %lld", label, (long long)sizes[i], (long long)n);
        double *got = malloc((size_t)n * sizeof(double));
        for (int64_t j = 0; j < n; j++) got[j] = ours[i][j];
        const double worst = fx_worst(label, got, want, n, atol, rtol);
        EXPECT(worst <= 1.0, "%s differs from the reference (worst ratio to tolerance %.3g)", label, worst);
        free(got), free(want);
    }
    free(ew), free(eb), free(dw), free(db);
}

#endif
