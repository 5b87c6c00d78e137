/* rope.h — rotary position embedding on the CPU, HF's rotate_half convention (models_formats.md §3.2).
 *
 * Dimensions are paired (i, i + D/2), not interleaved (2i, 2i+1): HF checkpoints were permuted for this.
 * The tables follow transformers' float32 arithmetic exactly: angle = (float)position * inv_freq[i] (one
 * fp32 multiply), emb = concat(angles, angles), cos = cosf(emb) * attention_scaling, sin likewise. The
 * inverse frequencies come from the config (host/model/rope_freq.h); kernels know nothing of configs. */
#ifndef DK_CPU_ROPE_H
#define DK_CPU_ROPE_H

#include <stdint.h>

/* cos_out, sin_out (n_pos, D) for positions (n_pos), from inv_freq (D/2). */
void dk_cpu_rope_tables(float *cos_out, float *sin_out, const float *inv_freq, const int64_t *positions, int64_t n_pos,
                        int64_t head_dim, float attention_scaling);
/* Rotates x (n_tokens, n_heads, D) in place: token t uses row t of cos, sin (n_tokens, D).
 *   x[i]       = x[i]·cos[i]         − x[i+D/2]·sin[i]
 *   x[i+D/2]   = x[i+D/2]·cos[i+D/2] + x[i]·sin[i+D/2]        for i < D/2 */
void dk_cpu_rope_apply(float *x, const float *cos, const float *sin, int64_t n_tokens, int64_t n_heads,
                       int64_t head_dim);

#endif
