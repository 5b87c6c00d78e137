/* adl_patchscope.h — the Patchscope lens of the ADL's auto Patchscope step (adl_patchscope.c says what and why). */
#ifndef DK_METHODS_ADL_PATCHSCOPE_H
#define DK_METHODS_ADL_PATCHSCOPE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/backend.h"
#include "tokenizer/tokenizer.h"

enum { ADL_PATCHSCOPE_PROMPTS = 3, ADL_PATCHSCOPE_MAX_SCALES = 31 };

/* The seed's scales in ascending order (30 of them) into scales (ADL_PATCHSCOPE_MAX_SCALES); returns the count. */
int adl_patchscope_scales(double *scales);
/* Identity prompt i (0..2). */
const char *adl_patchscope_prompt(int i);

/* probs (n_scales, V): for each scale, the next-token probabilities averaged over the three identity prompts,
 * kept only for tokens in the top_k (clamped to V) of all three, else 0; the model of backend be with adapter (may
 * be NULL), the residual after block `layer` at the prompt's last token replaced by scales[s] · latent (H). The
 * prompts are encoded with the tokenizer's special tokens (BOS), as nnterp does. 0, or -1 + err. */
int adl_patchscope_lens(dk_backend *be, const dk_lora_adapter *adapter, dk_tokenizer *tok, int64_t layer,
                        const float *latent, const double *scales, int n_scales, int64_t top_k, float *probs,
                        dk_err *err);

/* The (at most) k largest nonzero entries of row (V), best first (ties to the lower id): their count. */
int64_t adl_patchscope_top(const float *row, int64_t V, int64_t k, float *values, int32_t *ids);

#endif
