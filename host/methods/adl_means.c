/* adl_means.c — the ADL's means (seed_spec §5.2): both models over the dataset's sequences, the residual stream
 * after each configured layer captured at the sequences' positions, and per (layer, position) the mean over the
 * sequences of the finetuned model's activation, the base model's and their difference; per layer the mean L2
 * norm of each model's activations at positions >= 5.
 *
 * Rank invariance: the sequences are cut into batches of batch_size (the same whatever the rank count); batch b
 * runs on rank b % nranks. Within a batch the sums are formed in double in sequence order; the batch totals are
 * added as exact fixed-point sums (exact_sum.h), so the totals — and the means, the norms and everything after —
 * are bit-identical on 1, 2 or 3 ranks. mean(ft − base) is formed as (Σ ft − Σ base) / N with the subtraction
 * exact, so it carries no cancellation error from the two large sums.
 *
 * Memory per rank: the captures of one batch for both models, (2, layers, batch tokens, d) fp32, and the sums,
 * (2, layers, positions, d) in double and in 128-bit fixed point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/finite.h"
#include "core/host_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "methods/adl_internal.h"
#include "methods/exact_sum.h"

typedef struct batch_sums {
    double *part[2];             /* (layers, positions, d) this batch's sums: base, finetuned */
    double *norm_part[2];        /* (layers) this batch's sums of norms at positions >= 5 */
    dk_exact_sum sum[2];         /* (layers · positions · d) totals over this rank's batches */
    dk_exact_sum norm_sum[2];    /* (layers) */
} batch_sums;

/* Names the model, layer and record of the first non-finite activation of a capture, if any. */
static int check_finite(const dk_method_job *job, const adl_dataset *ds, const float *cap, int64_t T, int64_t H,
                        int64_t layer, const int64_t *seq_start, int64_t s0, int64_t n, bool finetuned, dk_err *err) {
    dk_nonfinite_at at;
    if (!dk_first_nonfinite_in_batch(cap, T, H, seq_start, n, &at)) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s produced a non-finite activation (%s) at layer %lld on %s, sequence "
                      "%lld (%s:%lld), token %lld: check the %s weights (adapter scale, NaN in the checkpoint)",
                      finetuned ? job->pair.ft_id : job->pair.base_id, dk_nonfinite_name(at.value), (long long)layer,
                      ds->name, (long long)(s0 + at.seq), ds->path, (long long)ds->in.line[s0 + at.seq],
                      (long long)at.token, finetuned ? "finetuned model's" : "base model's");
}

static double row_norm(const float *x, int64_t H) {
    double s = 0;
    for (int64_t j = 0; j < H; j++) s += (double)x[j] * (double)x[j];
    return sqrt(s);
}

/* Sequences [s0, s1) of ds through both models; their activations added to the sums. */
static int run_batch(dk_method_job *job, const adl_state *st, const adl_dataset *ds, int64_t s0, int64_t s1,
                     float **cap[2], batch_sums *bs, dk_err *err) {
    const adl_inputs *in = &ds->in;
    const int64_t L = st->n_layers, P = in->n_pos, H = job->pair.d_model, n = s1 - s0;
    const int64_t t0 = in->offsets[s0], T = in->offsets[s1] - t0;
    int64_t *ids = dk_malloc((size_t)T * sizeof *ids), *seq_start = dk_malloc((size_t)(n + 1) * sizeof *seq_start);
    for (int64_t t = 0; t < T; t++) ids[t] = in->ids[t0 + t];
    for (int64_t i = 0; i <= n; i++) seq_start[i] = in->offsets[s0 + i] - t0;
    dk_batch batch = {ids, T, seq_start, n, true};
    int rc = 0;
    for (int side = 0; side < 2 && rc == 0; side++) {
        dk_hook_plan plan = {.n_capture = L, .capture_layers = st->layers, .captures = cap[side]};
        rc = dk_model_pair_forward(&job->pair, side == 1, &batch, &plan, err);
        for (int64_t l = 0; l < L && rc == 0; l++)
            rc = check_finite(job, ds, cap[side][l], T, H, st->layers[l], seq_start, s0, n, side == 1, err);
    }
    for (int side = 0; side < 2 && rc == 0; side++) {
        memset(bs->part[side], 0, (size_t)(L * P * H) * sizeof(double));
        memset(bs->norm_part[side], 0, (size_t)L * sizeof(double));
        for (int64_t l = 0; l < L; l++) {
            double *part = bs->part[side] + l * P * H;
            for (int64_t i = 0; i < n; i++) {
                const int64_t *pos = in->positions + (s0 + i) * P;
                for (int64_t j = 0; j < P; j++) {
                    const float *x = cap[side][l] + (seq_start[i] + pos[j]) * H;
                    double *acc = part + j * H;
                    for (int64_t h = 0; h < H; h++) acc[h] += x[h];
                    if (j >= ADL_NORM_SKIP_TOKENS) bs->norm_part[side][l] += row_norm(x, H);
                }
            }
        }
        if (!dk_exact_sum_add(&bs->sum[side], 0, bs->part[side], L * P * H) ||
            !dk_exact_sum_add(&bs->norm_sum[side], 0, bs->norm_part[side], L))
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: the %s model's activation sums left the exact range (|sum| "
                            "under 1e18): the activations are implausibly large", ds->name, side ? "finetuned" : "base");
    }
    free(ids);
    free(seq_start);
    return rc;
}

/* Rank 0, after the reduction: the means from the totals. */
static void finish(const batch_sums *bs, int64_t N, adl_means *out) {
    const int64_t L = out->n_layers, count = L * out->n_pos * out->d;
    const size_t bytes = (size_t)count * sizeof(float);
    out->mean_diff = dk_malloc(bytes);
    out->base_mean = dk_malloc(bytes);
    out->ft_mean = dk_malloc(bytes);
    for (int64_t i = 0; i < count; i++) {
        out->base_mean[i] = (float)(dk_exact_sum_value(&bs->sum[0], i) / (double)N);
        out->ft_mean[i] = (float)(dk_exact_sum_value(&bs->sum[1], i) / (double)N);
        out->mean_diff[i] = (float)(dk_exact_sum_diff(&bs->sum[1], &bs->sum[0], i) / (double)N);
    }
    out->base_norm = dk_malloc((size_t)L * sizeof(double));
    out->ft_norm = dk_malloc((size_t)L * sizeof(double));
    const double norm_count = (double)N * (double)(out->n_pos - ADL_NORM_SKIP_TOKENS);
    for (int64_t l = 0; l < L; l++) {
        out->base_norm[l] = dk_exact_sum_value(&bs->norm_sum[0], l) / norm_count;
        out->ft_norm[l] = dk_exact_sum_value(&bs->norm_sum[1], l) / norm_count;
    }
}

int adl_compute_means(dk_method_job *job, const adl_state *st, const adl_dataset *ds, adl_means *out, dk_err *err) {
    const adl_inputs *in = &ds->in;
    const int64_t L = st->n_layers, P = in->n_pos, H = job->pair.d_model, N = in->n_seqs, B = st->batch_size;
    memset(out, 0, sizeof *out);
    out->n_layers = L, out->n_pos = P, out->d = H, out->n_seqs = N;
    int64_t max_T = 1;
    for (int64_t s0 = 0; s0 < N; s0 += B) {
        const int64_t s1 = s0 + B < N ? s0 + B : N;
        if (in->offsets[s1] - in->offsets[s0] > max_T) max_T = in->offsets[s1] - in->offsets[s0];
    }
    const dk_model *base = dk_model_pair_model(&job->pair, false);
    const uint64_t need = 2ull * (uint64_t)(L * max_T * H) * sizeof(float) +
                          2ull * (uint64_t)(L * P * H) * (sizeof(double) + sizeof(__int128)) +
                          dk_forward_host_bytes(base, max_T, B, dk_model_pair_adapter(&job->pair, true));
    dk_backend *be[2] = {dk_model_pair_backend(&job->pair, false), dk_model_pair_backend(&job->pair, true)};
    if (dk_host_memory_check(need, "diff_adl's activations of both models for one batch and the sums",
                             "lower diffing.method.batch_size (or n, or the number of layers)", err) == 0) {
        dk_backend_reserve(be[0], max_T, B, L, dk_model_pair_adapter(&job->pair, true), err);
        if (be[1] != be[0]) dk_backend_reserve(be[1], max_T, B, L, NULL, err);
    }
    if (dk_dist_agree(&job->d, err) != 0) return -1;

    float **cap[2];               /* [model][layer] (max_T, H) */
    batch_sums bs;
    for (int side = 0; side < 2; side++) {
        cap[side] = dk_malloc((size_t)L * sizeof(float *));
        for (int64_t l = 0; l < L; l++) cap[side][l] = dk_backend_host_alloc(be[side], (size_t)(max_T * H) * sizeof(float));
        bs.part[side] = dk_malloc((size_t)(L * P * H) * sizeof(double));
        bs.norm_part[side] = dk_malloc((size_t)L * sizeof(double));
        dk_exact_sum_init(&bs.sum[side], L * P * H);
        dk_exact_sum_init(&bs.norm_sum[side], L);
    }
    char label[96];
    snprintf(label, sizeof label, "adl %.80s", ds->name);
    dk_progress prog;
    dk_progress_begin(&prog, label, (double)N, "sequences");
    int rc = 0;
    for (int64_t b = 0, s0 = 0; s0 < N && rc == 0; b++, s0 += B) {
        const int64_t s1 = s0 + B < N ? s0 + B : N;
        if (b % job->d.nranks != job->d.rank) continue;
        rc = run_batch(job, st, ds, s0, s1, cap, &bs, err);
        dk_progress_add(&prog, (double)(s1 - s0) * job->d.nranks); /* rank 0's share scaled to the whole */
    }
    dk_progress_end(&prog);
    for (int side = 0; side < 2; side++) {
        for (int64_t l = 0; l < L; l++) dk_backend_host_free(be[side], cap[side][l]);
        free(cap[side]);
        free(bs.part[side]);
        free(bs.norm_part[side]);
    }
    if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    if (rc == 0) {
        for (int side = 0; side < 2; side++) {
            dk_exact_sum_reduce(&bs.sum[side], &job->d);
            dk_exact_sum_reduce(&bs.norm_sum[side], &job->d);
        }
        if (job->d.rank == 0) {
            if (bs.sum[0].overflow || bs.sum[1].overflow || bs.norm_sum[0].overflow || bs.norm_sum[1].overflow)
                dk_err_set(err, DK_EXIT_RUNTIME, "%s: the activation sums left the exact range (|sum| under 2e21) "
                           "when the ranks' totals were added: the activations are implausibly large", ds->name);
            else
                finish(&bs, N, out);
        }
        if (dk_dist_agree(&job->d, err) != 0) rc = -1;
    }
    for (int side = 0; side < 2; side++) {
        dk_exact_sum_free(&bs.sum[side]);
        dk_exact_sum_free(&bs.norm_sum[side]);
    }
    return rc;
}

void adl_means_free(adl_means *m) {
    free(m->mean_diff);
    free(m->base_mean);
    free(m->ft_mean);
    free(m->base_norm);
    free(m->ft_norm);
    memset(m, 0, sizeof *m);
}
