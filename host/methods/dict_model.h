/* dict_model.h — a trained (or training) dictionary: the BatchTopK SAE of the Diff-SAE method or the BatchTopK
 * crosscoder, its parameters in the flat layout of kernels/cpu/dict_step.h, its inference threshold, and what is
 * done with it after training: threshold inference (encode), decoding, and the conversions to the reference's
 * tensors (state-dict layout) for the results file, the SAELens export and the goldens.
 *
 *   kind  L  selection score    encoder input   decoder       loss (training)
 *   SAE   1  relu(pre)          x̃ − b_dec       unit rows     mean_b ‖e_b‖²
 *   CC    2  relu(pre)·w_j      x̃ = [x̃_b, x̃_f]  free norms    mean_{b,l} ‖e_bl‖  (w_j = Σ_l ‖W_dec[j, l]‖)
 *
 * Initialisation follows the reference's distributions with diffkit's random numbers (splitmix64 from the seed):
 *   SAE: W_dec rows ~ U(±1/sqrt(F)) normalised to unit norm, W_enc = W_dec · encoder_init_norm, biases 0
 *        (BatchTopKSAE: nn.Linear's default init, set_decoder_norm_to_unit_norm, encoder = decoderᵀ);
 *   CC:  W_enc[·, l] ~ U(±sqrt(6/F)) (kaiming_uniform_ of a (d, F) matrix), the same draw for every layer
 *        (same_init_for_all_layers), each (latent, layer) vector rescaled to norm_init_scale, W_dec = W_encᵀ
 *        (init_with_transpose), biases 0. */
#ifndef DK_METHODS_DICT_MODEL_H
#define DK_METHODS_DICT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/cpu/dict_step.h"

typedef enum { DK_DICT_SAE, DK_DICT_CROSSCODER } dk_dict_kind;

typedef struct dk_dict_model {
    dk_dict_kind kind;
    dk_dict_shape s;
    int64_t P;            /* parameters */
    float *p;             /* (P) W_enc, b_enc, W_dec, b_dec */
    float threshold;      /* θ of threshold inference; −1 until the EMA starts (every positive activation kept) */
} dk_dict_model;

void dk_dict_model_init(dk_dict_model *m, dk_dict_kind kind, int64_t d, int64_t F);
void dk_dict_model_free(dk_dict_model *m);
/* The reference's initial distribution (see above). init_norm: encoder_init_norm (SAE) or norm_init_scale (CC). */
void dk_dict_model_random_init(dk_dict_model *m, uint64_t seed, double init_norm);

static inline float *dk_dict_W_enc(const dk_dict_model *m) { return m->p; }
static inline float *dk_dict_b_enc(const dk_dict_model *m) { return m->p + dk_dict_off_b_enc(&m->s); }
static inline float *dk_dict_W_dec(const dk_dict_model *m) { return m->p + dk_dict_off_W_dec(&m->s); }
static inline float *dk_dict_b_dec(const dk_dict_model *m) { return m->p + dk_dict_off_b_dec(&m->s); }

/* Threshold inference on normalised rows x (n, D): f = relu(pre) where its score exceeds θ. CSR out (caller's
 * buffers: row_ptr n + 1, idx/val capacity n·F); pre (n, F) and u (n, D) are scratch. Returns the count. The
 * selection values are relu(pre) (the crosscoder's unscaled code). */
int64_t dk_dict_encode_threshold(const dk_dict_model *m, const float *x, int64_t n, float *u, float *pre,
                                 const float *w, int64_t *row_ptr, int32_t *idx, float *val);

/* The reference's tensors (state-dict layout) from ours and back:
 *   SAE  encoder.weight (F, d), encoder.bias (F), decoder.weight (d, F), b_dec (d)
 *   CC   encoder.weight (L, d, F), encoder.bias (F), decoder.weight (L, F, d), decoder.bias (L, d) */
void dk_dict_to_reference(const dk_dict_model *m, float *enc_w, float *enc_b, float *dec_w, float *dec_b);
void dk_dict_from_reference(dk_dict_model *m, const float *enc_w, const float *enc_b, const float *dec_w,
                            const float *dec_b);

#endif
