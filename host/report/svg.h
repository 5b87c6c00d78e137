/* svg.h — the report's plots, drawn as inline SVG by our code (no plotting library, no script): a line plot of
 * one or more series and a bar plot (histograms from HDF5 counts and edges, or one bar per category). Every plot
 * has a title, axes with ticks and tick labels, and axis labels; series get a legend. NaN and infinite values
 * are left out of lines and scales. */
#ifndef DK_REPORT_SVG_H
#define DK_REPORT_SVG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/strutil.h"

typedef struct rp_series {
    const char *name;      /* legend text */
    const double *x, *y;   /* [n]; x NULL = 0, 1, 2, ... */
    size_t n;
} rp_series;

typedef struct rp_plot {
    const char *title, *x_label, *y_label;
    bool log_y;            /* log10 y axis (values <= 0 left out) */
} rp_plot;

/* Lines (with a marker per point when a series has at most 40 points). */
void rp_svg_lines(dk_strbuf *b, const rp_plot *p, const rp_series *series, size_t n_series);
/* A histogram: bar i spans [edges[i], edges[i+1]) with height counts[i]. */
void rp_svg_histogram(dk_strbuf *b, const rp_plot *p, const double *edges, const double *counts, size_t n_bins);
/* One bar per value at x = 0, 1, ...; labels[i] (may be NULL) under the bars when n <= 30. */
void rp_svg_bars(dk_strbuf *b, const rp_plot *p, const double *values, const char *const *labels, size_t n);

#endif
