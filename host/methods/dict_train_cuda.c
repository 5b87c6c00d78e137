/* dict_train_cuda.c — see dict_train_cuda.h. The step below follows dk_dict_trainer_step (dict_train.c) line by
 * line; the host-side pieces (threshold search, fired/threshold EMA, loss statistics, dead counters, AuxK's
 * coefficient, clipping) are the CPU trainer's own functions. */
#include "methods/dict_train_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "core/check_cuda.h"
#include "core/log.h"
#include "kernels/cuda/dict_step.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/dtype_convert.h"
#include "model/forward_cuda.h"
#ifdef DIFFKIT_HAVE_NCCL
#include "core/check_nccl.h"
#endif

enum { GEMM_WORKSPACE = 32 << 20 };

struct dk_dict_cuda_trainer {
    dk_dict_trainer *host;
    int device;
    cudaStream_t stream;
    dk_cuda_gemm *gemm;
    dk_cuda_dict *ctx;
    int64_t cap_rows, cap_sel, aux_cap;
    float *p, *grad;                 /* (P) */
    void *adam_m, *adam_v;           /* (P) fp32, or bf16 bits with host->c.adam_bf16 */
    float *x, *u;                    /* (rows, D) the normalised rows; the SAE's x − b_dec */
    float *pre, *scores;             /* (rows, F) relu(pre); the crosscoder's scores (the SAE's are pre) */
    float *xhat, *g, *ehat;          /* (rows, D) x̂ then e; the loss gradient; AuxK's ê then its gradient */
    float *w;                        /* (F) crosscoder code weights */
    uint64_t *hist;                  /* (65536) */
    uint64_t *hist_host;             /* (65536) */
    int64_t *row_ptr, *aux_ptr;      /* (rows + 1) */
    int32_t *idx, *aux_idx;          /* (cap_sel), (aux_cap) */
    float *fval, *aux_val;
    uint8_t *fired, *dead;           /* (F) */
    double *mean_e;                  /* (D) AuxK's mean residual */
    double *mean_host;               /* (D) */
    uint16_t *stage16;               /* (P) host: bf16 bits */
    bool nccl;
#ifdef DIFFKIT_HAVE_NCCL
    ncclComm_t comm;
#endif
};

static int dev_alloc(void *out, size_t bytes, const char *what, dk_err *err) {
    void **p = out;
    cudaError_t st = cudaMalloc(p, bytes ? bytes : 1);
    if (st == cudaSuccess) return 0;
    *p = NULL;
    return dk_err_set(err, DK_EXIT_RUNTIME, "dictionary training on GPU: cannot allocate %.1f MiB of device memory "
                      "for %s (%s): lower diffing.method.training.batch_size or expansion_factor, or use more GPUs",
                      (double)bytes / 1048576.0, what, cudaGetErrorString(st));
}

bool dk_dict_cuda_trainer_uses_nccl(const dk_dict_cuda_trainer *ct) { return ct->nccl; }

void dk_dict_cuda_trainer_destroy(dk_dict_cuda_trainer *ct) {
    if (!ct) return;
#ifdef DIFFKIT_HAVE_NCCL
    if (ct->nccl) ncclCommDestroy(ct->comm);
#endif
    void *dev[] = {ct->p, ct->grad, ct->adam_m, ct->adam_v, ct->x, ct->u, ct->pre, ct->scores, ct->xhat, ct->g,
                   ct->ehat, ct->w, ct->hist, ct->row_ptr, ct->aux_ptr, ct->idx, ct->aux_idx, ct->fval, ct->aux_val,
                   ct->fired, ct->dead, ct->mean_e};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) cudaFree(dev[i]);
    if (ct->ctx) dk_cuda_dict_destroy(ct->ctx);
    if (ct->gemm) dk_cuda_gemm_destroy(ct->gemm);
    if (ct->stream) cudaStreamDestroy(ct->stream);
    free(ct->hist_host), free(ct->mean_host), free(ct->stage16);
    free(ct);
}

/* Copies on the trainer's stream, waited for (a plain cudaMemcpy from pageable memory may return before its DMA
 * ends, and the legacy default stream does not order against the trainer's non-blocking stream). */
static void copy_wait(dk_dict_cuda_trainer *ct, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, ct->stream));
    CUDA_CHECK(cudaStreamSynchronize(ct->stream));
}

/* One set of Adam moments, host fp32 <-> device (fp32, or bf16 rounded to nearest even as the kernel stores). */
static void moments_up(dk_dict_cuda_trainer *ct, const float *host, void *dev) {
    const int64_t P = ct->host->m->P;
    if (!ct->host->c.adam_bf16) {
        copy_wait(ct, dev, host, (size_t)P * sizeof(float), cudaMemcpyHostToDevice);
        return;
    }
    for (int64_t i = 0; i < P; i++) ct->stage16[i] = dk_f32_to_bf16(host[i]);
    copy_wait(ct, dev, ct->stage16, (size_t)P * sizeof(uint16_t), cudaMemcpyHostToDevice);
}

static void moments_down(dk_dict_cuda_trainer *ct, const void *dev, float *host) {
    const int64_t P = ct->host->m->P;
    if (!ct->host->c.adam_bf16) {
        copy_wait(ct, host, dev, (size_t)P * sizeof(float), cudaMemcpyDeviceToHost);
        return;
    }
    copy_wait(ct, ct->stage16, dev, (size_t)P * sizeof(uint16_t), cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < P; i++) host[i] = dk_bf16_to_f32(ct->stage16[i]);
}

void dk_dict_cuda_trainer_upload(dk_dict_cuda_trainer *ct) {
    const dk_dict_model *m = ct->host->m;
    CUDA_CHECK(cudaSetDevice(ct->device));
    copy_wait(ct, ct->p, m->p, (size_t)m->P * sizeof(float), cudaMemcpyHostToDevice);
    moments_up(ct, ct->host->adam_m, ct->adam_m);
    moments_up(ct, ct->host->adam_v, ct->adam_v);
}

void dk_dict_cuda_trainer_download(dk_dict_cuda_trainer *ct) {
    dk_dict_model *m = ct->host->m;
    CUDA_CHECK(cudaSetDevice(ct->device));
    copy_wait(ct, m->p, ct->p, (size_t)m->P * sizeof(float), cudaMemcpyDeviceToHost);
    moments_down(ct, ct->adam_m, ct->host->adam_m);
    moments_down(ct, ct->adam_v, ct->host->adam_v);
}

/* NCCL when this build has it, there is more than one rank and no two ranks use the same GPU (NCCL refuses two
 * ranks on one device): each rank's GPU is named by its host and PCI bus id (CUDA_VISIBLE_DEVICES may renumber
 * them), gathered over the ranks. Collective. */
static void setup_allreduce(dk_dict_cuda_trainer *ct) {
    const dk_dist *dist = ct->host->dist;
    ct->nccl = false;
#ifdef DIFFKIT_HAVE_NCCL
    if (dist->nranks == 1) return;
    enum { NAME = 160 };
    char mine[NAME] = {0}, bus[64] = "?";
    gethostname(mine, 96);
    mine[95] = '\0';
    if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, ct->device) != cudaSuccess) snprintf(bus, sizeof bus, "?");
    snprintf(mine + strlen(mine), NAME - strlen(mine), "/%s", bus);
    char *all = dk_malloc((size_t)dist->nranks * NAME);
    MPI_Allgather(mine, NAME, MPI_CHAR, all, NAME, MPI_CHAR, dist->comm);
    bool shared = false;
    for (int i = 0; i < dist->nranks && !shared; i++)
        for (int j = i + 1; j < dist->nranks && !shared; j++) shared = strcmp(all + i * NAME, all + j * NAME) == 0;
    free(all);
    if (shared) return; /* every rank saw the same list: the same decision everywhere */
    ncclUniqueId id;
    if (dist->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, dist->comm);
    NCCL_CHECK(ncclCommInitRank(&ct->comm, dist->nranks, id, dist->rank));
    ct->nccl = true;
#else
    (void)dist;
#endif
}

int dk_dict_cuda_trainer_create(dk_dict_cuda_trainer **out, dk_dict_trainer *host, int device, int64_t max_rows,
                                dk_err *err) {
    *out = NULL;
    dk_dict_cuda_trainer *ct = dk_calloc(1, sizeof *ct);
    ct->host = host;
    ct->device = device;
    const dk_dict_model *m = host->m;
    const dk_dict_shape *s = &m->s;
    const dk_dict_train_cfg *c = &host->c;
    const int64_t P = m->P, D = s->D, F = s->F, rows = max_rows > 0 ? max_rows : 1;
    const int64_t k_max = c->k_initial > c->k ? c->k_initial : c->k;
    ct->cap_rows = rows;
    ct->cap_sel = rows * F < k_max * rows * 64 ? rows * F : k_max * rows * 64; /* as the CPU trainer */
    ct->aux_cap = rows * (c->top_k_aux < F ? c->top_k_aux : F);
    const int64_t sort_cap = ct->cap_sel > ct->aux_cap ? ct->cap_sel : (ct->aux_cap > 0 ? ct->aux_cap : 1);
    const size_t mom = c->adam_bf16 ? sizeof(uint16_t) : sizeof(float);
    int rc = dk_cuda_select_device(device, err);
    if (rc == 0 && sort_cap > 0x7fffffff)
        rc = dk_err_set(err, DK_EXIT_USAGE, "dictionary training on GPU: %lld selected entries per rank do not fit "
                        "the GPU selection (at most 2^31): lower diffing.method.training.batch_size or use more ranks",
                        (long long)sort_cap);
    if (rc == 0 && cudaStreamCreateWithFlags(&ct->stream, cudaStreamNonBlocking) != cudaSuccess)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "dictionary training on GPU: cannot create a CUDA stream");
    if (rc == 0 && dk_cuda_gemm_create(&ct->gemm, GEMM_WORKSPACE) != CUBLAS_STATUS_SUCCESS)
        rc = dk_err_set(err, DK_EXIT_RUNTIME, "dictionary training on GPU: cannot create the cuBLASLt handle");
    if (rc == 0) {
        cudaError_t st = dk_cuda_dict_create(&ct->ctx, s, rows, sort_cap);
        if (st != cudaSuccess)
            rc = dk_err_set(err, DK_EXIT_RUNTIME, "dictionary training on GPU: the step's scratch (%lld rows, %lld "
                            "entries): %s", (long long)rows, (long long)sort_cap, cudaGetErrorString(st));
    }
    const size_t fl = sizeof(float);
    if (rc == 0) rc = dev_alloc(&ct->p, (size_t)P * fl, "the parameters", err);
    if (rc == 0) rc = dev_alloc(&ct->grad, (size_t)P * fl, "the gradients", err);
    if (rc == 0) rc = dev_alloc(&ct->adam_m, (size_t)P * mom, "Adam's first moments", err);
    if (rc == 0) rc = dev_alloc(&ct->adam_v, (size_t)P * mom, "Adam's second moments", err);
    if (rc == 0) rc = dev_alloc(&ct->x, (size_t)(rows * D) * fl, "the batch", err);
    if (rc == 0 && m->kind == DK_DICT_SAE) rc = dev_alloc(&ct->u, (size_t)(rows * D) * fl, "the encoder input", err);
    if (rc == 0) rc = dev_alloc(&ct->pre, (size_t)(rows * F) * fl, "the pre-activations", err);
    if (rc == 0 && m->kind != DK_DICT_SAE) rc = dev_alloc(&ct->scores, (size_t)(rows * F) * fl, "the scores", err);
    if (rc == 0) rc = dev_alloc(&ct->xhat, (size_t)(rows * D) * fl, "the reconstruction", err);
    if (rc == 0) rc = dev_alloc(&ct->g, (size_t)(rows * D) * fl, "the loss gradient", err);
    if (rc == 0) rc = dev_alloc(&ct->ehat, (size_t)(rows * D) * fl, "the auxiliary reconstruction", err);
    if (rc == 0) rc = dev_alloc(&ct->w, (size_t)F * fl, "the code weights", err);
    if (rc == 0) rc = dev_alloc(&ct->hist, 65536 * sizeof(uint64_t), "the histogram", err);
    if (rc == 0) rc = dev_alloc(&ct->row_ptr, (size_t)(rows + 1) * sizeof(int64_t), "the code", err);
    if (rc == 0) rc = dev_alloc(&ct->aux_ptr, (size_t)(rows + 1) * sizeof(int64_t), "the auxiliary code", err);
    if (rc == 0) rc = dev_alloc(&ct->idx, (size_t)ct->cap_sel * sizeof(int32_t), "the code", err);
    if (rc == 0) rc = dev_alloc(&ct->fval, (size_t)ct->cap_sel * fl, "the code", err);
    if (rc == 0) rc = dev_alloc(&ct->aux_idx, (size_t)ct->aux_cap * sizeof(int32_t), "the auxiliary code", err);
    if (rc == 0) rc = dev_alloc(&ct->aux_val, (size_t)ct->aux_cap * fl, "the auxiliary code", err);
    if (rc == 0) rc = dev_alloc(&ct->fired, (size_t)F, "the fired mask", err);
    if (rc == 0) rc = dev_alloc(&ct->dead, (size_t)F, "the dead mask", err);
    if (rc == 0) rc = dev_alloc(&ct->mean_e, (size_t)D * sizeof(double), "the mean residual", err);
    ct->hist_host = dk_malloc(65536 * sizeof(uint64_t));
    ct->mean_host = dk_malloc((size_t)D * sizeof(double));
    if (c->adam_bf16) ct->stage16 = dk_malloc((size_t)P * sizeof(uint16_t));
    if (dk_dist_agree(host->dist, err) != 0) rc = -1;
    if (rc != 0) {
        dk_dict_cuda_trainer_destroy(ct);
        return -1;
    }
    setup_allreduce(ct);
    dk_dict_cuda_trainer_upload(ct);
    *out = ct;
    return 0;
}

/* ---- the step -------------------------------------------------------------------------------------------- */

/* The low-half histogram of this rank's scores on the GPU (dk_dict_hist_lo_fn). */
typedef struct gpu_scores {
    dk_dict_cuda_trainer *ct;
    const float *scores;
    int64_t count;
} gpu_scores;

static void gpu_hist_lo(void *ctx, uint32_t hi_bin, uint64_t *hist) {
    const gpu_scores *g = ctx;
    dk_dict_cuda_trainer *ct = g->ct;
    CUDA_CHECK(cudaMemsetAsync(ct->hist, 0, 65536 * sizeof(uint64_t), ct->stream));
    CUDA_CHECK(dk_cuda_hist_lo(g->scores, g->count, hi_bin, ct->hist, ct->stream));
    CUDA_CHECK(cudaMemcpyAsync(hist, ct->hist, 65536 * sizeof(uint64_t), cudaMemcpyDeviceToHost, ct->stream));
    CUDA_CHECK(cudaStreamSynchronize(ct->stream));
}

/* The gradients (P) summed over the ranks: NCCL on the device, or through the host buffer with MPI. */
static void allreduce_grad(dk_dict_cuda_trainer *ct) {
    dk_dict_trainer *tr = ct->host;
    const int64_t P = tr->m->P;
    if (tr->dist->nranks == 1) return;
#ifdef DIFFKIT_HAVE_NCCL
    if (ct->nccl) {
        NCCL_CHECK(ncclAllReduce(ct->grad, ct->grad, (size_t)P, ncclFloat32, ncclSum, ct->comm, ct->stream));
        return;
    }
#endif
    CUDA_CHECK(cudaMemcpyAsync(tr->grad, ct->grad, (size_t)P * sizeof(float), cudaMemcpyDeviceToHost, ct->stream));
    CUDA_CHECK(cudaStreamSynchronize(ct->stream));
    dk_dict_allreduce_f32(tr->dist, tr->grad, P);
    CUDA_CHECK(cudaMemcpyAsync(ct->grad, tr->grad, (size_t)P * sizeof(float), cudaMemcpyHostToDevice, ct->stream));
}

int dk_dict_cuda_trainer_step(dk_dict_cuda_trainer *ct, const float *x, const float *raw, int64_t n, int64_t B,
                              dk_err *err) {
    dk_dict_trainer *tr = ct->host; /* the host state; the names below are dk_dict_trainer_step's */
    cudaStream_t st = ct->stream;
    dk_dict_model *m = tr->m;
    const bool sae = m->kind == DK_DICT_SAE;
    const dk_dict_shape *s = &m->s;
    const int64_t D = s->D, F = s->F, step = tr->step;
    const dk_dict_train_cfg *c = &tr->c;
    const dk_dist *dist = tr->dist;
    CHECK(n <= ct->cap_rows, "dict step (GPU): %lld rows, scratch for %lld", (long long)n, (long long)ct->cap_rows);
    CUDA_CHECK(cudaSetDevice(ct->device));
    float *W_enc = ct->p, *b_enc = ct->p + dk_dict_off_b_enc(s), *W_dec = ct->p + dk_dict_off_W_dec(s),
          *b_dec = ct->p + dk_dict_off_b_dec(s);
    float *gW_enc = ct->grad, *gb_enc = ct->grad + dk_dict_off_b_enc(s), *gW_dec = ct->grad + dk_dict_off_W_dec(s),
          *gb_dec = ct->grad + dk_dict_off_b_dec(s);

    if (step == 0) { /* on the host, as the CPU trainer; the host's b_dec was uploaded with the rest */
        float *host_b_dec = dk_dict_b_dec(m);
        dk_dict_geometric_median(dist, s, sae ? raw : x, n, B, host_b_dec);
        CUDA_CHECK(cudaMemcpyAsync(b_dec, host_b_dec, (size_t)D * sizeof(float), cudaMemcpyHostToDevice, st));
    }
    if (n > 0) CUDA_CHECK(cudaMemcpyAsync(ct->x, x, (size_t)(n * D) * sizeof(float), cudaMemcpyHostToDevice, st));

    /* 1. encode, scores, selection */
    const int64_t k = dk_dict_k_at(c, step), K = k * B;
    const float *w = NULL;
    if (!sae) {
        CUDA_CHECK(dk_cuda_dict_code_weights(s, W_dec, ct->w, st));
        w = ct->w;
    }
    const float *u = sae ? ct->u : ct->x; /* the encoder's input, also the W_enc gradient's */
    CUBLAS_CHECK(dk_cuda_dict_encode(ct->gemm, s, ct->x, n, W_enc, b_enc, sae ? b_dec : NULL, sae ? ct->u : NULL,
                                     ct->pre, st));
    float *scores = sae ? ct->pre : ct->scores;
    CUDA_CHECK(cudaMemsetAsync(ct->hist, 0, 65536 * sizeof(uint64_t), st));
    CUDA_CHECK(dk_cuda_dict_scores(ct->pre, n, F, w, scores, ct->hist, st));
    CUDA_CHECK(cudaMemcpyAsync(ct->hist_host, ct->hist, 65536 * sizeof(uint64_t), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    float t;
    int64_t ties;
    gpu_scores gs = {ct, scores, n * F};
    dk_dict_global_threshold(dist, ct->hist_host, K, gpu_hist_lo, &gs, &t, &ties);
    const float *a = ct->pre;
    int64_t n_sel = 0;
    CUDA_CHECK(dk_cuda_select(ct->ctx, scores, a, n, F, t, ties, ct->row_ptr, ct->idx, ct->fval, ct->cap_sel, &n_sel,
                              st));

    /* 2. fired mask and threshold EMA */
    float min_sel;
    CUDA_CHECK(dk_cuda_dict_fired(ct->ctx, n_sel, ct->idx, ct->fval, w, F, ct->fired, &min_sel, st));
    CUDA_CHECK(cudaMemcpyAsync(tr->fired, ct->fired, (size_t)F, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    dk_dict_fired_and_threshold(tr, min_sel);

    /* 3. decode, residual, loss and its gradient w.r.t. the reconstruction */
    CUDA_CHECK(dk_cuda_dict_decode(s, n, ct->row_ptr, ct->idx, ct->fval, W_dec, b_dec, ct->xhat, st));
    float *e = ct->xhat; /* e = x − x̂, in place */
    double sums[2];
    CUDA_CHECK(dk_cuda_dict_residual(ct->ctx, s, ct->x, n, B, sae, e, ct->g, sums, st));
    dk_dict_loss_stats(tr, sums, B, k, n_sel);

    /* 4. dead latents (counted after this batch's firing), AuxK */
    CUDA_CHECK(cudaMemsetAsync(ct->grad, 0, (size_t)m->P * sizeof(float), st));
    const int64_t n_dead = dk_dict_count_dead(tr, B);
    if (n_dead > 0) {
        const int64_t k_aux = c->top_k_aux < n_dead ? c->top_k_aux : n_dead;
        int64_t n_aux = 0;
        CUDA_CHECK(cudaMemcpyAsync(ct->dead, tr->dead, (size_t)F, cudaMemcpyHostToDevice, st));
        CUDA_CHECK(dk_cuda_auxk_select(ct->ctx, scores, a, n, F, ct->dead, k_aux, ct->aux_ptr, ct->aux_idx,
                                       ct->aux_val, &n_aux, st));
        CUDA_CHECK(dk_cuda_dict_decode(s, n, ct->aux_ptr, ct->aux_idx, ct->aux_val, W_dec, NULL, ct->ehat, st));
        CUDA_CHECK(dk_cuda_dict_col_sums(e, n, D, ct->mean_e, st));
        CUDA_CHECK(cudaMemcpyAsync(ct->mean_host, ct->mean_e, (size_t)D * sizeof(double), cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
        dk_dict_allreduce_f64(dist, ct->mean_host, D);
        for (int64_t i = 0; i < D; i++) ct->mean_host[i] /= (double)B;
        CUDA_CHECK(cudaMemcpyAsync(ct->mean_e, ct->mean_host, (size_t)D * sizeof(double), cudaMemcpyHostToDevice, st));
        double nd[2]; /* Σ‖e − ê‖², Σ‖e − ē‖² */
        CUDA_CHECK(dk_cuda_dict_auxk_residual(ct->ctx, e, ct->ehat, ct->mean_e, n, D, nd, st));
        float coef;
        if (dk_dict_auxk_coef(tr, nd, B, &coef)) {
            CUDA_CHECK(dk_cuda_dict_auxk_grad(e, ct->ehat, n * D, coef, st));
            CUDA_CHECK(dk_cuda_dict_backward(ct->ctx, s, n, ct->aux_ptr, ct->aux_idx, ct->aux_val, n_aux, ct->ehat,
                                             u, W_dec, gW_enc, gb_enc, gW_dec, st));
        }
    }
    if (dk_dict_check_loss(tr, err) != 0) return -1;

    /* 5. backward of the main code, the decoder bias, the encoder's path to b_dec; sums over the ranks */
    CUDA_CHECK(dk_cuda_dict_backward(ct->ctx, s, n, ct->row_ptr, ct->idx, ct->fval, n_sel, ct->g, u, W_dec, gW_enc,
                                     gb_enc, gW_dec, st));
    CUDA_CHECK(dk_cuda_dict_bdec_grad(ct->g, n, D, gb_dec, st));
    if (sae) CUDA_CHECK(dk_cuda_dict_bdec_through_encoder(s, W_enc, gb_enc, gb_dec, st));
    allreduce_grad(ct);

    /* 6. projection, clipping, Adam, renormalisation */
    if (sae) CUDA_CHECK(dk_cuda_dict_remove_parallel(s, W_dec, gW_dec, st));
    double sumsq;
    CUDA_CHECK(dk_cuda_sumsq(ct->ctx, ct->grad, m->P, &sumsq, st));
    const float scale = dk_dict_clip_scale(tr, sumsq);
    if (c->adam_bf16)
        CUDA_CHECK(dk_cuda_adam_bf16(ct->p, ct->grad, ct->adam_m, ct->adam_v, m->P, scale, tr->last.lr, 0.9, 0.999,
                                     1e-8, step + 1, st));
    else
        CUDA_CHECK(dk_cuda_adam(ct->p, ct->grad, ct->adam_m, ct->adam_v, m->P, scale, tr->last.lr, 0.9, 0.999, 1e-8,
                                step + 1, st));
    if (sae) CUDA_CHECK(dk_cuda_dict_unit_norm(s, W_dec, st));
    tr->step++;
    return 0;
}
