/* exact_sum.h — sums whose result does not depend on the order of the additions, so a mean over sequences
 * spread over 1, 2 or 3 ranks (any grouping of batches, any MPI reduction tree) is the same number to the bit.
 *
 * Why: a floating-point sum depends on its order, and a rank count changes the order. Here every term (a double,
 * e.g. one batch's sum of activations formed in a fixed order) is converted once to fixed point — a multiple of
 * 2^-56, truncated toward zero, so terms under 1.4e-17 in magnitude are lost — and accumulated in a 128-bit
 * integer, where addition is exact and associative. Range: |term| < 2^60 (1.2e18) and a total under 2^71
 * (2.4e21); beyond that adding fails (false) instead of wrapping.
 *
 *     dk_exact_sum s;  dk_exact_sum_init(&s, d);               // d sums
 *     dk_exact_sum_add(&s, 0, batch_partial, d);               // per batch, any rank
 *     dk_exact_sum_reduce(&s, &dist);                          // rank 0 holds the totals
 *     double total = dk_exact_sum_value(&s, i);                // correctly rounded */
#ifndef DK_METHODS_EXACT_SUM_H
#define DK_METHODS_EXACT_SUM_H

#include <stdbool.h>
#include <stdint.h>

#include "dist/dist.h"

typedef struct dk_exact_sum {
    __int128 *acc;       /* (n) fixed-point totals, units of 2^-56 */
    int64_t n;
    bool overflow;       /* a term or a total left the range: the values are meaningless */
} dk_exact_sum;

void dk_exact_sum_init(dk_exact_sum *s, int64_t n);
void dk_exact_sum_free(dk_exact_sum *s);
/* acc[offset + i] += x[i] for i < n. false (and s->overflow) when a term is not finite or out of range. */
bool dk_exact_sum_add(dk_exact_sum *s, int64_t offset, const double *x, int64_t n);
/* Element-wise total over the ranks onto rank 0 (collective; other ranks' values are then unspecified).
 * The overflow flag is agreed: set on rank 0 when any rank or the reduction overflowed. */
void dk_exact_sum_reduce(dk_exact_sum *s, const dk_dist *d);
/* acc[i] as a double, correctly rounded. */
double dk_exact_sum_value(const dk_exact_sum *s, int64_t i);
/* a->acc[i] − b->acc[i], subtracted exactly, then rounded to a double. */
double dk_exact_sum_diff(const dk_exact_sum *a, const dk_exact_sum *b, int64_t i);

#endif
