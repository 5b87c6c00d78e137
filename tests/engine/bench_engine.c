/* bench_engine.c — times the CPU forward pass (a benchmark, not a test; driven by tools/bench_engine.py,
 * which runs transformers on the same model, sequences and threads in the same run).
 *
 *   bench_engine MODEL_DIR TOKENS.jsonl REPEATS
 * prints one JSON line: tokens, and the best-of-REPEATS seconds (after one warm-up run) for
 *   capture_mid: residual after the middle block, stopping there (no logits), and
 *   full_logits: every block and the logits of every position.
 * Model loading is excluded (it is an mmap); weight widening is included (it happens per forward). */
#include "model_golden.h"

#include "core/error.h"
#include "model/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double best_time(const dk_model *m, const dk_batch *b, const dk_hook_plan *plan, int repeats) {
    dk_err err = {0};
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) { /* r == 0: warm-up (page-in of the mapping) */
        double t0 = now();
        if (dk_forward(m, NULL, b, plan, NULL, &err) != 0) dk_die(&err);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench_engine MODEL_DIR TOKENS.jsonl REPEATS\n");
        return 2;
    }
    dk_err err = {0};
    dk_model m;
    if (dk_model_open(argv[1], &m, &err) != 0) dk_die(&err);
    golden_tokens tok;
    golden_tokens_read(argv[2], &tok);
    int repeats = atoi(argv[3]);
    const char *threads = getenv("DIFFKIT_THREADS"); /* attention threads; OpenBLAS reads OPENBLAS_NUM_THREADS */
    if (threads && atoi(threads) > 0) m.n_threads = atoi(threads);
    const int64_t T = tok.n_tokens, H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    dk_batch b = {tok.ids, T, tok.seq_start, tok.n_seqs, true};

    float *capture = dk_malloc((size_t)(T * H) * sizeof(float)); /* (T, H) */
    int64_t mid = m.cfg.num_hidden_layers / 2;
    dk_hook_plan capture_plan = {.n_capture = 1, .capture_layers = &mid, .captures = &capture};
    double t_capture = best_time(&m, &b, &capture_plan, repeats);

    float *logits = dk_malloc((size_t)(T * V) * sizeof(float)); /* (T, V) */
    dk_hook_plan logits_plan = {.logits = DK_LOGITS_ALL, .logits_out = logits};
    double t_logits = best_time(&m, &b, &logits_plan, repeats);

    printf("{\"tokens\": %lld, \"capture_layer\": %lld, \"capture_mid_s\": %.4f, \"full_logits_s\": %.4f}\n",
           (long long)T, (long long)mid, t_capture, t_logits);
    free(capture);
    free(logits);
    golden_tokens_free(&tok);
    dk_model_close(&m);
    return 0;
}
