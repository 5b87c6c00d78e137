/* dist.h — the MPI layer every multi-rank job starts with: one rank per device, rank-aware logging, an
 * abort handler so a fatal error on one rank ends the whole job (never a rank left waiting in a
 * collective), and the "did any rank fail?" agreement that turns an expected error on one rank into a
 * clean, identical exit on every rank.
 *
 *     dk_dist d;  dk_dist_init(&argc, &argv, &d);
 *     ... if (dk_dist_agree(&d, &err) != 0) dk_dist_exit(&d, &err);   // every rank, same code
 *     dk_dist_finalize(&d);
 */
#ifndef DK_DIST_H
#define DK_DIST_H

#include <mpi.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dk_dist {
    MPI_Comm comm;      /* MPI_COMM_WORLD, errors returned (MPI_CHECK turns them into aborts) */
    int rank, nranks;
    int local_rank;     /* rank among the ranks of this node (MPI_COMM_TYPE_SHARED): picks the device */
    int local_nranks;
    int thread_level;   /* what MPI_Init_thread provided (MPI_THREAD_SERIALIZED requested; see dist.c) */
} dk_dist;

/* MPI_Init_thread, logging rank, MPI_Abort as dk_abort handler, local rank. Ends the job if MPI cannot start.
 * Requests MPI_THREAD_SERIALIZED: diff_preprocess's writer thread makes the MPI (and MPI-IO) calls while
 * its compute thread runs (host/pipeline/pp_run.c); a job that needs that level checks thread_level. */
void dk_dist_init(int *argc, char ***argv, dk_dist *d);
void dk_dist_finalize(dk_dist *d);

/* Collective. 0 when no rank has an error set; else -1 on every rank, with err holding the message (and
 * code) of the lowest failing rank, so rank 0 can print it once. */
int dk_dist_agree(const dk_dist *d, dk_err *err);
/* dk_dist_agree for a thread that waits beside a computing thread on the same cores (diff_preprocess's
 * writer): it waits for the other ranks with MPI_Iallreduce, MPI_Test and 200 us sleeps instead of MPI's
 * busy polling, which would take the core from the computation it is waiting for. Same result. */
int dk_dist_agree_idle(const dk_dist *d, dk_err *err);
/* Prints err once (rank 0), finalizes MPI and exits with err->code on every rank. Call after agree. */
void dk_dist_exit(dk_dist *d, const dk_err *err) __attribute__((noreturn));

/* Collective helpers for plain values. */
int64_t dk_dist_sum_i64(const dk_dist *d, int64_t v);
int64_t dk_dist_max_i64(const dk_dist *d, int64_t v);
double dk_dist_max_f64(const dk_dist *d, double v);
/* Element-wise sums of n values over the ranks into out on rank 0 (out may be NULL elsewhere); any n (sent in
 * pieces under 2^31). With one rank out = in. The order of the additions is MPI's: callers that need bit-exact
 * results whatever the rank count give every element one non-zero contributor (the others hold 0). */
void dk_dist_reduce_sum_f32(const dk_dist *d, const float *in, float *out, int64_t n);
void dk_dist_reduce_sum_f64(const dk_dist *d, const double *in, double *out, int64_t n);

/* First row of this rank when every rank holds `local_rows` rows in rank order (MPI_Exscan; 0 on rank 0). */
int64_t dk_dist_exscan_i64(const dk_dist *d, int64_t local_rows);

#endif
