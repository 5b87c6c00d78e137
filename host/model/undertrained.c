/* undertrained.c — the under-trained token indicator of undertrained.h: reference ids from the tokenizer, the
 * distance of every unembedding row to the mean reference row, the cluster test and the flags. The unembedding
 * is read a tile of rows at a time (a 128k x 4096 bf16 head would be 2 GB in fp32), distances in fp64. */
#include "model/undertrained.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_TILE = 1024 };

void dk_undertrained_reference_ids(const dk_tokenizer *tok, int64_t vocab_size, int32_t **ids, int64_t *n) {
    *ids = dk_malloc((size_t)(vocab_size > 0 ? vocab_size : 1) * sizeof **ids);
    *n = 0;
    int32_t tok_vocab = tok ? dk_tokenizer_vocab_size(tok) : 0;
    for (int64_t id = 0; id < vocab_size; id++) {
        bool unused = false;
        if (!tok) break;
        if (id >= tok_vocab) unused = true; /* a padding row: no token maps to it */
        else if (!dk_tokenizer_is_added(tok, (int32_t)id)) {
            size_t len = 0;
            char *bytes = dk_tokenizer_token_bytes(tok, (int32_t)id, &len, NULL);
            unused = bytes && len > 0 && !dk_utf8_can_occur(bytes, len);
            free(bytes);
        }
        if (unused) (*ids)[(*n)++] = (int32_t)id;
    }
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ||a - b|| in fp64 for an fp32 row and an fp64 point. */
static double distance(const float *a, const double *b, int64_t H) {
    double s = 0;
    for (int64_t k = 0; k < H; k++) s += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
    return sqrt(s);
}

/* s = max over reference rows of the distance to the mean of the other reference rows. */
static double reference_spread(const float *rows, int64_t n, int64_t H, const double *mean) {
    double *others = dk_malloc((size_t)H * sizeof *others), spread = 0;
    for (int64_t j = 0; j < n; j++) {
        for (int64_t k = 0; k < H; k++) others[k] = (mean[k] * (double)n - rows[j * H + k]) / (double)(n - 1);
        spread = fmax(spread, distance(rows + j * H, others, H));
    }
    free(others);
    return spread;
}

int dk_undertrained_compute(const dk_st_tensor *unembed, const int32_t *reference_ids, int64_t n_reference,
                            dk_undertrained *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    if (unembed->ndim != 2)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s in %s: the unembedding must be a matrix (vocab, hidden), not %d-D",
                          unembed->name, unembed->file, unembed->ndim);
    const int64_t V = unembed->shape[0], H = unembed->shape[1];
    for (int64_t j = 0; j < n_reference; j++)
        if (reference_ids[j] < 0 || reference_ids[j] >= V)
            return dk_err_set(err, DK_EXIT_USAGE, "reference id %d is not a row of %s (%lld rows)", reference_ids[j],
                              unembed->name, (long long)V);
    out->vocab_size = V;
    out->n_reference = n_reference;
    out->reference_ids = dk_malloc((size_t)(n_reference > 0 ? n_reference : 1) * sizeof *out->reference_ids);
    if (n_reference) memcpy(out->reference_ids, reference_ids, (size_t)n_reference * sizeof *reference_ids);
    qsort(out->reference_ids, (size_t)n_reference, sizeof *out->reference_ids, cmp_int32);
    out->distance = dk_malloc((size_t)V * sizeof *out->distance);
    out->flagged = dk_calloc((size_t)V, sizeof *out->flagged);
    if (n_reference < 2) {
        out->status = DK_UNDERTRAINED_NO_REFERENCE;
        for (int64_t i = 0; i < V; i++) out->distance[i] = NAN;
        return 0;
    }
    /* r: the mean reference row (fp64) */
    float *ref_rows = dk_malloc((size_t)(n_reference * H) * sizeof *ref_rows); /* (n_reference, H) */
    double *mean = dk_calloc((size_t)H, sizeof *mean);
    for (int64_t j = 0; j < n_reference; j++) {
        dk_weights_rows_f32(unembed, out->reference_ids[j], 1, ref_rows + j * H);
        for (int64_t k = 0; k < H; k++) mean[k] += ref_rows[j * H + k];
    }
    for (int64_t k = 0; k < H; k++) mean[k] /= (double)n_reference;
    out->spread = reference_spread(ref_rows, n_reference, H, mean);
    /* d_i over every row, a tile at a time */
    float *tile = dk_malloc((size_t)(ROW_TILE * H) * sizeof *tile); /* (ROW_TILE, H) */
    for (int64_t r0 = 0; r0 < V; r0 += ROW_TILE) {
        int64_t rows = V - r0 < ROW_TILE ? V - r0 : ROW_TILE;
        dk_weights_rows_f32(unembed, r0, rows, tile);
        for (int64_t i = 0; i < rows; i++) out->distance[r0 + i] = (float)distance(tile + i * H, mean, H);
    }
    /* median over the ids outside the reference */
    float *others = dk_malloc((size_t)V * sizeof *others);
    int64_t n_others = 0;
    for (int64_t i = 0, j = 0; i < V; i++) {
        while (j < n_reference && out->reference_ids[j] < i) j++;
        if (j < n_reference && out->reference_ids[j] == i) continue;
        others[n_others++] = out->distance[i];
    }
    if (n_others > 0) {
        qsort(others, (size_t)n_others, sizeof *others, cmp_float);
        out->median_distance = n_others % 2 ? others[n_others / 2]
                                            : 0.5 * ((double)others[n_others / 2 - 1] + others[n_others / 2]);
    }
    if (n_others == 0 || out->spread > DK_UNDERTRAINED_CLUSTER_RATIO * out->median_distance) {
        out->status = DK_UNDERTRAINED_NO_CLUSTER;
    } else {
        out->status = DK_UNDERTRAINED_FLAGGED;
        out->threshold = fmax(DK_UNDERTRAINED_THRESHOLD_FACTOR * out->spread, 1e-6 * out->median_distance);
        for (int64_t i = 0; i < V; i++)
            if (out->distance[i] <= out->threshold) {
                out->flagged[i] = true;
                out->n_flagged++;
            }
        for (int64_t j = 0; j < n_reference; j++)
            if (!out->flagged[out->reference_ids[j]]) {
                out->flagged[out->reference_ids[j]] = true;
                out->n_flagged++;
            }
    }
    free(others);
    free(tile);
    free(mean);
    free(ref_rows);
    return 0;
}

int dk_undertrained_for_model(const dk_model *m, const dk_tokenizer *tok, dk_undertrained *out, dk_err *err) {
    int32_t *ids;
    int64_t n;
    dk_undertrained_reference_ids(tok, m->w.lm_head->shape[0], &ids, &n);
    int rc = dk_undertrained_compute(m->w.lm_head, ids, n, out, err);
    free(ids);
    return rc;
}

void dk_undertrained_free(dk_undertrained *u) {
    free(u->reference_ids);
    free(u->distance);
    free(u->flagged);
    memset(u, 0, sizeof *u);
}

const char *dk_undertrained_status_name(dk_undertrained_status s) {
    switch (s) {
    case DK_UNDERTRAINED_FLAGGED: return "flagged";
    case DK_UNDERTRAINED_NO_CLUSTER: return "no_cluster";
    case DK_UNDERTRAINED_NO_REFERENCE: return "no_reference";
    }
    return "?";
}

int dk_undertrained_mode_parse(const char *value, const char *where, dk_undertrained_mode *mode, dk_err *err) {
    if (value && strcmp(value, "mark") == 0) *mode = DK_UNDERTRAINED_MARK;
    else if (value && strcmp(value, "filter") == 0) *mode = DK_UNDERTRAINED_FILTER;
    else if (value && strcmp(value, "off") == 0) *mode = DK_UNDERTRAINED_OFF;
    else
        return dk_err_set(err, DK_EXIT_USAGE, "%s: '%s' is not one of mark (keep the under-trained tokens, marked), "
                          "filter (leave them out) or off (no detection)", where, value ? value : "(null)");
    return 0;
}
