/* vector_file.h — one float vector from a file: NumPy .npy or raw little-endian float32 (.bin).
 *
 * Why this exists: steering vectors and other single directions (an ADL difference, a probe) are passed to
 * commands as files, most often written by NumPy (np.save) or as raw float32 dumps (tensor.numpy().tofile).
 * Accepted:
 *   .npy  format version 1, 2 or 3, dtype '<f4' or '<f8' (converted to float), C order, shape (n,) or (1, n);
 *   any other name: raw little-endian float32, exactly n · 4 bytes.
 */
#ifndef DK_IO_VECTOR_FILE_H
#define DK_IO_VECTOR_FILE_H

#include <stdint.h>

#include "core/error.h"

/* Reads `path` into out (n floats). 0, or -1 with err set: code 1 when the file cannot be read, 2 when it holds
 * something else than n floats (the message names the file, what it holds and what was expected). */
int dk_read_vector_file(const char *path, int64_t n, float *out, dk_err *err);

#endif
