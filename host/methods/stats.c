/* stats.c — see stats.h. Sorting a copy gives the order statistics exactly. */
#include "methods/stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

cJSON *dk_stats_json(const float *values, int64_t n, const char *const *keys, int n_keys, const double *percentiles,
                     int n_percentiles) {
    float *sorted = dk_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    memcpy(sorted, values, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_float);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += values[i];
    const double mean = n ? sum / (double)n : 0;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += ((double)values[i] - mean) * ((double)values[i] - mean);
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < n_keys; k++) {
        const char *key = keys[k];
        if (strcmp(key, "mean") == 0) {
            cJSON_AddNumberToObject(o, "mean", mean);
        } else if (strcmp(key, "std") == 0) {
            cJSON_AddNumberToObject(o, "std", n > 1 ? sqrt(ss / (double)(n - 1)) : (n == 1 ? NAN : 0));
        } else if (strcmp(key, "median") == 0) {
            cJSON_AddNumberToObject(o, "median", n ? sorted[(n - 1) / 2] : 0);
        } else if (strcmp(key, "min") == 0) {
            cJSON_AddNumberToObject(o, "min", n ? sorted[0] : 0);
        } else if (strcmp(key, "max") == 0) {
            cJSON_AddNumberToObject(o, "max", n ? sorted[n - 1] : 0);
        } else if (strcmp(key, "percentiles") == 0) {
            for (int p = 0; p < n_percentiles; p++) {
                double v = 0;
                if (n) {
                    const double rank = percentiles[p] / 100.0 * (double)(n - 1);
                    const int64_t lo = (int64_t)floor(rank), hi = lo + 1 < n ? lo + 1 : lo;
                    v = (double)sorted[lo] + (rank - (double)lo) * ((double)sorted[hi] - (double)sorted[lo]);
                }
                char name[48];
                snprintf(name, sizeof name, "percentile_%g", percentiles[p]);
                cJSON_AddNumberToObject(o, name, v);
            }
        } else {
            CHECK(0, "statistic '%s' is not one of mean, std, median, min, max, percentiles", key);
        }
    }
    free(sorted);
    return o;
}
