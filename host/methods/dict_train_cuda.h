/* dict_train_cuda.h — the dictionary training step of dict_train.h on the GPU (builds with DIFFKIT_HAVE_CUDA only):
 * the same step, in the same order, with the same collectives, on the CUDA twins of kernels/cuda/dict_step.cuh.
 *
 * What lives where. The GPU holds the parameters, their gradients, the Adam moments (fp32, or bf16 with
 * cfg.adam_bf16) and every per-row buffer of the step. The host trainer (a dk_dict_trainer made by
 * dk_dict_trainer_init, max_rows 1 is enough: its row scratch is not used) keeps what the step's bookkeeping needs
 * on the host and what checkpoints hold: the settings, the step count, the tokens since each latent fired, the
 * dead mask, the inference threshold (m->threshold), the last step's statistics, and host copies of the
 * parameters (m->p) and moments that are brought up to date only by dk_dict_cuda_trainer_download (checkpoints,
 * evaluation, results) and read by dk_dict_cuda_trainer_upload (resume). So checkpoints are the CPU trainer's.
 *
 * Per step: the rank's normalised rows go up (and at step 0 the geometric median is computed on the host from the
 * host rows, as the CPU trainer does, and its b_dec goes up); encode, scores and the high-half histogram on the
 * GPU; histograms come down and are summed over the ranks with MPI (dk_dict_global_threshold, the CPU trainer's
 * code); selection, fired mask (down: F bytes, reduced with MPI), decode, residual and loss on the GPU (the loss
 * sums come down); the dead counters on the host (the dead mask goes up when a latent is dead); AuxK (its mean
 * residual goes down, is summed and comes back up: D doubles); the sparse backward; the gradient sum over the
 * ranks with NCCL (ncclAllReduce, fp32 sum) when this build has NCCL and every rank has its own GPU, else through
 * the host with MPI_Allreduce; decoder-parallel removal (SAE), Σ g² (down: its block partials), Adam with the
 * clipping factor, unit-norm decoder rows (SAE). Besides these only scalars come down (the selection's counts,
 * the loss and AuxK sums, the smallest selected score); the host waits on the GPU at each of them.
 *
 * Agreement with the CPU trainer: the kernels' documented differences (the encoder GEMM's and a few reductions'
 * reassociation, kernels/cuda/dict_step.cuh), nothing else; tests/gpu/test_dict_train_cuda.c holds both to the
 * reference trainers' goldens. */
#ifndef DK_METHODS_DICT_TRAIN_CUDA_H
#define DK_METHODS_DICT_TRAIN_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "methods/dict_train.h"

typedef struct dk_dict_cuda_trainer dk_dict_cuda_trainer;

/* A GPU trainer for host's model and settings on GPU `device`, for steps of at most max_rows rows on this rank;
 * uploads host's state (parameters, moments). Collective (the NCCL communicator). 0, or -1 with err set (agreed
 * over the ranks: no GPU, too little device memory). */
int dk_dict_cuda_trainer_create(dk_dict_cuda_trainer **out, dk_dict_trainer *host, int device, int64_t max_rows,
                                dk_err *err);
void dk_dict_cuda_trainer_destroy(dk_dict_cuda_trainer *ct);

/* host's parameters and Adam moments onto the GPU (after loading a checkpoint into host). */
void dk_dict_cuda_trainer_upload(dk_dict_cuda_trainer *ct);
/* The GPU's parameters and Adam moments into host (m->p, adam_m, adam_v; bf16 moments widened); the rest of the
 * state (step, since_fired, threshold, last) is always current on the host. */
void dk_dict_cuda_trainer_download(dk_dict_cuda_trainer *ct);

/* dk_dict_trainer_step's contract on the GPU: x, raw (n, D) host rows. Collective. */
int dk_dict_cuda_trainer_step(dk_dict_cuda_trainer *ct, const float *x, const float *raw, int64_t n, int64_t B,
                              dk_err *err);

/* Whether the gradients are summed with NCCL (else through the host with MPI). */
bool dk_dict_cuda_trainer_uses_nccl(const dk_dict_cuda_trainer *ct);

#endif
