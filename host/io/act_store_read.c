/* act_store_read.c — serial reader of activation stores (see act_store_read.h; layout in docs/formats.md).
 * bf16 rows are read with the dataset's own type (a plain copy of the bits) and widened here, which is
 * exact and ~50x faster than letting HDF5 convert the custom float to fp32. */
#include "io/act_store_read.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "io/act_store.h"
#include "kernels/dtype_convert.h"

static char *read_str_attr(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return dk_strdup("");
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *buf = calloc(1, n + 1);
    if (H5Aread(a, t, buf) < 0) buf[0] = 0;
    H5Tclose(t);
    H5Aclose(a);
    return buf;
}

static int read_all(hid_t file, const char *name, hid_t mtype, void *out) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    herr_t r = H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(ds);
    return r < 0 ? -1 : 0;
}

static int64_t attr_i64(hid_t obj, const char *name) {
    int64_t v = -1;
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) v = -1;
    H5Aclose(a);
    return v;
}

int dk_act_store_open(dk_act_store *s, const char *path, int64_t layer, bool allow_partial, dk_err *err) {
    memset(s, 0, sizeof *s);
    s->file = s->layer_ds = s->bf16 = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return dk_err_set(err, DK_EXIT_RUNTIME, "cannot open the activation store %s (missing, truncated or "
                                 "not HDF5)", path);
    s->file = f;
    s->path = dk_strdup(path);
    char *status = read_str_attr(f, "status");
    bool complete = strcmp(status, "complete") == 0;
    free(status);
    if (!complete && !allow_partial) {
        dk_act_store_close(s);
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s is not complete (status is not 'complete'); rerun "
                          "diff_preprocess to finish it", path);
    }
    s->model_id = read_str_attr(f, "model_id");
    s->adapter_id = read_str_attr(f, "adapter_id");
    s->tokenizer_hash = read_str_attr(f, "tokenizer_hash");
    s->compute = read_str_attr(f, "compute");
    if (!s->compute[0]) { /* written before the attribute existed: only the CPU backend wrote stores then */
        free(s->compute);
        s->compute = dk_strdup("cpu-fp32");
    }
    s->dataset_hash = read_str_attr(f, "dataset_hash");
    s->skip_first = H5Aexists(f, "skip_first_tokens") > 0 ? attr_i64(f, "skip_first_tokens") : 0;
    s->d_model = attr_i64(f, "d_model");
    s->n_tokens = attr_i64(f, "n_tokens");
    s->n_seqs = attr_i64(f, "n_sequences");
    hid_t a = H5Aopen(f, "plan_fingerprint", H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_UINT64, &s->fingerprint);
        H5Aclose(a);
    }
    char name[64];
    snprintf(name, sizeof name, "layer_%lld", (long long)layer);
    s->layer = layer;
    s->layer_ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (s->layer_ds < 0 || s->d_model <= 0 || s->n_tokens < 0 || s->n_seqs < 0) {
        int64_t layers[64];
        int64_t n = 0;
        hid_t la = H5Aopen(f, "layers", H5P_DEFAULT);
        if (la >= 0) {
            hid_t sp = H5Aget_space(la);
            n = H5Sget_simple_extent_npoints(sp);
            if (n > 64 || H5Aread(la, H5T_NATIVE_INT64, layers) < 0) n = 0;
            H5Sclose(sp);
            H5Aclose(la);
        }
        char list[512] = "";
        for (int64_t i = 0; i < n; i++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%lld", i ? ", " : "", (long long)layers[i]);
        }
        dk_act_store_close(s);
        return dk_err_set(err, DK_EXIT_USAGE, "%s holds no layer %lld (layers present: %s): set preprocessing.layers "
                          "to layers the store holds, or cache this one with diff_preprocess", path, (long long)layer,
                          list);
    }
    s->bf16 = H5Dget_type(s->layer_ds);
    const bool has_tokens = H5Lexists(f, "tokens", H5P_DEFAULT) > 0; /* absent with store_tokens=false */
    s->tokens = has_tokens ? malloc((size_t)(s->n_tokens ? s->n_tokens : 1) * sizeof(int32_t)) : NULL;
    s->seq_offsets = malloc((size_t)(s->n_seqs + 1) * sizeof(int64_t));
    if ((has_tokens && read_all(f, "tokens", H5T_NATIVE_INT32, s->tokens) != 0) ||
        read_all(f, "seq_offsets", H5T_NATIVE_INT64, s->seq_offsets) != 0) {
        dk_act_store_close(s);
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: cannot read tokens / seq_offsets", path);
    }
    return 0;
}

void dk_act_store_close(dk_act_store *s) {
    if (s->layer_ds >= 0) H5Dclose(s->layer_ds);
    if (s->bf16 >= 0) H5Tclose(s->bf16);
    if (s->file >= 0) H5Fclose(s->file);
    free(s->tokens);
    free(s->seq_offsets);
    free(s->path);
    free(s->model_id);
    free(s->adapter_id);
    free(s->tokenizer_hash);
    free(s->compute);
    free(s->dataset_hash);
    memset(s, 0, sizeof *s);
    s->file = s->layer_ds = s->bf16 = -1;
}

int dk_act_store_rows_bf16(const dk_act_store *s, int64_t row0, int64_t n, uint16_t *out, dk_err *err) {
    if (row0 < 0 || n < 0 || row0 + n > s->n_tokens)
        return dk_err_set(err, DK_EXIT_USAGE, "%s: rows [%lld, %lld) outside [0, %lld)", s->path, (long long)row0,
                          (long long)(row0 + n), (long long)s->n_tokens);
    if (n == 0) return 0;
    hid_t fspace = H5Dget_space(s->layer_ds);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)s->d_model};
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mspace = H5Screate_simple(2, count, NULL);
    herr_t r = H5Dread(s->layer_ds, s->bf16, mspace, fspace, H5P_DEFAULT, out);
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (r < 0) return dk_err_set(err, DK_EXIT_RUNTIME, "%s: reading rows [%lld, %lld) failed", s->path,
                                 (long long)row0, (long long)(row0 + n));
    return 0;
}

int dk_act_store_rows(const dk_act_store *s, int64_t row0, int64_t n, float *out, dk_err *err) {
    size_t count = (size_t)(n * s->d_model);
    uint16_t *bits = malloc((count ? count : 1) * sizeof(uint16_t)); /* (n, d) bf16 */
    int rc = dk_act_store_rows_bf16(s, row0, n, bits, err);
    if (rc == 0)
        for (size_t i = 0; i < count; i++) out[i] = dk_bf16_to_f32(bits[i]);
    free(bits);
    return rc;
}

int dk_act_store_stats(const dk_act_store *s, double *mean, double *var, int64_t *count, dk_err *err) {
    char name[96];
    double *m2 = malloc((size_t)s->d_model * sizeof(double));
    int rc = 0;
    snprintf(name, sizeof name, "stats/layer_%lld/mean", (long long)s->layer);
    rc |= read_all(s->file, name, H5T_NATIVE_DOUBLE, mean);
    snprintf(name, sizeof name, "stats/layer_%lld/m2", (long long)s->layer);
    rc |= read_all(s->file, name, H5T_NATIVE_DOUBLE, m2);
    snprintf(name, sizeof name, "stats/layer_%lld/count", (long long)s->layer);
    rc |= read_all(s->file, name, H5T_NATIVE_INT64, count);
    if (rc == 0)
        for (int64_t j = 0; j < s->d_model; j++) var[j] = *count > 1 ? m2[j] / (double)(*count - 1) : 0.0;
    free(m2);
    return rc ? dk_err_set(err, DK_EXIT_RUNTIME, "%s: cannot read the statistics of layer %lld", s->path,
                           (long long)s->layer)
              : 0;
}

int dk_act_pair_open(dk_act_pair *p, const char *base_path, const char *ft_path, int64_t layer, dk_err *err) {
    memset(p, 0, sizeof *p);
    if (dk_act_store_open(&p->base, base_path, layer, false, err) != 0) return -1;
    if (dk_act_store_open(&p->ft, ft_path, layer, false, err) != 0) {
        dk_act_store_close(&p->base);
        return -1;
    }
    const dk_act_store *b = &p->base, *f = &p->ft;
    const char *what = NULL;
    if (b->d_model != f->d_model) what = "d_model";
    else if (b->n_tokens != f->n_tokens) what = "the number of tokens";
    else if (b->n_seqs != f->n_seqs) what = "the number of sequences";
    else if (b->skip_first != f->skip_first) what = "the leading tokens skipped per sequence";
    else if (!b->tokens != !f->tokens) what = "whether tokens are stored";
    else if (b->tokens && memcmp(b->tokens, f->tokens, (size_t)b->n_tokens * sizeof(int32_t)) != 0) what = "the tokens";
    else if (!b->tokens && (strcmp(b->dataset_hash, f->dataset_hash) != 0 ||
                            strcmp(b->tokenizer_hash, f->tokenizer_hash) != 0))
        what = "the dataset or tokenizer hash (their tokens are not stored)";
    else if (memcmp(b->seq_offsets, f->seq_offsets, (size_t)(b->n_seqs + 1) * sizeof(int64_t)) != 0)
        what = "the sequence offsets";
    if (what) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s and %s differ in %s: they were not cached from the same dataset with "
                   "the same tokenizer and settings", base_path, ft_path, what);
        dk_act_pair_close(p);
        return -1;
    }
    /* a difference of rows computed in bf16 and in fp32 would mostly measure the precision, not the finetune */
    if (strcmp(b->compute, f->compute) != 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s was computed with %s and %s with %s: their difference would mix "
                   "numerical precision into the finetuning effect; recompute one of them on the other's device",
                   base_path, b->compute, ft_path, f->compute);
        dk_act_pair_close(p);
        return -1;
    }
    p->d_model = b->d_model;
    p->n_tokens = b->n_tokens;
    p->n_seqs = b->n_seqs;
    p->tokens = b->tokens;
    p->seq_offsets = b->seq_offsets;
    return 0;
}

void dk_act_pair_close(dk_act_pair *p) {
    dk_act_store_close(&p->base);
    dk_act_store_close(&p->ft);
    memset(p, 0, sizeof *p);
}

int dk_act_pair_rows(const dk_act_pair *p, dk_act_which which, int64_t row0, int64_t n, float *out, dk_err *err) {
    if (which == DK_ACT_BASE) return dk_act_store_rows(&p->base, row0, n, out, err);
    if (which == DK_ACT_FINETUNED) return dk_act_store_rows(&p->ft, row0, n, out, err);
    if (dk_act_store_rows(&p->ft, row0, n, out, err) != 0) return -1;
    size_t count = (size_t)(n * p->d_model);
    float *base = malloc((count ? count : 1) * sizeof(float)); /* (n, d) */
    if (dk_act_store_rows(&p->base, row0, n, base, err) != 0) {
        free(base);
        return -1;
    }
    for (size_t i = 0; i < count; i++) out[i] -= base[i];
    free(base);
    return 0;
}

int dk_act_pair_sequence(const dk_act_pair *p, dk_act_which which, int64_t s, int64_t *row0, int64_t *n, float *out,
                         dk_err *err) {
    if (s < 0 || s >= p->n_seqs)
        return dk_err_set(err, DK_EXIT_USAGE, "sequence %lld outside [0, %lld)", (long long)s, (long long)p->n_seqs);
    *row0 = p->seq_offsets[s];
    *n = p->seq_offsets[s + 1] - p->seq_offsets[s];
    if (!out) return 0;
    return dk_act_pair_rows(p, which, *row0, *n, out, err);
}
