/* fuzz_driver.c — runs the fuzz target without libFuzzer, so every build (gcc CI included) exercises it:
 * each file of the seed corpus, then ITERATIONS seeded random mutations of them (bit flips, byte
 * insertions and deletions, splices of two seeds, truncation). Deterministic: a failure reproduces with
 * the same arguments, and the failing input is written to fuzz_crash.bin first.
 *
 *   fuzz_driver SEED_DIR [ITERATIONS] [RNG_SEED]                                                        */
#include "fuzz_tokenizer.h"

#include "core/strutil.h"
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t next_random(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void run_one(const uint8_t *data, size_t size) {
    FILE *f = fopen("fuzz_crash.bin", "wb"); /* overwritten each time: left behind only by a crash */
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
    LLVMFuzzerTestOneInput(data, size);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_driver SEED_DIR [ITERATIONS] [RNG_SEED]\n");
        return 2;
    }
    long iterations = argc > 2 ? atol(argv[2]) : 2000;
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 20261126;
    size_t n_names;
    char **names = dk_list_dir(argv[1], NULL, false, &n_names);
    if (n_names == 0) {
        fprintf(stderr, "fuzz_driver: no seeds in %s\n", argv[1]);
        return 2;
    }
    uint8_t **seeds = malloc(n_names * sizeof *seeds);
    size_t *sizes = malloc(n_names * sizeof *sizes);
    for (size_t i = 0; i < n_names; i++) {
        char *path = dk_path_join(argv[1], names[i]);
        dk_err err = {0};
        seeds[i] = (uint8_t *)dk_read_file(path, &sizes[i], &err);
        if (!seeds[i]) {
            fprintf(stderr, "fuzz_driver: %s\n", err.msg);
            return 2;
        }
        free(path);
        run_one(seeds[i], sizes[i]);
    }
    for (long it = 0; it < iterations; it++) {
        size_t a = next_random() % n_names, b = next_random() % n_names;
        size_t cap = sizes[a] + sizes[b] + 64, n = sizes[a];
        uint8_t *buf = malloc(cap);
        memcpy(buf, seeds[a], n);
        int edits = 1 + (int)(next_random() % 8);
        for (int e = 0; e < edits; e++) {
            uint64_t r = next_random();
            size_t pos = n ? (size_t)(next_random() % n) : 0;
            switch (r % 5) {
            case 0: if (n) buf[pos] ^= (uint8_t)(1u << (next_random() % 8)); break;          /* bit flip */
            case 1: if (n) buf[pos] = (uint8_t)next_random(); break;                           /* byte */
            case 2: if (n + 1 < cap) { memmove(buf + pos + 1, buf + pos, n - pos); buf[pos] = (uint8_t)next_random(); n++; } break;
            case 3: if (n > 1) { memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; } break; /* delete */
            case 4: { /* splice: the tail of seed b replaces our tail */
                size_t from = sizes[b] ? (size_t)(next_random() % sizes[b]) : 0, take = sizes[b] - from;
                if (pos + take + 1 > cap) take = cap - pos - 1;
                memcpy(buf + pos, seeds[b] + from, take);
                n = pos + take;
                break;
            }
            }
        }
        if (n && next_random() % 16 == 0) n = (size_t)(next_random() % n); /* truncation */
        if (n && buf[0] % 3 != seeds[a][0] % 3 && next_random() % 2) buf[0] = seeds[a][0]; /* mostly keep the mode */
        run_one(buf, n);
        free(buf);
    }
    remove("fuzz_crash.bin");
    printf("fuzz_driver: %zu seeds and %ld mutations ran clean\n", n_names, iterations);
    for (size_t i = 0; i < n_names; i++) free(seeds[i]);
    free(seeds);
    free(sizes);
    dk_free_strings(names, n_names);
    return 0;
}
