/* bench_store_write.c — HDF5 write throughput of the activation store vs a plain sequential write of the
 * same bytes to the same folder (a benchmark, not a test; results in docs/perf.md, "Preprocessing").
 *
 *     mpiexec -n R bench_store_write DIR ROWS D CHUNK_ROWS
 *
 * Writes a store of ROWS x D bf16 rows (one layer) in chunks of CHUNK_ROWS rows through the real writer
 * (collective rounds, flush + flag per round, finalize); rank 0 writes the same number of bytes with write(2)
 * in CHUNK_ROWS x D x 2 byte blocks before and after it. Each is timed to the end of an fsync and starts after
 * an untimed sync(), so no measurement pays for the previous one's dirty pages. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timer.h"
#include "dist/dist.h"
#include "dist/shard_plan.h"
#include "io/act_store.h"

/* rank 0: the same bytes with write(2), one block per chunk, then fsync; seconds */
static double plain_write(const char *dir, const int64_t *chunk_tokens, int64_t C, int64_t D, const uint16_t *rows) {
    char *plain = dk_sprintf("%s/bench_plain.bin", dir);
    sync(); /* start with no dirty pages from the previous measurement (untimed) */
    double t1 = dk_time_now();
    int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int64_t c = 0; c < C; c++) {
        size_t n = (size_t)(chunk_tokens[c] * D * 2);
        if (write(fd, rows, n) != (ssize_t)n) perror("write");
    }
    fsync(fd);
    close(fd);
    double t = dk_time_now() - t1;
    unlink(plain);
    free(plain);
    return t;
}

int main(int argc, char **argv) {
    dk_dist d;
    dk_dist_init(&argc, &argv, &d);
    if (argc != 5) {
        if (d.rank == 0) fprintf(stderr, "usage: bench_store_write DIR ROWS D CHUNK_ROWS\n");
        dk_dist_finalize(&d);
        return 2;
    }
    const char *dir = argv[1];
    int64_t N = atoll(argv[2]), D = atoll(argv[3]), R = atoll(argv[4]);
    int64_t C = (N + R - 1) / R;
    /* one sequence per chunk, chunk = one "batch" */
    int64_t *offsets = malloc((size_t)(C + 1) * sizeof(int64_t)), *chunk_seq = malloc((size_t)(C + 1) * sizeof(int64_t));
    int64_t *chunk_tokens = malloc((size_t)C * sizeof(int64_t));
    for (int64_t c = 0; c <= C; c++) {
        offsets[c] = c * R < N ? c * R : N;
        chunk_seq[c] = c;
    }
    for (int64_t c = 0; c < C; c++) chunk_tokens[c] = offsets[c + 1] - offsets[c];
    dk_store_layout L = {.n_tokens = N, .n_seqs = C, .n_chunks = C, .d_model = D, .n_layers = 1, .layers = {0},
                         .seq_offsets = offsets, .chunk_seq = chunk_seq, .fingerprint = 1, .context_len = R,
                         .model_id = "bench", .model_snapshot = "local", .adapter_id = "", .dtype = "bfloat16",
                         .tokenizer_hash = "", .dataset_hash = "", .dataset_path = "", .split = "train",
                         .config_yaml = ""};
    char *path = dk_sprintf("%s/bench_store.h5", dir);
    if (d.rank == 0) dk_store_remove(path, NULL);
    uint16_t *rows = malloc((size_t)(R * D) * 2);  /* (R, D) bf16 */
    int32_t *tokens = calloc((size_t)R, 4);
    double *stats = calloc((size_t)D, 8);
    for (int64_t i = 0; i < R * D; i++) rows[i] = (uint16_t)(0x3f80 + (i % 97));
    uint8_t *pending = malloc((size_t)C);
    memset(pending, 1, (size_t)C);
    int64_t *mine = malloc((size_t)C * sizeof(int64_t));
    int64_t n_mine = dk_shard_assign(chunk_tokens, pending, C, d.rank, d.nranks, mine);
    int64_t rounds = dk_dist_max_i64(&d, n_mine);
    dk_err err = {0};
    double t_before = d.rank == 0 ? plain_write(dir, chunk_tokens, C, D, rows) : 0;
    if (d.rank == 0) sync(); /* untimed: no dirty pages left from the plain write */
    MPI_Barrier(d.comm);
    double t0 = dk_time_now();
    dk_store_writer *w = dk_store_writer_open(d.comm, path, &L, false, &err);
    if (!w) dk_dist_exit(&d, &err);
    for (int64_t r = 0; r < rounds; r++) {
        dk_store_chunk ch = {.chunk = r < n_mine ? mine[r] : -1, .tokens = tokens, .rows = {rows}, .mean = {stats},
                             .m2 = {stats}};
        dk_store_write_round(w, ch.chunk >= 0 ? &ch : NULL);
    }
    if (dk_store_finalize(w, &err) != 0) dk_dist_exit(&d, &err);
    if (d.rank == 0) {
        int fd = open(path, O_RDONLY);
        fsync(fd);
        close(fd);
    }
    MPI_Barrier(d.comm);
    double t_h5 = dk_time_now() - t0;
    double bytes = (double)N * (double)D * 2.0;
    if (d.rank == 0) {
        double t_after = plain_write(dir, chunk_tokens, C, D, rows);
        double t_plain = 0.5 * (t_before + t_after);
        printf("rows %lld x %lld bf16 (%.1f MiB), chunks of %lld rows, %d rank(s)\n", (long long)N, (long long)D,
               bytes / 1048576.0, (long long)R, d.nranks);
        printf("hdf5 store: %.3f s, %.3f GB/s (create + writes + flushes + flags + finalize + fsync)\n", t_h5,
               bytes / t_h5 / 1e9);
        printf("plain write: %.3f s before, %.3f s after: mean %.3f GB/s\n", t_before, t_after, bytes / t_plain / 1e9);
        printf("ratio hdf5/plain throughput: %.2f\n", t_plain / t_h5);
    }
    MPI_Barrier(d.comm);
    if (d.rank == 0) dk_store_remove(path, NULL);
    dk_dist_finalize(&d);
    return 0;
}
