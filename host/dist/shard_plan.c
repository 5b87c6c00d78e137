/* shard_plan.c — token-balanced contiguous assignment of chunks to ranks (see shard_plan.h).
 * Rank r takes the pending chunks whose token midpoint falls in [r·T/R, (r+1)·T/R), where T is the pending
 * token total: contiguous runs, each within one chunk of the ideal share. */
#include "dist/shard_plan.h"

int64_t dk_shard_assign(const int64_t *chunk_tokens, const uint8_t *pending, int64_t n_chunks, int rank, int nranks,
                        int64_t *mine) {
    int64_t total = 0;
    for (int64_t c = 0; c < n_chunks; c++)
        if (pending[c]) total += chunk_tokens[c];
    int64_t n_mine = 0, before = 0;
    for (int64_t c = 0; c < n_chunks; c++) {
        if (!pending[c]) continue;
        /* owner of the chunk's midpoint: floor((before + tokens/2) * R / T), clamped */
        int owner = 0;
        if (total > 0) {
            __int128 mid2 = (__int128)(2 * before + chunk_tokens[c]) * nranks;
            owner = (int)(mid2 / (2 * (__int128)total));
            if (owner >= nranks) owner = nranks - 1;
        }
        if (owner == rank) mine[n_mine++] = c;
        before += chunk_tokens[c];
    }
    return n_mine;
}
