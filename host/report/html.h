/* html.h — writing the report's HTML: escaping, numbers tagged with the HDF5 value they show, and links back to
 * the dataset a view came from. Everything the report prints from a results file goes through these, so text
 * from a model (tokens, generations, transcripts) can never become markup and every printed number can be
 * checked against the file it came from (tests/report).
 *
 * A tagged number:  <span class="num" data-h5="kl/results.h5:/pretrain/per_token_statistics@mean"
 *                    data-index="0" data-value="0.0123456789">0.01235</span>
 * data-h5 is "<file relative to the results folder>:<dataset path>" ("@attr" for an attribute), data-index the
 * flat (row-major) element index, data-value the value with 17 significant digits; the text shows it to 4
 * (%.4g), whole numbers in full, NaN and infinities as NaN, Infinity, -Infinity. */
#ifndef DK_REPORT_HTML_H
#define DK_REPORT_HTML_H

#include <stddef.h>
#include <stdint.h>

#include "core/strutil.h"

/* s escaped for text and attribute values (& < > " '); NULL prints nothing. Invalid UTF-8 bytes become U+FFFD. */
void rp_esc(dk_strbuf *b, const char *s);
void rp_esc_n(dk_strbuf *b, const char *s, size_t n);
/* A number from file:path (element `index`, or -1 for an attribute or a scalar) printed with %.4g. */
void rp_num(dk_strbuf *b, const char *file, const char *path, int64_t index, double value);
/* The same inside a <td>. */
void rp_td_num(dk_strbuf *b, const char *file, const char *path, int64_t index, double value);
/* <a class="src" href="../FILE" title="...">FILE:PATH</a>: where a view came from (the report lives in
 * <results>/report/, the file in <results>/FILE). */
void rp_src(dk_strbuf *b, const char *file, const char *path);
/* <p class="problem">: something that is not shown, and why (escaped). */
void rp_problem(dk_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* <p class="note">: an explanation for the reader (escaped). */
void rp_note(dk_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A per-token strip: each token in a <span> whose background is proportional to value / max_abs (red for
 * positive, blue for negative), with the value in its title. tokens[i] may be NULL (shown as "#id"). */
void rp_token_strip(dk_strbuf *b, size_t n, const char *const *tokens, const int32_t *ids, const float *values,
                    double max_abs);

#endif
