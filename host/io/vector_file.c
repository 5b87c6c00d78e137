/* vector_file.c — see vector_file.h. The .npy layout (numpy.lib.format): magic "\x93NUMPY", major and minor
 * version bytes, a header length (uint16 in version 1, uint32 in 2 and 3), then a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (n,), } padded with spaces, then the data. */
#include "vector_file.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The value text after 'key': in the header dict (NULL when absent). */
static const char *dict_value(const char *header, const char *key) {
    const char *at = strstr(header, key);
    if (!at) return NULL;
    at = strchr(at + strlen(key), ':');
    if (!at) return NULL;
    at++;
    while (*at == ' ') at++;
    return at;
}

/* Element count of a shape literal "(n,)" or "(1, n)"; -1 for any other shape. */
static int64_t shape_count(const char *shape) {
    if (*shape != '(') return -1;
    long long dims[3];
    int n_dims = 0;
    const char *p = shape + 1;
    while (*p && *p != ')') {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || n_dims == 3) return -1;
        dims[n_dims++] = d;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (n_dims == 1) return dims[0];
    if (n_dims == 2 && dims[0] == 1) return dims[1];
    return -1;
}

static int read_npy(const char *path, const unsigned char *bytes, size_t size, int64_t n, float *out, dk_err *err) {
    if (size < 10 || bytes[6] < 1 || bytes[6] > 3)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: not a NumPy .npy file of format version 1-3", path);
    const size_t header_len = bytes[6] == 1 ? (size_t)bytes[8] | (size_t)bytes[9] << 8
                                            : (size_t)bytes[8] | (size_t)bytes[9] << 8 | (size_t)bytes[10] << 16 |
                                                  (size_t)bytes[11] << 24;
    const size_t header_at = bytes[6] == 1 ? 10 : 12;
    if (header_at + header_len > size) return dk_err_set(err, DK_EXIT_USAGE, "%s: truncated .npy header", path);
    char *header = dk_malloc(header_len + 1);
    memcpy(header, bytes + header_at, header_len);
    header[header_len] = '\0';
    const char *descr = dict_value(header, "'descr'"), *order = dict_value(header, "'fortran_order'");
    const char *shape = dict_value(header, "'shape'");
    int width = descr && strncmp(descr, "'<f4'", 5) == 0 ? 4 : descr && strncmp(descr, "'<f8'", 5) == 0 ? 8 : 0;
    const int64_t count = shape ? shape_count(shape) : -1;
    int rc = 0;
    if (!width)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: dtype %.8s; expected little-endian float32 ('<f4') or float64 "
                        "('<f8'): save it with np.save(path, v.astype(np.float32))", path, descr ? descr : "missing");
    else if (!order || strncmp(order, "False", 5) != 0)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: a Fortran-order array; save a C-order vector", path);
    else if (count != n)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: shape %.32s; expected a vector of %lld floats (shape (%lld,) or "
                        "(1, %lld)): the model's hidden size", path, shape ? shape : "missing", (long long)n,
                        (long long)n, (long long)n);
    else if (header_at + header_len + (size_t)n * (size_t)width != size)
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: %zu data bytes after the header, expected %lld", path,
                        size - header_at - header_len, (long long)n * width);
    const unsigned char *data = bytes + header_at + header_len;
    for (int64_t i = 0; rc == 0 && i < n; i++) { /* little-endian hosts only, as the rest of diffkit */
        if (width == 4) {
            memcpy(&out[i], data + 4 * i, 4);
        } else {
            double d;
            memcpy(&d, data + 8 * i, 8);
            out[i] = (float)d;
        }
    }
    free(header);
    return rc;
}

int dk_read_vector_file(const char *path, int64_t n, float *out, dk_err *err) {
    size_t size = 0;
    unsigned char *bytes = (unsigned char *)dk_read_file(path, &size, err);
    if (!bytes) return -1;
    int rc;
    if (size >= 6 && memcmp(bytes, "\x93NUMPY", 6) == 0) {
        rc = read_npy(path, bytes, size, n, out, err);
    } else if (has_suffix(path, ".npy")) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: named .npy but does not start with NumPy's magic string", path);
    } else if (size != (size_t)n * 4) {
        rc = dk_err_set(err, DK_EXIT_USAGE, "%s: %zu bytes; a raw float32 vector of the model's hidden size %lld "
                        "has %lld bytes (or pass a .npy file)", path, size, (long long)n, (long long)n * 4);
    } else {
        memcpy(out, bytes, size);
        rc = 0;
    }
    free(bytes);
    return rc;
}
