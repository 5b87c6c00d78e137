/* bf16_sum.c — see bf16_sum.h. */
#include "methods/bf16_sum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check_mpi.h"
#include "core/error.h"

enum { W = DK_BF16_SUM_WORDS };
/* A row changes each word by less than 4 * 2^32 (two values, each touching a word with its low or high part);
 * carries are propagated every 2^27 rows, long before |word| could reach 2^63. */
static const int64_t MAX_PENDING = (int64_t)1 << 27;

void dk_bf16_sum_init(dk_bf16_sum *s, int64_t d) {
    s->d = d;
    s->count = 0;
    s->pending = 0;
    s->words = dk_calloc((size_t)(d ? d : 1) * W, sizeof *s->words);
}

void dk_bf16_sum_free(dk_bf16_sum *s) {
    free(s->words);
    s->words = NULL;
}

/* Carries of one dimension's words: 0..W-2 back into [0, 2^32), the top word signed. Afterwards the state is
 * unique for its value. */
static void carry_words(int64_t *w) {
    for (int k = 0; k < W - 1; k++) {
        const int64_t lo = (int64_t)((uint64_t)w[k] & 0xffffffffu);
        w[k + 1] += (w[k] - lo) / ((int64_t)1 << 32); /* exact: w[k] - lo is a multiple of 2^32 */
        w[k] = lo;
    }
}

static void normalize(dk_bf16_sum *s) {
    for (int64_t j = 0; j < s->d; j++) carry_words(s->words + j * W);
    s->pending = 0;
}

/* Adds sign * value of one bf16 bit pattern to the words of one dimension. */
static inline void add_bf16(int64_t *w, uint16_t h, int64_t sign) {
    const int ex = (h >> 7) & 0xff;
    CHECK(ex != 0xff, "bf16_sum: a non-finite value (bits 0x%04x) reached the exact sum", (unsigned)h);
    const int64_t m = ex ? (int64_t)((h & 0x7f) | 0x80) : (int64_t)(h & 0x7f);
    const int p = ex ? ex - 1 : 0;            /* value = m * 2^(p - 133) */
    const int64_t v = m << (p & 31);          /* < 2^39 */
    const int64_t sg = (h & 0x8000) ? -sign : sign;
    w[p >> 5] += sg * (v & 0xffffffff);
    w[(p >> 5) + 1] += sg * (v >> 32);
}

void dk_bf16_sum_add_diff(dk_bf16_sum *s, const uint16_t *ft, const uint16_t *base) {
    if (s->pending >= MAX_PENDING) normalize(s);
    for (int64_t j = 0; j < s->d; j++) {
        int64_t *w = s->words + j * W;
        add_bf16(w, ft[j], 1);
        add_bf16(w, base[j], -1);
    }
    s->pending++;
    s->count++;
}

void dk_bf16_sum_reduce(dk_bf16_sum *s, const dk_dist *d) {
    normalize(s); /* every word now below 2^32 in magnitude (the top one far below): a sum over ranks fits */
    if (d->nranks == 1) return;
    const int64_t n = s->d * W;
    int64_t *total = d->rank == 0 ? dk_malloc((size_t)(n ? n : 1) * sizeof *total) : NULL;
    for (int64_t off = 0; off < n; off += (int64_t)1 << 28) { /* MPI counts are int */
        const int piece = (int)(n - off < ((int64_t)1 << 28) ? n - off : ((int64_t)1 << 28));
        MPI_CHECK(MPI_Reduce(s->words + off, total ? total + off : NULL, piece, MPI_INT64_T, MPI_SUM, 0, d->comm));
    }
    int64_t count = 0;
    MPI_CHECK(MPI_Reduce(&s->count, &count, 1, MPI_INT64_T, MPI_SUM, 0, d->comm));
    if (d->rank == 0) {
        free(s->words);
        s->words = total;
        s->count = count;
        normalize(s);
    }
}

void dk_bf16_sum_value(dk_bf16_sum *s, double *out) {
    normalize(s);
    for (int64_t j = 0; j < s->d; j++) {
        int64_t w[W];
        memcpy(w, s->words + j * W, sizeof w);
        double sign = 1;
        if (w[W - 1] < 0) { /* sign and magnitude, so the digits below add without cancellation */
            sign = -1;
            for (int k = 0; k < W; k++) w[k] = -w[k];
            carry_words(w);
        }
        double v = 0;
        for (int k = W - 1; k >= 0; k--) v += ldexp((double)w[k], 32 * k - 133);
        out[j] = sign * v;
    }
}

void dk_bf16_sum_mean(dk_bf16_sum *s, double *out) {
    dk_bf16_sum_value(s, out);
    for (int64_t j = 0; j < s->d; j++) out[j] = s->count ? out[j] / (double)s->count : 0.0;
}
