/* test_shard_plan.c — the token-balanced chunk assignment: every pending chunk exactly once, contiguous runs
 * in rank order, shares within one chunk of T/R, and only pending chunks after a resume. */
#include <stdlib.h>

#include "dist/shard_plan.h"
#include "test.h"

static void check_assignment(const int64_t *tok, const uint8_t *pending, int64_t n, int R) {
    int64_t *owner = malloc((size_t)n * sizeof(int64_t)), *mine = malloc((size_t)n * sizeof(int64_t));
    for (int64_t c = 0; c < n; c++) owner[c] = -1;
    int64_t total = 0, maxchunk = 0;
    for (int64_t c = 0; c < n; c++)
        if (pending[c]) {
            total += tok[c];
            if (tok[c] > maxchunk) maxchunk = tok[c];
        }
    int64_t last = -1;
    for (int r = 0; r < R; r++) {
        int64_t k = dk_shard_assign(tok, pending, n, r, R, mine), sum = 0;
        for (int64_t i = 0; i < k; i++) {
            EXPECT(pending[mine[i]], "chunk %lld assigned but done", (long long)mine[i]);
            EXPECT(owner[mine[i]] == -1, "chunk %lld assigned twice", (long long)mine[i]);
            EXPECT(mine[i] > last, "chunk %lld out of order", (long long)mine[i]); /* rank order follows chunk order */
            last = mine[i];
            owner[mine[i]] = r;
            sum += tok[mine[i]];
        }
        EXPECT(sum <= total / R + maxchunk + 1, "rank %d: %lld tokens, share %lld", r, (long long)sum, (long long)(total / R));
    }
    for (int64_t c = 0; c < n; c++) EXPECT(pending[c] ? owner[c] >= 0 : owner[c] == -1, "chunk %lld owner %lld", (long long)c, (long long)owner[c]);
    free(owner);
    free(mine);
}

int main(void) {
    int64_t tok[37];
    uint8_t all[37], some[37];
    for (int i = 0; i < 37; i++) {
        tok[i] = 1 + (i * 7919) % 113;
        all[i] = 1;
        some[i] = i % 3 != 0;
    }
    for (int R = 1; R <= 5; R++) {
        check_assignment(tok, all, 37, R);
        check_assignment(tok, some, 37, R);
    }
    check_assignment(tok, all, 1, 3); /* fewer chunks than ranks */
    return dk_test_finish("test_shard_plan");
}
