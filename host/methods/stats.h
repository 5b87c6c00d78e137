/* stats.h — the seed's statistical summary of a metric's values (KL per token, norm differences, ...), with
 * the conventions of the libraries the seed calls, so the numbers match it:
 *   mean, min, max      over all values (the sum in double);
 *   std                 torch.std: the unbiased (n − 1) standard deviation;
 *   median              torch.median: the lower of the two middle values when n is even;
 *   percentile_<p>      numpy.percentile: linear interpolation between the closest ranks, rank = p/100 · (n − 1).
 * Keys appear in the order asked for; an empty input gives all zeros. */
#ifndef DK_METHODS_STATS_H
#define DK_METHODS_STATS_H

#include <stdint.h>

#include <cjson/cJSON.h>

/* One summary as a JSON object: keys[0..n_keys) among "mean", "std", "median", "min", "max" and "percentiles"
 * (which expands to percentile_<p> for each of percentiles[0..n_percentiles)). values are not modified. */
cJSON *dk_stats_json(const float *values, int64_t n, const char *const *keys, int n_keys, const double *percentiles,
                     int n_percentiles);

#endif
