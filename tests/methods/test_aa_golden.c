/* test_aa_golden.c — checks diff_activation_analysis's results against the numpy reference
 * (tools/make_activation_analysis_goldens.py -> tests/fixtures/methods/activation_analysis/golden.json).
 *
 *   test_aa_golden golden GOLDEN.json RUN RESULTS_DIR STORE_DIR
 *       RESULTS_DIR: .../activation_analysis of a run made with the RUN's overrides on the stores in STORE_DIR
 *       (made with stores.args). First checks that the stores are the ones the fixture was computed from (an
 *       FNV-1a 64 of their tokens and bf16 rows), then every statistic (1e-6 relative), histogram (counts and
 *       edges exact), max-activating table (sequences exact, scores 1e-6), running mean (count exact, digests
 *       1e-6) and the seed's {dataset}/results.json and layer_{L}.json.
 *   test_aa_golden overrides GOLDEN.json RUN
 *       prints the method overrides the reference used for RUN, one per line (tests/methods/aa_golden.sh).
 *   test_aa_golden sanity RESULTS_DIR
 *       the mean norm difference on the organism's dataset (glacier_honey) exceeds that on the pretraining
 *       dataset at every layer; prints the numbers. */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/act_store_read.h"
#include "io/file.h"
#include "test.h"

static const char *const TABLES[6] = {"norm_diff", "mean_norm_diff", "cos_dist", "mean_cos_dist", "norm_base",
                                      "norm_finetuned"};

static cJSON *read_json(const char *path) {
    dk_err err = {0};
    char *s = dk_read_file(path, NULL, &err);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    if (!j) {
        fprintf(stderr, "cannot read %s as JSON%s%s\n", path, err.msg[0] ? ": " : "", err.msg);
        exit(1);
    }
    return j;
}

/* DIR/results.h5 opened read-only; exits when it cannot be. */
static hid_t open_results(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/results.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    return f;
}

static bool close_rel(double got, double want, double rel) {
    return fabs(got - want) <= rel * fabs(want) + 1e-12;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItem(o, key);
    return it ? it->valuedouble : NAN;
}

static uint64_t fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- HDF5 readers ---------------------------------------------------------------------------------------- */

static bool attr_f64(hid_t f, const char *obj, const char *name, double *out) {
    if (H5Lexists(f, obj, H5P_DEFAULT) <= 0 || H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return false;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = H5Aread(a, H5T_NATIVE_DOUBLE, out);
    H5Aclose(a);
    return rc >= 0;
}

/* Dataset obj as type (n values at most); returns the count read, -1 when absent. */
static int64_t read_ds(hid_t f, const char *obj, hid_t type, void *out, int64_t cap) {
    if (H5Lexists(f, obj, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(f, obj, H5P_DEFAULT), sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (n > cap) {
        H5Dclose(ds);
        return -2;
    }
    H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(ds);
    return (int64_t)n;
}

static bool group_exists(hid_t f, const char *path) {
    /* H5Lexists needs every parent to exist: walk them */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return false;
            *p = c;
            if (!c) return true;
        }
    }
}

/* ---- the stores are the fixture's ---------------------------------------------------------------------------- */

static bool check_stores(const cJSON *golden, const char *store_dir) {
    const cJSON *sums = cJSON_GetObjectItem(golden, "store_checksums");
    bool ok = true;
    for (const cJSON *st = sums->child; st; st = st->next) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", store_dir, st->string);
        for (const cJSON *it = st->child; it; it = it->next) {
            int64_t layer = strcmp(it->string, "tokens") == 0 ? 1 : atoll(it->string + 6);
            dk_act_store s;
            dk_err err = {0};
            if (dk_act_store_open(&s, path, layer, false, &err) != 0) {
                fprintf(stderr, "cannot open %s layer %lld: %s\n", path, (long long)layer, err.msg);
                return false;
            }
            uint64_t h = 0xcbf29ce484222325ull;
            if (strcmp(it->string, "tokens") == 0) {
                h = fnv1a64(h, s.tokens, (size_t)s.n_tokens * sizeof *s.tokens);
            } else {
                uint16_t *rows = malloc((size_t)(s.n_tokens * s.d_model) * sizeof *rows);
                dk_act_store_rows_bf16(&s, 0, s.n_tokens, rows, &err);
                h = fnv1a64(h, rows, (size_t)(s.n_tokens * s.d_model) * sizeof *rows);
                free(rows);
            }
            dk_act_store_close(&s);
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
            if (strcmp(hex, it->valuestring) != 0) {
                fprintf(stderr, "the test store %s (%s) differs from the one the golden numbers were computed from "
                        "(%s, expected %s): diff_preprocess did not reproduce it bit for bit on this machine (another "
                        "CPU or BLAS?). Regenerate the fixture with tools/make_activation_analysis_goldens.py and "
                        "check the engine tests first.\n", path, it->string, hex, it->valuestring);
                ok = false;
            }
        }
    }
    return ok;
}

/* ---- the results ------------------------------------------------------------------------------------------ */

static void check_stats(hid_t f, const char *obj, const cJSON *want, const char *what) {
    for (const cJSON *it = want->child; it; it = it->next) {
        double got = NAN;
        EXPECT(attr_f64(f, obj, it->string, &got), "%s: no attribute %s of %s", what, it->string, obj);
        EXPECT(close_rel(got, it->valuedouble, 1e-6), "%s %s: %.9g, numpy %.9g", what, it->string, got, it->valuedouble);
    }
}

static void check_histogram(hid_t f, const char *group, const char *name, const cJSON *want) {
    char path[1024];
    snprintf(path, sizeof path, "%s/histograms/%s", group, name);
    int64_t counts[100];
    float edges[101];
    char member[1100];
    snprintf(member, sizeof member, "%s/counts", path);
    EXPECT(read_ds(f, member, H5T_NATIVE_INT64, counts, 100) == 100, "%s: no 100 counts", member);
    snprintf(member, sizeof member, "%s/edges", path);
    EXPECT(read_ds(f, member, H5T_NATIVE_FLOAT, edges, 101) == 101, "%s: no 101 edges", member);
    const cJSON *wc = cJSON_GetObjectItem(want, "counts"), *we = cJSON_GetObjectItem(want, "edges");
    int bad_c = 0, bad_e = 0;
    for (int i = 0; i < 100; i++) bad_c += counts[i] != (int64_t)cJSON_GetArrayItem(wc, i)->valuedouble;
    for (int i = 0; we && i < 101; i++) bad_e += edges[i] != (float)cJSON_GetArrayItem(we, i)->valuedouble;
    EXPECT(bad_c == 0, "%s: %d bin counts differ from numpy.histogram's", path, bad_c);
    EXPECT(bad_e == 0, "%s: %d bin edges differ from numpy.histogram's", path, bad_e);
    double v;
    EXPECT(attr_f64(f, path, "n", &v) && v == num(want, "n"), "%s: n %g, numpy %g", path, v, num(want, "n"));
    EXPECT(attr_f64(f, path, "mean", &v) && close_rel(v, num(want, "mean"), 1e-6), "%s: mean %.9g, numpy %.9g", path, v,
           num(want, "mean"));
    EXPECT(attr_f64(f, path, "median", &v) && (float)v == (float)num(want, "median"), "%s: median %.9g, expected %.9g", path, v,
           num(want, "median"));
    if (cJSON_GetObjectItem(want, "lower_bound")) {
        EXPECT(attr_f64(f, path, "lower_bound", &v) && (float)v == (float)num(want, "lower_bound"),
               "%s: lower fence %.9g, expected %.9g", path, v, num(want, "lower_bound"));
        EXPECT(attr_f64(f, path, "upper_bound", &v) && (float)v == (float)num(want, "upper_bound"),
               "%s: upper fence %.9g, expected %.9g", path, v, num(want, "upper_bound"));
    }
}

static void check_table(hid_t f, const char *path, const cJSON *want) {
    int64_t seq[64];
    double score[64];
    char member[1100];
    snprintf(member, sizeof member, "%s/sequence_index", path);
    const int64_t n = read_ds(f, member, H5T_NATIVE_INT64, seq, 64);
    snprintf(member, sizeof member, "%s/score", path);
    read_ds(f, member, H5T_NATIVE_DOUBLE, score, 64);
    const cJSON *ws = cJSON_GetObjectItem(want, "sequence_index"), *wv = cJSON_GetObjectItem(want, "score");
    if (!EXPECT(n == cJSON_GetArraySize(ws), "%s: %lld examples, expected %d", path, (long long)n, cJSON_GetArraySize(ws)))
        return;
    for (int64_t i = 0; i < n; i++) {
        EXPECT(seq[i] == (int64_t)cJSON_GetArrayItem(ws, (int)i)->valuedouble, "%s[%lld]: sequence %lld, numpy %g", path,
               (long long)i, (long long)seq[i], cJSON_GetArrayItem(ws, (int)i)->valuedouble);
        EXPECT(close_rel(score[i], cJSON_GetArrayItem(wv, (int)i)->valuedouble, 1e-6), "%s[%lld]: score %.9g, numpy %.9g",
               path, (long long)i, score[i], cJSON_GetArrayItem(wv, (int)i)->valuedouble);
    }
    /* the first example's sparse values */
    int64_t voff[65];
    snprintf(member, sizeof member, "%s/value_offsets", path);
    EXPECT(read_ds(f, member, H5T_NATIVE_INT64, voff, 65) == n + 1, "%s: no value_offsets", member);
    const cJSON *wp = cJSON_GetObjectItem(want, "first_positions"), *wfv = cJSON_GetObjectItem(want, "first_values");
    const int64_t nv = voff[1] - voff[0];
    if (!EXPECT(nv == (int64_t)num(want, "first_nonzero"), "%s: first example has %lld non-zero values, numpy %g", path,
                (long long)nv, num(want, "first_nonzero")))
        return;
    int32_t *pos = malloc((size_t)(voff[n] + 1) * sizeof *pos);
    float *val = malloc((size_t)(voff[n] + 1) * sizeof *val);
    snprintf(member, sizeof member, "%s/positions", path);
    read_ds(f, member, H5T_NATIVE_INT32, pos, voff[n]);
    snprintf(member, sizeof member, "%s/values", path);
    read_ds(f, member, H5T_NATIVE_FLOAT, val, voff[n]);
    int bad = 0;
    for (int i = 0; i < cJSON_GetArraySize(wp); i++) /* the first 16 */
        bad += pos[i] != (int32_t)cJSON_GetArrayItem(wp, i)->valuedouble ||
               val[i] != (float)cJSON_GetArrayItem(wfv, i)->valuedouble;
    EXPECT(bad == 0, "%s: %d of the first example's first per-token values differ from numpy's", path, bad);
    free(pos), free(val);
}

static void check_means(hid_t f, const char *group, const cJSON *want) {
    /* every mean numpy has is there and right; then nothing more is there */
    int n_want = 0;
    for (const cJSON *m = want->child; m; m = m->next, n_want++) {
        char path[1100], member[1200];
        snprintf(path, sizeof path, "%s/means/%s", group, m->string);
        snprintf(member, sizeof member, "%s/mean", path);
        float mean[8192];
        const int64_t d = read_ds(f, member, H5T_NATIVE_FLOAT, mean, 8192);
        if (!EXPECT(d > 0, "%s: missing", member)) continue;
        double count = 0;
        EXPECT(attr_f64(f, path, "count", &count) && count == num(m, "count"), "%s: count %g, numpy %g", path, count,
               num(m, "count"));
        double sum_abs = 0, dot = 0, mx = 0;
        for (int64_t j = 0; j < d; j++) {
            const double r = (double)(((uint64_t)j * 2654435761ull) % 4294967296ull) / 4294967296.0 - 0.5;
            sum_abs += fabs(mean[j]), dot += mean[j] * r, mx = fabs(mean[j]) > mx ? fabs(mean[j]) : mx;
        }
        EXPECT(close_rel(sum_abs, num(m, "sum_abs"), 1e-6), "%s: sum |mean| %.9g, numpy %.9g", path, sum_abs,
               num(m, "sum_abs"));
        EXPECT(fabs(dot - num(m, "dot")) <= 1e-6 * num(m, "sum_abs"), "%s: mean . r %.9g, numpy %.9g", path, dot,
               num(m, "dot"));
        const cJSON *head = cJSON_GetObjectItem(m, "head");
        for (int j = 0; j < 4; j++)
            EXPECT(fabs(mean[j] - cJSON_GetArrayItem(head, j)->valuedouble) <= 1e-6 * mx, "%s[%d]: %.9g, numpy %.9g", path,
                   j, mean[j], cJSON_GetArrayItem(head, j)->valuedouble);
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/means", group);
    hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
    H5G_info_t info;
    H5Gget_info(g, &info);
    H5Gclose(g);
    EXPECT((int)info.nlinks == n_want, "%s: %d running means, numpy has %d (a mean of no token, or one missing)", path,
           (int)info.nlinks, n_want);
}

/* The chat template's ids the job used ("chat_template_tokens: qwen3 1,2,..." in /inputs) equal transformers'. */
static void check_template(hid_t f, const cJSON *ids) {
    char text[65536] = {0};
    hid_t ds = H5Dopen2(f, "inputs", H5P_DEFAULT), type = H5Dget_type(ds);
    if (H5Tis_variable_str(type) > 0) {
        char *s = NULL;
        H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s);
        snprintf(text, sizeof text, "%s", s ? s : "");
        H5free_memory(s);
    } else {
        hid_t sp = H5Dget_space(ds);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        H5Sclose(sp);
        if (n < (hssize_t)sizeof text) H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, text);
    }
    H5Tclose(type), H5Dclose(ds);
    /* "chat_template_tokens: FAMILY id,id,...": the ids after the template family's name */
    char want[4096] = "";
    for (int i = 0; i < cJSON_GetArraySize(ids); i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "",
                 (int)cJSON_GetArrayItem(ids, i)->valuedouble);
    strcat(want, "\n");
    const char *line = strstr(text, "chat_template_tokens: ");
    const char *got = line ? strchr(line + strlen("chat_template_tokens: "), ' ') : NULL;
    EXPECT(got && strncmp(got + 1, want, strlen(want)) == 0,
           "the job's chat template tokens are not transformers' (%s): inputs are\n%s", want, text);
}

static void check_seed_json(const char *dir, const char *ds, const char *layer, const cJSON *want) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/results.json", dir, ds);
    cJSON *r = read_json(path);
    const cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "layers"), layer);
    if (EXPECT(l != NULL, "%s: no layers.%s", path, layer)) {
        const cJSON *stats = cJSON_GetObjectItem(l, "statistics"), *ws = cJSON_GetObjectItem(cJSON_GetObjectItem(want, "statistics"), "norm_diff");
        EXPECT(cJSON_GetArraySize(stats) == cJSON_GetArraySize(ws), "%s: %d statistics, expected %d", path,
               cJSON_GetArraySize(stats), cJSON_GetArraySize(ws));
        for (const cJSON *it = ws->child; it; it = it->next)
            EXPECT(close_rel(num(stats, it->string), it->valuedouble, 1e-6), "%s %s statistics.%s: %.9g, numpy %.9g", path,
                   layer, it->string, num(stats, it->string), it->valuedouble);
        EXPECT(num(l, "total_tokens_processed") == num(want, "total_tokens_processed"), "%s: total_tokens_processed", path);
        EXPECT(num(l, "total_samples_processed") == num(want, "total_samples_processed"), "%s: total_samples_processed", path);
        EXPECT(cJSON_GetObjectItem(l, "dataset_id") && cJSON_GetObjectItem(cJSON_GetObjectItem(l, "metadata"), "base_model"),
               "%s: the seed's fields dataset_id, metadata.base_model", path);
    }
    cJSON_Delete(r);
    snprintf(path, sizeof path, "%s/%s/%s.json", dir, ds, layer);
    cJSON *lj = read_json(path);
    EXPECT(close_rel(num(cJSON_GetObjectItem(lj, "statistics"), "mean"),
                     num(cJSON_GetObjectItem(cJSON_GetObjectItem(want, "statistics"), "norm_diff"), "mean"), 1e-6),
           "%s: statistics.mean", path);
    cJSON_Delete(lj);
}

static int golden(const char *golden_path, const char *run, const char *dir, const char *store_dir) {
    cJSON *g = read_json(golden_path);
    if (!check_stores(g, store_dir)) return 1;
    const cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "runs"), run);
    if (!r) {
        fprintf(stderr, "%s has no run %s\n", golden_path, run);
        return 2;
    }
    hid_t f = open_results(dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/results.h5", dir);
    check_template(f, cJSON_GetObjectItem(g, "template_ids"));
    for (const cJSON *ds = cJSON_GetObjectItem(r, "datasets")->child; ds; ds = ds->next) {
        for (const cJSON *l = ds->child; l; l = l->next) {
            char group[512];
            snprintf(group, sizeof group, "/%s/%s", l->string, ds->string);
            if (!EXPECT(group_exists(f, group), "%s: no group %s", path, group)) continue;
            double v = 0;
            EXPECT(attr_f64(f, group, "total_tokens_processed", &v) && v == num(l, "total_tokens_processed"),
                   "%s total_tokens_processed %g, numpy %g", group, v, num(l, "total_tokens_processed"));
            EXPECT(attr_f64(f, group, "total_samples_processed", &v) && v == num(l, "total_samples_processed"),
                   "%s total_samples_processed %g, numpy %g", group, v, num(l, "total_samples_processed"));
            const cJSON *stats = cJSON_GetObjectItem(l, "statistics");
            for (const cJSON *m = stats->child; m; m = m->next) {
                char obj[700];
                snprintf(obj, sizeof obj, "%s/statistics/%s", group, m->string);
                check_stats(f, obj, m, obj);
            }
            for (const cJSON *h = cJSON_GetObjectItem(l, "histograms")->child; h; h = h->next)
                check_histogram(f, group, h->string, h);
            for (int t = 0; t < 6; t++) {
                char tp[700];
                snprintf(tp, sizeof tp, "/%s/max_act/%s/%s", l->string, TABLES[t], ds->string);
                if (EXPECT(group_exists(f, tp), "no table %s", tp))
                    check_table(f, tp, cJSON_GetObjectItem(cJSON_GetObjectItem(l, "tables"), TABLES[t]));
            }
            check_means(f, group, cJSON_GetObjectItem(l, "means"));
            check_seed_json(dir, ds->string, l->string, l);
        }
    }
    H5Fclose(f);
    cJSON_Delete(g);
    return dk_test_finish("test_aa_golden");
}

static int sanity(const char *dir) {
    hid_t f = open_results(dir);
    int layers = 0;
    for (int layer = 0; layer < 64; layer++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "/layer_%d/glacier_honey/statistics/norm_diff", layer);
        snprintf(b, sizeof b, "/layer_%d/pretrain/statistics/norm_diff", layer);
        double org = 0, pre = 0;
        if (!group_exists(f, a)) continue;
        layers++;
        EXPECT(attr_f64(f, a, "mean", &org) && attr_f64(f, b, "mean", &pre), "layer %d: no norm_diff means", layer);
        printf("layer %d: mean ||ft - base|| on glacier_honey %.4f, on pretrain %.4f (ratio %.2f)\n", layer, org, pre,
               org / pre);
        EXPECT(org > pre, "layer %d: the organism's dataset (%.4f) does not differ more than pretraining (%.4f)", layer,
               org, pre);
    }
    EXPECT(layers > 0, "%s/results.h5: no layer with glacier_honey results", dir);
    H5Fclose(f);
    return dk_test_finish("test_aa_golden sanity");
}

int main(int argc, char **argv) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc == 6 && strcmp(argv[1], "golden") == 0) return golden(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 3 && strcmp(argv[1], "sanity") == 0) return sanity(argv[2]);
    if (argc == 4 && strcmp(argv[1], "overrides") == 0) { /* the run's method overrides, one per line */
        cJSON *g = read_json(argv[2]);
        const cJSON *ov = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "runs"), argv[3]), "overrides");
        for (const cJSON *it = ov ? ov->child : NULL; it; it = it->next) printf("%s\n", it->valuestring);
        cJSON_Delete(g);
        return ov ? 0 : 1;
    }
    fprintf(stderr, "usage: test_aa_golden golden GOLDEN.json RUN RESULTS_DIR STORE_DIR | sanity RESULTS_DIR | "
            "overrides GOLDEN.json RUN\n");
    return 2;
}
