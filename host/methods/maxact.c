/* maxact.c — see maxact.h. The heap keeps the k best; gathering packs each rank's entries into flat arrays,
 * gathers them to rank 0 (MPI_Gatherv) and offers them there, which gives the same table whatever the split. */
#include "methods/maxact.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check_mpi.h"

/* a ranks before b: higher score, then lower sequence index */
static bool better(double sa, int64_t qa, double sb, int64_t qb) { return sa > sb || (sa == sb && qa < qb); }

static bool entry_better(const dk_maxact_entry *a, const dk_maxact_entry *b) {
    return better(a->score, a->seq, b->score, b->seq);
}

void dk_maxact_init(dk_maxact *t, int64_t k, bool sparse) {
    memset(t, 0, sizeof *t);
    CHECK(k >= 0, "max-activating table of %lld examples", (long long)k);
    t->k = k;
    t->sparse = sparse;
    t->e = dk_calloc((size_t)(k ? k : 1), sizeof *t->e);
}

static void entry_free(dk_maxact_entry *e) {
    free(e->tokens);
    free(e->positions);
    free(e->values);
    memset(e, 0, sizeof *e);
}

void dk_maxact_free(dk_maxact *t) {
    for (int64_t i = 0; i < t->n; i++) entry_free(&t->e[i]);
    free(t->e);
    memset(t, 0, sizeof *t);
}

bool dk_maxact_wants(const dk_maxact *t, double score, int64_t seq) {
    if (t->k == 0) return false;
    if (t->n < t->k) return true;
    return better(score, seq, t->e[0].score, t->e[0].seq);
}

/* min-heap on "weaker first": parent is weaker than (or equal to) its children */
static void sift_down(dk_maxact *t, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < t->n && entry_better(&t->e[w], &t->e[l])) w = l;
        if (r < t->n && entry_better(&t->e[w], &t->e[r])) w = r;
        if (w == i) return;
        dk_maxact_entry tmp = t->e[i];
        t->e[i] = t->e[w];
        t->e[w] = tmp;
        i = w;
    }
}

static void sift_up(dk_maxact *t, int64_t i) {
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!entry_better(&t->e[p], &t->e[i])) return;
        dk_maxact_entry tmp = t->e[i];
        t->e[i] = t->e[p];
        t->e[p] = tmp;
        i = p;
    }
}

/* Takes ownership of e's arrays. */
static void insert(dk_maxact *t, dk_maxact_entry *e) {
    if (!dk_maxact_wants(t, e->score, e->seq)) {
        entry_free(e);
        return;
    }
    if (t->n < t->k) {
        t->e[t->n] = *e;
        sift_up(t, t->n++);
    } else {
        entry_free(&t->e[0]);
        t->e[0] = *e;
        sift_down(t, 0);
    }
}

void dk_maxact_offer(dk_maxact *t, double score, int64_t seq, const int32_t *tokens, int64_t n, const float *values) {
    CHECK(isfinite(score), "max-activating example of sequence %lld: non-finite score", (long long)seq);
    if (!dk_maxact_wants(t, score, seq)) return;
    dk_maxact_entry e = {.score = score, .seq = seq, .n_tokens = n};
    e.tokens = dk_malloc((size_t)(n ? n : 1) * sizeof *e.tokens);
    memcpy(e.tokens, tokens, (size_t)n * sizeof *e.tokens);
    if (values && t->sparse) {
        int64_t nz = 0;
        for (int64_t i = 0; i < n; i++) nz += values[i] != 0.0f;
        e.positions = dk_malloc((size_t)(nz ? nz : 1) * sizeof *e.positions);
        e.values = dk_malloc((size_t)(nz ? nz : 1) * sizeof *e.values);
        for (int64_t i = 0; i < n; i++)
            if (values[i] != 0.0f) e.positions[e.n_values] = (int32_t)i, e.values[e.n_values++] = values[i];
    } else if (values) {
        e.n_values = n;
        e.values = dk_malloc((size_t)(n ? n : 1) * sizeof *e.values);
        memcpy(e.values, values, (size_t)n * sizeof *e.values);
    }
    insert(t, &e);
}

static int cmp_entries(const void *a, const void *b) {
    const dk_maxact_entry *x = a, *y = b;
    return entry_better(x, y) ? -1 : entry_better(y, x) ? 1 : 0;
}

dk_maxact_entry *dk_maxact_sorted(const dk_maxact *t) {
    dk_maxact_entry *s = dk_malloc((size_t)(t->n ? t->n : 1) * sizeof *s);
    memcpy(s, t->e, (size_t)t->n * sizeof *s);
    qsort(s, (size_t)t->n, sizeof *s, cmp_entries);
    return s;
}

/* ---- gathering -------------------------------------------------------------------------------------------
 * Per rank, three flat buffers: headers (score bits, seq, n_tokens, n_values per entry), the int32 data (tokens
 * then positions per entry) and the float values. */

enum { HEADER_WORDS = 4 };

static int *gather_counts(const dk_dist *d, int mine) {
    int *counts = d->rank == 0 ? dk_calloc((size_t)d->nranks, sizeof *counts) : NULL;
    MPI_CHECK(MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, d->comm));
    return counts;
}

static int *displacements(const dk_dist *d, const int *counts, int64_t *total) {
    int *displ = dk_calloc((size_t)d->nranks, sizeof *displ);
    int64_t sum = 0;
    for (int i = 0; i < d->nranks; i++) {
        displ[i] = (int)sum;
        sum += counts[i];
    }
    CHECK(sum < INT32_MAX, "max-activating tables too large to gather (%lld values)", (long long)sum);
    *total = sum;
    return displ;
}

/* Gathers n items of type from every rank into a buffer on rank 0 (NULL elsewhere). */
static void *gatherv(const dk_dist *d, const void *mine, int n, MPI_Datatype type, size_t size) {
    int *counts = gather_counts(d, n), *displ = NULL;
    int64_t total = 0;
    void *all = NULL;
    if (d->rank == 0) {
        displ = displacements(d, counts, &total);
        all = dk_malloc((size_t)(total ? total : 1) * size);
    }
    MPI_CHECK(MPI_Gatherv(mine, n, type, all, counts, displ, type, 0, d->comm));
    free(counts);
    free(displ);
    return all;
}

void dk_maxact_gather(dk_maxact *t, const dk_dist *d) {
    if (d->nranks == 1) return;
    int64_t n_ints = 0, n_floats = 0;
    for (int64_t i = 0; i < t->n; i++) {
        n_ints += t->e[i].n_tokens + (t->sparse ? t->e[i].n_values : 0);
        n_floats += t->e[i].n_values;
    }
    int64_t *headers = dk_malloc((size_t)(t->n * HEADER_WORDS + 1) * sizeof *headers);
    int32_t *ints = dk_malloc((size_t)(n_ints + 1) * sizeof *ints);
    float *floats = dk_malloc((size_t)(n_floats + 1) * sizeof *floats);
    int64_t ni = 0, nf = 0;
    for (int64_t i = 0; i < t->n; i++) {
        const dk_maxact_entry *e = &t->e[i];
        memcpy(&headers[i * HEADER_WORDS], &e->score, sizeof(double));
        headers[i * HEADER_WORDS + 1] = e->seq;
        headers[i * HEADER_WORDS + 2] = e->n_tokens;
        headers[i * HEADER_WORDS + 3] = e->n_values;
        memcpy(ints + ni, e->tokens, (size_t)e->n_tokens * sizeof *ints);
        ni += e->n_tokens;
        if (t->sparse) {
            memcpy(ints + ni, e->positions, (size_t)e->n_values * sizeof *ints);
            ni += e->n_values;
        }
        memcpy(floats + nf, e->values, (size_t)e->n_values * sizeof *floats);
        nf += e->n_values;
    }
    CHECK(t->n * HEADER_WORDS < INT32_MAX && n_ints < INT32_MAX && n_floats < INT32_MAX, "max-activating table too large");
    int64_t *all_headers = gatherv(d, headers, (int)(t->n * HEADER_WORDS), MPI_INT64_T, sizeof(int64_t));
    int32_t *all_ints = gatherv(d, ints, (int)n_ints, MPI_INT32_T, sizeof(int32_t));
    float *all_floats = gatherv(d, floats, (int)n_floats, MPI_FLOAT, sizeof(float));
    int total_entries = 0, mine = (int)t->n;
    MPI_CHECK(MPI_Reduce(&mine, &total_entries, 1, MPI_INT, MPI_SUM, 0, d->comm));
    const int64_t k = t->k;
    const bool sparse = t->sparse;
    dk_maxact_free(t);
    dk_maxact_init(t, k, sparse);
    if (d->rank == 0) {
        int64_t pi = 0, pf = 0;
        for (int i = 0; i < total_entries; i++) {
            dk_maxact_entry e = {0};
            memcpy(&e.score, &all_headers[i * HEADER_WORDS], sizeof(double));
            e.seq = all_headers[i * HEADER_WORDS + 1];
            e.n_tokens = all_headers[i * HEADER_WORDS + 2];
            e.n_values = all_headers[i * HEADER_WORDS + 3];
            e.tokens = dk_malloc((size_t)(e.n_tokens ? e.n_tokens : 1) * sizeof *e.tokens);
            memcpy(e.tokens, all_ints + pi, (size_t)e.n_tokens * sizeof *e.tokens);
            pi += e.n_tokens;
            if (sparse) {
                e.positions = dk_malloc((size_t)(e.n_values ? e.n_values : 1) * sizeof *e.positions);
                memcpy(e.positions, all_ints + pi, (size_t)e.n_values * sizeof *e.positions);
                pi += e.n_values;
            }
            if (e.n_values || !sparse) {
                e.values = dk_malloc((size_t)(e.n_values ? e.n_values : 1) * sizeof *e.values);
                memcpy(e.values, all_floats + pf, (size_t)e.n_values * sizeof *e.values);
                pf += e.n_values;
            }
            insert(t, &e);
        }
    }
    free(headers), free(ints), free(floats);
    free(all_headers), free(all_ints), free(all_floats);
}

cJSON *dk_maxact_texts(const dk_maxact *t, const dk_tokenizer *tok, int64_t n, size_t max_chars) {
    cJSON *arr = cJSON_CreateArray();
    dk_maxact_entry *e = dk_maxact_sorted(t);
    for (int64_t i = 0; i < t->n && i < n; i++) {
        dk_err derr = {0};
        char *text = dk_tokenizer_decode(tok, e[i].tokens, (size_t)e[i].n_tokens, true, NULL, &derr);
        if (text && strlen(text) > max_chars) text[max_chars] = 0;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "score", e[i].score);
        cJSON_AddStringToObject(x, "text", text ? text : "");
        cJSON_AddItemToArray(arr, x);
        free(text);
    }
    free(e);
    return arr;
}

/* ---- writing ----------------------------------------------------------------------------------------------
 * group/score (n) f64, sequence_index (n) i64, token_offsets (n+1) i64, tokens (Σ len) i32, text (n) str;
 * dense: values (Σ len) f32 aligned with tokens; sparse: value_offsets (n+1) i64, positions i32, values f32.
 * Attributes: k, storage ("dense" | "sparse"). */

static const char *member(char *buf, size_t cap, const char *group, const char *name) {
    snprintf(buf, cap, "%s/%s", group, name);
    return buf;
}

void dk_maxact_write(const dk_maxact *t, dk_results *r, const char *group, const dk_tokenizer *tok) {
    if (!r->writer) return;
    dk_maxact_entry *s = dk_maxact_sorted(t);
    const int64_t n = t->n;
    int64_t total_tokens = 0, total_values = 0;
    for (int64_t i = 0; i < n; i++) total_tokens += s[i].n_tokens, total_values += s[i].n_values;
    double *score = dk_malloc((size_t)(n + 1) * sizeof *score);
    int64_t *seq = dk_malloc((size_t)(n + 1) * sizeof *seq);
    int64_t *tok_off = dk_malloc((size_t)(n + 1) * sizeof *tok_off), *val_off = dk_malloc((size_t)(n + 1) * sizeof *val_off);
    int32_t *tokens = dk_malloc((size_t)(total_tokens + 1) * sizeof *tokens);
    int32_t *positions = dk_malloc((size_t)(total_values + 1) * sizeof *positions);
    float *values = dk_malloc((size_t)(total_values + 1) * sizeof *values);
    char **text = dk_calloc((size_t)(n + 1), sizeof *text);
    tok_off[0] = val_off[0] = 0;
    bool any_values = false;
    for (int64_t i = 0; i < n; i++) {
        score[i] = s[i].score;
        seq[i] = s[i].seq;
        memcpy(tokens + tok_off[i], s[i].tokens, (size_t)s[i].n_tokens * sizeof *tokens);
        tok_off[i + 1] = tok_off[i] + s[i].n_tokens;
        if (s[i].values) {
            any_values = true;
            memcpy(values + val_off[i], s[i].values, (size_t)s[i].n_values * sizeof *values);
            if (t->sparse) memcpy(positions + val_off[i], s[i].positions, (size_t)s[i].n_values * sizeof *positions);
        }
        val_off[i + 1] = val_off[i] + s[i].n_values;
        dk_err derr = {0};
        text[i] = tok ? dk_tokenizer_decode(tok, s[i].tokens, (size_t)s[i].n_tokens, false, NULL, &derr) : NULL;
        if (!text[i]) text[i] = dk_strdup("");
    }
    const int64_t n1 = n + 1;
    char path[1024];
    dk_results_f64(r, member(path, sizeof path, group, "score"), 1, &n, score);
    dk_results_i64(r, member(path, sizeof path, group, "sequence_index"), 1, &n, seq);
    dk_results_i64(r, member(path, sizeof path, group, "token_offsets"), 1, &n1, tok_off);
    dk_results_i32(r, member(path, sizeof path, group, "tokens"), 1, &total_tokens, tokens);
    dk_results_strings(r, member(path, sizeof path, group, "text"), n, (const char *const *)text);
    if (any_values) {
        dk_results_f32(r, member(path, sizeof path, group, "values"), 1, &total_values, values);
        if (t->sparse) {
            dk_results_i64(r, member(path, sizeof path, group, "value_offsets"), 1, &n1, val_off);
            dk_results_i32(r, member(path, sizeof path, group, "positions"), 1, &total_values, positions);
        }
    }
    dk_results_attr_i64(r, group, "k", t->k);
    dk_results_attr_str(r, group, "storage", t->sparse ? "sparse" : "dense");
    for (int64_t i = 0; i < n; i++) free(text[i]);
    free(text), free(score), free(seq), free(tok_off), free(val_off), free(tokens), free(positions), free(values);
    free(s);
}
