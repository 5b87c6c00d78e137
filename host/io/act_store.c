/* act_store.c — the parallel writer of the activation store (see act_store.h; layout in docs/formats.md).
 *
 * Every HDF5 call that changes metadata is made by all ranks with the same arguments; raw writes are
 * collective with the file type as the memory type, and a rank with nothing to write selects nothing. */
#include "io/act_store.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/check_hdf5.h"
#include "core/check_mpi.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/h5_cause.h"
#include "io/out_file.h"
#include "io/store_lock.h"

#define STATUS_LEN 16

struct dk_store_writer {
    MPI_Comm comm;
    int rank;
    dk_store_layout L;              /* copy; pointer members stay the caller's */
    char *final_path, *partial_path;
    hid_t file, dxpl, bf16;
    hid_t tokens, chunk_done;
    hid_t layer[DK_STORE_MAX_LAYERS];       /* (n_tokens, d) bf16 */
    hid_t chunk_mean[DK_STORE_MAX_LAYERS];  /* (n_chunks, d) f64 */
    hid_t chunk_m2[DK_STORE_MAX_LAYERS];    /* (n_chunks, d) f64 */
    dk_timer io;
    bool warned_independent;
    int64_t unflagged_chunk;        /* chunk written and flushed by this rank, flag not yet set; -1 none */
    dk_file_id partial_id;          /* rank 0: the .partial this job created or adopted; renamed only if still it */
};

/* ---- I/O failures ---------------------------------------------------------------------------------------
 * A failed write or flush of the store is fatal job-wide (the other ranks wait in the same collective), but
 * its message is for people: "no space left on .../train.h5.partial" rather than an HDF5 error stack. The
 * cause is errno when the MPI-IO layer left it set, else found in the text of HDF5's error stack (which holds
 * MPI's error string). The chunks already flagged stay valid: a rerun with more space resumes. */

static void store_io_failed(const dk_store_writer *w, int saved_errno, const char *what) {
    int e = dk_h5_error_errno(saved_errno);
    dk_err err = {0};
    if (e) dk_err_write(&err, w->partial_path, e);
    else dk_err_set(&err, DK_EXIT_RUNTIME, "cannot write the activation store %s (HDF5 gave no reason; is the disk "
                    "full or the file system unavailable?)", w->partial_path);
    dk_log_error_all("%s (while %s); the store is not marked complete and a rerun resumes it", err.msg, what);
    dk_abort(DK_EXIT_RUNTIME);
}

/* A store I/O call that must succeed: on failure the job ends with store_io_failed's message. */
#define STORE_IO(w, expr, what)                                                                               \
    do {                                                                                                      \
        errno = 0;                                                                                            \
        if ((long long)(expr) < 0) store_io_failed((w), errno, (what));                                       \
    } while (0)

uint64_t dk_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int64_t dk_store_bf16_type(void) {
    hid_t t;
    H5_CHECK(t = H5Tcopy(H5T_IEEE_F32LE));
    H5_CHECK(H5Tset_fields(t, 15, 7, 8, 0, 7));
    H5_CHECK(H5Tset_offset(t, 0));
    H5_CHECK(H5Tset_precision(t, 16));
    H5_CHECK(H5Tset_size(t, 2));
    H5_CHECK(H5Tset_ebias(t, 127));
    return t;
}

/* ---- attributes (all ranks, same values) ---------------------------------------------------------- */

static void attr_str(hid_t obj, const char *name, const char *value, size_t fixed_len) {
    size_t len = fixed_len ? fixed_len : strlen(value ? value : "") + 1;
    hid_t type, space, a;
    H5_CHECK(type = H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(type, len));
    H5_CHECK(H5Tset_strpad(type, H5T_STR_NULLTERM));
    H5_CHECK(space = H5Screate(H5S_SCALAR));
    if (H5Aexists(obj, name) > 0) {
        H5_CHECK(a = H5Aopen(obj, name, H5P_DEFAULT));
    } else {
        H5_CHECK(a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT));
    }
    char *buf = calloc(1, len);
    if (value) strncpy(buf, value, len - 1);
    H5_CHECK(H5Awrite(a, type, buf));
    free(buf);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

static void attr_i64(hid_t obj, const char *name, const int64_t *values, hsize_t n) {
    hid_t space, a;
    H5_CHECK(space = H5Screate_simple(1, &n, NULL));
    H5_CHECK(a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT));
    H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, values));
    H5Aclose(a);
    H5Sclose(space);
}

static void attr_u64(hid_t obj, const char *name, uint64_t value) {
    hid_t space, a;
    H5_CHECK(space = H5Screate(H5S_SCALAR));
    if (H5Aexists(obj, name) > 0) {
        H5_CHECK(a = H5Aopen(obj, name, H5P_DEFAULT));
    } else {
        H5_CHECK(a = H5Acreate2(obj, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT));
    }
    H5_CHECK(H5Awrite(a, H5T_NATIVE_UINT64, &value));
    H5Aclose(a);
    H5Sclose(space);
}

/* ---- datasets --------------------------------------------------------------------------------------- */

static hid_t create_ds(const dk_store_writer *w, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1) {
    hsize_t dims[2] = {d0, d1};
    hid_t space, dcpl, ds;
    H5_CHECK(space = H5Screate_simple(rank, dims, NULL));
    H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    H5_CHECK(H5Pset_layout(dcpl, H5D_CONTIGUOUS));
    H5_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
    H5_CHECK(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
    STORE_IO(w, ds = H5Dcreate2(w->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "creating a dataset");
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

static hid_t open_ds(hid_t file, const char *name) {
    hid_t ds;
    H5_CHECK(ds = H5Dopen2(file, name, H5P_DEFAULT));
    return ds;
}

/* "writing layer_13" for a message (a static buffer: only used on the way to the end of the job). */
static const char *dataset_name(hid_t ds) {
    static char what[160];
    char name[128] = "?";
    H5Iget_name(ds, name, sizeof name);
    snprintf(what, sizeof what, "writing %s", name[0] == '/' ? name + 1 : name);
    return what;
}

/* Collective write of rows [row0, row0 + n) of a 1-D or 2-D dataset; n == 0 selects nothing. */
static void write_rows(const dk_store_writer *w, hid_t ds, hid_t type, int64_t row0, int64_t n, hsize_t width,
                       const void *buf) {
    hid_t fspace, mspace;
    H5_CHECK(fspace = H5Dget_space(ds));
    int rank = H5Sget_simple_extent_ndims(fspace);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, width};
    if (n > 0) {
        H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL));
        H5_CHECK(mspace = H5Screate_simple(rank, count, NULL));
    } else {
        H5_CHECK(H5Sselect_none(fspace));
        hsize_t one[2] = {1, width};
        H5_CHECK(mspace = H5Screate_simple(rank, one, NULL));
        H5_CHECK(H5Sselect_none(mspace));
    }
    static const char nothing[16];  /* HDF5 wants a buffer even for an empty selection */
    STORE_IO(w, H5Dwrite(ds, type, mspace, fspace, w->dxpl, buf ? buf : nothing), dataset_name(ds));
    H5Sclose(mspace);
    H5Sclose(fspace);
}

static hid_t file_access(MPI_Comm comm) {
    hid_t fapl;
    H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS));
    MPI_Info info;
    MPI_CHECK(MPI_Info_create(&info));
    MPI_Info_set(info, "access_style", "write_once");
    H5_CHECK(H5Pset_fapl_mpio(fapl, comm, info));
    MPI_Info_free(&info);
    H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18));
    H5_CHECK(H5Pset_coll_metadata_write(fapl, 1));
    H5_CHECK(H5Pset_all_coll_metadata_ops(fapl, 1));
    H5_CHECK(H5Pset_alignment(fapl, 1 << 20, 1 << 20));
    H5_CHECK(H5Pset_meta_block_size(fapl, 1 << 20));
    return fapl;
}

static void create_layout(dk_store_writer *w) {
    const dk_store_layout *L = &w->L;
    hid_t u8 = H5T_STD_U8LE, f64 = H5T_IEEE_F64LE;
    w->tokens = L->store_tokens ? create_ds(w, "tokens", H5T_STD_I32LE, 1, (hsize_t)L->n_tokens, 0) : -1;
    hid_t offsets = create_ds(w, "seq_offsets", H5T_STD_I64LE, 1, (hsize_t)L->n_seqs + 1, 0);
    hid_t g;
    H5_CHECK(g = H5Gcreate2(w->file, "stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(g);
    H5_CHECK(g = H5Gcreate2(w->file, "progress", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(g);
    w->chunk_done = create_ds(w, "progress/chunk_done", u8, 1, (hsize_t)L->n_chunks, 0);
    hid_t chunk_seq = create_ds(w, "progress/chunk_seq", H5T_STD_I64LE, 1, (hsize_t)L->n_chunks + 1, 0);
    hid_t stats[DK_STORE_MAX_LAYERS][3];
    for (int i = 0; i < L->n_layers; i++) {
        char name[96];
        snprintf(name, sizeof name, "layer_%lld", (long long)L->layers[i]);
        w->layer[i] = create_ds(w, name, w->bf16, 2, (hsize_t)L->n_tokens, (hsize_t)L->d_model);
        attr_str(w->layer[i], "dtype", "bfloat16", 0);
        attr_str(w->layer[i], "encoding", "bf16", 0);
        attr_i64(w->layer[i], "layer", &L->layers[i], 1);
        attr_str(w->layer[i], "site", "resid_post", 0);
        snprintf(name, sizeof name, "progress/layer_%lld_chunk_mean", (long long)L->layers[i]);
        w->chunk_mean[i] = create_ds(w, name, f64, 2, (hsize_t)L->n_chunks, (hsize_t)L->d_model);
        snprintf(name, sizeof name, "progress/layer_%lld_chunk_m2", (long long)L->layers[i]);
        w->chunk_m2[i] = create_ds(w, name, f64, 2, (hsize_t)L->n_chunks, (hsize_t)L->d_model);
        snprintf(name, sizeof name, "stats/layer_%lld", (long long)L->layers[i]);
        H5_CHECK(g = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Gclose(g);
        snprintf(name, sizeof name, "stats/layer_%lld/mean", (long long)L->layers[i]);
        stats[i][0] = create_ds(w, name, f64, 1, (hsize_t)L->d_model, 0);
        snprintf(name, sizeof name, "stats/layer_%lld/m2", (long long)L->layers[i]);
        stats[i][1] = create_ds(w, name, f64, 1, (hsize_t)L->d_model, 0);
        snprintf(name, sizeof name, "stats/layer_%lld/count", (long long)L->layers[i]);
        stats[i][2] = create_ds(w, name, H5T_STD_I64LE, 1, 1, 0);
    }
    size_t yaml_len = L->config_yaml ? strlen(L->config_yaml) : 0;
    hid_t yaml = create_ds(w, "config_yaml", u8, 1, yaml_len ? yaml_len : 1, 0);

    /* root attributes */
    int64_t version = DK_STORE_FORMAT_VERSION;
    attr_i64(w->file, "format_version", &version, 1);
    attr_str(w->file, "status", "in_progress", STATUS_LEN);
    attr_str(w->file, "model_id", L->model_id, 0);
    attr_str(w->file, "model_snapshot", L->model_snapshot, 0);
    attr_str(w->file, "adapter_id", L->adapter_id, 0);
    attr_str(w->file, "dtype", L->dtype, 0);
    attr_i64(w->file, "layers", L->layers, (hsize_t)L->n_layers);
    attr_i64(w->file, "context_len", &L->context_len, 1);
    attr_i64(w->file, "d_model", &L->d_model, 1);
    attr_i64(w->file, "n_tokens", &L->n_tokens, 1);
    attr_i64(w->file, "n_sequences", &L->n_seqs, 1);
    attr_i64(w->file, "n_chunks", &L->n_chunks, 1);
    attr_str(w->file, "tokenizer_hash", L->tokenizer_hash, 0);
    attr_str(w->file, "dataset_hash", L->dataset_hash, 0);
    attr_str(w->file, "dataset_path", L->dataset_path, 0);
    attr_str(w->file, "split", L->split, 0);
    attr_str(w->file, "compute", L->compute ? L->compute : "cpu-fp32", 0);
    int64_t skip = L->skip_first, store_tokens = L->store_tokens;
    attr_i64(w->file, "skip_first_tokens", &skip, 1);
    attr_i64(w->file, "store_tokens", &store_tokens, 1);
    if (yaml_len < 60000) attr_str(w->file, "config_yaml", L->config_yaml ? L->config_yaml : "", 0);

    /* plan-known raw data, written by rank 0; chunk flags start at 0 (no fill value: written explicitly) */
    bool r0 = w->rank == 0;
    write_rows(w, offsets, H5T_STD_I64LE, 0, r0 ? L->n_seqs + 1 : 0, 0, L->seq_offsets);
    write_rows(w, chunk_seq, H5T_STD_I64LE, 0, r0 ? L->n_chunks + 1 : 0, 0, L->chunk_seq);
    uint8_t *zeros = calloc((size_t)L->n_chunks + 1, 1);
    write_rows(w, w->chunk_done, u8, 0, r0 ? L->n_chunks : 0, 0, zeros);
    free(zeros);
    write_rows(w, yaml, u8, 0, r0 ? (int64_t)(yaml_len ? yaml_len : 1) : 0, 0,
               yaml_len ? L->config_yaml : "\n");
    for (int i = 0; i < L->n_layers; i++)
        for (int k = 0; k < 3; k++) H5Dclose(stats[i][k]);
    H5Dclose(yaml);
    H5Dclose(offsets);
    H5Dclose(chunk_seq);
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
    /* last: a file killed while being created has no fingerprint, so the probe treats it as absent */
    attr_u64(w->file, "plan_fingerprint", L->fingerprint);
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
}

static void open_layout(dk_store_writer *w) {
    const dk_store_layout *L = &w->L;
    w->tokens = L->store_tokens ? open_ds(w->file, "tokens") : -1;
    w->chunk_done = open_ds(w->file, "progress/chunk_done");
    for (int i = 0; i < L->n_layers; i++) {
        char name[96];
        snprintf(name, sizeof name, "layer_%lld", (long long)L->layers[i]);
        w->layer[i] = open_ds(w->file, name);
        snprintf(name, sizeof name, "progress/layer_%lld_chunk_mean", (long long)L->layers[i]);
        w->chunk_mean[i] = open_ds(w->file, name);
        snprintf(name, sizeof name, "progress/layer_%lld_chunk_m2", (long long)L->layers[i]);
        w->chunk_m2[i] = open_ds(w->file, name);
    }
}

dk_store_writer *dk_store_writer_open(MPI_Comm comm, const char *final_path, const dk_store_layout *layout,
                                      bool resume, dk_err *err) {
    CHECK(layout->n_layers > 0 && layout->n_layers <= DK_STORE_MAX_LAYERS, "%d layers", layout->n_layers);
    dk_store_writer *w = calloc(1, sizeof *w);
    w->comm = comm;
    MPI_CHECK(MPI_Comm_rank(comm, &w->rank));
    w->L = *layout;
    w->final_path = dk_strdup(final_path);
    w->partial_path = dk_sprintf("%s.partial", final_path);
    dk_timer_reset(&w->io);
    w->unflagged_chunk = -1;
    w->bf16 = (hid_t)dk_store_bf16_type();
    H5_CHECK(w->dxpl = H5Pcreate(H5P_DATASET_XFER));
    H5_CHECK(H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE));
    hid_t fapl = file_access(comm);
    if (resume) {
        w->file = H5Fopen(w->partial_path, H5F_ACC_RDWR, fapl);
    } else {
        w->file = H5Fcreate(w->partial_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    }
    H5Pclose(fapl);
    int ok = w->file >= 0, all_ok = 0;
    MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm));
    if (!all_ok) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot %s the activation store %s (check that its folder is writable)",
                   resume ? "open" : "create", w->partial_path);
        if (w->file >= 0) H5Fclose(w->file);
        H5Pclose(w->dxpl);
        H5Tclose(w->bf16);
        free(w->final_path);
        free(w->partial_path);
        free(w);
        return NULL;
    }
    if (w->rank == 0) w->partial_id = dk_file_id_of_path(w->partial_path);
    dk_timer_start(&w->io);
    if (resume) open_layout(w);
    else create_layout(w);
    dk_timer_stop(&w->io);
    return w;
}

void dk_store_read_done(dk_store_writer *w, uint8_t *done) {
    int64_t n = w->L.n_chunks;
    if (w->rank == 0) {
        H5_CHECK(H5Dread(w->chunk_done, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done));
    }
    MPI_CHECK(MPI_Bcast(done, (int)n, MPI_UINT8_T, 0, w->comm));
}

/* Collective: sets the flag of this rank's chunk written (and flushed) in the previous round, if any. */
static void write_pending_flag(dk_store_writer *w) {
    uint8_t flag = 1;
    int64_t c = w->unflagged_chunk;
    write_rows(w, w->chunk_done, H5T_NATIVE_UINT8, c >= 0 ? c : 0, c >= 0 ? 1 : 0, 0, &flag);
    w->unflagged_chunk = -1;
}

/* hpc_plumbing §1.1: a type conversion silently turns a collective write into independent ones; say so once. */
static void check_collective(dk_store_writer *w) {
    H5D_mpio_actual_io_mode_t mode;
    uint32_t local = 0, global = 0;
    if (w->warned_independent || H5Pget_mpio_actual_io_mode(w->dxpl, &mode) < 0) return;
    if (mode != H5D_MPIO_NO_COLLECTIVE) return;
    H5Pget_mpio_no_collective_cause(w->dxpl, &local, &global);
    LOG_WARN_ALL("%s: a layer write fell back to independent I/O (HDF5 cause bits local 0x%x, global 0x%x)",
                 w->partial_path, local, global);
    w->warned_independent = true;
}

int64_t dk_store_write_round(dk_store_writer *w, const dk_store_chunk *mine) {
    const dk_store_layout *L = &w->L;
    int64_t c = mine ? mine->chunk : -1;
    int64_t row0 = 0, rows = 0;
    if (c >= 0) {
        row0 = L->seq_offsets[L->chunk_seq[c]];
        rows = L->seq_offsets[L->chunk_seq[c + 1]] - row0;
    }
    int64_t one = c >= 0 ? 1 : 0, d = L->d_model;
    dk_timer_start(&w->io);
    if (L->store_tokens) write_rows(w, w->tokens, H5T_NATIVE_INT32, row0, rows, 0, c >= 0 ? mine->tokens : NULL);
    for (int i = 0; i < L->n_layers; i++) {
        write_rows(w, w->layer[i], w->bf16, row0, rows, (hsize_t)d, c >= 0 ? mine->rows[i] : NULL);
        check_collective(w);
        write_rows(w, w->chunk_mean[i], H5T_NATIVE_DOUBLE, c, one, (hsize_t)d, c >= 0 ? mine->mean[i] : NULL);
        write_rows(w, w->chunk_m2[i], H5T_NATIVE_DOUBLE, c, one, (hsize_t)d, c >= 0 ? mine->m2[i] : NULL);
    }
    /* A flag is set only for data a previous flush made durable: this round flags the previous round's
     * chunk, then one flush covers this round's data and that flag (one fsync per round, not two). */
    write_pending_flag(w);
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
    w->unflagged_chunk = c;
    dk_timer_stop(&w->io);
    return rows * ((L->store_tokens ? 4 : 0) + 2 * d * L->n_layers) + one * 16 * d * L->n_layers;
}

/* Merges (n_b, mean_b, m2_b) into (n_a, mean_a, m2_a), Chan et al.'s parallel variance update. */
static void merge_stats(int64_t d, double n_a, double *mean_a, double *m2_a, double n_b, const double *mean_b,
                        const double *m2_b) {
    double n = n_a + n_b;
    if (n_b == 0) return;
    for (int64_t j = 0; j < d; j++) {
        double delta = mean_b[j] - mean_a[j];
        mean_a[j] += delta * n_b / n;
        m2_a[j] += m2_b[j] + delta * delta * n_a * n_b / n;
    }
}

static void merge_and_write_stats(dk_store_writer *w, int i) {
    const dk_store_layout *L = &w->L;
    int64_t d = L->d_model, C = L->n_chunks;
    bool r0 = w->rank == 0;
    double *mean = calloc((size_t)d, sizeof(double));   /* (d) */
    double *m2 = calloc((size_t)d, sizeof(double));     /* (d) */
    int64_t count = 0;
    if (r0) {
        double *cm = malloc((size_t)(C * d) * sizeof(double)); /* (C, d) */
        double *cv = malloc((size_t)(C * d) * sizeof(double)); /* (C, d) */
        H5_CHECK(H5Dread(w->chunk_mean[i], H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, cm));
        H5_CHECK(H5Dread(w->chunk_m2[i], H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, cv));
        for (int64_t c = 0; c < C; c++) {
            int64_t n = L->seq_offsets[L->chunk_seq[c + 1]] - L->seq_offsets[L->chunk_seq[c]];
            merge_stats(d, (double)count, mean, m2, (double)n, cm + c * d, cv + c * d);
            count += n;
        }
        free(cm);
        free(cv);
    }
    char name[96];
    hid_t ds;
    snprintf(name, sizeof name, "stats/layer_%lld/mean", (long long)L->layers[i]);
    ds = open_ds(w->file, name);
    write_rows(w, ds, H5T_NATIVE_DOUBLE, 0, r0 ? d : 0, 0, mean);
    H5Dclose(ds);
    snprintf(name, sizeof name, "stats/layer_%lld/m2", (long long)L->layers[i]);
    ds = open_ds(w->file, name);
    write_rows(w, ds, H5T_NATIVE_DOUBLE, 0, r0 ? d : 0, 0, m2);
    H5Dclose(ds);
    snprintf(name, sizeof name, "stats/layer_%lld/count", (long long)L->layers[i]);
    ds = open_ds(w->file, name);
    write_rows(w, ds, H5T_NATIVE_INT64, 0, r0 ? 1 : 0, 0, &count);
    H5Dclose(ds);
    free(mean);
    free(m2);
}

static void close_handles(dk_store_writer *w) {
    if (w->tokens >= 0) H5Dclose(w->tokens);
    H5Dclose(w->chunk_done);
    for (int i = 0; i < w->L.n_layers; i++) {
        H5Dclose(w->layer[i]);
        H5Dclose(w->chunk_mean[i]);
        H5Dclose(w->chunk_m2[i]);
    }
    H5Pclose(w->dxpl);
    H5Tclose(w->bf16);
    STORE_IO(w, H5Fclose(w->file), "closing it");
}

static void free_writer(dk_store_writer *w) {
    free(w->final_path);
    free(w->partial_path);
    free(w);
}

void dk_store_writer_close(dk_store_writer *w) {
    if (!w) return;
    write_pending_flag(w); /* keep the work already durable for a rerun */
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
    close_handles(w);
    free_writer(w);
}

double dk_store_io_seconds(const dk_store_writer *w) { return dk_timer_seconds(&w->io); }

int dk_store_finalize(dk_store_writer *w, dk_err *err) {
    const dk_store_layout *L = &w->L;
    dk_timer_start(&w->io);
    write_pending_flag(w); /* the last round's chunks: their data was flushed by that round */
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
    dk_timer_stop(&w->io);
    uint8_t *done = malloc((size_t)L->n_chunks + 1);
    dk_store_read_done(w, done);
    int64_t missing = 0;
    for (int64_t c = 0; c < L->n_chunks; c++) missing += done[c] ? 0 : 1;
    free(done);
    if (missing) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s: %lld chunks are not written; not marking it complete", w->partial_path,
                   (long long)missing);
        dk_store_writer_close(w);
        return -1;
    }
    dk_timer_start(&w->io);
    for (int i = 0; i < L->n_layers; i++) merge_and_write_stats(w, i);
    STORE_IO(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL), "flushing it");
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    MPI_CHECK(MPI_Bcast(stamp, sizeof stamp, MPI_CHAR, 0, w->comm));
    attr_str(w->file, "completed_utc", stamp, 0);
    attr_str(w->file, "status", "complete", STATUS_LEN);
    close_handles(w);
    MPI_CHECK(MPI_Barrier(w->comm));
    int rc = 0;
    if (w->rank == 0) rc = dk_rename_owned(w->partial_path, w->partial_id, w->final_path, err);
    MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, w->comm));
    dk_timer_stop(&w->io);
    if (rc) dk_err_set(err, DK_EXIT_RUNTIME, "rank 0 could not rename %s to %s", w->partial_path, w->final_path);
    free_writer(w);
    return rc ? -1 : 0;
}

/* ---- probing what is on disk (serial) ---------------------------------------------------------------- */

static int read_status(const char *path, uint64_t *fingerprint, char *status, size_t cap) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = -1;
    if (H5Aexists(f, "plan_fingerprint") > 0 && H5Aexists(f, "status") > 0) {
        hid_t a = H5Aopen(f, "plan_fingerprint", H5P_DEFAULT);
        herr_t r1 = H5Aread(a, H5T_NATIVE_UINT64, fingerprint);
        H5Aclose(a);
        a = H5Aopen(f, "status", H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        size_t n = H5Tget_size(t);
        char *buf = calloc(1, n + 1);
        herr_t r2 = H5Aread(a, t, buf);
        snprintf(status, cap, "%s", buf);
        free(buf);
        H5Tclose(t);
        H5Aclose(a);
        if (r1 >= 0 && r2 >= 0) rc = 0;
    }
    H5Fclose(f);
    return rc;
}

dk_store_state dk_store_probe(const char *final_path, uint64_t fingerprint, uint64_t *found, char *why,
                              size_t why_cap) {
    char status[32] = "";
    uint64_t fp = 0;
    *found = 0;
    why[0] = 0;
    if (access(final_path, F_OK) == 0) {
        if (read_status(final_path, &fp, status, sizeof status) != 0) {
            snprintf(why, why_cap, "%s exists but is not a readable activation store", final_path);
            return DK_STORE_MISMATCH;
        }
        *found = fp;
        if (fp != fingerprint) {
            snprintf(why, why_cap, "%s was made by another plan (fingerprint %016llx, this run %016llx)", final_path,
                     (unsigned long long)fp, (unsigned long long)fingerprint);
            return DK_STORE_MISMATCH;
        }
        if (strcmp(status, "complete") != 0) {
            snprintf(why, why_cap, "%s has status '%s', not 'complete'", final_path, status);
            return DK_STORE_MISMATCH;
        }
        return DK_STORE_COMPLETE;
    }
    char *partial = dk_sprintf("%s.partial", final_path);
    dk_store_state state = DK_STORE_ABSENT;
    if (access(partial, F_OK) == 0) {
        if (read_status(partial, &fp, status, sizeof status) != 0) {
            /* killed before the file's metadata was flushed: nothing of value in it */
            state = DK_STORE_ABSENT;
        } else if (fp != fingerprint) {
            *found = fp;
            snprintf(why, why_cap, "%s was started by another plan (fingerprint %016llx, this run %016llx)", partial,
                     (unsigned long long)fp, (unsigned long long)fingerprint);
            state = DK_STORE_MISMATCH;
        } else {
            *found = fp;
            state = DK_STORE_PARTIAL;
        }
    }
    free(partial);
    return state;
}

int dk_store_remove(const char *final_path, dk_err *err) {
    char *partial = dk_sprintf("%s.partial", final_path);
    int rc = 0;
    if (unlink(final_path) != 0 && errno != ENOENT) rc = dk_err_set(err, DK_EXIT_RUNTIME, "cannot remove %s: %s",
                                                                    final_path, strerror(errno));
    if (unlink(partial) != 0 && errno != ENOENT) rc = dk_err_set(err, DK_EXIT_RUNTIME, "cannot remove %s: %s",
                                                                 partial, strerror(errno));
    free(partial);
    return rc;
}
