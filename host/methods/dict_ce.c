/* dict_ce.c — the cross-entropy loss recovered when a dictionary's reconstruction is spliced back into the
 * finetuned model (dictionary_spec §6, "CE loss recovered / splice"; the reference trainers do not report it for
 * differences). For the first sequences of each dataset of a row set (validation split), three forwards of the
 * finetuned model with the engine's patch hook (forward.h: dk_patch replaces the residual after block `layer`):
 *   clean    no patch: the finetuned model as it is;
 *   spliced  every token from `skip` on gets the finetuned activation as the dictionary reconstructs it:
 *            SAE on ft − base: h_base + x̂;  on base − ft: h_base − x̂;  crosscoder: the ft half of x̂
 *            (x̂ = threshold inference, decoded and de-normalised: what the dictionary keeps of the row);
 *   ablated  every such token gets the base model's activation (the difference removed), the natural zero of a
 *            difference dictionary (the reference's loss_recovered zero-ablates a whole activation instead).
 * CE is the mean next-token cross-entropy over every position of a sequence but its last (logits in fp32, the
 * log-sum-exp in double), and frac_recovered = (CE_ablated − CE_spliced) / (CE_ablated − CE_clean): 1 when the
 * reconstruction restores everything the finetune changed at this layer, 0 when it restores nothing. The
 * activations come from the stores (bf16), so the clean and ablated runs differ by the finetune's difference
 * only up to bf16 rounding. Sequences are spread over the ranks (s % nranks); the sums are reduced in fp64. */
#include "methods/dict_ce.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "methods/dict_train.h"

/* Σ over positions t < T − 1 of −log softmax(logits[t])[ids[t + 1]] (double). */
static double sequence_ce(const float *logits, const int64_t *ids, int64_t T, int64_t V) {
    double sum = 0;
    for (int64_t t = 0; t + 1 < T; t++) {
        const float *z = logits + t * V;
        float mx = z[0];
        for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
        sum += log(s) + mx - (double)z[ids[t + 1]];
    }
    return sum;
}

int dk_dict_ce_recovered(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *set,
                         int64_t max_seqs, dk_dict_ce *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    const dk_model *model = dk_model_pair_model(&job->pair, true);
    const int64_t V = model->cfg.vocab_size, d = set->d, W = set->width, F = m->s.F, skip = set->skip;
    const bool cc = m->kind == DK_DICT_CROSSCODER, bft = set->target == DK_DICT_DIFF_BFT;
    int64_t max_len = 1;
    for (int k = 0; k < set->n; k++) {
        const dk_act_pair *p = &set->src[k].pair;
        const int64_t n = p->n_seqs < max_seqs ? p->n_seqs : max_seqs;
        for (int64_t q = 0; q < n; q++)
            if (p->seq_offsets[q + 1] - p->seq_offsets[q] > max_len) max_len = p->seq_offsets[q + 1] - p->seq_offsets[q];
    }
    const uint64_t need = (uint64_t)max_len * (uint64_t)(V + 3 * W + F * 3 + 2 * d) * 4u;
    if (dk_host_memory_check(need, "the CE-recovered forwards of one sequence", "lower "
                             "diffing.method.evaluation.ce_num_sequences or cache shorter sequences", err) != 0)
        return -1;
    float *x = dk_malloc((size_t)(max_len * W) * sizeof(float));        /* (T, W) target rows, then x̂ */
    float *u = dk_malloc((size_t)(max_len * W) * sizeof(float));
    float *pre = dk_malloc((size_t)(max_len * F) * sizeof(float));
    float *val = dk_malloc((size_t)(max_len * F) * sizeof(float)), *w = dk_malloc((size_t)F * sizeof(float));
    int32_t *idx = dk_malloc((size_t)(max_len * F) * sizeof(int32_t));
    int64_t *row_ptr = dk_malloc((size_t)(max_len + 1) * sizeof(int64_t)), *ids = dk_malloc((size_t)max_len * sizeof(int64_t));
    float *base = dk_malloc((size_t)(max_len * d) * sizeof(float));     /* (T, d) h_base */
    float *spliced = dk_malloc((size_t)(max_len * d) * sizeof(float));  /* (T, d) the reconstructed h_ft */
    float *logits = dk_malloc((size_t)(max_len * V) * sizeof(float));   /* (T, V) */
    dk_patch *patches = dk_malloc((size_t)max_len * sizeof(dk_patch));
    if (cc) dk_cpu_dict_code_weights(&m->s, dk_dict_W_dec(m), w);
    double sums[4] = {0, 0, 0, 0}; /* CE clean, spliced, ablated; predicted positions */
    int rc = 0;
    for (int k = 0; k < set->n && rc == 0; k++) {
        const dk_act_pair *p = &set->src[k].pair;
        const int64_t n = p->n_seqs < max_seqs ? p->n_seqs : max_seqs;
        for (int64_t q = job->d.rank; q < n && rc == 0; q += job->d.nranks) {
            const int64_t row0 = p->seq_offsets[q], T = p->seq_offsets[q + 1] - row0;
            if (T < 2 || T <= skip) continue;
            for (int64_t t = 0; t < T; t++) ids[t] = p->tokens[row0 + t];
            rc = dk_dict_read_range(set, k, row0, T, x, err);
            if (rc == 0) rc = dk_act_pair_rows(p, DK_ACT_BASE, row0, T, base, err);
            if (rc != 0) break;
            dk_dict_norm_apply(nrm, x, T);
            dk_dict_encode_threshold(m, x, T, u, pre, cc ? w : NULL, row_ptr, idx, val);
            dk_cpu_dict_decode(&m->s, T, row_ptr, idx, val, dk_dict_W_dec(m), dk_dict_b_dec(m), x);
            dk_dict_norm_undo(nrm, x, T);
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < d; i++)
                    spliced[t * d + i] = cc ? x[t * W + d + i] : base[t * d + i] + (bft ? -x[t * W + i] : x[t * W + i]);
            const int64_t seq_start[2] = {0, T};
            const dk_batch batch = {.ids = ids, .n_tokens = T, .seq_start = seq_start, .n_seqs = 1, .is_prompt = true};
            for (int run = 0; run < 3 && rc == 0; run++) {
                int64_t np = 0;
                if (run > 0)
                    for (int64_t t = skip; t < T; t++)
                        patches[np++] = (dk_patch){.layer = set->layer, .token = t,
                                                   .vector = (run == 1 ? spliced : base) + t * d};
                dk_hook_plan plan = {.n_patch = np, .patches = patches, .logits = DK_LOGITS_ALL, .logits_out = logits};
                rc = dk_model_pair_forward(&job->pair, true, &batch, &plan, err);
                if (rc == 0) sums[run] += sequence_ce(logits, ids, T, V);
            }
            sums[3] += (double)(T - 1);
        }
    }
    free(x), free(u), free(pre), free(val), free(w), free(idx), free(row_ptr), free(ids), free(base), free(spliced);
    free(logits), free(patches);
    if (dk_dist_agree(&job->d, err) != 0) return -1;
    dk_dict_allreduce_f64(&job->d, sums, 4);
    if (sums[3] == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "layer %lld: no validation sequence of two tokens or more for the CE loss "
                          "recovered: set diffing.method.evaluation.ce_loss_recovered=false or cache more text",
                          (long long)set->layer);
    out->tokens = (int64_t)sums[3];
    out->ce_clean = sums[0] / sums[3];
    out->ce_spliced = sums[1] / sums[3];
    out->ce_ablated = sums[2] / sums[3];
    out->frac_recovered = (out->ce_ablated - out->ce_spliced) / (out->ce_ablated - out->ce_clean);
    return 0;
}
