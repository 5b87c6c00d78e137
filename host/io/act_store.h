/* act_store.h — the activation store: one HDF5 file per (model, dataset, split) holding the residual-stream
 * activations diff_preprocess cached, written in parallel by all ranks, read by every diffing method.
 *
 * Why it looks like this (hpc_plumbing §0, §1, §6): the plan (token counts of every sequence and chunk) is
 * known before the first forward pass, so every dataset is created once, collectively, at its final size
 * (contiguous, no fill, 1 MiB aligned, HDF5 1.8 format so any h5py reads it). During the run only raw bytes
 * change: each round every rank writes one planned chunk (or nothing) with collective writes whose memory
 * type equals the file type (bf16 is an HDF5 custom float, so h5py reads float32), flushes, then sets the
 * chunk's progress flag. A killed run leaves only unflagged chunks half-written; the rerun recomputes them.
 * The file is written as NAME.h5.partial and renamed to NAME.h5 when every chunk is done and the per-layer
 * statistics are merged; only then is its `status` attribute "complete", and only if NAME.h5.partial is still
 * the file this job created or adopted (io/store_lock.h: the caller holds the store's lock for the whole write).
 * A failed write or flush (disk full, quota, file-size limit) ends the job with "no space left on
 * NAME.h5.partial"-style message on the ranks that saw it. Layout and ownership rule: docs/formats.md.
 *
 * Writer calls are collective over the communicator; the reader is serial (no MPI needed). */
#ifndef DK_ACT_STORE_H
#define DK_ACT_STORE_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

#define DK_STORE_FORMAT_VERSION 1
#define DK_STORE_MAX_LAYERS 64

/* Everything the plan decides about a store: shapes, chunk boundaries and the descriptive attributes. */
typedef struct dk_store_layout {
    int64_t n_tokens, n_seqs, n_chunks, d_model;  /* n_tokens: rows stored (after skip_first) */
    int n_layers;
    int64_t layers[DK_STORE_MAX_LAYERS];  /* absolute block indices, captured after block l */
    const int64_t *seq_offsets;           /* (n_seqs + 1) row of each sequence's first token, then n_tokens */
    const int64_t *chunk_seq;             /* (n_chunks + 1) chunk c holds sequences [chunk_seq[c], chunk_seq[c+1]) */
    uint64_t fingerprint;                 /* plan fingerprint: equal plans, equal files */
    int64_t context_len;
    const char *model_id, *model_snapshot, *adapter_id, *dtype;  /* adapter_id "" for a base model */
    const char *tokenizer_hash, *dataset_hash, *dataset_path, *split;
    const char *config_yaml;              /* resolved configuration */
    const char *compute;                  /* what computed the rows: "cpu-fp32", "cuda-bf16", "cuda-fp32" */
    bool store_tokens;                    /* write the `tokens` dataset (preprocessing.store_tokens) */
    int64_t skip_first;                   /* leading tokens of each sequence not stored
                                           * (ignore_first_n_tokens_per_sample_during_collection) */
} dk_store_layout;

/* What is on disk for a final path (NAME.h5) and its NAME.h5.partial. */
typedef enum {
    DK_STORE_ABSENT,          /* neither file */
    DK_STORE_COMPLETE,        /* NAME.h5, status complete, same fingerprint: reuse */
    DK_STORE_PARTIAL,         /* NAME.h5.partial with the same fingerprint: resume */
    DK_STORE_MISMATCH,        /* a file with another fingerprint, or unreadable: refuse unless overwrite */
} dk_store_state;

/* Serial; looks at final_path and final_path + ".partial". found_fingerprint set when a file was read. */
dk_store_state dk_store_probe(const char *final_path, uint64_t fingerprint, uint64_t *found_fingerprint,
                              char *why, size_t why_cap);
/* Serial: removes both files (overwrite=true). 0 or -1 with err. */
int dk_store_remove(const char *final_path, dk_err *err);

typedef struct dk_store_writer dk_store_writer;

/* Collective. Creates final_path.partial at full size (resume=false), or opens it to continue (resume=true). */
dk_store_writer *dk_store_writer_open(MPI_Comm comm, const char *final_path, const dk_store_layout *layout,
                                      bool resume, dk_err *err);
/* Collective: chunk_done flags (n_chunks) read by rank 0 and broadcast. */
void dk_store_read_done(dk_store_writer *w, uint8_t *done);

/* One chunk's data, or chunk = -1 for a rank with nothing to write this round. */
typedef struct dk_store_chunk {
    int64_t chunk;
    const int32_t *tokens;                    /* (rows) the stored rows' tokens; unused without store_tokens */
    const uint16_t *rows[DK_STORE_MAX_LAYERS];/* per layer: (rows, d) bf16 bits */
    const double *mean[DK_STORE_MAX_LAYERS];  /* per layer: (d) mean over the chunk's rows, fp64 */
    const double *m2[DK_STORE_MAX_LAYERS];    /* per layer: (d) sum of squared deviations from that mean */
} dk_store_chunk;

/* Collective: writes every rank's chunk (one H5Dwrite per dataset, all ranks) and the flags of the chunks of
 * the previous round, then flushes: a flag is only ever set for data an earlier flush made durable. The last
 * round's flags are set by dk_store_finalize. Returns the bytes this rank wrote. */
int64_t dk_store_write_round(dk_store_writer *w, const dk_store_chunk *mine);
/* Collective: every chunk must be done. Merges per-chunk statistics in plan order (Chan et al.), writes
 * mean / m2 / count, sets status "complete", closes and renames NAME.h5.partial -> NAME.h5. 0 or -1 + err. */
int dk_store_finalize(dk_store_writer *w, dk_err *err);
/* Collective: closes without finalizing (error paths that still reach every rank). */
void dk_store_writer_close(dk_store_writer *w);
/* Seconds spent in HDF5 writes and flushes so far. */
double dk_store_io_seconds(const dk_store_writer *w);

/* The HDF5 type of the stored bf16 activations (caller closes): 1 sign, 8 exponent, 7 mantissa bits. */
int64_t dk_store_bf16_type(void);

/* 64-bit FNV-1a, the hash used for fingerprints and file hashes. */
uint64_t dk_fnv1a(uint64_t h, const void *data, size_t n);
#define DK_FNV_OFFSET 1469598103934665603ULL

#endif
