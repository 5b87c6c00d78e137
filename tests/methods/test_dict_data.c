/* test_dict_data.c — the data layer of the dictionary methods (host/methods/dict_data.c, dict_norm.c):
 *   - the training order equals the seed's get_local_shuffled_indices transcribed in Python with diffkit's
 *     permutation (fixture from tools/make_dict_goldens.py order: datasets of 2500, 1000 and 300 rows, shards
 *     of 1000, 2 epochs, seed 42), whether asked position by position, in chunks, or backwards; every epoch is
 *     a permutation; the seed changes it; local_shuffling=false keeps the concatenated order;
 *   - kept rows: with the first 2 tokens of every sequence skipped, kept index i maps to the right store row
 *     (sequences shorter than the skip contribute nothing);
 *   - a batch split over 1, 2, 3 ranks covers it exactly once, in order;
 *   - the normaliser: x̃ = (x − μ)·s with s = target_rms / sqrt(Σσ² + 1e-8) per stacked layer, E‖x̃‖² = target_rms²
 *     on data whose statistics it was given, and undo() inverts it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dict_fixture.h"
#include "methods/dict_data.h"
#include "methods/dict_norm.h"

static void test_order(void) {
    char *path = dk_fixture_path("methods/dict/order_golden.safetensors");
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    EXPECT(ck != NULL, "%s", err.msg);
    if (!ck) return;
    int64_t n_sizes, n_idx;
    float *sizes = fx_f32(ck, "sizes", &n_sizes), *golden = fx_f32(ck, "indices", &n_idx);
    const int64_t shard = (int64_t)fx_scalar(ck, "shard_size"), epochs = (int64_t)fx_scalar(ck, "epochs");
    const uint64_t seed = (uint64_t)fx_scalar(ck, "seed");
    dk_dict_set set = {0};
    set.n = (int)n_sizes;
    for (int j = 0; j < set.n; j++) set.src[j].n_use = (int64_t)sizes[j], set.total += set.src[j].n_use;
    EXPECT(set.total * epochs == n_idx, "fixture size");

    dk_dict_order o;
    dk_dict_order_init(&o, &set, shard, epochs, true, seed);
    int64_t *idx = malloc((size_t)n_idx * sizeof *idx);
    dk_dict_order_get(&o, 0, n_idx, idx);
    int64_t bad = 0;
    for (int64_t i = 0; i < n_idx; i++) bad += idx[i] != (int64_t)golden[i];
    EXPECT(bad == 0, "order: %lld of %lld positions differ from the seed's function", (long long)bad, (long long)n_idx);
    /* in chunks of 37, backwards (other shards cached in between) */
    bad = 0;
    for (int64_t p0 = (n_idx - 1) / 37 * 37; p0 >= 0; p0 -= 37) {
        int64_t n = p0 + 37 <= n_idx ? 37 : n_idx - p0, chunk[37];
        dk_dict_order_get(&o, p0, n, chunk);
        for (int64_t i = 0; i < n; i++) bad += chunk[i] != (int64_t)golden[p0 + i];
    }
    EXPECT(bad == 0, "order in chunks: %lld differ", (long long)bad);
    /* each epoch is a permutation of the rows */
    for (int64_t e = 0; e < epochs; e++) {
        char *seen = calloc((size_t)set.total, 1);
        int64_t dup = 0;
        for (int64_t i = 0; i < set.total; i++) dup += seen[idx[e * set.total + i]]++ != 0;
        EXPECT(dup == 0, "epoch %lld repeats %lld rows", (long long)e, (long long)dup);
        free(seen);
    }
    dk_dict_order_free(&o);
    /* another seed, another order; no shuffling, the concatenated order */
    dk_dict_order_init(&o, &set, shard, epochs, true, seed + 1);
    int64_t first[64], same = 0;
    dk_dict_order_get(&o, 0, 64, first);
    for (int i = 0; i < 64; i++) same += first[i] == idx[i];
    EXPECT(same < 8, "seed %llu gives nearly the same order (%lld of 64)", (unsigned long long)(seed + 1), (long long)same);
    dk_dict_order_free(&o);
    dk_dict_order_init(&o, &set, shard, epochs, false, seed);
    dk_dict_order_get(&o, set.total - 2, 4, first);
    EXPECT(first[0] == set.total - 2 && first[1] == set.total - 1 && first[2] == 0 && first[3] == 1,
           "unshuffled order: %lld %lld %lld %lld", (long long)first[0], (long long)first[1], (long long)first[2],
           (long long)first[3]);
    dk_dict_order_free(&o);
    free(idx), free(sizes), free(golden);
    dk_st_close(ck);
    free(path);
}

static void test_kept_rows(void) {
    /* sequences of 3, 1, 6 and 2 tokens; skip 2: kept 1, 0, 4, 0 */
    int64_t offsets[] = {0, 3, 4, 10, 12};
    int64_t kept_before[5];
    dk_dict_source s = {0};
    s.pair.n_seqs = 4;
    s.pair.seq_offsets = offsets;
    s.kept_before = kept_before;
    kept_before[0] = 0;
    for (int q = 0; q < 4; q++) {
        int64_t len = offsets[q + 1] - offsets[q];
        kept_before[q + 1] = kept_before[q] + (len > 2 ? len - 2 : 0);
    }
    const int64_t want[] = {2, 6, 7, 8, 9};
    for (int i = 0; i < 5; i++)
        EXPECT(dk_dict_kept_row(&s, i) == want[i], "kept row %d: %lld, want %lld", i, (long long)dk_dict_kept_row(&s, i),
               (long long)want[i]);
}

static void test_slices(void) {
    for (int nr = 1; nr <= 3; nr++)
        for (int64_t n = 0; n < 10; n++) {
            int64_t next = 0;
            for (int r = 0; r < nr; r++) {
                int64_t lo, hi;
                dk_dict_slice(n, r, nr, &lo, &hi);
                EXPECT(lo == next && hi >= lo, "slice %lld/%d rank %d", (long long)n, nr, r);
                next = hi;
            }
            EXPECT(next == n, "slices of %lld over %d ranks end at %lld", (long long)n, nr, (long long)next);
        }
}

static void test_norm(void) {
    /* stacked rows (2 layers of d = 3) with known population statistics */
    enum { N = 400, D = 3, W = 6 };
    static float x[N * W], y[N * W];
    double mean[W] = {0}, m2[W] = {0}, sd[W];
    for (int r = 0; r < N; r++)
        for (int j = 0; j < W; j++) x[r * W + j] = (float)(sin(r * 0.37 + j) * (j + 1) + j * 2.0 - 3.0);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < W; j++) mean[j] += x[r * W + j] / (double)N;
    for (int r = 0; r < N; r++)
        for (int j = 0; j < W; j++) m2[j] += (x[r * W + j] - mean[j]) * (x[r * W + j] - mean[j]);
    for (int j = 0; j < W; j++) sd[j] = sqrt(m2[j] / N);
    dk_dict_norm nrm = {0};
    dk_dict_norm_set(&nrm, 2, D, mean, sd, 100.0);
    memcpy(y, x, sizeof x);
    dk_dict_norm_apply(&nrm, y, N);
    for (int l = 0; l < 2; l++) {
        double e2 = 0, tv = 0;
        for (int j = 0; j < D; j++) tv += sd[l * D + j] * sd[l * D + j];
        const float s = (float)(100.0 / sqrt(tv + 1e-8));
        EXPECT(nrm.scale[l] == s, "layer %d scale %.9g, want %.9g", l, nrm.scale[l], s);
        for (int r = 0; r < N; r++)
            for (int j = 0; j < D; j++) e2 += (double)y[r * W + l * D + j] * y[r * W + l * D + j] / N;
        EXPECT(fabs(sqrt(e2) - 100.0) < 1e-3, "layer %d: sqrt E|x~|^2 = %.6f, want 100", l, sqrt(e2));
        EXPECT(y[7 * W + l * D + 1] == (x[7 * W + l * D + 1] - (float)mean[l * D + 1]) * s, "formula, layer %d", l);
    }
    dk_dict_norm_undo(&nrm, y, N);
    double worst = 0;
    for (int i = 0; i < N * W; i++) worst = fmax(worst, fabs(y[i] - x[i]) / (1.0 + fabs(x[i]) + fabs(mean[i % W])));
    EXPECT(worst < 1e-6, "undo: worst error %.3g (relative to 1 + |x| + |mean|)", worst);
    dk_dict_norm_free(&nrm);
}

int main(void) {
    test_order();
    test_kept_rows();
    test_slices();
    test_norm();
    return dk_test_finish("test_dict_data");
}
