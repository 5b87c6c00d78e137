/* dict_check.c — the checks of the dictionary methods' job tests (tests/methods/dict_*.sh), reading results files
 * with HDF5 (the tests need no Python):
 *
 *   dict_check same A.h5 B.h5 RTOL ATOL PATH...     every numeric dataset under each PATH (recursively) holds the
 *                                                   same shape in A and B and values within ATOL + RTOL·|b|
 *   dict_check pca RESULTS.h5 FIXTURE GROUP         diff_pca's group against tools/make_dict_goldens.py pca-job
 *   dict_check value RESULTS.h5 PATH                prints a dataset's first value or an attribute (PATH@NAME)
 *   dict_check poke STORE.h5 LAYER ROW COL BITS     overwrites one bf16 activation of a store with raw bits
 *                                                   (0x7fc0 = NaN): a store poisoned after it was written
 *   dict_check ce GOLDEN.json JOB METHOD_DIR RTOL   the CE loss recovered of a diff_sae or diff_crosscoder run
 *                                                   (METHOD_DIR: its results folder) against the golden[JOB] of
 *                                                   tools/make_dict_ce_goldens.py:
 *                                                   per layer, training_metrics.json's last_eval_logs and
 *                                                   summary.json's validation: ce_tokens exactly; ce_clean and
 *                                                   ce_base_activation within RTOL; ce_spliced within RTOL and
 *                                                   ce_loss_recovered within 50·RTOL absolute, once the
 *                                                   dictionary in results.h5 is the one the golden was made from
 *                                                   (the digest: Σ v and Σ |v| of each dataset within 1e-6)
 * Exit 0 when the check holds, 1 with the first differences printed otherwise. */
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/file.h"
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

static cJSON *load_json(const char *path) {
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    cJSON *j = text ? cJSON_ParseWithLength(text, size) : NULL;
    if (!j) fprintf(stderr, "%s%s\n", text ? path : err.msg, text ? " is not JSON" : "");
    free(text);
    return j;
}

static double json_number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double json_number_at(const cJSON *array, int i) {
    const cJSON *v = cJSON_GetArrayItem(array, i);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* One set of CE numbers (where: which file) against the golden layer g. */
static void compare_ce(const char *where, const cJSON *got, const cJSON *g, double rtol, bool spliced) {
    if (!got) {
        fprintf(stderr, "  %s: no CE numbers\n", where);
        failures++;
        return;
    }
    if (json_number(got, "ce_tokens") != json_number(g, "ce_tokens")) {
        fprintf(stderr, "  %s: ce_tokens %.0f, golden %.0f\n", where, json_number(got, "ce_tokens"),
                json_number(g, "ce_tokens"));
        failures++;
    }
    const char *keys[3] = {"ce_clean", "ce_base_activation", "ce_spliced"};
    for (int i = 0; i < (spliced ? 3 : 2); i++) {
        const double a = json_number(got, keys[i]), b = json_number(g, keys[i]);
        const bool ok = fabs(a - b) <= rtol * fabs(b);
        printf("  %s %s: %.9g, golden %.9g (relative difference %.2g)%s\n", where, keys[i], a, b, fabs(a - b) / fabs(b),
               ok ? "" : " FAIL");
        failures += !ok;
    }
    if (!spliced) return;
    const double c = json_number(g, "ce_clean"), s = json_number(g, "ce_spliced"), z = json_number(g, "ce_base_activation");
    const double want = (z - s) / (z - c), have = json_number(got, "ce_loss_recovered");
    const bool ok = fabs(have - want) <= 50 * rtol;
    printf("  %s ce_loss_recovered: %.6f, golden %.6f%s\n", where, have, want, ok ? "" : " FAIL");
    failures += !ok;
}

static int cmd_ce(char **argv) {
    cJSON *golden = load_json(argv[2]);
    const char *dir = argv[4];
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    cJSON *summary = load_json(path);
    snprintf(path, sizeof path, "%s/results.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    const double rtol = atof(argv[5]);
    const cJSON *layer, *layers = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(golden, argv[3]), "layers");
    if (!golden || !summary || f < 0 || !cJSON_IsObject(layers)) {
        fprintf(stderr, "cannot read %s (with %s's layers), the summary or %s\n", argv[2], argv[3], path);
        failures++;
        layers = NULL;
    }
    cJSON_ArrayForEach(layer, layers) {
        const char *run = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(layer, "run_name"));
        printf("layer %s (%s):\n", layer->string, run ? run : "?");
        if (!run) {
            fprintf(stderr, "%s: layer %s has no run_name\n", argv[2], layer->string);
            failures++;
            break;
        }
        /* the dictionary the spliced golden was computed from? */
        bool same_dict = true;
        const cJSON *dg;
        cJSON_ArrayForEach(dg, cJSON_GetObjectItemCaseSensitive(layer, "dictionary_digest")) {
            char ds[1024];
            snprintf(ds, sizeof ds, "layer_%s/%s/%s", layer->string, run, dg->string);
            int64_t n = 0;
            double *v = read_all(f, ds, &n), sum = 0, abs_sum = 0;
            for (int64_t i = 0; v && i < n; i++) sum += v[i], abs_sum += fabs(v[i]);
            const double want_sum = json_number_at(dg, 0), want_abs = json_number_at(dg, 1); /* [Σ v, Σ |v|] */
            if (!v || !(fabs(sum - want_sum) <= 1e-6 * want_abs && fabs(abs_sum - want_abs) <= 1e-6 * want_abs)) {
                fprintf(stderr, "  %s: %s (sum %.9g, sum of |v| %.9g; golden %.9g, %.9g)\n", ds,
                        v ? "differs from the golden's dictionary" : "missing", sum, abs_sum, want_sum, want_abs);
                same_dict = false;
            }
            free(v);
        }
        if (!same_dict) {
            fprintf(stderr, "  layer %s: the trained dictionary is not the one ce_spliced's golden was computed from: "
                    "if training or the settings changed on purpose, rerun tools/make_dict_ce_goldens.py\n", layer->string);
            failures++;
        }
        snprintf(path, sizeof path, "%s/layer_%s/%s/training_metrics.json", dir, layer->string, run);
        cJSON *tm = load_json(path);
        compare_ce("training_metrics.json", tm ? cJSON_GetObjectItemCaseSensitive(tm, "last_eval_logs") : NULL, layer,
                   rtol, same_dict);
        cJSON_Delete(tm);
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(summary, "layers"), layer->string);
        compare_ce("summary.json", cJSON_GetObjectItemCaseSensitive(sl, "validation"), layer, rtol, same_dict);
    }
    if (f >= 0) H5Fclose(f);
    cJSON_Delete(golden);
    cJSON_Delete(summary);
    if (failures) fprintf(stderr, "%d CE check(s) failed\n", failures);
    return failures > 0;
}

int main(int argc, char **argv) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc >= 7 && strcmp(argv[1], "same") == 0) return cmd_same(argc, argv);
    if (argc == 5 && strcmp(argv[1], "pca") == 0) return cmd_pca(argv);
    if (argc == 4 && strcmp(argv[1], "value") == 0) return cmd_value(argv);
    if (argc == 7 && strcmp(argv[1], "poke") == 0) return cmd_poke(argv);
    if (argc == 6 && strcmp(argv[1], "ce") == 0) return cmd_ce(argv);
    fprintf(stderr, "usage: dict_check same A B RTOL ATOL PATH... | pca RESULTS FIXTURE GROUP | value RESULTS PATH[@ATTR] | "
            "poke STORE LAYER ROW COL BITS | ce GOLDEN JOB METHOD_DIR RTOL\n");
    return 2;
}
