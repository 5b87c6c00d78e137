/* html.c — escaping and tagged numbers for the report (html.h). */
#include "html.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    size_t len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

void rp_esc_n(dk_strbuf *b, const char *s, size_t n) {
    if (!s) return;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        switch (c) {
        case '&': dk_strbuf_append(b, "&amp;"); i++; continue;
        case '<': dk_strbuf_append(b, "&lt;"); i++; continue;
        case '>': dk_strbuf_append(b, "&gt;"); i++; continue;
        case '"': dk_strbuf_append(b, "&quot;"); i++; continue;
        case '\'': dk_strbuf_append(b, "&#39;"); i++; continue;
        default: break;
        }
        if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') { /* control bytes: shown, not passed through */
            dk_strbuf_printf(b, "&#x%X;", 0x2400 + c);
            i++;
            continue;
        }
        size_t len = utf8_seq_len(u + i, n - i);
        if (len == 0) {
            dk_strbuf_append(b, "\xEF\xBF\xBD");
            i++;
        } else {
            dk_strbuf_append_n(b, s + i, len);
            i += len;
        }
    }
}

void rp_esc(dk_strbuf *b, const char *s) {
    if (s) rp_esc_n(b, s, strlen(s));
}

/* %.4g (whole numbers in full), with NaN and infinities spelled the same way on every libc */
static void shown(dk_strbuf *b, double v) {
    if (isnan(v)) dk_strbuf_append(b, "NaN");
    else if (isinf(v)) dk_strbuf_append(b, v > 0 ? "Infinity" : "-Infinity");
    else if (v == floor(v) && fabs(v) < 1e15) dk_strbuf_printf(b, "%.0f", v);
    else dk_strbuf_printf(b, "%.4g", v);
}

static void num_attrs(dk_strbuf *b, const char *file, const char *path, int64_t index, double value) {
    dk_strbuf_append(b, " data-h5=\"");
    rp_esc(b, file);
    dk_strbuf_append(b, ":");
    rp_esc(b, path);
    dk_strbuf_printf(b, "\" data-index=\"%lld\" data-value=\"", (long long)index);
    if (isfinite(value)) dk_strbuf_printf(b, "%.17g", value);
    else shown(b, value);
    dk_strbuf_append(b, "\"");
}

void rp_num(dk_strbuf *b, const char *file, const char *path, int64_t index, double value) {
    dk_strbuf_append(b, "<span class=\"num\"");
    num_attrs(b, file, path, index, value);
    dk_strbuf_append(b, ">");
    shown(b, value);
    dk_strbuf_append(b, "</span>");
}

void rp_td_num(dk_strbuf *b, const char *file, const char *path, int64_t index, double value) {
    dk_strbuf_append(b, "<td class=\"num\"");
    num_attrs(b, file, path, index, value);
    dk_strbuf_append(b, ">");
    shown(b, value);
    dk_strbuf_append(b, "</td>");
}

void rp_src(dk_strbuf *b, const char *file, const char *path) {
    dk_strbuf_append(b, "<a class=\"src\" href=\"../");
    rp_esc(b, file);
    dk_strbuf_append(b, "\" title=\"the HDF5 dataset this view shows: open the file with h5py or h5dump and read ");
    rp_esc(b, path);
    dk_strbuf_append(b, "\">");
    rp_esc(b, file);
    dk_strbuf_append(b, ":");
    rp_esc(b, path);
    dk_strbuf_append(b, "</a>");
}

static void para(dk_strbuf *b, const char *cls, const char *fmt, va_list ap) {
    char *text = dk_vsprintf(fmt, ap);
    dk_strbuf_printf(b, "<p class=\"%s\">", cls);
    rp_esc(b, text);
    dk_strbuf_append(b, "</p>\n");
    free(text);
}

void rp_problem(dk_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    para(b, "problem", fmt, ap);
    va_end(ap);
}

void rp_note(dk_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    para(b, "note", fmt, ap);
    va_end(ap);
}

void rp_token_strip(dk_strbuf *b, size_t n, const char *const *tokens, const int32_t *ids, const float *values,
                    double max_abs) {
    dk_strbuf_append(b, "<div class=\"strip\">");
    for (size_t i = 0; i < n; i++) {
        double v = values ? values[i] : 0.0;
        double a = max_abs > 0 && isfinite(v) ? fmin(fabs(v) / max_abs, 1.0) : 0.0;
        dk_strbuf_printf(b, "<span class=\"tok\" style=\"background:rgba(%s,%.2f)\" title=\"%.4g\">",
                         v >= 0 ? "220,50,40" : "40,90,220", a * 0.85, v);
        if (tokens && tokens[i]) rp_esc(b, tokens[i]);
        else dk_strbuf_printf(b, "#%d", ids ? (int)ids[i] : -1);
        dk_strbuf_append(b, "</span>");
    }
    dk_strbuf_append(b, "</div>\n");
}
