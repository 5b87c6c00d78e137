/* dm_golden_check.c — compares a diff_mining run with the reference of tools/make_diff_mining_goldens.py (the
 * seed's formulas in transformers + peft + torch + torchnmf), for tests/methods/dm_golden.sh.
 *
 *     dm_golden_check RUN_DIR CASE_DIR      RUN_DIR = .../diff_mining/seed{seed}_top{k}, CASE_DIR = the fixture
 *
 * What must hold (two fp32 engines differ by ~1e-6 of a logit; the reference flags where that can matter):
 *   samples      the token ids of every sample and its first analysed position: identical
 *   top-k        count of each token in the positive / negative top-k: identical, except tokens the reference
 *                flags as within tie_tol of the k-th value at a position whose k-th and (k+1)-th are that close
 *   signs        #positions with diff > 0: within the token's count of |diff| <= tie_tol positions
 *   sums         Σ diff: within 1e-5 of Σ |diff| (+1e-5)
 *   orderings    top_k_occurring and fraction_positive_diff: every listed value equals the reference's value of
 *                that token (float32, as torch computes it), values descend, no unlisted token has a higher
 *                reference value, and token_str / avg_logit_diff / counts match the reference's JSON entry
 *   NMF          the columns (tokens in order of first appearance, k-major): identical; torchnmf's iteration
 *                count; when no top-k membership moved (the same matrix): W within 1e-4 of its norm, the
 *                reconstruction error within 1e-5 relative, each topic listing the same tokens in the same order
 *                as torchnmf's but adjacent pairs of near-equal weight (< 1e-4 of the top weight); when a tie fell
 *                the other way (a value in another column): W within 1e-2, the error within 1e-4, each topic's
 *                top 20 the same set and >= 90% of its list in common
 *   JSON         every field name of the seed's files present, none extra
 *
 *     dm_golden_check --same A.h5 B.h5        two runs' results (e.g. 1 and 3 ranks) hold the same bits: every
 *                                             dataset and attribute, but the run's own records (config_yaml,
 *                                             the attributes created and n_ranks) */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "test.h"

static cJSON *load_json(const char *dir, const char *rel) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    const bool read = text != NULL;
    cJSON *j = read ? cJSON_ParseWithLength(text, size) : NULL;
    free(text);
    if (!j) {
        fprintf(stderr, "%s%s\n", read ? path : err.msg, read ? " is not JSON" : "");
        exit(1);
    }
    return j;
}

static void *read_ds(hid_t file, const char *path, hid_t type, size_t size, int64_t *n) {
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0) {
        fprintf(stderr, "results.h5 has no %s\n", path);
        exit(1);
    }
    hid_t sp = H5Dget_space(ds);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    void *buf = malloc((size_t)(count ? count : 1) * size);
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) exit(1);
    H5Sclose(sp);
    H5Dclose(ds);
    *n = count;
    return buf;
}

static double read_attr(hid_t file, const char *obj, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) {
        fprintf(stderr, "results.h5: no attribute %s of %s\n", name, obj);
        exit(1);
    }
    H5Aclose(a);
    return v;
}

/* reference [[id, count], ...] to a dense vector */
static int64_t *dense(const cJSON *pairs, int64_t V) {
    int64_t *v = calloc((size_t)V, sizeof *v);
    for (const cJSON *p = pairs->child; p; p = p->next)
        v[(int64_t)cJSON_GetArrayItem(p, 0)->valuedouble] = (int64_t)cJSON_GetArrayItem(p, 1)->valuedouble;
    return v;
}

/* Same field names (recursively through objects and the first element of lists). */
static void same_keys(const cJSON *ours, const cJSON *ref, const char *where) {
    if (cJSON_IsObject(ref)) {
        if (!EXPECT(cJSON_IsObject(ours), "%s: not an object", where)) return;
        for (const cJSON *k = ref->child; k; k = k->next) {
            char w[512];
            snprintf(w, sizeof w, "%s.%s", where, k->string);
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(ours, k->string);
            if (EXPECT(o != NULL, "%s: missing", w)) same_keys(o, k, w);
        }
        for (const cJSON *k = ours->child; k; k = k->next)
            EXPECT(cJSON_GetObjectItemCaseSensitive(ref, k->string) != NULL, "%s.%s: not a field of the seed's file",
                   where, k->string);
    } else if (cJSON_IsArray(ref) && ref->child && cJSON_IsArray(ours) && ours->child) {
        char w[512];
        snprintf(w, sizeof w, "%s[0]", where);
        same_keys(ours->child, ref->child, w);
    }
}

typedef struct ref_stats {
    int64_t V, P;
    int64_t *pos, *neg, *cpos, *near_zero;
    char *tie;          /* (V) flagged */
} ref_stats;

/* The reference value of token v in an ordering (float32, as torch computes it). */
static float ref_value(const ref_stats *r, bool occurring, int64_t v) {
    return occurring ? ((float)r->pos[v] / (float)r->P) * 100.0f : (float)r->cpos[v] / (float)r->P;
}

static void check_simple(const char *run, const char *cas, const char *ds, const ref_stats *r, bool occurring) {
    const char *type = occurring ? "top_k_occurring" : "fraction_positive_diff";
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s/global.json", type, ds);
    cJSON *ours = load_json(run, rel), *ref = load_json(cas, rel);
    same_keys(ours, ref, rel);
    const cJSON *ot = cJSON_GetObjectItem(ours, "tokens"), *rt = cJSON_GetObjectItem(ref, "tokens");
    const int n = cJSON_GetArraySize(ot);
    EXPECT(n == cJSON_GetArraySize(rt), "%s: %d tokens, the reference %d", rel, n, cJSON_GetArraySize(rt));
    char *listed = calloc((size_t)r->V, 1);
    double last = INFINITY;
    int bad_value = 0, bad_order = 0, bad_entry = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(ot, i);
        const int64_t v = (int64_t)cJSON_GetObjectItem(e, "token_id")->valuedouble;
        const double value = cJSON_GetObjectItem(e, "ordering_value")->valuedouble;
        listed[v] = 1;
        const float want = ref_value(r, occurring, v);
        /* a flagged token may move by one count per flagged position; the sign count by its near-zero count */
        const double slack = occurring ? (r->tie[v] ? 100.0 * 4 / (double)r->P : 0) : (double)r->near_zero[v] / (double)r->P;
        if (fabs(value - (double)want) > slack + 1e-12) bad_value++;
        if (value > last) bad_order++;
        last = value;
        /* the reference's entry for the same token, where it lists it */
        for (const cJSON *x = rt->child; x; x = x->next) {
            if ((int64_t)cJSON_GetObjectItem(x, "token_id")->valuedouble != v) continue;
            const char *s1 = cJSON_GetObjectItem(e, "token_str")->valuestring, *s2 = cJSON_GetObjectItem(x, "token_str")->valuestring;
            const double a1 = cJSON_GetObjectItem(e, "avg_logit_diff")->valuedouble, a2 = cJSON_GetObjectItem(x, "avg_logit_diff")->valuedouble;
            const bool counts = cJSON_GetObjectItem(e, "count_positive")->valuedouble == cJSON_GetObjectItem(x, "count_positive")->valuedouble &&
                                cJSON_GetObjectItem(e, "count_negative")->valuedouble == cJSON_GetObjectItem(x, "count_negative")->valuedouble;
            if (strcmp(s1, s2) != 0 || fabs(a1 - a2) > 1e-4 * (1 + fabs(a2)) || (!counts && !r->tie[v] && !r->near_zero[v])) {
                if (bad_entry++ < 5)
                    fprintf(stderr, "%s token %lld: ours '%s' avg %.8g, reference '%s' avg %.8g%s\n", rel, (long long)v, s1,
                            a1, s2, a2, counts ? "" : " (counts differ)");
            }
        }
    }
    EXPECT(bad_value == 0, "%s: %d values differ from the reference's for their token", rel, bad_value);
    EXPECT(bad_order == 0, "%s: values do not descend (%d places)", rel, bad_order);
    EXPECT(bad_entry == 0, "%s: %d entries differ from the reference's entry for the same token", rel, bad_entry);
    int missed = 0;
    for (int64_t v = 0; v < r->V; v++)
        if (!listed[v] && (double)ref_value(r, occurring, v) > last && !r->tie[v]) missed++;
    EXPECT(missed == 0, "%s: %d tokens with a higher reference value than the last listed are missing", rel, missed);
    free(listed);
    cJSON_Delete(ours);
    cJSON_Delete(ref);
}

/* ---- --same ---------------------------------------------------------------------------------------------- */

typedef struct same_ctx {
    hid_t b;
    int differ, objects;
} same_ctx;

/* Both values of a dataset or attribute as comparable bytes (variable-length strings joined with NULs). */
static char *value_bytes(hid_t obj, bool attr, size_t *len) {
    hid_t ft = attr ? H5Aget_type(obj) : H5Dget_type(obj), sp = attr ? H5Aget_space(obj) : H5Dget_space(obj);
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft)) {
        char **v = calloc((size_t)(n ? n : 1), sizeof *v);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if ((attr ? H5Aread(obj, mt, v) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v)) < 0) exit(1);
        size_t total = 0;
        for (hssize_t i = 0; i < n; i++) total += (v[i] ? strlen(v[i]) : 0) + 1;
        out = malloc(total + 1);
        *len = 0;
        for (hssize_t i = 0; i < n; i++) {
            const size_t l = v[i] ? strlen(v[i]) : 0;
            memcpy(out + *len, v[i] ? v[i] : "", l + 1);
            *len += l + 1;
            free(v[i]);
        }
        free(v);
        H5Tclose(mt);
    } else {
        hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
        *len = (size_t)n * H5Tget_size(mt);
        out = malloc(*len ? *len : 1);
        if ((attr ? H5Aread(obj, mt, out) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out)) < 0) exit(1);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Sclose(sp);
    return out;
}

static bool same_value(hid_t a, hid_t b, bool attr) {
    size_t la = 0, lb = 0;
    char *va = value_bytes(a, attr, &la), *vb = value_bytes(b, attr, &lb);
    const bool same = la == lb && memcmp(va, vb, la) == 0;
    free(va), free(vb);
    return same;
}

static herr_t same_attr(hid_t obj, const char *name, const H5A_info_t *info, void *p) {
    (void)info;
    const char **where = p;
    if (strcmp(name, "created") == 0 || strcmp(name, "n_ranks") == 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), b = H5Aopen_by_name(*(hid_t *)where[1], where[0], name, H5P_DEFAULT, H5P_DEFAULT);
    const bool ok = b >= 0 && same_value(a, b, true);
    if (!ok) fprintf(stderr, "attribute %s of %s differs\n", name, where[0]);
    H5Aclose(a);
    if (b >= 0) H5Aclose(b);
    return ok ? 0 : 1;
}

#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t obj_info;
#define VISIT(f, cb, c) H5Ovisit3(f, H5_INDEX_NAME, H5_ITER_INC, cb, c, H5O_INFO_BASIC)
#else
typedef H5O_info_t obj_info;
#define VISIT(f, cb, c) H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, cb, c, H5O_INFO_BASIC)
#endif

static herr_t same_object(hid_t a_file, const char *name, const obj_info *info, void *p) {
    same_ctx *c = p;
    c->objects++;
    hid_t a = H5Oopen(a_file, name, H5P_DEFAULT), b = H5Oopen(c->b, name, H5P_DEFAULT);
    if (b < 0) {
        fprintf(stderr, "%s is missing in the second file\n", name);
        c->differ++;
        H5Oclose(a);
        return 0;
    }
    const char *where[2] = {name, (const char *)&c->b};
    hsize_t idx = 0;
    if (H5Aiterate2(a, H5_INDEX_NAME, H5_ITER_INC, &idx, same_attr, where) != 0) c->differ++;
    if (info->type == H5O_TYPE_DATASET && strcmp(name, "config_yaml") != 0 && !same_value(a, b, false)) {
        fprintf(stderr, "dataset %s differs\n", name);
        c->differ++;
    }
    H5Oclose(a), H5Oclose(b);
    return 0;
}

static int same_files(const char *pa, const char *pb) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0) {
        fprintf(stderr, "cannot open %s or %s\n", pa, pb);
        return 1;
    }
    same_ctx c = {b, 0, 0}, back = {a, 0, 0};
    VISIT(a, same_object, &c);
    VISIT(b, same_object, &back);
    H5Fclose(a), H5Fclose(b);
    printf("%s vs %s: %d objects, %d differ\n", pa, pb, c.objects, c.differ + back.differ);
    return c.differ + back.differ == 0 && c.objects > 1 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--same") == 0) return same_files(argv[2], argv[3]);
    if (argc != 3) {
        fprintf(stderr, "usage: dm_golden_check RUN_DIR CASE_DIR\n");
        return 2;
    }
    const char *run = argv[1], *cas = argv[2];
    cJSON *ref = load_json(cas, "reference.json");
    const char *ds = cJSON_GetObjectItem(ref, "dataset_name")->valuestring;
    ref_stats r = {0};
    r.V = (int64_t)cJSON_GetObjectItem(ref, "vocab_size")->valuedouble;
    r.P = (int64_t)cJSON_GetObjectItem(ref, "total_positions")->valuedouble;
    r.pos = dense(cJSON_GetObjectItem(ref, "topk_pos_counts"), r.V);
    r.neg = dense(cJSON_GetObjectItem(ref, "topk_neg_counts"), r.V);
    r.cpos = dense(cJSON_GetObjectItem(ref, "count_positive"), r.V);
    r.near_zero = dense(cJSON_GetObjectItem(ref, "near_zero"), r.V);
    r.tie = calloc((size_t)r.V, 1);
    for (const cJSON *t = cJSON_GetObjectItem(ref, "tie_tokens")->child; t; t = t->next) r.tie[(int64_t)t->valuedouble] = 1;

    char path[2048], obj[512];
    snprintf(path, sizeof path, "%s/results.h5", run);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    int64_t n = 0;

    /* samples */
    snprintf(obj, sizeof obj, "%s/tokens", ds);
    int32_t *tokens = read_ds(f, obj, H5T_NATIVE_INT32, 4, &n);
    snprintf(obj, sizeof obj, "%s/sample_offsets", ds);
    int64_t n_off = 0, *off = read_ds(f, obj, H5T_NATIVE_INT64, 8, &n_off);
    snprintf(obj, sizeof obj, "%s/first_position", ds);
    int64_t *first = read_ds(f, obj, H5T_NATIVE_INT64, 8, &n);
    const cJSON *samples = cJSON_GetObjectItem(ref, "samples"), *positions = cJSON_GetObjectItem(ref, "positions");
    EXPECT(n_off - 1 == cJSON_GetArraySize(samples), "%lld samples, the reference %d", (long long)(n_off - 1),
           cJSON_GetArraySize(samples));
    int bad_samples = 0;
    for (int64_t s = 0; s + 1 < n_off && s < cJSON_GetArraySize(samples); s++) {
        const cJSON *want = cJSON_GetArrayItem(samples, (int)s);
        bool same = off[s + 1] - off[s] == cJSON_GetArraySize(want);
        for (int64_t t = 0; same && t < off[s + 1] - off[s]; t++)
            same = tokens[off[s] + t] == (int32_t)cJSON_GetArrayItem(want, (int)t)->valuedouble;
        const int64_t want_first = cJSON_IsArray(positions)
                                       ? (int64_t)cJSON_GetArrayItem(cJSON_GetArrayItem(positions, (int)s), 0)->valuedouble : 0;
        if (!same || first[s] != want_first) {
            if (bad_samples++ < 3) fprintf(stderr, "sample %lld differs from the reference's\n", (long long)s);
        }
    }
    EXPECT(bad_samples == 0, "%d samples differ (tokens or first analysed position)", bad_samples);
    EXPECT((int64_t)read_attr(f, ds, "total_positions") == r.P, "total positions %g, the reference %lld",
           read_attr(f, ds, "total_positions"), (long long)r.P);

    /* per-token statistics */
    snprintf(obj, sizeof obj, "%s/topk_pos_counts", ds);
    int64_t *pos = read_ds(f, obj, H5T_NATIVE_INT64, 8, &n);
    EXPECT(n == r.V, "%lld tokens compared, the reference %lld", (long long)n, (long long)r.V);
    snprintf(obj, sizeof obj, "%s/topk_neg_counts", ds);
    int64_t *neg = read_ds(f, obj, H5T_NATIVE_INT64, 8, &n);
    snprintf(obj, sizeof obj, "%s/count_positive", ds);
    int64_t *cpos = read_ds(f, obj, H5T_NATIVE_INT64, 8, &n);
    snprintf(obj, sizeof obj, "%s/sum_logit_diff", ds);
    double *sum = read_ds(f, obj, H5T_NATIVE_DOUBLE, 8, &n);
    const cJSON *rsum = cJSON_GetObjectItem(ref, "sum_logit_diff"), *rabs = cJSON_GetObjectItem(ref, "sum_abs_logit_diff");
    int bad_pos = 0, bad_neg = 0, bad_sign = 0, bad_sum = 0, flagged_moved = 0;
    double worst_sum = 0;
    for (int64_t v = 0; v < r.V; v++) {
        if (pos[v] != r.pos[v] || neg[v] != r.neg[v]) {
            if (r.tie[v]) flagged_moved++;
            else bad_pos += pos[v] != r.pos[v], bad_neg += neg[v] != r.neg[v];
        }
        if (llabs(cpos[v] - r.cpos[v]) > r.near_zero[v]) bad_sign++;
        const double want = cJSON_GetArrayItem(rsum, (int)v)->valuedouble, scale = cJSON_GetArrayItem(rabs, (int)v)->valuedouble;
        const double rel = fabs(sum[v] - want) / (scale + 1.0);
        worst_sum = rel > worst_sum ? rel : worst_sum;
        if (fabs(sum[v] - want) > 1e-5 * scale + 1e-5) bad_sum++;
    }
    EXPECT(bad_pos == 0 && bad_neg == 0, "top-k counts differ for %d (positive) and %d (negative) unflagged tokens",
           bad_pos, bad_neg);
    EXPECT(bad_sign == 0, "count_positive differs beyond the near-zero positions for %d tokens", bad_sign);
    EXPECT(bad_sum == 0, "sum_logit_diff differs for %d tokens (worst %.3g of sum |diff|)", bad_sum, worst_sum);
    printf("%s: %lld samples, %lld positions, %lld tokens; top-k counts: %d flagged tokens moved; worst sum error "
           "%.3g of sum |diff|\n", ds, (long long)(n_off - 1), (long long)r.P, (long long)r.V, flagged_moved, worst_sum);

    /* orderings */
    check_simple(run, cas, ds, &r, true);
    check_simple(run, cas, ds, &r, false);
    cJSON *meta_ours = load_json(run, "top_k_occurring/metadata.json"), *meta_ref = load_json(cas, "top_k_occurring/metadata.json");
    same_keys(meta_ours, meta_ref, "top_k_occurring/metadata.json");
    cJSON_Delete(meta_ours), cJSON_Delete(meta_ref);

    /* NMF */
    const cJSON *nmf = cJSON_GetObjectItem(ref, "nmf");
    if (cJSON_IsObject(nmf)) {
        const int64_t cols = (int64_t)cJSON_GetObjectItem(nmf, "cols")->valuedouble;
        snprintf(obj, sizeof obj, "%s/nmf/col_token_id", ds);
        int32_t *col_tok = read_ds(f, obj, H5T_NATIVE_INT32, 4, &n);
        const cJSON *want_cols = cJSON_GetObjectItem(nmf, "col_token_ids");
        int bad_cols = n != cols;
        for (int64_t c = 0; c < n && c < cols; c++) bad_cols += col_tok[c] != (int32_t)cJSON_GetArrayItem(want_cols, (int)c)->valuedouble;
        EXPECT(bad_cols == 0, "NMF columns: %lld, the reference %lld; %d differ in order", (long long)n, (long long)cols,
               bad_cols);
        char group[512];
        snprintf(group, sizeof group, "%s/nmf", ds);
        const int iters = (int)read_attr(f, group, "n_iter");
        const double error = read_attr(f, group, "reconstruction_error");
        const int want_iters = cJSON_GetObjectItem(nmf, "n_iter")->valueint;
        const double want_error = cJSON_GetObjectItem(nmf, "reconstruction_error")->valuedouble;
        EXPECT(iters == want_iters, "NMF iterations %d, torchnmf %d", iters, want_iters);
        snprintf(obj, sizeof obj, "%s/nmf/W", ds);
        float *W = read_ds(f, obj, H5T_NATIVE_FLOAT, 4, &n);
        const cJSON *wref = cJSON_GetObjectItem(nmf, "W");
        const int R = cJSON_GetArraySize(cJSON_GetArrayItem(wref, 0));
        double dd = 0, ss = 0;
        for (int64_t c = 0; c < cols && c * R < n; c++)
            for (int k = 0; k < R; k++) {
                const double w = cJSON_GetArrayItem(cJSON_GetArrayItem(wref, (int)c), k)->valuedouble;
                dd += (W[c * R + k] - w) * (W[c * R + k] - w), ss += w * w;
            }
        const double wrel = sqrt(dd / (ss > 0 ? ss : 1));
        /* Same V (no top-k membership moved): torchnmf's numbers to float rounding. A tie that fell the other way
         * moves a value to another column: then the fit is a neighbour of torchnmf's (measured on the demo pair,
         * one exact tie: W 1.2e-3 apart, error 6e-6 higher), so only closeness and the topics' tokens are checked. */
        const bool same_v = flagged_moved == 0;
        const double w_tol = same_v ? 1e-4 : 1e-2, e_tol = same_v ? 1e-5 : 1e-4;
        EXPECT(fabs(error - want_error) <= e_tol * want_error, "reconstruction error %.9g, torchnmf %.9g", error, want_error);
        EXPECT(wrel <= w_tol, "NMF W differs from torchnmf's by %.3g of its norm (allowed %.0e)", wrel, w_tol);
        printf("NMF: %lld x %lld, %d iterations (torchnmf %d), error %.9g (torchnmf %.9g), W relative difference %.3g%s\n",
               (long long)read_attr(f, group, "rows"), (long long)cols, iters, want_iters, error, want_error, wrel,
               same_v ? "" : " (the matrix differs at tied positions)");
        /* topics: same V: the same tokens in the same order except adjacent near-equal weights; else the top 20
         * of each topic the same set and the whole lists overlapping by >= 90% */
        char nmf_dir[256];
        snprintf(nmf_dir, sizeof nmf_dir, "nmf_topics%d_topn200_mode_logit_diff_magnitude_beta2p0_orthfalse_w1000p0", R);
        for (int t = 0; t < R; t++) {
            char relp[512];
            snprintf(relp, sizeof relp, "%s/%s/topic_%d.json", nmf_dir, ds, t);
            cJSON *ot = load_json(run, relp), *rt = load_json(cas, relp);
            same_keys(ot, rt, relp);
            const cJSON *oe = cJSON_GetObjectItem(ot, "tokens"), *re = cJSON_GetObjectItem(rt, "tokens");
            const int m = cJSON_GetArraySize(re), mo = cJSON_GetArraySize(oe);
            const double top = m ? cJSON_GetObjectItem(re->child, "ordering_value")->valuedouble : 1;
            int swaps = 0, bad = mo != m, common = 0, common20 = 0;
            for (int i = 0; i < m && i < mo; i++) {
                const cJSON *a = cJSON_GetArrayItem(oe, i), *b = cJSON_GetArrayItem(re, i);
                const int64_t ia = (int64_t)cJSON_GetObjectItem(a, "token_id")->valuedouble;
                const int64_t ib = (int64_t)cJSON_GetObjectItem(b, "token_id")->valuedouble;
                for (int k = 0; k < m; k++)
                    if ((int64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(re, k), "token_id")->valuedouble == ia) {
                        common++;
                        common20 += i < 20 && k < 20;
                    }
                if (ia == ib) continue;
                /* a swap with a neighbour of near-equal weight is fine */
                const cJSON *nb = i + 1 < m ? cJSON_GetArrayItem(re, i + 1) : NULL;
                const cJSON *pb = i > 0 ? cJSON_GetArrayItem(re, i - 1) : NULL;
                const double wb = cJSON_GetObjectItem(b, "ordering_value")->valuedouble;
                bool ok = false;
                if (nb && (int64_t)cJSON_GetObjectItem(nb, "token_id")->valuedouble == ia &&
                    fabs(cJSON_GetObjectItem(nb, "ordering_value")->valuedouble - wb) < 1e-4 * top) ok = true;
                if (pb && (int64_t)cJSON_GetObjectItem(pb, "token_id")->valuedouble == ia &&
                    fabs(cJSON_GetObjectItem(pb, "ordering_value")->valuedouble - wb) < 1e-4 * top) ok = true;
                if (ok) swaps++;
                else bad++;
            }
            const int n20 = m < 20 ? m : 20;
            if (same_v)
                EXPECT(bad == 0, "%s: %d tokens differ in place from torchnmf's topic (%d near-equal swaps allowed)", relp,
                       bad, swaps);
            else
                EXPECT(common20 == n20 && common >= 0.9 * m, "%s: top 20 share %d of %d tokens with torchnmf's, the lists "
                       "%d of %d", relp, common20, n20, common, m);
            printf("topic %d: %d of %d tokens in torchnmf's place, top 20 in common %d, lists in common %d of %d\n", t,
                   m - bad - swaps, m, common20, common, m);
            cJSON_Delete(ot), cJSON_Delete(rt);
        }
        snprintf(path, sizeof path, "%s/metadata.json", nmf_dir);
        cJSON *mo = load_json(run, path), *mr = load_json(cas, path);
        same_keys(mo, mr, path);
        cJSON_Delete(mo), cJSON_Delete(mr);
        free(col_tok), free(W);
    }
    snprintf(path, sizeof path, "top_k_occurring/%s/orderings.json", ds);
    cJSON *io = load_json(run, path), *ir = load_json(cas, path);
    same_keys(io, ir, path);
    EXPECT(cJSON_Compare(io, ir, true), "%s differs from the seed's", path);
    cJSON_Delete(io), cJSON_Delete(ir);

    H5Fclose(f);
    free(tokens), free(off), free(first), free(pos), free(neg), free(cpos), free(sum);
    free(r.pos), free(r.neg), free(r.cpos), free(r.near_zero), free(r.tie);
    cJSON_Delete(ref);
    return dk_test_finish("dm_golden_check");
}
