/* results_read.c — the report's reads of results.h5 and the JSON beside it (results_read.h). HDF5's own error
 * printing is turned off by the job; failures here become messages naming the file and dataset. */
#include "results_read.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "io/file.h"
#include "io/json_value.h"

rp_state rp_h5_open(rp_h5 *f, const char *results_dir, const char *subdir, char *why, size_t why_cap) {
    memset(f, 0, sizeof *f);
    f->file = -1;
    char *dir = dk_path_join(results_dir, subdir);
    f->path = dk_path_join(dir, "results.h5");
    f->rel = dk_path_join(subdir, "results.h5");
    char *partial = dk_sprintf("%s.partial", f->path);
    rp_state state = RP_OK;
    why[0] = '\0';
    if (!dk_is_file(f->path)) {
        if (dk_is_file(partial)) {
            snprintf(why, why_cap, "only %s/results.h5.partial exists: the run did not finish (or is running now), "
                     "so nothing of it is shown", subdir);
            state = RP_PARTIAL;
        } else {
            snprintf(why, why_cap, "no %s/results.h5", subdir);
            state = RP_MISSING;
        }
    } else {
        hid_t id = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (id < 0) {
            snprintf(why, why_cap, "%s cannot be opened by HDF5 (truncated, damaged or not an HDF5 file): nothing of "
                     "it is shown; remove it and run the method again", f->rel);
            state = RP_CORRUPT;
        } else {
            f->file = id;
        }
    }
    free(partial);
    free(dir);
    return state;
}

void rp_h5_close(rp_h5 *f) {
    if (f->file >= 0) H5Fclose((hid_t)f->file);
    free(f->rel), free(f->path);
    memset(f, 0, sizeof *f);
    f->file = -1;
}

bool rp_h5_has(const rp_h5 *f, const char *path) {
    if (f->file < 0) return false;
    char *copy = dk_strdup(path);
    bool ok = true;
    for (char *p = copy + (copy[0] == '/'); ok; p++) {
        char *slash = strchr(p, '/');
        if (slash) *slash = '\0';
        ok = H5Lexists((hid_t)f->file, copy, H5P_DEFAULT) > 0;
        if (!slash) break;
        *slash = '/';
        p = slash;
    }
    free(copy);
    return ok;
}

static hid_t open_dataset(const rp_h5 *f, const char *path, dk_err *err) {
    if (!rp_h5_has(f, path)) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s is missing", f->rel, path);
        return -1;
    }
    hid_t d = H5Dopen2((hid_t)f->file, path, H5P_DEFAULT);
    if (d < 0) dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s is not a readable dataset", f->rel, path);
    return d;
}

int rp_h5_read(const rp_h5 *f, const char *path, rp_array *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    hid_t d = open_dataset(f, path, err);
    if (d < 0) return -1;
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    H5T_class_t cls = H5Tget_class(type);
    int rank = H5Sget_simple_extent_ndims(space);
    int rc = -1;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s is not numeric", f->rel, path);
    } else if (rank < 0 || rank > 4) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s has rank %d (at most 4 expected)", f->rel, path, rank);
    } else {
        hsize_t dims[4] = {0};
        H5Sget_simple_extent_dims(space, dims, NULL);
        out->rank = rank;
        out->n = 1;
        for (int i = 0; i < rank; i++) out->dims[i] = (int64_t)dims[i], out->n *= (int64_t)dims[i];
        out->v = dk_malloc(sizeof(double) * (size_t)(out->n ? out->n : 1));
        if (out->n == 0 || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->v) >= 0) rc = 0;
        else dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s: HDF5 could not read its values (damaged file?)", f->rel, path);
    }
    H5Sclose(space), H5Tclose(type), H5Dclose(d);
    if (rc != 0) rp_array_free(out);
    return rc;
}

void rp_array_free(rp_array *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* Reads n strings of type `type` from object obj (dataset when is_attr false) into a malloc'ed array. */
static char **read_strings(hid_t obj, bool is_attr, hid_t type, hid_t space, int64_t *n_out) {
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n < 0) return NULL;
    char **out = dk_calloc((size_t)n + 1, sizeof *out);
    if (H5Tis_variable_str(type) > 0) {
        char **raw = dk_calloc((size_t)n + 1, sizeof *raw);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        herr_t rc = is_attr ? H5Aread(obj, mem, raw) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        if (rc >= 0) {
            for (hssize_t i = 0; i < n; i++) out[i] = dk_strdup(raw[i] ? raw[i] : "");
            H5Dvlen_reclaim(mem, space, H5P_DEFAULT, raw);
        }
        H5Tclose(mem);
        free(raw);
        if (rc < 0) { free(out); return NULL; }
    } else {
        size_t size = H5Tget_size(type);
        char *raw = dk_calloc((size_t)n * size + 1, 1);
        herr_t rc = is_attr ? H5Aread(obj, type, raw) : H5Dread(obj, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        if (rc >= 0)
            for (hssize_t i = 0; i < n; i++) out[i] = dk_strndup(raw + (size_t)i * size, size);
        free(raw);
        if (rc < 0) { free(out); return NULL; }
    }
    *n_out = (int64_t)n;
    return out;
}

char **rp_h5_strings(const rp_h5 *f, const char *path, int64_t *n, dk_err *err) {
    *n = 0;
    hid_t d = open_dataset(f, path, err);
    if (d < 0) return NULL;
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    char **out = NULL;
    if (H5Tget_class(type) != H5T_STRING) dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s is not a string dataset", f->rel, path);
    else if (!(out = read_strings(d, false, type, space, n)))
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s: HDF5 could not read its strings (damaged file?)", f->rel, path);
    H5Sclose(space), H5Tclose(type), H5Dclose(d);
    return out;
}

static hid_t open_attr(const rp_h5 *f, const char *path, const char *name, dk_err *err) {
    const char *obj = path && path[0] ? path : "/";
    if (strcmp(obj, "/") != 0 && !rp_h5_has(f, obj)) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s is missing", f->rel, obj);
        return -1;
    }
    if (H5Aexists_by_name((hid_t)f->file, obj, name, H5P_DEFAULT) <= 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s has no attribute %s", f->rel, obj, name);
        return -1;
    }
    return H5Aopen_by_name((hid_t)f->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
}

int rp_h5_attr(const rp_h5 *f, const char *path, const char *name, double *out, dk_err *err) {
    hid_t a = open_attr(f, path, name, err);
    if (a < 0) return -1;
    hid_t type = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(type);
    int rc = -1;
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Aget_storage_size(a) > 0 &&
        H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0)
        rc = 0;
    else dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s@%s is not a readable number", f->rel, path, name);
    H5Tclose(type), H5Aclose(a);
    return rc;
}

char *rp_h5_attr_str(const rp_h5 *f, const char *path, const char *name, dk_err *err) {
    hid_t a = open_attr(f, path, name, err);
    if (a < 0) return NULL;
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    char *out = NULL;
    int64_t n = 0;
    char **all = H5Tget_class(type) == H5T_STRING ? read_strings(a, true, type, space, &n) : NULL;
    if (all && n >= 1) out = all[0], all[0] = NULL;
    for (int64_t i = 0; all && i < n; i++) free(all[i]);
    free(all);
    if (!out) dk_err_set(err, DK_EXIT_RUNTIME, "%s:%s@%s is not a readable string", f->rel, path, name);
    H5Sclose(space), H5Tclose(type), H5Aclose(a);
    return out;
}

typedef struct name_list { char **names; size_t n, cap; } name_list;

static herr_t add_name(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group, (void)info;
    name_list *l = data;
    if (l->n == l->cap) l->cap = l->cap ? 2 * l->cap : 16, l->names = dk_realloc(l->names, l->cap * sizeof *l->names);
    l->names[l->n++] = dk_strdup(name);
    return 0;
}

/* Natural order: digit runs compare as numbers. */
static int natural_cmp(const void *pa, const void *pb) {
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);
            if (x != y) return x < y ? -1 : 1;
            a = ea, b = eb;
        } else {
            if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++, b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

char **rp_h5_children(const rp_h5 *f, const char *group, size_t *n) {
    *n = 0;
    if (f->file < 0 || (strcmp(group, "/") != 0 && !rp_h5_has(f, group))) return NULL;
    hid_t obj = H5Oopen((hid_t)f->file, group, H5P_DEFAULT);
    if (obj < 0) return NULL;
    bool is_group = H5Iget_type(obj) == H5I_GROUP;
    H5Oclose(obj);
    if (!is_group) return NULL;
    name_list l = {0};
    hsize_t idx = 0;
    if (H5Literate_by_name((hid_t)f->file, group, H5_INDEX_NAME, H5_ITER_INC, &idx, add_name, &l, H5P_DEFAULT) < 0) {
        for (size_t i = 0; i < l.n; i++) free(l.names[i]);
        free(l.names);
        return NULL;
    }
    if (l.n) qsort(l.names, l.n, sizeof *l.names, natural_cmp);
    *n = l.n;
    if (!l.names) l.names = dk_calloc(1, sizeof *l.names);
    return l.names;
}

cJSON *rp_json_file(const char *path, dk_err *err) {
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) return NULL;
    cJSON *j = dk_json_parse_document(text, size, path, DK_EXIT_RUNTIME, "the file is damaged: run its method again", err);
    free(text);
    return j;
}

cJSON *rp_jsonl_file(const char *path, dk_err *err) {
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) return NULL;
    cJSON *arr = cJSON_CreateArray();
    size_t line = 1;
    for (char *p = text; *p; line++) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        bool blank = true;
        for (size_t i = 0; i < len; i++) blank = blank && isspace((unsigned char)p[i]);
        if (!blank) {
            char why[160];
            cJSON *rec = dk_json_parse_one(p, len, why, sizeof why);
            if (!rec) {
                dk_err_set(err, DK_EXIT_RUNTIME, "%s line %zu: %s", path, line, why);
                cJSON_Delete(arr);
                free(text);
                return NULL;
            }
            cJSON_AddItemToArray(arr, rec);
        }
        if (!end) break;
        p = end + 1;
    }
    free(text);
    return arr;
}
