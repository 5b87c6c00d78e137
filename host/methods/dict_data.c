/* dict_data.c — see dict_data.h. */
#define _GNU_SOURCE /* pread */
#include "methods/dict_data.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format.h"
#include "core/log.h"
#include "kernels/dtype_convert.h"

static const char *const GROUPS[3] = {"dataset.chat", "dataset.pretraining", "organism.dataset"};
static const char *const USE_KEYS[3] = {"diffing.method.datasets.use_chat_dataset",
                                        "diffing.method.datasets.use_pretraining_dataset",
                                        "diffing.method.datasets.use_training_dataset"};
static const char *const TARGETS[5] = {"difference_ftb", "difference_bft", "base", "ft", "stacked"};

int dk_dict_target_parse(const char *s, const char *key, bool allow_stacked, dk_dict_target *t, dk_err *err) {
    for (int i = 0; i < (allow_stacked ? 5 : 4); i++)
        if (strcmp(s, TARGETS[i]) == 0) {
            *t = (dk_dict_target)i;
            return 0;
        }
    return dk_err_set(err, DK_EXIT_USAGE, "%s = %s: expected difference_ftb (finetuned - base), difference_bft "
                      "(base - finetuned), base or ft", key, s);
}

const char *dk_dict_target_name(dk_dict_target t) { return TARGETS[t]; }

/* ---- random numbers ----------------------------------------------------------------------------------------- */

uint64_t dk_dict_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int64_t dk_dict_rng_below(uint64_t *state, int64_t n) {
    const uint64_t un = (uint64_t)n, limit = UINT64_MAX - UINT64_MAX % un;
    uint64_t r;
    do r = dk_dict_rng_next(state);
    while (r >= limit);
    return (int64_t)(r % un);
}

/* ---- the set ------------------------------------------------------------------------------------------------ */

/* The file offset of a contiguous HDF5 dataset's data, or -1. */
static int64_t contiguous_offset(int64_t ds) {
    hid_t dcpl = H5Dget_create_plist((hid_t)ds);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (layout != H5D_CONTIGUOUS) return -1;
    haddr_t a = H5Dget_offset((hid_t)ds);
    return a == HADDR_UNDEF ? -1 : (int64_t)a;
}

/* calculate_samples_per_dataset: all rows when they fit, else proportional shares (int of the float). */
static void samples_per_dataset(const int64_t *len, int n, int64_t max_total, int64_t *out) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += len[i];
    for (int i = 0; i < n; i++) {
        if (max_total <= 0 || total <= max_total) {
            out[i] = len[i];
        } else {
            int64_t v = (int64_t)((double)len[i] / (double)total * (double)max_total);
            out[i] = v < len[i] ? v : len[i];
        }
    }
}

int dk_dict_set_open(dk_method_job *job, const char *split, int64_t layer, dk_dict_target target, int64_t skip,
                     int64_t max_total, dk_dict_set *set, dk_err *err) {
    memset(set, 0, sizeof *set);
    set->target = target;
    set->skip = skip;
    set->layer = layer;
    set->split = split;
    if (skip < 0) return dk_err_set(err, DK_EXIT_USAGE, "ignore_first_n_tokens_per_sample_during_training = %lld: must "
                                    "be >= 0", (long long)skip);
    for (int g = 0; g < 3; g++) {
        if (!dk_cfg_bool(job->cfg, USE_KEYS[g])) continue;
        char *id_key = dk_sprintf("%s.id", GROUPS[g]);
        bool configured = dk_cfg_has(job->cfg, id_key);
        free(id_key);
        if (!configured) {
            if (job->d.rank == 0) LOG_INFO("%s: %s is left out of the configuration; skipped", job->spec->job, GROUPS[g]);
            continue;
        }
        dk_dict_source *s = &set->src[set->n];
        s->fd[0] = s->fd[1] = -1;
        s->group = GROUPS[g];
        if (dk_method_open_stores(job, GROUPS[g], split, layer, &s->pair, &s->name, err) != 0) {
            dk_dict_set_close(set);
            return -1;
        }
        set->n++;
        if (set->n > 1 && s->pair.d_model != set->src[0].pair.d_model) {
            dk_err_set(err, DK_EXIT_USAGE, "%s has d_model %lld but %s has %lld: the stores come from different "
                       "models", s->pair.base.path, (long long)s->pair.d_model, set->src[0].pair.base.path,
                       (long long)set->src[0].pair.d_model);
            dk_dict_set_close(set);
            return -1;
        }
        const dk_act_store *st[2] = {&s->pair.base, &s->pair.ft};
        for (int m = 0; m < 2; m++) {
            s->offset[m] = contiguous_offset(st[m]->layer_ds);
            if (s->offset[m] >= 0) {
                s->fd[m] = open(st[m]->path, O_RDONLY | O_CLOEXEC);
                if (s->fd[m] < 0) s->offset[m] = -1; /* HDF5 reads still work */
            }
        }
        s->kept_before = dk_malloc((size_t)(s->pair.n_seqs + 1) * sizeof *s->kept_before);
        s->kept_before[0] = 0;
        for (int64_t q = 0; q < s->pair.n_seqs; q++) {
            int64_t len = s->pair.seq_offsets[q + 1] - s->pair.seq_offsets[q];
            s->kept_before[q + 1] = s->kept_before[q] + (len > skip ? len - skip : 0);
        }
        s->n_kept = s->kept_before[s->pair.n_seqs];
        if (s->n_kept == 0) {
            dk_err_set(err, DK_EXIT_USAGE, "%s (%s split, layer %lld) has no rows%s: nothing to learn from; cache more "
                       "text with diff_preprocess or leave the dataset out (%s=false)", s->name, split,
                       (long long)layer, skip > 0 ? " left after skipping the first tokens of every sequence" : "",
                       USE_KEYS[g]);
            dk_dict_set_close(set);
            return -1;
        }
    }
    if (set->n == 0) return dk_err_set(err, DK_EXIT_USAGE, "no dataset to learn from: every diffing.method.datasets."
                                       "use_* is false or its dataset group is left out");
    set->d = set->src[0].pair.d_model;
    set->width = target == DK_DICT_STACKED ? 2 * set->d : set->d;
    int64_t len[3], use[3];
    for (int i = 0; i < set->n; i++) len[i] = set->src[i].n_kept;
    samples_per_dataset(len, set->n, max_total, use);
    for (int i = 0; i < set->n; i++) {
        set->src[i].n_use = use[i];
        set->total += use[i];
        if (use[i] == 0) {
            dk_err_set(err, DK_EXIT_USAGE, "%s (%s split) would contribute no row to a sample of %lld: raise the "
                       "number of samples or leave the dataset out", set->src[i].name, split, (long long)max_total);
            dk_dict_set_close(set);
            return -1;
        }
    }
    dk_method_input(job, "rows", "%s layer %lld target %s skip %lld cap %lld", split, (long long)layer,
                    dk_dict_target_name(target), (long long)skip, (long long)max_total);
    return 0;
}

void dk_dict_set_close(dk_dict_set *set) {
    for (int i = 0; i < set->n; i++) {
        dk_dict_source *s = &set->src[i];
        for (int m = 0; m < 2; m++)
            if (s->fd[m] >= 0) close(s->fd[m]);
        dk_act_pair_close(&s->pair);
        free(s->kept_before);
        free(s->name);
    }
    memset(set, 0, sizeof *set);
}

int64_t dk_dict_kept_row(const dk_dict_source *s, int64_t i) {
    /* the last sequence q with kept_before[q] <= i: then i < kept_before[q + 1] (kept_before[n_seqs] > i), so the
     * sequences with no kept row, which repeat the value, are passed over */
    int64_t lo = 0, hi = s->pair.n_seqs;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->kept_before[mid] <= i) lo = mid;
        else hi = mid;
    }
    const int64_t len = s->pair.seq_offsets[lo + 1] - s->pair.seq_offsets[lo];
    const int64_t kept = s->kept_before[lo + 1] - s->kept_before[lo];
    return s->pair.seq_offsets[lo] + (len - kept) + (i - s->kept_before[lo]);
}

void dk_dict_set_locate(const dk_dict_set *set, int64_t c, int *src, int64_t *row) {
    int i = 0;
    while (i + 1 < set->n && c >= set->src[i].n_use) c -= set->src[i].n_use, i++;
    *src = i;
    *row = dk_dict_kept_row(&set->src[i], c);
}

/* ---- reading ------------------------------------------------------------------------------------------------ */

typedef struct row_req {
    int64_t row;     /* store row */
    int64_t out;     /* where it goes in the output */
} row_req;

static int cmp_req(const void *a, const void *b) {
    const row_req *x = a, *y = b;
    return x->row < y->row ? -1 : x->row > y->row ? 1 : (x->out < y->out ? -1 : x->out > y->out);
}

/* bf16 rows [row0, row0 + n) of one model of one source into bits (n, d). */
static int read_bits(const dk_dict_set *set, const dk_dict_source *s, int m, int64_t row0, int64_t n, uint16_t *bits,
                     dk_err *err) {
    const dk_act_store *st = m ? &s->pair.ft : &s->pair.base;
    if (s->offset[m] < 0) return dk_act_store_rows_bf16(st, row0, n, bits, err);
    const size_t row_bytes = (size_t)set->d * sizeof(uint16_t);
    size_t want = (size_t)n * row_bytes, got = 0;
    const off_t base = (off_t)s->offset[m] + (off_t)row0 * (off_t)row_bytes;
    while (got < want) {
        ssize_t r = pread(s->fd[m], (char *)bits + got, want - got, base + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s: reading rows [%lld, %lld) failed: %s", st->path,
                              (long long)row0, (long long)(row0 + n), r < 0 ? strerror(errno) : "file is truncated");
        got += (size_t)r;
    }
    return 0;
}

/* Names the sequence and token of a non-finite value for the error message. */
static int nonfinite_row(const dk_dict_source *s, int m, int64_t row, float v, dk_err *err) {
    int64_t lo = 0, hi = s->pair.n_seqs;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->pair.seq_offsets[mid] <= row) lo = mid;
        else hi = mid;
    }
    const dk_act_store *st = m ? &s->pair.ft : &s->pair.base;
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s holds a non-finite activation (%s) at row %lld (sequence %lld, token "
                      "%lld) of layer %lld: the run stops before it reaches the weights; recompute the store with "
                      "diff_preprocess (check the model and adapter for NaN weights)", st->path,
                      isnan(v) ? "NaN" : "Inf", (long long)row, (long long)lo, (long long)(row - s->pair.seq_offsets[lo]),
                      (long long)st->layer);
}

/* One run of consecutive store rows of one source, converted to the target into out rows. */
static int read_run(const dk_dict_set *set, const dk_dict_source *s, int64_t row0, int64_t n, const row_req *reqs,
                    float *out, uint16_t *bits0, uint16_t *bits1, dk_err *err) {
    const int64_t d = set->d;
    const dk_dict_target t = set->target;
    const bool need_base = t != DK_DICT_FT, need_ft = t != DK_DICT_BASE;
    if (need_base && read_bits(set, s, 0, row0, n, bits0, err) != 0) return -1;
    if (need_ft && read_bits(set, s, 1, row0, n, bits1, err) != 0) return -1;
    for (int64_t r = 0; r < n; r++) {
        const uint16_t *b = bits0 + r * d, *f = bits1 + r * d;
        float *o = out + reqs[r].out * set->width;
        for (int64_t i = 0; i < d; i++) {
            const float xb = need_base ? dk_bf16_to_f32(b[i]) : 0.0f, xf = need_ft ? dk_bf16_to_f32(f[i]) : 0.0f;
            if (!isfinite(xb)) return nonfinite_row(s, 0, row0 + r, xb, err);
            if (!isfinite(xf)) return nonfinite_row(s, 1, row0 + r, xf, err);
            switch (t) {
            case DK_DICT_DIFF_FTB: o[i] = dk_bf16_to_f32(dk_f32_to_bf16(xf - xb)); break;
            case DK_DICT_DIFF_BFT: o[i] = dk_bf16_to_f32(dk_f32_to_bf16(xb - xf)); break;
            case DK_DICT_BASE: o[i] = xb; break;
            case DK_DICT_FT: o[i] = xf; break;
            case DK_DICT_STACKED: o[i] = xb, o[d + i] = xf; break;
            }
        }
    }
    return 0;
}

/* Requests of one source: sorted, split into runs of consecutive distinct rows (a repeated row is read again). */
static int read_source(const dk_dict_set *set, const dk_dict_source *s, row_req *reqs, int64_t n, float *out,
                       dk_err *err) {
    if (n == 0) return 0;
    qsort(reqs, (size_t)n, sizeof *reqs, cmp_req);
    enum { MAX_RUN = 256 };
    uint16_t *bits0 = dk_malloc((size_t)(MAX_RUN * set->d) * sizeof(uint16_t)); /* (run, d) */
    uint16_t *bits1 = dk_malloc((size_t)(MAX_RUN * set->d) * sizeof(uint16_t));
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0;) {
        int64_t j = i + 1;
        while (j < n && j - i < MAX_RUN && reqs[j].row == reqs[j - 1].row + 1) j++;
        rc = read_run(set, s, reqs[i].row, j - i, reqs + i, out, bits0, bits1, err);
        i = j;
    }
    free(bits0);
    free(bits1);
    return rc;
}

int dk_dict_read_rows(const dk_dict_set *set, const int *src, const int64_t *row, int64_t n, float *out, dk_err *err) {
    row_req *reqs = dk_malloc((size_t)(n ? n : 1) * sizeof *reqs);
    int rc = 0;
    for (int k = 0; k < set->n && rc == 0; k++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (src[i] == k) reqs[m].row = row[i], reqs[m].out = i, m++;
        rc = read_source(set, &set->src[k], reqs, m, out, err);
    }
    free(reqs);
    return rc;
}

int dk_dict_set_read(const dk_dict_set *set, const int64_t *idx, int64_t n, float *out, dk_err *err) {
    int *src = dk_malloc((size_t)(n ? n : 1) * sizeof *src);
    int64_t *row = dk_malloc((size_t)(n ? n : 1) * sizeof *row);
    for (int64_t i = 0; i < n; i++) dk_dict_set_locate(set, idx[i], &src[i], &row[i]);
    int rc = dk_dict_read_rows(set, src, row, n, out, err);
    free(src);
    free(row);
    return rc;
}

int dk_dict_read_range(const dk_dict_set *set, int src, int64_t row0, int64_t n, float *out, dk_err *err) {
    row_req *reqs = dk_malloc((size_t)(n ? n : 1) * sizeof *reqs);
    for (int64_t i = 0; i < n; i++) reqs[i].row = row0 + i, reqs[i].out = i;
    int rc = read_source(set, &set->src[src], reqs, n, out, err);
    free(reqs);
    return rc;
}

/* ---- the order ---------------------------------------------------------------------------------------------- */

void dk_dict_order_init(dk_dict_order *o, const dk_dict_set *set, int64_t shard_size, int64_t epochs, bool shuffle,
                        uint64_t seed) {
    memset(o, 0, sizeof *o);
    CHECK(shard_size > 0 && epochs >= 1, "order: shard_size %lld, epochs %lld", (long long)shard_size, (long long)epochs);
    o->n_src = set->n;
    o->epochs = epochs;
    o->shuffle = shuffle;
    o->seed = seed;
    int64_t max_n = 0;
    for (int j = 0; j < set->n; j++) {
        o->n_use[j] = set->src[j].n_use;
        o->cum[j + 1] = o->cum[j] + o->n_use[j];
        if (o->n_use[j] > max_n) max_n = o->n_use[j];
    }
    o->total = o->cum[set->n];
    /* the shards of one epoch: the seed's loop, with its float weights and int() truncation */
    int64_t per[3], remaining[3], cap = 16;
    for (int j = 0; j < set->n; j++) {
        int64_t t = (int64_t)((double)shard_size * ((double)o->n_use[j] / (double)max_n));
        per[j] = t > 1 ? t : 1;
        remaining[j] = o->n_use[j];
    }
    o->shard_start = dk_malloc((size_t)(cap + 1) * sizeof(int64_t));
    o->shard_take = dk_malloc((size_t)(cap * 3) * sizeof(int64_t));
    o->shard_first = dk_malloc((size_t)(cap * 3) * sizeof(int64_t));
    o->shard_start[0] = 0;
    for (;;) {
        int64_t left = 0;
        for (int j = 0; j < set->n; j++) left += remaining[j];
        if (left == 0) break;
        if (o->n_shards == cap) {
            cap *= 2;
            o->shard_start = dk_realloc(o->shard_start, (size_t)(cap + 1) * sizeof(int64_t));
            o->shard_take = dk_realloc(o->shard_take, (size_t)(cap * 3) * sizeof(int64_t));
            o->shard_first = dk_realloc(o->shard_first, (size_t)(cap * 3) * sizeof(int64_t));
        }
        int64_t size = 0;
        for (int j = 0; j < set->n; j++) {
            int64_t take = per[j] < remaining[j] ? per[j] : remaining[j];
            o->shard_first[o->n_shards * 3 + j] = o->n_use[j] - remaining[j];
            o->shard_take[o->n_shards * 3 + j] = take;
            remaining[j] -= take;
            size += take;
        }
        o->shard_start[o->n_shards + 1] = o->shard_start[o->n_shards] + size;
        o->n_shards++;
    }
    o->cached_key[0] = o->cached_key[1] = -1;
}

void dk_dict_order_free(dk_dict_order *o) {
    free(o->shard_start);
    free(o->shard_take);
    free(o->shard_first);
    free(o->cached_perm[0]);
    free(o->cached_perm[1]);
    memset(o, 0, sizeof *o);
}

/* The permutation of shard s of epoch e (a cached one when it was asked for recently). */
static const int64_t *shard_perm(dk_dict_order *o, int64_t e, int64_t s) {
    const int64_t key = e * o->n_shards + s;
    for (int k = 0; k < 2; k++)
        if (o->cached_key[k] == key) return o->cached_perm[k];
    const int k = o->next_slot;
    o->next_slot ^= 1;
    const int64_t n = o->shard_start[s + 1] - o->shard_start[s];
    if (o->cached_len[k] < n) {
        free(o->cached_perm[k]);
        o->cached_perm[k] = dk_malloc((size_t)n * sizeof(int64_t));
        o->cached_len[k] = n;
    }
    int64_t *p = o->cached_perm[k];
    for (int64_t i = 0; i < n; i++) p[i] = i;
    /* state from (seed, epoch, shard): each mixed in through one splitmix64 step */
    uint64_t st = o->seed ^ 0x6a09e667f3bcc909ull;
    st = dk_dict_rng_next(&st) ^ (uint64_t)e;
    st = dk_dict_rng_next(&st) ^ (uint64_t)s;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = dk_dict_rng_below(&st, i + 1);
        int64_t t = p[i];
        p[i] = p[j], p[j] = t;
    }
    o->cached_key[k] = key;
    return p;
}

void dk_dict_order_get(dk_dict_order *o, int64_t p0, int64_t n, int64_t *idx) {
    CHECK(p0 >= 0 && p0 + n <= o->total * o->epochs, "order: positions [%lld, %lld) outside [0, %lld)",
          (long long)p0, (long long)(p0 + n), (long long)(o->total * o->epochs));
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t p = p0 + i, e = p / o->total, q = p % o->total;
        if (!o->shuffle) {
            idx[i] = q;
            continue;
        }
        if (!(o->shard_start[s] <= q && q < o->shard_start[s + 1])) { /* binary search when not the current shard */
            int64_t lo = 0, hi = o->n_shards;
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (o->shard_start[mid] <= q) lo = mid;
                else hi = mid;
            }
            s = lo;
        }
        int64_t t = shard_perm(o, e, s)[q - o->shard_start[s]];
        /* position t of the shard's concatenation: source j's rows in source order */
        for (int j = 0; j < o->n_src; j++) {
            const int64_t take = o->shard_take[s * 3 + j];
            if (t < take) {
                idx[i] = o->cum[j] + o->shard_first[s * 3 + j] + t;
                break;
            }
            t -= take;
        }
    }
}

void dk_dict_slice(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi) {
    *lo = n * rank / nranks;
    *hi = n * (rank + 1) / nranks;
}
