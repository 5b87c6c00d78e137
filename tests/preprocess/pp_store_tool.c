/* pp_store_tool.c — test helper for activation stores, through the C reader (act_store_read.h):
 *     pp_store_tool compare A.h5 B.h5        every dataset and statistic bit-equal (exit 1 at the first difference)
 *     pp_store_tool dump A.h5 LAYER ROW0 N   rows as float32, one value per line (%.9g), for the h5py test
 *     pp_store_tool pair BASE.h5 FT.h5 LAYER reader API checks: diff == ft - base by row range and by sequence
 *     pp_store_tool close REF.h5 B.h5 TOL    B computed another way (the GPU) than REF (the CPU): same tokens,
 *                                            offsets and layers, rows within relative error TOL, statistics
 *                                            within the bounds the rows imply (close_layer below)
 *     pp_store_tool skipped FULL.h5 SKIP.h5 N  SKIP stored every sequence of FULL without its first N tokens: its
 *                                            rows (bf16 bits) and tokens are FULL's from position N on, and its
 *                                            statistics count and average exactly those rows
 *     pp_store_tool info A.h5 LAYER          "rows R sequences S tokens yes|no skip N" (store_tokens, skipping)
 * Exit 0 when all is well, 1 with a message otherwise. */
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/act_store_read.h"

static int fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "pp_store_tool: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

static int read_layers(const char *path, int64_t *layers, int64_t *n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t a = H5Aopen(f, "layers", H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    *n = H5Sget_simple_extent_npoints(sp);
    H5Aread(a, H5T_NATIVE_INT64, layers);
    H5Sclose(sp);
    H5Aclose(a);
    H5Fclose(f);
    return 0;
}

/* Whether two stores' tokens differ (a store without tokens differs from one with them). */
static bool tokens_differ(const dk_act_store *a, const dk_act_store *b) {
    if (!a->tokens != !b->tokens) return true;
    return a->tokens && memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4) != 0;
}

static int compare(const char *pa, const char *pb) {
    int64_t la[64], lb[64], na = 0, nb = 0;
    if (read_layers(pa, la, &na) || read_layers(pb, lb, &nb)) return fail("cannot open %s or %s", pa, pb);
    if (na != nb || memcmp(la, lb, (size_t)na * sizeof(int64_t))) return fail("%s and %s hold other layers", pa, pb);
    for (int64_t i = 0; i < na; i++) {
        dk_act_store a, b;
        dk_err err = {0};
        if (dk_act_store_open(&a, pa, la[i], false, &err) || dk_act_store_open(&b, pb, la[i], false, &err))
            return fail("%s%s", err.msg, "");
        if (a.n_tokens != b.n_tokens || a.n_seqs != b.n_seqs || a.d_model != b.d_model)
            return fail("%s and %s differ in shape", pa, pb);
        if (tokens_differ(&a, &b)) return fail("%s and %s differ in tokens", pa, pb);
        if (memcmp(a.seq_offsets, b.seq_offsets, (size_t)(a.n_seqs + 1) * 8))
            return fail("%s and %s differ in seq_offsets", pa, pb);
        if (a.fingerprint != b.fingerprint) return fail("%s and %s differ in plan_fingerprint", pa, pb);
        size_t count = (size_t)(a.n_tokens * a.d_model);
        uint16_t *ra = malloc(count * 2 + 2), *rb = malloc(count * 2 + 2);
        dk_act_store_rows_bf16(&a, 0, a.n_tokens, ra, &err);
        dk_act_store_rows_bf16(&b, 0, b.n_tokens, rb, &err);
        if (memcmp(ra, rb, count * 2)) return fail("%s and %s differ in activations", pa, pb);
        free(ra);
        free(rb);
        double *ma = malloc((size_t)a.d_model * 32), *va = ma + a.d_model, *mb = va + a.d_model, *vb = mb + a.d_model;
        int64_t ca = 0, cb = 0;
        if (dk_act_store_stats(&a, ma, va, &ca, &err) || dk_act_store_stats(&b, mb, vb, &cb, &err))
            return fail("%s%s", err.msg, "");
        if (ca != cb || ca != a.n_tokens || memcmp(ma, mb, (size_t)a.d_model * 16))
            return fail("%s and %s differ in statistics", pa, pb);
        free(ma);
        dk_act_store_close(&a);
        dk_act_store_close(&b);
    }
    printf("equal: %s %s\n", pa, pb);
    return 0;
}

/* Statistics consistent with the rows, per store and across the two. Let x (fp32, never stored) be a
 * store's activations, q = bf16(x) its rows (8 significant bits, round to nearest): |q - x| <= 2^-8 |x|, so
 * |q - x| <= u |q| with u = 2^-8 / (1 - 2^-8) < 1.01 * 2^-8. Per dimension j over the N rows:
 * |mean(x_j) - mean(q_j)| <= mean|x_j - q_j|, so the stored mean (of x) may differ from the rows' mean by at
 * most u mean|q_j| (self check). Across stores (x from REF, y from B, e = y - x):
 * |mean(y_j) - mean(x_j)| <= rms(e_j) and |std(y_j) - std(x_j)| <= rms(e_j) (centering is a projection),
 * hence ||mean_y - mean_x||_2 and ||std_y - std_x||_2 are at most ||e||_F / sqrt(N), and ||e||_F is at most
 * ||q_y - q_x||_F plus the two roundings (u (||q_x||_F + ||q_y||_F)). These bounds cannot
 * fail for correct statistics; statistics of another chunk's rows, or of stale buffers, break them. */
static int close_layer(const dk_act_store *a, const dk_act_store *b, double tol, int64_t layer) {
    const int64_t N = a->n_tokens, H = a->d_model;
    const double u = 1.01 * ldexp(1.0, -8);
    dk_err err = {0};
    float *xa = malloc((size_t)(N * H + 1) * sizeof(float)), *xb = malloc((size_t)(N * H + 1) * sizeof(float));
    double *st = calloc((size_t)(6 * H + 1), sizeof(double)); /* mean, var of a and b; mean|q| of a and b */
    double *ma = st, *va = st + H, *mb = st + 2 * H, *vb = st + 3 * H, *absa = st + 4 * H, *absb = st + 5 * H;
    int64_t ca = 0, cb = 0;
    if (dk_act_store_rows(a, 0, N, xa, &err) || dk_act_store_rows(b, 0, N, xb, &err) ||
        dk_act_store_stats(a, ma, va, &ca, &err) || dk_act_store_stats(b, mb, vb, &cb, &err)) {
        fprintf(stderr, "pp_store_tool: %s\n", err.msg);
        return 1;
    }
    double diff2 = 0, na2 = 0, nb2 = 0;
    for (int64_t i = 0; i < N * H; i++) {
        double d = (double)xb[i] - xa[i];
        diff2 += d * d;
        na2 += (double)xa[i] * xa[i];
        nb2 += (double)xb[i] * xb[i];
    }
    double rel = sqrt(diff2 / (na2 > 0 ? na2 : 1));
    double e_bound = (sqrt(diff2) + u * (sqrt(na2) + sqrt(nb2))) / sqrt((double)N);
    /* self checks: stored mean vs the mean of the stored rows */
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        const float *x = k ? xb : xa;
        const double *m = k ? mb : ma;
        double *absq = k ? absb : absa;
        for (int64_t j = 0; j < H; j++) {
            double s = 0;
            for (int64_t i = 0; i < N; i++) {
                s += x[i * H + j];
                absq[j] += fabs(x[i * H + j]);
            }
            absq[j] /= (double)N;
            if (fabs(s / (double)N - m[j]) > u * absq[j] * 1.001 + 1e-12) bad++;
        }
    }
    double dm2 = 0, ds2 = 0;
    for (int64_t j = 0; j < H; j++) {
        dm2 += (mb[j] - ma[j]) * (mb[j] - ma[j]);
        /* population standard deviations: var is m2 / (N - 1) */
        double sa = sqrt(va[j] * (double)(N - 1) / (double)N), sb = sqrt(vb[j] * (double)(N - 1) / (double)N);
        ds2 += (sb - sa) * (sb - sa);
    }
    printf("layer %lld: rows rel error %.3g (tol %.3g); ||dmean|| %.3g, ||dstd|| %.3g, bound %.3g; "
           "stats-vs-rows violations %d\n", (long long)layer, rel, tol, sqrt(dm2), sqrt(ds2), e_bound, bad);
    int rc = 0;
    if (ca != N || cb != N) rc = fail("statistics count differs from the rows in %s or %s", a->path, b->path);
    if (bad) rc = fail("stored means disagree with the stored rows (%s, %s)", a->path, b->path);
    if (!(rel <= tol)) rc = fail("rows of %s and %s differ beyond the tolerance", a->path, b->path);
    if (!(sqrt(dm2) <= e_bound * 1.001 + 1e-12) || !(sqrt(ds2) <= e_bound * 1.001 + 1e-12))
        rc = fail("statistics of %s and %s differ more than their rows allow", a->path, b->path);
    free(xa);
    free(xb);
    free(st);
    return rc;
}

static int close_stores(const char *pa, const char *pb, double tol) {
    int64_t la[64], lb[64], na = 0, nb = 0;
    if (read_layers(pa, la, &na) || read_layers(pb, lb, &nb)) return fail("cannot open %s or %s", pa, pb);
    if (na != nb || memcmp(la, lb, (size_t)na * sizeof(int64_t))) return fail("%s and %s hold other layers", pa, pb);
    int rc = 0;
    for (int64_t i = 0; i < na && rc == 0; i++) {
        dk_act_store a, b;
        dk_err err = {0};
        if (dk_act_store_open(&a, pa, la[i], false, &err) || dk_act_store_open(&b, pb, la[i], false, &err))
            return fail("%s%s", err.msg, "");
        if (a.n_tokens != b.n_tokens || a.n_seqs != b.n_seqs || a.d_model != b.d_model)
            rc = fail("%s and %s differ in shape", pa, pb);
        else if (tokens_differ(&a, &b))
            rc = fail("%s and %s differ in tokens", pa, pb);
        else if (memcmp(a.seq_offsets, b.seq_offsets, (size_t)(a.n_seqs + 1) * 8))
            rc = fail("%s and %s differ in seq_offsets", pa, pb);
        else
            rc = close_layer(&a, &b, tol, la[i]);
        if (i == 0) printf("compute: %s vs %s\n", a.compute, b.compute);
        dk_act_store_close(&a);
        dk_act_store_close(&b);
    }
    return rc;
}

static int dump(const char *path, int64_t layer, int64_t row0, int64_t n) {
    dk_act_store s;
    dk_err err = {0};
    if (dk_act_store_open(&s, path, layer, false, &err)) return fail("%s%s", err.msg, "");
    if (n < 0) n = s.n_tokens - row0;
    float *x = malloc((size_t)(n * s.d_model + 1) * sizeof(float));
    if (dk_act_store_rows(&s, row0, n, x, &err)) return fail("%s%s", err.msg, "");
    for (int64_t i = 0; i < n * s.d_model; i++) printf("%.9g\n", x[i]);
    for (int64_t i = row0; s.tokens && i < row0 + n; i++) printf("token %d\n", s.tokens[i]);
    free(x);
    dk_act_store_close(&s);
    return 0;
}

static int pair(const char *pb, const char *pf, int64_t layer) {
    dk_act_pair p;
    dk_err err = {0};
    if (dk_act_pair_open(&p, pb, pf, layer, &err)) return fail("%s%s", err.msg, "");
    int64_t H = p.d_model, N = p.n_tokens;
    float *b = malloc((size_t)(N * H) * 4), *f = malloc((size_t)(N * H) * 4), *dd = malloc((size_t)(N * H) * 4);
    if (dk_act_pair_rows(&p, DK_ACT_BASE, 0, N, b, &err) || dk_act_pair_rows(&p, DK_ACT_FINETUNED, 0, N, f, &err) ||
        dk_act_pair_rows(&p, DK_ACT_DIFF, 0, N, dd, &err))
        return fail("%s%s", err.msg, "");
    int64_t differs = 0;
    for (int64_t i = 0; i < N * H; i++) {
        if (dd[i] != f[i] - b[i]) return fail("diff row mismatch in %s %s", pb, pf);
        differs += f[i] != b[i];
    }
    if (differs == 0) return fail("base and finetuned rows are identical in %s %s (adapter not applied?)", pb, pf);
    int64_t s = p.n_seqs - 1, row0 = 0, n = 0;
    if (dk_act_pair_sequence(&p, DK_ACT_DIFF, s, &row0, &n, NULL, &err)) return fail("%s%s", err.msg, "");
    if (dk_act_pair_sequence(&p, DK_ACT_DIFF, s, &row0, &n, dd, &err)) return fail("%s%s", err.msg, "");
    if (row0 + n != N) return fail("last sequence does not end at the last row (%s %s)", pb, pf);
    for (int64_t i = 0; i < n * H; i++)
        if (dd[i] != f[row0 * H + i] - b[row0 * H + i]) return fail("sequence read mismatch in %s %s", pb, pf);
    if (dk_act_pair_rows(&p, DK_ACT_BASE, N - 1, 2, b, &err) == 0) return fail("out-of-range read accepted%s%s", "", "");
    printf("pair ok: %lld tokens, %lld sequences, %lld values differ\n", (long long)N, (long long)p.n_seqs,
           (long long)differs);
    free(b);
    free(f);
    free(dd);
    dk_act_pair_close(&p);
    return 0;
}

static int skipped(const char *pf, const char *ps, int64_t skip) {
    int64_t layers[64], n_layers = 0;
    if (read_layers(pf, layers, &n_layers)) return fail("cannot open %s%s", pf, "");
    for (int64_t li = 0; li < n_layers; li++) {
        dk_act_store f, s;
        dk_err err = {0};
        if (dk_act_store_open(&f, pf, layers[li], false, &err) || dk_act_store_open(&s, ps, layers[li], false, &err))
            return fail("%s%s", err.msg, "");
        if (f.n_seqs != s.n_seqs || s.skip_first != skip || f.skip_first != 0)
            return fail("%s and %s: not the same sequences, or not the skip asked for", pf, ps);
        const int64_t H = f.d_model;
        uint16_t *rf = malloc((size_t)(f.n_tokens * H + 1) * 2), *rs = malloc((size_t)(s.n_tokens * H + 1) * 2);
        float *xs = malloc((size_t)(s.n_tokens * H + 1) * sizeof(float));
        dk_act_store_rows_bf16(&f, 0, f.n_tokens, rf, &err);
        dk_act_store_rows_bf16(&s, 0, s.n_tokens, rs, &err);
        dk_act_store_rows(&s, 0, s.n_tokens, xs, &err);
        int64_t kept = 0;
        for (int64_t q = 0; q < f.n_seqs; q++) {
            const int64_t fo = f.seq_offsets[q], len = f.seq_offsets[q + 1] - fo, n = len > skip ? len - skip : 0;
            if (s.seq_offsets[q] != kept || s.seq_offsets[q + 1] - s.seq_offsets[q] != n)
                return fail("%s: sequence offsets are not FULL's minus the skipped tokens (%s)", ps, pf);
            if (n && memcmp(rs + kept * H, rf + (fo + skip) * H, (size_t)(n * H) * 2))
                return fail("%s: rows differ from %s's rows after the skipped tokens", ps, pf);
            if (n && s.tokens && f.tokens && memcmp(s.tokens + kept, f.tokens + fo + skip, (size_t)n * 4))
                return fail("%s: tokens differ from %s's after the skipped tokens", ps, pf);
            kept += n;
        }
        if (kept != s.n_tokens) return fail("%s: rows do not add up%s", ps, "");
        double *mean = malloc((size_t)H * 16), *var = mean + H;
        int64_t count = 0;
        if (dk_act_store_stats(&s, mean, var, &count, &err)) return fail("%s%s", err.msg, "");
        if (count != s.n_tokens) return fail("%s: statistics count the skipped tokens too%s", ps, "");
        const double u = 1.01 * ldexp(1.0, -8); /* bf16 rows vs the fp32 the statistics saw (close_layer) */
        for (int64_t j = 0; j < H; j++) {
            double sum = 0, abs_sum = 0;
            for (int64_t i = 0; i < s.n_tokens; i++) sum += xs[i * H + j], abs_sum += fabs(xs[i * H + j]);
            if (fabs(sum / (double)s.n_tokens - mean[j]) > u * abs_sum / (double)s.n_tokens * 1.001 + 1e-12)
                return fail("%s: the stored mean is not the mean of the kept rows%s", ps, "");
        }
        printf("layer %lld: %lld of %lld rows kept, skipped tokens left out of rows, tokens and statistics\n",
               (long long)layers[li], (long long)s.n_tokens, (long long)f.n_tokens);
        free(rf), free(rs), free(xs), free(mean);
        dk_act_store_close(&f);
        dk_act_store_close(&s);
    }
    return 0;
}

static int info(const char *path, int64_t layer) {
    dk_act_store s;
    dk_err err = {0};
    if (dk_act_store_open(&s, path, layer, false, &err)) return fail("%s%s", err.msg, "");
    printf("rows %lld sequences %lld tokens %s skip %lld\n", (long long)s.n_tokens, (long long)s.n_seqs,
           s.tokens ? "yes" : "no", (long long)s.skip_first);
    dk_act_store_close(&s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "dump") == 0) return dump(argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]));
    if (argc == 5 && strcmp(argv[1], "pair") == 0) return pair(argv[2], argv[3], atoll(argv[4]));
    if (argc == 5 && strcmp(argv[1], "close") == 0) return close_stores(argv[2], argv[3], atof(argv[4]));
    if (argc == 5 && strcmp(argv[1], "skipped") == 0) return skipped(argv[2], argv[3], atoll(argv[4]));
    if (argc == 4 && strcmp(argv[1], "info") == 0) return info(argv[2], atoll(argv[3]));
    fprintf(stderr, "usage: pp_store_tool compare A B | dump A LAYER ROW0 N | pair BASE FT LAYER | close REF B TOL | "
                    "skipped FULL SKIP N | info A LAYER\n");
    return 2;
}
