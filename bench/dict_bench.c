/* dict_bench.c — training steps per second of the dictionary trainer (host/methods/dict_train.c on the CPU
 * kernels of kernels/cpu/dict_step.c), for tools/bench_dict.py, which runs the reference package's trainers on the
 * same shapes and threads next to it. Not a test.
 *
 *   dict_bench sae|crosscoder D_MODEL DICT_SIZE K BATCH STEPS [WARMUP_STEPS] [--device cpu|cuda]
 * Rows are random normal (a fixed pool of 8 batches, cycled), normalised to target_rms 100 as the jobs do; the
 * schedule is the seed's (warm-up 1000 steps unless given, threshold EMA after 1000, latents dead after 10M
 * tokens; k constant: the steady state after the crosscoder's annealing). Prints one JSON line: ms per step (after 3 untimed
 * steps) and rows per second. Threads: OPENBLAS_NUM_THREADS, as for the jobs. --device cuda: the GPU trainer
 * (host/methods/dict_train_cuda.c, builds with CUDA) on GPU local_rank % GPUs; the clock stops after the GPU is idle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timer.h"
#include "dist/dist.h"
#include "methods/dict_data.h"
#include "methods/dict_norm.h"
#include "methods/dict_train.h"
#include "methods/dict_train_cuda.h"
#ifdef DIFFKIT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

int main(int argc, char **argv) {
    dk_dist dist;
    dk_dist_init(&argc, &argv, &dist);
    bool gpu = false;
    if (argc >= 3 && strcmp(argv[argc - 2], "--device") == 0) {
        gpu = strcmp(argv[argc - 1], "cuda") == 0;
        if (!gpu && strcmp(argv[argc - 1], "cpu") != 0) {
            fprintf(stderr, "dict_bench: --device %s: expected cpu or cuda\n", argv[argc - 1]);
            return 2;
        }
        argc -= 2;
    }
#ifndef DIFFKIT_HAVE_CUDA
    if (gpu) {
        fprintf(stderr, "dict_bench: --device cuda: this build has no CUDA\n");
        return 2;
    }
#endif
    if (argc < 7) {
        fprintf(stderr, "usage: dict_bench sae|crosscoder D_MODEL DICT_SIZE K BATCH STEPS [WARMUP_STEPS] "
                "[--device cpu|cuda]\n");
        return 2;
    }
    const bool sae = strcmp(argv[1], "sae") == 0;
    const int64_t d = atoll(argv[2]), F = atoll(argv[3]), k = atoll(argv[4]), B = atoll(argv[5]), steps = atoll(argv[6]);
    const int64_t warmup = argc > 7 ? atoll(argv[7]) : 1000;
    const int L = sae ? 1 : 2;
    const int64_t D = L * d, pool_rows = 8 * B;
    dk_dict_model m;
    dk_dict_model_init(&m, sae ? DK_DICT_SAE : DK_DICT_CROSSCODER, d, F);
    dk_dict_model_random_init(&m, 1, 1.0);
    dk_dict_train_cfg c = {.steps = steps + 3, .lr = 1e-4, .warmup_steps = warmup, .decay_start = -1,
                           .auxk_alpha = 1.0 / 32.0, .dead_threshold = 10000000, .top_k_aux = d / 2,
                           .threshold_beta = 0.999, .threshold_start_step = 1000, .k = k,
                           .k_initial = k, .k_anneal_steps = 0, .clip = 1.0};
    float *pool = malloc((size_t)(pool_rows * D) * sizeof(float)), *x = malloc((size_t)(B * D) * sizeof(float));
    uint64_t rng = 7;
    for (int64_t i = 0; i < pool_rows * D; i += 2) { /* Box-Muller */
        const double u1 = ((double)(dk_dict_rng_next(&rng) >> 11) + 0.5) / 9007199254740992.0;
        const double u2 = (double)(dk_dict_rng_next(&rng) >> 11) / 9007199254740992.0;
        pool[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
        if (i + 1 < pool_rows * D) pool[i + 1] = (float)(sqrt(-2 * log(u1)) * sin(2 * M_PI * u2));
    }
    double *mean = calloc((size_t)D, sizeof(double)), *std = malloc((size_t)D * sizeof(double));
    for (int64_t i = 0; i < D; i++) std[i] = 1.0;
    dk_dict_norm nrm = {0};
    dk_dict_norm_set(&nrm, L, d, mean, std, 100.0);
    dk_dict_norm_apply(&nrm, pool, pool_rows);
    dk_dict_trainer tr;
    const char *th = getenv("OPENBLAS_NUM_THREADS");
    c.threads = th ? atoi(th) : 1;
    dk_dict_trainer_init(&tr, &dist, &c, &m, gpu ? 1 : B);
    dk_err err = {0};
#ifdef DIFFKIT_HAVE_CUDA
    dk_dict_cuda_trainer *ct = NULL;
    int n_gpus = 0;
    if (gpu && (cudaGetDeviceCount(&n_gpus) != cudaSuccess || n_gpus == 0)) {
        fprintf(stderr, "dict_bench: --device cuda: no GPU\n");
        return 1;
    }
    if (gpu && dk_dict_cuda_trainer_create(&ct, &tr, dist.local_rank % n_gpus, B, &err) != 0) {
        fprintf(stderr, "dict_bench: %s\n", err.msg);
        return 1;
    }
#endif
    double t0 = 0;
    for (int64_t s = 0; s < steps + 3; s++) {
        if (s == 3) t0 = dk_time_now();
        memcpy(x, pool + (s % 8) * B * D, (size_t)(B * D) * sizeof(float));
#ifdef DIFFKIT_HAVE_CUDA
        const int rc = ct ? dk_dict_cuda_trainer_step(ct, x, x, B, B, &err) : dk_dict_trainer_step(&tr, x, x, B, B, &err);
#else
        const int rc = dk_dict_trainer_step(&tr, x, x, B, B, &err);
#endif
        if (rc != 0) {
            fprintf(stderr, "step %lld: %s\n", (long long)s, err.msg);
            return 1;
        }
    }
#ifdef DIFFKIT_HAVE_CUDA
    if (ct) cudaDeviceSynchronize();
#endif
    const double secs = dk_time_now() - t0;
    printf("{\"impl\": \"diffkit%s\", \"kind\": \"%s\", \"d\": %lld, \"F\": %lld, \"k\": %lld, \"batch\": %lld, "
           "\"steps\": %lld, \"ms_per_step\": %.3f, \"rows_per_s\": %.1f, \"final_loss\": %.6g}\n", gpu ? "-cuda" : "",
           argv[1], (long long)d, (long long)F, (long long)k, (long long)B, (long long)steps, 1e3 * secs / (double)steps, (double)(steps * B) / secs,
           tr.last.loss);
#ifdef DIFFKIT_HAVE_CUDA
    dk_dict_cuda_trainer_destroy(ct);
#endif
    dk_dict_trainer_free(&tr);
    dk_dict_norm_free(&nrm);
    dk_dict_model_free(&m);
    free(pool), free(x), free(mean), free(std);
    dk_dist_finalize(&dist);
    return 0;
}
