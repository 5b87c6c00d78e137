/* adl_check.c — test helper for diff_adl's results (docs/formats.md "ADL results"), read through the HDF5 C API:
 *
 *   adl_check golden RESULTS_DIR GOLDEN.safetensors DATASET
 *       against the seed's ADL in transformers + peft + numpy (tools/adl_reference.py): the same sequences,
 *       labels and layers, and the same counts of records read, too short and skipped; mean_diff, base_mean,
 *       ft_mean within 1e-4 of the reference, relative to the largest magnitude of the reference's row (a
 *       position's vector); model norms within 1e-4 relative; logit-lens ids equal except where the
 *       reference's own probabilities tie (equal within 1e-4 relative: two fp32 implementations agree on
 *       probabilities to ~2e-5, so closer ones can swap), and probabilities within 1e-4 relative; the
 *       summary's tokens equal tokenizer.decode([id]) of the reference (HF tokenizers).
 *   adl_check same A.h5 B.h5
 *       every dataset of A (the results, the summary, the sequences; not the root attributes, which record the
 *       rank count and time) exists in B with equal bytes, and B has no other: rank-count invariance.
 *   adl_check meaning RESULTS_DIR TOKENIZER ORGANISM_DATA PRETRAIN_DATA DATASET LAYER
 *       the "the result means something" check: domain tokens (>= 10 occurrences in the organism's
 *       documents and >= 20x more frequent per token of text there than in the pretraining documents; counted
 *       with the C tokenizer, no special tokens) among the top 20 of the logit lens of the mean difference at
 *       LAYER ("first": the run's first layer) on DATASET: at least 3 of them at 3 or more of positions 0-4.
 *       Prints the top 20 of each position with the domain tokens in [brackets].
 * Exit 0 when all is well, 1 with messages otherwise. */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strutil.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

static const double TOL = 1e-4;
static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "adl_check: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

/* ---- reading results.h5 ------------------------------------------------------------------------------------ */

/* A dataset converted to `type` (native), malloc'ed; *n elements. NULL (and a failure) when absent. */
static void *h5_read(hid_t f, const char *path, hid_t type, int64_t *n) {
    *n = 0;
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(f, path, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0) {
        fail("results.h5 has no dataset %s", path);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    *n = H5Sget_simple_extent_npoints(sp);
    void *buf = dk_malloc((size_t)(*n > 0 ? *n : 1) * H5Tget_size(type));
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) fail("cannot read %s", path);
    H5Sclose(sp);
    H5Dclose(ds);
    return buf;
}

static hid_t string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* A scalar string dataset (e.g. summary/json), malloc'ed. */
static char *h5_string(hid_t f, const char *path) {
    int64_t n = 0;
    hid_t t = string_type();
    char **s = h5_read(f, path, t, &n);
    char *out = s && n == 1 && s[0] ? dk_strdup(s[0]) : NULL;
    if (s && n == 1) free(s[0]);
    free(s);
    H5Tclose(t);
    return out;
}

/* ---- reading the golden ------------------------------------------------------------------------------------ */

/* A golden tensor's raw values (dtype checked), malloc'ed; *n elements. */
static void *st_read(const dk_st_checkpoint *ck, const char *name, const char *dtype, int64_t *n) {
    const dk_st_tensor *t = dk_st_find(ck, name);
    if (!t || strcmp(t->dtype_name, dtype) != 0) {
        fail("golden: no %s tensor %s", dtype, name);
        *n = 0;
        return NULL;
    }
    *n = t->numel;
    void *buf = dk_malloc(t->nbytes ? t->nbytes : 1);
    memcpy(buf, t->data, t->nbytes);
    return buf;
}

/* ---- golden ------------------------------------------------------------------------------------------------- */

static void same_i64(const char *what, const int64_t *a, int64_t na, const int64_t *b, int64_t nb) {
    if (!a || !b) return;
    if (na != nb) {
        fail("%s: %lld values in results.h5, %lld in the golden", what, (long long)na, (long long)nb);
        return;
    }
    for (int64_t i = 0; i < na; i++)
        if (a[i] != b[i]) {
            fail("%s[%lld] = %lld, the golden has %lld", what, (long long)i, (long long)a[i], (long long)b[i]);
            return;
        }
}

/* (rows, d) vectors against the golden, relative to each golden row's largest magnitude. */
static double compare_rows(const char *what, const float *a, const float *b, int64_t rows, int64_t d) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double scale = 0;
        for (int64_t j = 0; j < d; j++) scale = fmax(scale, fabs(b[r * d + j]));
        for (int64_t j = 0; j < d; j++) {
            double e = fabs((double)a[r * d + j] - b[r * d + j]) / (scale > 0 ? scale : 1);
            if (e > worst) worst = e;
            if (!(e <= TOL)) {
                fail("%s row %lld [%lld]: %.9g, the golden has %.9g (relative error %.2e > %.0e)", what, (long long)r,
                     (long long)j, a[r * d + j], b[r * d + j], e, TOL);
                return e;
            }
        }
    }
    return worst;
}

/* One lens table (rows, k) against the golden's (rows, kg >= k). Counts swaps at ties. */
static void compare_lens(const char *what, const int32_t *ids, const float *probs, const int32_t *gids,
                         const float *gprobs, int64_t rows, int64_t k, int64_t kg, int64_t *exact_ties,
                         int64_t *close_ties, double *worst_prob) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < k; c++) {
            const int32_t id = ids[r * k + c];
            int64_t at = -1;
            for (int64_t j = 0; j < kg && at < 0; j++)
                if (gids[r * kg + j] == id) at = j;
            if (at < 0) {
                fail("%s row %lld: id %d at rank %lld is not among the golden's top %lld", what, (long long)r, id,
                     (long long)c, (long long)kg);
                return;
            }
            const double p_ours_ref = gprobs[r * kg + at], p_rank_ref = gprobs[r * kg + c];
            if (at != c) {
                if (fabs(p_ours_ref - p_rank_ref) > TOL * p_rank_ref) {
                    fail("%s row %lld rank %lld: id %d (reference probability %.9g), the golden has id %d (%.9g): "
                         "not a tie", what, (long long)r, (long long)c, id, p_ours_ref, gids[r * kg + c], p_rank_ref);
                    return;
                }
                if (p_ours_ref == p_rank_ref) (*exact_ties)++;
                else (*close_ties)++;
            }
            const double e = fabs(probs[r * k + c] - p_ours_ref) / p_ours_ref;
            if (e > *worst_prob) *worst_prob = e;
            if (!(e <= TOL)) {
                fail("%s row %lld rank %lld: probability %.9g of id %d, the golden has %.9g", what, (long long)r,
                     (long long)c, probs[r * k + c], id, p_ours_ref);
                return;
            }
        }
}

static int golden(const char *dir, const char *golden_path, const char *ds) {
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(golden_path, &err);
    if (!ck) {
        fprintf(stderr, "adl_check: %s\n", err.msg);
        return 1;
    }
    char *h5 = dk_path_join(dir, "results.h5");
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "adl_check: cannot open %s\n", h5);
        return 1;
    }
    char path[512];
    int64_t na, nb;
    /* the sequences as run */
    snprintf(path, sizeof path, "sequences/%s/ids", ds);
    int64_t *ids = h5_read(f, path, H5T_NATIVE_INT64, &na);
    int32_t *gids32 = st_read(ck, "ids", "I32", &nb);
    int64_t *gids = dk_malloc((size_t)(nb ? nb : 1) * sizeof *gids);
    for (int64_t i = 0; i < nb; i++) gids[i] = gids32[i];
    same_i64("sequences ids", ids, na, gids, nb);
    const char *names[][2] = {{"offsets", "offsets"}, {"positions", "positions"}};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "sequences/%s/%s", ds, names[i][0]);
        int64_t *a = h5_read(f, path, H5T_NATIVE_INT64, &na), *b = st_read(ck, names[i][1], "I64", &nb);
        same_i64(path, a, na, b, nb);
        free(a), free(b);
    }
    /* what was read, as the seed's loop counts it: records read, too short, skipped */
    snprintf(path, sizeof path, "sequences/%s", ds);
    int64_t counts[3] = {-1, -1, -1}, *gcounts = st_read(ck, "counts", "I64", &nb);
    static const char *const count_attrs[3] = {"records_read", "records_too_short", "records_skipped"};
    for (int i = 0; i < 3; i++) {
        hid_t a = -1;
        H5E_BEGIN_TRY { a = H5Aopen_by_name(f, path, count_attrs[i], H5P_DEFAULT, H5P_DEFAULT); } H5E_END_TRY;
        if (a >= 0) H5Aread(a, H5T_NATIVE_INT64, &counts[i]), H5Aclose(a);
    }
    same_i64("records read, too short, skipped", counts, 3, gcounts, nb);
    free(gcounts);
    snprintf(path, sizeof path, "model_norms/%s/layers", ds);
    int64_t n_layers, n_glayers;
    int64_t *layers = h5_read(f, path, H5T_NATIVE_INT64, &n_layers), *glayers = st_read(ck, "layers", "I64", &n_glayers);
    same_i64("layers", layers, n_layers, glayers, n_glayers);
    const char *norm_names[][2] = {{"base_model_norms", "base_norms"}, {"ft_model_norms", "ft_norms"}};
    for (int i = 0; i < 2 && !failures; i++) {
        snprintf(path, sizeof path, "model_norms/%s/%s", ds, norm_names[i][0]);
        double *a = h5_read(f, path, H5T_NATIVE_DOUBLE, &na), *b = st_read(ck, norm_names[i][1], "F64", &nb);
        for (int64_t l = 0; a && b && l < na && l < nb; l++) {
            double e = fabs(a[l] - b[l]) / fabs(b[l]);
            printf("%s %s layer %lld: %.9g vs %.9g (relative error %.2e)\n", ds, norm_names[i][0],
                   (long long)layers[l], a[l], b[l], e);
            if (!(e <= TOL)) fail("%s layer %lld: %.9g, the golden has %.9g", path, (long long)layers[l], a[l], b[l]);
        }
        free(a), free(b);
    }
    int64_t P = 0;
    snprintf(path, sizeof path, "layer_%lld/%s/positions", failures ? 0LL : (long long)layers[0], ds);
    int64_t *labels = failures ? NULL : h5_read(f, path, H5T_NATIVE_INT64, &P), *glabels = st_read(ck, "labels", "I64", &nb);
    same_i64("labels", labels, P, glabels, nb);

    static const char *const variants[] = {"mean_diff", "base_mean", "ft_mean"};
    int64_t exact_ties = 0, close_ties = 0;
    double worst_prob = 0;
    char *summary_text = h5_string(f, "summary/json");
    cJSON *summary = summary_text ? cJSON_Parse(summary_text) : NULL;
    for (int64_t l = 0; l < n_layers && !failures; l++) {
        for (int v = 0; v < 3 && !failures; v++) {
            snprintf(path, sizeof path, "layer_%lld/%s/%s", (long long)layers[l], ds, variants[v]);
            char gname[128];
            snprintf(gname, sizeof gname, "layer%lld.%s", (long long)layers[l], variants[v]);
            float *a = h5_read(f, path, H5T_NATIVE_FLOAT, &na), *b = st_read(ck, gname, "F32", &nb);
            if (a && b && na == nb) {
                double e = compare_rows(path, a, b, P, na / P);
                printf("%s: max relative error %.2e (per position, relative to its largest magnitude)\n", path, e);
            } else if (a && b) {
                fail("%s: %lld values, the golden has %lld", path, (long long)na, (long long)nb);
            }
            free(a), free(b);
            for (int side = 0; side < 2 && !failures; side++) {
                const char *prefix = side ? "inv" : "top";
                char p_ids[512], p_probs[512], g_ids[160], g_probs[160];
                snprintf(p_ids, sizeof p_ids, "layer_%lld/%s/logit_lens/%s/%s_ids", (long long)layers[l], ds,
                         variants[v], prefix);
                snprintf(p_probs, sizeof p_probs, "layer_%lld/%s/logit_lens/%s/%s_probs", (long long)layers[l], ds,
                         variants[v], prefix);
                snprintf(g_ids, sizeof g_ids, "%s.%s_ids", gname, prefix);
                snprintf(g_probs, sizeof g_probs, "%s.%s_probs", gname, prefix);
                int64_t n_ids, n_probs, ng_ids, ng_probs;
                int32_t *li = h5_read(f, p_ids, H5T_NATIVE_INT32, &n_ids), *gi = st_read(ck, g_ids, "I32", &ng_ids);
                float *lp = h5_read(f, p_probs, H5T_NATIVE_FLOAT, &n_probs), *gp = st_read(ck, g_probs, "F32", &ng_probs);
                if (li && gi && lp && gp)
                    compare_lens(p_ids, li, lp, gi, gp, P, n_ids / P, ng_ids / P, &exact_ties, &close_ties, &worst_prob);
                free(li), free(gi), free(lp), free(gp);
            }
        }
        /* the summary's tokens: HF's decode of the golden ids where ours are the same ids */
        char key[64];
        snprintf(key, sizeof key, "decoded.layer%lld", (long long)layers[l]);
        const char *decoded = dk_st_metadata(ck, key);
        cJSON *want = decoded ? cJSON_Parse(decoded) : NULL;
        /* this run's only dataset is the summary's first (the summary names datasets ds1, ds2, ...) */
        const cJSON *first = summary ? cJSON_GetObjectItem(summary, "datasets") : NULL;
        char lkey[32];
        snprintf(lkey, sizeof lkey, "%lld", (long long)layers[l]);
        const cJSON *layer_entry = first && first->child
                                       ? cJSON_GetObjectItem(cJSON_GetObjectItem(first->child, "layers"), lkey) : NULL;
        int checked = 0;
        char gname[128];
        snprintf(path, sizeof path, "layer_%lld/%s/logit_lens/mean_diff/top_ids", (long long)layers[l], ds);
        int32_t *top = h5_read(f, path, H5T_NATIVE_INT32, &na);
        snprintf(gname, sizeof gname, "layer%lld.mean_diff.top_ids", (long long)layers[l]);
        int32_t *gtop = st_read(ck, gname, "I32", &nb);
        const int64_t k = na / P, kg = nb / P;
        for (const cJSON *pos = want ? want->child : NULL; pos && layer_entry && top && gtop; pos = pos->next) {
            const cJSON *got = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
                cJSON_GetObjectItem(layer_entry, "logit_lens"), "per_position"), pos->string), "tokens");
            int64_t row = -1;
            for (int64_t p = 0; p < P; p++)
                if (labels[p] == atoll(pos->string)) row = p;
            for (int i = 0; i < cJSON_GetArraySize(pos) && row >= 0; i++) {
                if (top[row * k + i] != gtop[row * kg + i]) continue; /* swapped at a tie */
                const cJSON *g = cJSON_GetArrayItem(got, i), *w = cJSON_GetArrayItem(pos, i);
                if (!cJSON_IsString(g) || strcmp(g->valuestring, w->valuestring) != 0)
                    fail("summary layer %lld position %s token %d: %s, HF decodes id %d as %s", (long long)layers[l],
                         pos->string, i, cJSON_IsString(g) ? g->valuestring : "(none)", gtop[row * kg + i],
                         w->valuestring);
                checked++;
            }
        }
        if (want && layer_entry) printf("summary layer %lld: %d tokens equal HF's decode\n", (long long)layers[l], checked);
        cJSON_Delete(want);
        free(top), free(gtop);
    }
    printf("%s: logit-lens ids equal but for %lld swaps at exact ties and %lld within %.0e (reference "
           "probabilities); probabilities within %.2e\n", ds, (long long)exact_ties, (long long)close_ties, TOL,
           worst_prob);
    cJSON_Delete(summary);
    free(summary_text);
    free(ids), free(gids), free(gids32), free(layers), free(glayers), free(labels), free(glabels);
    H5Fclose(f);
    free(h5);
    dk_st_close(ck);
    return failures ? 1 : 0;
}

/* ---- same --------------------------------------------------------------------------------------------------- */

typedef struct visit {
    hid_t other;
    int64_t count;
} visit;

/* A link to a dataset (not a group), opened; -1 otherwise. */
static hid_t open_dataset(hid_t loc, const char *name) {
    hid_t d = -1;
    H5E_BEGIN_TRY { d = H5Dopen2(loc, name, H5P_DEFAULT); } H5E_END_TRY;
    return d;
}

static herr_t compare_object(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    visit *v = data;
    hid_t a = open_dataset(loc, name), b = -1;
    if (a < 0) return 0;
    v->count++;
    H5E_BEGIN_TRY { b = H5Dopen2(v->other, name, H5P_DEFAULT); } H5E_END_TRY;
    if (b < 0) {
        fail("%s is missing from the second file", name);
        H5Dclose(a);
        return 0;
    }
    hid_t ta = H5Dget_type(a), sa = H5Dget_space(a), sb = H5Dget_space(b);
    const int64_t n = H5Sget_simple_extent_npoints(sa);
    if (n != H5Sget_simple_extent_npoints(sb)) {
        fail("%s: %lld values against %lld", name, (long long)n, (long long)H5Sget_simple_extent_npoints(sb));
    } else if (H5Tget_class(ta) == H5T_STRING) {
        hid_t st = string_type();
        char **xa = dk_calloc((size_t)(n ? n : 1), sizeof *xa), **xb = dk_calloc((size_t)(n ? n : 1), sizeof *xb);
        H5Dread(a, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, xa);
        H5Dread(b, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, xb);
        for (int64_t i = 0; i < n; i++) {
            if (strcmp(xa[i] ? xa[i] : "", xb[i] ? xb[i] : "") != 0 && strcmp(name, "config_yaml") != 0)
                fail("%s[%lld] differs: \"%.80s\" against \"%.80s\"", name, (long long)i, xa[i], xb[i]);
            free(xa[i]), free(xb[i]);
        }
        free(xa), free(xb);
        H5Tclose(st);
    } else {
        hid_t nt = H5Tget_native_type(ta, H5T_DIR_ASCEND);
        size_t bytes = (size_t)n * H5Tget_size(nt);
        char *xa = dk_malloc(bytes + 1), *xb = dk_malloc(bytes + 1);
        H5Dread(a, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, xa);
        H5Dread(b, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, xb);
        if (memcmp(xa, xb, bytes) != 0) fail("%s differs", name);
        free(xa), free(xb);
        H5Tclose(nt);
    }
    H5Tclose(ta), H5Sclose(sa), H5Sclose(sb);
    H5Dclose(a), H5Dclose(b);
    return 0;
}

static herr_t count_object(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    hid_t d = open_dataset(loc, name);
    if (d >= 0) ((visit *)data)->count++, H5Dclose(d);
    return 0;
}

static int same(const char *pa, const char *pb) {
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0) {
        fprintf(stderr, "adl_check: cannot open %s or %s\n", pa, pb);
        return 1;
    }
    visit va = {.other = b}, vb = {0};
    H5Lvisit(a, H5_INDEX_NAME, H5_ITER_INC, compare_object, &va);
    H5Lvisit(b, H5_INDEX_NAME, H5_ITER_INC, count_object, &vb);
    if (va.count != vb.count) fail("%s has %lld datasets, %s %lld", pa, (long long)va.count, pb, (long long)vb.count);
    printf("%lld datasets compared: %s\n", (long long)va.count, failures ? "DIFFERENT" : "identical");
    H5Fclose(a);
    H5Fclose(b);
    return failures ? 1 : 0;
}

/* ---- meaning ------------------------------------------------------------------------------------------------ */

/* Token counts over the "text" fields of a JSON Lines file (no special tokens); returns the total. */
static int64_t count_tokens(dk_tokenizer *tok, const char *path, int64_t *counts, int64_t V) {
    size_t size = 0;
    dk_err err = {0};
    char *data = dk_read_file(path, &size, &err);
    if (!data) {
        fail("%s", err.msg);
        return 0;
    }
    int64_t total = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *obj = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(obj, "text");
        dk_tok_ids ids = {0};
        if (cJSON_IsString(text) && dk_tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), false,
                                                        &ids, &err) != 0)
            fail("%s", err.msg);
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < V) counts[ids.ids[i]]++, total++;
        dk_tok_ids_free(&ids);
        cJSON_Delete(obj);
    }
    free(data);
    return total;
}

static int meaning(const char *dir, const char *tok_path, const char *org_path, const char *pre_path, const char *ds,
                   const char *layer) {
    dk_err err = {0};
    dk_tokenizer *tok = dk_tokenizer_load(tok_path, &err);
    if (!tok) {
        fprintf(stderr, "adl_check: %s\n", err.msg);
        return 1;
    }
    const int64_t V = dk_tokenizer_vocab_size(tok);
    int64_t *org = dk_calloc((size_t)V, sizeof *org), *pre = dk_calloc((size_t)V, sizeof *pre);
    const int64_t org_total = count_tokens(tok, org_path, org, V), pre_total = count_tokens(tok, pre_path, pre, V);
    bool *domain = dk_calloc((size_t)V, sizeof *domain);
    int64_t n_domain = 0;
    for (int64_t t = 0; t < V; t++) {
        /* freq_org >= 20 freq_pre  <=>  org[t] · pre_total >= 20 · pre[t] · org_total (pre[t] = 0: infinitely more) */
        domain[t] = org[t] >= 10 && (double)org[t] * (double)pre_total >= 20.0 * (double)pre[t] * (double)org_total;
        n_domain += domain[t];
    }
    printf("domain tokens: %lld of %lld (organism documents: %lld tokens; pretraining documents: %lld tokens)\n",
           (long long)n_domain, (long long)V, (long long)org_total, (long long)pre_total);
    char *h5 = dk_path_join(dir, "results.h5"), path[512];
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "adl_check: cannot open %s\n", h5);
        return 1;
    }
    int64_t n_ids = 0, P = 0;
    char layer_text[32];
    snprintf(layer_text, sizeof layer_text, "%s", layer);
    if (strcmp(layer, "first") == 0) { /* the run's first layer (the default run has one: 0.5, the middle) */
        snprintf(path, sizeof path, "model_norms/%s/layers", ds);
        int64_t *layers = h5_read(f, path, H5T_NATIVE_INT64, &n_ids);
        snprintf(layer_text, sizeof layer_text, "%lld", layers && n_ids > 0 ? (long long)layers[0] : -1LL);
        free(layers);
        layer = layer_text;
        printf("layer %s\n", layer);
    }
    snprintf(path, sizeof path, "layer_%s/%s/logit_lens/mean_diff/top_ids", layer, ds);
    int32_t *ids = h5_read(f, path, H5T_NATIVE_INT32, &n_ids);
    snprintf(path, sizeof path, "layer_%s/%s/positions", layer, ds);
    int64_t *labels = h5_read(f, path, H5T_NATIVE_INT64, &P);
    int positions_ok = 0;
    for (int64_t p = 0; ids && labels && p < P; p++) {
        if (labels[p] < 0 || labels[p] > 4) continue;
        const int64_t k = n_ids / P;
        int hits = 0, never_in_pretraining = 0;
        dk_strbuf line = {0};
        for (int64_t i = 0; i < 20 && i < k; i++) {
            const int32_t id = ids[p * k + i];
            const bool is_domain = id < V && domain[id];
            char *text = dk_tokenizer_decode(tok, &id, 1, false, NULL, &err);
            dk_strbuf_printf(&line, " %s%s%s", is_domain ? "[" : "", text ? text : "?", is_domain ? "]" : "");
            free(text);
            hits += is_domain;
            never_in_pretraining += is_domain && pre[id] == 0;
        }
        printf("position %lld: %d domain tokens in the top 20 (%d of them never in the pretraining text):%s\n",
               (long long)labels[p], hits, never_in_pretraining, line.data ? line.data : "");
        dk_strbuf_free(&line);
        positions_ok += hits >= 3;
    }
    printf("%d of positions 0-4 have >= 3 domain tokens in the top 20 (needed: 3)\n", positions_ok);
    if (positions_ok < 3) fail("the logit lens of the mean difference does not show the organism's domain");
    free(ids), free(labels), free(org), free(pre), free(domain), free(h5);
    H5Fclose(f);
    dk_tokenizer_free(tok);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "golden") == 0) return golden(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "same") == 0) return same(argv[2], argv[3]);
    if (argc == 8 && strcmp(argv[1], "meaning") == 0) return meaning(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7]);
    fprintf(stderr, "usage: adl_check golden RESULTS_DIR GOLDEN.safetensors DATASET\n"
                    "       adl_check same A.h5 B.h5\n"
                    "       adl_check meaning RESULTS_DIR TOKENIZER ORGANISM_DATA PRETRAIN_DATA DATASET LAYER\n");
    return 2;
}
