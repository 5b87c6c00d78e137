/* fuzz_safetensors.c — fuzz target for the safetensors header parser (host/io/safetensors.c).
 *
 * Why two builds: a header comes from whatever file the user points at, so the parser must survive any
 * bytes. Coverage-guided fuzzing finds what hand-written cases miss, but needs clang's libFuzzer, and CI
 * builds with gcc. So the same entry point, dk_st_fuzz_one, is driven
 *   - by libFuzzer (LLVMFuzzerTestOneInput) when configured with CC=clang -DDIFFKIT_FUZZ=ON:
 *         build-fuzz/tests/fuzz_safetensors_libfuzzer -max_total_time=300 CORPUS_DIR SEED_DIR
 *   - as an ordinary ctest (this file's main) that replays the committed seed corpus
 *     (tests/fixtures/engine/fuzz_safetensors_seeds and the reader's fixtures), the inputs an earlier
 *     libFuzzer run kept (fuzz_safetensors.corpus, packed), and then 50000
 *     deterministic mutations of them (bit flips, byte sets, digit and token swaps, inserted/deleted bytes,
 *     truncations, rewritten length fields). Under -DDIFFKIT_SANITIZE=ON this catches memory errors too.
 * The target accepts or rejects each input; it must never crash, leak or read outside the input.
 */
#include "engine_test.h"

#include "core/strutil.h"
#include "io/file.h"
#include "io/safetensors.h"

#include <stdint.h>

int dk_st_fuzz_one(const uint8_t *data, size_t size);

int dk_st_fuzz_one(const uint8_t *data, size_t size) {
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open_memory(data, size, "fuzz.safetensors", &err);
    if (!ck) {
        CHECK(err.code != 0 && err.msg[0] != '\0', "a rejected input must come with a message");
        return 0;
    }
    /* Touch everything an accepted file hands out: names, shapes, every byte of small tensors. */
    float buf[4096];
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const dk_st_tensor *t = &ck->tensors[i];
        CHECK(dk_st_find(ck, t->name) == t, "lookup of a listed tensor");
        CHECK((const uint8_t *)t->data >= data && (const uint8_t *)t->data + t->nbytes <= data + size,
              "tensor data outside the input");
        dk_err e = {0};
        CHECK(dk_st_check_shape(t, t->ndim, t->shape, &e) == 0, "own shape");
        if (t->numel <= 4096 && dk_st_check_readable(t, &e) == 0) dk_st_to_f32(t, buf, (size_t)t->numel, &e);
        unsigned sum = 0;
        for (size_t b = 0; b < t->nbytes && b < 65536; b++) sum += ((const uint8_t *)t->data)[b];
        (void)sum;
    }
    (void)dk_st_metadata(ck, "format");
    dk_st_close(ck);
    return 0;
}

#ifdef DK_LIBFUZZER

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return dk_st_fuzz_one(data, size); }

#else

static void add_seed(uint8_t ***seeds, size_t **sizes, size_t *count, const char *path) {
    *seeds = dk_realloc(*seeds, (*count + 1) * sizeof **seeds);
    *sizes = dk_realloc(*sizes, (*count + 1) * sizeof **sizes);
    (*seeds)[*count] = engine_read_all(path, &(*sizes)[*count]);
    (*count)++;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 50000;
    uint8_t **seeds = NULL;
    size_t *sizes = NULL, n_seeds = 0;

    char *seed_dir = engine_fixture("fuzz_safetensors_seeds");
    size_t n_files = 0;
    char **files = dk_list_dir(seed_dir, ".safetensors", false, &n_files);
    EXPECT(n_files >= 3, "the seed corpus %s has %zu files", seed_dir, n_files);
    for (size_t i = 0; i < n_files; i++) {
        char *path = dk_path_join(seed_dir, files[i]);
        add_seed(&seeds, &sizes, &n_seeds, path);
        free(path);
    }
    dk_free_strings(files, n_files);
    free(seed_dir);
    const char *more[] = {"safetensors/single/model.safetensors", "safetensors/sharded/model-00001-of-00003.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *path = engine_fixture(more[i]);
        add_seed(&seeds, &sizes, &n_seeds, path);
        free(path);
    }

    /* Every seed is a valid file: it must be accepted. */
    for (size_t i = 0; i < n_seeds; i++) {
        dk_err err = {0};
        dk_st_checkpoint *ck = dk_st_open_memory(seeds[i], sizes[i], "seed", &err);
        EXPECT(ck != NULL, "seed %zu rejected: %s", i, err.msg);
        dk_st_close(ck);
        dk_st_fuzz_one(seeds[i], sizes[i]);
    }

    /* Inputs libFuzzer found (tests/fixtures/engine/fuzz_safetensors.corpus): accepted or not, no crash. */
    char *corpus = engine_fixture("fuzz_safetensors.corpus");
    size_t replayed = engine_replay_corpus(corpus, dk_st_fuzz_one);
    EXPECT(replayed >= 50, "the packed corpus has %zu inputs", replayed);
    free(corpus);

    /* Deterministic mutations. Each input lives in its own exact-size heap block, so ASan sees any read
     * past its end. */
    size_t cap = 4096;
    uint8_t *work = dk_malloc(cap);
    long accepted = 0;
    for (long it = 0; it < iterations; it++) {
        size_t s = engine_rng_below(n_seeds);
        size_t n = engine_mutate(seeds[s], sizes[s], work, cap, true);
        uint8_t *input = dk_malloc(n ? n : 1);
        memcpy(input, work, n);
        dk_err err = {0};
        dk_st_checkpoint *ck = dk_st_open_memory(input, n, "m", &err);
        if (ck) accepted++;
        dk_st_close(ck);
        dk_st_fuzz_one(input, n);
        free(input);
    }
    printf("fuzz_safetensors: %zu seeds, %zu corpus inputs, %ld mutated inputs (%ld accepted, %ld rejected with a "
           "message)\n", n_seeds, replayed, iterations, accepted, iterations - accepted);
    EXPECT(accepted > 0 && accepted < iterations, "the mutations should produce both kinds (%ld accepted)", accepted);

    free(work);
    for (size_t i = 0; i < n_seeds; i++) free(seeds[i]);
    free(seeds);
    free(sizes);
    return dk_test_finish("fuzz_safetensors");
}

#endif
