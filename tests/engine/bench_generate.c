/* bench_generate.c — times CPU generation, steered generation and patchscope (a benchmark, not a test;
 * driven by tools/bench_generate.py, which runs transformers on the same model, prompts and threads in the
 * same run and writes docs/perf.md's "Generation (CPU)" figures).
 *
 *   bench_generate bandwidth MIB THREADS
 *       best-of-5 read bandwidth of a MIB MiB buffer summed by THREADS threads, as JSON.
 *   bench_generate run MODEL_DIR PROMPTS.jsonl NEW_TOKENS REPEATS LAYER VECTOR.bin STRENGTH
 *   bench_generate decode MODEL_DIR PROMPTS.jsonl NEW_TOKENS REPEATS FUSED_MAX_M
 *       on the prompts (equal lengths, one batch), best of REPEATS after a warm-up, as one JSON line:
 *       generate_s     greedy dk_generate of NEW_TOKENS tokens per prompt (prefill + NEW_TOKENS - 1 steps)
 *       generate1_s    the same with 1 new token (prefill only): decode time = generate_s - generate1_s
 *       steered_s      NEW_TOKENS tokens with VECTOR (H fp32) × STRENGTH added after block LAYER every step
 *       patchscope_s   one forward with the residual after block LAYER at each prompt's last token replaced
 *                      by VECTOR, then the softmax of the last position's logits
 *       ids, steered_ids (the greedy tokens) and probs (the patchscope distribution, first prompt, top 5)
 *       so that the script checks both sides computed the same thing.
 *   decode: generate_s and generate1_s only, with dk_model.fused_max_m = FUSED_MAX_M (0: always the tiled
 *       sgemm), to place the fused linear's threshold.
 *   bench_generate linear MODEL_DIR REPEATS M...
 *       for each M: every projection of every layer (dk_weights_linear) on M random rows, through the fused
 *       kernel and through the tiled sgemm, alternating, best of REPEATS: the crossover without attention,
 *       sampling or the LM head. Threads:
 * DIFFKIT_THREADS (fused linear and attention), OPENBLAS_NUM_THREADS (the tiled sgemm of the prefill). */
#include "model_golden.h"

#include "core/error.h"
#include "core/parallel.h"
#include "model/forward.h"
#include "model/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------------------
 * Read bandwidth: the sum of a buffer's 64-bit words (integer adds vectorise; the result is printed so the
 * loop is kept). */

typedef struct sum_job {
    const uint64_t *words;
    uint64_t *partial; /* (n_threads) one per block, written by its thread */
    int64_t block_words;
} sum_job;

static void sum_block(void *ctx, int64_t b0, int64_t b1) {
    sum_job *j = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const uint64_t *w = j->words + b * j->block_words;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t i = 0; i < j->block_words; i += 4) s0 += w[i], s1 += w[i + 1], s2 += w[i + 2], s3 += w[i + 3];
        j->partial[b] = s0 + s1 + s2 + s3;
    }
}

static int bandwidth(int64_t mib, int threads) {
    const int64_t words = mib << 17; /* 8-byte words */
    uint64_t *buf = dk_malloc((size_t)words * 8);
    for (int64_t i = 0; i < words; i++) buf[i] = (uint64_t)i;
    sum_job job = {buf, dk_calloc((size_t)threads, 8), words / threads};
    double best = 1e30;
    uint64_t check = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        dk_parallel_rows(threads, threads, 1, sum_block, &job);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
        for (int t = 0; t < threads; t++) check += job.partial[t];
    }
    printf("{\"mib\": %lld, \"threads\": %d, \"gb_per_s\": %.2f, \"check\": %llu}\n", (long long)mib, threads,
           (double)(job.block_words * threads * 8) / best / 1e9, (unsigned long long)check);
    free(buf);
    free(job.partial);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Generation and patchscope */

static double time_generate(const dk_model *m, const dk_batch *b, const dk_generate_options *opt, int repeats,
                            dk_generation *keep) {
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) { /* r == 0: warm-up (page-in of the mapping) */
        dk_err err = {0};
        dk_generation g;
        double t0 = now();
        if (dk_generate(m, NULL, b, opt, &g, &err) != 0) dk_die(&err);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
        if (r == repeats && keep) *keep = g;
        else dk_generation_free(&g);
    }
    return best;
}

static void print_ids(const char *name, const dk_generation *g) {
    printf(", \"%s\": [", name);
    for (int64_t s = 0; s < g->n_seqs; s++) {
        printf("%s[", s ? ", " : "");
        for (int64_t i = 0; i < g->n_ids[s]; i++) printf("%s%lld", i ? ", " : "", (long long)g->ids[s][i]);
        printf("]");
    }
    printf("]");
}

/* Patchscope: the last prompt token's residual after `layer` replaced by vector; probs (S, V) = softmax of
 * the last position's logits. */
static void patchscope(const dk_model *m, const dk_batch *b, int64_t layer, const float *vector, float *probs,
                       dk_patch *patches) {
    const int64_t S = b->n_seqs, V = m->cfg.vocab_size;
    for (int64_t s = 0; s < S; s++) patches[s] = (dk_patch){layer, b->seq_start[s + 1] - 1, vector};
    dk_hook_plan plan = {.n_patch = S, .patches = patches, .logits = DK_LOGITS_LAST, .logits_out = probs};
    dk_err err = {0};
    if (dk_forward(m, NULL, b, &plan, NULL, &err) != 0) dk_die(&err);
    for (int64_t s = 0; s < S; s++) {
        float *row = probs + s * V, top = row[0];
        for (int64_t v = 1; v < V; v++) top = row[v] > top ? row[v] : top;
        double total = 0;
        for (int64_t v = 0; v < V; v++) total += (row[v] = expf(row[v] - top));
        for (int64_t v = 0; v < V; v++) row[v] = (float)(row[v] / total);
    }
}

typedef struct bench {
    dk_model m;
    golden_tokens tok;
    dk_batch b;
    int64_t new_tokens;
    int repeats;
} bench;

static void bench_open(bench *bn, char **argv) {
    dk_err err = {0};
    if (dk_model_open(argv[2], &bn->m, &err) != 0) dk_die(&err);
    golden_tokens_read(argv[3], &bn->tok);
    bn->new_tokens = atoll(argv[4]);
    bn->repeats = atoi(argv[5]);
    const char *threads = getenv("DIFFKIT_THREADS");
    if (threads && atoi(threads) > 0) bn->m.n_threads = atoi(threads);
    bn->b = (dk_batch){bn->tok.ids, bn->tok.n_tokens, bn->tok.seq_start, bn->tok.n_seqs, true};
}

static void bench_close(bench *bn) {
    golden_tokens_free(&bn->tok);
    dk_model_close(&bn->m);
}

static int decode_only(char **argv) {
    bench bn;
    bench_open(&bn, argv);
    bn.m.fused_max_m = atoll(argv[6]);
    dk_generate_options opt = {.max_new_tokens = bn.new_tokens, .temperature = 0.0f, .top_p = 1.0f};
    double t_gen = time_generate(&bn.m, &bn.b, &opt, bn.repeats, NULL);
    opt.max_new_tokens = 1;
    double t_gen1 = time_generate(&bn.m, &bn.b, &opt, bn.repeats, NULL);
    printf("{\"seqs\": %lld, \"new_tokens\": %lld, \"fused_max_m\": %lld, \"generate_s\": %.4f, "
           "\"generate1_s\": %.4f}\n", (long long)bn.tok.n_seqs, (long long)bn.new_tokens,
           (long long)bn.m.fused_max_m, t_gen, t_gen1);
    bench_close(&bn);
    return 0;
}

static int run(char **argv) {
    bench bn;
    bench_open(&bn, argv);
    const dk_model m = bn.m;
    const dk_batch b = bn.b;
    const golden_tokens tok = bn.tok;
    const int64_t new_tokens = bn.new_tokens, layer = atoll(argv[6]);
    const int repeats = bn.repeats;
    const float strength = (float)atof(argv[8]);
    const int64_t H = m.cfg.hidden_size, V = m.cfg.vocab_size, S = tok.n_seqs;
    float *vector = dk_malloc((size_t)H * sizeof(float)); /* (H) */
    FILE *f = fopen(argv[7], "rb");
    if (!f || fread(vector, sizeof(float), (size_t)H, f) != (size_t)H) {
        fprintf(stderr, "bench_generate: %s must hold %lld float32 values (the hidden size)\n", argv[7], (long long)H);
        return 2;
    }
    fclose(f);

    dk_generate_options opt = {.max_new_tokens = new_tokens, .temperature = 0.0f, .top_p = 1.0f};
    dk_generation ids, steered_ids;
    double t_gen = time_generate(&m, &b, &opt, repeats, &ids);
    opt.max_new_tokens = 1;
    double t_gen1 = time_generate(&m, &b, &opt, repeats, NULL);
    dk_steer steer = {.layer = layer, .strength = strength, .vector = vector, .prompt_only = false};
    opt = (dk_generate_options){.max_new_tokens = new_tokens, .temperature = 0.0f, .top_p = 1.0f,
                                .steers = &steer, .n_steer = 1};
    double t_steer = time_generate(&m, &b, &opt, repeats, &steered_ids);

    float *probs = dk_malloc((size_t)(S * V) * sizeof(float)); /* (S, V) */
    dk_patch *patches = dk_malloc((size_t)S * sizeof *patches);
    double t_patch = 1e30;
    for (int r = 0; r <= repeats; r++) {
        double t0 = now();
        patchscope(&m, &b, layer, vector, probs, patches);
        double dt = now() - t0;
        if (r > 0 && dt < t_patch) t_patch = dt;
    }

    printf("{\"seqs\": %lld, \"prompt_tokens\": %lld, \"new_tokens\": %lld, \"threads\": %d, \"fused_max_m\": %lld, "
           "\"generate_s\": %.4f, \"generate1_s\": %.4f, \"steered_s\": %.4f, \"patchscope_s\": %.4f",
           (long long)S, (long long)tok.n_tokens, (long long)new_tokens, m.n_threads, (long long)m.fused_max_m,
           t_gen, t_gen1, t_steer, t_patch);
    print_ids("ids", &ids);
    print_ids("steered_ids", &steered_ids);
    printf(", \"probs\": [");
    for (int k = 0; k < 5; k++) { /* the first prompt's top 5 (id, probability) */
        int64_t best = -1;
        for (int64_t v = 0; v < V; v++)
            if (best < 0 || probs[v] > probs[best]) best = v;
        printf("%s[%lld, %.7g]", k ? ", " : "", (long long)best, probs[best]);
        probs[best] = -1.0f; /* so that the next pass finds the next largest */
    }
    printf("]}\n");
    dk_generation_free(&ids);
    dk_generation_free(&steered_ids);
    free(probs);
    free(patches);
    free(vector);
    bench_close(&bn);
    return 0;
}

/* Seconds for every projection of every layer on x (M rows), best of repeats. */
static double time_projections(const dk_model *m, const float *x, int64_t M, int64_t fused_max_m, float *y,
                               float *tile, float *bias) {
    double t0 = now();
    for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int k = 0; k < DK_N_MODULES; k++) {
            const dk_linear_weight *lin = &m->w.layers[l].proj[k];
            if (lin->weight)
                dk_weights_linear(y, x, M, lin, tile, m->weight_tile_floats, bias, m->n_threads, fused_max_m);
        }
    return now() - t0;
}

static int linear(int argc, char **argv) {
    dk_err err = {0};
    dk_model m;
    if (dk_model_open(argv[2], &m, &err) != 0) dk_die(&err);
    const char *threads = getenv("DIFFKIT_THREADS");
    if (threads && atoi(threads) > 0) m.n_threads = atoi(threads);
    const int repeats = atoi(argv[3]);
    const int64_t widest = m.cfg.intermediate_size > m.cfg.hidden_size ? m.cfg.intermediate_size : m.cfg.hidden_size;
    float *tile = dk_malloc((size_t)m.weight_tile_floats * sizeof(float));
    float *bias = dk_malloc((size_t)widest * sizeof(float)); /* (out_features) widened bias, if any */
    double weight_bytes = 0, macs = 0; /* per row of x */
    for (int64_t l = 0; l < m.cfg.num_hidden_layers; l++)
        for (int k = 0; k < DK_N_MODULES; k++)
            if (m.w.layers[l].proj[k].weight) {
                weight_bytes += (double)m.w.layers[l].proj[k].weight->nbytes;
                macs += (double)m.w.layers[l].proj[k].weight->numel;
            }
    printf("[");
    for (int a = 4; a < argc; a++) {
        const int64_t M = atoll(argv[a]);
        float *x = dk_malloc((size_t)(M * widest) * sizeof(float)); /* (M, widest) */
        float *y = dk_malloc((size_t)(M * widest) * sizeof(float));
        for (int64_t i = 0; i < M * widest; i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        double best_fused = 1e30, best_tiled = 1e30;
        for (int r = 0; r <= repeats; r++) { /* r == 0: warm-up */
            double tf = time_projections(&m, x, M, M, y, tile, bias);
            double tt = time_projections(&m, x, M, 0, y, tile, bias);
            if (r > 0) best_fused = tf < best_fused ? tf : best_fused, best_tiled = tt < best_tiled ? tt : best_tiled;
        }
        printf("%s{\"M\": %lld, \"fused_s\": %.4f, \"tiled_s\": %.4f, \"weight_gb\": %.3f, \"gflop\": %.2f}",
               a > 4 ? ", " : "", (long long)M, best_fused, best_tiled, weight_bytes / 1e9, 2 * macs * (double)M / 1e9);
        fflush(stdout);
        free(x);
        free(y);
    }
    printf("]\n");
    free(tile);
    free(bias);
    dk_model_close(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "bandwidth") == 0) return bandwidth(atoll(argv[2]), atoi(argv[3]));
    if (argc == 9 && strcmp(argv[1], "run") == 0) return run(argv);
    if (argc == 7 && strcmp(argv[1], "decode") == 0) return decode_only(argv);
    if (argc >= 5 && strcmp(argv[1], "linear") == 0) return linear(argc, argv);
    fprintf(stderr, "usage: bench_generate bandwidth MIB THREADS\n"
                    "       bench_generate run MODEL_DIR PROMPTS.jsonl NEW_TOKENS REPEATS LAYER VECTOR.bin STRENGTH\n"
                    "       bench_generate decode MODEL_DIR PROMPTS.jsonl NEW_TOKENS REPEATS FUSED_MAX_M\n"
                    "       bench_generate linear MODEL_DIR REPEATS M...\n");
    return 2;
}
