/* dict_fixture.h — reading the dictionary methods' golden fixtures (tests/fixtures/methods/dict/ (safetensors),
 * written by tools/make_dict_goldens.py) and comparing arrays with a stated tolerance. */
#ifndef DK_TESTS_DICT_FIXTURE_H
#define DK_TESTS_DICT_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "test.h"

/* The tensor `name` as fp32 (caller frees); *n its element count. Exits when missing (a broken fixture). */
static inline float *fx_f32(const dk_st_checkpoint *ck, const char *name, int64_t *n) {
    dk_err err = {0};
    const dk_st_tensor *t = dk_st_get(ck, name, &err);
    if (!t) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(2);
    }
    float *v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (dk_st_to_f32(t, v, (size_t)t->numel, &err) != 0) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(2);
    }
    if (n) *n = t->numel;
    return v;
}

static inline double fx_scalar(const dk_st_checkpoint *ck, const char *name) {
    float *v = fx_f32(ck, name, NULL);
    double x = v[0];
    free(v);
    return x;
}

/* Largest |a − b| / (atol + rtol·|b|) over n values: <= 1 passes. Prints the worst index when it fails. */
static inline double fx_worst(const char *what, const double *a, const float *b, int64_t n, double atol, double rtol) {
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs(a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= worst)) worst = r, at = i;
    }
    if (!(worst <= 1.0))
        fprintf(stderr, "  %s: worst at %lld: %.9g vs %.9g (ratio to tolerance %.3g)\n", what, (long long)at, a[at],
                (double)b[at], worst);
    return worst;
}

#endif
