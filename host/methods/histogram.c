/* histogram.c — see histogram.h. Every step follows numpy's _histogram fast path for equal bins on float32
 * data (numpy/lib/_histograms_impl.py), in float32 arithmetic, so the edges and counts are numpy's bit for bit. */
#include "methods/histogram.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

void dk_histogram_compute(dk_histogram *h, const float *values, int64_t n, int64_t bins) {
    CHECK(bins > 0, "histogram with %lld bins", (long long)bins);
    h->bins = bins;
    h->edges = dk_malloc((size_t)(bins + 1) * sizeof *h->edges);
    h->counts = dk_calloc((size_t)bins, sizeof *h->counts);
    h->n = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(values[i])) continue;
        if (values[i] < lo) lo = values[i];
        if (values[i] > hi) hi = values[i];
    }
    if (!(lo <= hi)) { /* no value: numpy's default range (0, 1), integers, so its linspace runs in float64 */
        lo = 0.0f, hi = 1.0f;
        for (int64_t i = 0; i < bins; i++) h->edges[i] = (float)((double)i * (1.0 / (double)bins));
    } else {
        if (lo == hi) lo = lo - 0.5f, hi = hi + 0.5f; /* numpy widens a range of one value */
        /* numpy.linspace(lo, hi, bins + 1) in float32: y = arange * step + start, the last edge set to stop */
        const float step = (hi - lo) / (float)bins;
        for (int64_t i = 0; i < bins; i++) h->edges[i] = (float)i * step + lo;
    }
    h->edges[bins] = hi;
    const float denom = hi - lo;
    for (int64_t i = 0; i < n; i++) {
        const float v = values[i];
        if (!(v >= lo && v <= hi)) continue; /* NaN */
        int64_t k = (int64_t)(((v - lo) / denom) * (float)bins);
        if (k == bins) k--;
        if (v < h->edges[k]) k--;                                /* the first guess can be 1 ulp off an edge */
        if (v >= h->edges[k + 1] && k != bins - 1) k++;
        h->counts[k]++;
        h->n++;
    }
}

void dk_histogram_free(dk_histogram *h) {
    free(h->edges);
    free(h->counts);
    h->edges = NULL;
    h->counts = NULL;
}

void dk_iqr_fences(const float *sorted, int64_t n, float *lower, float *upper) {
    CHECK(n > 0, "outlier fences of no values");
    /* torch_quantile: k = round(q * (n - 1)) + 1, kthvalue(k); Python's round is half to even, as rint is */
    const float q1 = sorted[(int64_t)rint(0.25 * (double)(n - 1))];
    const float q3 = sorted[(int64_t)rint(0.75 * (double)(n - 1))];
    const float iqr = q3 - q1;
    *lower = q1 - 1.5f * iqr;
    *upper = q3 + 1.5f * iqr;
}
