/* histogram.h — the numbers behind the seed's histogram plots, so a report can draw them without the values:
 * matplotlib's plt.hist(values, bins=100), which is numpy.histogram over [nanmin, nanmax] of a float32 array,
 * and the seed's outlier filter (activation_analysis/method.py, compute_histogram with no_outliers=True).
 *
 *   dk_histogram_compute   numpy.histogram(values, bins, range=(nanmin, nanmax)) as matplotlib calls it on
 *                          float32 data: float32 edges (numpy.linspace in float32: i * step + lo, the last edge
 *                          = hi), bins closed on the left except the last (closed on both sides), NaN left out
 *                          (matplotlib drops it), a range of one value widened by ±0.5, no values -> [0, 1].
 *                          The counts equal numpy's and matplotlib's for the same float32 values.
 *   dk_iqr_fences          Tukey's fences q1 − 1.5·IQR and q3 + 1.5·IQR, in float32 like the seed's torch code,
 *                          with its torch_quantile (interpolation "nearest": the value of rank
 *                          round_half_even(q · (n − 1)) of the sorted values); the seed keeps lower <= v <= upper.
 */
#ifndef DK_METHODS_HISTOGRAM_H
#define DK_METHODS_HISTOGRAM_H

#include <stdint.h>

typedef struct dk_histogram {
    int64_t bins;
    float *edges;       /* (bins + 1) */
    int64_t *counts;    /* (bins) */
    int64_t n;          /* values counted (NaN left out) */
} dk_histogram;

void dk_histogram_compute(dk_histogram *h, const float *values, int64_t n, int64_t bins);
void dk_histogram_free(dk_histogram *h);

/* sorted: n > 0 values in ascending order, no NaN. */
void dk_iqr_fences(const float *sorted, int64_t n, float *lower, float *upper);

#endif
