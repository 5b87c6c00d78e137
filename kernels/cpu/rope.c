/* rope.c — see rope.h. Products are rounded separately before the add (as torch's q*cos + rotate_half(q)*sin
 * does); the build uses ISO C mode, where gcc does not contract them into FMAs. */
#include "rope.h"

#include <math.h>

void dk_cpu_rope_tables(float *cos_out, float *sin_out, const float *inv_freq, const int64_t *positions, int64_t n_pos,
                        int64_t head_dim, float attention_scaling) {
    int64_t half = head_dim / 2;
    for (int64_t p = 0; p < n_pos; p++) {
        float *c = cos_out + p * head_dim; // (D)
        float *s = sin_out + p * head_dim; // (D)
        float pos = (float)positions[p];
        for (int64_t i = 0; i < half; i++) {
            float angle = pos * inv_freq[i];
            float cv = cosf(angle) * attention_scaling, sv = sinf(angle) * attention_scaling;
            c[i] = c[i + half] = cv;
            s[i] = s[i + half] = sv;
        }
    }
}

void dk_cpu_rope_apply(float *x, const float *cos, const float *sin, int64_t n_tokens, int64_t n_heads,
                       int64_t head_dim) {
    int64_t half = head_dim / 2;
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *c = cos + t * head_dim; // (D)
        const float *s = sin + t * head_dim; // (D)
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * head_dim; // (D)
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                float a_cos = a * c[i], b_sin = b * s[i];
                float b_cos = b * c[i + half], a_sin = a * s[i + half];
                v[i] = a_cos - b_sin;
                v[i + half] = b_cos + a_sin;
            }
        }
    }
}
