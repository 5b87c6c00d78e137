/* dist.c — MPI start-up, abort handler and error agreement (see dist.h). */
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check_mpi.h"
#include "core/log.h"

static void abort_all_ranks(int code) { MPI_Abort(MPI_COMM_WORLD, code ? code : 1); }

/* A job that exits on every rank (--help, a configuration error found identically everywhere) still
 * finalizes MPI, so mpirun sees a clean exit with the job's code rather than "exited improperly". */
static void finalize_at_exit(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Finalize();
}

void dk_dist_init(int *argc, char ***argv, dk_dist *d) {
    memset(d, 0, sizeof *d);
    int provided = 0;
    /* SERIALIZED, not FUNNELED: a thread other than main may make MPI calls, never two at once (pp_run.c) */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "diffkit: error: MPI_Init failed (is this run under mpirun/srun?)\n");
        exit(DK_EXIT_RUNTIME);
    }
    atexit(finalize_at_exit);
    d->thread_level = provided;
    d->comm = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(d->comm, &d->rank));
    MPI_CHECK(MPI_Comm_size(d->comm, &d->nranks));
    dk_log_set_rank(d->rank, d->nranks);
    dk_set_abort_handler(abort_all_ranks);
    MPI_Comm local;
    MPI_CHECK(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local));
    MPI_CHECK(MPI_Comm_rank(local, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(local, &d->local_nranks));
    MPI_CHECK(MPI_Comm_free(&local));
}

void dk_dist_finalize(dk_dist *d) {
    dk_set_abort_handler(NULL);
    MPI_Finalize();
    d->comm = MPI_COMM_NULL;
}

/* The lowest failing rank (nranks: none) found, every rank takes its error. */
static int share_first_error(const dk_dist *d, int first, dk_err *err) {
    if (first == d->nranks) return 0;
    dk_err shared;
    if (d->rank == first) shared = *err;
    MPI_CHECK(MPI_Bcast(&shared, (int)sizeof shared, MPI_BYTE, first, d->comm));
    *err = shared;
    return -1;
}

int dk_dist_agree(const dk_dist *d, dk_err *err) {
    int mine = dk_err_is_set(err) ? d->rank : d->nranks;
    int first = d->nranks;
    MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm));
    return share_first_error(d, first, err);
}

int dk_dist_agree_idle(const dk_dist *d, dk_err *err) {
    int mine = dk_err_is_set(err) ? d->rank : d->nranks;
    int first = d->nranks, done = 0;
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm, &req));
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 200 * 1000};
    for (;;) {
        MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        nanosleep(&pause, NULL);
    }
    return share_first_error(d, first, err);
}

void dk_dist_exit(dk_dist *d, const dk_err *err) {
    int code = (err && err->code) ? err->code : DK_EXIT_RUNTIME;
    if (d->rank == 0) dk_log_error_once("%s", (err && err->msg[0]) ? err->msg : "unknown error");
    fflush(stderr);
    dk_dist_finalize(d);
    exit(code);
}

static void reduce_sum(const dk_dist *d, const void *in, void *out, int64_t n, MPI_Datatype type, size_t size) {
    const int64_t piece = 1 << 28;
    for (int64_t at = 0; at < n; at += piece) {
        const int count = (int)(n - at < piece ? n - at : piece);
        const char *src = (const char *)in + (size_t)at * size;
        char *dst = out ? (char *)out + (size_t)at * size : NULL;
        MPI_CHECK(MPI_Reduce(src, d->rank == 0 ? dst : NULL, count, type, MPI_SUM, 0, d->comm));
    }
}

void dk_dist_reduce_sum_f32(const dk_dist *d, const float *in, float *out, int64_t n) {
    reduce_sum(d, in, out, n, MPI_FLOAT, sizeof(float));
}

void dk_dist_reduce_sum_f64(const dk_dist *d, const double *in, double *out, int64_t n) {
    reduce_sum(d, in, out, n, MPI_DOUBLE, sizeof(double));
}

int64_t dk_dist_sum_i64(const dk_dist *d, int64_t v) {
    int64_t out = 0;
    MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, d->comm));
    return out;
}

int64_t dk_dist_max_i64(const dk_dist *d, int64_t v) {
    int64_t out = 0;
    MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, d->comm));
    return out;
}

double dk_dist_max_f64(const dk_dist *d, double v) {
    double out = 0;
    MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, d->comm));
    return out;
}

int64_t dk_dist_exscan_i64(const dk_dist *d, int64_t local_rows) {
    int64_t first = 0;
    MPI_CHECK(MPI_Exscan(&local_rows, &first, 1, MPI_INT64_T, MPI_SUM, d->comm));
    if (d->rank == 0) first = 0; /* MPI_Exscan leaves rank 0's result undefined */
    return first;
}
