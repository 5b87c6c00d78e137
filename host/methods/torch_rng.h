/* torch_rng.h — PyTorch's CPU random generator in C, so the NMF of diff mining starts from the same W and H as
 * the seed's library (torchnmf draws them with torch.randn(...).abs() on the CPU generator).
 *
 * What torch does (ATen CPUGeneratorImpl, DistributionTemplates.h; checked against torch 2.15 by the
 * tests/methods fixtures):
 *   torch.manual_seed(s)  a standard MT19937 seeded with s & 0xffffffff (init_genrand);
 *   a float uniform       (next32 & (2^24 − 1)) · 2^−24, in [0, 1);
 *   torch.randn(n) float  for n >= 16: n uniforms, then Box–Muller on each block of 16 (u1 = 1 − x[j],
 *                         u2 = x[j + 8], r = sqrt(−2 ln u1), θ = 2π u2: x[j] = r cos θ, x[j + 8] = r sin θ);
 *                         when 16 does not divide n the last 16 values are redrawn from 16 fresh uniforms
 *                         and transformed again. torch computes the transform in float (AVX2: Sleef's 1-ulp
 *                         log/sin/cos); we round where torch rounds but take log/sin/cos from libm, so values
 *                         agree to 5e-7 (most are equal).
 * For n < 16 torch takes another path (a scalar normal sampler); dk_torch_randn refuses it (the NMF's
 * matrices always have at least 16 entries when they are fitted). */
#ifndef DK_METHODS_TORCH_RNG_H
#define DK_METHODS_TORCH_RNG_H

#include <stdint.h>

typedef struct dk_torch_rng {
    uint32_t state[624];
    int index;
} dk_torch_rng;

/* torch.manual_seed(seed) */
void dk_torch_rng_seed(dk_torch_rng *g, uint64_t seed);
/* The next 32 bits of the MT19937 stream. */
uint32_t dk_torch_rng_next(dk_torch_rng *g);
/* torch.rand(1).item() as float: 24 random bits. */
float dk_torch_rand_f32(dk_torch_rng *g);
/* torch.randn(n) into out (n float32, n >= 16). */
void dk_torch_randn(dk_torch_rng *g, float *out, int64_t n);

#endif
