/* safetensors.c — see safetensors.h. Layout of the code:
 *   1. the dtype table (every spelling the format defines, with its size in bits);
 *   2. header validation over a byte image (parse_image) — the part the fuzz target exercises;
 *   3. mapping files, the sharded index, lookups, shape checks and fp32 widening.
 * Every check names the file and, where there is one, the tensor, because a user facing a corrupt
 * multi-GB download needs to know which file to fetch again.
 */
#include "safetensors.h"

#include "core/strutil.h"
#include "io/file.h"
#include "io/json_value.h"
#include "kernels/cpu/convert.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------------
 * 1. dtypes (models_formats.md §1.2) */

static const struct {
    const char *name;
    unsigned bits;
    dk_dtype dtype;
} st_dtypes[] = {
    {"BOOL", 8, DK_DTYPE_BOOL},        {"U8", 8, DK_DTYPE_U8},
    {"I8", 8, DK_DTYPE_I8},            {"F8_E5M2", 8, DK_DTYPE_INVALID},
    {"F8_E4M3", 8, DK_DTYPE_INVALID},  {"F8_E8M0", 8, DK_DTYPE_INVALID},
    {"F8_E4M3FNUZ", 8, DK_DTYPE_INVALID}, {"F8_E5M2FNUZ", 8, DK_DTYPE_INVALID},
    {"I16", 16, DK_DTYPE_I16},         {"U16", 16, DK_DTYPE_INVALID},
    {"F16", 16, DK_DTYPE_F16},         {"BF16", 16, DK_DTYPE_BF16},
    {"I32", 32, DK_DTYPE_I32},         {"U32", 32, DK_DTYPE_INVALID},
    {"F32", 32, DK_DTYPE_F32},         {"F64", 64, DK_DTYPE_F64},
    {"I64", 64, DK_DTYPE_I64},         {"U64", 64, DK_DTYPE_INVALID},
    {"C64", 64, DK_DTYPE_INVALID},     {"F4", 4, DK_DTYPE_INVALID},
    {"F6_E2M3", 6, DK_DTYPE_INVALID},  {"F6_E3M2", 6, DK_DTYPE_INVALID},
};
enum { ST_DTYPE_COUNT = sizeof st_dtypes / sizeof st_dtypes[0] };

static int find_dtype(const char *name) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return i;
    return -1;
}

unsigned dk_st_dtype_bits(const char *dtype_name) {
    int i = dtype_name ? find_dtype(dtype_name) : -1;
    return i < 0 ? 0 : st_dtypes[i].bits;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. header validation */

struct dk_st_file {
    char *path;
    void *map;            /* mmap base, or NULL when the image belongs to the caller */
    size_t map_size;
    const uint8_t *bytes; /* (size) the whole image */
    size_t size;
    size_t header_len;    /* N */
    const uint8_t *data;  /* bytes + 8 + N: the data section */
    size_t data_size;
    size_t n_tensors;
    dk_st_tensor *tensors; /* (n_tensors) sorted by name */
    char **names;          /* (n_tensors) owned tensor names */
    size_t n_metadata;
    char **metadata;       /* (2 * n_metadata) key, value, key, value, ... */
};

static void free_file(dk_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    dk_free_strings(f->names, f->n_tensors);
    dk_free_strings(f->metadata, 2 * f->n_metadata);
    free(f->tensors);
    free(f->path);
    free(f);
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as Rust's from_utf8 requires. */
static bool valid_utf8(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            *bad_at = i;
            return false;
        }
        if (n - i < len) {
            *bad_at = i;
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                *bad_at = i;
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
        if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad_at = i;
            return false;
        }
        i += len;
    }
    return true;
}

/* A JSON number that is a whole number in [0, 2^53] (exact in a double). */
static bool json_to_count(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || v != (double)(uint64_t)v) return false;
    *out = (uint64_t)v;
    return true;
}

/* Tensor names come from the file: print at most 200 bytes of them in messages. */
#define NAME_FMT "'%.200s'"

static int compare_by_offset(const void *a, const void *b) {
    const dk_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp(((const dk_st_tensor *)a)->name, ((const dk_st_tensor *)b)->name);
}

/* Parses one tensor entry of the header into *t (name already set). */
static int parse_tensor_entry(const dk_st_file *f, const cJSON *entry, dk_st_tensor *t, dk_err *err) {
    const char *path = f->path;
    if (!cJSON_IsObject(entry))
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: header entry " NAME_FMT " is not an object {\"dtype\", \"shape\", \"data_offsets\"}: "
                          "the file is corrupt or not a safetensors file",
                          path, t->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " lacks %s (each tensor needs a string \"dtype\", an array \"shape\" "
                          "and an array \"data_offsets\"): the file is corrupt",
                          path, t->name,
                          !cJSON_IsString(dtype) ? "a string \"dtype\""
                          : !cJSON_IsArray(shape) ? "an array \"shape\""
                                                  : "an array \"data_offsets\"");
    int d = find_dtype(dtype->valuestring);
    if (d < 0)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " has unknown dtype \"%.40s\" (safetensors defines BOOL, U8, I8, "
                          "F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64, F4, "
                          "F6_E2M3, F6_E3M2): the file is corrupt or from a newer format version",
                          path, t->name, dtype->valuestring);
    t->dtype_name = st_dtypes[d].name;
    t->dtype = st_dtypes[d].dtype;

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > DK_ST_MAX_DIMS)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor " NAME_FMT " has %d dimensions; diffkit reads at most %d",
                          path, t->name, ndim, DK_ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    bool numel_overflow = false;
    int i = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, i++) {
        uint64_t v;
        if (!json_to_count(dim, &v) || v > (uint64_t)INT64_MAX)
            return dk_err_set(err, DK_EXIT_RUNTIME,
                              "%s: tensor " NAME_FMT " has shape entry %d that is not a non-negative integer: the "
                              "file is corrupt",
                              path, t->name, i);
        t->shape[i] = (int64_t)v;
        if (v != 0 && numel > UINT64_MAX / v) numel_overflow = true;
        numel *= v;
    }
    for (const cJSON *dim = shape->child; dim; dim = dim->next) /* a zero dim makes any overflow moot */
        if (dim->valuedouble == 0) numel = 0, numel_overflow = false;
    uint64_t bits = st_dtypes[d].bits;
    if (numel_overflow || numel > (uint64_t)INT64_MAX / 64)
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor " NAME_FMT " has a shape whose element count overflows: "
                          "the file is corrupt", path, t->name);
    t->numel = (int64_t)numel;
    if ((numel * bits) % 8 != 0)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " (%s, %" PRIu64 " elements) does not fill a whole number of bytes",
                          path, t->name, t->dtype_name, numel);
    uint64_t expected_bytes = numel * bits / 8;

    uint64_t begin, end;
    if (cJSON_GetArraySize(offsets) != 2 || !json_to_count(offsets->child, &begin) ||
        !json_to_count(offsets->child->next, &end) || end < begin)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " has invalid data_offsets (need [BEGIN, END], whole numbers, "
                          "BEGIN <= END): the file is corrupt",
                          path, t->name);
    char shape_text[256];
    if (end - begin != expected_bytes)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " has shape %s and dtype %s, so it needs %" PRIu64
                          " bytes, but its data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                          " bytes: the file is corrupt",
                          path, t->name, dk_st_format_shape(t->shape, t->ndim, shape_text, sizeof shape_text),
                          t->dtype_name, expected_bytes, begin, end, end - begin);
    if (end > f->data_size)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: tensor " NAME_FMT " has data_offsets [%" PRIu64 ", %" PRIu64 "] but the data section "
                          "holds only %zu bytes (file size %zu): the file is truncated; download it again",
                          path, t->name, begin, end, f->data_size, f->size);
    t->offset = (size_t)begin;
    t->nbytes = (size_t)(end - begin);
    t->data = f->data + begin;
    t->file = f->path;
    return 0;
}

static int parse_metadata(dk_st_file *f, const cJSON *meta, dk_err *err) {
    if (!cJSON_IsObject(meta))
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: \"__metadata__\" must be an object of strings: the file is corrupt",
                          f->path);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    f->metadata = dk_calloc(2 * n + 1, sizeof *f->metadata);
    for (const cJSON *item = meta->child; item; item = item->next) {
        if (!cJSON_IsString(item) || !item->string)
            return dk_err_set(err, DK_EXIT_RUNTIME,
                              "%s: \"__metadata__\" entry " NAME_FMT " is not a string (metadata maps strings to "
                              "strings): the file is corrupt",
                              f->path, item->string ? item->string : "?");
        f->metadata[2 * f->n_metadata] = dk_strdup(item->string);
        f->metadata[2 * f->n_metadata + 1] = dk_strdup(item->valuestring);
        f->n_metadata++;
    }
    return 0;
}

/* Validates the image in f->bytes[0..size) and fills f's tensor list. 0 or -1 with err set. */
static int parse_image(dk_st_file *f, dk_err *err) {
    const char *path = f->path;
    if (f->size < 8)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: the file is %zu bytes, too short for a safetensors file (it starts with an 8-byte "
                          "header length): the file is truncated or empty; download it again",
                          path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->bytes[i]; /* little-endian u64 */
    if (n > DK_ST_MAX_HEADER_BYTES)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: header length %" PRIu64 " is over the 100000000-byte limit of the format: this is "
                          "not a safetensors file, or it is corrupt",
                          path, n);
    if (n > f->size - 8)
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: header length %" PRIu64 " goes past the end of the file (%zu bytes): the file is "
                          "truncated or not a safetensors file; download it again",
                          path, n, f->size);
    if (n < 2 || f->bytes[8] != '{')
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: the header does not start with '{' (a safetensors header is a JSON object): this is "
                          "not a safetensors file, or it is corrupt",
                          path);
    f->header_len = (size_t)n;
    f->data = f->bytes + 8 + n;
    f->data_size = f->size - 8 - (size_t)n;
    const char *header = (const char *)f->bytes + 8;
    size_t bad_at = 0;
    if (!valid_utf8((const uint8_t *)header, (size_t)n, &bad_at))
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: the header is not valid UTF-8 (byte %zu of the header): the file is corrupt", path,
                          bad_at);

    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)n, &parse_end, 0);
    if (!root) {
        size_t at = parse_end && parse_end >= header && parse_end <= header + n ? (size_t)(parse_end - header) : 0;
        return dk_err_set(err, DK_EXIT_RUNTIME,
                          "%s: the header is not valid JSON (parse error near byte %zu of the %" PRIu64
                          "-byte header): the file is corrupt; download it again",
                          path, at, n);
    }
    /* The writer pads the header with spaces; anything else after the object is an error. */
    for (const char *p = parse_end; p && p < header + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return dk_err_set(err, DK_EXIT_RUNTIME,
                              "%s: unexpected bytes after the header's JSON object (byte %zu of the header; only "
                              "space padding may follow): the file is corrupt",
                              path, (size_t)(p - header));
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s: the header is not a JSON object: the file is corrupt", path);
    }

    size_t cap = (size_t)cJSON_GetArraySize(root);
    f->tensors = dk_calloc(cap + 1, sizeof *f->tensors);
    f->names = dk_calloc(cap + 1, sizeof *f->names);
    int rc = 0;
    bool seen_metadata = false;
    for (const cJSON *item = root->child; item && rc == 0; item = item->next) {
        const char *key = item->string ? item->string : "";
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_metadata) {
                rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s: \"__metadata__\" appears twice in the header: the file "
                                "is corrupt", path);
                break;
            }
            seen_metadata = true;
            rc = parse_metadata(f, item, err);
            continue;
        }
        dk_st_tensor *t = &f->tensors[f->n_tensors];
        f->names[f->n_tensors] = dk_strdup(key);
        t->name = f->names[f->n_tensors];
        f->n_tensors++;
        rc = parse_tensor_entry(f, item, t, err);
    }
    cJSON_Delete(root);
    if (rc != 0) return -1;

    /* Names must be unique (JSON allows duplicate keys; the format does not). */
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, compare_by_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return dk_err_set(err, DK_EXIT_RUNTIME, "%s: tensor " NAME_FMT " appears twice in the header: the file "
                              "is corrupt", path, f->tensors[i].name);

    /* No two data ranges may overlap: sort a copy by offset and compare neighbours. */
    if (f->n_tensors > 1) {
        dk_st_tensor *by_offset = dk_malloc(f->n_tensors * sizeof *by_offset);
        memcpy(by_offset, f->tensors, f->n_tensors * sizeof *by_offset);
        qsort(by_offset, f->n_tensors, sizeof *by_offset, compare_by_offset);
        for (size_t i = 1; i < f->n_tensors && rc == 0; i++) {
            const dk_st_tensor *a = &by_offset[i - 1], *b = &by_offset[i];
            if (a->offset + a->nbytes > b->offset)
                rc = dk_err_set(err, DK_EXIT_RUNTIME,
                                "%s: the data of tensors " NAME_FMT " [%zu, %zu) and " NAME_FMT " [%zu, %zu) overlap: "
                                "the file is corrupt",
                                path, a->name, a->offset, a->offset + a->nbytes, b->name, b->offset,
                                b->offset + b->nbytes);
        }
        free(by_offset);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * 3. files, checkpoints, lookups */

static dk_st_file *map_file(const char *path, dk_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dk_err_set(err, DK_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s is not a regular file (a .safetensors file was expected)", path);
        close(fd);
        return NULL;
    }
    dk_st_file *f = dk_calloc(1, sizeof *f);
    f->path = dk_strdup(path);
    f->size = (size_t)st.st_size;
    if (f->size >= 8) { /* mmap of 0 bytes fails; parse_image reports short files */
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            dk_err_set(err, DK_EXIT_RUNTIME, "cannot map %s (%zu bytes) into memory: %s", path, f->size,
                       strerror(errno));
            close(fd);
            free_file(f);
            return NULL;
        }
        f->map = map;
        f->map_size = f->size;
        f->bytes = map;
    } else {
        static const uint8_t empty[8];
        f->bytes = empty;
    }
    close(fd);
    if (parse_image(f, err) != 0) {
        free_file(f);
        return NULL;
    }
    return f;
}

static dk_st_checkpoint *checkpoint_of_files(const char *path, const char *index_path, dk_st_file **files,
                                             size_t n_files) {
    dk_st_checkpoint *ck = dk_calloc(1, sizeof *ck);
    ck->path = dk_strdup(path);
    ck->index_path = index_path ? dk_strdup(index_path) : NULL;
    ck->files = files;
    ck->n_files = n_files;
    return ck;
}

/* A single file: the checkpoint's tensors are the file's (already sorted and unique). */
static dk_st_checkpoint *checkpoint_of_one(dk_st_file *f) {
    dk_st_file **files = dk_malloc(sizeof *files);
    files[0] = f;
    dk_st_checkpoint *ck = checkpoint_of_files(f->path, NULL, files, 1);
    ck->n_tensors = f->n_tensors;
    ck->tensors = dk_malloc((f->n_tensors + 1) * sizeof *ck->tensors);
    if (f->n_tensors) memcpy(ck->tensors, f->tensors, f->n_tensors * sizeof *ck->tensors);
    return ck;
}

dk_st_checkpoint *dk_st_open(const char *path, dk_err *err) {
    dk_st_file *f = map_file(path, err);
    return f ? checkpoint_of_one(f) : NULL;
}

dk_st_checkpoint *dk_st_open_memory(const void *bytes, size_t size, const char *name, dk_err *err) {
    static const uint8_t empty[8];
    dk_st_file *f = dk_calloc(1, sizeof *f);
    f->path = dk_strdup(name ? name : "<memory>");
    f->bytes = bytes ? bytes : empty;
    f->size = bytes ? size : 0;
    if (parse_image(f, err) != 0) {
        free_file(f);
        return NULL;
    }
    return checkpoint_of_one(f);
}

void dk_st_close(dk_st_checkpoint *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n_files; i++) free_file(ck->files[i]);
    free(ck->files);
    free(ck->tensors);
    free(ck->index_path);
    free(ck->path);
    free(ck);
}

static const dk_st_tensor *find_in(const dk_st_tensor *tensors, size_t n, const char *name) {
    dk_st_tensor key = {.name = name};
    return bsearch(&key, tensors, n, sizeof *tensors, compare_by_name);
}

const dk_st_tensor *dk_st_find(const dk_st_checkpoint *ck, const char *name) {
    return find_in(ck->tensors, ck->n_tensors, name);
}

/* Nearest tensor name (for "did you mean"), or NULL. */
static const char *nearest_name(const dk_st_tensor *tensors, size_t n, const char *name) {
    if (n == 0 || n > 100000) return NULL;
    const char **names = dk_malloc(n * sizeof *names);
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    int best = dk_nearest_string(name, (const char *const *)names, n);
    const char *out = best >= 0 ? names[best] : NULL;
    free(names);
    return out;
}

const dk_st_tensor *dk_st_get(const dk_st_checkpoint *ck, const char *name, dk_err *err) {
    const dk_st_tensor *t = dk_st_find(ck, name);
    if (t) return t;
    const char *near = nearest_name(ck->tensors, ck->n_tensors, name);
    char hint[320] = "";
    if (near) snprintf(hint, sizeof hint, "; did you mean '%.250s'?", near);
    dk_err_set(err, DK_EXIT_RUNTIME,
               "tensor '%s' is not in the checkpoint %s (%zu tensors in %zu file%s)%s: the checkpoint does not match "
               "its config.json, or it belongs to another architecture",
               name, ck->index_path ? ck->index_path : ck->path, ck->n_tensors, ck->n_files,
               ck->n_files == 1 ? "" : "s", hint);
    return NULL;
}

char *dk_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    if (cap == 0) return buf;
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

int dk_st_check_shape(const dk_st_tensor *t, int ndim, const int64_t *shape, dk_err *err) {
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return 0;
    char found[256], expected[256];
    return dk_err_set(err, DK_EXIT_RUNTIME,
                      "tensor '%s' in %s has shape %s, expected %s: the checkpoint does not match its config.json "
                      "(or the wrong config.json was used)",
                      t->name, t->file, dk_st_format_shape(t->shape, t->ndim, found, sizeof found),
                      dk_st_format_shape(shape, ndim, expected, sizeof expected));
}

int dk_st_check_readable(const dk_st_tensor *t, dk_err *err) {
    if (t->dtype == DK_DTYPE_BF16 || t->dtype == DK_DTYPE_F16 || t->dtype == DK_DTYPE_F32) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME,
                      "tensor '%s' in %s is stored as %s; diffkit reads weights stored as BF16, F16 or F32: use a "
                      "bf16/f16/f32 copy of the model (quantized checkpoints are not supported)",
                      t->name, t->file, t->dtype_name);
}

const dk_st_tensor *dk_st_require(const dk_st_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                                  dk_err *err) {
    const dk_st_tensor *t = dk_st_get(ck, name, err);
    if (!t || dk_st_check_shape(t, ndim, shape, err) != 0 || dk_st_check_readable(t, err) != 0) return NULL;
    return t;
}

int dk_st_to_f32(const dk_st_tensor *t, float *dst, size_t dst_count, dk_err *err) {
    if (dk_st_check_readable(t, err) != 0) return -1;
    CHECK(dst_count == (size_t)t->numel, "dk_st_to_f32: tensor '%s' has %" PRId64 " elements, the buffer %zu", t->name,
          t->numel, dst_count);
    if (t->numel == 0) return 0;
    if (t->dtype == DK_DTYPE_F32) {
        memcpy(dst, t->data, t->nbytes);
        return 0;
    }
    /* 16-bit: the mapping gives no alignment guarantee, so widen in aligned chunks when needed. */
    void (*widen)(float *, const uint16_t *, size_t) =
        t->dtype == DK_DTYPE_BF16 ? dk_cpu_bf16_to_f32 : dk_cpu_f16_to_f32;
    size_t n = (size_t)t->numel;
    if (((uintptr_t)t->data % sizeof(uint16_t)) == 0) {
        widen(dst, (const uint16_t *)t->data, n);
        return 0;
    }
    enum { CHUNK = 4096 };
    uint16_t tmp[CHUNK];
    const uint8_t *src = t->data;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        memcpy(tmp, src + 2 * i, 2 * m);
        widen(dst + i, tmp, m);
    }
    return 0;
}

float *dk_st_load_f32(const dk_st_tensor *t, dk_err *err) {
    if (dk_st_check_readable(t, err) != 0) return NULL;
    float *out = dk_malloc(((size_t)t->numel + 1) * sizeof *out);
    if (dk_st_to_f32(t, out, (size_t)t->numel, err) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

const char *dk_st_metadata(const dk_st_checkpoint *ck, const char *key) {
    for (size_t i = 0; i < ck->n_files; i++) {
        const dk_st_file *f = ck->files[i];
        for (size_t j = 0; j < f->n_metadata; j++)
            if (strcmp(f->metadata[2 * j], key) == 0) return f->metadata[2 * j + 1];
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * Sharded checkpoints (models_formats.md §1.3) */

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static dk_st_checkpoint *open_index(const char *folder, const char *index_path, dk_err *err) {
    size_t text_len = 0;
    char *text = dk_read_file(index_path, &text_len, err);
    if (!text) return NULL;
    cJSON *root = dk_json_parse_document(text, text_len, index_path, DK_EXIT_RUNTIME, "the download is incomplete "
                                         "or corrupt; download it again", err);
    free(text);
    if (!root) return NULL;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map) || !map->child) {
        dk_err_set(err, DK_EXIT_RUNTIME, "%s has no \"weight_map\" object (tensor name -> shard file): it is not a "
                   "safetensors index, or it is corrupt", index_path);
        cJSON_Delete(root);
        return NULL;
    }
    /* Distinct shard names, sorted. */
    size_t n_entries = (size_t)cJSON_GetArraySize(map);
    char **shard_names = dk_calloc(n_entries, sizeof *shard_names);
    size_t n_names = 0;
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0') {
            dk_err_set(err, DK_EXIT_RUNTIME, "%s: weight_map entry '%.200s' is not a file name: the index is corrupt",
                       index_path, e->string ? e->string : "?");
            dk_free_strings(shard_names, n_names);
            cJSON_Delete(root);
            return NULL;
        }
        shard_names[n_names++] = dk_strdup(e->valuestring);
    }
    qsort(shard_names, n_names, sizeof *shard_names, compare_strings);
    size_t n_unique = 0;
    for (size_t i = 0; i < n_names; i++) {
        if (n_unique > 0 && strcmp(shard_names[n_unique - 1], shard_names[i]) == 0) {
            free(shard_names[i]);
            continue;
        }
        shard_names[n_unique++] = shard_names[i];
    }

    /* Open every shard. */
    dk_st_file **files = dk_calloc(n_unique, sizeof *files);
    int rc = 0;
    for (size_t i = 0; i < n_unique && rc == 0; i++) {
        char *shard_path = dk_path_join(folder, shard_names[i]);
        if (!dk_is_file(shard_path)) {
            const char *example = "";
            for (const cJSON *e = map->child; e; e = e->next)
                if (strcmp(e->valuestring, shard_names[i]) == 0) {
                    example = e->string;
                    break;
                }
            rc = dk_err_set(err, DK_EXIT_RUNTIME,
                            "shard %s is missing: %s lists it for tensor '%.200s' (and maybe others). The download "
                            "is incomplete: download the model again (huggingface-cli download REPO)",
                            shard_path, index_path, example);
        } else {
            files[i] = map_file(shard_path, err);
            if (!files[i]) rc = -1;
        }
        free(shard_path);
    }

    /* The checkpoint's tensors are exactly the weight_map's, each taken from the shard it names. */
    dk_st_checkpoint *ck = checkpoint_of_files(folder, index_path, files, n_unique);
    ck->tensors = dk_calloc(n_entries + 1, sizeof *ck->tensors);
    for (const cJSON *e = map->child; e && rc == 0; e = e->next) {
        char *const *slot = bsearch(&e->valuestring, shard_names, n_unique, sizeof *shard_names, compare_strings);
        CHECK(slot != NULL, "a shard name vanished from the sorted list");
        const dk_st_file *f = files[slot - shard_names];
        const dk_st_tensor *t = find_in(f->tensors, f->n_tensors, e->string);
        if (!t) {
            rc = dk_err_set(err, DK_EXIT_RUNTIME,
                            "%s says tensor '%.200s' is in %s, but that file does not contain it: the index and the "
                            "shards do not belong together; download the model again",
                            index_path, e->string, f->path);
            break;
        }
        ck->tensors[ck->n_tensors++] = *t;
    }
    dk_free_strings(shard_names, n_unique);
    cJSON_Delete(root);
    if (rc == 0) {
        qsort(ck->tensors, ck->n_tensors, sizeof *ck->tensors, compare_by_name);
        for (size_t i = 1; i < ck->n_tensors && rc == 0; i++)
            if (strcmp(ck->tensors[i - 1].name, ck->tensors[i].name) == 0)
                rc = dk_err_set(err, DK_EXIT_RUNTIME, "%s lists tensor '%.200s' twice: the index is corrupt",
                                index_path, ck->tensors[i].name);
    }
    if (rc != 0) {
        dk_st_close(ck);
        return NULL;
    }
    return ck;
}

dk_st_checkpoint *dk_st_open_dir(const char *folder, dk_err *err) {
    char *index_path = dk_path_join(folder, "model.safetensors.index.json");
    char *single_path = dk_path_join(folder, "model.safetensors");
    dk_st_checkpoint *ck = NULL;
    if (dk_is_file(index_path)) {
        ck = open_index(folder, index_path, err);
    } else if (dk_is_file(single_path)) {
        ck = dk_st_open(single_path, err);
    } else {
        size_t n = 0;
        char **found = dk_list_dir(folder, ".safetensors", false, &n);
        dk_strbuf list = {0};
        for (size_t i = 0; i < n && i < 5; i++) dk_strbuf_printf(&list, "%s%s", i ? ", " : "", found[i]);
        if (n > 5) dk_strbuf_printf(&list, ", ... (%zu files)", n);
        dk_err_set(err, DK_EXIT_RUNTIME,
                   "no checkpoint in %s: looked for model.safetensors.index.json and model.safetensors%s%s%s. "
                   "Download the model's safetensors files (diffkit does not read pytorch_model.bin)",
                   folder, n ? "; the folder has " : "", n ? list.data : "", n ? " (open one with its path)" : "");
        dk_strbuf_free(&list);
        dk_free_strings(found, n);
    }
    free(index_path);
    free(single_path);
    return ck;
}
