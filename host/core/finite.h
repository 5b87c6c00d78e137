/* finite.h — the non-finite guard: find the first NaN or ±Inf in a buffer.
 *
 * Why: a NaN adapter weight or an absurd --adapter-scale turns every activation into NaN or Inf, and such
 * numbers would otherwise be stored as results and marked complete. Every stage that stores or reports
 * numbers checks them with this before it writes (diff_preprocess per chunk, `diffkit forward`, generate's
 * logits, each method's results). The scan is one pass over the bit patterns (exponent all ones), blocked so
 * the compiler vectorizes it: a small cost next to the forward that made the numbers.
 * Callers that already reduce a buffer (a mean, a sum of squares) can test that one result instead
 * (dk_first_nonfinite_f64 on the reduced vector) and scan the full buffer only when it is bad, to name the
 * first bad element. */
#ifndef DK_FINITE_H
#define DK_FINITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Index of the first NaN or ±Inf in x[0..n), or -1 when all are finite. */
int64_t dk_first_nonfinite_f32(const float *x, size_t n);
int64_t dk_first_nonfinite_f64(const double *x, size_t n);
/* "NaN", "+Inf" or "-Inf" (or "finite") for a message. */
const char *dk_nonfinite_name(double v);

/* Where the first NaN or ±Inf of a packed batch is, for a message naming the sequence and token: x holds T rows
 * of width w, sequence s rows [seq_start[s], seq_start[s + 1]) of n_seqs. */
typedef struct dk_nonfinite_at {
    int64_t seq, token;   /* the batch's sequence index and the token within that sequence */
    float value;
} dk_nonfinite_at;
/* false when all of x is finite; else true with *at filled. */
bool dk_first_nonfinite_in_batch(const float *x, int64_t T, int64_t w, const int64_t *seq_start, int64_t n_seqs,
                                 dk_nonfinite_at *at);

#endif
