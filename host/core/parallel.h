/* parallel.h — split rows [0, n) into contiguous blocks over up to n_threads threads and wait for all of them.
 * For host-side work that is independent per row (a method's per-token reductions over logits): each thread
 * gets one block, so results are the same whatever the thread count when fn treats rows independently.
 *
 *     static void work(void *ctx, int64_t r0, int64_t r1) { ... rows [r0, r1) ... }
 *     dk_parallel_rows(threads, n_rows, work, &ctx);
 */
#ifndef DK_PARALLEL_H
#define DK_PARALLEL_H

#include <stdint.h>

typedef void (*dk_rows_fn)(void *ctx, int64_t row0, int64_t row1);

/* Runs fn over [0, n) split in up to n_threads blocks (at least min_rows each); the calling thread takes the
 * first block. n_threads <= 1 (or a failed thread start) runs the remaining blocks on the caller. */
void dk_parallel_rows(int n_threads, int64_t n, int64_t min_rows, dk_rows_fn fn, void *ctx);

#endif
