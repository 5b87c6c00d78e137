/* test_safetensors.c — the safetensors reader against files written by the Python `safetensors` package
 * and huggingface_hub (tools/make_engine_fixtures.py), with the values torch computed for them; then every
 * kind of broken file, built here from the good fixture or from a hand-written header, each of which must
 * give an error naming the file and the tensor (and never crash: run this under ASan too). */
#include "engine_test.h"

#include "core/strutil.h"
#include "io/file.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------------------------------
 * Good files: compare with expected.txt / expected_f32.bin */

/* Checks every tensor listed in <folder>/expected.txt. Returns the number of lines read. */
static size_t check_against_expected(const dk_st_checkpoint *ck, const char *folder) {
    char *txt_path = dk_sprintf("%s/expected.txt", folder), *bin_path = dk_sprintf("%s/expected_f32.bin", folder);
    size_t txt_size, bin_size;
    char *txt = (char *)engine_read_all(txt_path, &txt_size);
    float *expected = (float *)engine_read_all(bin_path, &bin_size); /* malloc'ed, so aligned */
    size_t n_expected = bin_size / sizeof(float), n_tensors = 0;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], dtype[32];
        int consumed = 0;
        if (strncmp(line, "@meta ", 6) == 0) {
            char key[128], value[256];
            EXPECT(sscanf(line + 6, "%127s %255s", key, value) == 2, "bad line %s", line);
            const char *got = dk_st_metadata(ck, key);
            EXPECT(got && strcmp(got, value) == 0, "metadata %s: got %s, want %s", key, got ? got : "(none)", value);
            continue;
        }
        int ndim;
        EXPECT(sscanf(line, "%255s %31s %d%n", name, dtype, &ndim, &consumed) == 3, "bad line %s", line);
        n_tensors++;
        int64_t shape[DK_ST_MAX_DIMS] = {0};
        const char *p = line + consumed;
        for (int i = 0; i < ndim; i++) {
            int c = 0;
            long long v;
            sscanf(p, "%lld%n", &v, &c);
            shape[i] = v;
            p += c;
        }
        char off_text[32];
        sscanf(p, "%31s", off_text);

        const dk_st_tensor *t = dk_st_find(ck, name);
        EXPECT(t != NULL, "tensor %s not found", name);
        if (!t) continue;
        EXPECT(strcmp(t->dtype_name, dtype) == 0, "%s: dtype %s, want %s", name, t->dtype_name, dtype);
        dk_err err = {0};
        EXPECT(dk_st_check_shape(t, ndim, shape, &err) == 0, "%s: %s", name, err.msg);
        int64_t numel = 1;
        for (int i = 0; i < ndim; i++) numel *= shape[i];
        EXPECT(t->numel == numel, "%s: numel %lld, want %lld", name, (long long)t->numel, (long long)numel);
        EXPECT(t->nbytes == (size_t)numel * dk_st_dtype_bits(dtype) / 8, "%s: nbytes %zu", name, t->nbytes);

        if (strcmp(off_text, "-") == 0) { /* not readable as weights: a clear error naming tensor and dtype */
            float dummy[64];
            dk_err_clear(&err);
            EXPECT(dk_st_to_f32(t, dummy, (size_t)numel, &err) == -1, "%s: widened a %s tensor", name, dtype);
            EXPECT_ERR_HAS(&err, name, dtype, "BF16, F16 or F32", "model.safetensors");
            dk_err_clear(&err);
            EXPECT(dk_st_require(ck, name, ndim, shape, &err) == NULL, "%s: required a %s tensor", name, dtype);
            EXPECT_ERR_HAS(&err, name, dtype);
            continue;
        }
        size_t off = (size_t)strtoull(off_text, NULL, 10);
        EXPECT(off + (size_t)numel <= n_expected, "%s: expected_f32.bin too short", name);
        dk_err_clear(&err);
        EXPECT(dk_st_require(ck, name, ndim, shape, &err) == t, "%s: %s", name, err.msg);
        float *got = dk_st_load_f32(t, &err);
        EXPECT(got != NULL, "%s: %s", name, err.msg);
        if (got && off + (size_t)numel <= n_expected) {
            size_t bad = 0;
            for (int64_t i = 0; i < numel; i++) /* bit-exact: widening is exact, torch's .float() too */
                if (memcmp(&got[i], &expected[off + (size_t)i], sizeof(float)) != 0 && bad++ < 3)
                    fprintf(stderr, "  %s[%lld] = %.9g, torch says %.9g\n", name, (long long)i, got[i],
                            expected[off + (size_t)i]);
            EXPECT(bad == 0, "%s: %zu of %lld values differ from torch", name, bad, (long long)numel);
        }
        free(got);
    }
    free(txt);
    free(expected);
    free(txt_path);
    free(bin_path);
    return n_tensors;
}

static void test_single_file(void) {
    char *folder = engine_fixture("safetensors/single");
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open_dir(folder, &err);
    EXPECT(ck != NULL, "open %s: %s", folder, err.msg);
    if (ck) {
        EXPECT(ck->n_files == 1 && ck->index_path == NULL, "single file expected");
        size_t n = check_against_expected(ck, folder);
        EXPECT(n == ck->n_tensors, "expected.txt lists %zu tensors, the file %zu", n, ck->n_tensors);
        for (size_t i = 1; i < ck->n_tensors; i++)
            EXPECT(strcmp(ck->tensors[i - 1].name, ck->tensors[i].name) < 0, "tensors not sorted by name");
        const dk_st_tensor *f8 = dk_st_find(ck, "f8.weights");
        EXPECT(f8 && f8->dtype == DK_DTYPE_INVALID, "F8_E4M3 has no dk_dtype");
        const dk_st_tensor *ids = dk_st_find(ck, "i64.ids");
        EXPECT(ids && ids->dtype == DK_DTYPE_I64, "I64 maps to DK_DTYPE_I64");
        if (ids) { /* listing works and the raw bytes are there: torch wrote [1, -2, 3, 2^40] */
            int64_t v[4];
            memcpy(v, ids->data, sizeof v);
            EXPECT(v[0] == 1 && v[1] == -2 && v[2] == 3 && v[3] == ((int64_t)1 << 40), "i64 values");
        }
        EXPECT(dk_st_find(ck, "nope") == NULL, "found a tensor that is not there");
    }
    dk_st_close(ck);

    /* dk_st_open on the file itself gives the same checkpoint. */
    char *path = dk_sprintf("%s/model.safetensors", folder);
    dk_err_clear(&err);
    ck = dk_st_open(path, &err);
    EXPECT(ck != NULL && ck->n_tensors == 10, "dk_st_open: %s", err.msg);
    dk_st_close(ck);
    free(path);
    free(folder);
}

static void test_sharded(void) {
    char *folder = engine_fixture("safetensors/sharded");
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open_dir(folder, &err);
    EXPECT(ck != NULL, "open %s: %s", folder, err.msg);
    if (ck) {
        EXPECT(ck->n_files == 3, "3 shards expected, got %zu", ck->n_files);
        EXPECT(ck->index_path && dk_str_ends_with(ck->index_path, "model.safetensors.index.json"), "index path");
        size_t n = check_against_expected(ck, folder);
        EXPECT(n == 7 && ck->n_tensors == 7, "7 tensors expected, got %zu / %zu", n, ck->n_tensors);
        /* Each tensor comes from the shard the index names (huggingface_hub put the embedding first). */
        const dk_st_tensor *emb = dk_st_find(ck, "model.embed_tokens.weight");
        const dk_st_tensor *head = dk_st_find(ck, "lm_head.weight");
        EXPECT(emb && dk_str_ends_with(emb->file, "model-00001-of-00003.safetensors"), "embedding shard");
        EXPECT(head && dk_str_ends_with(head->file, "model-00003-of-00003.safetensors"), "lm_head shard");
        EXPECT(strcmp(dk_st_metadata(ck, "format") ? dk_st_metadata(ck, "format") : "", "pt") == 0, "format pt");

        /* Missing tensor: names the tensor and the index, and suggests the nearest name. */
        dk_err_clear(&err);
        EXPECT(dk_st_get(ck, "model.layers.0.mlp.gate_proj.weigth", &err) == NULL, "found a misspelt tensor");
        EXPECT_ERR_HAS(&err, "model.layers.0.mlp.gate_proj.weigth", "model.safetensors.index.json",
                       "did you mean 'model.layers.0.mlp.gate_proj.weight'");
        /* Shape mismatch: names the tensor, its shard, both shapes. */
        dk_err_clear(&err);
        EXPECT(dk_st_require(ck, "model.embed_tokens.weight", 2, (int64_t[]){8, 16}, &err) == NULL, "bad shape ok");
        EXPECT_ERR_HAS(&err, "model.embed_tokens.weight", "model-00001-of-00003.safetensors", "has shape [16, 8]",
                       "expected [8, 16]");
        dk_err_clear(&err);
        EXPECT(dk_st_require(ck, "model.norm.weight", 2, (int64_t[]){8, 1}, &err) == NULL, "bad ndim ok");
        EXPECT_ERR_HAS(&err, "has shape [8]", "expected [8, 1]");
    }
    dk_st_close(ck);
    free(folder);
}

/* ---------------------------------------------------------------------------------------------------
 * Hand-built images */

/* 8-byte length + header + `data_size` bytes (value i & 0xff), at `misalign` bytes past an aligned
 * address. *base receives the malloc'ed block to free. */
static unsigned char *make_image(const char *header, size_t data_size, size_t misalign, size_t *size, void **base) {
    size_t n = strlen(header);
    *size = 8 + n + data_size;
    unsigned char *block = dk_malloc(*size + misalign + 8);
    unsigned char *img = block + misalign;
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(img + 8, header, n);
    for (size_t i = 0; i < data_size; i++) img[8 + n + i] = (unsigned char)i;
    *base = block;
    return img;
}

static void test_unaligned_and_special(void) {
    /* The header is 69 bytes, so the data section starts at an odd offset: the reader must not cast it to
     * uint16_t*. BF16 bit patterns: 0x3FC0 = 1.5, 0xC000 = -2.0, 0x7F80 = +inf; F16: 0x3E00 = 1.5,
     * 0x0001 = 2^-24 (smallest subnormal), 0xFC00 = -inf. */
    const char *header = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                         "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[6,12]}}";
    EXPECT(strlen(header) % 2 == 1, "header length must be odd for this test (%zu)", strlen(header));
    size_t size;
    void *base;
    unsigned char *img = make_image(header, 12, 1, &size, &base);
    const uint8_t values[12] = {0xC0, 0x3F, 0x00, 0xC0, 0x80, 0x7F, 0x00, 0x3E, 0x01, 0x00, 0x00, 0xFC};
    memcpy(img + 8 + strlen(header), values, sizeof values);
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open_memory(img, size, "unaligned.safetensors", &err);
    EXPECT(ck != NULL, "%s", err.msg);
    if (ck) {
        float a[3], b[3];
        EXPECT(dk_st_to_f32(dk_st_find(ck, "a"), a, 3, &err) == 0, "%s", err.msg);
        EXPECT(dk_st_to_f32(dk_st_find(ck, "b"), b, 3, &err) == 0, "%s", err.msg);
        EXPECT(a[0] == 1.5f && a[1] == -2.0f && isinf(a[2]) && a[2] > 0, "bf16 %g %g %g", a[0], a[1], a[2]);
        EXPECT(b[0] == 1.5f && b[1] == ldexpf(1.0f, -24) && isinf(b[2]) && b[2] < 0, "f16 %g %g %g", b[0], b[1],
               b[2]);
    }
    dk_st_close(ck);
    free(base);

    /* Padding with spaces after the object is allowed; gaps between tensors too; zero-size tensors may sit
     * anywhere; unknown keys inside an entry are ignored. */
    header = "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"gap\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12],\"extra\":1},"
             "\"z\":{\"dtype\":\"I8\",\"shape\":[0,7],\"data_offsets\":[4,4]},"
             "\"f4\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[12,15]}}     ";
    img = make_image(header, 16, 0, &size, &base);
    dk_err_clear(&err);
    ck = dk_st_open_memory(img, size, "padded.safetensors", &err);
    EXPECT(ck != NULL && ck->n_tensors == 3, "%s", err.msg);
    if (ck) {
        EXPECT(strcmp(dk_st_metadata(ck, "format"), "pt") == 0, "metadata");
        EXPECT(dk_st_find(ck, "z")->numel == 0, "zero-size numel");
        EXPECT(dk_st_find(ck, "f4")->nbytes == 3, "F4: 6 elements in 3 bytes");
    }
    dk_st_close(ck);
    free(base);
}

/* One broken header → an error containing every needle. */
#define EXPECT_BAD_HEADER(header, data_size, ...)                                                   \
    do {                                                                                            \
        size_t size_;                                                                               \
        void *base_;                                                                                \
        unsigned char *img_ = make_image((header), (data_size), 0, &size_, &base_);                 \
        dk_err err_ = {0};                                                                          \
        dk_st_checkpoint *ck_ = dk_st_open_memory(img_, size_, "bad.safetensors", &err_);           \
        EXPECT(ck_ == NULL, "accepted a bad header: %s", (header));                                 \
        EXPECT_ERR_HAS(&err_, "bad.safetensors", __VA_ARGS__);                                      \
        dk_st_close(ck_);                                                                           \
        free(base_);                                                                                \
    } while (0)

static void test_bad_headers(void) {
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}", 4, "not valid JSON");
    EXPECT_BAD_HEADER("[1,2]", 0, "does not start with '{'");
    EXPECT_BAD_HEADER("{\"w\":3}", 0, "'w'", "not an object");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'w'",
                      "unknown dtype \"Q4_K\"");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'w'", "dtype");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w'", "shape");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w'", "data_offsets");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w'",
                      "not a non-negative integer");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w'",
                      "not a non-negative integer");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", 4, "'w'",
                      "not a non-negative integer");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w'",
                      "9 dimensions");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                      "\"data_offsets\":[0,4]}}", 4, "'w'", "overflows");
    /* shape × dtype size vs the byte range */
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,5],\"data_offsets\":[0,32]}}", 32, "'w'",
                      "shape [3, 5] and dtype BF16", "needs 30 bytes", "span 32 bytes");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4]}}", 8, "'w'",
                      "invalid data_offsets");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "'w'",
                      "invalid data_offsets");
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "'w'",
                      "whole number of bytes");
    /* ranges outside the data section */
    EXPECT_BAD_HEADER("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, "'w'",
                      "data_offsets [0, 16]", "holds only 12 bytes", "truncated");
    /* overlapping ranges (one of them zero-sized inside another) */
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'a' [0, 8)",
                      "'b' [4, 12)", "overlap");
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, "overlap");
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'a'", "twice");
    /* metadata must map strings to strings */
    EXPECT_BAD_HEADER("{\"__metadata__\":{\"total\":3}}", 0, "'total'", "not a string");
    EXPECT_BAD_HEADER("{\"__metadata__\":[\"x\"]}", 0, "__metadata__");
    /* trailing bytes, bad UTF-8 */
    EXPECT_BAD_HEADER("{}x", 0, "after the header");
    EXPECT_BAD_HEADER("{\"\xff\":1}", 0, "UTF-8");
    EXPECT_BAD_HEADER("{\"\xc0\xaf\":1}", 0, "UTF-8"); /* overlong '/' */
}

/* ---------------------------------------------------------------------------------------------------
 * Broken files made from the good fixture */

/* Replaces the first `old` in the image's header by `new` of the same length (keeps the length field). */
static void patch_header(unsigned char *img, size_t size, const char *old, const char *new) {
    size_t n = strlen(old);
    CHECK(strlen(new) == n, "patch_header: same length needed");
    for (size_t i = 8; i + n <= size; i++)
        if (memcmp(img + i, old, n) == 0) {
            memcpy(img + i, new, n);
            return;
        }
    CHECK(0, "patch_header: '%s' not found in the fixture's header (regenerated with another writer?)", old);
}

static void expect_bad_file(const char *name, const unsigned char *img, size_t size, ...) {
    char *path = dk_sprintf("%s/%s", engine_scratch_dir(), name);
    engine_write_all(path, img, size);
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    EXPECT(ck == NULL, "%s was accepted", name);
    dk_st_close(ck);
    EXPECT_ERR_HAS(&err, name);
    va_list ap;
    va_start(ap, size);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;) EXPECT_ERR_HAS(&err, needle);
    va_end(ap);
    free(path);
}

static void test_corrupt_files(void) {
    char *good_path = engine_fixture("safetensors/single/model.safetensors");
    size_t size;
    unsigned char *good = engine_read_all(good_path, &size);
    unsigned char *img = dk_malloc(size + 16);

    /* truncated: at the data, in the header, in the length field, empty */
    expect_bad_file("truncated_data.safetensors", good, size - 3, "data section holds only", "truncated", NULL);
    expect_bad_file("truncated_header.safetensors", good, 100, "goes past the end of the file", NULL);
    expect_bad_file("truncated_len.safetensors", good, 5, "too short", NULL);
    expect_bad_file("empty.safetensors", good, 0, "0 bytes", NULL);

    /* header length too large */
    memcpy(img, good, size);
    img[5] = 0x01; /* 2^40 + ... */
    expect_bad_file("huge_len.safetensors", img, size, "100000000-byte limit", NULL);
    memcpy(img, good, size);
    uint64_t n = size; /* within the limit but past the end */
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)(n >> (8 * i));
    expect_bad_file("long_len.safetensors", img, size, "goes past the end", NULL);

    /* invalid JSON */
    memcpy(img, good, size);
    patch_header(img, size, "\"dtype\":", "\"dtype\"#");
    expect_bad_file("bad_json.safetensors", img, size, "not valid JSON", NULL);

    /* unknown dtype */
    memcpy(img, good, size);
    patch_header(img, size, "\"BF16\"", "\"BX16\"");
    expect_bad_file("bad_dtype.safetensors", img, size, "unknown dtype \"BX16\"", "'bf16.", NULL);

    /* shape vs byte range */
    memcpy(img, good, size);
    patch_header(img, size, "\"shape\":[3,5]", "\"shape\":[3,6]");
    expect_bad_file("bad_shape.safetensors", img, size, "'bf16.matrix'", "[3, 6]", "needs 36 bytes",
                    "span 30 bytes", NULL);

    /* A range outside the data section (230 bytes): move the scalar's 4 bytes to [928, 932). The writer
     * put it at [128, 132), after f32.cube [32, 128). */
    memcpy(img, good, size);
    patch_header(img, size, "\"shape\":[],\"data_offsets\":[128,132]", "\"shape\":[],\"data_offsets\":[928,932]");
    expect_bad_file("range_outside.safetensors", img, size, "'f32.scalar'", "data_offsets [928, 932]",
                    "holds only 230 bytes", "truncated", NULL);

    /* overlapping ranges: move the scalar onto the end of the cube */
    memcpy(img, good, size);
    patch_header(img, size, "\"shape\":[],\"data_offsets\":[128,132]", "\"shape\":[],\"data_offsets\":[124,128]");
    expect_bad_file("overlap.safetensors", img, size, "'f32.cube' [32, 128)", "'f32.scalar' [124, 128)", "overlap",
                    NULL);

    /* A file that does not exist, and a folder without a checkpoint */
    dk_err err = {0};
    char *missing = dk_sprintf("%s/nothing.safetensors", engine_scratch_dir());
    EXPECT(dk_st_open(missing, &err) == NULL, "opened a missing file");
    EXPECT_ERR_HAS(&err, "cannot open", "nothing.safetensors");
    char *empty_dir = dk_sprintf("%s/empty_model", engine_scratch_dir());
    mkdir(empty_dir, 0755);
    dk_err_clear(&err);
    EXPECT(dk_st_open_dir(empty_dir, &err) == NULL, "opened an empty folder");
    EXPECT_ERR_HAS(&err, "no checkpoint in", "empty_model", "model.safetensors.index.json");
    free(missing);
    free(empty_dir);
    free(img);
    free(good);
    free(good_path);
}

/* Copies the sharded fixture into a scratch folder, optionally leaving a shard out or replacing the index. */
static char *copy_sharded(const char *name, const char *skip_shard, const char *index_text) {
    char *src = engine_fixture("safetensors/sharded");
    char *dst = dk_sprintf("%s/%s", engine_scratch_dir(), name);
    mkdir(dst, 0755);
    const char *files[] = {"model.safetensors.index.json", "model-00001-of-00003.safetensors",
                           "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"};
    for (int i = 0; i < 4; i++) {
        if (skip_shard && strcmp(files[i], skip_shard) == 0) continue;
        char *from = dk_sprintf("%s/%s", src, files[i]), *to = dk_sprintf("%s/%s", dst, files[i]);
        size_t size;
        unsigned char *bytes = engine_read_all(from, &size);
        if (i == 0 && index_text)
            engine_write_all(to, index_text, strlen(index_text));
        else
            engine_write_all(to, bytes, size);
        free(bytes);
        free(from);
        free(to);
    }
    free(src);
    return dst;
}

static void test_bad_sharded(void) {
    dk_err err = {0};
    char *dir = copy_sharded("missing_shard", "model-00002-of-00003.safetensors", NULL);
    EXPECT(dk_st_open_dir(dir, &err) == NULL, "opened with a missing shard");
    EXPECT_ERR_HAS(&err, "model-00002-of-00003.safetensors", "is missing", "model.safetensors.index.json",
                   "model.layers.0.mlp.");
    free(dir);

    dk_err_clear(&err);
    dir = copy_sharded("wrong_shard", NULL,
                       "{\"weight_map\":{\"model.norm.weight\":\"model-00003-of-00003.safetensors\","
                       "\"lm_head.weight\":\"model-00001-of-00003.safetensors\"}}");
    EXPECT(dk_st_open_dir(dir, &err) == NULL, "opened with a wrong index");
    EXPECT_ERR_HAS(&err, "'lm_head.weight'", "model-00001-of-00003.safetensors", "does not contain it");
    free(dir);

    dk_err_clear(&err);
    dir = copy_sharded("bad_index_json", NULL, "{\"weight_map\": {");
    EXPECT(dk_st_open_dir(dir, &err) == NULL, "opened with a broken index");
    EXPECT_ERR_HAS(&err, "model.safetensors.index.json", "not valid JSON");
    free(dir);

    dk_err_clear(&err);
    dir = copy_sharded("no_weight_map", NULL, "{\"metadata\": {}}");
    EXPECT(dk_st_open_dir(dir, &err) == NULL, "opened an index without weight_map");
    EXPECT_ERR_HAS(&err, "model.safetensors.index.json", "weight_map");
    free(dir);

    dk_err_clear(&err);
    dir = copy_sharded("index_subset", NULL,
                       "{\"metadata\":{\"total_size\":4},\"weight_map\":{\"model.norm.weight\":"
                       "\"model-00003-of-00003.safetensors\"}}");
    dk_st_checkpoint *ck = dk_st_open_dir(dir, &err);
    EXPECT(ck && ck->n_tensors == 1 && ck->n_files == 1, "the index decides which tensors exist: %s", err.msg);
    dk_st_close(ck);
    free(dir);
}

int main(void) {
    test_single_file();
    test_sharded();
    test_unaligned_and_special();
    test_bad_headers();
    test_corrupt_files();
    test_bad_sharded();
    engine_scratch_cleanup();
    return dk_test_finish("test_safetensors");
}
