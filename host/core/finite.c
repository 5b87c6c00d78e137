/* finite.c — see finite.h. Blocks of 1024 values are tested with an OR of "exponent all ones" flags (no
 * branch per element, so the loop vectorizes); only a bad block is searched element by element. */
#include "core/finite.h"

#include <math.h>
#include <string.h>

enum { BLOCK = 1024 };

int64_t dk_first_nonfinite_f32(const float *x, size_t n) {
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        uint32_t bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, &x[b + i], sizeof u);
            bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (!bad) continue;
        for (size_t i = 0; i < m; i++)
            if (!isfinite(x[b + i])) return (int64_t)(b + i);
    }
    return -1;
}

int64_t dk_first_nonfinite_f64(const double *x, size_t n) {
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        uint64_t bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint64_t u;
            memcpy(&u, &x[b + i], sizeof u);
            bad |= (uint64_t)((u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
        }
        if (!bad) continue;
        for (size_t i = 0; i < m; i++)
            if (!isfinite(x[b + i])) return (int64_t)(b + i);
    }
    return -1;
}

const char *dk_nonfinite_name(double v) {
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    return "finite";
}

bool dk_first_nonfinite_in_batch(const float *x, int64_t T, int64_t w, const int64_t *seq_start, int64_t n_seqs,
                                 dk_nonfinite_at *at) {
    const int64_t bad = dk_first_nonfinite_f32(x, (size_t)(T * w));
    if (bad < 0) return false;
    const int64_t t = bad / w;
    int64_t s = 0;
    while (s + 1 < n_seqs && seq_start[s + 1] <= t) s++;
    *at = (dk_nonfinite_at){.seq = s, .token = t - seq_start[s], .value = x[bad]};
    return true;
}
