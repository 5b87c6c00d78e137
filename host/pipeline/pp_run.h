/* pp_run.h — computing one store: the pending chunks dealt out over the ranks (balanced by tokens), each
 * rank's chunk run through the forward pass with captures at the store's layers, narrowed to bf16 with its
 * per-chunk statistics, and written in collective rounds. Collective over dist. */
#ifndef DK_PP_RUN_H
#define DK_PP_RUN_H

#include <stdint.h>

#include "dist/dist.h"
#include "io/act_store.h"
#include "model/forward.h"
#include "pipeline/pp_plan.h"

typedef struct dk_pp_totals {
    int64_t tokens;         /* tokens computed by this rank */
    int64_t bytes;          /* bytes this rank wrote */
    double compute_s;       /* forward + narrowing + statistics */
    double io_s;            /* HDF5 writes and flushes */
} dk_pp_totals;

/* Runs every pending chunk of w's plan with model m (+ adapter, may be NULL). label names the store in
 * progress lines. kill_after_rounds > 0 (tests only) kills this process with SIGKILL after that many rounds
 * on rank 0. 0, or -1 with err agreed on every rank (the writer is then closed). */
int dk_pp_run_store(const dk_dist *d, dk_store_writer *w, const dk_store_layout *layout, const dk_pp_plan *plan,
                    const dk_pp_tokens *t, const dk_model *m, const dk_lora_adapter *adapter, const char *label,
                    int kill_after_rounds, dk_pp_totals *totals, dk_err *err);

#endif
