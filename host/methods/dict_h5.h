/* dict_h5.h — small HDF5 files of the dictionary methods that are not results: training checkpoints and the
 * normaliser cache. They are written the way every diffkit output is (io/out_file.h's rule): into
 * PATH.tmp.<pid> beside the final path, closed, fsync'ed, then renamed, so a killed run leaves either the old
 * file or the new one, never half of one. Reading checks names and shapes and says which file is wrong.
 *
 *     dk_h5w w;  if (dk_h5w_open(&w, path, &err) != 0) ...
 *     dk_h5w_f32(&w, "W_enc", 2, (int64_t[]){F, D}, w_enc);  dk_h5w_attr_i64(&w, "step", step);
 *     dk_h5w_commit(&w, &err);
 *     dk_h5r r;  dk_h5r_open(&r, path, &err);  dk_h5r_f32(&r, "W_enc", F * D, w_enc, &err);  dk_h5r_close(&r); */
#ifndef DK_METHODS_DICT_H5_H
#define DK_METHODS_DICT_H5_H

#include <stdint.h>

#include "core/error.h"

typedef struct dk_h5w {
    int64_t file;      /* hid_t, -1 when closed */
    char *path, *tmp;
    dk_err err;        /* first failure; later writes are skipped */
} dk_h5w;

int dk_h5w_open(dk_h5w *w, const char *path, dk_err *err);
void dk_h5w_f32(dk_h5w *w, const char *name, int rank, const int64_t *dims, const float *data);
void dk_h5w_f64(dk_h5w *w, const char *name, int rank, const int64_t *dims, const double *data);
void dk_h5w_i64(dk_h5w *w, const char *name, int rank, const int64_t *dims, const int64_t *data);
void dk_h5w_attr_i64(dk_h5w *w, const char *name, int64_t v);
void dk_h5w_attr_f64(dk_h5w *w, const char *name, double v);
void dk_h5w_attr_str(dk_h5w *w, const char *name, const char *v);
/* Closes, syncs and renames into place. 0, or -1 with err (the temporary is removed). */
int dk_h5w_commit(dk_h5w *w, dk_err *err);
void dk_h5w_abort(dk_h5w *w);

typedef struct dk_h5r {
    int64_t file;
    char *path;
} dk_h5r;

int dk_h5r_open(dk_h5r *r, const char *path, dk_err *err);
void dk_h5r_close(dk_h5r *r);
/* The dataset must hold exactly n values. */
int dk_h5r_f32(const dk_h5r *r, const char *name, int64_t n, float *out, dk_err *err);
int dk_h5r_f64(const dk_h5r *r, const char *name, int64_t n, double *out, dk_err *err);
int dk_h5r_i64(const dk_h5r *r, const char *name, int64_t n, int64_t *out, dk_err *err);
int dk_h5r_attr_i64(const dk_h5r *r, const char *name, int64_t *out, dk_err *err);
int dk_h5r_attr_f64(const dk_h5r *r, const char *name, double *out, dk_err *err);
/* A string attribute (caller frees), or NULL + err. */
char *dk_h5r_attr_str(const dk_h5r *r, const char *name, dk_err *err);

#endif
