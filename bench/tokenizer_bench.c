/* tokenizer_bench.c — how fast host/tokenizer encodes a JSON Lines corpus ({"text": ...} per line), single
 * threaded (one text at a time, like HF `Tokenizer.encode` in a loop) and in batch on N threads (like
 * `encode_batch`). bench/tokenizer_bench.sh runs it next to bench/tokenizer_bench_hf.py on the same corpus
 * and prints the ratios recorded in docs/perf.md.
 *
 *   tokenizer_bench TOKENIZER CORPUS.jsonl [THREADS] [REPEATS]                                            */
#include "core/error.h"
#include "core/timer.h"
#include "tokenizer/tok_jsonl.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_bench TOKENIZER CORPUS.jsonl [THREADS] [REPEATS]\n");
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 0, repeats = argc > 4 ? atoi(argv[4]) : 3;
    dk_err err = {0};
    double t0 = dk_time_now();
    dk_tokenizer *tok = dk_tokenizer_load(argv[1], &err);
    if (!tok) dk_die(&err);
    double load_s = dk_time_now() - t0;
    dk_jsonl_reader in;
    if (dk_jsonl_open(&in, argv[2], &err) < 0) dk_die(&err);
    size_t n = 0, cap = 1024, bytes = 0;
    char **texts = malloc(cap * sizeof *texts);
    cJSON *obj;
    int got;
    while ((got = dk_jsonl_next(&in, &obj, &err)) == 1) {
        if (n == cap) texts = realloc(texts, (cap *= 2) * sizeof *texts);
        texts[n] = strdup(cJSON_GetObjectItemCaseSensitive(obj, "text")->valuestring);
        bytes += strlen(texts[n++]);
        cJSON_Delete(obj);
    }
    if (got < 0) dk_die(&err);
    dk_jsonl_close(&in);

    double best_single = 1e30, best_batch = 1e30;
    size_t tokens_single = 0, tokens_batch = 0;
    for (int r = 0; r < repeats; r++) {
        dk_tok_worker *w = dk_tok_worker_new(tok); /* fresh word cache each repeat, like a fresh HF tokenizer */
        dk_tok_ids ids = {0};
        tokens_single = 0;
        t0 = dk_time_now();
        for (size_t i = 0; i < n; i++) {
            ids.n = 0;
            if (dk_tok_worker_encode(w, texts[i], strlen(texts[i]), true, &ids, &err) < 0) dk_die(&err);
            tokens_single += ids.n;
        }
        double s = dk_time_now() - t0;
        if (s < best_single) best_single = s;
        dk_tok_ids_free(&ids);
        dk_tok_worker_free(w);

        dk_tok_ids *outs = calloc(n, sizeof *outs);
        t0 = dk_time_now();
        if (dk_tokenizer_encode_batch(tok, (const char *const *)texts, NULL, n, true, threads, outs, NULL, &err) < 0) dk_die(&err);
        s = dk_time_now() - t0;
        if (s < best_batch) best_batch = s;
        tokens_batch = 0;
        for (size_t i = 0; i < n; i++) {
            tokens_batch += outs[i].n;
            dk_tok_ids_free(&outs[i]);
        }
        free(outs);
    }
    printf("diffkit tokenizer=%s texts=%zu bytes=%zu tokens=%zu load_s=%.3f single_s=%.4f single_MBps=%.2f "
           "batch_s=%.4f batch_MBps=%.2f threads=%d\n",
           argv[1], n, bytes, tokens_single, load_s, best_single, bytes / best_single / 1e6, best_batch,
           bytes / best_batch / 1e6, threads);
    if (tokens_single != tokens_batch) fprintf(stderr, "token counts differ: single %zu batch %zu\n", tokens_single, tokens_batch);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    dk_tokenizer_free(tok);
    return 0;
}
