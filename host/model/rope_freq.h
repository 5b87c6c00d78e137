/* rope_freq.h — RoPE inverse frequencies from a config's RoPE setting (models_formats.md §3.2-3.3).
 *
 * Why here and not in kernels/: the computation is driven by config.json (rope type and its parameters),
 * and kernels know nothing of configs. It runs once per model load, so it favours exactness over speed:
 * every step repeats transformers 5's float32 tensor arithmetic (ROPE_INIT_FUNCTIONS and the models'
 * compute_default_rope_parameters), operation by operation, so the tables match bit for bit or within an
 * ulp of libm differences. The tables themselves are built by kernels/cpu/rope.h.
 */
#ifndef DK_ROPE_FREQ_H
#define DK_ROPE_FREQ_H

#include <stdint.h>

#include "model/hf_config.h"

/* inv_freq (head_dim / 2) and the factor that multiplies cos and sin (1 except for yarn). */
void dk_rope_inv_freq(const dk_rope_params *rope, int64_t head_dim, float *inv_freq, float *attention_scaling);

#endif
