/* bench_forward_cuda.c — the timing half of `make gpu-check` (driven by tools/bench_gpu.py; not a ctest).
 *
 *   bench_forward_cuda --model DIR --tokens IN.jsonl --layer L [--full] [--reps R] [--warmup W] [--fp32]
 *                      [--dump OUT.f32]
 *       runs the packed batch of IN.jsonl through the CUDA forward, capturing the residual after block L with
 *       no logits (the forward stops after block L); --layer -1 runs every block and the last-position logits;
 *       --full times that full forward too, after the capture (one model load for both).
 *       Prints one JSON line per timing: {"kind": "capture"|"full", "tokens", "layer", "median_s", "min_s",
 *       "tokens_per_s", "load_s", "device_bytes"}.
 *       --dump writes the capture of the first sequence (n_0 × H float32, raw) for a comparison with
 *       transformers.
 *   bench_forward_cuda --gemm-peak N
 *       times a bf16 (N×N)·(N×N)ᵀ cuBLASLt GEMM with fp32 accumulation (the MFU denominator), median of 20,
 *       and prints {"gemm_n", "median_s", "tflops"}.
 * Timing: wall clock around the synchronous dk_cuda_forward_run (host packing, uploads, all kernels, the
 * capture's copy into pinned host memory), after warm-up runs; median of the repetitions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "core/check_cuda.h"
#include "kernels/cuda/gemm.cuh"
#include "kernels/dtype_convert.h"
#include "model/forward.h"
#include "model/forward_cuda.h"
#include "model_golden.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int gemm_peak(int64_t n) {
    dk_cuda_gemm *g;
    CUBLAS_CHECK(dk_cuda_gemm_create(&g, 32u << 20));
    uint16_t *h = malloc((size_t)(n * n) * 2);
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < n * n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = dk_f32_to_bf16((float)(s >> 40) / (float)(1u << 24) - 0.5f); /* random, never zeros */
    }
    void *a, *b, *c;
    CUDA_CHECK(cudaMalloc(&a, (size_t)(n * n) * 2));
    CUDA_CHECK(cudaMalloc(&b, (size_t)(n * n) * 2));
    CUDA_CHECK(cudaMalloc(&c, (size_t)(n * n) * 2));
    CUDA_CHECK(cudaMemcpy(a, h, (size_t)(n * n) * 2, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(b, h, (size_t)(n * n) * 2, cudaMemcpyHostToDevice));
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    enum { REPS = 20 };
    double t[REPS];
    for (int i = 0; i < 3; i++)
        CUBLAS_CHECK(dk_cuda_linear(g, c, n, DK_CUDA_BF16, a, n, b, DK_CUDA_BF16, n, n, n, 1.0f, 0.0f, st));
    for (int i = 0; i < REPS; i++) {
        CUDA_CHECK(cudaEventRecord(e0, st));
        CUBLAS_CHECK(dk_cuda_linear(g, c, n, DK_CUDA_BF16, a, n, b, DK_CUDA_BF16, n, n, n, 1.0f, 0.0f, st));
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        t[i] = ms * 1e-3;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    const double med = t[REPS / 2];
    printf("{\"gemm_n\": %lld, \"median_s\": %.6g, \"tflops\": %.4g}\n", (long long)n, med,
           2.0 * (double)n * (double)n * (double)n / med / 1e12);
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(c));
    CUDA_CHECK(cudaStreamDestroy(st));
    dk_cuda_gemm_destroy(g);
    free(h);
    return 0;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *tokens = NULL, *dump = NULL;
    int64_t layer = -1, gemm_n = 0;
    int reps = 5, warmup = 2;
    bool fp32 = false, full = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_dir = argv[++i];
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) tokens = argv[++i];
        else if (strcmp(argv[i], "--layer") == 0 && i + 1 < argc) layer = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
        else if (strcmp(argv[i], "--gemm-peak") == 0 && i + 1 < argc) gemm_n = atoll(argv[++i]);
        else if (strcmp(argv[i], "--fp32") == 0) fp32 = true;
        else if (strcmp(argv[i], "--full") == 0) full = true;
        else {
            fprintf(stderr, "bench_forward_cuda: unexpected argument '%s' (see the header of bench_forward_cuda.c)\n",
                    argv[i]);
            return 2;
        }
    }
    if (gemm_n > 0) return gemm_peak(gemm_n);
    if (!model_dir || !tokens || reps < 1) {
        fprintf(stderr, "bench_forward_cuda: --model DIR --tokens IN.jsonl --layer L are required\n");
        return 2;
    }
    dk_err err = {0};
    double t0 = now_s();
    dk_model m;
    if (dk_model_open(model_dir, &m, &err) != 0) dk_die(&err);
    dk_cuda_forward *f;
    if (dk_cuda_forward_open(&m, fp32 ? DK_CUDA_F32 : DK_CUDA_BF16, &f, &err) != 0) dk_die(&err);
    const double load_s = now_s() - t0;
    golden_tokens tok;
    golden_tokens_read(tokens, &tok);
    const int64_t T = tok.n_tokens, H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    float *capture = dk_cuda_host_alloc((size_t)(T * H) * 4);
    float *logits = dk_cuda_host_alloc((size_t)(tok.n_seqs * V) * 4);
    if (!capture || !logits) dk_fatal_at(DK_EXIT_RUNTIME, __FILE__, __LINE__, "cannot allocate pinned buffers");
    dk_batch b = {tok.ids, T, tok.seq_start, tok.n_seqs, true};
    double *t = malloc((size_t)reps * sizeof *t);
    for (int pass = 0; pass < 2; pass++) {
        const bool capture_pass = pass == 0 && layer >= 0;
        if (pass == 0 && !capture_pass) continue; /* --layer -1: only the full forward */
        if (pass == 1 && !(full || layer < 0)) break;
        dk_hook_plan plan = {0};
        if (capture_pass) {
            plan.n_capture = 1;
            plan.capture_layers = &layer;
            plan.captures = &capture;
        } else {
            plan.logits = DK_LOGITS_LAST;
            plan.logits_out = logits;
        }
        for (int i = 0; i < warmup + reps; i++) {
            const double s = now_s();
            if (dk_cuda_forward_run(f, NULL, &b, &plan, &err) != 0) dk_die(&err);
            if (i >= warmup) t[i - warmup] = now_s() - s;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        const double med = t[reps / 2];
        printf("{\"kind\": \"%s\", \"tokens\": %lld, \"layer\": %lld, \"median_s\": %.6g, \"min_s\": %.6g, "
               "\"tokens_per_s\": %.6g, \"load_s\": %.3g, \"device_bytes\": %zu}\n",
               capture_pass ? "capture" : "full", (long long)T, capture_pass ? (long long)layer : -1LL, med, t[0],
               (double)T / med, load_s, dk_cuda_forward_device_bytes(f));
        fflush(stdout);
        if (capture_pass && dump) {
            FILE *fp = fopen(dump, "wb");
            if (!fp || fwrite(capture, 4, (size_t)(tok.seq_start[1] * H), fp) != (size_t)(tok.seq_start[1] * H))
                fprintf(stderr, "bench_forward_cuda: cannot write %s\n", dump);
            if (fp) fclose(fp);
        }
    }
    free(t);
    dk_cuda_host_free(capture);
    dk_cuda_host_free(logits);
    golden_tokens_free(&tok);
    dk_cuda_forward_close(f);
    dk_model_close(&m);
    return 0;
}
