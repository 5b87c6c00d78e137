/* fuzz_hf_config.c — fuzz target for the config.json parser (host/model/hf_config.c), built like
 * fuzz_safetensors.c: libFuzzer with CC=clang -DDIFFKIT_FUZZ=ON, and always an ordinary ctest that replays
 * the config fixtures (every .config.json in tests/fixtures/engine/configs), the inputs an earlier libFuzzer
 * run kept (fuzz_hf_config.corpus, packed) and 30000 deterministic mutations.
 * Every input must be accepted with a consistent config or rejected with a message; never a crash. */
#include "engine_test.h"

#include "core/strutil.h"
#include "io/file.h"
#include "model/hf_config.h"
#include "model/rope_freq.h"

#include <math.h>
#include <stdint.h>

int dk_hf_config_fuzz_one(const uint8_t *data, size_t size);

int dk_hf_config_fuzz_one(const uint8_t *data, size_t size) {
    dk_hf_config cfg;
    dk_err err = {0};
    if (dk_hf_config_parse((const char *)data, size, "fuzz/config.json", &cfg, &err) != 0) {
        CHECK(err.code != 0 && err.msg[0] != '\0', "a rejected config must come with a message");
        return 0;
    }
    /* What the engine relies on after a successful parse. */
    CHECK(cfg.hidden_size > 0 && cfg.num_attention_heads > 0 && cfg.num_key_value_heads > 0 && cfg.head_dim > 0 &&
              cfg.num_attention_heads % cfg.num_key_value_heads == 0 && cfg.head_dim % 2 == 0,
          "accepted inconsistent sizes");
    CHECK(cfg.layer_types != NULL && cfg.num_hidden_layers > 0, "layer kinds");
    for (int64_t l = 0; l < cfg.num_hidden_layers; l++)
        if (dk_hf_layer_is_sliding(&cfg, l)) CHECK(cfg.sliding_window > 0, "a sliding layer without a window");
    if (cfg.head_dim <= 4096) { /* the frequencies must be computable for any accepted setting */
        float inv[2048], scale;
        dk_rope_inv_freq(&cfg.rope, cfg.head_dim, inv, &scale);
        dk_rope_inv_freq(&cfg.rope_sliding, cfg.head_dim, inv, &scale);
    }
    dk_hf_config_free(&cfg);
    return 0;
}

#ifdef DK_LIBFUZZER

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return dk_hf_config_fuzz_one(data, size); }

#else

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 30000;
    char *dir = engine_fixture("configs");
    size_t n_seeds = 0;
    char **names = dk_list_dir(dir, ".config.json", false, &n_seeds);
    EXPECT(n_seeds >= 20, "seed configs in %s: %zu", dir, n_seeds);
    uint8_t **seeds = dk_calloc(n_seeds + 1, sizeof *seeds);
    size_t *sizes = dk_calloc(n_seeds + 1, sizeof *sizes);
    for (size_t i = 0; i < n_seeds; i++) {
        char *path = dk_path_join(dir, names[i]);
        seeds[i] = engine_read_all(path, &sizes[i]);
        dk_hf_config cfg;
        dk_err err = {0};
        EXPECT(dk_hf_config_parse((const char *)seeds[i], sizes[i], path, &cfg, &err) == 0, "seed %s: %s", names[i],
               err.msg);
        dk_hf_config_free(&cfg);
        free(path);
    }
    /* Inputs libFuzzer found (tests/fixtures/engine/fuzz_hf_config.corpus): accepted or not, no crash. */
    char *corpus = engine_fixture("fuzz_hf_config.corpus");
    size_t replayed = engine_replay_corpus(corpus, dk_hf_config_fuzz_one);
    EXPECT(replayed >= 50, "the packed corpus has %zu inputs", replayed);
    free(corpus);

    size_t cap = 8192;
    uint8_t *work = dk_malloc(cap);
    long accepted = 0;
    for (long it = 0; it < iterations && n_seeds > 0; it++) {
        size_t s = engine_rng_below(n_seeds);
        size_t n = engine_mutate(seeds[s], sizes[s], work, cap, false);
        uint8_t *input = dk_malloc(n ? n : 1); /* exact size: ASan sees reads past the end */
        memcpy(input, work, n);
        dk_hf_config cfg;
        dk_err err = {0};
        if (dk_hf_config_parse((const char *)input, n, "m", &cfg, &err) == 0) {
            accepted++;
            dk_hf_config_free(&cfg);
        }
        dk_hf_config_fuzz_one(input, n);
        free(input);
    }
    printf("fuzz_hf_config: %zu seeds, %zu corpus inputs, %ld mutated inputs (%ld accepted, %ld rejected with a "
           "message)\n", n_seeds, replayed, iterations, accepted, iterations - accepted);
    EXPECT(accepted > 0 && accepted < iterations, "the mutations should produce both kinds (%ld accepted)", accepted);
    free(work);
    for (size_t i = 0; i < n_seeds; i++) free(seeds[i]);
    free(seeds);
    free(sizes);
    dk_free_strings(names, n_seeds);
    free(dir);
    return dk_test_finish("fuzz_hf_config");
}

#endif
