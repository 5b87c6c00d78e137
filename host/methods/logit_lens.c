/* logit_lens.c — see logit_lens.h. Rows go through the head a block at a time, so the logits held at once stay
 * small for vocabularies of a few hundred thousand tokens. */
#include "methods/logit_lens.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/finite.h"
#include "kernels/cpu/diffops.h"

enum { ROWS_PER_BLOCK = 16 };

/* log Σ exp(sign · z) over a row, in double. */
static double logsumexp(const float *z, int64_t n, double sign) {
    double mx = -INFINITY;
    for (int64_t v = 0; v < n; v++) mx = fmax(mx, sign * z[v]);
    double s = 0;
    for (int64_t v = 0; v < n; v++) s += exp(sign * z[v] - mx);
    return mx + log(s);
}

int dk_logit_lens(const dk_model *m, const dk_lora_adapter *adapter, const float *vectors, int64_t rows, int64_t k,
                  dk_lens_topk *out, dk_err *err) {
    const int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    CHECK(k >= 1 && k <= V, "logit lens: k = %lld for a vocabulary of %lld", (long long)k, (long long)V);
    memset(out, 0, sizeof *out);
    out->rows = rows;
    out->k = k;
    const size_t rk = (size_t)(rows * k);
    out->probs = dk_malloc(rk * sizeof(float));
    out->ids = dk_malloc(rk * sizeof(int32_t));
    out->inv_probs = dk_malloc(rk * sizeof(float));
    out->inv_ids = dk_malloc(rk * sizeof(int32_t));
    float *logits = dk_malloc((size_t)(ROWS_PER_BLOCK * V) * sizeof(float)); /* (block, V) */
    float *top = dk_malloc((size_t)k * sizeof(float));                      /* (k) logits of the top ids */
    int rc = 0;
    for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += ROWS_PER_BLOCK) {
        const int64_t nb = rows - r0 < ROWS_PER_BLOCK ? rows - r0 : ROWS_PER_BLOCK;
        dk_model_unembed(m, adapter, vectors + r0 * H, nb, logits);
        for (int64_t b = 0; b < nb; b++) {
            const float *z = logits + b * V;
            const int64_t r = r0 + b;
            const int64_t bad = dk_first_nonfinite_f32(z, (size_t)V);
            if (bad >= 0) {
                rc = dk_err_set(err, DK_EXIT_RUNTIME, "logit lens: row %lld gives a non-finite logit (%s) for token "
                                "%lld: the vector or the model's head holds non-finite values", (long long)r,
                                dk_nonfinite_name(z[bad]), (long long)bad);
                break;
            }
            for (int side = 0; side < 2; side++) {
                const double sign = side ? -1.0 : 1.0;
                float *probs = (side ? out->inv_probs : out->probs) + r * k;
                int32_t *ids = (side ? out->inv_ids : out->ids) + r * k;
                dk_cpu_topk(z, 1, V, k, side == 0, top, ids); /* −z's largest are z's smallest */
                const double lse = logsumexp(z, V, sign);
                for (int64_t i = 0; i < k; i++) probs[i] = (float)exp(sign * top[i] - lse);
            }
        }
    }
    free(logits);
    free(top);
    if (rc != 0) dk_lens_topk_free(out);
    return rc;
}

void dk_lens_topk_free(dk_lens_topk *t) {
    free(t->probs);
    free(t->ids);
    free(t->inv_probs);
    free(t->inv_ids);
    memset(t, 0, sizeof *t);
}
