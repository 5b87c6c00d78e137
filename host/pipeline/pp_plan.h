/* pp_plan.h — the plan of one store, computed identically on every rank before any forward pass: chunks of
 * `batch_size` consecutive sequences (one forward batch each; a chunk's rows are fixed whatever the rank
 * count, so 1, 2 or 3 ranks compute bit-identical rows), their token counts, and the plan fingerprint that
 * says whether an existing store was made by the same plan. */
#ifndef DK_PP_PLAN_H
#define DK_PP_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/pp_dataset.h"

typedef struct dk_pp_plan {
    int64_t n_chunks;
    int64_t *chunk_seq;     /* (n_chunks + 1) first sequence of each chunk, then n_seqs */
    int64_t *chunk_tokens;  /* (n_chunks) */
    int64_t max_chunk_tokens;
} dk_pp_plan;

void dk_pp_plan_make(const dk_pp_tokens *t, int64_t batch_size, dk_pp_plan *plan);
void dk_pp_plan_free(dk_pp_plan *plan);

/* What makes two stores' contents equal: the model, its adapter, the captured layers, the dtype, the tokens
 * and their sequence and chunk boundaries, the leading tokens skipped and whether tokens are stored, and what
 * computed the rows (compute: dk_backend_compute_name;
 * "cpu-fp32" or NULL adds nothing to the hash, so CPU stores keep the fingerprints they had before the GPU
 * path existed). */
typedef struct dk_pp_identity {
    const char *model_id, *model_snapshot, *adapter_id, *dtype, *compute;
    const int64_t *layers;
    int n_layers;
    int64_t d_model, context_len;
    int64_t skip_first;        /* leading tokens of each sequence not stored (0: none) */
    bool store_tokens;         /* the tokens dataset is written */
} dk_pp_identity;

uint64_t dk_pp_fingerprint(const dk_pp_identity *id, const dk_pp_tokens *t, const dk_pp_plan *plan);

#endif
