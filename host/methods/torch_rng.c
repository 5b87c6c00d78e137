/* torch_rng.c — see torch_rng.h. */
#include "methods/torch_rng.h"

#include <math.h>

#include "core/error.h"

void dk_torch_rng_seed(dk_torch_rng *g, uint64_t seed) {
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < 624; j++)
        g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + (uint32_t)j;
    g->index = 624;
}

static void twist(dk_torch_rng *g) {
    for (int k = 0; k < 624; k++) {
        uint32_t y = (g->state[k] & 0x80000000u) | (g->state[(k + 1) % 624] & 0x7fffffffu);
        g->state[k] = g->state[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    g->index = 0;
}

uint32_t dk_torch_rng_next(dk_torch_rng *g) {
    if (g->index >= 624) twist(g);
    uint32_t y = g->state[g->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

float dk_torch_rand_f32(dk_torch_rng *g) {
    return (float)((double)(dk_torch_rng_next(g) & 0xffffffu) * (1.0 / 16777216.0));
}

/* Box–Muller on 16 uniforms in place (torch's normal_fill_16 with mean 0, std 1). The roundings follow torch's
 * float code (θ and the radius rounded to float, the products in float); only log, sin and cos are computed in
 * double and rounded, where torch uses 1-ulp float approximations. */
static void normal_fill_16(float *x) {
    const float two_pi = (float)6.283185307179586476925;
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - x[j], u2 = x[j + 8];
        const float radius = sqrtf(-2.0f * (float)log((double)u1));
        const float theta = two_pi * u2;
        x[j] = radius * (float)cos((double)theta);
        x[j + 8] = radius * (float)sin((double)theta);
    }
}

void dk_torch_randn(dk_torch_rng *g, float *out, int64_t n) {
    CHECK(n >= 16, "dk_torch_randn: torch takes another path below 16 values (n = %lld)", (long long)n);
    for (int64_t i = 0; i < n; i++) out[i] = dk_torch_rand_f32(g);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = dk_torch_rand_f32(g);
        normal_fill_16(tail);
    }
}
