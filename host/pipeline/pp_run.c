/* pp_run.c — the compute-and-write loop of one store (see pp_run.h), pipelined: the narrowing and the
 * collective write of round r run while the forward of round r + 1 computes.
 *
 * Two threads, two capture buffer sets:
 *   compute (the caller's thread, which owns the backend and, on the GPU, the CUDA device): for round r it
 *     waits until buffer set r % 2 is free (round r - 2 written), runs the forward into that set's fp32
 *     capture buffers, then posts round r together with its forward error, if any. While the writer lives
 *     it makes no MPI and no HDF5 call. On the GPU this keeps the device busy: the host-side work of a
 *     round (narrowing, statistics, the write) no longer sits between two forwards.
 *   writer (one pthread per store): for round r it takes the posted set, narrows the captures to bf16 and
 *     computes the chunk statistics (into its own buffers: only it reads them), agrees with every rank whether any
 *     forward failed (dk_dist_agree_idle: it sleeps rather than spins while slower ranks compute, so it does
 *     not take the core from this rank's compute thread), writes the round collectively (dk_store_write_round: HDF5 over
 *     MPI-IO), sums the progress counters (MPI_Allreduce), then frees the set. It makes every MPI and HDF5
 *     call of the loop, so "one thread makes all HDF5 calls" holds and the MPI-IO of one rank never runs
 *     beside another MPI call of the same rank.
 *
 * MPI threading: dk_dist_init requests MPI_THREAD_SERIALIZED: MPI may be called from any thread but never
 * from two at once. Here the compute thread makes MPI and HDF5 calls only before pthread_create and after
 * pthread_join, which order them against the writer's, and the writer is the only caller in between. The
 * provided level is checked before the writer starts (a clear error, agreed on every rank, if too low).
 * Alternatives not taken: the compute thread doing the error agreement while the writer does MPI-IO would
 * need MPI_THREAD_MULTIPLE (not always provided, and slower in Open MPI); agreeing once after the loop
 * instead of per round would let a rank whose forward failed keep others writing chunks it never computed.
 * Debian's parallel HDF5 is not built thread-safe; it is only ever entered by one thread at a time.
 *
 * Non-finite activations (a NaN adapter weight, an absurd scale) are caught by the writer from the chunk
 * statistics it computes anyway (check_finite_chunk) and travel like a forward error.
 *
 * Errors: a forward error rides with its round to the writer; every rank's writer agrees on it at that
 * round, closes the store (the chunks already flushed stay flagged for a rerun; the store is never marked
 * complete) and stops; a compute thread waiting for a buffer set sees the writer stopped and stops too.
 * A fatal CHECK on either thread ends the job with MPI_Abort, as before.
 *
 * Leading tokens not stored (layout->skip_first > 0, the seed's ignore_first_n_tokens_per_sample_during_collection):
 * the forward runs whole sequences; the writer first moves each sequence's kept rows together, in place in the
 * capture buffers (its own until the round is written), and gathers their tokens, then narrows and summarises
 * the kept rows only.
 *
 * Buffers: two sets of fp32 capture buffers (pinned on the GPU, dk_backend_host_alloc; the forward of
 * round r + 1 fills one while the writer narrows the other), one set of bf16 rows and statistics (the
 * writer's alone). Tokens are read in place from t.
 *
 * Times: compute_s (the compute thread's forwards), narrow_s and io_s (the writer's narrowing + statistics,
 * and its HDF5 time), wait_s (the compute thread blocked on the writer). narrow_s + io_s - wait_s is the
 * writer's time hidden behind the forwards. */
#include "pipeline/pp_run.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/finite.h"
#include "core/format.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "dist/shard_plan.h"
#include "kernels/cpu/convert.h"

/* How long the hold_writes test hook waits for the next round before it calls the pipeline broken. */
enum { HOLD_TIMEOUT_S = 60 };

/* mean and sum of squared deviations per dimension of x (n, d), two-pass in fp64 (exact enough, and the
 * same bits whichever rank computes the chunk) */
static void chunk_stats(const float *x, int64_t n, int64_t d, double *mean, double *m2) {
    memset(mean, 0, (size_t)d * sizeof(double));
    memset(m2, 0, (size_t)d * sizeof(double));
    if (n == 0) return; /* a chunk whose sequences are all skipped: merged with weight 0 */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double dev = x[i * d + j] - mean[j];
            m2[j] += dev * dev;
        }
}

double dk_pp_hidden_share(double writer_s, double wait_s) {
    if (writer_s <= 0) return 0;
    double h = (writer_s - wait_s) / writer_s;
    return h < 0 ? 0 : h > 1 ? 1 : h;
}

/* One buffer set: what the writer needs of one round. */
typedef struct slot {
    float *capture[DK_STORE_MAX_LAYERS];                        /* per layer (T, H) fp32, from the forward */
    dk_store_chunk chunk;                                       /* chunk -1: nothing to write this round */
    int64_t rows;
    dk_err err;                                                 /* this rank's forward error of the round */
} slot;

typedef struct pipeline {
    /* fixed while the writer runs */
    const dk_dist *d;
    dk_store_writer *w;
    const dk_store_layout *layout;
    const dk_pp_plan *plan;
    const dk_pp_tokens *t;
    const char *label;
    int64_t rounds;
    const dk_pp_test_hooks *hooks;
    dk_progress *prog;
    int64_t n_layers, d_model;
    slot slots[2];
    /* the writer's own: the narrowed rows and statistics of the round it writes */
    uint16_t *bf16[DK_STORE_MAX_LAYERS];                        /* per layer (T, H) bf16 bits */
    int32_t *kept_tokens;                                       /* (T) tokens of the kept rows (skip_first > 0) */
    double *mean[DK_STORE_MAX_LAYERS], *m2[DK_STORE_MAX_LAYERS];/* per layer (H) */
    double narrow_s;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t posted;         /* rounds the compute thread has handed over */
    int64_t written;        /* rounds the writer has finished (their set is free again) */
    bool compute_done;      /* the compute thread posts nothing more */
    bool writer_done;       /* the writer has stopped: every round written, or an agreed error */
    /* the writer's results, read after the join */
    int rc;
    dk_err err;
    int64_t tokens, bytes, held;
} pipeline;

/* The guard against non-finite activations (core/finite.h): a NaN or Inf anywhere in the chunk makes its
 * mean or m2 non-finite, so testing those 2d numbers costs nothing; only then is the chunk searched, to name
 * the sequence and token. 0, or -1 with err. */
static int check_finite_chunk(const pipeline *p, const slot *s, int64_t kept_rows, int64_t layer_index,
                              const double *mean, const double *m2, dk_err *err) {
    size_t d = (size_t)p->d_model;
    if (dk_first_nonfinite_f64(mean, d) < 0 && dk_first_nonfinite_f64(m2, d) < 0) return 0;
    /* the kept rows (each sequence without its first skip_first tokens) are at the front of the capture */
    int64_t bad = dk_first_nonfinite_f32(s->capture[layer_index], (size_t)kept_rows * d);
    int64_t row = bad >= 0 ? bad / p->d_model : 0, col = bad >= 0 ? bad % p->d_model : 0;
    const int64_t *stored = p->layout->seq_offsets;
    int64_t seq = p->layout->chunk_seq[s->chunk.chunk], first_row = stored[seq];
    while (stored[seq + 1] <= first_row + row) seq++;
    const char *kind = bad >= 0 ? dk_nonfinite_name(s->capture[layer_index][bad]) : "an overflow in the statistics";
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s: the model produced non-finite activations (%s) at layer %lld, "
                      "sequence %lld (token %lld, dimension %lld), chunk %lld: the weights, the adapter or its scale "
                      "give NaN/Inf on this input; the store is not marked complete", p->label, kind,
                      (long long)p->layout->layers[layer_index], (long long)seq,
                      (long long)(first_row + row - stored[seq] + p->layout->skip_first), (long long)col,
                      (long long)s->chunk.chunk);
}

/* wakes every waiter and releases mu (held by the caller) */
static void broadcast_unlock(pipeline *p) {
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* hold_writes test hook: wait until round r + 1 is posted. 0 when it was, -1 (err set) when it never came:
 * the compute thread cannot run ahead of the writer. */
static int hold_for_next_round(pipeline *p, int64_t r, dk_err *err) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HOLD_TIMEOUT_S;
    pthread_mutex_lock(&p->mu);
    int timed_out = 0;
    while (p->posted <= r + 1 && !p->compute_done && !timed_out)
        timed_out = pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0;
    bool ahead = p->posted > r + 1;
    pthread_mutex_unlock(&p->mu);
    if (ahead) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME, "test hook hold_writes: round %lld was not computed while round %lld "
                      "waited to be written: the compute thread does not run ahead of the writer",
                      (long long)r + 2, (long long)r + 1);
}

/* Moves the kept rows of s's chunk (each sequence without its first layout->skip_first tokens) to the front of
 * its capture buffers and their tokens into p->kept_tokens; returns how many rows are kept. */
static int64_t keep_rows(pipeline *p, slot *s) {
    const int64_t skip = p->layout->skip_first, H = p->d_model, c = s->chunk.chunk;
    const int64_t s0 = p->plan->chunk_seq[c], s1 = p->plan->chunk_seq[c + 1], row0 = p->t->offsets[s0];
    int64_t kept = 0;
    for (int64_t q = s0; q < s1; q++) {
        const int64_t from = p->t->offsets[q] - row0 + skip, n = p->t->offsets[q + 1] - p->t->offsets[q] - skip;
        if (n <= 0) continue;
        for (int64_t i = 0; i < p->n_layers; i++)
            memmove(s->capture[i] + kept * H, s->capture[i] + from * H, (size_t)(n * H) * sizeof(float));
        memcpy(p->kept_tokens + kept, p->t->ids + row0 + from, (size_t)n * sizeof(int32_t));
        kept += n;
    }
    CHECK(kept == p->layout->seq_offsets[s1] - p->layout->seq_offsets[s0], "chunk %lld: %lld rows kept, the plan "
          "says %lld", (long long)c, (long long)kept, (long long)(p->layout->seq_offsets[s1] - p->layout->seq_offsets[s0]));
    s->chunk.tokens = p->kept_tokens;
    return kept;
}

static void *writer_main(void *arg) {
    pipeline *p = arg;
    int64_t bytes_global = 0;
    for (int64_t r = 0; r < p->rounds; r++) {
        pthread_mutex_lock(&p->mu);
        while (p->posted <= r && !p->compute_done) pthread_cond_wait(&p->cv, &p->mu);
        bool have = p->posted > r;
        pthread_mutex_unlock(&p->mu);
        /* the compute thread stops early only after posting a failed round, which ends the loop there */
        CHECK(have, "pipeline: the compute thread stopped before round %lld", (long long)r);
        slot *s = &p->slots[r % 2];
        dk_err err = s->err;
        /* the hold comes before the narrowing, so that a forward of round r + 1 into this round's capture
         * buffers (one set instead of two) would show as a difference in the stores */
        if (p->hooks->hold_writes && r + 1 < p->rounds && !dk_err_is_set(&err)) {
            if (hold_for_next_round(p, r, &err) == 0) p->held++;
        }
        if (s->chunk.chunk >= 0 && !dk_err_is_set(&err)) {
            double t0 = dk_time_now();
            const int64_t kept = p->layout->skip_first > 0 ? keep_rows(p, s) : s->rows;
            for (int64_t i = 0; i < p->n_layers && !dk_err_is_set(&err); i++) {
                dk_cpu_f32_to_bf16(p->bf16[i], s->capture[i], (size_t)(kept * p->d_model));
                chunk_stats(s->capture[i], kept, p->d_model, p->mean[i], p->m2[i]);
                check_finite_chunk(p, s, kept, i, p->mean[i], p->m2[i], &err);
                s->chunk.rows[i] = p->bf16[i];
                s->chunk.mean[i] = p->mean[i];
                s->chunk.m2[i] = p->m2[i];
            }
            p->narrow_s += dk_time_now() - t0;
        }
        if (dk_dist_agree_idle(p->d, &err) != 0) {
            p->rc = -1;
            p->err = err;
            dk_store_writer_close(p->w);
            break;
        }
        const bool mine = s->chunk.chunk >= 0;
        int64_t wrote = dk_store_write_round(p->w, mine ? &s->chunk : NULL);
        p->tokens += mine ? s->rows : 0;
        p->bytes += wrote;
        int64_t round_tokens = dk_dist_sum_i64(p->d, mine ? s->rows : 0);
        bytes_global += dk_dist_sum_i64(p->d, wrote);
        char note[96], gib[32];
        dk_format_bytes(gib, (double)bytes_global);
        snprintf(note, sizeof note, "%s written", gib);
        dk_progress_set_note(p->prog, note);
        dk_progress_add(p->prog, (double)round_tokens);
        if (p->hooks->kill_after_rounds > 0 && r + 1 == p->hooks->kill_after_rounds && p->d->rank == 0) {
            fprintf(stderr, "diff_preprocess: test hook: killing rank 0 after round %lld\n", (long long)r + 1);
            fflush(stderr);
            raise(SIGKILL);
        }
        pthread_mutex_lock(&p->mu);
        p->written = r + 1;
        broadcast_unlock(p);
    }
    if (p->rc == 0) dk_progress_end(p->prog);
    pthread_mutex_lock(&p->mu);
    p->writer_done = true;
    broadcast_unlock(p);
    return NULL;
}

/* Forward of chunk c into s's capture buffers (the writer narrows them). 0 or -1 + s->err. */
static int compute_chunk(const dk_store_layout *layout, const dk_pp_plan *plan, const dk_pp_tokens *t,
                         dk_backend *be, const dk_lora_adapter *adapter, const char *label, int64_t c,
                         int64_t *ids, int64_t *starts, slot *s) {
    int64_t nl = layout->n_layers;
    int64_t s0 = plan->chunk_seq[c], s1 = plan->chunk_seq[c + 1];
    int64_t row0 = t->offsets[s0];
    int64_t rows = t->offsets[s1] - row0;
    for (int64_t i = 0; i < rows; i++) ids[i] = t->ids[row0 + i];
    for (int64_t q = s0; q <= s1; q++) starts[q - s0] = t->offsets[q] - row0;
    dk_batch batch = {.ids = ids, .n_tokens = rows, .seq_start = starts, .n_seqs = s1 - s0, .is_prompt = true};
    dk_hook_plan hooks = {.n_capture = nl, .capture_layers = layout->layers, .captures = s->capture,
                          .logits = DK_LOGITS_NONE};
    if (dk_backend_forward(be, adapter, &batch, &hooks, NULL, &s->err) != 0) {
        dk_err_prefix(&s->err, "%s, chunk %lld: ", label, (long long)c);
        return -1;
    }
    s->chunk.chunk = c;
    s->chunk.tokens = t->ids + row0;
    s->rows = rows;
    return 0;
}

int dk_pp_run_store(const dk_dist *d, dk_store_writer *w, const dk_store_layout *layout, const dk_pp_plan *plan,
                    const dk_pp_tokens *t, dk_backend *be, const dk_lora_adapter *adapter, const char *label,
                    const dk_pp_test_hooks *test_hooks, dk_pp_totals *totals, dk_err *err) {
    int64_t C = plan->n_chunks, H = layout->d_model, nl = layout->n_layers;
    uint8_t *done = dk_malloc((size_t)C + 1);
    uint8_t *pending = dk_malloc((size_t)C + 1);
    int64_t *mine = dk_malloc((size_t)(C ? C : 1) * sizeof(int64_t));
    dk_store_read_done(w, done);
    int64_t pending_tokens = 0, n_done = 0, max_seqs = 1;
    for (int64_t c = 0; c < C; c++) {
        pending[c] = !done[c];
        if (pending[c]) pending_tokens += plan->chunk_tokens[c];
        else n_done++;
        int64_t n = plan->chunk_seq[c + 1] - plan->chunk_seq[c];
        if (n > max_seqs) max_seqs = n;
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
    /* before the writer exists: the MPI thread level, the device arena; agreed on the main thread */
    if (d->thread_level < MPI_THREAD_SERIALIZED)
        dk_err_set(err, DK_EXIT_RUNTIME, "this MPI library provides thread level %d, below MPI_THREAD_SERIALIZED "
                   "(%d), which diff_preprocess's writer thread needs (Open MPI and MPICH provide it)",
                   d->thread_level, MPI_THREAD_SERIALIZED);
    else if (n_mine > 0)
        dk_backend_reserve(be, T, max_seqs, nl, adapter, err);
    if (dk_dist_agree(d, err) != 0) {
        free(done);
        free(pending);
        free(mine);
        dk_store_writer_close(w);
        return -1;
    }

    int64_t *ids = dk_malloc((size_t)T * sizeof(int64_t));             /* (T) */
    int64_t *starts = dk_malloc((size_t)(t->n_seqs + 1) * sizeof(int64_t));
    pipeline p;
    memset(&p, 0, sizeof p);
    p.n_layers = nl;
    p.d_model = H;
    p.layout = layout;
    p.plan = plan;
    p.t = t;
    p.kept_tokens = dk_malloc((size_t)T * sizeof(int32_t));
    for (int64_t i = 0; i < nl; i++) {
        for (int k = 0; k < 2; k++) {
            p.slots[k].capture[i] = dk_backend_host_alloc(be, (size_t)(T * H) * sizeof(float));
        }
        p.bf16[i] = dk_malloc((size_t)(T * H) * sizeof(uint16_t));
        p.mean[i] = dk_malloc((size_t)H * sizeof(double));
        p.m2[i] = dk_malloc((size_t)H * sizeof(double));
    }
    double pending_global = (double)dk_dist_sum_i64(d, d->rank == 0 ? pending_tokens : 0);
    dk_progress prog;
    char plabel[64];
    snprintf(plabel, sizeof plabel, "%.63s", label);
    dk_progress_begin(&prog, plabel, pending_global, "tokens");
    dk_timer compute;
    dk_timer_reset(&compute);
    double io_before = dk_store_io_seconds(w), wait_s = 0;

    p.d = d;
    p.w = w;
    p.layout = layout;
    p.t = t;
    p.label = label;
    p.rounds = rounds;
    p.hooks = test_hooks;
    p.prog = &prog;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t writer;
    CHECK(pthread_create(&writer, NULL, writer_main, &p) == 0, "cannot start the writer thread");
    /* from here to the join: no MPI, no HDF5 on this thread */
    for (int64_t r = 0; r < rounds; r++) {
        slot *s = &p.slots[r % 2];
        double t0 = dk_time_now();
        pthread_mutex_lock(&p.mu);
        while (!p.writer_done && r - p.written >= 2) pthread_cond_wait(&p.cv, &p.mu);
        bool stop = p.writer_done;
        pthread_mutex_unlock(&p.mu);
        wait_s += dk_time_now() - t0;
        if (stop) break; /* an agreed error ended the writer */
        s->chunk = (dk_store_chunk){.chunk = -1};
        s->rows = 0;
        dk_err_clear(&s->err);
        bool failed = false;
        if (r < n_mine) {
            dk_timer_start(&compute);
            failed = compute_chunk(layout, plan, t, be, adapter, label, mine[r], ids, starts, s) != 0;
            dk_timer_stop(&compute);
        }
        pthread_mutex_lock(&p.mu);
        p.posted = r + 1;
        if (failed) p.compute_done = true;
        broadcast_unlock(&p);
        if (failed) break; /* the writer agrees on it at this round and stops every rank */
    }
    pthread_mutex_lock(&p.mu);
    p.compute_done = true;
    broadcast_unlock(&p);
    double t0 = dk_time_now();
    CHECK(pthread_join(writer, NULL) == 0, "cannot join the writer thread");
    wait_s += dk_time_now() - t0;
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);

    if (test_hooks->hold_writes && p.rc == 0)
        LOG_INFO("%s: test hook hold_writes: %lld rounds written after the next round was computed", label,
                 (long long)dk_dist_sum_i64(d, p.held));
    totals->tokens += p.tokens;
    totals->bytes += p.bytes;
    totals->compute_s += dk_timer_seconds(&compute);
    totals->wait_s += wait_s;
    totals->narrow_s += p.narrow_s;
    if (p.rc == 0) totals->io_s += dk_store_io_seconds(w) - io_before; /* w is freed on error */
    for (int64_t i = 0; i < nl; i++) {
        for (int k = 0; k < 2; k++) dk_backend_host_free(be, p.slots[k].capture[i]);
        free(p.bf16[i]);
        free(p.mean[i]);
        free(p.m2[i]);
    }
    free(ids);
    free(starts);
    free(p.kept_tokens);
    free(done);
    free(pending);
    free(mine);
    if (p.rc != 0) *err = p.err;
    return p.rc;
}
