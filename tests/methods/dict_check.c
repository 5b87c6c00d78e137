/* dict_check.c — the checks of the dictionary methods' job tests (tests/methods/dict_*.sh), reading results files
 * with HDF5 (the tests need no Python):
 *
 *   dict_check same A.h5 B.h5 RTOL ATOL PATH...     every numeric dataset under each PATH (recursively) holds the
 *                                                   same shape in A and B and values within ATOL + RTOL·|b|
 *   dict_check pca RESULTS.h5 FIXTURE GROUP         diff_pca's group against tools/make_dict_goldens.py pca-job
 *   dict_check value RESULTS.h5 PATH                prints a dataset's first value or an attribute (PATH@NAME)
 *   dict_check poke STORE.h5 LAYER ROW COL BITS     overwrites one bf16 activation of a store with raw bits
 *                                                   (0x7fc0 = NaN): a store poisoned after it was written
 * Exit 0 when the check holds, 1 with the first differences printed otherwise. */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static int failures = 0;

/* A whole dataset as doubles (caller frees), or NULL. */
static double *read_all(hid_t f, const char *path, int64_t *n) {
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    *n = (int64_t)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof(double));
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        free(v);
        v = NULL;
    }
    H5Dclose(ds);
    return v;
}

static double read_attr(hid_t f, const char *obj, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        H5Aclose(a);
    }
    return v;
}

static void compare_arrays(const char *what, const double *a, const double *b, int64_t n, double rtol, double atol) {
    int shown = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) <= atol + rtol * fabs(b[i])) continue;
        if (shown++ < 3) fprintf(stderr, "  %s[%lld]: %.9g vs %.9g\n", what, (long long)i, a[i], b[i]);
        failures++;
    }
}

typedef struct same_ctx {
    hid_t a, b;
    double rtol, atol;
    const char *root;
    int compared;
} same_ctx;

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj;
    same_ctx *c = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", c->root, name);
    hid_t ds = H5Dopen2(c->a, path, H5P_DEFAULT);
    hid_t t = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    H5Dclose(ds);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) return 0; /* text is compared through the tokens */
    int64_t na = 0, nb = 0;
    double *va = read_all(c->a, path, &na), *vb = read_all(c->b, path, &nb);
    if (!vb || na != nb) {
        fprintf(stderr, "  %s: missing or another size in B (%lld vs %lld)\n", path, (long long)na, (long long)nb);
        failures++;
    } else {
        compare_arrays(path, va, vb, na, c->rtol, c->atol);
        c->compared++;
    }
    free(va), free(vb);
    return 0;
}

static int cmd_same(int argc, char **argv) {
    same_ctx c = {0};
    c.a = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    c.b = H5Fopen(argv[3], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c.a < 0 || c.b < 0) return fprintf(stderr, "cannot open %s or %s\n", argv[2], argv[3]), 1;
    c.rtol = atof(argv[4]);
    c.atol = atof(argv[5]);
    for (int i = 6; i < argc; i++) {
        c.root = argv[i];
        hid_t g = H5Oopen(c.a, argv[i], H5P_DEFAULT);
        if (g < 0) return fprintf(stderr, "%s has no %s\n", argv[2], argv[i]), 1;
        H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_NATIVE, visit, &c, H5O_INFO_BASIC);
        H5Oclose(g);
    }
    printf("compared %d datasets: %d values outside the tolerance\n", c.compared, failures);
    H5Fclose(c.a), H5Fclose(c.b);
    return failures || c.compared == 0 ? 1 : 0;
}

static double *fixture(dk_st_checkpoint *ck, const char *name, int64_t *n) {
    dk_err err = {0};
    const dk_st_tensor *t = dk_st_get(ck, name, &err);
    if (!t) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(2);
    }
    float *f = malloc((size_t)t->numel * sizeof(float));
    dk_st_to_f32(t, f, (size_t)t->numel, &err);
    double *v = malloc((size_t)t->numel * sizeof(double));
    for (int64_t i = 0; i < t->numel; i++) v[i] = f[i];
    free(f);
    *n = t->numel;
    return v;
}

static int cmd_pca(char **argv) {
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(argv[3], &err);
    if (f < 0 || !ck) return fprintf(stderr, "cannot open %s or %s %s\n", argv[2], argv[3], err.msg), 1;
    const char *g = argv[4];
    char path[512];
    int64_t n, m;
#define OURS(name) (snprintf(path, sizeof path, "%s/%s", g, name), read_all(f, path, &n))
    const char *vec[] = {"mean", "var", "explained_variance", "explained_variance_ratio", "singular_values"};
    for (int i = 0; i < 5; i++) {
        double *a = OURS(vec[i]), *b = fixture(ck, vec[i], &m);
        if (!a || n != m) fprintf(stderr, "  %s: missing or size %lld vs %lld\n", vec[i], (long long)n, (long long)m), failures++;
        else compare_arrays(vec[i], a, b, n, 1e-4, 1e-7);
        free(a), free(b);
    }
    double seen = read_attr(f, g, "n_samples_seen");
    double *ref_seen = fixture(ck, "n_samples_seen", &m);
    if (seen != ref_seen[0]) fprintf(stderr, "  n_samples_seen %.0f vs %.0f\n", seen, ref_seen[0]), failures++;
    free(ref_seen);
    /* components: those whose explained variance is separated from its neighbours by > 1e-3 relative */
    double *ev = fixture(ck, "explained_variance", &m), *a = OURS("components"), *b = fixture(ck, "components", &n);
    const int64_t nc = m, d = n / m;
    int checked = 0;
    for (int64_t i = 0; i < nc && a; i++) {
        double gap = INFINITY;
        if (i > 0) gap = fmin(gap, fabs(ev[i - 1] - ev[i]) / ev[i]);
        if (i + 1 < nc) gap = fmin(gap, fabs(ev[i + 1] - ev[i]) / ev[i]);
        if (gap < 1e-3 || ev[i] < 1e-6 * ev[0]) continue;
        double dot = 0;
        for (int64_t j = 0; j < d; j++) dot += a[i * d + j] * b[i * d + j];
        if (dot < 1 - 1e-5) fprintf(stderr, "  component %lld: cosine %.9f with the reference\n", (long long)i, dot), failures++;
        checked++;
    }
    printf("components checked: %d of %lld\n", checked, (long long)nc);
    if (checked < nc / 2) fprintf(stderr, "  too few separated components to check\n"), failures++;
    free(ev), free(a), free(b);
    /* max-activating sequences of components 0..2 */
    const char *names[] = {"chat", "pretrain", "org"}, *signs[] = {"positive", "negative"};
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 2; s++)
            for (int c = 0; c < 3; c++) {
                char key[128];
                snprintf(key, sizeof key, "%s.%s.%d.sequence", signs[s], names[k], c);
                double *rs = fixture(ck, key, &m);
                snprintf(key, sizeof key, "%s.%s.%d.score", signs[s], names[k], c);
                double *rv = fixture(ck, key, &m);
                snprintf(path, sizeof path, "%s/max_act/%s/%s/component_%d/sequence_index", g, signs[s], names[k], c);
                double *os = read_all(f, path, &n);
                snprintf(path, sizeof path, "%s/max_act/%s/%s/component_%d/score", g, signs[s], names[k], c);
                double *ov = read_all(f, path, &n);
                if (!os || !ov || n != m) {
                    fprintf(stderr, "  %s: missing or %lld examples, want %lld\n", path, (long long)n, (long long)m);
                    failures++;
                } else {
                    compare_arrays(path, ov, rv, n, 1e-4, 1e-5);
                    compare_arrays("sequence", os, rs, n, 0, 0);
                }
                free(rs), free(rv), free(os), free(ov);
            }
#undef OURS
    dk_st_close(ck);
    H5Fclose(f);
    printf("pca: %d differences\n", failures);
    return failures ? 1 : 0;
}

static int cmd_value(char **argv) {
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 1;
    char *at = strchr(argv[3], '@');
    double v = NAN;
    if (at) {
        *at = 0;
        v = read_attr(f, argv[3], at + 1);
    } else {
        int64_t n;
        double *a = read_all(f, argv[3], &n);
        if (a && n > 0) v = a[0];
        free(a);
    }
    H5Fclose(f);
    printf("%.17g\n", v);
    return isnan(v) ? 1 : 0;
}

static int cmd_poke(char **argv) {
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return fprintf(stderr, "cannot open %s\n", argv[2]), 1;
    char name[64];
    snprintf(name, sizeof name, "layer_%s", argv[3]);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return fprintf(stderr, "%s has no %s\n", argv[2], name), 1;
    hid_t t = H5Dget_type(ds), fs = H5Dget_space(ds);
    hsize_t start[2] = {(hsize_t)atoll(argv[4]), (hsize_t)atoll(argv[5])}, count[2] = {1, 1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(2, count, NULL);
    uint16_t bits = (uint16_t)strtoul(argv[6], NULL, 0);
    herr_t r = H5Dwrite(ds, t, ms, fs, H5P_DEFAULT, &bits);
    H5Sclose(ms), H5Sclose(fs), H5Tclose(t), H5Dclose(ds), H5Fclose(f);
    return r < 0;
}

int main(int argc, char **argv) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc >= 7 && strcmp(argv[1], "same") == 0) return cmd_same(argc, argv);
    if (argc == 5 && strcmp(argv[1], "pca") == 0) return cmd_pca(argv);
    if (argc == 4 && strcmp(argv[1], "value") == 0) return cmd_value(argv);
    if (argc == 7 && strcmp(argv[1], "poke") == 0) return cmd_poke(argv);
    fprintf(stderr, "usage: dict_check same A B RTOL ATOL PATH... | pca RESULTS FIXTURE GROUP | value RESULTS PATH[@ATTR] | poke STORE LAYER ROW COL BITS\n");
    return 2;
}
