/* pp_store_tool.c — test helper for activation stores, through the C reader (act_store_read.h):
 *     pp_store_tool compare A.h5 B.h5        every dataset and statistic bit-equal (exit 1 at the first difference)
 *     pp_store_tool dump A.h5 LAYER ROW0 N   rows as float32, one value per line (%.9g), for the h5py test
 *     pp_store_tool pair BASE.h5 FT.h5 LAYER reader API checks: diff == ft - base by row range and by sequence
 * Exit 0 when all is well, 1 with a message otherwise. */
#include <hdf5.h>
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
        if (memcmp(a.tokens, b.tokens, (size_t)a.n_tokens * 4)) return fail("%s and %s differ in tokens", pa, pb);
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

static int dump(const char *path, int64_t layer, int64_t row0, int64_t n) {
    dk_act_store s;
    dk_err err = {0};
    if (dk_act_store_open(&s, path, layer, false, &err)) return fail("%s%s", err.msg, "");
    if (n < 0) n = s.n_tokens - row0;
    float *x = malloc((size_t)(n * s.d_model + 1) * sizeof(float));
    if (dk_act_store_rows(&s, row0, n, x, &err)) return fail("%s%s", err.msg, "");
    for (int64_t i = 0; i < n * s.d_model; i++) printf("%.9g\n", x[i]);
    for (int64_t i = row0; i < row0 + n; i++) printf("token %d\n", s.tokens[i]);
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

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "dump") == 0) return dump(argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]));
    if (argc == 5 && strcmp(argv[1], "pair") == 0) return pair(argv[2], argv[3], atoll(argv[4]));
    fprintf(stderr, "usage: pp_store_tool compare A B | dump A LAYER ROW0 N | pair BASE FT LAYER\n");
    return 2;
}
