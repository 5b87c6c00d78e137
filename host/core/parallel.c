/* parallel.c — see parallel.h. Plain pthreads: the blocks are few and long. */
#include "core/parallel.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/error.h"

typedef struct block {
    dk_rows_fn fn;
    void *ctx;
    int64_t r0, r1;
} block;

static void *run_block(void *arg) {
    block *b = arg;
    b->fn(b->ctx, b->r0, b->r1);
    return NULL;
}

void dk_parallel_rows(int n_threads, int64_t n, int64_t min_rows, dk_rows_fn fn, void *ctx) {
    if (n <= 0) return;
    if (min_rows < 1) min_rows = 1;
    int64_t nb = n_threads > 1 ? n_threads : 1;
    if (nb > (n + min_rows - 1) / min_rows) nb = (n + min_rows - 1) / min_rows;
    if (nb <= 1) {
        fn(ctx, 0, n);
        return;
    }
    block *blocks = dk_calloc((size_t)nb, sizeof *blocks);
    pthread_t *threads = dk_calloc((size_t)nb, sizeof *threads);
    bool *started = dk_calloc((size_t)nb, sizeof *started);
    for (int64_t i = 0; i < nb; i++) blocks[i] = (block){fn, ctx, n * i / nb, n * (i + 1) / nb};
    for (int64_t i = 1; i < nb; i++) started[i] = pthread_create(&threads[i], NULL, run_block, &blocks[i]) == 0;
    run_block(&blocks[0]);
    for (int64_t i = 1; i < nb; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            run_block(&blocks[i]);
    }
    free(blocks), free(threads), free(started);
}
