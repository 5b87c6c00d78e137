/* dict_model.c — see dict_model.h. */
#include "methods/dict_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "methods/dict_data.h"

void dk_dict_model_init(dk_dict_model *m, dk_dict_kind kind, int64_t d, int64_t F) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->s.d = d;
    m->s.L = kind == DK_DICT_CROSSCODER ? 2 : 1;
    m->s.D = m->s.L * d;
    m->s.F = F;
    m->P = dk_dict_n_params(&m->s);
    m->p = dk_calloc((size_t)m->P, sizeof(float));
    m->threshold = -1.0f;
}

void dk_dict_model_free(dk_dict_model *m) {
    free(m->p);
    memset(m, 0, sizeof *m);
}

/* uniform in [−bound, bound) from the top 24 bits */
static float uniform(uint64_t *st, double bound) {
    return (float)(((double)(dk_dict_rng_next(st) >> 40) / 16777216.0 * 2.0 - 1.0) * bound);
}

void dk_dict_model_random_init(dk_dict_model *m, uint64_t seed, double init_norm) {
    const dk_dict_shape *s = &m->s;
    const int64_t d = s->d, D = s->D, F = s->F;
    uint64_t st = seed ^ 0x3c6ef372fe94f82bull;
    float *W_enc = dk_dict_W_enc(m), *W_dec = dk_dict_W_dec(m);
    memset(m->p, 0, (size_t)m->P * sizeof(float));
    const double bound = m->kind == DK_DICT_SAE ? 1.0 / sqrt((double)F) : sqrt(6.0 / (double)F);
    for (int64_t j = 0; j < F; j++) {
        float *row = W_dec + j * D;
        for (int64_t i = 0; i < d; i++) row[i] = uniform(&st, bound);
        for (int64_t l = 1; l < s->L; l++) memcpy(row + l * d, row, (size_t)d * sizeof(float)); /* same init */
        for (int64_t l = 0; l < s->L; l++) { /* each (latent, layer) vector to unit norm */
            double ss = 0;
            for (int64_t i = 0; i < d; i++) ss += (double)row[l * d + i] * row[l * d + i];
            const float n = m->kind == DK_DICT_SAE ? (float)sqrt(ss) + 1.1920929e-7f : (float)sqrt(ss);
            for (int64_t i = 0; i < d; i++) row[l * d + i] /= n;
        }
        for (int64_t i = 0; i < D; i++) {
            if (m->kind == DK_DICT_SAE) {
                W_enc[j * D + i] = row[i] * (float)init_norm;
            } else {
                row[i] *= (float)init_norm;
                W_enc[j * D + i] = row[i];
            }
        }
    }
    m->threshold = -1.0f;
}

int64_t dk_dict_encode_threshold(const dk_dict_model *m, const float *x, int64_t n, float *u, float *pre,
                                 const float *w, int64_t *row_ptr, int32_t *idx, float *val) {
    const dk_dict_shape *s = &m->s;
    const int64_t F = s->F;
    dk_cpu_dict_encode(s, x, n, dk_dict_W_enc(m), dk_dict_b_enc(m), m->kind == DK_DICT_SAE ? dk_dict_b_dec(m) : NULL,
                       u, pre);
    int64_t cnt = 0;
    row_ptr[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < F; j++) {
            const float a = pre[r * F + j] > 0 ? pre[r * F + j] : 0.0f;
            const float score = w ? a * w[j] : a;
            if (a > 0 && score > m->threshold) idx[cnt] = (int32_t)j, val[cnt] = a, cnt++;
        }
        row_ptr[r + 1] = cnt;
    }
    return cnt;
}

void dk_dict_to_reference(const dk_dict_model *m, float *enc_w, float *enc_b, float *dec_w, float *dec_b) {
    const dk_dict_shape *s = &m->s;
    const int64_t d = s->d, D = s->D, F = s->F, L = s->L;
    const float *W_enc = dk_dict_W_enc(m), *W_dec = dk_dict_W_dec(m);
    memcpy(enc_b, dk_dict_b_enc(m), (size_t)F * sizeof(float));
    memcpy(dec_b, dk_dict_b_dec(m), (size_t)D * sizeof(float)); /* (d) or (L, d): the same order */
    for (int64_t j = 0; j < F; j++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t i = 0; i < d; i++) {
                const float we = W_enc[j * D + l * d + i], wd = W_dec[j * D + l * d + i];
                if (m->kind == DK_DICT_SAE) {
                    enc_w[j * d + i] = we;      /* (F, d) */
                    dec_w[i * F + j] = wd;      /* (d, F) */
                } else {
                    enc_w[(l * d + i) * F + j] = we;   /* (L, d, F) */
                    dec_w[(l * F + j) * d + i] = wd;   /* (L, F, d) */
                }
            }
}

void dk_dict_from_reference(dk_dict_model *m, const float *enc_w, const float *enc_b, const float *dec_w,
                            const float *dec_b) {
    const dk_dict_shape *s = &m->s;
    const int64_t d = s->d, D = s->D, F = s->F, L = s->L;
    float *W_enc = dk_dict_W_enc(m), *W_dec = dk_dict_W_dec(m);
    memcpy(dk_dict_b_enc(m), enc_b, (size_t)F * sizeof(float));
    memcpy(dk_dict_b_dec(m), dec_b, (size_t)D * sizeof(float));
    for (int64_t j = 0; j < F; j++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t i = 0; i < d; i++) {
                if (m->kind == DK_DICT_SAE) {
                    W_enc[j * D + i] = enc_w[j * d + i];
                    W_dec[j * D + i] = dec_w[i * F + j];
                } else {
                    W_enc[j * D + l * d + i] = enc_w[(l * d + i) * F + j];
                    W_dec[j * D + l * d + i] = dec_w[(l * F + j) * d + i];
                }
            }
}
