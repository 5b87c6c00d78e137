/* test_dict_step_cuda.c — the CUDA twins of one BatchTopK SAE / crosscoder training step (kernels/cuda/dict_step.cuh)
 * against their CPU references (kernels/cpu/dict_step.h) on random inputs: an SAE shape (L = 1), a crosscoder
 * shape (L = 2) and a larger SAE, with ties in the scores (pre-activations on a 1/16 grid, code weights from a
 * small set), dead latents, and rows that select nothing (all pre-activations negative). Outputs are poisoned
 * and guarded (gpu_test.h). Label: gpu; exits 77 without a GPU.
 *
 * Tolerances (err = ‖gpu − cpu‖₂ / ‖cpu‖₂ over the output; the derivations are in dict_step.cuh):
 *   exact            u = x − b_dec, scores and relu(pre), every histogram, the selection and AuxK CSR (row_ptr,
 *                    idx, value bits), the backward's bitwise repeatability
 *   1e-6             decode, dW_dec, code weights, unit_norm, Adam (fp32 and bf16 moments against the CPU Adam
 *                    with its moments rounded to bf16): the CPU's own operations in its order, so only an FMA
 *                    contraction in the CPU build could move them (the log reports how many values are exact)
 *   1e-5             pre (the GEMM's reassociation over D), dW_enc and db_enc (δ = W_dec[j]·g by a warp tree
 *                    against the CPU's sequential sum), bdec_through_encoder, remove_parallel
 *   1e-12 relative   sumsq (fp64 sums in another order)
 * and the trainer's residual passes (section 11): e = x − x̂, the fired mask and smallest selected score, the
 * column sums, the b_dec gradient and AuxK's gradient exact; the loss gradient 1e-6 (the crosscoder's ‖e_bl‖ from
 * an fp64 tree); the residual and AuxK sums 1e-12 relative (fp64 trees per row, rows in the CPU's order). */
#include "gpu_test.h"

#include <stdbool.h>

#include "kernels/cpu/dict_step.h"
#include "kernels/cuda/dict_step.cuh"
#include "kernels/cuda/gemm.cuh"

/* ---------------------------------------------------------------------------------------------------
 * helpers */

/* A guarded device copy of n elements of esize bytes from host. */
static dbuf up(const void *host, size_t n, size_t esize) {
    dbuf b = dbuf_new_raw(n, esize);
    if (n) dbuf_put(&b, host);
    return b;
}

static float *copy_f(const float *x, size_t n) {
    float *c = malloc((n ? n : 1) * sizeof *c);
    memcpy(c, x, n * sizeof *c);
    return c;
}

/* Bitwise equality of n floats; prints the record line. */
static void expect_exact(const char *what, const float *got, const float *want, size_t n) {
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&got[i], &want[i], sizeof(float)) != 0;
    printf("  %-56s %s (%zu of %zu differ)\n", what, diff ? "DIFFERENT" : "exact", diff, n);
    EXPECT(diff == 0, "%s: %zu of %zu values differ from the CPU's bits", what, diff, n);
}

/* gpu_expect_close in fp32 mode, plus how many values are bit-identical (the record of the "exact" claims). */
static void expect_close(const char *what, const float *got, const float *want, size_t n, double tol) {
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += memcmp(&got[i], &want[i], sizeof(float)) == 0;
    char w[160];
    snprintf(w, sizeof w, "%s [%zu/%zu exact]", what, same, n);
    gpu_expect_close(w, got, want, n, DK_CUDA_F32, tol);
}

/* A CSR code on the GPU (row_ptr, idx, fval with capacity cap) against the CPU's: identical. */
static void expect_same_csr(const char *what, const dbuf *rp, const dbuf *ix, const dbuf *fv, int64_t n_gpu,
                            const int64_t *rp_cpu, const int32_t *ix_cpu, const float *fv_cpu, int64_t rows,
                            int64_t n_cpu) {
    int64_t *rp_gpu = dbuf_get(rp);
    int32_t *ix_gpu = dbuf_get(ix);
    float *fv_gpu = dbuf_get(fv);
    const bool same_n = n_gpu == n_cpu;
    const bool same_rp = memcmp(rp_gpu, rp_cpu, (size_t)(rows + 1) * sizeof(int64_t)) == 0;
    const bool same_ix = same_n && memcmp(ix_gpu, ix_cpu, (size_t)n_cpu * sizeof(int32_t)) == 0;
    const bool same_fv = same_n && memcmp(fv_gpu, fv_cpu, (size_t)n_cpu * sizeof(float)) == 0;
    printf("  %-56s %lld entries: %s\n", what, (long long)n_cpu,
           same_n && same_rp && same_ix && same_fv ? "identical CSR" : "DIFFERENT");
    EXPECT(same_n, "%s: %lld entries, the CPU %lld", what, (long long)n_gpu, (long long)n_cpu);
    EXPECT(same_rp, "%s: row_ptr differs from the CPU's", what);
    EXPECT(same_ix, "%s: latent indices differ from the CPU's", what);
    EXPECT(same_fv, "%s: values differ from the CPU's", what);
    gpu_expect_guards(what, ix);
    gpu_expect_guards(what, fv);
    gpu_expect_guards(what, rp);
    free(rp_gpu), free(ix_gpu), free(fv_gpu);
}

/* ---------------------------------------------------------------------------------------------------
 * one shape: every twin */

typedef struct dict_case {
    const char *name;
    int64_t d, L, F, rows;
    int64_t k;      /* mean selected per row */
    double dead;    /* fraction of dead latents */
    int64_t k_aux;  /* the sorted AuxK path needs k_aux < dead count */
} dict_case;

static void run_case(const dict_case *c, dk_cuda_gemm *gemm) {
    const dk_dict_shape s = {c->d, c->L, c->d * c->L, c->F};
    const int64_t D = s.D, F = s.F, rows = c->rows, P = dk_dict_n_params(&s);
    const bool sae = c->L == 1;
    char what[128];
    printf("%s: d %lld, L %lld, F %lld, rows %lld\n", c->name, (long long)c->d, (long long)c->L, (long long)F,
           (long long)rows);
    dk_cuda_dict *ctx;
    const int64_t cap = rows * F;
    CUDA_CHECK(dk_cuda_dict_create(&ctx, &s, rows, cap));

    /* parameters: p = [W_enc, b_enc, W_dec, b_dec] */
    float *p = gpu_random((size_t)P, -0.3f, 0.3f);
    float *W_enc = p, *b_enc = p + dk_dict_off_b_enc(&s), *W_dec = p + dk_dict_off_W_dec(&s),
          *b_dec = p + dk_dict_off_b_dec(&s);
    float *x = gpu_random((size_t)(rows * D), -1.0f, 1.0f);

    /* 1. encode */
    float *u = malloc((size_t)(rows * D) * sizeof *u), *pre = malloc((size_t)(rows * F) * sizeof *pre);
    dk_cpu_dict_encode(&s, x, rows, W_enc, b_enc, sae ? b_dec : NULL, sae ? u : NULL, pre);
    if (!sae) memcpy(u, x, (size_t)(rows * D) * sizeof *u);
    dbuf d_x = up(x, (size_t)(rows * D), 4), d_p = up(p, (size_t)P, 4);
    dbuf d_u = dbuf_new((size_t)(rows * D), DK_CUDA_F32), d_pre = dbuf_new((size_t)(rows * F), DK_CUDA_F32);
    const float *dp = d_p.d;
    CUBLAS_CHECK(dk_cuda_dict_encode(gemm, &s, d_x.d, rows, dp, dp + dk_dict_off_b_enc(&s),
                                     sae ? dp + dk_dict_off_b_dec(&s) : NULL, d_u.d, d_pre.d, 0));
    float *got = dbuf_download(&d_u);
    snprintf(what, sizeof what, "%s encode u", c->name);
    expect_exact(what, got, u, (size_t)(rows * D));
    free(got);
    got = dbuf_download(&d_pre);
    snprintf(what, sizeof what, "%s encode pre", c->name);
    expect_close(what, got, pre, (size_t)(rows * F), 1e-5);
    gpu_expect_guards(what, &d_pre);
    free(got);

    /* 2. code weights */
    float *w = malloc((size_t)F * sizeof *w);
    dk_cpu_dict_code_weights(&s, W_dec, w);
    dbuf d_w = dbuf_new((size_t)F, DK_CUDA_F32);
    CUDA_CHECK(dk_cuda_dict_code_weights(&s, dp + dk_dict_off_W_dec(&s), d_w.d, 0));
    got = dbuf_download(&d_w);
    snprintf(what, sizeof what, "%s code_weights", c->name);
    expect_close(what, got, w, (size_t)F, 1e-6);
    gpu_expect_guards(what, &d_w);
    free(got);

    /* ties: pre on a 1/16 grid and (crosscoder) weights from {1, 1.5, 2}; row 1 selects nothing */
    for (int64_t i = 0; i < rows * F; i++) pre[i] = roundf(pre[i] * 16.0f) / 16.0f;
    for (int64_t j = 0; j < F; j++) pre[1 * F + j] = -fabsf(pre[1 * F + j]) - 0.0625f;
    for (int64_t j = 0; j < F; j++) w[j] = 1.0f + 0.5f * (float)(j % 3);
    const float *wsel = sae ? NULL : w;
    dbuf_upload(&d_w, w);

    /* 3. scores with the fused histogram; relu(pre) in place */
    float *scores = malloc((size_t)(rows * F) * sizeof *scores), *a = copy_f(pre, (size_t)(rows * F));
    dk_cpu_dict_scores(pre, rows, F, wsel, scores, NULL); /* pre is relu(pre) now: the same input for the GPU */
    for (int64_t i = 0; i < rows * F; i++) a[i] = a[i] > 0 ? a[i] : 0.0f;
    uint64_t *h_init = malloc(DK_DICT_HIST_BINS * sizeof *h_init), *h_cpu = malloc(DK_DICT_HIST_BINS * sizeof *h_cpu);
    for (int b = 0; b < DK_DICT_HIST_BINS; b++) h_init[b] = (uint64_t)(b % 7); /* the histograms accumulate */
    memcpy(h_cpu, h_init, DK_DICT_HIST_BINS * sizeof *h_cpu);
    dk_cpu_hist_hi(scores, rows * F, h_cpu);
    dbuf d_a = up(pre, (size_t)(rows * F), 4), d_s = dbuf_new((size_t)(rows * F), DK_CUDA_F32);
    dbuf d_h = up(h_init, DK_DICT_HIST_BINS, 8);
    CUDA_CHECK(dk_cuda_dict_scores(d_a.d, rows, F, sae ? NULL : d_w.d, d_s.d, d_h.d, 0));
    got = dbuf_download(&d_s);
    snprintf(what, sizeof what, "%s scores", c->name);
    expect_exact(what, got, scores, (size_t)(rows * F));
    free(got);
    got = dbuf_download(&d_a);
    snprintf(what, sizeof what, "%s relu(pre) in place", c->name);
    expect_exact(what, got, a, (size_t)(rows * F));
    free(got);
    uint64_t *h_gpu = dbuf_get(&d_h);
    snprintf(what, sizeof what, "%s hist_hi fused with the scores", c->name);
    EXPECT(memcmp(h_gpu, h_cpu, DK_DICT_HIST_BINS * 8) == 0, "%s: counts differ from the CPU's", what);
    gpu_expect_guards(what, &d_h);
    free(h_gpu);
    dbuf_put(&d_h, h_init);
    CUDA_CHECK(dk_cuda_hist_hi(d_s.d, rows * F, d_h.d, 0));
    h_gpu = dbuf_get(&d_h);
    snprintf(what, sizeof what, "%s hist_hi", c->name);
    EXPECT(memcmp(h_gpu, h_cpu, DK_DICT_HIST_BINS * 8) == 0, "%s: counts differ from the CPU's", what);
    free(h_gpu);

    /* 4. thresholds from the GPU's histograms (dict_train.c's rule on one rank), then the selection */
    uint64_t positives = 0;
    for (int b = 0; b < DK_DICT_HIST_BINS; b++) positives += h_cpu[b] - h_init[b];
    const int64_t Ks[] = {c->k * rows, 1, (int64_t)positives + 10};
    int64_t *rp_cpu = malloc((size_t)(rows + 1) * sizeof *rp_cpu);
    int32_t *ix_cpu = malloc((size_t)cap * sizeof *ix_cpu);
    float *fv_cpu = malloc((size_t)cap * sizeof *fv_cpu);
    dbuf d_rp = dbuf_new_raw((size_t)rows + 1, 8), d_ix = dbuf_new_raw((size_t)cap, 4), d_fv = dbuf_new_raw((size_t)cap, 4);
    int64_t main_nnz;
    for (int ki = 0; ki < 3; ki++) {
        const int64_t K = Ks[ki];
        float t = 0.0f;
        int64_t ties = 0;
        if (positives > (uint64_t)K) {
            uint64_t above = 0;
            int hb = DK_DICT_HIST_BINS - 1;
            while (above + (h_cpu[hb] - h_init[hb]) < (uint64_t)K) above += h_cpu[hb] - h_init[hb], hb--;
            uint64_t *lo_cpu = calloc(DK_DICT_HIST_BINS, 8);
            dk_cpu_hist_lo(scores, rows * F, (uint32_t)hb, lo_cpu);
            dbuf d_lo = dbuf_new_raw(DK_DICT_HIST_BINS, 8);
            CUDA_CHECK(cudaMemset(d_lo.d, 0, DK_DICT_HIST_BINS * 8));
            CUDA_CHECK(dk_cuda_hist_lo(d_s.d, rows * F, (uint32_t)hb, d_lo.d, 0));
            uint64_t *lo_gpu = dbuf_get(&d_lo);
            snprintf(what, sizeof what, "%s hist_lo (K %lld)", c->name, (long long)K);
            EXPECT(memcmp(lo_gpu, lo_cpu, DK_DICT_HIST_BINS * 8) == 0, "%s: counts differ from the CPU's", what);
            gpu_expect_guards(what, &d_lo);
            int lb = DK_DICT_HIST_BINS - 1;
            while (above + lo_gpu[lb] < (uint64_t)K) above += lo_gpu[lb--];
            const uint32_t bits = (uint32_t)hb << 16 | (uint32_t)lb;
            memcpy(&t, &bits, sizeof t);
            ties = K - (int64_t)above;
            free(lo_cpu), free(lo_gpu);
            dbuf_free(&d_lo);
        }
        int64_t n_gpu;
        const int64_t n_cpu = dk_cpu_select(scores, a, rows, F, t, ties, rp_cpu, ix_cpu, fv_cpu, cap);
        gpu_poison_device(d_ix.base, (d_ix.n + 2 * GPU_GUARD) * 4);
        CUDA_CHECK(dk_cuda_select(ctx, d_s.d, d_a.d, rows, F, t, ties, d_rp.d, d_ix.d, d_fv.d, cap, &n_gpu, 0));
        snprintf(what, sizeof what, "%s select K %lld (t %g, %lld ties)", c->name, (long long)K, t, (long long)ties);
        expect_same_csr(what, &d_rp, &d_ix, &d_fv, n_gpu, rp_cpu, ix_cpu, fv_cpu, rows, n_cpu);
        EXPECT(n_cpu == (K < (int64_t)positives ? K : (int64_t)positives), "%s: %lld selected", what, (long long)n_cpu);
        EXPECT(rp_cpu[2] == rp_cpu[1], "%s: row 1 (all negative) selected something", what);
    }
    /* t at a value with many ties, half of them kept: the ties fall to the first rows */
    {
        const float t = 0.5f * (sae ? 1.0f : 1.5f);
        int64_t n_eq = 0;
        for (int64_t i = 0; i < rows * F; i++) n_eq += scores[i] == t;
        const int64_t ties = n_eq / 2;
        int64_t n_gpu;
        const int64_t n_cpu = dk_cpu_select(scores, a, rows, F, t, ties, rp_cpu, ix_cpu, fv_cpu, cap);
        CUDA_CHECK(dk_cuda_select(ctx, d_s.d, d_a.d, rows, F, t, ties, d_rp.d, d_ix.d, d_fv.d, cap, &n_gpu, 0));
        snprintf(what, sizeof what, "%s select t %g, %lld of %lld ties", c->name, t, (long long)ties, (long long)n_eq);
        expect_same_csr(what, &d_rp, &d_ix, &d_fv, n_gpu, rp_cpu, ix_cpu, fv_cpu, rows, n_cpu);
        EXPECT(n_eq > 2 * rows, "%s: the grid gave only %lld ties", what, (long long)n_eq);
        /* a capacity below the count is refused */
        EXPECT(dk_cuda_select(ctx, d_s.d, d_a.d, rows, F, t, ties, d_rp.d, d_ix.d, d_fv.d, n_cpu - 1, &n_gpu, 0) ==
                   cudaErrorInvalidValue, "%s: capacity %lld accepted", what, (long long)(n_cpu - 1));
        gpu_expect_guards(what, &d_ix);
    }
    /* 5. AuxK selection: dead latents; k_aux below (sorted path) and at least (index order) their count */
    uint8_t *dead = malloc((size_t)F);
    int64_t n_dead = 0;
    for (int64_t j = 0; j < F; j++) n_dead += dead[j] = gpu_uniform(0, 1) < c->dead;
    const int64_t aux_cap = rows * F;
    int64_t *arp_cpu = malloc((size_t)(rows + 1) * sizeof *arp_cpu);
    int32_t *aix_cpu = malloc((size_t)aux_cap * sizeof *aix_cpu);
    float *afv_cpu = malloc((size_t)aux_cap * sizeof *afv_cpu);
    dbuf d_dead = up(dead, (size_t)F, 1);
    dbuf d_arp = dbuf_new_raw((size_t)rows + 1, 8), d_aix = dbuf_new_raw((size_t)aux_cap, 4),
         d_afv = dbuf_new_raw((size_t)aux_cap, 4);
    const int64_t k_auxes[] = {n_dead, n_dead + 5, 1, c->k_aux}; /* the last one is the code decoded below */
    int64_t aux_nnz = 0;
    for (int i = 0; i < 4; i++) {
        const int64_t k_aux = k_auxes[i];
        int64_t n_gpu;
        const int64_t n_cpu = dk_cpu_auxk_select(scores, a, rows, F, dead, k_aux, arp_cpu, aix_cpu, afv_cpu);
        CUDA_CHECK(dk_cuda_auxk_select(ctx, d_s.d, d_a.d, rows, F, d_dead.d, k_aux, d_arp.d, d_aix.d, d_afv.d, &n_gpu,
                                       0));
        snprintf(what, sizeof what, "%s auxk k_aux %lld of %lld dead", c->name, (long long)k_aux, (long long)n_dead);
        expect_same_csr(what, &d_arp, &d_aix, &d_afv, n_gpu, arp_cpu, aix_cpu, afv_cpu, rows, n_cpu);
        aux_nnz = n_cpu;
    }
    EXPECT(c->k_aux < n_dead, "%s: k_aux %lld does not exercise the sorted path (%lld dead)", c->name,
           (long long)c->k_aux, (long long)n_dead);
    /* 6. decode a main code (with b_dec) and the AuxK code (without) */
    int64_t main_gpu;
    main_nnz = dk_cpu_select(scores, a, rows, F, 0.25f, 3, rp_cpu, ix_cpu, fv_cpu, cap);
    CUDA_CHECK(dk_cuda_select(ctx, d_s.d, d_a.d, rows, F, 0.25f, 3, d_rp.d, d_ix.d, d_fv.d, cap, &main_gpu, 0));
    EXPECT(main_gpu == main_nnz, "%s: main code %lld entries, CPU %lld", c->name, (long long)main_gpu,
           (long long)main_nnz);
    float *xhat = malloc((size_t)(rows * D) * sizeof *xhat);
    dbuf d_out = dbuf_new((size_t)(rows * D), DK_CUDA_F32);
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        const int64_t *rp = with_bias ? rp_cpu : arp_cpu;
        const int32_t *ix = with_bias ? ix_cpu : aix_cpu;
        const float *fv = with_bias ? fv_cpu : afv_cpu;
        dk_cpu_dict_decode(&s, rows, rp, ix, fv, W_dec, with_bias ? b_dec : NULL, xhat);
        CUDA_CHECK(dk_cuda_dict_decode(&s, rows, with_bias ? d_rp.d : d_arp.d, with_bias ? d_ix.d : d_aix.d,
                                       with_bias ? d_fv.d : d_afv.d, dp + dk_dict_off_W_dec(&s),
                                       with_bias ? dp + dk_dict_off_b_dec(&s) : NULL, d_out.d, 0));
        got = dbuf_download(&d_out);
        snprintf(what, sizeof what, "%s decode %s", c->name, with_bias ? "main + b_dec" : "auxk, no bias");
        expect_close(what, got, xhat, (size_t)(rows * D), 1e-6);
        gpu_expect_guards(what, &d_out);
        free(got);
    }

    /* 7. backward: the AuxK code then the main code into the same gradients, as dict_train.c */
    float *g = gpu_random((size_t)(rows * D), -0.01f, 0.01f), *h = gpu_random((size_t)(rows * D), -0.001f, 0.001f);
    float *grad = gpu_random((size_t)P, -0.001f, 0.001f);
    dbuf d_g = up(g, (size_t)(rows * D), 4), d_hh = up(h, (size_t)(rows * D), 4), d_grad = up(grad, (size_t)P, 4);
    float *dgr = d_grad.d;
    const dbuf *d_uin = sae ? &d_u : &d_x;
    float *runs[2];
    for (int run = 0; run < 2; run++) { /* twice from the same start: bitwise repeatable */
        dbuf_put(&d_grad, grad);
        CUDA_CHECK(dk_cuda_dict_backward(ctx, &s, rows, d_arp.d, d_aix.d, d_afv.d, aux_nnz, d_hh.d, d_uin->d,
                                         dp + dk_dict_off_W_dec(&s), dgr, dgr + dk_dict_off_b_enc(&s),
                                         dgr + dk_dict_off_W_dec(&s), 0));
        CUDA_CHECK(dk_cuda_dict_backward(ctx, &s, rows, d_rp.d, d_ix.d, d_fv.d, main_nnz, d_g.d, d_uin->d,
                                         dp + dk_dict_off_W_dec(&s), dgr, dgr + dk_dict_off_b_enc(&s),
                                         dgr + dk_dict_off_W_dec(&s), 0));
        runs[run] = dbuf_download(&d_grad);
    }
    snprintf(what, sizeof what, "%s backward", c->name);
    gpu_expect_same_bits(what, runs[0], runs[1], (size_t)P * 4);
    free(runs[1]);
    float *grad_cpu = copy_f(grad, (size_t)P);
    dk_cpu_dict_backward(&s, rows, arp_cpu, aix_cpu, afv_cpu, h, u, W_dec, grad_cpu, grad_cpu + dk_dict_off_b_enc(&s),
                         grad_cpu + dk_dict_off_W_dec(&s));
    dk_cpu_dict_backward(&s, rows, rp_cpu, ix_cpu, fv_cpu, g, u, W_dec, grad_cpu, grad_cpu + dk_dict_off_b_enc(&s),
                         grad_cpu + dk_dict_off_W_dec(&s));
    got = runs[0];
    /* the gradients' change (the start is added back on both sides, so compare the increments) */
    float *inc_gpu = malloc((size_t)P * sizeof *inc_gpu), *inc_cpu = malloc((size_t)P * sizeof *inc_cpu);
    for (int64_t i = 0; i < P; i++) inc_gpu[i] = got[i] - grad[i], inc_cpu[i] = grad_cpu[i] - grad[i];
    snprintf(what, sizeof what, "%s backward dW_enc", c->name);
    expect_close(what, inc_gpu, inc_cpu, (size_t)(F * D), 1e-5);
    snprintf(what, sizeof what, "%s backward db_enc", c->name);
    expect_close(what, inc_gpu + dk_dict_off_b_enc(&s), inc_cpu + dk_dict_off_b_enc(&s), (size_t)F, 1e-5);
    snprintf(what, sizeof what, "%s backward dW_dec", c->name);
    expect_close(what, got + dk_dict_off_W_dec(&s), grad_cpu + dk_dict_off_W_dec(&s), (size_t)(F * D), 1e-6);
    expect_close(what, inc_gpu + dk_dict_off_W_dec(&s), inc_cpu + dk_dict_off_W_dec(&s), (size_t)(F * D), 1e-5);
    snprintf(what, sizeof what, "%s backward b_dec untouched", c->name);
    expect_exact(what, got + dk_dict_off_b_dec(&s), grad + dk_dict_off_b_dec(&s), (size_t)D);
    gpu_expect_guards(what, &d_grad);
    free(got);

    /* 8. the SAE pieces (run on every shape: they are per-row / per-latent maps) */
    memcpy(grad_cpu, grad, (size_t)P * sizeof(float));
    dbuf_put(&d_grad, grad);
    dk_cpu_dict_bdec_through_encoder(&s, W_enc, grad_cpu + dk_dict_off_b_enc(&s), grad_cpu + dk_dict_off_b_dec(&s));
    CUDA_CHECK(dk_cuda_dict_bdec_through_encoder(&s, dp, dgr + dk_dict_off_b_enc(&s), dgr + dk_dict_off_b_dec(&s), 0));
    got = dbuf_download(&d_grad);
    for (int64_t i = 0; i < D; i++) {
        const int64_t o = dk_dict_off_b_dec(&s) + i;
        inc_gpu[i] = got[o] - grad[o], inc_cpu[i] = grad_cpu[o] - grad[o];
    }
    snprintf(what, sizeof what, "%s bdec_through_encoder", c->name);
    expect_close(what, inc_gpu, inc_cpu, (size_t)D, 1e-5);
    free(got);

    dk_cpu_dict_remove_parallel(&s, W_dec, grad_cpu + dk_dict_off_W_dec(&s));
    CUDA_CHECK(dk_cuda_dict_remove_parallel(&s, dp + dk_dict_off_W_dec(&s), dgr + dk_dict_off_W_dec(&s), 0));
    got = dbuf_download(&d_grad);
    snprintf(what, sizeof what, "%s remove_parallel", c->name);
    expect_close(what, got + dk_dict_off_W_dec(&s), grad_cpu + dk_dict_off_W_dec(&s), (size_t)(F * D), 1e-5);
    free(got);

    /* 9. sum of squares (from here on both sides start from the CPU's gradients) */
    dbuf_put(&d_grad, grad_cpu);
    double ss_gpu;
    CUDA_CHECK(dk_cuda_sumsq(ctx, dgr, P, &ss_gpu, 0));
    const double ss_cpu = dk_cpu_sumsq(grad_cpu, P);
    printf("  %-56s gpu %.17g cpu %.17g\n", "sumsq", ss_gpu, ss_cpu);
    EXPECT(fabs(ss_gpu - ss_cpu) <= 1e-12 * ss_cpu, "%s sumsq: %.17g, CPU %.17g", c->name, ss_gpu, ss_cpu);

    /* 10. Adam, three steps (fp32 moments, then bf16 moments against the CPU Adam with rounded moments), then
     * unit_norm on the result */
    float *m = gpu_random((size_t)P, -1e-3f, 1e-3f), *v = gpu_random((size_t)P, 0.0f, 1e-5f);
    float *p_cpu = copy_f(p, (size_t)P), *m_cpu = copy_f(m, (size_t)P), *v_cpu = copy_f(v, (size_t)P);
    dbuf d_m = up(m, (size_t)P, 4), d_v = up(v, (size_t)P, 4);
    for (int64_t t = 1; t <= 3; t++) {
        dk_cpu_adam(p_cpu, grad_cpu, m_cpu, v_cpu, P, 0.7f, 1e-3, 0.9, 0.999, 1e-8, t);
        CUDA_CHECK(dk_cuda_adam(d_p.d, dgr, d_m.d, d_v.d, P, 0.7f, 1e-3, 0.9, 0.999, 1e-8, t, 0));
    }
    float *got_p = dbuf_download(&d_p), *got_m = dbuf_download(&d_m), *got_v = dbuf_download(&d_v);
    snprintf(what, sizeof what, "%s adam p", c->name);
    expect_close(what, got_p, p_cpu, (size_t)P, 1e-6);
    gpu_expect_guards(what, &d_p);
    snprintf(what, sizeof what, "%s adam m", c->name);
    expect_close(what, got_m, m_cpu, (size_t)P, 1e-6);
    snprintf(what, sizeof what, "%s adam v", c->name);
    expect_close(what, got_v, v_cpu, (size_t)P, 1e-6);
    free(got_p), free(got_m), free(got_v);

    {
        uint16_t *m16 = malloc((size_t)P * 2), *v16 = malloc((size_t)P * 2);
        float *pb = copy_f(p, (size_t)P), *mb = malloc((size_t)P * sizeof *mb), *vb = malloc((size_t)P * sizeof *vb);
        for (int64_t i = 0; i < P; i++) {
            m16[i] = dk_f32_to_bf16(m[i]), v16[i] = dk_f32_to_bf16(v[i]);
            mb[i] = dk_bf16_to_f32(m16[i]), vb[i] = dk_bf16_to_f32(v16[i]);
        }
        dbuf d_pb = up(p, (size_t)P, 4), d_m16 = up(m16, (size_t)P, 2), d_v16 = up(v16, (size_t)P, 2);
        for (int64_t t = 1; t <= 3; t++) {
            dk_cpu_adam(pb, grad_cpu, mb, vb, P, 0.7f, 1e-3, 0.9, 0.999, 1e-8, t);
            for (int64_t i = 0; i < P; i++) mb[i] = gpu_round_bf16(mb[i]), vb[i] = gpu_round_bf16(vb[i]);
            CUDA_CHECK(dk_cuda_adam_bf16(d_pb.d, dgr, d_m16.d, d_v16.d, P, 0.7f, 1e-3, 0.9, 0.999, 1e-8, t, 0));
        }
        float *gp = dbuf_download(&d_pb);
        uint16_t *gm = dbuf_get(&d_m16), *gv = dbuf_get(&d_v16);
        float *gmf = malloc((size_t)P * sizeof *gmf), *gvf = malloc((size_t)P * sizeof *gvf);
        for (int64_t i = 0; i < P; i++) gmf[i] = dk_bf16_to_f32(gm[i]), gvf[i] = dk_bf16_to_f32(gv[i]);
        snprintf(what, sizeof what, "%s adam_bf16 p", c->name);
        expect_close(what, gp, pb, (size_t)P, 1e-6);
        snprintf(what, sizeof what, "%s adam_bf16 m (bf16)", c->name);
        expect_close(what, gmf, mb, (size_t)P, 1e-6);
        snprintf(what, sizeof what, "%s adam_bf16 v (bf16)", c->name);
        expect_close(what, gvf, vb, (size_t)P, 1e-6);
        gpu_expect_guards(what, &d_v16);
        /* the record: how far bf16 moments move the three updates from fp32 moments */
        double num = 0, den = 0;
        for (int64_t i = 0; i < P; i++) {
            const double dref = (double)p_cpu[i] - p[i], d16 = (double)gp[i] - p[i];
            num += (d16 - dref) * (d16 - dref), den += dref * dref;
        }
        printf("  %-56s %.3g relative (3 steps)\n", "bf16 moments: update vs fp32 moments", sqrt(num / den));
        free(m16), free(v16), free(pb), free(mb), free(vb), free(gp), free(gm), free(gv), free(gmf), free(gvf);
        dbuf_free(&d_pb), dbuf_free(&d_m16), dbuf_free(&d_v16);
    }

    dbuf_put(&d_p, p_cpu);
    dk_cpu_dict_unit_norm(&s, p_cpu + dk_dict_off_W_dec(&s));
    CUDA_CHECK(dk_cuda_dict_unit_norm(&s, (float *)d_p.d + dk_dict_off_W_dec(&s), 0));
    got = dbuf_download(&d_p);
    snprintf(what, sizeof what, "%s unit_norm", c->name);
    expect_close(what, got + dk_dict_off_W_dec(&s), p_cpu + dk_dict_off_W_dec(&s), (size_t)(F * D), 1e-6);
    free(got);

    /* 11. the trainer's residual passes: loss residual and gradient, fired mask and smallest score, column sums,
     * the b_dec gradient, AuxK's residual sums and gradient (xhat: the AuxK decode above, as a reconstruction) */
    {
        const int64_t B = 3 * rows, nD = rows * D; /* these rows are a third of a global batch */
        float *e_cpu = copy_f(xhat, (size_t)nD), *g_cpu = malloc((size_t)nD * sizeof *g_cpu);
        double sums_cpu[2], sums_gpu[2];
        dk_cpu_dict_residual(&s, x, rows, B, sae, e_cpu, g_cpu, sums_cpu);
        dbuf d_e = up(xhat, (size_t)nD, 4), d_lg = dbuf_new((size_t)nD, DK_CUDA_F32);
        CUDA_CHECK(dk_cuda_dict_residual(ctx, &s, d_x.d, rows, B, sae, d_e.d, d_lg.d, sums_gpu, 0));
        got = dbuf_download(&d_e);
        snprintf(what, sizeof what, "%s residual e", c->name);
        expect_exact(what, got, e_cpu, (size_t)nD);
        gpu_expect_guards(what, &d_e);
        free(got);
        got = dbuf_download(&d_lg);
        snprintf(what, sizeof what, "%s residual g", c->name); /* the crosscoder's norm: a tree over d in fp64 */
        expect_close(what, got, g_cpu, (size_t)nD, 1e-6);
        gpu_expect_guards(what, &d_lg);
        free(got);
        printf("  %-56s gpu %.17g %.17g cpu %.17g %.17g\n", "residual sums", sums_gpu[0], sums_gpu[1], sums_cpu[0],
               sums_cpu[1]);
        for (int i = 0; i < 2; i++)
            EXPECT(fabs(sums_gpu[i] - sums_cpu[i]) <= 1e-12 * fabs(sums_cpu[i]), "%s residual sums[%d]: %.17g, CPU "
                   "%.17g", c->name, i, sums_gpu[i], sums_cpu[i]);

        uint8_t *fired_cpu = malloc((size_t)F);
        const float min_cpu = dk_cpu_dict_fired(main_nnz, ix_cpu, fv_cpu, wsel, F, fired_cpu);
        float min_gpu;
        dbuf d_fired = dbuf_new_raw((size_t)F, 1);
        CUDA_CHECK(dk_cuda_dict_fired(ctx, main_nnz, d_ix.d, d_fv.d, sae ? NULL : d_w.d, F, d_fired.d, &min_gpu, 0));
        uint8_t *fired_gpu = dbuf_get(&d_fired);
        snprintf(what, sizeof what, "%s fired", c->name);
        EXPECT(memcmp(fired_gpu, fired_cpu, (size_t)F) == 0, "%s: the masks differ", what);
        EXPECT(memcmp(&min_gpu, &min_cpu, sizeof min_cpu) == 0, "%s: smallest score %.9g, CPU %.9g", what, min_gpu,
               min_cpu);
        /* no guard check: a byte buffer of odd length puts the 16-bit poison pattern out of phase after it */

        double *cols_cpu = malloc((size_t)D * sizeof *cols_cpu);
        dk_cpu_dict_col_sums(e_cpu, rows, D, cols_cpu);
        dbuf d_cols = dbuf_new_raw((size_t)D, 8);
        CUDA_CHECK(dk_cuda_dict_col_sums(d_e.d, rows, D, d_cols.d, 0));
        double *cols_gpu = dbuf_get(&d_cols);
        snprintf(what, sizeof what, "%s col_sums", c->name);
        EXPECT(memcmp(cols_gpu, cols_cpu, (size_t)D * sizeof(double)) == 0, "%s: not the CPU's bits", what);
        gpu_expect_guards(what, &d_cols);

        float *bd_cpu = copy_f(grad + dk_dict_off_b_dec(&s), (size_t)D);
        dk_cpu_dict_bdec_grad(g_cpu, rows, D, bd_cpu);
        dbuf d_bd = up(grad + dk_dict_off_b_dec(&s), (size_t)D, 4);
        dbuf_put(&d_lg, g_cpu);
        CUDA_CHECK(dk_cuda_dict_bdec_grad(d_lg.d, rows, D, d_bd.d, 0));
        got = dbuf_download(&d_bd);
        snprintf(what, sizeof what, "%s bdec_grad", c->name);
        expect_exact(what, got, bd_cpu, (size_t)D);
        gpu_expect_guards(what, &d_bd);
        free(got);

        for (int64_t i = 0; i < D; i++) cols_cpu[i] /= (double)B;
        dbuf_put(&d_cols, cols_cpu);
        double nd_cpu[2], nd_gpu[2];
        dk_cpu_dict_auxk_residual(e_cpu, h, cols_cpu, rows, D, nd_cpu);
        CUDA_CHECK(dk_cuda_dict_auxk_residual(ctx, d_e.d, d_hh.d, d_cols.d, rows, D, nd_gpu, 0));
        printf("  %-56s gpu %.17g %.17g cpu %.17g %.17g\n", "auxk_residual", nd_gpu[0], nd_gpu[1], nd_cpu[0],
               nd_cpu[1]);
        for (int i = 0; i < 2; i++)
            EXPECT(fabs(nd_gpu[i] - nd_cpu[i]) <= 1e-12 * fabs(nd_cpu[i]), "%s auxk_residual nd[%d]: %.17g, CPU %.17g",
                   c->name, i, nd_gpu[i], nd_cpu[i]);

        float *ag_cpu = copy_f(h, (size_t)nD);
        dk_cpu_dict_auxk_grad(e_cpu, ag_cpu, nD, -0.37f);
        CUDA_CHECK(dk_cuda_dict_auxk_grad(d_e.d, d_hh.d, nD, -0.37f, 0));
        got = dbuf_download(&d_hh);
        snprintf(what, sizeof what, "%s auxk_grad", c->name);
        expect_exact(what, got, ag_cpu, (size_t)nD);
        gpu_expect_guards(what, &d_hh);
        free(got);
        free(e_cpu), free(g_cpu), free(fired_cpu), free(fired_gpu), free(cols_cpu), free(cols_gpu), free(bd_cpu);
        free(ag_cpu);
        dbuf *more[] = {&d_e, &d_lg, &d_fired, &d_cols, &d_bd};
        for (size_t i = 0; i < sizeof more / sizeof *more; i++) dbuf_free(more[i]);
    }

    CUDA_CHECK(cudaDeviceSynchronize());
    dk_cuda_dict_destroy(ctx);
    dbuf *bufs[] = {&d_x, &d_p, &d_u, &d_pre, &d_w, &d_a, &d_s, &d_h, &d_rp, &d_ix, &d_fv, &d_dead, &d_arp,
                    &d_aix, &d_afv, &d_out, &d_g, &d_hh, &d_grad, &d_m, &d_v};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) dbuf_free(bufs[i]);
    free(p), free(x), free(u), free(pre), free(w), free(scores), free(a), free(h_init), free(h_cpu);
    free(rp_cpu), free(ix_cpu), free(fv_cpu), free(dead), free(arp_cpu), free(aix_cpu), free(afv_cpu), free(xhat);
    free(g), free(h), free(grad), free(grad_cpu), free(inc_gpu), free(inc_cpu), free(m), free(v), free(p_cpu);
    free(m_cpu), free(v_cpu);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    dk_cuda_gemm *gemm;
    CUBLAS_CHECK(dk_cuda_gemm_create(&gemm, 32u << 20));
    const dict_case cases[] = {
        {"sae", 64, 1, 300, 40, 8, 0.3, 32},
        {"crosscoder", 48, 2, 257, 33, 6, 0.4, 24},
        {"sae large", 256, 1, 4096, 96, 20, 0.6, 2000}, /* k_aux 2000: a 2048-entry sort */
    };
    /* DK_TEST_ONLY=small: the first two shapes only (for compute-sanitizer runs) */
    const char *only = getenv("DK_TEST_ONLY");
    const size_t n_cases = only && strcmp(only, "small") == 0 ? 2 : sizeof cases / sizeof *cases;
    for (size_t i = 0; i < n_cases; i++) run_case(&cases[i], gemm);
    dk_cuda_gemm_destroy(gemm);
    return dk_test_finish("test_dict_step_cuda");
}
