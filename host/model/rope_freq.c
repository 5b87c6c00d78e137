/* rope_freq.c — see rope_freq.h. Each line names the transformers expression it reproduces; Python
 * scalars meeting a float32 tensor are rounded to float32 first, as torch's type promotion does. */
#include "rope_freq.h"

#include <math.h>

/* inv_freq[i] = 1.0 / (base ** (arange(0, D, 2).float() / D)), all float32. */
static void default_inv_freq(double base, int64_t head_dim, float *inv_freq) {
    for (int64_t i = 0; i < head_dim / 2; i++) {
        float exponent = (float)(2 * i) / (float)head_dim;
        inv_freq[i] = 1.0f / powf((float)base, exponent);
    }
}

/* _compute_llama3_parameters */
static void llama3_inv_freq(const dk_rope_params *r, int64_t head_dim, float *inv_freq) {
    default_inv_freq(r->theta, head_dim, inv_freq);
    float factor = (float)r->factor;
    float old_context_len = (float)r->original_max_position_embeddings;
    double low_freq_wavelen = (double)r->original_max_position_embeddings / r->low_freq_factor;   /* Python */
    double high_freq_wavelen = (double)r->original_max_position_embeddings / r->high_freq_factor; /* Python */
    float two_pi = (float)(2.0 * M_PI);
    for (int64_t i = 0; i < head_dim / 2; i++) {
        float inv = inv_freq[i];
        float wavelen = two_pi / inv;                                       /* 2 * math.pi / inv_freq */
        float llama = wavelen > (float)low_freq_wavelen ? inv / factor : inv; /* where(wavelen > low, inv/f, inv) */
        float smooth = (old_context_len / wavelen - (float)r->low_freq_factor) /
                       (float)(r->high_freq_factor - r->low_freq_factor);
        float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
        bool medium = !(wavelen < (float)high_freq_wavelen) && !(wavelen > (float)low_freq_wavelen);
        inv_freq[i] = medium ? smoothed : llama;
    }
}

/* _compute_yarn_parameters (transformers 5: an explicit factor wins over max/original positions) */
static void yarn_inv_freq(const dk_rope_params *r, int64_t head_dim, float *inv_freq) {
    int64_t dim = head_dim, half = head_dim / 2;
    double base = r->theta;
    double max_pos = (double)r->original_max_position_embeddings;
    /* find_correction_dim(num_rotations) = dim * ln(max_pos / (num_rotations * 2π)) / (2 ln base), in double */
    double low = (double)dim * log(max_pos / (r->beta_fast * 2.0 * M_PI)) / (2.0 * log(base));
    double high = (double)dim * log(max_pos / (r->beta_slow * 2.0 * M_PI)) / (2.0 * log(base));
    if (r->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0) low = 0;
    if (high > (double)(dim - 1)) high = (double)(dim - 1);
    if (low == high) high += 0.001; /* linear_ramp_factor: prevent singularity */
    float factor = (float)r->factor;
    float range = (float)(high - low);
    for (int64_t i = 0; i < half; i++) {
        float pos_freq = powf((float)base, (float)(2 * i) / (float)dim); /* base ** (arange(0,dim,2).float()/dim) */
        float extrapolation = 1.0f / pos_freq;
        float interpolation = 1.0f / (factor * pos_freq);
        float ramp = ((float)i - (float)low) / range;
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float extrapolation_factor = 1.0f - ramp;
        float a = interpolation * (1.0f - extrapolation_factor);
        float b = extrapolation * extrapolation_factor;
        inv_freq[i] = a + b;
    }
}

void dk_rope_inv_freq(const dk_rope_params *rope, int64_t head_dim, float *inv_freq, float *attention_scaling) {
    *attention_scaling = 1.0f;
    switch (rope->type) {
    case DK_ROPE_DEFAULT: default_inv_freq(rope->theta, head_dim, inv_freq); break;
    case DK_ROPE_LINEAR: /* inv_freq /= factor */
        default_inv_freq(rope->theta, head_dim, inv_freq);
        for (int64_t i = 0; i < head_dim / 2; i++) inv_freq[i] /= (float)rope->factor;
        break;
    case DK_ROPE_LLAMA3: llama3_inv_freq(rope, head_dim, inv_freq); break;
    case DK_ROPE_YARN:
        yarn_inv_freq(rope, head_dim, inv_freq);
        *attention_scaling = (float)rope->attention_factor;
        break;
    }
}
