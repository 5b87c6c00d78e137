/* adl_causal.h — the per-token loss of a model with the ADL's causal-effect intervention (seed_spec §5.7, the seed's
 * causal_effect.py _compute_nll_intervened), the piece of adl_causal.c a golden test checks on its own.
 *
 * The intervention at block `layer`, on every token, in fp32, with v̂ a unit direction, h the target model's own
 * residual after that block and h_src the source model's at the same token:
 *   patch        h + ((h_src · v̂) − (h · v̂)) v̂   the target's component along v̂ set to the source's
 *   zero ablate  h − (h · v̂) v̂                   the component removed
 * It runs as an engine patch (forward.h: dk_patch replaces the residual after block `layer`) at every token of the
 * packed batch, with all logits; the forward itself is not changed. */
#ifndef DK_METHODS_ADL_CAUSAL_H
#define DK_METHODS_ADL_CAUSAL_H

#include <stdbool.h>
#include <stdint.h>

#include "model/backend.h"

typedef struct adl_ce_intervention {
    int64_t layer;               /* after block `layer` */
    const float *direction;      /* (H) unit vector v̂ */
    const float *h_target;       /* (T, H) the target model's residual after block `layer` (a clean forward) */
    const float *h_source;       /* (T, H) the source model's, or NULL with zero_ablate */
    bool zero_ablate;
} adl_ce_intervention;

/* One forward of the packed batch b through (be, adapter): nll (T) gets −log p(ids[t + 1] | ids[..t]) for every
 * token t but the last of its sequence (0 there; logits fp32, log-sum-exp in double). iv NULL: the model as it is;
 * capture_layer >= 0 (only without iv) also fills capture (T, H) with the residual after that block.
 * 0, or -1 with err. */
int adl_ce_token_nll(dk_backend *be, const dk_lora_adapter *adapter, const dk_batch *b, const adl_ce_intervention *iv,
                     int64_t capture_layer, float *capture, double *nll, dk_err *err);

#endif
