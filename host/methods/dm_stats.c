/* dm_stats.c — see dm_stats.h. */
#include "methods/dm_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cpu/diffops.h"

static const double TWO32 = 4294967296.0;

void dm_accum_init(dm_accum *a, int64_t V) {
    memset(a, 0, sizeof *a);
    a->V = V;
    a->topk_pos = dk_calloc((size_t)V, sizeof(int64_t));
    a->topk_neg = dk_calloc((size_t)V, sizeof(int64_t));
    a->count_pos = dk_calloc((size_t)V, sizeof(int64_t));
    a->sum_hi = dk_calloc((size_t)V, sizeof(int64_t));
    a->sum_lo = dk_calloc((size_t)V, sizeof(int64_t));
}

void dm_accum_free(dm_accum *a) {
    free(a->topk_pos), free(a->topk_neg), free(a->count_pos), free(a->sum_hi), free(a->sum_lo);
    memset(a, 0, sizeof *a);
}

double dm_accum_sum(const dm_accum *a, int64_t v) { return (double)a->sum_hi[v] + (double)a->sum_lo[v] / TWO32; }

void dm_collect_batch(dm_accum *a, const float *diff, int64_t rows, int64_t top_k, bool binary, dm_nmf_part *part) {
    const int64_t V = a->V, k = top_k;
    /* Σ and sign counts per token */
    double *sum = dk_calloc((size_t)V, sizeof *sum);
    for (int64_t r = 0; r < rows; r++) {
        const float *d = diff + r * V;
        for (int64_t v = 0; v < V; v++) {
            sum[v] += (double)d[v];
            a->count_pos[v] += d[v] > 0;
        }
    }
    for (int64_t v = 0; v < V; v++) {
        const double hi = floor(sum[v]);
        a->sum_hi[v] += (int64_t)hi;
        a->sum_lo[v] += (int64_t)llround((sum[v] - hi) * TWO32);
    }
    free(sum);
    /* top-k both ways */
    float *pos_val = dk_malloc((size_t)(rows * k) * sizeof *pos_val), *neg_val = dk_malloc((size_t)(rows * k) * sizeof *neg_val);
    int32_t *pos_id = dk_malloc((size_t)(rows * k) * sizeof *pos_id), *neg_id = dk_malloc((size_t)(rows * k) * sizeof *neg_id);
    dk_cpu_topk(diff, rows, V, k, true, pos_val, pos_id);
    dk_cpu_topk(diff, rows, V, k, false, neg_val, neg_id);
    for (int64_t i = 0; i < rows * k; i++) a->topk_pos[pos_id[i]]++, a->topk_neg[neg_id[i]]++;
    a->positions += rows;
    free(neg_val);
    free(neg_id);
    /* the NMF part: columns by first appearance, k-major */
    memset(part, 0, sizeof *part);
    part->rows = rows;
    part->first = dk_malloc((size_t)(rows * k > 0 ? rows * k : 1) * sizeof *part->first);
    uint8_t *seen = dk_calloc((size_t)V, 1);
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t r = 0; r < rows; r++) {
            const int32_t id = pos_id[r * k + kk];
            if (!seen[id]) seen[id] = 1, part->first[part->n_first++] = id;
        }
    free(seen);
    part->row_nnz = dk_calloc((size_t)(rows ? rows : 1), sizeof *part->row_nnz);
    part->ids = dk_malloc((size_t)(rows * k > 0 ? rows * k : 1) * sizeof *part->ids);
    part->vals = dk_malloc((size_t)(rows * k > 0 ? rows * k : 1) * sizeof *part->vals);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t kk = 0; kk < k; kk++) {
            const float v = binary ? 1.0f : pos_val[r * k + kk];
            if (!(v > 0)) continue; /* relu, then only the values > 0 stay in the matrix */
            part->ids[part->nnz] = pos_id[r * k + kk];
            part->vals[part->nnz++] = v;
            part->row_nnz[r]++;
        }
    free(pos_val);
    free(pos_id);
}

void dm_nmf_part_free(dm_nmf_part *p) {
    free(p->first), free(p->row_nnz), free(p->ids), free(p->vals);
    memset(p, 0, sizeof *p);
}

void dm_nmf_part_pack(const dm_nmf_part *p, int32_t **ints, int64_t *n_ints, float **floats, int64_t *n_floats) {
    *n_ints = 2 + p->n_first + p->rows + p->nnz;
    *n_floats = p->nnz;
    int32_t *o = *ints = dk_malloc((size_t)*n_ints * sizeof *o);
    o[0] = (int32_t)p->rows;
    o[1] = (int32_t)p->n_first;
    memcpy(o + 2, p->first, (size_t)p->n_first * sizeof *o);
    memcpy(o + 2 + p->n_first, p->row_nnz, (size_t)p->rows * sizeof *o);
    memcpy(o + 2 + p->n_first + p->rows, p->ids, (size_t)p->nnz * sizeof *o);
    *floats = dk_malloc((size_t)(p->nnz ? p->nnz : 1) * sizeof **floats);
    memcpy(*floats, p->vals, (size_t)p->nnz * sizeof **floats);
}

void dm_nmf_part_view(const int32_t *ints, const float *floats, dm_nmf_part *p) {
    memset(p, 0, sizeof *p);
    p->rows = ints[0];
    p->n_first = ints[1];
    p->first = (int32_t *)(ints + 2);
    p->row_nnz = (int32_t *)(ints + 2 + p->n_first);
    for (int64_t r = 0; r < p->rows; r++) p->nnz += p->row_nnz[r];
    p->ids = (int32_t *)(ints + 2 + p->n_first + p->rows);
    p->vals = (float *)floats;
}

void dm_nmf_builder_init(dm_nmf_builder *b, int64_t V) {
    memset(b, 0, sizeof *b);
    b->V = V;
    b->tok2col = dk_malloc((size_t)V * sizeof *b->tok2col);
    for (int64_t v = 0; v < V; v++) b->tok2col[v] = -1;
    b->col2tok = dk_malloc((size_t)V * sizeof *b->col2tok);
    b->m.row_ptr = dk_calloc(1, sizeof *b->m.row_ptr);
}

void dm_nmf_builder_add(dm_nmf_builder *b, const dm_nmf_part *p) {
    dk_nmf_csr *m = &b->m;
    for (int64_t i = 0; i < p->n_first; i++)
        if (b->tok2col[p->first[i]] < 0) {
            b->tok2col[p->first[i]] = (int32_t)m->cols;
            b->col2tok[m->cols++] = p->first[i];
        }
    m->row_ptr = dk_realloc(m->row_ptr, (size_t)(m->rows + p->rows + 1) * sizeof *m->row_ptr);
    if (m->nnz + p->nnz > b->cap_nnz) {
        while (m->nnz + p->nnz > b->cap_nnz) b->cap_nnz = b->cap_nnz ? 2 * b->cap_nnz : 1 << 16;
        m->col = dk_realloc(m->col, (size_t)b->cap_nnz * sizeof *m->col);
        m->val = dk_realloc(m->val, (size_t)b->cap_nnz * sizeof *m->val);
    }
    int64_t e = 0;
    for (int64_t r = 0; r < p->rows; r++) {
        /* the seed's matrix is coalesced: entries of a row ascend by column (insertion sort: <= top_k of them) */
        const int64_t start = m->nnz;
        for (int32_t i = 0; i < p->row_nnz[r]; i++, e++) {
            const int32_t c = b->tok2col[p->ids[e]];
            const float v = p->vals[e];
            int64_t at = m->nnz++;
            while (at > start && m->col[at - 1] > c) m->col[at] = m->col[at - 1], m->val[at] = m->val[at - 1], at--;
            m->col[at] = c;
            m->val[at] = v;
        }
        m->row_ptr[++m->rows] = m->nnz;
    }
}

void dm_nmf_builder_free(dm_nmf_builder *b) {
    free(b->tok2col);
    free(b->col2tok);
    dk_nmf_csr_free(&b->m);
    memset(b, 0, sizeof *b);
}
