/* pp_run.c — the compute-and-write loop of one store (see pp_run.h). */
#include "pipeline/pp_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "dist/shard_plan.h"
#include "kernels/cpu/convert.h"

/* mean and sum of squared deviations per dimension of x (n, d), two-pass in fp64 (exact enough, and the
 * same bits whichever rank computes the chunk) */
static void chunk_stats(const float *x, int64_t n, int64_t d, double *mean, double *m2) {
    memset(mean, 0, (size_t)d * sizeof(double));
    memset(m2, 0, (size_t)d * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double dev = x[i * d + j] - mean[j];
            m2[j] += dev * dev;
        }
}

int dk_pp_run_store(const dk_dist *d, dk_store_writer *w, const dk_store_layout *layout, const dk_pp_plan *plan,
                    const dk_pp_tokens *t, const dk_model *m, const dk_lora_adapter *adapter, const char *label,
                    int kill_after_rounds, dk_pp_totals *totals, dk_err *err) {
    int64_t C = plan->n_chunks, H = layout->d_model, nl = layout->n_layers;
    uint8_t *done = dk_malloc((size_t)C + 1);
    uint8_t *pending = dk_malloc((size_t)C + 1);
    int64_t *mine = dk_malloc((size_t)(C ? C : 1) * sizeof(int64_t));
    dk_store_read_done(w, done);
    int64_t pending_tokens = 0, n_done = 0;
    for (int64_t c = 0; c < C; c++) {
        pending[c] = !done[c];
        if (pending[c]) pending_tokens += plan->chunk_tokens[c];
        else n_done++;
    }
    if (n_done) LOG_INFO("%s: resuming, %lld of %lld chunks already written", label, (long long)n_done, (long long)C);
    int64_t n_mine = dk_shard_assign(plan->chunk_tokens, pending, C, d->rank, d->nranks, mine);
    int64_t rounds = dk_dist_max_i64(d, n_mine);
    /* rows this rank owns, and the first by Exscan: a check of the plan's own row offsets */
    int64_t my_tokens = 0;
    for (int64_t k = 0; k < n_mine; k++) my_tokens += plan->chunk_tokens[mine[k]];
    int64_t my_first = dk_dist_exscan_i64(d, my_tokens);
    if (n_mine > 0 && n_done == 0) {
        int64_t planned_first = t->offsets[plan->chunk_seq[mine[0]]];
        CHECK(my_first == planned_first, "rank %d: Exscan row %lld != plan row %lld", d->rank, (long long)my_first,
              (long long)planned_first);
    }
    LOG_DEBUG("%s: rank %d computes %lld chunks (%lld tokens) from row %lld", label, d->rank, (long long)n_mine,
              (long long)my_tokens, (long long)my_first);

    int64_t T = plan->max_chunk_tokens > 0 ? plan->max_chunk_tokens : 1;
    int64_t *ids = dk_malloc((size_t)T * sizeof(int64_t));          /* (T) */
    int64_t *starts = dk_malloc((size_t)(t->n_seqs + 1) * sizeof(int64_t));
    float *capture[DK_STORE_MAX_LAYERS];                               /* per layer (T, H) */
    uint16_t *bf16[DK_STORE_MAX_LAYERS];                               /* per layer (T, H) */
    double *mean[DK_STORE_MAX_LAYERS], *m2[DK_STORE_MAX_LAYERS];       /* per layer (H) */
    for (int64_t i = 0; i < nl; i++) {
        capture[i] = dk_malloc((size_t)(T * H) * sizeof(float));
        bf16[i] = dk_malloc((size_t)(T * H) * sizeof(uint16_t));
        mean[i] = dk_malloc((size_t)H * sizeof(double));
        m2[i] = dk_malloc((size_t)H * sizeof(double));
    }
    double pending_global = (double)dk_dist_sum_i64(d, d->rank == 0 ? pending_tokens : 0);
    dk_progress prog;
    char plabel[64];
    snprintf(plabel, sizeof plabel, "%.63s", label);
    dk_progress_begin(&prog, plabel, pending_global, "tokens");
    dk_timer compute;
    dk_timer_reset(&compute);
    double io_before = dk_store_io_seconds(w);
    int64_t bytes_global = 0;
    int rc = 0;
    for (int64_t r = 0; r < rounds; r++) {
        dk_store_chunk chunk = {.chunk = -1};
        int64_t rows = 0;
        if (r < n_mine) {
            int64_t c = mine[r];
            int64_t s0 = plan->chunk_seq[c], s1 = plan->chunk_seq[c + 1];
            int64_t row0 = t->offsets[s0];
            rows = t->offsets[s1] - row0;
            dk_timer_start(&compute);
            for (int64_t i = 0; i < rows; i++) ids[i] = t->ids[row0 + i];
            for (int64_t s = s0; s <= s1; s++) starts[s - s0] = t->offsets[s] - row0;
            dk_batch batch = {.ids = ids, .n_tokens = rows, .seq_start = starts, .n_seqs = s1 - s0, .is_prompt = true};
            dk_hook_plan hooks = {.n_capture = nl, .capture_layers = layout->layers, .captures = capture,
                                  .logits = DK_LOGITS_NONE};
            if (dk_forward(m, adapter, &batch, &hooks, NULL, err) != 0) {
                dk_err_prefix(err, "%s, chunk %lld: ", label, (long long)c);
                rc = -1;
            } else {
                for (int64_t i = 0; i < nl; i++) {
                    dk_cpu_f32_to_bf16(bf16[i], capture[i], (size_t)(rows * H));
                    chunk_stats(capture[i], rows, H, mean[i], m2[i]);
                    chunk.rows[i] = bf16[i];
                    chunk.mean[i] = mean[i];
                    chunk.m2[i] = m2[i];
                }
                chunk.chunk = c;
                chunk.tokens = t->ids + row0;
            }
            dk_timer_stop(&compute);
        }
        if (dk_dist_agree(d, err) != 0) {
            rc = -1;
            break;
        }
        int64_t wrote = dk_store_write_round(w, chunk.chunk >= 0 ? &chunk : NULL);
        totals->tokens += chunk.chunk >= 0 ? rows : 0;
        totals->bytes += wrote;
        int64_t round_tokens = dk_dist_sum_i64(d, chunk.chunk >= 0 ? rows : 0);
        bytes_global += dk_dist_sum_i64(d, wrote);
        char note[96];
        char gib[32];
        dk_format_bytes(gib, (double)bytes_global);
        snprintf(note, sizeof note, "%s written", gib);
        dk_progress_set_note(&prog, note);
        dk_progress_add(&prog, (double)round_tokens);
        if (kill_after_rounds > 0 && r + 1 == kill_after_rounds && d->rank == 0) {
            fprintf(stderr, "diff_preprocess: test hook: killing rank 0 after round %lld\n", (long long)r + 1);
            fflush(stderr);
            raise(SIGKILL);
        }
    }
    if (rc == 0) dk_progress_end(&prog);
    totals->compute_s += dk_timer_seconds(&compute);
    totals->io_s += dk_store_io_seconds(w) - io_before;
    for (int64_t i = 0; i < nl; i++) {
        free(capture[i]);
        free(bf16[i]);
        free(mean[i]);
        free(m2[i]);
    }
    free(ids);
    free(starts);
    free(done);
    free(pending);
    free(mine);
    if (rc != 0) dk_store_writer_close(w);
    return rc;
}
