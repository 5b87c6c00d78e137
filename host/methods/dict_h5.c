/* dict_h5.c — see dict_h5.h. */
#include "methods/dict_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5_cause.h"
#include "io/out_file.h"

static void w_failed(dk_h5w *w, const char *what, const char *name) {
    if (dk_err_is_set(&w->err)) return;
    int e = dk_h5_error_errno(errno);
    if (e) {
        dk_err_write(&w->err, w->path, e);
        dk_err_prefix(&w->err, "writing %s: ", name);
    } else {
        dk_err_set(&w->err, DK_EXIT_RUNTIME, "cannot %s %s in %s (is the disk full or the folder unwritable?)", what,
                   name, w->tmp);
    }
}

int dk_h5w_open(dk_h5w *w, const char *path, dk_err *err) {
    memset(w, 0, sizeof *w);
    w->file = -1;
    w->path = dk_strdup(path);
    w->tmp = dk_sprintf("%s.tmp.%ld", path, (long)getpid());
    errno = 0;
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0) {
        int e = errno ? errno : EACCES;
        dk_err_write(err, w->tmp, e);
        free(w->path), free(w->tmp);
        w->path = w->tmp = NULL;
        return -1;
    }
    w->file = f;
    return 0;
}

static void w_dataset(dk_h5w *w, const char *name, hid_t type, int rank, const int64_t *dims, const void *data) {
    if (w->file < 0 || dk_err_is_set(&w->err)) return;
    hsize_t hd[4];
    for (int i = 0; i < rank; i++) hd[i] = (hsize_t)dims[i];
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, hd, NULL);
    errno = 0;
    hid_t ds = H5Dcreate2((hid_t)w->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        w_failed(w, "create", name);
    } else {
        errno = 0;
        if (H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) w_failed(w, "write", name);
        H5Dclose(ds);
    }
    H5Sclose(space);
}

void dk_h5w_f32(dk_h5w *w, const char *name, int rank, const int64_t *dims, const float *data) {
    w_dataset(w, name, H5T_NATIVE_FLOAT, rank, dims, data);
}
void dk_h5w_f64(dk_h5w *w, const char *name, int rank, const int64_t *dims, const double *data) {
    w_dataset(w, name, H5T_NATIVE_DOUBLE, rank, dims, data);
}
void dk_h5w_i64(dk_h5w *w, const char *name, int rank, const int64_t *dims, const int64_t *data) {
    w_dataset(w, name, H5T_NATIVE_INT64, rank, dims, data);
}

static void w_attr(dk_h5w *w, const char *name, hid_t type, const void *v) {
    if (w->file < 0 || dk_err_is_set(&w->err)) return;
    hid_t space = H5Screate(H5S_SCALAR);
    errno = 0;
    hid_t a = H5Acreate2((hid_t)w->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, v) < 0) w_failed(w, "write the attribute", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
}

void dk_h5w_attr_i64(dk_h5w *w, const char *name, int64_t v) { w_attr(w, name, H5T_NATIVE_INT64, &v); }
void dk_h5w_attr_f64(dk_h5w *w, const char *name, double v) { w_attr(w, name, H5T_NATIVE_DOUBLE, &v); }
void dk_h5w_attr_str(dk_h5w *w, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    w_attr(w, name, t, &v);
    H5Tclose(t);
}

void dk_h5w_abort(dk_h5w *w) {
    if (w->file >= 0) H5Fclose((hid_t)w->file);
    w->file = -1;
    if (w->tmp) unlink(w->tmp);
    free(w->path), free(w->tmp);
    w->path = w->tmp = NULL;
}

int dk_h5w_commit(dk_h5w *w, dk_err *err) {
    if (!dk_err_is_set(&w->err)) {
        errno = 0;
        if (H5Fclose((hid_t)w->file) < 0) w_failed(w, "close", w->path);
        w->file = -1;
    }
    if (!dk_err_is_set(&w->err)) {
        int fd = open(w->tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) dk_err_write(&w->err, w->tmp, errno);
        if (fd >= 0) close(fd);
    }
    if (!dk_err_is_set(&w->err) && rename(w->tmp, w->path) != 0) dk_err_write(&w->err, w->path, errno);
    if (dk_err_is_set(&w->err)) {
        *err = w->err;
        dk_h5w_abort(w);
        return -1;
    }
    free(w->path), free(w->tmp);
    w->path = w->tmp = NULL;
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------------------------ */

int dk_h5r_open(dk_h5r *r, const char *path, dk_err *err) {
    r->path = dk_strdup(path);
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    r->file = f;
    if (f < 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot open %s (missing, truncated or not HDF5)", path);
        free(r->path);
        r->path = NULL;
        return -1;
    }
    return 0;
}

void dk_h5r_close(dk_h5r *r) {
    if (r->file >= 0) H5Fclose((hid_t)r->file);
    r->file = -1;
    free(r->path);
    r->path = NULL;
}

static int r_dataset(const dk_h5r *r, const char *name, hid_t type, int64_t n, void *out, dk_err *err) {
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2((hid_t)r->file, name, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) return dk_err_set(err, DK_EXIT_RUNTIME, "%s has no dataset %s: not a file of this version of diffkit",
                                  r->path, name);
    hid_t space = H5Dget_space(ds);
    hssize_t have = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    int rc = 0;
    if (have != n)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: %s holds %lld values, expected %lld (another dictionary shape)",
                        r->path, name, (long long)have, (long long)n);
    else if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: reading %s failed", r->path, name);
    H5Dclose(ds);
    return rc;
}

int dk_h5r_f32(const dk_h5r *r, const char *name, int64_t n, float *out, dk_err *err) {
    return r_dataset(r, name, H5T_NATIVE_FLOAT, n, out, err);
}
int dk_h5r_f64(const dk_h5r *r, const char *name, int64_t n, double *out, dk_err *err) {
    return r_dataset(r, name, H5T_NATIVE_DOUBLE, n, out, err);
}
int dk_h5r_i64(const dk_h5r *r, const char *name, int64_t n, int64_t *out, dk_err *err) {
    return r_dataset(r, name, H5T_NATIVE_INT64, n, out, err);
}

static int r_attr(const dk_h5r *r, const char *name, hid_t type, void *out, dk_err *err) {
    if (H5Aexists((hid_t)r->file, name) <= 0)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s has no attribute %s", r->path, name);
    hid_t a = H5Aopen((hid_t)r->file, name, H5P_DEFAULT);
    int rc = H5Aread(a, type, out) < 0 ? dk_err_set(err, DK_EXIT_RUNTIME, "%s: reading %s failed", r->path, name) : 0;
    H5Aclose(a);
    return rc;
}

int dk_h5r_attr_i64(const dk_h5r *r, const char *name, int64_t *out, dk_err *err) {
    return r_attr(r, name, H5T_NATIVE_INT64, out, err);
}
int dk_h5r_attr_f64(const dk_h5r *r, const char *name, double *out, dk_err *err) {
    return r_attr(r, name, H5T_NATIVE_DOUBLE, out, err);
}

char *dk_h5r_attr_str(const dk_h5r *r, const char *name, dk_err *err) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *v = NULL;
    int rc = r_attr(r, name, t, &v, err);
    H5Tclose(t);
    if (rc != 0) return NULL;
    char *copy = dk_strdup(v ? v : "");
    H5free_memory(v);
    return copy;
}
