/* logit_lens.h — a residual-stream vector read as a next-token distribution: the model's final norm, then its
 * unembedding, then a softmax (the seed's utils/model.py:logit_lens; seed_spec.md §5.3).
 *
 * Why this exists: the activation difference lens, patchscope and diff mining all ask which tokens a vector
 * (a mean activation difference, a steering direction) promotes. As in the seed there is no logit soft-capping
 * (the seed calls lm_head directly), and the negated vector's distribution, -final_norm(v), is the "inverse"
 * lens. Tokens the model never trained dominate such lists when their rows were left as training pushed them
 * (model/undertrained.h marks them).
 */
#ifndef DK_MODEL_LOGIT_LENS_H
#define DK_MODEL_LOGIT_LENS_H

#include <stdint.h>

#include "core/error.h"
#include "model/forward.h"

/* normed (rows, H) = final_norm(x); logits (rows, V) = normed · lm_headᵀ. weight_tile holds m->weight_tile_floats
 * floats, small holds H floats. No soft-capping (the forward applies Gemma 2's after this). */
void dk_model_norm_unembed(const dk_model *m, const float *x, int64_t rows, float *normed, float *logits,
                           float *weight_tile, float *small);

/* probs (rows, V) = softmax(lm_head(final_norm(v))) for each row v of vectors (rows, H); inv_probs, when not
 * NULL, the same for -final_norm(v). */
void dk_logit_lens(const dk_model *m, const float *vectors, int64_t rows, float *probs, float *inv_probs);

/* The k largest entries of p[0..V) in descending order (equal values: the lower id first) into ids[0..k). */
void dk_top_k(const float *p, int64_t V, int64_t k, int32_t *ids);

#endif
