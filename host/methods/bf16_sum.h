/* bf16_sum.h — exact sums of differences of bf16 vectors (finetuned − base rows of two activation stores),
 * so a mean over millions of tokens is the same number whatever the order of the additions: the same on 1, 2
 * or 3 MPI ranks, and the same however the rows were split among them.
 *
 * Why exact: a floating-point sum depends on the order of its additions, and that order follows the split of
 * the work. Every bf16 value is an integer multiple of 2^-133 below 2^128, so a fixed-point accumulator wide
 * enough for all of them (and for 2^40 additions) holds the sum with no rounding at all; ranks add their
 * accumulators as integers. Only the final conversion to double rounds, once, from a unique state.
 *
 * Representation, per dimension: DK_BF16_SUM_WORDS signed 64-bit words, word k weighing 2^(32k − 133); a bf16
 * value M · 2^(p − 133) (M the 8-bit significand, p in [0, 253]) adds to the two words covering bits p..p+8.
 * Words hold signed digit sums and are brought back to 32-bit digits (carries propagated) before they could
 * overflow, before a reduction and before reading.
 *
 *     dk_bf16_sum s;  dk_bf16_sum_init(&s, d);
 *     dk_bf16_sum_add_diff(&s, ft_row, base_row);          // += ft − base, count += 1
 *     dk_bf16_sum_reduce(&s, &dist);                         // collective: the total on rank 0
 *     dk_bf16_sum_mean(&s, mean);                            // (d) sum / count, in double
 */
#ifndef DK_METHODS_BF16_SUM_H
#define DK_METHODS_BF16_SUM_H

#include <stdint.h>

#include "dist/dist.h"

#define DK_BF16_SUM_WORDS 10

typedef struct dk_bf16_sum {
    int64_t d;
    int64_t count;      /* rows added */
    int64_t pending;    /* rows added since the last carry propagation */
    int64_t *words;     /* (d, DK_BF16_SUM_WORDS) */
} dk_bf16_sum;

void dk_bf16_sum_init(dk_bf16_sum *s, int64_t d);
void dk_bf16_sum_free(dk_bf16_sum *s);
/* sum += ft − base for one row of d bf16 values each (bit patterns); count += 1. The values must be finite
 * (CHECK): callers test their rows first. */
void dk_bf16_sum_add_diff(dk_bf16_sum *s, const uint16_t *ft, const uint16_t *base);
/* Collective: rank 0 ends with the exact sum and count over every rank; the others keep theirs. */
void dk_bf16_sum_reduce(dk_bf16_sum *s, const dk_dist *d);
/* out (d) = the exact sum in double (within a few ulps; the same bits on every run and rank count). */
void dk_bf16_sum_value(dk_bf16_sum *s, double *out);
/* out (d) = sum / count (zeros when count is 0). */
void dk_bf16_sum_mean(dk_bf16_sum *s, double *out);

#endif
