/* logit_lens.c — final norm, unembedding and softmax of arbitrary vectors, and a top-k (see logit_lens.h). */
#include "model/logit_lens.h"

#include "kernels/cpu/rmsnorm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dk_model_norm_unembed(const dk_model *m, const float *x, int64_t rows, float *normed, float *logits,
                           float *weight_tile, float *small) {
    const int64_t H = m->cfg.hidden_size;
    const float *w = dk_weights_f32(m->w.final_norm, small);
    dk_cpu_rmsnorm(normed, x, w, rows, H, (float)m->cfg.rms_norm_eps,
                   m->cfg.gemma_norms ? DK_RMSNORM_GEMMA : DK_RMSNORM_LLAMA);
    dk_weights_matmul(logits, normed, rows, m->w.lm_head, weight_tile, m->weight_tile_floats);
}

static void softmax_row(float *p, const float *logits, int64_t V, float sign) {
    float max = -INFINITY;
    for (int64_t i = 0; i < V; i++) max = fmaxf(max, sign * logits[i]);
    double sum = 0;
    for (int64_t i = 0; i < V; i++) {
        p[i] = expf(sign * logits[i] - max);
        sum += p[i];
    }
    for (int64_t i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
}

void dk_logit_lens(const dk_model *m, const float *vectors, int64_t rows, float *probs, float *inv_probs) {
    const int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float *normed = dk_malloc((size_t)(rows * H) * sizeof *normed);   /* (rows, H) */
    float *logits = dk_malloc((size_t)(rows * V) * sizeof *logits);   /* (rows, V) */
    float *tile = dk_malloc((size_t)m->weight_tile_floats * sizeof *tile);
    float *small = dk_malloc((size_t)H * sizeof *small);
    dk_model_norm_unembed(m, vectors, rows, normed, logits, tile, small);
    /* lm_head is linear without bias, so lm_head(-z) = -lm_head(z) */
    for (int64_t r = 0; r < rows; r++) {
        softmax_row(probs + r * V, logits + r * V, V, 1.0f);
        if (inv_probs) softmax_row(inv_probs + r * V, logits + r * V, V, -1.0f);
    }
    free(small);
    free(tile);
    free(logits);
    free(normed);
}

void dk_top_k(const float *p, int64_t V, int64_t k, int32_t *ids) {
    if (k > V) k = V;
    int64_t n = 0; /* ids[0..n) sorted descending, insertion into a list of at most k */
    if (k <= 0) return;
    for (int64_t i = 0; i < V; i++) {
        if (n == k && !(p[i] > p[ids[k - 1]])) continue;
        int64_t j = n < k ? n++ : k - 1;
        while (j > 0 && p[i] > p[ids[j - 1]]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = (int32_t)i;
    }
}
