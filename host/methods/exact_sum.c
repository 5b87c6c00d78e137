/* exact_sum.c — see exact_sum.h. */
#include "methods/exact_sum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check_mpi.h"

enum { FRACTION_BITS = 56 };
static const double TERM_LIMIT = 1152921504606846976.0; /* 2^60 */
/* totals stay within ±2^(71 + 56) = 2^127 minus headroom: checked with the overflow builtins */

void dk_exact_sum_init(dk_exact_sum *s, int64_t n) {
    s->n = n;
    s->acc = dk_calloc((size_t)(n > 0 ? n : 1), sizeof *s->acc);
    s->overflow = false;
}

void dk_exact_sum_free(dk_exact_sum *s) {
    free(s->acc);
    memset(s, 0, sizeof *s);
}

bool dk_exact_sum_add(dk_exact_sum *s, int64_t offset, const double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (!(fabs(x[i]) < TERM_LIMIT)) { /* also NaN */
            s->overflow = true;
            return false;
        }
        const __int128 q = (__int128)ldexp(x[i], FRACTION_BITS); /* exact scaling, truncation toward zero */
        if (__builtin_add_overflow(s->acc[offset + i], q, &s->acc[offset + i])) {
            s->overflow = true;
            return false;
        }
    }
    return true;
}

/* The reduction: 16-byte elements added as __int128; an overflow saturates to a marker value seen below. */
static const __int128 SATURATED = (__int128)(((unsigned __int128)1 << 127) - 1);

static void add_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const __int128 *a = in;
    __int128 *b = inout;
    for (int i = 0; i < *len; i++) {
        __int128 r;
        if (a[i] == SATURATED || b[i] == SATURATED || __builtin_add_overflow(a[i], b[i], &r)) r = SATURATED;
        b[i] = r;
    }
}

void dk_exact_sum_reduce(dk_exact_sum *s, const dk_dist *d) {
    int any_overflow = s->overflow, agreed = 0;
    MPI_CHECK(MPI_Allreduce(&any_overflow, &agreed, 1, MPI_INT, MPI_MAX, d->comm));
    s->overflow = agreed != 0;
    if (d->nranks == 1) return;
    MPI_Datatype type;
    MPI_Op op;
    MPI_CHECK(MPI_Type_contiguous(16, MPI_BYTE, &type));
    MPI_CHECK(MPI_Type_commit(&type));
    MPI_CHECK(MPI_Op_create(add_op, 1, &op));
    __int128 *out = d->rank == 0 ? dk_malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *out) : NULL;
    const int64_t chunk = 1 << 24; /* counts stay under 2^31 */
    for (int64_t at = 0; at < s->n; at += chunk) {
        const int count = (int)(s->n - at < chunk ? s->n - at : chunk);
        MPI_CHECK(MPI_Reduce(s->acc + at, out ? out + at : NULL, count, type, op, 0, d->comm));
    }
    MPI_CHECK(MPI_Op_free(&op));
    MPI_CHECK(MPI_Type_free(&type));
    if (d->rank == 0) {
        free(s->acc);
        s->acc = out;
        for (int64_t i = 0; i < s->n; i++)
            if (s->acc[i] == SATURATED) s->overflow = true;
    }
}

/* An __int128 in units of 2^-56 as a double, correctly rounded: the conversion rounds once (to nearest),
 * the scaling by a power of two is exact. */
static double to_double(__int128 v) { return ldexp((double)v, -FRACTION_BITS); }

double dk_exact_sum_value(const dk_exact_sum *s, int64_t i) { return to_double(s->acc[i]); }

double dk_exact_sum_diff(const dk_exact_sum *a, const dk_exact_sum *b, int64_t i) {
    __int128 r;
    if (__builtin_sub_overflow(a->acc[i], b->acc[i], &r)) return NAN;
    return to_double(r);
}
