/* results.c — see results.h. Only rank 0 touches files; the others take part in the agreements. */
#include "methods/results.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/check_hdf5.h"
#include "core/log.h"
#include "core/strutil.h"
#include "io/act_store.h"
#include "io/file.h"
#include "io/h5_cause.h"

struct dk_results_json_file {
    char *relpath;
    cJSON *json;
    dk_results_json_file *next;
};

/* ---- failures ---------------------------------------------------------------------------------------------
 * A failed HDF5 call on the writer records the first error (with its cause when HDF5 names one) and turns the
 * remaining writes into no-ops; commit reports it on every rank. */

static bool active(const dk_results *r) { return r->writer && r->file >= 0 && !dk_err_is_set(&r->err); }

static void failed(dk_results *r, const char *what, const char *path) {
    if (dk_err_is_set(&r->err)) return;
    int e = dk_h5_error_errno(errno);
    if (e) {
        dk_err_write(&r->err, r->partial, e);
        dk_err_prefix(&r->err, "writing %s: ", path);
    } else {
        dk_err_set(&r->err, DK_EXIT_RUNTIME, "cannot %s %s in %s (HDF5 gave no reason; is the disk full or the file "
                   "system unavailable?)", what, path, r->partial);
    }
}

static hid_t string_type(void) {
    hid_t t;
    H5_CHECK(t = H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

/* The object at path ("" = the file), created as a group (with its parents) when missing. -1 on failure. */
static hid_t open_object(dk_results *r, const char *path) {
    while (*path == '/') path++;
    if (!*path) return H5Oopen((hid_t)r->file, "/", H5P_DEFAULT);
    hid_t obj = -1;
    H5E_BEGIN_TRY { obj = H5Oopen((hid_t)r->file, path, H5P_DEFAULT); } H5E_END_TRY;
    if (obj >= 0) return obj;
    hid_t lcpl;
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE));
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
    obj = H5Gcreate2((hid_t)r->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (obj < 0) failed(r, "create the group", path);
    return obj;
}

static void write_dataset(dk_results *r, const char *path, hid_t type, int rank, const int64_t *dims,
                          const void *data) {
    if (!active(r)) return;
    while (*path == '/') path++;
    hsize_t hd[8];
    CHECK(rank >= 0 && rank <= 8, "results dataset %s: rank %d", path, rank);
    for (int i = 0; i < rank; i++) hd[i] = (hsize_t)dims[i];
    hid_t space, lcpl, ds;
    H5_CHECK(space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, hd, NULL));
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE));
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
    errno = 0;
    ds = H5Dcreate2((hid_t)r->file, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        failed(r, "create the dataset", path);
    } else {
        static const char nothing[16];
        errno = 0;
        if (H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data ? data : nothing) < 0) failed(r, "write", path);
        H5Dclose(ds);
    }
    H5Pclose(lcpl);
    H5Sclose(space);
}

void dk_results_f32(dk_results *r, const char *path, int rank, const int64_t *dims, const float *data) {
    write_dataset(r, path, H5T_NATIVE_FLOAT, rank, dims, data);
}
void dk_results_f64(dk_results *r, const char *path, int rank, const int64_t *dims, const double *data) {
    write_dataset(r, path, H5T_NATIVE_DOUBLE, rank, dims, data);
}
void dk_results_i32(dk_results *r, const char *path, int rank, const int64_t *dims, const int32_t *data) {
    write_dataset(r, path, H5T_NATIVE_INT32, rank, dims, data);
}
void dk_results_i64(dk_results *r, const char *path, int rank, const int64_t *dims, const int64_t *data) {
    write_dataset(r, path, H5T_NATIVE_INT64, rank, dims, data);
}

void dk_results_strings(dk_results *r, const char *path, int64_t n, const char *const *strings) {
    dk_results_strings_nd(r, path, 1, &n, strings);
}

void dk_results_strings_nd(dk_results *r, const char *path, int rank, const int64_t *dims, const char *const *strings) {
    if (!active(r)) return;
    hid_t t = string_type();
    write_dataset(r, path, t, rank, dims, strings);
    H5Tclose(t);
}

static void write_attr(dk_results *r, const char *path, const char *name, hid_t type, const void *value) {
    if (!active(r)) return;
    hid_t obj = open_object(r, path);
    if (obj < 0) return;
    hid_t space, attr;
    H5_CHECK(space = H5Screate(H5S_SCALAR));
    H5E_BEGIN_TRY { H5Adelete(obj, name); } H5E_END_TRY;
    errno = 0;
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, value) < 0) failed(r, "write the attribute", name);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Oclose(obj);
}

void dk_results_attr_str(dk_results *r, const char *path, const char *name, const char *value) {
    if (!active(r)) return;
    hid_t t = string_type();
    write_attr(r, path, name, t, &value);
    H5Tclose(t);
}
void dk_results_attr_f64(dk_results *r, const char *path, const char *name, double value) {
    write_attr(r, path, name, H5T_NATIVE_DOUBLE, &value);
}
void dk_results_attr_i64(dk_results *r, const char *path, const char *name, int64_t value) {
    write_attr(r, path, name, H5T_NATIVE_INT64, &value);
}

void dk_results_json(dk_results *r, const char *relpath, cJSON *json) {
    if (!r->writer) {
        cJSON_Delete(json);
        return;
    }
    dk_results_json_file *f = dk_calloc(1, sizeof *f), **tail = &r->json;
    while (*tail) tail = &(*tail)->next;
    f->relpath = dk_strdup(relpath);
    f->json = json;
    *tail = f;
}

void dk_results_summary(dk_results *r, cJSON *json) {
    cJSON_Delete(r->summary);
    r->summary = r->writer ? json : (cJSON_Delete(json), NULL);
}

/* ---- begin: lock, probe, create ---------------------------------------------------------------------------- */

/* A string dataset (scalar) or attribute of an existing results file, malloc'ed; NULL when absent. */
static char *read_string(hid_t file, const char *name, bool is_attr) {
    hid_t t = string_type(), obj = -1;
    char *value = NULL, *copy = NULL;
    H5E_BEGIN_TRY {
        obj = is_attr ? H5Aopen_by_name(file, "/", name, H5P_DEFAULT, H5P_DEFAULT) : H5Dopen2(file, name, H5P_DEFAULT);
        if (obj >= 0 && (is_attr ? H5Aread(obj, t, &value) : H5Dread(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value)) >= 0 &&
            value) {
            copy = dk_strdup(value);
            H5free_memory(value);
        }
        if (obj >= 0) is_attr ? H5Aclose(obj) : H5Dclose(obj);
    } H5E_END_TRY;
    H5Tclose(t);
    return copy;
}

/* The first line where two inputs texts differ, for the refusal message ("model: ... vs ..."). */
static void first_difference(const char *old_text, const char *new_text, char *out, size_t cap) {
    const char *a = old_text ? old_text : "", *b = new_text;
    while (*a || *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la) != 0) {
            snprintf(out, cap, "was \"%.*s\", now \"%.*s\"", (int)(la < 300 ? la : 300), a, (int)(lb < 300 ? lb : 300), b);
            return;
        }
        a += la + (ea != NULL);
        b += lb + (eb != NULL);
    }
    snprintf(out, cap, "the inputs texts are equal but the fingerprints differ (another diffkit version)");
}

/* Removes the JSON files an old results file lists (json_files), then the file. */
static int remove_old(const char *dir, const char *path, dk_err *err) {
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f >= 0) {
        hid_t ds = -1, t = string_type();
        H5E_BEGIN_TRY { ds = H5Dopen2(f, "json_files", H5P_DEFAULT); } H5E_END_TRY;
        if (ds >= 0) {
            hid_t space = H5Dget_space(ds);
            hssize_t n = H5Sget_simple_extent_npoints(space);
            char **names = dk_calloc((size_t)(n > 0 ? n : 1), sizeof *names);
            if (n > 0 && H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0) {
                for (hssize_t i = 0; i < n; i++) {
                    if (names[i] && !strstr(names[i], "..")) {
                        char *p = dk_path_join(dir, names[i]);
                        unlink(p);
                        free(p);
                    }
                }
                H5Dvlen_reclaim(t, space, H5P_DEFAULT, names);
            }
            free(names);
            H5Sclose(space);
            H5Dclose(ds);
        }
        H5Tclose(t);
        H5Fclose(f);
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return dk_err_set(err, DK_EXIT_RUNTIME, "cannot remove the old results %s: %s", path, strerror(errno));
    return 0;
}

/* The fingerprint and inputs text of an existing results file (NULL when unreadable or absent). */
static void read_old(const char *path, char **old_fp, char **old_inputs) {
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    *old_fp = f >= 0 ? read_string(f, "fingerprint", true) : NULL;
    *old_inputs = f >= 0 ? read_string(f, "inputs", false) : NULL;
    if (f >= 0) H5Fclose(f);
}

static void fingerprint_hex(const char *inputs, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)dk_fnv1a(DK_FNV_OFFSET, inputs, strlen(inputs)));
}

dk_results_state dk_results_look(const char *dir, const char *inputs, char *why, size_t cap) {
    char *path = dk_path_join(dir, "results.h5"), *partial = dk_sprintf("%s.partial", path);
    char want[17];
    fingerprint_hex(inputs, want);
    dk_results_state state;
    if (!dk_is_file(path)) {
        state = dk_is_file(partial) ? DK_RESULTS_UNFINISHED : DK_RESULTS_ABSENT;
        snprintf(why, cap, state == DK_RESULTS_UNFINISHED ? "%s is unfinished (an interrupted run left %s)"
                                                          : "%s does not exist", path, partial);
    } else {
        char *old_fp = NULL, *old_inputs = NULL;
        read_old(path, &old_fp, &old_inputs);
        if (old_fp && strcmp(old_fp, want) == 0) {
            state = DK_RESULTS_SAME;
            snprintf(why, cap, "%s is complete with the same inputs (fingerprint %s)", path, want);
        } else {
            state = DK_RESULTS_OTHER;
            char diff[800];
            if (old_fp)
                first_difference(old_inputs, inputs, diff, sizeof diff);
            else
                snprintf(diff, sizeof diff, "it is not a readable diffkit results file");
            snprintf(why, cap, "%s holds results of other inputs (%s)", path, diff);
        }
        free(old_fp);
        free(old_inputs);
    }
    free(path);
    free(partial);
    return state;
}

/* Writer: what is at r->path decides; *reused when complete with the same fingerprint. */
static int probe(dk_results *r, const char *inputs, bool overwrite, bool *reused, dk_err *err) {
    *reused = false;
    if (dk_is_file(r->partial)) {
        LOG_WARN("%s: an unfinished run left this (killed?); removing it and starting over", r->partial);
        if (unlink(r->partial) != 0)
            return dk_err_set(err, DK_EXIT_RUNTIME, "cannot remove %s: %s", r->partial, strerror(errno));
    }
    if (!dk_is_file(r->path)) return 0;
    char *old_fp = NULL, *old_inputs = NULL;
    read_old(r->path, &old_fp, &old_inputs);
    int rc = 0;
    const bool same = old_fp && strcmp(old_fp, r->fingerprint_hex) == 0;
    if (same && !overwrite) {
        *reused = true;
    } else if (overwrite) {
        LOG_WARN("%s holds results of %s inputs; replacing them (diffing.method.overwrite=true)", r->path,
                 same ? "the same" : "other");
        rc = remove_old(r->dir, r->path, err);
    } else {
        char why[800];
        if (old_fp)
            first_difference(old_inputs, inputs, why, sizeof why);
        else
            snprintf(why, sizeof why, "it is not a readable diffkit results file");
        rc = dk_err_set(err, DK_EXIT_USAGE, "refusing to replace %s: it holds results of other inputs (%s). Set "
                        "diffing.method.overwrite=true to replace them, or choose another diffing.results_dir",
                        r->path, why);
    }
    free(old_fp);
    free(old_inputs);
    return rc;
}

static int create_partial(dk_results *r, const char *method, const char *inputs, const char *config_yaml,
                          int nranks, dk_err *err) {
    hid_t fapl;
    H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS));
    H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18)); /* readable by any h5py */
    /* The file is built in memory and written out as it grows and at close (HDF5's core driver with a backing
     * store): with the default driver, a write that fails (disk full, file-size limit) leaves HDF5 1.10 holding a
     * half-closed file that crashes the library's shutdown at MPI_Finalize; with this one the failure is reported
     * and the shutdown is clean (tests/methods adl_bad_file_size_limit). Results files are small (MBs). */
    H5_CHECK(H5Pset_fapl_core(fapl, (size_t)4 << 20, 1));
    errno = 0;
    hid_t f = H5Fcreate(r->partial, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        int e = dk_h5_error_errno(errno);
        return e ? dk_err_write(err, r->partial, e)
                 : dk_err_set(err, DK_EXIT_RUNTIME, "cannot create %s (is the folder writable?)", r->partial);
    }
    r->file = f;
    r->partial_id = dk_file_id_of_path(r->partial);
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    dk_results_attr_str(r, "", "method", method);
    dk_results_attr_str(r, "", "fingerprint", r->fingerprint_hex);
    dk_results_attr_str(r, "", "created", created);
    dk_results_attr_i64(r, "", "n_ranks", nranks);
    hid_t t = string_type();
    write_dataset(r, "config_yaml", t, 0, NULL, &config_yaml);
    write_dataset(r, "inputs", t, 0, NULL, &inputs);
    H5Tclose(t);
    if (dk_err_is_set(&r->err)) {
        *err = r->err;
        return -1;
    }
    return 0;
}

int dk_results_begin(dk_results *r, const dk_dist *d, const char *dir, const char *method, const char *inputs,
                     const char *config_yaml, bool overwrite, bool *reused, dk_err *err) {
    memset(r, 0, sizeof *r);
    r->file = -1;
    r->writer = d->rank == 0;
    r->dir = dk_strdup(dir);
    r->path = dk_path_join(dir, "results.h5");
    r->partial = dk_sprintf("%s.partial", r->path);
    r->fingerprint = dk_fnv1a(DK_FNV_OFFSET, inputs, strlen(inputs));
    fingerprint_hex(inputs, r->fingerprint_hex);
    int flag = 0;
    if (r->writer && dk_mkdirs(dir, err) == 0 && dk_store_lock_take(&r->lock, r->path, err) == 0) {
        bool is_reused = false;
        if (probe(r, inputs, overwrite, &is_reused, err) == 0) {
            flag = is_reused;
            if (!is_reused) create_partial(r, method, inputs, config_yaml, d->nranks, err);
        }
    }
    if (dk_dist_agree(d, err) != 0) {
        dk_results_end(r);
        return -1;
    }
    MPI_Bcast(&flag, 1, MPI_INT, 0, d->comm);
    *reused = flag != 0;
    return 0;
}

/* ---- commit ------------------------------------------------------------------------------------------------ */

static int write_json_files(dk_results *r, dk_err *err) {
    int64_t n = 0;
    for (dk_results_json_file *f = r->json; f; f = f->next) n++;
    const char **names = dk_calloc((size_t)(n ? n : 1), sizeof *names);
    int64_t i = 0;
    for (dk_results_json_file *f = r->json; f; f = f->next) {
        names[i++] = f->relpath;
        char *path = dk_path_join(r->dir, f->relpath), *folder = dk_strdup(path);
        *strrchr(folder, '/') = 0;
        int rc = dk_mkdirs(folder, err);
        free(folder);
        dk_out_file o;
        const size_t len = strlen(f->relpath);
        const bool lines = len > 6 && strcmp(f->relpath + len - 6, ".jsonl") == 0 && cJSON_IsArray(f->json);
        char *text = rc == 0 && !lines ? cJSON_Print(f->json) : NULL;
        if (rc == 0 && dk_out_open(&o, path, NULL, 0, err) == 0) {
            if (lines) { /* JSON Lines: one compact record per line */
                const cJSON *item;
                cJSON_ArrayForEach(item, f->json) {
                    char *line = cJSON_PrintUnformatted(item);
                    fputs(line, o.f);
                    fputc('\n', o.f);
                    cJSON_free(line);
                }
            } else {
                fputs(text, o.f);
                fputc('\n', o.f);
            }
            rc = dk_out_commit(&o, err);
        } else {
            rc = -1;
        }
        cJSON_free(text);
        free(path);
        if (rc != 0) {
            free(names);
            return -1;
        }
    }
    if (n) dk_results_strings(r, "json_files", n, names);
    free(names);
    return 0;
}

static int close_file(dk_results *r, dk_err *err) {
    hid_t f = (hid_t)r->file;
    r->file = -1;
    errno = 0;
    if (H5Fclose(f) < 0) {
        int e = dk_h5_error_errno(errno);
        return e ? dk_err_write(err, r->partial, e) : dk_err_set(err, DK_EXIT_RUNTIME, "cannot close %s", r->partial);
    }
    int fd = open(r->partial, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return dk_err_write(err, r->partial, e);
    }
    close(fd);
    return 0;
}

int dk_results_commit(dk_results *r, const dk_dist *d, dk_err *err) {
    if (r->writer) {
        if (r->summary) {
            char *text = cJSON_PrintUnformatted(r->summary);
            hid_t t = string_type();
            write_dataset(r, "summary/json", t, 0, NULL, &text);
            H5Tclose(t);
            cJSON_free(text);
            dk_results_json(r, "summary.json", r->summary);
            r->summary = NULL;
        }
        if (dk_err_is_set(&r->err)) {
            *err = r->err;
        } else if (write_json_files(r, err) == 0 && !dk_err_is_set(&r->err)) {
            if (close_file(r, err) == 0 && dk_store_lock_check(&r->lock, err) == 0)
                dk_rename_owned(r->partial, r->partial_id, r->path, err);
        } else if (dk_err_is_set(&r->err)) {
            *err = r->err;
        }
    }
    int rc = dk_dist_agree(d, err);
    if (rc == 0 && r->writer) LOG_INFO("results complete: %s (fingerprint %s)", r->path, r->fingerprint_hex);
    dk_results_end(r);
    return rc;
}

void dk_results_end(dk_results *r) {
    if (r->writer && r->file >= 0) {
        H5Fclose((hid_t)r->file);
        r->file = -1;
        unlink(r->partial);
    }
    if (r->writer && r->partial && dk_is_file(r->partial)) {
        /* a failed commit: the partial must not survive as if it could be resumed */
        dk_file_id now = dk_file_id_of_path(r->partial);
        if (dk_file_id_same(now, r->partial_id)) unlink(r->partial);
    }
    dk_store_lock_release(&r->lock);
    for (dk_results_json_file *f = r->json, *next; f; f = next) {
        next = f->next;
        free(f->relpath);
        cJSON_Delete(f->json);
        free(f);
    }
    r->json = NULL;
    cJSON_Delete(r->summary);
    r->summary = NULL;
    free(r->dir);
    free(r->path);
    free(r->partial);
    r->dir = r->path = r->partial = NULL;
}
