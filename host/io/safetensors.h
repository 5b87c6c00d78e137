/* safetensors.h — read Hugging Face checkpoints (.safetensors files, single or sharded) without copying.
 *
 * Why this exists: every model diffkit runs comes as safetensors, often several GB, sometimes truncated by
 * an interrupted download or written by a tool we have never seen. So the reader
 *   - maps each file read-only (mmap) and hands out pointers into the mapping: no copy until a tensor is
 *     widened to fp32 (dk_st_to_f32), and the OS pages in only what is used;
 *   - validates the whole header strictly before anything is handed out (format: models_formats.md §1):
 *     the 8-byte little-endian header length is <= 100 MB and inside the file, the header is valid UTF-8
 *     JSON (a `{`, then optional trailing spaces), `__metadata__` maps strings to strings, every tensor has
 *     a known dtype, non-negative shape, `prod(shape) * dtype size == END - BEGIN`, its range lies in the
 *     data section, and no two ranges overlap. Gaps between ranges are allowed. Any failure is an error
 *     value naming the file, the tensor and what was expected, never a crash;
 *   - treats a sharded checkpoint (model.safetensors.index.json + shards) as one checkpoint, so callers
 *     look tensors up by name without caring which file holds them.
 * Listing works for every safetensors dtype; only reading values (dk_st_to_f32, dk_st_require) is limited
 * to BF16, F16 and F32, the dtypes the models in scope ship.
 *
 * Typical use:
 *     dk_st_checkpoint *ck = dk_st_open_dir(folder, &err);          // model.safetensors or the index
 *     const dk_st_tensor *t = dk_st_require(ck, "model.norm.weight", 1, (int64_t[]){H}, &err);
 *     dk_st_to_f32(t, norm_weight, H, &err);                         // (H,)
 *     dk_st_close(ck);                                               // pointers into it are now invalid
 */
#ifndef DK_SAFETENSORS_H
#define DK_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

enum { DK_ST_MAX_DIMS = 8 };
/* The Rust reference loader's MAX_HEADER_SIZE. */
#define DK_ST_MAX_HEADER_BYTES 100000000ull

typedef struct dk_st_tensor {
    const char *name;           /* "model.layers.0.self_attn.q_proj.weight" */
    const char *dtype_name;     /* the header's spelling: "BF16", "F8_E4M3", ... */
    dk_dtype dtype;             /* DK_DTYPE_INVALID for safetensors dtypes diffkit has no name for (F8_*, U16, ...) */
    int ndim;                   /* 0 for a scalar */
    int64_t shape[DK_ST_MAX_DIMS];
    int64_t numel;              /* prod(shape); 1 for a scalar */
    const void *data;           /* into the read-only mapping; NOT necessarily aligned to the element size */
    size_t nbytes;              /* END - BEGIN */
    size_t offset;              /* BEGIN: offset of the data from the start of the file's data section */
    const char *file;           /* path of the file holding it (for messages) */
} dk_st_tensor;

typedef struct dk_st_file dk_st_file; /* one mapped .safetensors file (private) */

typedef struct dk_st_checkpoint {
    char *path;                 /* what was opened: a file or a folder */
    char *index_path;           /* model.safetensors.index.json when sharded, else NULL */
    size_t n_files;
    dk_st_file **files;         /* (n_files) */
    size_t n_tensors;
    dk_st_tensor *tensors;      /* (n_tensors), sorted by name (strcmp), names unique */
} dk_st_checkpoint;

/* Opens one .safetensors file. NULL with err set (code 1) when it cannot be read or fails validation. */
dk_st_checkpoint *dk_st_open(const char *path, dk_err *err);
/* Opens the checkpoint in a model folder: model.safetensors.index.json (sharded) when present, else
 * model.safetensors. NULL with err set when neither exists, a shard is missing, or a file is invalid. */
dk_st_checkpoint *dk_st_open_dir(const char *folder, dk_err *err);
/* Parses a safetensors image already in memory (tests, fuzzing). `bytes` must outlive the checkpoint;
 * `name` is used in messages. */
dk_st_checkpoint *dk_st_open_memory(const void *bytes, size_t size, const char *name, dk_err *err);
void dk_st_close(dk_st_checkpoint *ck);

/* Looks a tensor up by exact name; NULL when absent. */
const dk_st_tensor *dk_st_find(const dk_st_checkpoint *ck, const char *name);
/* Like dk_st_find, but a missing tensor is an error (code 1) naming the tensor, the checkpoint and the
 * nearest name present. */
const dk_st_tensor *dk_st_get(const dk_st_checkpoint *ck, const char *name, dk_err *err);
/* dk_st_get + dk_st_check_shape + a dtype diffkit can read (BF16/F16/F32). */
const dk_st_tensor *dk_st_require(const dk_st_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                                  dk_err *err);

/* 0 when t has exactly this shape, else -1 with err set (code 1) naming the tensor, its file, the
 * expected and the found shapes. */
int dk_st_check_shape(const dk_st_tensor *t, int ndim, const int64_t *shape, dk_err *err);
/* 0 when t's dtype is BF16, F16 or F32, else -1 with err set naming the tensor, file and dtype. */
int dk_st_check_readable(const dk_st_tensor *t, dk_err *err);

/* Widens (or copies) the tensor's values into dst, which holds exactly t->numel floats. -1 with err set
 * when the dtype is not BF16/F16/F32. Unaligned data is handled. */
int dk_st_to_f32(const dk_st_tensor *t, float *dst, size_t dst_count, dk_err *err);
/* Same into a new dk_malloc'ed buffer of t->numel floats (the caller frees); NULL with err set. */
float *dk_st_load_f32(const dk_st_tensor *t, dk_err *err);

/* The value of `key` in a file's __metadata__ (for a sharded checkpoint: the first shard that has it),
 * or NULL. */
const char *dk_st_metadata(const dk_st_checkpoint *ck, const char *key);

/* "[2048, 1024]" (or "[]" for a scalar) into buf; returns buf. */
char *dk_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t cap);
/* Bits per element of a safetensors dtype spelling ("BF16" -> 16, "F4" -> 4), 0 when unknown. */
unsigned dk_st_dtype_bits(const char *dtype_name);

#endif
