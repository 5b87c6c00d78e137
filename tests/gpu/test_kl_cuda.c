/* test_kl_cuda.c — KL of two forwards with the logits staying on the GPU (dk_backend_kl_rows →
 * dk_cuda_forward_kl, what diff_kl runs with device=cuda) against the host path diff_kl runs on the CPU
 * backend: the same two forwards with their logits copied to the host, then dk_cpu_kl_rows in double. The
 * forwards are the same GPU forwards, bitwise repeatable (test_forward_cuda; checked here too: the host path
 * run twice gives the same logits bits), so both sides see the same logits and the only difference is the KL
 * reduction: per row within gpu_kl_tolerance (kernels/cuda/diffops.cuh: 8·2^-24·(max|z|/T + ln V + 1) +
 * 4e-6·KL, derived by tools/kl_fp32_error_sim.py from the kernel's fp32 order). Poison: the host outputs are
 * NaN-filled before each call, and dk_cuda_forward_kl NaN-fills its device rows when it allocates them, so a
 * row nobody wrote fails the tolerance (NaN never passes it). Cases, in fp32 and bf16 modes:
 *   - an adapter on the shared base weights: ONE backend runs both sides (the base logits are kept aside on
 *     the device while the adapted forward overwrites the forward's logits buffer),
 *   - two models on two backends (llama as the base, mistral as a "full finetune": same vocabulary),
 *   - a second, larger batch after a smaller one (the KL buffers grow), and a repeat (bit-identical).
 * Label: gpu. */
#include "gpu_test.h"

#include "engine_test.h"
#include "model_golden.h"
#include "kernels/cpu/diffops.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model/lora.h"

/* The host path: both forwards with host logits, KL in double. */
static void kl_host(dk_backend *base, const dk_lora_adapter *base_adapter, dk_backend *ft,
                    const dk_lora_adapter *ft_adapter, const dk_batch *b, float temperature, float *kl,
                    float *logits_base, float *logits_ft) {
    dk_err err = {0};
    dk_hook_plan pb = {.logits = DK_LOGITS_ALL, .logits_out = logits_base};
    dk_hook_plan pf = {.logits = DK_LOGITS_ALL, .logits_out = logits_ft};
    CHECK(dk_backend_forward(base, base_adapter, b, &pb, NULL, &err) == 0, "%s", err.msg);
    CHECK(dk_backend_forward(ft, ft_adapter, b, &pf, NULL, &err) == 0, "%s", err.msg);
    dk_cpu_kl_rows(kl, logits_ft, logits_base, b->n_tokens, base->model->cfg.vocab_size, temperature);
}

/* dk_backend_kl_rows against kl_host on the first n_seqs sequences of tok. */
static void check_kl(const char *label, dk_backend *base, const dk_lora_adapter *base_adapter, dk_backend *ft,
                     const dk_lora_adapter *ft_adapter, const golden_tokens *tok, int64_t n_seqs, float temperature) {
    const int64_t T = tok->seq_start[n_seqs], V = base->model->cfg.vocab_size;
    dk_batch b = {tok->ids, T, tok->seq_start, n_seqs, true};
    float *got = malloc((size_t)T * 4), *again = malloc((size_t)T * 4), *want = malloc((size_t)T * 4);
    float *want2 = malloc((size_t)T * 4);
    float *lb = malloc((size_t)(T * V) * 4), *lf = malloc((size_t)(T * V) * 4);
    float *lb2 = malloc((size_t)(T * V) * 4), *lf2 = malloc((size_t)(T * V) * 4);
    gpu_poison_host(got, (size_t)T * 4);
    gpu_poison_host(again, (size_t)T * 4);
    dk_err err = {0};
    EXPECT(dk_backend_kl_rows(base, base_adapter, ft, ft_adapter, &b, temperature, got, &err) == 0, "%s: %s", label,
           err.msg);
    EXPECT(dk_backend_kl_rows(base, base_adapter, ft, ft_adapter, &b, temperature, again, &err) == 0, "%s: %s", label,
           err.msg);
    kl_host(base, base_adapter, ft, ft_adapter, &b, temperature, want, lb, lf);
    /* the premise of the comparison: the forwards repeat bit for bit (also across base/adapter alternation) */
    kl_host(base, base_adapter, ft, ft_adapter, &b, temperature, want2, lb2, lf2);
    EXPECT(memcmp(lb, lb2, (size_t)(T * V) * 4) == 0 && memcmp(lf, lf2, (size_t)(T * V) * 4) == 0,
           "%s: two host-path runs gave different logits: the GPU forward is not repeatable, so the KL on the "
           "device cannot be compared with host logits", label);
    size_t bad = 0;
    double worst = 0, mean = 0;
    for (int64_t t = 0; t < T; t++) {
        const double tol = gpu_kl_tolerance(lf + t * V, lb + t * V, V, temperature, want[t]);
        const double e = fabs((double)got[t] - want[t]);
        bad += !(e <= tol); /* NaN (an unwritten row) counts as bad */
        worst = e / tol > worst ? e / tol : worst;
        mean += want[t] / (double)T;
    }
    printf("  %-52s %lld tokens, mean KL %.4g, worst error %.3g of the tolerance\n", label, (long long)T, mean, worst);
    EXPECT(bad == 0, "%s: %zu of %lld tokens outside the KL tolerance (worst %.3g of it)", label, bad, (long long)T,
           worst);
    EXPECT(mean > 1e-4, "%s: mean KL %.3g: the two sides should differ (a test that cannot fail otherwise)", label,
           mean);
    gpu_expect_same_bits(label, got, again, (size_t)T * 4);
    free(got), free(again), free(want), free(want2), free(lb), free(lf), free(lb2), free(lf2);
}

static void open_cuda(dk_backend *be, const dk_model *m, bool fp32) {
    dk_err err = {0};
    dk_backend_options opt = {.device = DK_DEVICE_CUDA, .cuda_fp32 = fp32};
    CHECK(dk_backend_open(be, m, &opt, &err) == 0, "%s", err.msg);
    CHECK(dk_backend_kl_on_device(be, be), "a CUDA backend must take KL on the device");
}

static void test_adapter(bool fp32) {
    char *adir = engine_fixture("adapters/llama_lora");
    dk_model m;
    dk_lora_adapter a;
    golden_open_lora("llama", adir, &m, &a);
    golden_tokens tok;
    golden_tokens_read_model("llama", &tok);
    dk_backend be;
    open_cuda(&be, &m, fp32);
    char label[96];
    snprintf(label, sizeof label, "llama + llama_lora, one backend, %s, 2 seqs", fp32 ? "fp32" : "bf16");
    check_kl(label, &be, NULL, &be, &a, &tok, 2, 1.0f);
    snprintf(label, sizeof label, "llama + llama_lora, one backend, %s, T 0.7", fp32 ? "fp32" : "bf16");
    check_kl(label, &be, NULL, &be, &a, &tok, tok.n_seqs, 0.7f); /* more rows: the kept copy grows */
    dk_backend_close(&be);
    dk_lora_free(&a);
    dk_model_close(&m);
    golden_tokens_free(&tok);
    free(adir);
}

static void test_two_models(bool fp32) {
    char *bdir = golden_model_dir("llama"), *fdir = golden_model_dir("mistral");
    dk_model mb, mf;
    dk_err err = {0};
    CHECK(dk_model_open(bdir, &mb, &err) == 0, "%s", err.msg);
    CHECK(dk_model_open(fdir, &mf, &err) == 0, "%s", err.msg);
    CHECK(mb.cfg.vocab_size == mf.cfg.vocab_size, "llama and mistral fixtures share a vocabulary");
    golden_tokens tok;
    golden_tokens_read_model("llama", &tok);
    dk_backend bb, bf;
    open_cuda(&bb, &mb, fp32);
    open_cuda(&bf, &mf, fp32);
    char label[96];
    snprintf(label, sizeof label, "llama vs mistral, two backends, %s, T 2", fp32 ? "fp32" : "bf16");
    check_kl(label, &bb, NULL, &bf, NULL, &tok, tok.n_seqs, 2.0f);
    dk_backend_close(&bb);
    dk_backend_close(&bf);
    dk_model_close(&mb);
    dk_model_close(&mf);
    golden_tokens_free(&tok);
    free(bdir), free(fdir);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    printf("KL on the device vs host logits + dk_cpu_kl_rows:\n");
    for (int fp32 = 1; fp32 >= 0; fp32--) {
        test_adapter(fp32);
        test_two_models(fp32);
    }
    return dk_test_finish("test_kl_cuda");
}
