/* dict_norm.c — see dict_norm.h. */
#include "methods/dict_norm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/act_store.h"
#include "io/file.h"
#include "methods/dict_h5.h"

void dk_dict_norm_set(dk_dict_norm *nrm, int n_layers, int64_t d, const double *mean64, const double *std64,
                      double target_rms) {
    const int64_t width = n_layers * d;
    nrm->enabled = true;
    nrm->n_layers = n_layers;
    nrm->d = d;
    nrm->width = width;
    nrm->target_rms = target_rms;
    nrm->mean64 = dk_malloc((size_t)width * sizeof(double));
    nrm->std64 = dk_malloc((size_t)width * sizeof(double));
    memcpy(nrm->mean64, mean64, (size_t)width * sizeof(double));
    memcpy(nrm->std64, std64, (size_t)width * sizeof(double));
    nrm->mean = dk_malloc((size_t)width * sizeof(float));
    nrm->scale = dk_malloc((size_t)n_layers * sizeof(float));
    for (int64_t i = 0; i < width; i++) nrm->mean[i] = (float)mean64[i];
    for (int l = 0; l < n_layers; l++) {
        double total_var = 0;
        for (int64_t i = 0; i < d; i++) total_var += std64[l * d + i] * std64[l * d + i];
        nrm->scale[l] = (float)(target_rms / sqrt(total_var + 1e-8));
    }
}

void dk_dict_norm_identity(dk_dict_norm *nrm, const dk_dict_set *set) {
    memset(nrm, 0, sizeof *nrm);
    nrm->n_layers = set->target == DK_DICT_STACKED ? 2 : 1;
    nrm->d = set->d;
    nrm->width = set->width;
}

void dk_dict_norm_free(dk_dict_norm *nrm) {
    free(nrm->mean64), free(nrm->std64), free(nrm->mean), free(nrm->scale), free(nrm->cache_path);
    memset(nrm, 0, sizeof *nrm);
}

void dk_dict_norm_apply(const dk_dict_norm *nrm, float *x, int64_t n) {
    if (!nrm->enabled) return;
    for (int64_t r = 0; r < n; r++)
        for (int l = 0; l < nrm->n_layers; l++) {
            float *row = x + r * nrm->width + l * nrm->d;
            const float *mu = nrm->mean + l * nrm->d, s = nrm->scale[l];
            for (int64_t i = 0; i < nrm->d; i++) row[i] = (row[i] - mu[i]) * s;
        }
}

void dk_dict_norm_undo(const dk_dict_norm *nrm, float *x, int64_t n) {
    if (!nrm->enabled) return;
    for (int64_t r = 0; r < n; r++)
        for (int l = 0; l < nrm->n_layers; l++) {
            float *row = x + r * nrm->width + l * nrm->d;
            const float *mu = nrm->mean + l * nrm->d, s = nrm->scale[l] + 1e-8f;
            for (int64_t i = 0; i < nrm->d; i++) row[i] = row[i] / s + mu[i];
        }
}

/* ---- Chan merges of (count, mean, M2) --------------------------------------------------------------------- */

static void chan_merge(int64_t *n, double *mean, double *m2, int64_t nb, const double *mb, const double *m2b,
                       int64_t width) {
    if (nb == 0) return;
    const int64_t na = *n, nt = na + nb;
    for (int64_t i = 0; i < width; i++) {
        const double delta = mb[i] - mean[i];
        mean[i] += delta * (double)nb / (double)nt;
        m2[i] += m2b[i] + delta * delta * (double)na * (double)nb / (double)nt;
    }
    *n = nt;
}

/* ---- the stores' statistics (crosscoder) ---------------------------------------------------------------- */

int dk_dict_norm_from_stores(const dk_dict_set *set, double target_rms, dk_dict_norm *nrm, dk_err *err) {
    memset(nrm, 0, sizeof *nrm);
    const int n_layers = set->target == DK_DICT_STACKED ? 2 : 1;
    const int64_t d = set->d, width = n_layers * d;
    double *mean = dk_calloc((size_t)width, sizeof(double)), *m2 = dk_calloc((size_t)width, sizeof(double));
    double *mb = dk_malloc((size_t)d * sizeof(double)), *vb = dk_malloc((size_t)d * sizeof(double));
    int rc = 0;
    for (int l = 0; l < n_layers && rc == 0; l++) {
        /* stacked rows: layer 0 = base, 1 = finetuned; a single-model target uses that model's statistics */
        const bool ft = n_layers == 2 ? l == 1 : set->target == DK_DICT_FT;
        CHECK(n_layers == 2 || set->target == DK_DICT_BASE || set->target == DK_DICT_FT,
              "store statistics describe single models, not differences");
        int64_t n = 0;
        for (int k = 0; k < set->n && rc == 0; k++) {
            const dk_act_store *st = ft ? &set->src[k].pair.ft : &set->src[k].pair.base;
            int64_t count = 0;
            rc = dk_act_store_stats(st, mb, vb, &count, err);
            if (rc != 0) break;
            for (int64_t i = 0; i < d; i++) vb[i] *= (double)(count > 1 ? count - 1 : 0); /* back to M2 */
            chan_merge(&n, mean + l * d, m2 + l * d, count, mb, vb, d);
        }
        for (int64_t i = 0; i < d && rc == 0; i++) m2[l * d + i] = n > 0 ? sqrt(m2[l * d + i] / (double)n) : 0.0;
    }
    if (rc == 0) dk_dict_norm_set(nrm, n_layers, d, mean, m2, target_rms);
    free(mean), free(m2), free(mb), free(vb);
    return rc;
}

/* ---- the sampled statistics (recompute_normalizer) -------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t sample_key(const dk_method_job *job, const dk_dict_set *set, int64_t subsample, int64_t batch) {
    char head[256];
    snprintf(head, sizeof head, "dict-normalizer v1|%s|%lld|%lld|%lld|%lld|%lld|", dk_dict_target_name(set->target),
             (long long)set->layer, (long long)set->skip, (long long)subsample, (long long)batch, (long long)job->seed);
    uint64_t h = dk_fnv1a(DK_FNV_OFFSET, head, strlen(head));
    for (int k = 0; k < set->n; k++) {
        const dk_dict_source *s = &set->src[k];
        h = dk_fnv1a(h, s->name, strlen(s->name) + 1);
        h = dk_fnv1a(h, &s->pair.base.fingerprint, sizeof s->pair.base.fingerprint);
        h = dk_fnv1a(h, &s->pair.ft.fingerprint, sizeof s->pair.ft.fingerprint);
        h = dk_fnv1a(h, &s->n_kept, sizeof s->n_kept);
    }
    return h;
}

static int read_cache(const char *path, uint64_t key, int64_t width, double *mean, double *std) {
    if (!dk_is_file(path)) return -1;
    dk_h5r r;
    dk_err err = {0};
    if (dk_h5r_open(&r, path, &err) != 0) return -1;
    int64_t k = 0;
    int rc = dk_h5r_attr_i64(&r, "key", &k, &err);
    if (rc == 0 && (uint64_t)k != key) rc = -1;
    if (rc == 0) rc = dk_h5r_f64(&r, "mean", width, mean, &err);
    if (rc == 0) rc = dk_h5r_f64(&r, "std", width, std, &err);
    dk_h5r_close(&r);
    return rc;
}

int dk_dict_norm_sampled(dk_method_job *job, const dk_dict_set *set, int64_t subsample, int64_t batch,
                         const char *cache_dir, double target_rms, dk_dict_norm *nrm, dk_err *err) {
    memset(nrm, 0, sizeof *nrm);
    if (subsample < set->n || batch < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "normalization.subsample_size = %lld and batch_size = %lld: need at least "
                          "one row per dataset and a batch of at least 1", (long long)subsample, (long long)batch);
    const int n_layers = set->target == DK_DICT_STACKED ? 2 : 1;
    const int64_t width = set->width;
    const uint64_t key = sample_key(job, set, subsample, batch);
    double *mean = dk_calloc((size_t)width, sizeof(double)), *std = dk_calloc((size_t)width, sizeof(double));
    char *dir = NULL, *path = NULL;
    if (cache_dir) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
        dir = dk_path_join(cache_dir, hex);
        path = dk_path_join(dir, "normalizer.h5");
    }
    /* every rank looks; the answer must agree (all or none read it) */
    int have = path && read_cache(path, key, width, mean, std) == 0;
    MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, job->d.comm);
    if (have) {
        dk_dict_norm_set(nrm, n_layers, set->d, mean, std, target_rms);
        nrm->from_cache = true;
        nrm->cache_path = path;
        free(dir), free(mean), free(std);
        return 0;
    }
    /* the sample: per dataset subsample / n rows, uniform with replacement over its kept rows, sorted */
    const int64_t per = subsample / set->n;
    int64_t *idx = dk_malloc((size_t)(per * set->n) * sizeof(int64_t));
    uint64_t st = (uint64_t)job->seed ^ 0xbb67ae8584caa73bull;
    int64_t n_blocks = 0;
    for (int k = 0; k < set->n; k++) {
        int64_t *ik = idx + k * per;
        for (int64_t i = 0; i < per; i++) ik[i] = dk_dict_rng_below(&st, set->src[k].n_kept);
        qsort(ik, (size_t)per, sizeof *ik, cmp_i64);
        n_blocks += (per + batch - 1) / batch;
    }
    /* block statistics: block b on rank b % nranks, every slot written by exactly one rank (exact sums) */
    double *blocks = dk_calloc((size_t)(n_blocks * 2 * width), sizeof(double)); /* (n_blocks, 2, width) mean, M2 */
    int64_t *counts = dk_calloc((size_t)n_blocks, sizeof(int64_t));
    float *x = dk_malloc((size_t)(batch * width) * sizeof(float)); /* (batch, width) */
    int *src = dk_malloc((size_t)batch * sizeof(int));
    int64_t *row = dk_malloc((size_t)batch * sizeof(int64_t));
    int rc = 0;
    for (int k = 0, b = 0; k < set->n; k++)
        for (int64_t i0 = 0; i0 < per; i0 += batch, b++) {
            const int64_t n = per - i0 < batch ? per - i0 : batch;
            counts[b] = n;
            if (b % job->d.nranks != job->d.rank || rc != 0) continue;
            for (int64_t i = 0; i < n; i++) src[i] = k, row[i] = dk_dict_kept_row(&set->src[k], idx[k * per + i0 + i]);
            rc = dk_dict_read_rows(set, src, row, n, x, err);
            if (rc != 0) continue;
            double *bm = blocks + (int64_t)b * 2 * width, *b2 = bm + width;
            for (int64_t r = 0; r < n; r++)
                for (int64_t j = 0; j < width; j++) bm[j] += x[r * width + j];
            for (int64_t j = 0; j < width; j++) bm[j] /= (double)n;
            for (int64_t r = 0; r < n; r++)
                for (int64_t j = 0; j < width; j++) {
                    const double dv = x[r * width + j] - bm[j];
                    b2[j] += dv * dv;
                }
        }
    free(x), free(src), free(row), free(idx);
    if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    if (rc == 0) {
        MPI_Allreduce(MPI_IN_PLACE, blocks, (int)(n_blocks * 2 * width), MPI_DOUBLE, MPI_SUM, job->d.comm);
        double *m2 = dk_calloc((size_t)width, sizeof(double));
        int64_t n = 0;
        for (int64_t b = 0; b < n_blocks; b++)
            chan_merge(&n, mean, m2, counts[b], blocks + b * 2 * width, blocks + b * 2 * width + width, width);
        for (int64_t j = 0; j < width; j++) std[j] = sqrt(m2[j] / (double)n);
        free(m2);
        dk_dict_norm_set(nrm, n_layers, set->d, mean, std, target_rms);
        if (path && job->d.rank == 0) { /* a cache that cannot be written costs time, not results: warn */
            dk_err cerr = {0};
            dk_h5w w;
            if (dk_mkdirs(dir, &cerr) == 0 && dk_h5w_open(&w, path, &cerr) == 0) {
                dk_h5w_f64(&w, "mean", 1, &width, mean);
                dk_h5w_f64(&w, "std", 1, &width, std);
                dk_h5w_attr_i64(&w, "key", (int64_t)key);
                dk_h5w_attr_i64(&w, "subsample_size", per * set->n);
                dk_h5w_attr_str(&w, "target", dk_dict_target_name(set->target));
                dk_h5w_commit(&w, &cerr);
            }
            if (dk_err_is_set(&cerr)) LOG_WARN("normalizer cache not written: %s", cerr.msg);
        }
        nrm->cache_path = path;
        path = NULL;
    }
    free(blocks), free(counts), free(mean), free(std), free(dir), free(path);
    return rc;
}
