/* test_dict_train_cuda.c — the GPU dictionary trainer (host/methods/dict_train_cuda.c) against the reference
 * trainers' goldens (the fixtures of tests/methods/test_dict_train.c: BatchTopK SAE d 32, 128 latents, k 2; the
 * crosscoder two layers of 32, 128 latents, k annealed 16 -> 2; 64 rows a batch, 50 steps) and against the CPU
 * trainer run beside it on the same batches. Run on 1 and 2 MPI ranks (tests/gpu/CMakeLists.txt); exits 77 on
 * every rank without a GPU. Checked for each model:
 *   - every step's loss within 1e-5 relative of the reference's, and every step's dead-latent count equal;
 *   - the weights after step 1 (1e-5 relative + 1e-7) and after 50 steps (1e-5 relative + 1e-6) of the reference's,
 *     the tolerances of the CPU trainer's test: what differs is fp32 reassociation (cuBLASLt's GEMM, the warp
 *     trees of the sparse backward and of a few sums; kernels/cuda/dict_step.cuh), as between OpenBLAS and torch;
 *   - the GPU and CPU trainers' weights after 50 steps within the same tolerance of each other;
 *   - the threshold (1e-3 relative, as the CPU test) and the tokens since each latent fired, exactly;
 *   - checkpoint round trip: after 25 steps the state goes down (dk_dict_cuda_trainer_download) into a fresh host
 *     trainer whose model started from zeros, a new GPU trainer takes it up (upload) and finishes the run: the
 *     goldens above are checked on that resumed run, so a download or upload that lost any part of the state fails.
 * And the SAE with bf16 Adam moments (cfg.adam_bf16): step 1 as above (lr 0 at step 0), every loss within 3% of
 * the reference's (tools/adam_bf16_effect.py measured up to 1.4% over these 50 steps; kernels/cuda/dict_step.cuh).
 * Timing (1 rank only, printed, not checked): GPU training steps per second at a seed-sized shape, d 2048, 4096
 * latents, k 100, 2048 rows a step, random rows. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/timer.h"
#include "dist/dist.h"
#include "methods/dict_golden.h"
#include "methods/dict_train_cuda.h"

static dk_dist DIST;

static int my_gpu(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return -1;
    return DIST.local_rank % count;
}

/* A GPU trainer over a fresh host trainer tr (max_rows 1: the host keeps only the state) for model m. */
static dk_dict_cuda_trainer *gpu_trainer(dk_dict_trainer *tr, const dk_dict_train_cfg *c, dk_dict_model *m,
                                         int64_t rows) {
    dk_dict_trainer_init(tr, &DIST, c, m, 1);
    dk_dict_cuda_trainer *ct = NULL;
    dk_err err = {0};
    if (dk_dict_cuda_trainer_create(&ct, tr, my_gpu(), rows, &err) != 0) {
        fprintf(stderr, "dk_dict_cuda_trainer_create: %s\n", err.msg);
        exit(1);
    }
    return ct;
}

/* Everything a checkpoint holds, from one host trainer into another (the checkpoint file is dict_job.c's; here the
 * state only has to survive the trip down from one GPU trainer and up into another). */
static void copy_state(const dk_dict_trainer *from, dk_dict_trainer *to) {
    const int64_t P = from->m->P;
    memcpy(to->m->p, from->m->p, (size_t)P * sizeof(float));
    memcpy(to->adam_m, from->adam_m, (size_t)P * sizeof(float));
    memcpy(to->adam_v, from->adam_v, (size_t)P * sizeof(float));
    memcpy(to->since_fired, from->since_fired, (size_t)from->m->s.F * sizeof(int64_t));
    to->step = from->step;
    to->m->threshold = from->m->threshold;
}

/* Worst |a − b| / (atol + rtol·|b|) between two models' parameters. */
static double worst_between(const dk_dict_model *a, const dk_dict_model *b, double atol, double rtol) {
    double worst = 0;
    for (int64_t i = 0; i < a->P; i++) {
        const double r = fabs((double)a->p[i] - b->p[i]) / (atol + rtol * fabs((double)b->p[i]));
        if (!(r <= worst)) worst = r;
    }
    return worst;
}

static void run_case(const char *fixture, dk_dict_kind kind, bool bf16) {
    dict_golden gd;
    if (dict_golden_open(&gd, fixture, kind) != 0) return;
    char what[64];
    snprintf(what, sizeof what, "%s%s (GPU)", gd.what, bf16 ? " bf16 moments" : "");
    const int64_t B = gd.B, steps = gd.steps, width = gd.width, F = gd.F, resume_at = steps / 2;
    dk_dict_train_cfg c = gd.c;
    c.adam_bf16 = bf16;
    int64_t lo, hi;
    dk_dict_slice(B, DIST.rank, DIST.nranks, &lo, &hi);
    const int64_t n = hi - lo;
    float *raw = malloc((size_t)((n ? n : 1) * width) * sizeof(float));
    float *x = malloc((size_t)((n ? n : 1) * width) * sizeof(float));

    dk_dict_model m, m_cpu, m2;
    dk_dict_model_init(&m, kind, gd.d, F);
    dk_dict_model_init(&m_cpu, kind, gd.d, F);
    dk_dict_model_init(&m2, kind, gd.d, F); /* zeros: the resumed run's model before its state arrives */
    dict_golden_init_model(&gd, &m);
    dict_golden_init_model(&gd, &m_cpu);
    dk_dict_trainer tr, tr_cpu, tr2;
    dk_dict_cuda_trainer *ct = gpu_trainer(&tr, &c, &m, n);
    dk_dict_trainer_init(&tr_cpu, &DIST, &c, &m_cpu, n);
    dk_dict_trainer *run = &tr; /* the host side of the GPU trainer in use */
    dk_dict_model *run_m = &m;

    const double loss_tol = bf16 ? 3e-2 : 1e-5;
    int64_t loss_bad = 0, dead_bad = 0, cpu_dead_bad = 0;
    double loss_worst = 0;
    dk_err err = {0};
    for (int64_t step = 0; step < steps; step++) {
        if (step == resume_at) { /* down into a fresh host trainer, up into a new GPU trainer */
            dk_dict_cuda_trainer_download(ct);
            dk_dict_cuda_trainer_destroy(ct);
            dk_dict_trainer_init(&tr2, &DIST, &c, &m2, 1);
            copy_state(&tr, &tr2);
            if (dk_dict_cuda_trainer_create(&ct, &tr2, my_gpu(), n, &err) != 0) {
                fprintf(stderr, "%s: a second GPU trainer: %s\n", what, err.msg);
                exit(1);
            }
            run = &tr2, run_m = &m2;
        }
        dict_golden_batch(&gd, step, lo, n, raw, x);
        if (dk_dict_cuda_trainer_step(ct, x, raw, n, B, &err) != 0) {
            EXPECT(0, "%s step %lld: %s", what, (long long)step, err.msg);
            break;
        }
        if (!bf16 && dk_dict_trainer_step(&tr_cpu, x, raw, n, B, &err) != 0) {
            EXPECT(0, "%s step %lld (CPU): %s", what, (long long)step, err.msg);
            break;
        }
        const double rel = fabs(run->last.loss - gd.losses[step]) / fabs((double)gd.losses[step]);
        if (rel > loss_worst) loss_worst = rel;
        loss_bad += !(rel <= loss_tol);
        if (!bf16) { /* bf16 moments move the weights by ~1%: the selections, hence the dead counts, may differ */
            dead_bad += run->last.dead != (int64_t)gd.deads[step];
            cpu_dead_bad += run->last.dead != tr_cpu.last.dead;
        }
        if (step == 0) {
            dk_dict_cuda_trainer_download(ct);
            dict_golden_expect_weights(&gd, run_m, what, "step1", 1e-7, 1e-5);
        }
    }
    dk_dict_cuda_trainer_download(ct);
    EXPECT(loss_bad == 0, "%s: %lld of %lld step losses differ from the reference by more than %g (worst %.3g)",
           what, (long long)loss_bad, (long long)steps, loss_tol, loss_worst);
    EXPECT(dead_bad == 0, "%s: the dead-latent count differs from the reference at %lld steps", what,
           (long long)dead_bad);
    const double thr = gd.threshold;
    if (!bf16) {
        dict_golden_expect_weights(&gd, run_m, what, "step50", 1e-6, 1e-5);
        const double vs_cpu = worst_between(run_m, &m_cpu, 1e-6, 1e-5);
        EXPECT(vs_cpu <= 1.0, "%s: the GPU and CPU trainers' weights differ (worst ratio to tolerance %.3g)", what,
               vs_cpu);
        EXPECT(cpu_dead_bad == 0, "%s: the dead-latent count differs from the CPU trainer's at %lld steps", what,
               (long long)cpu_dead_bad);
        EXPECT(fabs(run_m->threshold - thr) <= 1e-3 * fabs(thr), "%s threshold %.7g, reference %.7g", what,
               run_m->threshold, thr);
        int64_t since_bad = 0;
        for (int64_t j = 0; j < F; j++) since_bad += run->since_fired[j] != (int64_t)gd.since[j];
        EXPECT(since_bad == 0, "%s: tokens since fired differ for %lld latents", what, (long long)since_bad);
        if (DIST.rank == 0)
            printf("%s on %d rank(s), gradients summed with %s: %lld steps (resumed at %lld), worst loss difference "
                   "%.2g relative, threshold %.6g (reference %.6g), weights vs the CPU trainer's %.3g of the "
                   "tolerance\n", what, DIST.nranks, dk_dict_cuda_trainer_uses_nccl(ct) ? "NCCL" : "MPI",
                   (long long)steps, (long long)resume_at, loss_worst, run_m->threshold, thr, vs_cpu);
    } else if (DIST.rank == 0) {
        printf("%s on %d rank(s): worst loss difference %.3g relative to the fp32 reference\n", what, DIST.nranks,
               loss_worst);
    }

    dk_dict_cuda_trainer_destroy(ct);
    dk_dict_trainer_free(&tr), dk_dict_trainer_free(&tr_cpu);
    if (run == &tr2) dk_dict_trainer_free(&tr2);
    dk_dict_model_free(&m), dk_dict_model_free(&m_cpu), dk_dict_model_free(&m2);
    free(raw), free(x);
    dict_golden_close(&gd);
}

/* Steps per second at a seed-sized shape (one rank): random rows, 3 warm-up steps, then `timed` steps. */
static void time_steps(void) {
    const int64_t d = 2048, F = 4096, k = 100, B = 2048, timed = 20;
    dk_dict_model m;
    dk_dict_model_init(&m, DK_DICT_SAE, d, F);
    dk_dict_model_random_init(&m, 1, 0.1);
    dk_dict_train_cfg c = {.steps = 1000, .lr = 1e-4, .warmup_steps = 10, .decay_start = -1, .auxk_alpha = 1.0 / 32,
                           .dead_threshold = 10000000, .top_k_aux = d / 2, .threshold_beta = 0.999,
                           .threshold_start_step = 1000, .k = k, .k_initial = k, .clip = 1.0};
    float *x = malloc((size_t)(B * d) * sizeof(float));
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < B * d; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(state >> 11) / 9007199254740992.0 - 0.5);
    }
    dk_dict_trainer tr;
    dk_dict_cuda_trainer *ct = gpu_trainer(&tr, &c, &m, B);
    dk_err err = {0};
    double t0 = 0;
    for (int64_t s = 0; s < 3 + timed; s++) {
        if (s == 3) {
            cudaDeviceSynchronize();
            t0 = dk_time_now();
        }
        if (dk_dict_cuda_trainer_step(ct, x, x, B, B, &err) != 0) {
            EXPECT(0, "timing step %lld: %s", (long long)s, err.msg);
            break;
        }
    }
    cudaDeviceSynchronize();
    const double secs = dk_time_now() - t0;
    printf("GPU dictionary training, SAE d %lld, %lld latents, k %lld, batch %lld, fp32 moments: %.1f steps/s "
           "(%.2f ms a step, %lld steps)\n", (long long)d, (long long)F, (long long)k, (long long)B,
           (double)timed / secs, 1e3 * secs / (double)timed, (long long)timed);
    dk_dict_cuda_trainer_destroy(ct);
    dk_dict_trainer_free(&tr);
    dk_dict_model_free(&m);
    free(x);
}

int main(int argc, char **argv) {
    dk_dist_init(&argc, &argv, &DIST);
    if (my_gpu() < 0) { /* every rank of the machine sees the same: all skip */
        if (DIST.rank == 0) printf("SKIP: no GPU\n");
        dk_dist_finalize(&DIST);
        return 77;
    }
    run_case("methods/dict/sae_golden.safetensors", DK_DICT_SAE, false);
    run_case("methods/dict/crosscoder_golden.safetensors", DK_DICT_CROSSCODER, false);
    run_case("methods/dict/sae_golden.safetensors", DK_DICT_SAE, true);
    if (DIST.nranks == 1 && !getenv("DK_TEST_NO_TIMING")) time_steps();
    int failed = dk_tests_failed != 0, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, DIST.comm);
    if (DIST.rank == 0) dk_test_finish("test_dict_train_cuda");
    dk_dist_finalize(&DIST);
    return any ? 1 : 0;
}
