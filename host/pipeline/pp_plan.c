/* pp_plan.c — chunking and the plan fingerprint (see pp_plan.h). */
#include "pipeline/pp_plan.h"

#include <stdlib.h>
#include <string.h>

#include "io/act_store.h"

void dk_pp_plan_make(const dk_pp_tokens *t, int64_t batch_size, dk_pp_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (batch_size < 1) batch_size = 1;
    plan->n_chunks = (t->n_seqs + batch_size - 1) / batch_size;
    plan->chunk_seq = dk_malloc((size_t)(plan->n_chunks + 1) * sizeof(int64_t));
    plan->chunk_tokens = dk_malloc((size_t)(plan->n_chunks ? plan->n_chunks : 1) * sizeof(int64_t));
    for (int64_t c = 0; c <= plan->n_chunks; c++) {
        int64_t s = c * batch_size;
        plan->chunk_seq[c] = s < t->n_seqs ? s : t->n_seqs;
    }
    for (int64_t c = 0; c < plan->n_chunks; c++) {
        plan->chunk_tokens[c] = t->offsets[plan->chunk_seq[c + 1]] - t->offsets[plan->chunk_seq[c]];
        if (plan->chunk_tokens[c] > plan->max_chunk_tokens) plan->max_chunk_tokens = plan->chunk_tokens[c];
    }
}

void dk_pp_plan_free(dk_pp_plan *plan) {
    free(plan->chunk_seq);
    free(plan->chunk_tokens);
    memset(plan, 0, sizeof *plan);
}

static uint64_t hash_str(uint64_t h, const char *s) {
    s = s ? s : "";
    return dk_fnv1a(h, s, strlen(s) + 1);
}

uint64_t dk_pp_fingerprint(const dk_pp_identity *id, const dk_pp_tokens *t, const dk_pp_plan *plan) {
    uint64_t h = DK_FNV_OFFSET;
    int64_t version = DK_STORE_FORMAT_VERSION;
    h = dk_fnv1a(h, &version, sizeof version);
    h = hash_str(h, id->model_id);
    h = hash_str(h, id->model_snapshot);
    h = hash_str(h, id->adapter_id);
    h = hash_str(h, id->dtype);
    h = dk_fnv1a(h, &id->n_layers, sizeof id->n_layers);
    h = dk_fnv1a(h, id->layers, (size_t)id->n_layers * sizeof(int64_t));
    h = dk_fnv1a(h, &id->d_model, sizeof id->d_model);
    h = dk_fnv1a(h, &id->context_len, sizeof id->context_len);
    h = dk_fnv1a(h, &t->n_seqs, sizeof t->n_seqs);
    h = dk_fnv1a(h, t->offsets, (size_t)(t->n_seqs + 1) * sizeof(int64_t));
    h = dk_fnv1a(h, t->ids, (size_t)t->n_tokens * sizeof(int32_t));
    h = dk_fnv1a(h, plan->chunk_seq, (size_t)(plan->n_chunks + 1) * sizeof(int64_t));
    /* rows from the GPU (bf16 compute) differ from the CPU reference's: another content, another fingerprint,
     * so a store is never resumed or reused across compute modes */
    if (id->compute && strcmp(id->compute, "cpu-fp32") != 0) h = hash_str(h, id->compute);
    /* settings that change what is stored; hashed only when not the default, so older stores keep theirs */
    if (id->skip_first > 0) h = dk_fnv1a(hash_str(h, "skip_first"), &id->skip_first, sizeof id->skip_first);
    if (!id->store_tokens) h = hash_str(h, "no_tokens");
    return h;
}
