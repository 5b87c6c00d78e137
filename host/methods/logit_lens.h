/* logit_lens.h — the logit lens of residual-stream vectors (seed utils/model.py:logit_lens, seed_spec §5.3):
 * z = final_norm(v), p = softmax(lm_head(z)) and p_inv = softmax(lm_head(−z)), no logit soft-capping, and the k
 * most probable tokens of each. The head has no bias, so lm_head(−z) = −lm_head(z) exactly (a product's rounding
 * is symmetric): the inverse lens reuses the logits. Top-k order: by logit, ties to the lower id (kernels/cpu
 * dk_cpu_topk; torch.topk leaves ties unspecified); probabilities from a double log-sum-exp.
 * Runs on the CPU (model/forward.h dk_model_unembed) whatever backend runs the forwards. */
#ifndef DK_METHODS_LOGIT_LENS_H
#define DK_METHODS_LOGIT_LENS_H

#include <stdint.h>

#include "model/forward.h"

typedef struct dk_lens_topk {
    int64_t rows, k;
    float *probs;        /* (rows, k) softmax(lm_head(z)) of the k most probable tokens, best first */
    int32_t *ids;        /* (rows, k) */
    float *inv_probs;    /* (rows, k) the same for −z */
    int32_t *inv_ids;    /* (rows, k) */
} dk_lens_topk;

/* The lens of vectors (rows, H) through model m's head (the adapter's saved lm_head mixed in when it has one;
 * adapter may be NULL): out allocated (rows, k). k <= vocabulary size. 0, or -1 with
 * err (code 1) when a logit is not finite (naming the row). */
int dk_logit_lens(const dk_model *m, const dk_lora_adapter *adapter, const float *vectors, int64_t rows, int64_t k,
                  dk_lens_topk *out, dk_err *err);
void dk_lens_topk_free(dk_lens_topk *t);

#endif
