/* adl_patchscope.c — the Patchscope lens of the ADL's auto Patchscope step (seed_spec §5.4, the seed's
 * utils/model.py:patchscope_lens and auto_patch_scope.py:run_auto_patch_scope_for_position).
 *
 * Why it exists: the logit lens reads a difference vector through the final norm and head; a Patchscope asks the
 * model itself to "say" the vector: the residual after block `layer` at the last token of an identity prompt
 * ("man -> man\n1135 -> 1135\nhello -> hello\n?") is replaced by scale · latent, and the next-token distribution
 * tells what the latent stands for. Too small a scale is drowned by the prompt, too large breaks the model, so the
 * seed tries 30 scales and lets a grader pick the scale whose tokens hang together (adl_steps.c).
 *
 * What is computed (for one latent, all positive scales at once): for each of the three identity prompts, one
 * packed batch of n_scales copies of the prompt, the patch at each copy's last token, the softmax of the last
 * position's logits (fp32, double log-sum-exp); per prompt the top_k tokens of each row (ties to the lower id);
 * a token survives only when it is in the top_k of all three prompts, with value = (sum of its probabilities)/3.
 * The seed also runs −scale · latent rows and never uses them: they are not computed here. */
#include "methods/adl_patchscope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_memory.h"
#include "kernels/cpu/diffops.h"

/* nnterp's repeat_prompt identity targets (sep "\n", rel " -> ", placeholder "?"), the seed's three prompts. */
static const char *const IDENTITY_PROMPTS[ADL_PATCHSCOPE_PROMPTS] = {
    "man -> man\n1135 -> 1135\nhello -> hello\n?",
    "bear -> bear\n42 -> 42\nblue -> blue\n?",
    "921 -> 921\ntarget -> target\nanna -> anna\n?",
};

const char *adl_patchscope_prompt(int i) { return IDENTITY_PROMPTS[i]; }

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int adl_patchscope_scales(double *scales) {
    /* the seed: {0.5, 0.6, ..., 2.0} ∪ {3, 4, 5, 10, 20} ∪ linspace(20, 200, 10), sorted, deduplicated (before
     * rounding to 0.1, as the seed's set() is), then rounded */
    double all[16 + 5 + 10];
    int n = 0;
    for (int i = 0; i < 16; i++) all[n++] = 0.5 + i * 0.1;
    const double ints[5] = {3, 4, 5, 10, 20};
    for (int i = 0; i < 5; i++) all[n++] = ints[i];
    for (int i = 0; i < 10; i++) all[n++] = 20.0 + (200.0 - 20.0) * i / 9.0;
    qsort(all, (size_t)n, sizeof *all, by_value);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (kept == 0 || all[i] != all[kept - 1]) all[kept++] = all[i];
    for (int i = 0; i < kept; i++) scales[i] = round(all[i] * 10.0) / 10.0;
    return kept;
}

int adl_patchscope_lens(dk_backend *be, const dk_lora_adapter *adapter, dk_tokenizer *tok, int64_t layer,
                        const float *latent, const double *scales, int n_scales, int64_t top_k, float *probs,
                        dk_err *err) {
    const dk_model *m = be->model;
    const int64_t V = m->cfg.vocab_size, H = m->cfg.hidden_size;
    if (top_k > V) top_k = V;
    int32_t *count = dk_calloc((size_t)(n_scales * V), sizeof *count);   /* (n_scales, V) prompts with the id in top_k */
    double *sum = dk_calloc((size_t)(n_scales * V), sizeof *sum);        /* (n_scales, V) */
    float *logits = dk_malloc((size_t)(n_scales * V) * sizeof *logits);  /* (n_scales, V) */
    float *top_logit = dk_malloc((size_t)(n_scales * top_k) * sizeof *top_logit);
    int32_t *top_id = dk_malloc((size_t)(n_scales * top_k) * sizeof *top_id);
    float *vectors = dk_malloc((size_t)(n_scales * H) * sizeof *vectors); /* (n_scales, H) scale · latent */
    dk_patch *patches = dk_malloc((size_t)n_scales * sizeof *patches);
    for (int s = 0; s < n_scales; s++)
        for (int64_t h = 0; h < H; h++) vectors[s * H + h] = (float)(scales[s] * (double)latent[h]);
    int rc = 0;
    for (int p = 0; p < ADL_PATCHSCOPE_PROMPTS && rc == 0; p++) {
        dk_tok_ids ids = {0};
        rc = dk_tokenizer_encode(tok, IDENTITY_PROMPTS[p], strlen(IDENTITY_PROMPTS[p]), true, &ids, err);
        if (rc != 0) break;
        const int64_t T = (int64_t)ids.n;
        int64_t *packed = dk_malloc((size_t)(n_scales * T) * sizeof *packed);   /* (n_scales · T) */
        int64_t *starts = dk_malloc((size_t)(n_scales + 1) * sizeof *starts);
        for (int s = 0; s < n_scales; s++) {
            for (int64_t t = 0; t < T; t++) packed[s * T + t] = ids.ids[t];
            starts[s] = s * T;
            patches[s] = (dk_patch){.layer = layer, .token = s * T + T - 1, .vector = vectors + s * H};
        }
        starts[n_scales] = n_scales * T;
        dk_batch batch = {packed, n_scales * T, starts, n_scales, true};
        dk_hook_plan plan = {.n_patch = n_scales, .patches = patches, .logits = DK_LOGITS_LAST, .logits_out = logits};
        rc = dk_backend_forward(be, adapter, &batch, &plan, NULL, err);
        if (rc == 0) {
            dk_cpu_topk(logits, n_scales, V, top_k, true, top_logit, top_id);
            for (int s = 0; s < n_scales; s++) {
                const float *row = logits + s * V;
                double mx = row[0], z = 0;
                for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
                const double lse = mx + log(z);
                for (int64_t j = 0; j < top_k; j++) {
                    const int64_t at = s * V + top_id[s * top_k + j];
                    count[at]++;
                    sum[at] += (double)(float)exp((double)top_logit[s * top_k + j] - lse);
                }
            }
        }
        free(packed);
        free(starts);
        dk_tok_ids_free(&ids);
    }
    for (int64_t i = 0; rc == 0 && i < n_scales * V; i++)
        probs[i] = count[i] == ADL_PATCHSCOPE_PROMPTS ? (float)(sum[i] / ADL_PATCHSCOPE_PROMPTS) : 0.0f;
    free(count), free(sum), free(logits), free(top_logit), free(top_id), free(vectors), free(patches);
    return rc;
}

int64_t adl_patchscope_top(const float *row, int64_t V, int64_t k, float *values, int32_t *ids) {
    int64_t nonzero = 0;
    for (int64_t v = 0; v < V; v++) nonzero += row[v] > 0;
    if (k > nonzero) k = nonzero;
    if (k == 0) return 0;
    dk_cpu_topk(row, 1, V, k, true, values, ids);
    return k;
}
