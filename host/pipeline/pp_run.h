/* pp_run.h — computing one store: the pending chunks dealt out over the ranks (balanced by tokens), each
 * rank's chunk run through the forward pass with captures at the store's layers, narrowed to bf16 with its
 * per-chunk statistics, and written in collective rounds. The narrowing and write of round r overlap the
 * forward of round r + 1 (a writer thread, two capture buffer sets; pp_run.c says how MPI and HDF5 stay on
 * one thread).
 * Collective over dist. */
#ifndef DK_PP_RUN_H
#define DK_PP_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "dist/dist.h"
#include "io/act_store.h"
#include "model/backend.h"
#include "pipeline/pp_plan.h"

typedef struct dk_pp_totals {
    int64_t tokens;         /* tokens computed by this rank */
    int64_t bytes;          /* bytes this rank wrote */
    double compute_s;       /* the forward passes (the compute thread) */
    double narrow_s;        /* bf16 narrowing + statistics of the captures (the writer thread) */
    double io_s;            /* HDF5 writes and flushes of the rounds (the writer thread) */
    double wait_s;          /* the compute thread blocked on the writer: a buffer set not yet written, the
                             * final join. Writer time (narrow_s + io_s) not in wait_s was hidden. */
} dk_pp_totals;

/* Share of the writer thread's time (writer_s = narrow_s + io_s) hidden behind the forward, in [0, 1]:
 * (writer_s - wait_s) / writer_s, clamped. wait_s also counts waiting for slower ranks in the per-round
 * agreement, so this is a lower bound. */
double dk_pp_hidden_share(double writer_s, double wait_s);

/* Test hooks, read by the job from the environment (0 = off). */
typedef struct dk_pp_test_hooks {
    int kill_after_rounds;  /* SIGKILL on rank 0 once this many rounds are written */
    bool hold_writes;       /* the writer writes round r only after round r + 1 was computed: proves that
                             * compute runs ahead of the writer into the other buffer set */
} dk_pp_test_hooks;

/* Runs every pending chunk of w's plan on backend be (+ adapter, may be NULL). label names the store in
 * progress lines. Must be called from the thread that opened be. 0, or -1 with err agreed on every rank
 * (the writer is then closed). */
int dk_pp_run_store(const dk_dist *d, dk_store_writer *w, const dk_store_layout *layout, const dk_pp_plan *plan,
                    const dk_pp_tokens *t, dk_backend *be, const dk_lora_adapter *adapter, const char *label,
                    const dk_pp_test_hooks *hooks, dk_pp_totals *totals, dk_err *err);

#endif
