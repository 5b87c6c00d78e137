/* test_vector_file.c — dk_read_vector_file (host/io/vector_file.h): the steer vector fixture as NumPy wrote it
 * (.npy float32) and as raw float32 (.bin) gives golden.safetensors' steer.vector exactly; a float64 .npy and a
 * (1, n) shape are read; wrong dtypes, shapes, orders, lengths and truncated files are refused with exit code 2
 * and a message naming the file and what was expected. */
#include "engine_test.h"
#include "model_golden.h"

#include "io/file.h"
#include "io/vector_file.h"

#include <stdio.h>

enum { H = 32 }; /* the llama golden model's hidden size */

/* A .npy file (format 1.0) with this header dict and `data_bytes` bytes of data; returns its path. */
static char *write_npy(const char *name, const char *dict, const void *data, size_t data_bytes) {
    char *path = dk_path_join(engine_scratch_dir(), name);
    char header[256];
    int n = snprintf(header, sizeof header, "%s", dict);
    int padded = (10 + n + 1 + 63) / 64 * 64 - 10; /* numpy pads the header (with its newline) to 64 bytes */
    memset(header + n, ' ', (size_t)(padded - n - 1));
    header[padded - 1] = '\n';
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    unsigned char lead[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(padded & 255), (unsigned char)(padded >> 8)};
    fwrite(lead, 1, 10, f);
    fwrite(header, 1, (size_t)padded, f);
    fwrite(data, 1, data_bytes, f);
    fclose(f);
    return path;
}

static void expect_refused(const char *path, int64_t n, const char *needle) {
    float out[H + 1];
    dk_err err = {0};
    EXPECT(dk_read_vector_file(path, n, out, &err) != 0, "%s was accepted", path);
    EXPECT(err.code == DK_EXIT_USAGE, "%s: error code %d, expected 2", path, err.code);
    EXPECT_ERR_HAS(&err, path, needle);
}

int main(void) {
    char *dir = engine_fixture("models/llama");
    dk_err err = {0};
    char *golden_path = dk_path_join(dir, "golden.safetensors");
    dk_st_checkpoint *golden = dk_st_open(golden_path, &err);
    CHECK(golden, "%s", err.msg);
    float *want = golden_load(golden, "steer.vector", H);
    float got[H];
    const char *files[] = {"steer_vector.npy", "steer_vector.bin"};
    for (int i = 0; i < 2; i++) {
        char *path = dk_path_join(dir, files[i]);
        memset(got, 0, sizeof got);
        EXPECT(dk_read_vector_file(path, H, got, &err) == 0, "%s", err.msg);
        EXPECT(memcmp(got, want, sizeof got) == 0, "%s differs from steer.vector", files[i]);
        expect_refused(path, H - 1, "31");
        free(path);
    }
    double wide[H];
    for (int i = 0; i < H; i++) wide[i] = (double)want[i];
    char *f8 = write_npy("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (32,), }", wide, sizeof wide);
    EXPECT(dk_read_vector_file(f8, H, got, &err) == 0 && memcmp(got, want, sizeof got) == 0, "float64 .npy: %s", err.msg);
    char *row = write_npy("row.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32), }", want, H * 4);
    EXPECT(dk_read_vector_file(row, H, got, &err) == 0 && memcmp(got, want, sizeof got) == 0, "(1, n) .npy: %s", err.msg);
    char *big = write_npy("big.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (32,), }", want, H * 4);
    expect_refused(big, H, "'<f4'");
    char *half = write_npy("half.npy", "{'descr': '<f2', 'fortran_order': False, 'shape': (32,), }", want, H * 2);
    expect_refused(half, H, "dtype");
    char *two = write_npy("two.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 16), }", want, H * 4);
    expect_refused(two, H, "expected a vector of 32 floats");
    char *fortran = write_npy("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (32,), }", want, H * 4);
    expect_refused(fortran, H, "Fortran");
    char *cut = write_npy("cut.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (32,), }", want, H * 4 - 4);
    expect_refused(cut, H, "124 data bytes");
    char *fake = dk_path_join(engine_scratch_dir(), "fake.npy");
    FILE *f = fopen(fake, "wb");
    fwrite(want, 4, H, f);
    fclose(f);
    expect_refused(fake, H, "magic");
    printf("vector files: .npy (f4, f8, (1, n)) and raw .bin read exactly; 8 malformed files refused\n");
    char *paths[] = {f8, row, big, half, two, fortran, cut, fake};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) free(paths[i]);
    free(want);
    dk_st_close(golden);
    free(golden_path);
    free(dir);
    engine_scratch_cleanup();
    return dk_test_finish("test_vector_file");
}
