/* results_tool.c — test helper for the methods' results files (host/methods/results.h), straight through HDF5:
 *     results_tool equal A.h5 B.h5       every dataset of A exists in B with the same type, shape and bytes, and
 *                                        B has no other dataset (config_yaml, which names the run's folders,
 *                                        and the root attributes created / n_ranks may differ): exit 1 naming
 *                                        the first difference
 *     results_tool dump A.h5 PATH        a numeric dataset, one value per line (%.9g), or a string dataset, one
 *                                        string per line
 *     results_tool close A.h5 PATH REF TOL   numeric dataset PATH against the values in file REF (one per line):
 *                                        same count, |a - r| <= TOL * max(|r|, 1e-3 * max|REF|) for each value
 * The tests use it to check rank invariance, goldens and layouts without Python. */
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct walk {
    hid_t other;
    const char *a, *b;
    int bad;
    long count;
} walk;

static int fail(const char *msg, const char *path) {
    fprintf(stderr, "results_tool: %s: %s\n", msg, path);
    return 1;
}

static unsigned char *read_raw(hid_t ds, size_t *bytes) {
    hid_t t = H5Dget_type(ds), s = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    unsigned char *buf = NULL;
    *bytes = 0;
    if (H5Tis_variable_str(t) > 0) {
        char **strs = calloc((size_t)(n > 0 ? n : 1), sizeof *strs);
        H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs);
        size_t total = 0;
        for (hssize_t i = 0; i < n; i++) total += (strs[i] ? strlen(strs[i]) : 0) + 1;
        buf = malloc(total + 1);
        for (hssize_t i = 0; i < n; i++) {
            size_t l = strs[i] ? strlen(strs[i]) : 0;
            memcpy(buf + *bytes, strs[i] ? strs[i] : "", l + 1);
            *bytes += l + 1;
        }
        H5Dvlen_reclaim(t, s, H5P_DEFAULT, strs);
        free(strs);
    } else {
        size_t sz = H5Tget_size(t) * (size_t)(n > 0 ? n : 0);
        buf = malloc(sz + 1);
        H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        *bytes = sz;
    }
    H5Tclose(t);
    H5Sclose(s);
    return buf;
}

/* datasets that record where a run wrote (its resolved configuration names its folders), not what it computed */
static bool skipped(const char *name) { return strcmp(name, "config_yaml") == 0; }

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    walk *w = data;
    if (info->type != H5O_TYPE_DATASET || w->bad) return 0;
    w->count++;
    if (skipped(name)) return 0;
    hid_t da = H5Dopen2(obj, name, H5P_DEFAULT), db = -1;
    H5E_BEGIN_TRY { db = H5Dopen2(w->other, name, H5P_DEFAULT); } H5E_END_TRY;
    if (db < 0) {
        w->bad = fail("missing in the second file", name);
        H5Dclose(da);
        return 0;
    }
    size_t na = 0, nb = 0;
    unsigned char *ra = read_raw(da, &na), *rb = read_raw(db, &nb);
    hid_t sa = H5Dget_space(da), sb = H5Dget_space(db);
    hsize_t dims_a[8] = {0}, dims_b[8] = {0};
    int rank_a = H5Sget_simple_extent_dims(sa, dims_a, NULL), rank_b = H5Sget_simple_extent_dims(sb, dims_b, NULL);
    if (rank_a != rank_b || memcmp(dims_a, dims_b, sizeof dims_a) != 0)
        w->bad = fail("shapes differ", name);
    else if (na != nb || memcmp(ra, rb, na) != 0)
        w->bad = fail("values differ", name);
    free(ra), free(rb);
    H5Sclose(sa), H5Sclose(sb);
    H5Dclose(da), H5Dclose(db);
    return 0;
}

static herr_t count_one(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj, (void)name;
    if (info->type == H5O_TYPE_DATASET) ++*(long *)data;
    return 0;
}

static long count_datasets(hid_t f) {
    long n = 0;
    H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, count_one, &n);
    return n;
}

static int equal(const char *a, const char *b) {
    hid_t fa = H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fa < 0 || fb < 0) return fail("cannot open", fa < 0 ? a : b);
    walk w = {.other = fb, .a = a, .b = b};
    H5Ovisit(fa, H5_INDEX_NAME, H5_ITER_INC, visit, &w);
    if (!w.bad && count_datasets(fb) != w.count) w.bad = fail("the second file has more datasets", b);
    if (!w.bad) printf("equal: %ld datasets\n", w.count);
    H5Fclose(fa), H5Fclose(fb);
    return w.bad;
}

static double *read_numbers(hid_t f, const char *path, hssize_t *n) {
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) return NULL;
    hid_t s = H5Dget_space(ds);
    *n = H5Sget_simple_extent_npoints(s);
    double *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Sclose(s);
    H5Dclose(ds);
    return v;
}

static int dump(const char *file, const char *path) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return fail("cannot open", file);
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) return fail("no such dataset", path);
    hid_t t = H5Dget_type(ds);
    if (H5Tget_class(t) == H5T_STRING) {
        size_t bytes = 0;
        unsigned char *raw = read_raw(ds, &bytes);
        for (size_t i = 0; i < bytes; i++) putchar(raw[i] ? raw[i] : '\n');
        free(raw);
    } else {
        hssize_t n = 0;
        double *v = read_numbers(f, path, &n);
        for (hssize_t i = 0; i < n; i++) printf("%.9g\n", v[i]);
        free(v);
    }
    H5Tclose(t);
    H5Dclose(ds);
    H5Fclose(f);
    return 0;
}

static int close_to(const char *file, const char *path, const char *ref_path, double tol) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return fail("cannot open", file);
    hssize_t n = 0;
    double *v = read_numbers(f, path, &n);
    H5Fclose(f);
    if (!v) return fail("no such dataset", path);
    FILE *rf = fopen(ref_path, "r");
    if (!rf) return fail("cannot open", ref_path);
    double *ref = malloc((size_t)(n > 0 ? n : 1) * sizeof *ref), x, ref_max = 0;
    hssize_t m = 0;
    while (fscanf(rf, "%lf", &x) == 1) {
        if (m < n) ref[m] = x;
        m++;
    }
    fclose(rf);
    if (m != n) {
        fprintf(stderr, "results_tool: %s holds %lld values, the reference %lld\n", path, (long long)n, (long long)m);
        return 1;
    }
    for (hssize_t i = 0; i < n; i++) ref_max = fabs(ref[i]) > ref_max ? fabs(ref[i]) : ref_max;
    double worst = 0;
    for (hssize_t i = 0; i < n; i++) {
        const double scale = fmax(fabs(ref[i]), 1e-3 * ref_max), e = fabs(v[i] - ref[i]) / (scale > 0 ? scale : 1);
        if (e > worst) worst = e;
        if (!(e <= tol)) {
            fprintf(stderr, "results_tool: %s[%lld] = %.9g, reference %.9g (relative error %.3g > %g)\n", path,
                    (long long)i, v[i], ref[i], e, tol);
            return 1;
        }
    }
    printf("close: %s, %lld values, worst relative error %.3g (tolerance %g)\n", path, (long long)n, worst, tol);
    free(v), free(ref);
    return 0;
}

int main(int argc, char **argv) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc == 4 && strcmp(argv[1], "equal") == 0) return equal(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "dump") == 0) return dump(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "close") == 0) return close_to(argv[2], argv[3], argv[4], atof(argv[5]));
    fprintf(stderr, "usage: results_tool equal A.h5 B.h5 | dump A.h5 PATH | close A.h5 PATH REF.txt TOL\n");
    return 2;
}
