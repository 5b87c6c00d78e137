/* svg.c — line, histogram and bar plots as inline SVG (svg.h). The frame is fixed (640 x 300 user units,
 * scaled by CSS); ticks are "nice" steps (1, 2 or 5 times a power of ten) over the data range. */
#include "svg.h"

#include <math.h>
#include <stdio.h>

#include "html.h"

enum { W = 640, H = 300, LEFT = 70, RIGHT = 20, TOP = 30, BOTTOM = 50 };

static const char *const COLOURS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

typedef struct range { double lo, hi; } range;

static void range_add(range *r, double v) {
    if (!isfinite(v)) return;
    if (v < r->lo) r->lo = v;
    if (v > r->hi) r->hi = v;
}

static range range_fix(range r) {
    if (!(r.lo <= r.hi)) return (range){0, 1};
    if (r.lo == r.hi) return (range){r.lo - (r.lo == 0 ? 1 : fabs(r.lo) * 0.5), r.hi + (r.hi == 0 ? 1 : fabs(r.hi) * 0.5)};
    return r;
}

static double nice_step(double span, int target_ticks) {
    double raw = span / target_ticks, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static double sx(range r, double v) { return LEFT + (v - r.lo) / (r.hi - r.lo) * (W - LEFT - RIGHT); }
static double sy(range r, double v) { return H - BOTTOM - (v - r.lo) / (r.hi - r.lo) * (H - TOP - BOTTOM); }

static void open_svg(dk_strbuf *b, const rp_plot *p) {
    dk_strbuf_printf(b, "<svg class=\"plot\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", W, H);
    rp_esc(b, p->title);
    dk_strbuf_printf(b, "\"><text class=\"title\" x=\"%d\" y=\"18\" text-anchor=\"middle\">", W / 2);
    rp_esc(b, p->title);
    dk_strbuf_append(b, "</text>\n");
}

/* Axes, ticks, tick labels and axis labels. y values are log10 when log_y. */
static void axes(dk_strbuf *b, const rp_plot *p, range xr, range yr, bool x_ticks) {
    dk_strbuf_printf(b, "<path class=\"axis\" d=\"M%d %d V%d H%d\"/>\n", LEFT, TOP, H - BOTTOM, W - RIGHT);
    if (x_ticks) {
        double step = nice_step(xr.hi - xr.lo, 6);
        for (double t = ceil(xr.lo / step) * step; t <= xr.hi + step * 1e-9; t += step) {
            double x = sx(xr, t);
            dk_strbuf_printf(b, "<path class=\"tick\" d=\"M%.1f %d v5\"/><text class=\"tl\" x=\"%.1f\" y=\"%d\" "
                             "text-anchor=\"middle\">%.3g</text>\n", x, H - BOTTOM, x, H - BOTTOM + 17,
                             fabs(t) < step * 1e-9 ? 0.0 : t);
        }
    }
    double step = nice_step(yr.hi - yr.lo, 5);
    for (double t = ceil(yr.lo / step) * step; t <= yr.hi + step * 1e-9; t += step) {
        double y = sy(yr, t), shown = fabs(t) < step * 1e-9 ? 0.0 : t;
        dk_strbuf_printf(b, "<path class=\"tick\" d=\"M%d %.1f h-5\"/><path class=\"grid\" d=\"M%d %.1f H%d\"/>"
                         "<text class=\"tl\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", LEFT, y, LEFT, y, W - RIGHT,
                         LEFT - 8, y + 4);
        if (p->log_y) dk_strbuf_printf(b, "%.3g", pow(10, shown));
        else dk_strbuf_printf(b, "%.3g", shown);
        dk_strbuf_append(b, "</text>\n");
    }
    dk_strbuf_printf(b, "<text class=\"al\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (LEFT + W - RIGHT) / 2, H - 10);
    rp_esc(b, p->x_label);
    dk_strbuf_printf(b, "</text><text class=\"al\" transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">",
                     (TOP + H - BOTTOM) / 2);
    rp_esc(b, p->y_label);
    if (p->log_y) dk_strbuf_append(b, " (log scale)");
    dk_strbuf_append(b, "</text>\n");
}

static double yv(const rp_plot *p, double v) { return p->log_y ? (v > 0 ? log10(v) : NAN) : v; }

void rp_svg_lines(dk_strbuf *b, const rp_plot *p, const rp_series *series, size_t n_series) {
    range xr = {INFINITY, -INFINITY}, yr = {INFINITY, -INFINITY};
    for (size_t s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double y = yv(p, series[s].y[i]);
            if (!isfinite(y)) continue;
            range_add(&xr, series[s].x ? series[s].x[i] : (double)i);
            range_add(&yr, y);
        }
    xr = range_fix(xr), yr = range_fix(yr);
    open_svg(b, p);
    axes(b, p, xr, yr, true);
    for (size_t s = 0; s < n_series; s++) {
        const char *colour = COLOURS[s % (sizeof COLOURS / sizeof *COLOURS)];
        dk_strbuf_printf(b, "<path class=\"line\" stroke=\"%s\" d=\"", colour);
        bool pen_up = true;
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x ? series[s].x[i] : (double)i, y = yv(p, series[s].y[i]);
            if (!isfinite(y) || !isfinite(x)) { pen_up = true; continue; }
            dk_strbuf_printf(b, "%s%.1f %.1f ", pen_up ? "M" : "L", sx(xr, x), sy(yr, y));
            pen_up = false;
        }
        dk_strbuf_append(b, "\"/>\n");
        if (series[s].n <= 40)
            for (size_t i = 0; i < series[s].n; i++) {
                double x = series[s].x ? series[s].x[i] : (double)i, y = yv(p, series[s].y[i]);
                if (isfinite(x) && isfinite(y))
                    dk_strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%g: %.4g</title>"
                                     "</circle>", sx(xr, x), sy(yr, y), colour, x, series[s].y[i]);
            }
        if (series[s].name) {
            int ly = TOP + 4 + 16 * (int)s;
            dk_strbuf_printf(b, "<path stroke=\"%s\" class=\"line\" d=\"M%d %d h18\"/><text class=\"tl\" x=\"%d\" "
                             "y=\"%d\">", colour, W - RIGHT - 170, ly, W - RIGHT - 146, ly + 4);
            rp_esc(b, series[s].name);
            dk_strbuf_append(b, "</text>\n");
        }
    }
    dk_strbuf_append(b, "</svg>\n");
}

void rp_svg_histogram(dk_strbuf *b, const rp_plot *p, const double *edges, const double *counts, size_t n_bins) {
    range xr = {INFINITY, -INFINITY}, yr = {p->log_y ? INFINITY : 0, -INFINITY};
    for (size_t i = 0; i <= n_bins; i++) range_add(&xr, edges[i]);
    for (size_t i = 0; i < n_bins; i++) range_add(&yr, yv(p, counts[i]));
    if (p->log_y && isfinite(yr.lo)) yr.lo = floor(yr.lo);
    xr = range_fix(xr), yr = range_fix(yr);
    open_svg(b, p);
    axes(b, p, xr, yr, true);
    double base = sy(yr, yr.lo);
    for (size_t i = 0; i < n_bins; i++) {
        double y = yv(p, counts[i]);
        if (!isfinite(y) || !isfinite(edges[i]) || !isfinite(edges[i + 1])) continue;
        double x0 = sx(xr, edges[i]), x1 = sx(xr, edges[i + 1]), top = sy(yr, y);
        dk_strbuf_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"><title>[%.4g, %.4g): "
                         "%.6g</title></rect>", x0, top, fmax(x1 - x0, 0.5), fmax(base - top, 0), edges[i],
                         edges[i + 1], counts[i]);
    }
    dk_strbuf_append(b, "\n</svg>\n");
}

void rp_svg_bars(dk_strbuf *b, const rp_plot *p, const double *values, const char *const *labels, size_t n) {
    range xr = {-0.5, (double)n - 0.5}, yr = {p->log_y ? INFINITY : 0, -INFINITY};
    for (size_t i = 0; i < n; i++) range_add(&yr, yv(p, values[i]));
    if (p->log_y && isfinite(yr.lo)) yr.lo = floor(yr.lo);
    xr = range_fix(xr), yr = range_fix(yr);
    open_svg(b, p);
    axes(b, p, xr, yr, labels == NULL || n > 30);
    double base = sy(yr, yr.lo), width = (W - LEFT - RIGHT) / (double)(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        double y = yv(p, values[i]);
        if (!isfinite(y)) continue;
        double x = sx(xr, (double)i) - width * 0.4, top = sy(yr, y);
        dk_strbuf_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"><title>", x, top,
                         width * 0.8, fmax(base - top, 0));
        if (labels && labels[i]) rp_esc(b, labels[i]);
        else dk_strbuf_printf(b, "%zu", i);
        dk_strbuf_printf(b, ": %.6g</title></rect>", values[i]);
        if (labels && n <= 30) {
            dk_strbuf_printf(b, "<text class=\"tl\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x + width * 0.4,
                             H - BOTTOM + 17);
            rp_esc(b, labels[i] ? labels[i] : "");
            dk_strbuf_append(b, "</text>");
        }
    }
    dk_strbuf_append(b, "\n</svg>\n");
}
