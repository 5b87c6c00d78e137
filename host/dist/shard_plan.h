/* shard_plan.h — which rank computes which chunk: chunks (fixed by the plan, independent of the rank
 * count) are dealt out in contiguous runs balanced by tokens. Rows belong to chunks, not ranks, so a
 * rerun with another number of ranks writes the same rows (resume after a crash with any rank count).
 * Only chunks not yet done take part: after a crash the remaining work is balanced again. */
#ifndef DK_SHARD_PLAN_H
#define DK_SHARD_PLAN_H

#include <stdint.h>

/* chunk_tokens (n_chunks); pending (n_chunks, 1 = still to do). Writes this rank's pending chunks, in
 * plan order, to mine (capacity n_chunks); returns how many. Identical on every rank for the same input. */
int64_t dk_shard_assign(const int64_t *chunk_tokens, const uint8_t *pending, int64_t n_chunks, int rank, int nranks,
                        int64_t *mine);

#endif
